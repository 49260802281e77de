"""Patch-feature extraction with TIAToolbox's ``DeepFeatureExtractor`` into a FeatureStore.

One *slide* per manifest row (a paired sample), by one of two paths:

- **Whole slide** (a WSI row without a region): the slide is streamed through
  a fresh ``DeepFeatureExtractor`` in WSI mode (``patch_mode=False``,
  ``output_type="zarr"``, :func:`run_wsi_engine`); the engine reads
  ``patch_size`` patches on a non-overlapping grid at the row's ``mpp``
  (baseline when the row has none), keeps those touching tissue
  (TIAToolbox's automatic tissue mask, ``tissue_mask=False`` keeps all, or
  a mask of ``tissue_masks``), and writes features and coordinates to a zarr
  in a temporary folder, read back chunk-wise by :func:`read_wsi_features`.
  (:func:`run_wsi_engine`, :func:`read_wsi_features` and :func:`read_ioconfig`
  are the package's TIAToolbox adapter, :mod:`tia_scanner_robust._tiatoolbox`,
  re-exported here.)
  The image is never held whole in memory (the ``(N, D)`` features are).
  Partial patches at the right/bottom edge are kept (padded white).
- **Patch file or WSI region** (small): the image is read with
  :func:`~tia_scanner_robust.data.paired.load_sample_image`, tiled into
  non-overlapping ``patch_size`` patches (:func:`tile_image`: a remainder is
  dropped, an image smaller than a patch is resized to one patch) and run
  through a fresh engine with ``patch_mode=True``.

Either way the features and patch bounds ``(x0, y0, x1, y1)`` are written with
:meth:`~tia_scanner_robust.data.features.FeatureStore.write_slide`, keyed by
specimen, scanner and magnification, with the row's label and split.
Coordinates are pixels **at the resolution the patches were read at** (the
row's ``mpp``; baseline pixels when it has none), not baseline pixels: for a
whole slide the origin is the slide's top-left corner, for a region the
region's, for a patch file the (cropped) image's. The slide attributes
record ``patch_size``, ``source``, ``mpp`` and ``mode`` (``"wsi"`` or
``"patch"``).

- Resumable: a slide already complete in the store is skipped (nothing is
  recomputed); an interrupted write is incomplete and is redone.
- One extractor per store: the store records what made its features
  (:func:`extraction_settings`: model name, a SHA-256 of the weights,
  ``pretrained``, patch size, normalisation;
  :meth:`~tia_scanner_robust.data.feature_store.FeatureStore.claim_extraction`),
  and every slide its ``mpp`` and weights digest. Resuming with other
  settings (another model, a random initialisation that differs from the
  first run's, another patch size or ``mpp``) is refused before anything is
  computed; ``overwrite=True`` starts the store afresh.
- Atomic per slide: the store flips a slide's ``complete`` flag last.
- A whole slide without any tissue patch is not written (logged, counted as
  ``empty``).
- Normalisation: TIAToolbox's ``infer_batch`` only casts the uint8 HWC
  patches to float, so the extractor sets the model's ``preproc_func`` to
  ``(x / 255 - mean) / std`` with the statistics of :data:`FM_NORMALIZATION`
  (ImageNet for unknown names).

Models (:func:`resolve_feature_model`): a name of TIAToolbox's
``TimmBackbone`` foundation models (``UNI``, ``UNI2``, ``prov-gigapath``,
``H-optimus-0``, ``H-optimus-1``, ``H0-mini``, ``Virchow``, ``Virchow2``,
``kaiko``: weights from the Hugging Face hub, gated for several), any timm
model name (``pretrained=False`` gives random initialisation: usable offline
for tests, but *not* a foundation model), or an ``nn.Module`` mapping
``(N, 3, H, W)`` float images to ``(N, D)`` features.

Examples:
    >>> FM_NORMALIZATION["H-optimus-0"][0]
    (0.707223, 0.578729, 0.703617)
    >>> import numpy as np
    >>> tiles, coords = tile_image(np.zeros((64, 96, 3), np.uint8), 32)
    >>> tiles.shape, coords[-1].tolist()
    ((6, 32, 32, 3), [64, 32, 96, 64])
    >>> read_ioconfig(224, 0.5).input_resolutions
    [{'units': 'mpp', 'resolution': 0.5}]

"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tia_scanner_robust._constants import IMAGENET_NORMALIZATION
from tia_scanner_robust._tiatoolbox import (
    read_ioconfig,
    read_wsi_features,
    run_patch_engine,
    run_wsi_engine,
)
from tia_scanner_robust.data.features import FeatureStore
from tia_scanner_robust.data.paired import existing_image_path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from tia_scanner_robust.data.paired import PairedCollection, PairedSample

__all__ = [
    "FM_NORMALIZATION",
    "IMAGENET_NORMALIZATION",
    "ExtractionSummary",
    "extract_features",
    "extraction_settings",
    "make_preproc",
    "read_ioconfig",
    "read_wsi_features",
    "resolve_feature_model",
    "run_wsi_engine",
    "state_dict_digest",
    "tile_image",
]

logger = logging.getLogger(__name__)

#: Input normalisation (mean, std) of the foundation models TIAToolbox knows
#: (from their model cards); other names use ImageNet's.
FM_NORMALIZATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "UNI": IMAGENET_NORMALIZATION,
    "UNI2": IMAGENET_NORMALIZATION,
    "prov-gigapath": IMAGENET_NORMALIZATION,
    "Virchow": IMAGENET_NORMALIZATION,
    "Virchow2": IMAGENET_NORMALIZATION,
    "H-optimus-0": ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517)),
    "H-optimus-1": ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517)),
    "H0-mini": ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517)),
    "kaiko": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def _normalize(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    out = np.asarray(image, dtype=np.float32) / 255.0
    return (out - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def make_preproc(
    mean: tuple[float, float, float], std: tuple[float, float, float]
) -> Callable[[np.ndarray], np.ndarray]:
    """A picklable ``preproc_func``: uint8 HWC -> float32 ``(x / 255 - mean) / std``.

    Examples:
        >>> f = make_preproc((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        >>> f(np.full((1, 1, 3), 255, np.uint8)).tolist()
        [[[1.0, 1.0, 1.0]]]

    """
    return functools.partial(_normalize, mean=tuple(mean), std=tuple(std))


class _ModuleBackbone(nn.Module):
    """Give a plain ``nn.Module`` the TIAToolbox model interface (infer_batch, preproc_func)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module_ = module
        self.preproc_func: Callable[[np.ndarray], np.ndarray] | None = None
        self.postproc_func = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.module_(images)
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out.reshape(out.shape[0], -1)

    @staticmethod
    def infer_batch(model: nn.Module, batch_data: torch.Tensor, device: str) -> np.ndarray:
        images = batch_data.to(device=device, dtype=torch.float32).permute(0, 3, 1, 2)
        model.eval()
        with torch.inference_mode():
            return model(images.contiguous()).cpu().numpy()


def resolve_feature_model(
    model: str | nn.Module, *, pretrained: bool = True
) -> tuple[nn.Module, str, tuple[tuple[float, ...], tuple[float, ...]]]:
    """``(TIAToolbox-compatible model, name, (mean, std))`` for a name or module.

    Args:
        model: A TIAToolbox foundation-model name, a timm model name, or an
            ``nn.Module``.
        pretrained: Load pretrained weights (hub; needs network access).
            ``False`` gives a randomly initialised network (tests, offline).

    Examples:
        >>> net, name, (mean, std) = resolve_feature_model("resnet18", pretrained=False)
        >>> name, mean
        ('resnet18', (0.485, 0.456, 0.406))

    """
    if isinstance(model, nn.Module):
        name = type(model).__name__
        if not hasattr(model, "infer_batch"):
            model = _ModuleBackbone(model)
        return model, name, IMAGENET_NORMALIZATION
    if not isinstance(model, str) or not model:
        msg = f"model must be a model name or an nn.Module, got {model!r}."
        raise TypeError(msg)
    from tiatoolbox.models.architecture.vanilla import TimmBackbone  # noqa: PLC0415

    try:
        net = TimmBackbone(model, pretrained=pretrained)
    except Exception as err:
        msg = (
            f"Could not build feature model {model!r} (pretrained={pretrained}): {err}. "
            "Use a TIAToolbox foundation-model name, a timm model name, or an nn.Module."
        )
        raise ValueError(msg) from err
    return net, model, FM_NORMALIZATION.get(model, IMAGENET_NORMALIZATION)


def state_dict_digest(module: nn.Module) -> str:
    """SHA-256 of a module's weights (names, dtypes, shapes and values), as ``"sha256:..."``.

    Two randomly initialised networks differ; the same pretrained weights
    give the same digest on every machine and device.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> a = state_dict_digest(nn.Linear(2, 2))
        >>> a == state_dict_digest(nn.Linear(2, 2)), a.startswith("sha256:")
        (False, True)

    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


def extraction_settings(
    net: nn.Module,
    name: str,
    *,
    pretrained: bool,
    patch_size: int,
    normalization: tuple[tuple[float, ...], tuple[float, ...]],
) -> dict[str, object]:
    """What makes a store's features: the record :func:`extract_features` claims.

    Examples:
        >>> s = extraction_settings(
        ...     nn.Linear(1, 1),
        ...     "lin",
        ...     pretrained=False,
        ...     patch_size=32,
        ...     normalization=((0.5,) * 3, (0.5,) * 3),
        ... )
        >>> sorted(s)
        ['model', 'normalization', 'patch_size', 'pretrained', 'weights']

    """
    mean, std = normalization
    return {
        "model": name,
        "weights": state_dict_digest(net),
        "pretrained": bool(pretrained),
        "patch_size": int(patch_size),
        "normalization": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
    }


def _check_stored_slide(store: FeatureStore, sample: PairedSample, weights: str) -> None:
    """Refuse to skip a stored slide whose ``mpp`` or weights differ from this run's."""
    info = store.slide_info(sample.specimen_id, sample.scanner, sample.magnification)
    stored = {"mpp": info.get("mpp"), "weights": info.get("weights", weights)}
    wanted = {"mpp": sample.mpp, "weights": weights}
    diffs = [
        f"{k}: {stored[k]!r} in the store, {wanted[k]!r} now"
        for k in stored
        if stored[k] != wanted[k]
    ]
    if diffs:
        msg = (
            f"Feature store {store.path}: slide {info.key!r} ({sample.path}) was extracted "
            f"with other settings ({'; '.join(diffs)}); write to another store or start "
            "this one afresh (extract-features --overwrite; overwrite=True)."
        )
        raise ValueError(msg)


def tile_image(image: np.ndarray, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping ``patch_size`` tiles of an image and their bounds ``(x0, y0, x1, y1)``.

    A remainder at the right/bottom edge is dropped; an image smaller than one
    patch is resized to one patch (bounds: the whole image).
    """
    h, w = image.shape[:2]
    if h < patch_size or w < patch_size:
        import cv2  # noqa: PLC0415

        tile = cv2.resize(image, (patch_size, patch_size), interpolation=cv2.INTER_LINEAR)
        return tile[None], np.array([[0, 0, w, h]], dtype=np.int64)
    ys = np.arange(0, h - patch_size + 1, patch_size)
    xs = np.arange(0, w - patch_size + 1, patch_size)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    y0, x0 = yy.ravel(), xx.ravel()
    tiles = np.stack(
        [image[y : y + patch_size, x : x + patch_size] for y, x in zip(y0, x0, strict=True)]
    )
    coords = np.stack([x0, y0, x0 + patch_size, y0 + patch_size], axis=1).astype(np.int64)
    return tiles, coords


def _run_engine(model: nn.Module, tiles: np.ndarray, *, batch_size: int, device: str) -> np.ndarray:
    """Features of in-memory ``tiles`` with a fresh engine in patch mode."""
    out = run_patch_engine(
        "DeepFeatureExtractor",
        model,
        tiles,
        ioconfig=read_ioconfig((int(tiles.shape[1]), int(tiles.shape[2]))),
        batch_size=batch_size,
        device=device,
    )
    feats = np.asarray(out["features"], dtype=np.float32)
    return feats.reshape(feats.shape[0], -1)


def _is_whole_slide(sample: PairedSample) -> bool:
    return bool(sample.is_wsi and sample.region is None)


def _whole_slide_features(
    model: nn.Module,
    sample: PairedSample,
    work_dir: Path,
    *,
    patch_size: int,
    batch_size: int,
    device: str,
    mask: str | Path | np.ndarray | None,
    auto_get_mask: bool,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Features and bounds of a whole slide through the WSI-mode engine (``None``: no tissue)."""
    existing_image_path(sample)
    work_dir.mkdir(parents=True, exist_ok=True)
    save_dir = Path(tempfile.mkdtemp(prefix=".extract-wsi-", dir=work_dir))
    try:
        (output,) = run_wsi_engine(
            model,
            [sample.path],
            save_dir,
            ioconfig=read_ioconfig(patch_size, sample.mpp),
            batch_size=batch_size,
            device=device,
            masks=None if mask is None else [mask],
            auto_get_mask=auto_get_mask,
        )
        return read_wsi_features(output)
    except ValueError as err:
        if "No patch coordinates remain" not in str(err):
            raise
        return None
    finally:
        shutil.rmtree(save_dir, ignore_errors=True)


class ExtractionSummary(dict):
    """``{"written", "skipped", "empty", "wsi", "store", "model"}`` of one extraction.

    ``written``/``skipped``: slides written / already complete; ``empty``:
    whole slides without any tissue patch (not written); ``wsi``: slides
    written through the WSI-mode engine.
    """


def extract_features(
    samples: PairedCollection | Iterable[PairedSample],
    store: FeatureStore | str | Path,
    model: str | nn.Module,
    *,
    patch_size: int = 224,
    batch_size: int = 32,
    device: str = "cpu",
    pretrained: bool = True,
    model_name: str | None = None,
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    tissue_mask: bool = True,
    tissue_masks: Mapping[str | Path, str | Path | np.ndarray] | None = None,
    work_dir: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
    seed: int = 0,
) -> ExtractionSummary:
    """Extract and store the patch features of every sample (resumable, atomic per slide).

    Whole slides (WSI rows without a region) stream through the engine in WSI
    mode at the row's ``mpp`` (baseline without one); patch files and WSI
    regions are read into memory and tiled (see the module docstring).
    Stored coordinates are ``(x0, y0, x1, y1)`` in pixels at the read
    resolution (the row's ``mpp``, else baseline), not baseline pixels.

    Args:
        samples: A :class:`~tia_scanner_robust.data.paired.PairedCollection`
            (e.g. from ``read_manifest``) or paired samples.
        store: The feature store (created if missing).
        model: See :func:`resolve_feature_model`.
        patch_size: Patch size in pixels at the read resolution.
        batch_size: Engine batch size.
        device: ``"cpu"`` or ``"cuda"``.
        pretrained: Load pretrained weights for a name.
        model_name: Stored as the slides' ``model`` (default: the name).
        normalization: ``(mean, std)`` overriding the model's default.
        tissue_mask: Whole slides: keep only patches touching tissue
            (TIAToolbox's automatic tissue mask); ``False`` keeps every patch.
        tissue_masks: Whole slides: a tissue mask (image file or binary array
            covering the slide) per slide path; wins over ``tissue_mask``.
        work_dir: Folder for the engine's temporary zarr outputs (removed
            after each slide); default: next to the store.
        progress: Show a tqdm bar.
        overwrite: Delete the store's slides and record first (start afresh);
            default: resume, refusing a store made with other settings.
        seed: Seed of a random initialisation (``pretrained=False``): the
            same seed builds the same network, so such a store can be
            resumed (the global random state is left untouched).

    Returns:
        An :class:`ExtractionSummary`.

    Raises:
        ValueError: If ``patch_size``/``batch_size`` are not positive, or
            the store was made with other settings (model, weights, patch
            size, normalisation, a slide's ``mpp``) and ``overwrite`` is off.

    """
    for name, value in (("patch_size", patch_size), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"{name} must be a positive int, got {value!r}."
            raise ValueError(msg)
    from tia_scanner_robust.data.paired import load_sample_image  # noqa: PLC0415

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # a random initialisation is reproducible, hence resumable
        net, name, default_norm = resolve_feature_model(model, pretrained=pretrained)
    mean, std = normalization or default_norm
    net.preproc_func = make_preproc(tuple(mean), tuple(std))  # type: ignore[assignment]
    name = model_name or name
    settings = extraction_settings(
        net, name, pretrained=pretrained, patch_size=patch_size, normalization=(mean, std)
    )
    path = store.path if isinstance(store, FeatureStore) else Path(store)
    if overwrite:
        zarr_format = store.zarr_format if isinstance(store, FeatureStore) else None
        store = FeatureStore(path, mode="w", zarr_format=zarr_format)
    elif not isinstance(store, FeatureStore):
        store = FeatureStore(path, mode="a")
    store.claim_extraction(settings)  # refuses a store made by another extractor
    masks = {Path(k).resolve(): v for k, v in (tissue_masks or {}).items()}
    work = Path(work_dir) if work_dir is not None else store.path.parent
    sample_list = list(samples)
    written = skipped = empty = wsi = 0
    for sample in tqdm(sample_list, desc=f"extract {name}", unit="slide", disable=not progress):
        if store.has_slide(sample.specimen_id, sample.scanner, sample.magnification):
            _check_stored_slide(store, sample, str(settings["weights"]))
            skipped += 1
            continue
        whole = _is_whole_slide(sample)
        if whole:
            result = _whole_slide_features(
                net,
                sample,
                work,
                patch_size=patch_size,
                batch_size=batch_size,
                device=device,
                mask=masks.get(sample.path.resolve()) if sample.path is not None else None,
                auto_get_mask=tissue_mask,
            )
            if result is None:
                logger.warning("No tissue patch in %s: slide not written.", sample.path)
                empty += 1
                continue
            feats, coords = result
        else:
            tiles, coords = tile_image(load_sample_image(sample), patch_size)
            feats = _run_engine(net, tiles, batch_size=batch_size, device=device)
        label = sample.label
        if isinstance(label, float) and label.is_integer():
            label = int(label)
        store.write_slide(
            sample.specimen_id,
            sample.scanner,
            feats,
            coords,
            magnification=sample.magnification,
            label=label,
            split=sample.split,
            model=name,
            attrs={
                "patch_size": int(patch_size),
                "source": str(sample.path),
                "mpp": sample.mpp,
                "mode": "wsi" if whole else "patch",
                "weights": settings["weights"],
            },
        )
        written += 1
        wsi += int(whole)
    return ExtractionSummary(
        written=written,
        skipped=skipped,
        empty=empty,
        wsi=wsi,
        store=str(store.path),
        model=name,
    )
