"""Patch-feature extraction with TIAToolbox's ``DeepFeatureExtractor`` into a FeatureStore.

One *slide* per manifest row (a paired sample): its image is read with
:func:`~tia_scanner_robust.data.paired.load_sample_image` (a patch file, or
the sample's region of a WSI), tiled into non-overlapping ``patch_size``
patches (an image smaller than a patch is resized to one patch), and the
patches go through a fresh ``DeepFeatureExtractor`` (``patch_mode=True``).
The features and patch bounds ``(x0, y0, x1, y1)`` are written with
:meth:`~tia_scanner_robust.data.features.FeatureStore.write_slide`, keyed by
specimen, scanner and magnification, with the row's label and split.

- Resumable: a slide already complete in the store is skipped (nothing is
  recomputed); an interrupted write is incomplete and is redone.
- Atomic per slide: the store flips a slide's ``complete`` flag last.
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

"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tia_scanner_robust.data.features import FeatureStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

    from tia_scanner_robust.data.paired import PairedCollection, PairedSample

__all__ = [
    "FM_NORMALIZATION",
    "IMAGENET_NORMALIZATION",
    "ExtractionSummary",
    "extract_features",
    "make_preproc",
    "resolve_feature_model",
    "tile_image",
]

logger = logging.getLogger(__name__)

#: ImageNet mean/std (torchvision and timm ImageNet models).
IMAGENET_NORMALIZATION: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    (0.485, 0.456, 0.406),
    (0.229, 0.224, 0.225),
)
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


@contextlib.contextmanager
def _no_compile(device: str) -> Iterator[None]:
    from tiatoolbox import rcParam  # noqa: PLC0415

    previous = rcParam["torch_compile_mode"]
    if str(device).startswith("cpu"):
        rcParam["torch_compile_mode"] = "disable"
    try:
        yield
    finally:
        rcParam["torch_compile_mode"] = previous


def _run_engine(model: nn.Module, tiles: np.ndarray, *, batch_size: int, device: str) -> np.ndarray:
    """Features of ``tiles`` with a fresh (workaround) DeepFeatureExtractor."""
    from tiatoolbox.models.engine.io_config import IOPatchPredictorConfig  # noqa: PLC0415

    from tia_scanner_robust.engines.consistency import (  # noqa: PLC0415
        _feature_extractor_class,
    )

    shape = (int(tiles.shape[1]), int(tiles.shape[2]))
    ioconfig = IOPatchPredictorConfig(
        input_resolutions=[{"units": "baseline", "resolution": 1.0}],
        patch_input_shape=shape,
        stride_shape=shape,
    )
    with _no_compile(device):
        engine = _feature_extractor_class()(
            model=model, batch_size=batch_size, num_workers=0, device=device, verbose=False
        )
        out = engine.run(tiles, patch_mode=True, ioconfig=ioconfig, output_type="dict")
    feats = np.asarray(out["features"], dtype=np.float32)
    return feats.reshape(feats.shape[0], -1)


class ExtractionSummary(dict):
    """``{"written": n, "skipped": n, "store": path, "model": name}`` of one extraction."""


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
    progress: bool = True,
) -> ExtractionSummary:
    """Extract and store the patch features of every sample (resumable, atomic per slide).

    Args:
        samples: A :class:`~tia_scanner_robust.data.paired.PairedCollection`
            (e.g. from ``read_manifest``) or paired samples.
        store: The feature store (created if missing).
        model: See :func:`resolve_feature_model`.
        patch_size: Tile size in pixels.
        batch_size: Engine batch size.
        device: ``"cpu"`` or ``"cuda"``.
        pretrained: Load pretrained weights for a name.
        model_name: Stored as the slides' ``model`` (default: the name).
        normalization: ``(mean, std)`` overriding the model's default.
        progress: Show a tqdm bar.

    Returns:
        An :class:`ExtractionSummary`.

    Raises:
        ValueError: If ``patch_size``/``batch_size`` are not positive.

    """
    for name, value in (("patch_size", patch_size), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"{name} must be a positive int, got {value!r}."
            raise ValueError(msg)
    from tia_scanner_robust.data.paired import load_sample_image  # noqa: PLC0415

    store = store if isinstance(store, FeatureStore) else FeatureStore(store, mode="a")
    net, name, default_norm = resolve_feature_model(model, pretrained=pretrained)
    mean, std = normalization or default_norm
    net.preproc_func = make_preproc(tuple(mean), tuple(std))  # type: ignore[assignment]
    name = model_name or name
    sample_list = list(samples)
    written = skipped = 0
    for sample in tqdm(sample_list, desc=f"extract {name}", unit="slide", disable=not progress):
        if store.has_slide(sample.specimen_id, sample.scanner, sample.magnification):
            skipped += 1
            continue
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
            attrs={"patch_size": int(patch_size), "source": str(sample.path)},
        )
        written += 1
    return ExtractionSummary(written=written, skipped=skipped, store=str(store.path), model=name)
