"""The one adapter to TIAToolbox's engine API (bottom layer of the package).

Every call into ``tiatoolbox.models.engine`` and every workaround of its
version quirks lives here, so that ``engines/``, ``features/`` and the MIL
predictor share one implementation:

- :func:`engine_class`: the engine class of a name in :data:`ENGINE_NAMES`
  (``DeepFeatureExtractor`` is :func:`feature_extractor_class`, whose model
  outputs work in patch and WSI mode);
- :func:`new_engine`: a fresh engine (engines keep per-run state);
- :func:`quiet_compile`: no ``torch.compile`` probe on CPU;
- :func:`read_ioconfig`: THE IO-config builder (non-overlapping patches read
  at an mpp or at baseline; a ``SemanticSegmentor`` config on request);
- :func:`run_patch_engine`: one patch-mode run on in-memory images;
- :func:`stem_runs`, :func:`run_wsi_engine`: WSI-mode runs writing zarr
  (one run per group of paths with distinct file stems: the engine names its
  outputs by stem);
- :func:`open_output_array`, :func:`read_wsi_features`: read the engines' zarr
  outputs back, chunk by chunk.

Examples:
    >>> from pathlib import Path
    >>> stem_runs([Path("a/s.tif"), Path("b/s.tif"), Path("a/t.tif")])
    [[0, 2], [1]]
    >>> read_ioconfig(224, 0.5).input_resolutions
    [{'units': 'mpp', 'resolution': 0.5}]
    >>> engine_class("PatchPredictor").__name__
    'PatchPredictor'

"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from torch import nn

__all__ = [
    "ENGINE_NAMES",
    "engine_class",
    "feature_extractor_class",
    "new_engine",
    "open_output_array",
    "quiet_compile",
    "read_ioconfig",
    "read_wsi_features",
    "run_patch_engine",
    "run_wsi_engine",
    "segmentor_ioconfig",
    "stem_runs",
]

#: The TIAToolbox engines the package runs.
ENGINE_NAMES = ("SemanticSegmentor", "PatchPredictor", "DeepFeatureExtractor")


@functools.cache
def feature_extractor_class() -> type:
    """``DeepFeatureExtractor`` whose model outputs work in both modes.

    TIAToolbox 2.1.3's feature extractor indexes ``batch_output[0]`` in WSI
    mode (so backbones return ``[features]``) but concatenates the raw output
    in patch mode (where that list breaks batching). This subclass normalises
    ``infer_batch``'s output to an array in patch mode and to a one-element
    list in WSI mode, so any backbone works in both.

    Examples:
        >>> feature_extractor_class().__mro__[1].__name__
        'DeepFeatureExtractor'

    """
    from tiatoolbox.models.engine.deep_feature_extractor import (  # noqa: PLC0415
        DeepFeatureExtractor,
    )

    class _FeatureExtractor(DeepFeatureExtractor):
        def _get_model_attr(self, attr_name: str) -> Any:
            attr = super()._get_model_attr(attr_name)
            if attr_name != "infer_batch":
                return attr
            patch_mode = bool(self.patch_mode)

            def infer_batch(model: nn.Module, batch: Any, *, device: str) -> Any:
                out = attr(model, batch, device=device)
                if patch_mode and isinstance(out, (list, tuple)):
                    return np.asarray(out[0])
                if not patch_mode and not isinstance(out, (list, tuple)):
                    return [out]
                return out

            return infer_batch

    return _FeatureExtractor


def engine_class(name: str) -> type:
    """The TIAToolbox engine class called ``name`` (one of :data:`ENGINE_NAMES`).

    Raises:
        ValueError: If ``name`` is not one of :data:`ENGINE_NAMES`.

    Examples:
        >>> engine_class("SemanticSegmentor").__name__
        'SemanticSegmentor'
        >>> engine_class("Nope")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Unknown engine 'Nope'; valid values: SemanticSegmentor, ...

    """
    if name == "SemanticSegmentor":
        from tiatoolbox.models.engine.semantic_segmentor import (  # noqa: PLC0415
            SemanticSegmentor,
        )

        return SemanticSegmentor
    if name == "PatchPredictor":
        from tiatoolbox.models.engine.patch_predictor import PatchPredictor  # noqa: PLC0415

        return PatchPredictor
    if name == "DeepFeatureExtractor":
        return feature_extractor_class()
    msg = f"Unknown engine {name!r}; valid values: {', '.join(ENGINE_NAMES)}."
    raise ValueError(msg)


@contextlib.contextmanager
def quiet_compile(device: str) -> Iterator[None]:
    """On CPU, skip TIAToolbox's ``torch.compile`` probe (it only warns there).

    Examples:
        >>> from tiatoolbox import rcParam
        >>> before = rcParam["torch_compile_mode"]
        >>> with quiet_compile("cpu"):
        ...     rcParam["torch_compile_mode"]
        'disable'
        >>> rcParam["torch_compile_mode"] == before
        True

    """
    from tiatoolbox import rcParam  # noqa: PLC0415

    previous = rcParam["torch_compile_mode"]
    if str(device).startswith("cpu"):
        rcParam["torch_compile_mode"] = "disable"
    try:
        yield
    finally:
        rcParam["torch_compile_mode"] = previous


def new_engine(
    name: str, model: nn.Module, *, batch_size: int, num_workers: int = 0, device: str = "cpu"
) -> Any:
    """A fresh engine ``name`` for ``model`` (TIAToolbox engines keep per-run state).

    Built under :func:`quiet_compile` (the engine compiles the model when it
    is constructed).

    Examples:
        >>> from torch import nn
        >>> engine = new_engine("PatchPredictor", nn.Identity(), batch_size=2)
        >>> type(engine).__name__, engine.batch_size
        ('PatchPredictor', 2)

    """
    cls = engine_class(name)
    with quiet_compile(device):
        return cls(
            model=model,
            batch_size=batch_size,
            num_workers=num_workers,
            device=device,
            verbose=False,
        )


def _patch_shape(patch_size: int | Sequence[int]) -> tuple[int, int]:
    sizes = (patch_size, patch_size) if np.ndim(patch_size) == 0 else tuple(patch_size)
    if len(sizes) != 2 or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in sizes
    ):
        msg = f"patch_size must be a positive int, got {patch_size!r}."
        raise ValueError(msg)
    return (int(sizes[0]), int(sizes[1]))


def read_ioconfig(
    patch_size: int | Sequence[int], mpp: float | None = None, *, segmentor: bool = False
) -> Any:
    """Engine IO config: non-overlapping ``patch_size`` patches read at ``mpp`` (or baseline).

    Args:
        patch_size: Patch (and stride) size in pixels at the read resolution:
            an int (square patches) or ``(height, width)``.
        mpp: Microns per pixel to read at; ``None`` reads the baseline level.
        segmentor: Build an ``IOSegmentorConfig`` (output shape and save
            resolution equal to the input's) instead of an
            ``IOPatchPredictorConfig``.

    Returns:
        The TIAToolbox IO config.

    Raises:
        ValueError: If ``patch_size`` is not a positive int (or a pair of
            them) or ``mpp`` not positive.

    Examples:
        >>> read_ioconfig(64).input_resolutions, read_ioconfig(64).stride_shape
        ([{'units': 'baseline', 'resolution': 1.0}], (64, 64))
        >>> type(read_ioconfig((32, 48), segmentor=True)).__name__
        'IOSegmentorConfig'

    """
    from tiatoolbox.models.engine.io_config import IOPatchPredictorConfig  # noqa: PLC0415

    size = _patch_shape(patch_size)
    if mpp is None:
        resolution: dict[str, Any] = {"units": "baseline", "resolution": 1.0}
    elif isinstance(mpp, (int, float, np.number)) and not isinstance(mpp, bool) and mpp > 0:
        resolution = {"units": "mpp", "resolution": float(mpp)}
    else:
        msg = f"mpp must be a positive number or None, got {mpp!r}."
        raise ValueError(msg)
    if segmentor:
        return segmentor_ioconfig(resolution, size)
    return IOPatchPredictorConfig(
        input_resolutions=[resolution], patch_input_shape=size, stride_shape=size
    )


def segmentor_ioconfig(
    resolution: dict[str, Any], shape: tuple[int, int], stride: tuple[int, int] | None = None
) -> Any:
    """``IOSegmentorConfig`` reading, predicting and saving at one resolution.

    Args:
        resolution: ``{"units": ..., "resolution": ...}`` of input, output and save.
        shape: Patch input (and output) shape ``(h, w)``.
        stride: Stride ``(h, w)`` (default: ``shape``, no overlap).

    Returns:
        The TIAToolbox ``IOSegmentorConfig``.

    Examples:
        >>> cfg = segmentor_ioconfig({"units": "mpp", "resolution": 0.5}, (32, 32), (16, 16))
        >>> cfg.patch_output_shape, cfg.stride_shape, cfg.save_resolution["resolution"]
        ((32, 32), (16, 16), 0.5)

    """
    from tiatoolbox.models.engine.io_config import IOSegmentorConfig  # noqa: PLC0415

    return IOSegmentorConfig(
        input_resolutions=[dict(resolution)],
        output_resolutions=[dict(resolution)],
        patch_input_shape=shape,
        patch_output_shape=shape,
        stride_shape=shape if stride is None else stride,
        save_resolution=dict(resolution),
    )


def run_patch_engine(
    name: str,
    model: nn.Module,
    images: np.ndarray,
    *,
    ioconfig: Any,
    batch_size: int,
    num_workers: int = 0,
    device: str = "cpu",
    return_probabilities: bool = False,
) -> dict[str, np.ndarray]:
    """One ``engine.run(patch_mode=True, output_type="dict")`` on same-size images.

    Args:
        name: The engine (one of :data:`ENGINE_NAMES`).
        model: The TIAToolbox-compatible model.
        images: ``(N, H, W, 3)`` uint8 images.
        ioconfig: The engine's IO config.
        batch_size: Patches per forward pass.
        num_workers: Data-loader workers.
        device: Torch device.
        return_probabilities: Ask the engine for class probabilities.

    Returns:
        The engine's output arrays (``predictions``, ``probabilities``,
        ``features``...), one row per image.

    """
    kwargs: dict[str, Any] = {"patch_mode": True, "ioconfig": ioconfig, "output_type": "dict"}
    if return_probabilities:
        kwargs["return_probabilities"] = True
    engine = new_engine(name, model, batch_size=batch_size, num_workers=num_workers, device=device)
    out = engine.run(images, **kwargs)
    return {key: np.asarray(value) for key, value in out.items()}


def stem_runs(paths: Sequence[str | Path]) -> list[list[int]]:
    """Indices of ``paths`` split into runs whose file stems are distinct.

    The engines name their WSI-mode outputs by file stem, so two slides with
    the same stem must go to different runs; the first run takes every path
    it can.

    Examples:
        >>> stem_runs(["a/s.tif", "b/s.tif", "a/t.tif", "c/s.svs"])
        [[0, 2], [1], [3]]

    """
    runs: list[list[int]] = []
    stems: list[set[str]] = []
    for index, path in enumerate(paths):
        stem = Path(path).stem
        for run, seen in zip(runs, stems, strict=True):
            if stem not in seen:
                run.append(index)
                seen.add(stem)
                break
        else:
            runs.append([index])
            stems.append({stem})
    return runs


def run_wsi_engine(
    model: nn.Module,
    wsi_paths: Sequence[str | Path],
    save_dir: str | Path,
    *,
    ioconfig: Any,
    engine: str = "DeepFeatureExtractor",
    batch_size: int = 32,
    num_workers: int = 0,
    device: str = "cpu",
    masks: Sequence[str | Path | np.ndarray | None] | None = None,
    auto_get_mask: bool = True,
    return_probabilities: bool = False,
    run_name: str = "run",
    progress: bool = False,
) -> list[Path]:
    """Run an engine in WSI mode and return each slide's zarr output.

    ``engine.run(paths, patch_mode=False, output_type="zarr")`` reads the
    patches of ``ioconfig`` from each slide (never the whole image) and
    writes one zarr per slide under ``save_dir``, in ``<run_name>_<k>``
    folders: the engine names its outputs by file stem, so paths sharing a
    stem go to different runs (:func:`stem_runs`). A fresh engine per run
    (with the package's workarounds: backbones returning ``[features]`` or an
    array both work; no ``torch.compile`` probe on CPU).

    Args:
        model: A TIAToolbox-compatible model (``infer_batch``, ``preproc_func``).
        wsi_paths: Slide files readable by TIAToolbox.
        save_dir: Folder for the engine's outputs (existing outputs of the same
            run folders are overwritten).
        ioconfig: Patch size, stride and read resolution (:func:`read_ioconfig`).
        engine: The engine (one of :data:`ENGINE_NAMES`).
        batch_size: Patches per engine batch.
        num_workers: Data-loader workers of the engine.
        device: ``"cpu"`` or ``"cuda"``.
        masks: Optional tissue mask per slide (an image file or a binary
            array covering the slide, any size); ``None`` entries: the whole
            slide, or the automatic mask with ``auto_get_mask``.
        auto_get_mask: TIAToolbox's tissue mask (``WSIReader.tissue_mask``)
            for slides without a mask: patches without tissue are not read.
        return_probabilities: Ask the engine for class probabilities.
        run_name: Prefix of the run folders.
        progress: Show a tqdm bar over the runs.

    Returns:
        The zarr output of each slide, in input order. Its ``coordinates``
        are patch bounds in pixels at the ``ioconfig`` resolution.

    Raises:
        ValueError: If ``wsi_paths`` is empty, ``masks`` and ``wsi_paths``
            differ in length, or (from the engine) no patch remains after masking.
        FileNotFoundError: If a slide or mask file is missing.
        RuntimeError: If the engine returns no output for a slide.

    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    paths = [Path(p) for p in wsi_paths]
    if not paths:
        msg = "wsi_paths is empty."
        raise ValueError(msg)
    mask_list = list(masks) if masks is not None else [None] * len(paths)
    if len(mask_list) != len(paths):
        msg = f"masks has {len(mask_list)} entries for {len(paths)} wsi_paths."
        raise ValueError(msg)
    files = [m for m in mask_list if isinstance(m, (str, Path))]
    for path in [*paths, *files]:
        if not Path(path).is_file():
            msg = f"File {path} does not exist."
            raise FileNotFoundError(msg)
    save_dir = Path(save_dir)
    zarrs: dict[int, Path] = {}
    runs = stem_runs(paths)
    for k, run in enumerate(tqdm(runs, desc="engine runs", disable=not progress)):
        kwargs: dict[str, Any] = {
            "patch_mode": False,
            "save_dir": save_dir / f"{run_name}_{k}",
            "output_type": "zarr",
            "ioconfig": ioconfig,
            "overwrite": True,
            "auto_get_mask": auto_get_mask,
        }
        if any(mask_list[i] is not None for i in run):
            kwargs["masks"] = [mask_list[i] for i in run]
        if return_probabilities:
            kwargs["return_probabilities"] = True
        runner = new_engine(
            engine, model, batch_size=batch_size, num_workers=num_workers, device=device
        )
        outputs = runner.run([paths[i] for i in run], **kwargs)
        by_src = {str(Path(src)): Path(dst) for src, dst in outputs.items()}
        by_stem = {Path(src).stem: Path(dst) for src, dst in outputs.items()}
        for i in run:  # stems are distinct within a run
            found = by_src.get(str(paths[i]), by_stem.get(paths[i].stem))
            if found is None:
                msg = f"The engine returned no output for {paths[i]} (got {list(outputs)})."
                raise RuntimeError(msg)
            zarrs[i] = found
    return [zarrs[i] for i in range(len(paths))]


def open_output_array(zarr_path: str | Path, key: str) -> Any:
    """The (lazy) array ``key`` of an engine's zarr output.

    Raises:
        ValueError: If the output has no array ``key``.

    Examples:
        >>> import tempfile, zarr
        >>> path = tempfile.mkdtemp() + "/out.zarr"
        >>> _ = zarr.open_group(path, mode="w").create_array("predictions", data=np.zeros((2, 3)))
        >>> open_output_array(path, "predictions").shape
        (2, 3)

    """
    import zarr  # noqa: PLC0415

    group = zarr.open_group(str(zarr_path), mode="r")
    if key not in group:
        msg = f"Engine output {zarr_path} has no {key!r} array (found {sorted(group.keys())})."
        raise ValueError(msg)
    return group[key]


def read_wsi_features(zarr_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(features (N, D) float32, coordinates (N, 4) int64)`` of a WSI-mode engine output.

    Both arrays are read chunk by chunk (along ``N``) into preallocated arrays,
    so no second copy of the features is made.

    Raises:
        ValueError: If the zarr lacks ``features`` or ``coordinates``, or their
            lengths differ.

    Examples:
        >>> import tempfile, zarr
        >>> path = tempfile.mkdtemp() + "/out.zarr"
        >>> group = zarr.open_group(path, mode="w")
        >>> _ = group.create_array("features", data=np.ones((3, 2), np.float32))
        >>> _ = group.create_array("coordinates", data=np.zeros((3, 4), np.int64))
        >>> [a.shape for a in read_wsi_features(path)]
        [(3, 2), (3, 4)]

    """
    import zarr  # noqa: PLC0415

    group = zarr.open_group(str(zarr_path), mode="r")
    if "features" not in group or "coordinates" not in group:
        msg = f"Engine output {zarr_path} lacks features/coordinates (has {sorted(group)})."
        raise ValueError(msg)
    source, boxes = group["features"], group["coordinates"]
    n = int(source.shape[0])
    if int(boxes.shape[0]) != n:
        msg = f"Engine output {zarr_path} has {n} features but {boxes.shape[0]} coordinates."
        raise ValueError(msg)
    dim = int(np.prod(source.shape[1:], dtype=np.int64))
    features = np.empty((n, dim), dtype=np.float32)
    coordinates = np.empty((n, *boxes.shape[1:]), dtype=np.int64)
    step = max(1, int(source.chunks[0]))
    for start in range(0, n, step):
        stop = min(n, start + step)
        features[start:stop] = np.asarray(source[start:stop]).reshape(stop - start, dim)
        coordinates[start:stop] = np.asarray(boxes[start:stop])
    return features, coordinates
