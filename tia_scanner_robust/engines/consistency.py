"""Scanner-consistency evaluation of a model through TIAToolbox's own engines.

:class:`ScannerConsistencyEvaluator` runs a model on every scanner's images of
a :class:`~tia_scanner_robust.data.paired.PairedCollection` with the TIAToolbox
engine that fits the task, aligns the outputs by specimen (and location), and
computes the SCORPION / ScanGen consistency metrics:

==================  ========================  ===========================
task                engine                    pair scores
==================  ========================  ===========================
``segmentation``    ``SemanticSegmentor``     paired Dice
``classification``  ``PatchPredictor``        label agreement, ``|dp|``
``embedding``       ``DeepFeatureExtractor``  cosine, top-k retrieval
==================  ========================  ===========================

Patch datasets (PNG/JPEG tiles) run in patch mode: each scanner's images are
stacked in specimen order and passed to the engine's ``run()``, in chunks of
``chunk_size`` specimens so that memory stays bounded (the streaming metric
classes of :mod:`tia_scanner_robust.metrics.consistency` receive each chunk).
Whole-slide images run in WSI mode (``patch_mode=False``, ``output_type="zarr"``)
once per scanner; the per-region predictions are then read back lazily, block
by block, from the engines' zarr outputs.

Every number is kept in an :class:`EvaluationResult`; :mod:`tia_scanner_robust.report`
turns it into ``report.json`` and a self-contained ``report.html``.

Examples:
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from tiatoolbox.data import stain_norm_target
    >>> from tia_scanner_robust._io import atomic_write_image
    >>> from tia_scanner_robust.data.paired import PairedCollection, PairedSample
    >>> root = Path(tempfile.mkdtemp())
    >>> tile = stain_norm_target()[:96, :96]
    >>> samples = []
    >>> for scanner, image in (("A", tile), ("B", tile), ("C", tile[..., ::-1].copy())):
    ...     path = atomic_write_image(root / f"{scanner}.png", image)
    ...     samples.append(PairedSample("s/1", scanner, path=path))
    >>> evaluator = ScannerConsistencyEvaluator("builtin", verbose=False)
    >>> result = evaluator.evaluate(PairedCollection(samples), root / "out")
    >>> result.consistency["dice"].pairs[("A", "B")]
    1.0
    >>> result.min_pair
    ('A', 'C')

"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import platform
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.engines import _wsi
from tia_scanner_robust.engines.loading import resolve_model
from tia_scanner_robust.seeding import seed_everything

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from torch import nn

    from tia_scanner_robust.data.paired import PairedCollection, PairedSample
    from tia_scanner_robust.metrics.functional import CoVResult, PairConsistency

__all__ = [
    "PRIMARY_SCORE",
    "SIZE_POLICIES",
    "TASKS",
    "EvaluationResult",
    "ExamplePair",
    "ScannerConsistencyEvaluator",
    "sample_id",
]

#: Tasks and the TIAToolbox engine each uses.
TASKS = {
    "segmentation": "SemanticSegmentor",
    "classification": "PatchPredictor",
    "embedding": "DeepFeatureExtractor",
}
#: The headline pair score of each task (its matrix is the report's heatmap).
PRIMARY_SCORE = {"segmentation": "dice", "classification": "agreement", "embedding": "cosine"}
#: How patch datasets with images of several sizes are fed to a patch-mode engine.
SIZE_POLICIES = ("auto", "group", "resize")

_EXAMPLE_SIDE = 384


def sample_id(specimen_id: str, magnification: str | None) -> str:
    """The id of a pairing unit in results: ``specimen`` or ``specimen@magnification``.

    Examples:
        >>> sample_id("slide_1/sample_2", None), sample_id("s/1", "20x")
        ('slide_1/sample_2', 's/1@20x')

    """
    return specimen_id if magnification is None else f"{specimen_id}@{magnification}"


@dataclass
class ExamplePair:
    """One specimen seen by two scanners, with the model's outputs (for the report).

    Attributes:
        specimen_id: The sample id.
        scanners: The two scanners.
        images: Their RGB uint8 images (downsampled to at most 384 px).
        predictions: Their label maps (segmentation) resized like the images,
            else ``None``.
        score: The pair score of this specimen.
        score_name: Name of that score (``"dice"``...).
        captions: One line per scanner (e.g. class fractions or probabilities).
    """

    specimen_id: str
    scanners: tuple[str, str]
    images: tuple[np.ndarray, np.ndarray]
    predictions: tuple[np.ndarray | None, np.ndarray | None]
    score: float
    score_name: str
    captions: tuple[str, str] = ("", "")


@dataclass
class EvaluationResult:
    """Everything an evaluation measured.

    Attributes:
        task: ``"segmentation"``, ``"classification"`` or ``"embedding"``.
        mode: ``"patch"`` or ``"wsi"``.
        model: Short description of the model.
        scanners: Scanner names (canonical order; the first is the reference).
        sample_ids: Pairing units in order (``specimen`` or ``specimen@mag``).
        consistency: Pair-score name -> :class:`PairConsistency` (matrix, pairs,
            per-sample values, average, minimum and worst pair).
        primary: Name of the headline score (see :data:`PRIMARY_SCORE`).
        cov: CoV across scanners of a per-specimen scalar (classification:
            positive-class probability; segmentation: fraction of pixels in
            ``cov_class``); ``None`` for embeddings.
        magnification_cov: CoV across magnifications of the same scanner, when
            the collection has several magnifications.
        per_scanner: Scanner -> summary numbers (task metrics against ground
            truth when labels/masks exist, means, inference time).
        per_sample: Quantity -> scanner -> per-sample values aligned with
            ``sample_ids`` (NaN where undefined).
        class_dict: The model's class names, if known.
        config: The evaluator's settings.
        timings: Seconds spent per stage and per scanner.
        versions: Package versions.
        prediction_paths: Scanner -> saved predictions (zarr), if kept.
        examples: Worst-pair examples for the report (not serialised).
        rgb_stats: Scanner -> ``(N, 6)`` mean and std of R, G, B per sample.
        outputs: Scanner -> ``(N, ...)`` per-sample outputs for small outputs
            (classification probabilities, embeddings); ``None`` for
            segmentation (saved as zarr instead).
        out_dir: Where the evaluation wrote its files.
    """

    task: str
    mode: str
    model: str
    scanners: list[str]
    sample_ids: list[str]
    consistency: dict[str, PairConsistency]
    primary: str
    cov: CoVResult | None = None
    magnification_cov: CoVResult | None = None
    per_scanner: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_sample: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    class_dict: dict[int, str] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    prediction_paths: dict[str, str] = field(default_factory=dict)
    examples: list[ExamplePair] = field(default_factory=list, repr=False)
    rgb_stats: dict[str, np.ndarray] | None = field(default=None, repr=False)
    outputs: dict[str, np.ndarray] | None = field(default=None, repr=False)
    out_dir: Path | None = None

    @property
    def primary_result(self) -> PairConsistency:
        """The :class:`PairConsistency` of the headline score."""
        return self.consistency[self.primary]

    @property
    def average(self) -> float:
        """Average of the headline score over scanner pairs."""
        return self.primary_result.average

    @property
    def minimum(self) -> float:
        """Minimum of the headline score over scanner pairs."""
        return self.primary_result.minimum

    @property
    def min_pair(self) -> tuple[str, str] | None:
        """The scanner pair with the lowest headline score."""
        return self.primary_result.min_pair

    @property
    def worst_pair(self) -> tuple[str, str] | None:
        """The worst pair of the headline score (lowest, or highest for a distance)."""
        return self.primary_result.worst_pair

    def summary(self) -> str:
        """A few human-readable lines: average/minimum score and the worst pair.

        Examples:
            >>> from tia_scanner_robust.metrics.functional import pairwise_consistency
            >>> pc = pairwise_consistency({"A": [0, 1], "B": [0, 0]}, "agreement")
            >>> r = EvaluationResult(
            ...     "classification",
            ...     "patch",
            ...     "m",
            ...     ["A", "B"],
            ...     ["x", "y"],
            ...     {"agreement": pc},
            ...     "agreement",
            ... )
            >>> print(r.summary())
            task classification (patch mode), model m, 2 scanners x 2 specimens
            agreement: average 0.5000, minimum 0.5000, worst pair A vs B

        """
        pc = self.primary_result
        worst = " vs ".join(pc.worst_pair) if pc.worst_pair else "n/a"
        lines = [
            (
                f"task {self.task} ({self.mode} mode), model {self.model}, "
                f"{len(self.scanners)} scanners x {len(self.sample_ids)} specimens"
            ),
            (
                f"{self.primary}: average {pc.average:.4f}, minimum {pc.minimum:.4f}, "
                f"worst pair {worst}"
            ),
        ]
        if self.cov is not None and not math.isnan(self.cov.cov):
            lines.append(
                f"CoV across scanners ({self.config.get('cov_quantity', 'prediction')}): "
                f"{self.cov.cov:.4f} over {self.cov.n_used} specimens"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Every number as strict JSON (NaN -> ``None``; pair keys ``"a|b"``)."""
        from tia_scanner_robust.metrics.functional import to_jsonable  # noqa: PLC0415

        pc = self.primary_result
        out: dict[str, Any] = {
            "task": self.task,
            "mode": self.mode,
            "model": self.model,
            "scanners": self.scanners,
            "reference_scanner": self.scanners[0],
            "n_specimens": len(self.sample_ids),
            "sample_ids": self.sample_ids,
            "primary_score": self.primary,
            "summary": {
                "average": pc.average,
                "minimum": pc.minimum,
                "min_pair": list(pc.min_pair) if pc.min_pair else None,
                "worst": pc.worst,
                "worst_pair": list(pc.worst_pair) if pc.worst_pair else None,
                "higher_is_better": pc.higher_is_better,
                "cov": None if self.cov is None else self.cov.cov,
            },
            "consistency": {name: res.to_dict() for name, res in self.consistency.items()},
            "cov": None if self.cov is None else self.cov.to_dict(),
            "magnification_cov": None
            if self.magnification_cov is None
            else self.magnification_cov.to_dict(),
            "per_scanner": self.per_scanner,
            "per_sample": self.per_sample,
            "class_dict": self.class_dict,
            "rgb_stats": None
            if self.rgb_stats is None
            else {
                "columns": ["mean_R", "mean_G", "mean_B", "std_R", "std_G", "std_B"],
                "values": self.rgb_stats,
            },
            "examples": [
                {
                    "specimen_id": ex.specimen_id,
                    "scanners": list(ex.scanners),
                    "score": ex.score,
                    "score_name": ex.score_name,
                    "captions": list(ex.captions),
                }
                for ex in self.examples
            ],
            "prediction_paths": self.prediction_paths,
            "config": self.config,
            "timings": self.timings,
            "versions": self.versions,
            "out_dir": self.out_dir,
        }
        return to_jsonable(out)


# --------------------------------------------------------------------------- #
# Engines
# --------------------------------------------------------------------------- #
@functools.cache
def _feature_extractor_class() -> type:
    """``DeepFeatureExtractor`` whose model outputs work in both modes.

    TIAToolbox 2.1.3's feature extractor indexes ``batch_output[0]`` in WSI
    mode (so backbones return ``[features]``) but concatenates the raw output
    in patch mode (where that list breaks batching). This subclass normalises
    ``infer_batch``'s output to an array in patch mode and to a one-element
    list in WSI mode, so any backbone works in both.
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


def _engine_class(task: str) -> type:
    if task == "segmentation":
        from tiatoolbox.models.engine.semantic_segmentor import (  # noqa: PLC0415
            SemanticSegmentor,
        )

        return SemanticSegmentor
    if task == "classification":
        from tiatoolbox.models.engine.patch_predictor import PatchPredictor  # noqa: PLC0415

        return PatchPredictor
    return _feature_extractor_class()


@contextlib.contextmanager
def _quiet_compile(device: str) -> Iterator[None]:
    """On CPU, skip TIAToolbox's torch.compile probe (it only warns there)."""
    from tiatoolbox import rcParam  # noqa: PLC0415

    previous = rcParam["torch_compile_mode"]
    if str(device).startswith("cpu"):
        rcParam["torch_compile_mode"] = "disable"
    try:
        yield
    finally:
        rcParam["torch_compile_mode"] = previous


def _resize(image: np.ndarray, shape: tuple[int, int], *, nearest: bool) -> np.ndarray:
    import cv2  # noqa: PLC0415

    if tuple(image.shape[:2]) == tuple(shape):
        return image
    if nearest:
        interp = cv2.INTER_NEAREST
    elif shape[0] < image.shape[0]:
        interp = cv2.INTER_AREA
    else:
        interp = cv2.INTER_LINEAR
    src = image.astype(np.int32) if image.dtype.kind in "iub" and nearest else image
    out = cv2.resize(src, (int(shape[1]), int(shape[0])), interpolation=interp)
    return out.astype(image.dtype, copy=False)


def _centre_crop(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = array.shape[:2]
    th, tw = int(shape[0]), int(shape[1])
    if (h, w) == (th, tw) or th > h or tw > w:
        return array
    y0, x0 = (h - th) // 2, (w - tw) // 2
    return array[y0 : y0 + th, x0 : x0 + tw]


def _versions() -> dict[str, str]:
    import importlib.metadata as md  # noqa: PLC0415

    out = {"python": platform.python_version()}
    for name in ("tia-scanner-robust", "tiatoolbox", "torch", "numpy", "zarr"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _downsample(image: np.ndarray, *, nearest: bool, side: int = _EXAMPLE_SIDE) -> np.ndarray:
    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale >= 1.0:
        return image
    return _resize(image, (max(1, round(h * scale)), max(1, round(w * scale))), nearest=nearest)


def _rgb_stats(image: np.ndarray) -> np.ndarray:
    """Mean and std of R, G, B (the SCORPION paired-analysis statistics)."""
    from tia_scanner_robust.metrics.analysis import rgb_patch_statistics  # noqa: PLC0415

    return rgb_patch_statistics([image])[0]


class _ZarrWriter:
    """Per-scanner prediction store written to a temporary folder, renamed when done."""

    def __init__(self, path: Path, attrs: dict[str, Any]) -> None:
        import zarr  # noqa: PLC0415

        self.final = path
        self.tmp = path.with_name(f".{path.name}.tmp")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.group = zarr.open_group(str(self.tmp), mode="w")
        self.group.attrs.update(attrs)
        self.count = 0

    def add(self, key: str, rows: list[np.ndarray]) -> None:
        """Append rows: label maps go to ``samples/<index>``, vectors to ``key``."""
        if not rows:
            return
        if key == "samples":
            for row in rows:
                self.group.create_array(
                    f"samples/{self.count:06d}", data=np.ascontiguousarray(row), overwrite=True
                )
                self.count += 1
            return
        data = np.stack(rows).astype(np.float32)
        if key not in self.group:
            arr = self.group.create_array(
                key, shape=(0, *data.shape[1:]), dtype=data.dtype, chunks=(1024, *data.shape[1:])
            )
        else:
            arr = self.group[key]
        old = arr.shape[0]
        arr.resize((old + data.shape[0], *data.shape[1:]))
        arr[old:] = data
        self.count = old + data.shape[0]

    def close(self) -> Path:
        """Move the finished store into place (replacing an older one)."""
        if self.final.exists():
            shutil.rmtree(self.final)
        self.tmp.rename(self.final)
        return self.final


@dataclass
class _Accumulator:
    """Per-scanner values gathered while the engines run."""

    per_sample: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    scalars: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    labels: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    rgb: dict[str, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    outputs: dict[str, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))


# --------------------------------------------------------------------------- #
# The evaluator
# --------------------------------------------------------------------------- #
class ScannerConsistencyEvaluator:
    """Measure how much a model's outputs change between scanners.

    Args:
        model: What to evaluate: ``"builtin"`` (the offline colour-deconvolution
            segmenter, default), a TIAToolbox pretrained name (weights from the
            Hugging Face hub, or from ``weights``), a checkpoint file written by
            the plugin, or an ``nn.Module`` (a TIAToolbox ``ModelABC``). See
            :func:`~tia_scanner_robust.engines.loading.resolve_model`.
        task: ``"segmentation"``, ``"classification"`` or ``"embedding"``.
        weights: Local weights for a pretrained name or module.
        ioconfig: TIAToolbox IO config. Default: the model's own (pretrained
            models, the builtin model, models with an ``ioconfig`` attribute);
            in patch mode a config with each image group's size is derived
            from it (or built with ``baseline`` units when there is none).
        batch_size: Patches per forward pass.
        num_workers: Data-loader workers of the engine.
        device: Torch device (``"cpu"``, ``"cuda"``...).
        chunk_size: Patch mode: specimens per engine call (bounds memory).
            ``None`` runs every specimen of a scanner in one call.
        size_policy: Patch mode with images of several sizes (or not the
            model's input size): ``"group"`` runs one engine call per image
            size (fully convolutional models), ``"resize"`` resizes every image
            to the IO config's ``patch_input_shape``; ``"auto"`` (default)
            groups for models declaring ``fully_convolutional = True`` (the
            builtin model) and resizes otherwise.
        num_classes: Segmentation: number of classes (default: from the
            model's ``class_dict``, else inferred).
        ignore_background: Segmentation: skip class 0 in Dice (paired and
            against ground truth).
        cov_class: Segmentation: the class whose pixel fraction is the
            per-specimen scalar of the CoV (default: the class whose name
            contains "nucle", else 1).
        target_map: Segmentation: ``{predicted label: ground-truth label}``
            applied to predictions before scoring against masks (e.g.
            ``{0: 0, 1: 0, 2: 1}`` scores the builtin model's nuclei against a
            binary nuclei mask). Default: identity; for the builtin model with
            binary masks, nuclei vs the rest.
        positive_class: Classification: class whose probability is the
            per-specimen scalar of the CoV (and the score of the AUC for two
            classes).
        ks: Embedding: top-k values of the retrieval accuracy.
        n_examples: Worst-pair examples kept for the report.
        save_predictions: Keep per-scanner predictions (zarr) in ``out_dir``.
        auto_get_mask: WSI mode without regions: restrict the engine to
            TIAToolbox's automatic tissue mask.
        seed: Seed for every random number generator.
        verbose: Show progress bars.

    Raises:
        ValueError: On an unknown task or policy, or a model that cannot be resolved.

    Examples:
        >>> ScannerConsistencyEvaluator("builtin").task
        'segmentation'
        >>> ScannerConsistencyEvaluator("builtin", task="regression")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Unknown task 'regression'; valid values: segmentation, ...

    """

    def __init__(
        self,
        model: str | Path | nn.Module = "builtin",
        task: str = "segmentation",
        *,
        weights: str | Path | None = None,
        ioconfig: Any = None,
        batch_size: int = 8,
        num_workers: int = 0,
        device: str = "cpu",
        chunk_size: int | None = 64,
        size_policy: str = "auto",
        num_classes: int | None = None,
        ignore_background: bool = False,
        cov_class: int | None = None,
        target_map: dict[int, int] | None = None,
        positive_class: int = 1,
        ks: Sequence[int] = (1, 3, 5, 10),
        n_examples: int = 1,
        save_predictions: bool = True,
        auto_get_mask: bool = True,
        seed: int = 0,
        verbose: bool = True,
    ) -> None:
        self.task = check_in_choices(task, TASKS, "task")
        self.size_policy = check_in_choices(size_policy, SIZE_POLICIES, "size_policy")
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("n_examples", n_examples, 0),
        ):
            if isinstance(value, bool) or int(value) != value or value < low:
                msg = f"{name} must be an integer >= {low}, got {value!r}."
                raise ValueError(msg)
        if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
            msg = f"chunk_size must be a positive integer or None, got {chunk_size!r}."
            raise ValueError(msg)
        self.model_spec = model if isinstance(model, (str, Path)) else type(model).__name__
        self.model, model_ioconfig, self.model_name = resolve_model(model, weights=weights)
        self.ioconfig = ioconfig if ioconfig is not None else model_ioconfig
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.device = str(device)
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.class_dict = getattr(self.model, "class_dict", None) or None
        self.num_classes = num_classes
        self.ignore_background = bool(ignore_background)
        self.cov_class = cov_class
        self.target_map = (
            None if target_map is None else {int(k): int(v) for k, v in target_map.items()}
        )
        self.positive_class = int(positive_class)
        self.ks = tuple(int(k) for k in ks)
        self.n_examples = int(n_examples)
        self.save_predictions = bool(save_predictions)
        self.auto_get_mask = bool(auto_get_mask)
        self.seed = int(seed)
        self.verbose = bool(verbose)
        self.fully_convolutional = bool(getattr(self.model, "fully_convolutional", False))
        self._timings: dict[str, float] = defaultdict(float)

    # ----------------------------------------------------------------- config
    def config(self) -> dict[str, Any]:
        """The evaluator's settings (for the report)."""
        return {
            "model": str(self.model_spec),
            "model_description": self.model_name,
            "task": self.task,
            "engine": TASKS[self.task],
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "device": self.device,
            "chunk_size": self.chunk_size,
            "size_policy": self._effective_size_policy(),
            "num_classes": self._num_classes(),
            "ignore_background": self.ignore_background,
            "cov_class": self._cov_class() if self.task == "segmentation" else None,
            "cov_quantity": self._cov_quantity(),
            "target_map": self.target_map,
            "positive_class": self.positive_class,
            "ks": list(self.ks),
            "save_predictions": self.save_predictions,
            "auto_get_mask": self.auto_get_mask,
            "seed": self.seed,
            "ioconfig": None if self.ioconfig is None else _ioconfig_dict(self.ioconfig),
            "model_config": _model_config(self.model),
        }

    def _effective_size_policy(self) -> str:
        if self.size_policy != "auto":
            return self.size_policy
        return "group" if self.fully_convolutional else "resize"

    def _num_classes(self) -> int | None:
        if self.num_classes is not None:
            return int(self.num_classes)
        if self.task == "segmentation" and self.class_dict:
            return len(self.class_dict)
        return None

    def _cov_class(self) -> int:
        if self.cov_class is not None:
            return int(self.cov_class)
        for index, name in (self.class_dict or {}).items():
            if "nucle" in str(name).lower():
                return int(index)
        return 1

    def _cov_quantity(self) -> str | None:
        if self.task == "segmentation":
            name = (self.class_dict or {}).get(self._cov_class(), f"class {self._cov_class()}")
            return f"fraction of pixels predicted as {name}"
        if self.task == "classification":
            return f"probability of class {self.positive_class}"
        return None

    # ---------------------------------------------------------------- engines
    def _engine(self) -> Any:
        """A fresh engine (TIAToolbox engines keep per-run state such as drop_keys)."""
        cls = _engine_class(self.task)
        with _quiet_compile(self.device):
            return cls(
                model=self.model,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                device=self.device,
                verbose=False,
            )

    def _base_ioconfig(self, shape: tuple[int, int]) -> Any:
        from tiatoolbox.models.engine.io_config import (  # noqa: PLC0415
            IOPatchPredictorConfig,
            IOSegmentorConfig,
        )

        if self.ioconfig is not None:
            return self.ioconfig
        res = {"units": "baseline", "resolution": 1.0}
        if self.task == "segmentation":
            return IOSegmentorConfig(
                input_resolutions=[dict(res)],
                output_resolutions=[dict(res)],
                patch_input_shape=shape,
                patch_output_shape=shape,
                stride_shape=shape,
                save_resolution=dict(res),
            )
        return IOPatchPredictorConfig(
            input_resolutions=[dict(res)], patch_input_shape=shape, stride_shape=shape
        )

    def _patch_ioconfig(self, shape: tuple[int, int]) -> Any:
        """IO config whose input (and, when equal, output) shape is ``shape``."""
        base = self._base_ioconfig(shape)
        current = tuple(int(v) for v in base.patch_input_shape)
        if current == tuple(shape):
            return base
        changes: dict[str, Any] = {"patch_input_shape": tuple(shape), "stride_shape": tuple(shape)}
        out_shape = getattr(base, "patch_output_shape", None)
        if out_shape is not None and tuple(int(v) for v in out_shape) == current:
            changes["patch_output_shape"] = tuple(shape)
        return dataclasses.replace(base, **changes)

    def _model_input_shape(self) -> tuple[int, int] | None:
        if self.ioconfig is None:
            return None
        return tuple(int(v) for v in self.ioconfig.patch_input_shape)

    def _run_patch_engine(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """One ``engine.run(patch_mode=True)`` call on same-size images."""
        shape = (int(images.shape[1]), int(images.shape[2]))
        kwargs: dict[str, Any] = {
            "patch_mode": True,
            "ioconfig": self._patch_ioconfig(shape),
            "output_type": "dict",
        }
        if self.task == "classification":
            kwargs["return_probabilities"] = True
        out = self._engine().run(images, **kwargs)
        if self.task == "segmentation":
            return {"predictions": np.asarray(out["predictions"])}
        if self.task == "classification":
            probs = np.asarray(out["probabilities"], dtype=np.float64)
            return {"probabilities": probs.reshape(probs.shape[0], -1)}
        feats = np.asarray(out["features"], dtype=np.float64)
        return {"features": feats.reshape(feats.shape[0], -1)}

    def _infer_images(self, images: list[np.ndarray]) -> list[dict[str, Any]]:
        """Per-image outputs of a list of RGB images (grouped by size or resized)."""
        policy = self._effective_size_policy()
        target = self._model_input_shape()
        prepared = []
        for image in images:
            in_shape = tuple(image.shape[:2])
            if policy == "resize" and target is not None and in_shape != target:
                prepared.append((_resize(image, target, nearest=False), in_shape))
            else:
                prepared.append((image, in_shape))
        by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, (image, _) in enumerate(prepared):
            by_shape[tuple(image.shape[:2])].append(i)
        results: list[dict[str, Any]] = [{} for _ in images]
        for shape, index in by_shape.items():
            stacked = np.stack([prepared[i][0] for i in index])
            out = self._run_patch_engine(stacked)
            for row, i in enumerate(index):
                results[i] = {key: value[row] for key, value in out.items()}
                results[i]["model_input_shape"] = shape
                results[i]["image_shape"] = prepared[i][1]
        return results

    # ------------------------------------------------------------- evaluate
    def evaluate(self, collection: PairedCollection, out_dir: str | Path) -> EvaluationResult:
        """Run the model on every scanner and compute the consistency metrics.

        Args:
            collection: A paired collection (always complete: every specimen
                has every scanner) of patches or of WSIs, with at least two scanners.
            out_dir: Folder for saved predictions and engine outputs (created).

        Returns:
            An :class:`EvaluationResult` (write it with
            :func:`tia_scanner_robust.report.write_report`).

        Raises:
            TypeError: If ``collection`` is not a ``PairedCollection``.
            ValueError: If it has fewer than two scanners or mixes patches and WSIs.

        """
        from tia_scanner_robust.data.paired import PairedCollection  # noqa: PLC0415

        if not isinstance(collection, PairedCollection):
            msg = f"collection must be a PairedCollection, got {type(collection).__name__}."
            raise TypeError(msg)
        if len(collection.scanners) < 2:
            msg = (
                f"collection has {len(collection.scanners)} scanner(s) "
                f"{collection.scanners}; consistency needs at least 2."
            )
            raise ValueError(msg)
        kinds = {s.is_wsi for s in collection}
        if len(kinds) != 1:
            msg = "collection mixes patch images and whole-slide images; evaluate them separately."
            raise ValueError(msg)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(self.seed)
        self._timings = defaultdict(float)
        start = time.perf_counter()
        if kinds.pop():
            result = self._evaluate_wsi(collection, out_dir)
        else:
            result = self._evaluate_patches(collection, out_dir)
        self._timings["total_seconds"] = time.perf_counter() - start
        result.timings = dict(self._timings)
        result.versions = _versions()
        result.config = self.config()
        result.out_dir = out_dir
        return result

    # ----------------------------------------------------------- shared bits
    def _metrics(self, scanners: list[str], *, nan_policy: str = "raise") -> Any:
        from tia_scanner_robust.metrics.consistency import ScannerConsistency  # noqa: PLC0415

        kwargs: dict[str, Any] = {}
        if self.task == "segmentation":
            kwargs = {"ignore_background": self.ignore_background}
        elif self.task == "embedding":
            kwargs = {"ks": self.ks}
        return ScannerConsistency(self.task, scanners=scanners, nan_policy=nan_policy, **kwargs)

    def _target_map_for(self, mask: np.ndarray) -> dict[int, int] | None:
        if self.target_map is not None:
            return self.target_map
        if self.model_name == "builtin" and int(mask.max(initial=0)) <= 1:
            return {0: 0, 1: 0, 2: 1}  # nuclei vs the rest against a binary mask
        return None

    def _gt_dice(self, pred: np.ndarray, mask: np.ndarray) -> float:
        from tia_scanner_robust.metrics.functional import dice_score  # noqa: PLC0415

        mapping = self._target_map_for(mask)
        if mapping is not None:
            lut = np.arange(max(int(pred.max(initial=0)), *mapping) + 1)
            for k, v in mapping.items():
                lut[k] = v
            pred = lut[pred]
        return float(
            dice_score(pred[None], mask[None], ignore_background=self.ignore_background)[0]
        )

    def _scalar(self, output: dict[str, Any]) -> float:
        """The per-specimen scalar whose CoV across scanners is reported."""
        if self.task == "segmentation":
            pred = output["predictions"]
            return float(np.mean(pred == self._cov_class()))
        if self.task == "classification":
            probs = output["probabilities"]
            column = self.positive_class if probs.size > 1 else 0
            if column >= probs.size:
                msg = (
                    f"positive_class={self.positive_class} but the model outputs "
                    f"{probs.size} class probabilities."
                )
                raise ValueError(msg)
            return float(probs[column])
        return float("nan")

    def _finish_cov(
        self,
        scalars: dict[str, list[float]],
        groups: list[tuple[str, str | None]],
        scanners: list[str],
    ) -> tuple[Any, Any]:
        from tia_scanner_robust.metrics.functional import (  # noqa: PLC0415
            coefficient_of_variation,
            magnification_cov,
        )

        if self.task == "embedding":
            return None, None
        ids = [sample_id(s, m) for s, m in groups]
        values = np.array([scalars[s] for s in scanners], dtype=np.float64).T  # (N, S)
        cov = coefficient_of_variation(values, specimen_ids=ids)
        mags = {m for _, m in groups}
        mag_cov = None
        if len(mags) > 1 and None not in mags:
            flat = values.ravel()
            spec = np.repeat([s for s, _ in groups], len(scanners))
            scan = np.tile(scanners, len(groups))
            mag = np.repeat([m for _, m in groups], len(scanners))
            keep = ~np.isnan(flat)
            mag_cov = magnification_cov(flat[keep], spec[keep], scan[keep], mag[keep])
        return cov, mag_cov

    def _per_scanner_summary(
        self,
        scanners: list[str],
        per_sample: dict[str, dict[str, list[float]]],
        labels: dict[str, list[Any]],
        outputs: dict[str, list[np.ndarray]] | None,
    ) -> dict[str, dict[str, Any]]:
        from tia_scanner_robust.metrics.functional import roc_auc  # noqa: PLC0415

        summary: dict[str, dict[str, Any]] = {}
        for scanner in scanners:
            row: dict[str, Any] = {"inference_seconds": self._timings.get(f"infer/{scanner}", 0.0)}
            for quantity, values in per_sample.items():
                arr = np.asarray(values.get(scanner, []), dtype=np.float64)
                row[f"n_{quantity}"] = int((~np.isnan(arr)).sum())
                row[f"mean_{quantity}"] = float(np.nanmean(arr)) if (~np.isnan(arr)).any() else None
            if self.task == "classification" and outputs is not None:
                probs = np.stack(outputs[scanner])
                lab = labels.get(scanner, [])
                row["mean_probabilities"] = probs.mean(axis=0)
                if lab and all(v is not None for v in lab):
                    y = np.asarray(lab, dtype=np.int64)
                    row["accuracy"] = float(np.mean(probs.argmax(axis=1) == y))
                    if len(np.unique(y)) > 1:
                        scores = probs[:, 1] if probs.shape[1] == 2 else probs
                        with contextlib.suppress(ValueError):
                            row["auc"] = roc_auc(y, scores)
            if self.task == "embedding" and outputs is not None:
                feats = np.stack(outputs[scanner])
                row["feature_dim"] = int(feats.shape[1])
                row["mean_feature_norm"] = float(np.linalg.norm(feats, axis=1).mean())
            summary[scanner] = row
        return summary

    # ------------------------------------------------------------ patch mode
    def _evaluate_patches(self, collection: PairedCollection, out_dir: Path) -> EvaluationResult:
        scanners = collection.scanners
        groups = collection.groups
        ids = [sample_id(s, m) for s, m in groups]
        metrics = self._metrics(scanners)
        acc = _Accumulator()
        writers = self._open_writers(out_dir, scanners, ids)
        chunk = self.chunk_size or len(groups)
        chunks = [(i, min(i + chunk, len(groups))) for i in range(0, len(groups), chunk)]
        progress = tqdm(
            total=len(chunks) * len(scanners), desc="Evaluating", disable=not self.verbose
        )
        try:
            for c0, c1 in chunks:
                ref_shapes: list[tuple[int, ...]] = []
                for scanner in scanners:
                    progress.set_description(f"{scanner} [{c0}:{c1}]")
                    samples = [collection.get(s, scanner, m) for s, m in groups[c0:c1]]
                    ref_shapes = self._patch_chunk(
                        samples, ids[c0:c1], scanner, metrics, acc, writers.get(scanner), ref_shapes
                    )
                    progress.update(1)
        finally:
            progress.close()
        t0 = time.perf_counter()
        consistency = metrics.compute()
        self._timings["metrics_seconds"] += time.perf_counter() - t0
        result = self._make_result("patch", collection, consistency, acc)
        result.prediction_paths = {s: str(w.close()) for s, w in writers.items()}
        t0 = time.perf_counter()
        result.examples = self._patch_examples(collection, result)
        self._timings["examples_seconds"] += time.perf_counter() - t0
        return result

    def _patch_chunk(  # noqa: PLR0917 - private helper of the chunk loop
        self,
        samples: list[PairedSample],
        chunk_ids: list[str],
        scanner: str,
        metrics: Any,
        acc: _Accumulator,
        writer: _ZarrWriter | None,
        ref_shapes: list[tuple[int, ...]],
    ) -> list[tuple[int, ...]]:
        """Infer one scanner's chunk and feed every accumulator; returns the reference shapes."""
        from tia_scanner_robust.data.paired import (  # noqa: PLC0415
            load_sample_image,
            load_sample_mask,
        )

        t0 = time.perf_counter()
        images = [load_sample_image(s) for s in samples]
        self._timings["read_seconds"] += time.perf_counter() - t0
        acc.rgb[scanner].extend(_rgb_stats(im) for im in images)
        t0 = time.perf_counter()
        outs = self._infer_images(images)
        self._timings[f"infer/{scanner}"] += time.perf_counter() - t0
        for sample, image, out in zip(samples, images, outs, strict=True):
            acc.scalars[scanner].append(self._scalar(out))
            acc.labels[scanner].append(sample.label)
            if self.task == "segmentation" and sample.mask_path is not None:
                mask = self._mask_to_output(load_sample_mask(sample, image.shape), out)
                acc.per_sample["gt_dice"][scanner].append(
                    self._gt_dice(out["predictions"].astype(np.int64), mask)
                )
        if self.task != "segmentation":
            key = "probabilities" if self.task == "classification" else "features"
            rows = [o[key] for o in outs]
            metrics.update(chunk_ids, scanner, np.stack(rows))
            acc.outputs[scanner].extend(rows)
            if writer is not None:
                writer.add(key, rows)
            return ref_shapes
        preds = [o["predictions"].astype(np.int64) for o in outs]
        ref_shapes = ref_shapes or [p.shape for p in preds]
        fixed = []
        for pred, ref in zip(preds, ref_shapes, strict=True):
            if pred.shape != ref:  # another scanner's image size: compare on the reference grid
                self._timings["n_resized_to_reference"] += 1
            fixed.append(pred if pred.shape == ref else _resize(pred, ref, nearest=True))
        self._update_by_shape(metrics, chunk_ids, scanner, fixed)
        if writer is not None:
            writer.add("samples", [_min_uint(p) for p in preds])
        for cls_idx, frac in self._class_fractions(preds).items():
            acc.per_sample[f"fraction_{cls_idx}"][scanner].extend(frac)
        return ref_shapes

    def _make_result(
        self,
        mode: str,
        collection: PairedCollection,
        consistency: dict[str, PairConsistency],
        acc: _Accumulator,
    ) -> EvaluationResult:
        """Assemble an :class:`EvaluationResult` from the accumulated values."""
        scanners = collection.scanners
        groups = collection.groups
        if self.task != "embedding":
            for scanner in scanners:
                acc.per_sample[self._scalar_key()][scanner] = list(acc.scalars[scanner])
        cov, mag_cov = self._finish_cov(acc.scalars, groups, scanners)
        outputs = (
            None
            if self.task == "segmentation"
            else {s: np.stack(v) for s, v in acc.outputs.items()}
        )
        return EvaluationResult(
            task=self.task,
            mode=mode,
            model=self.model_name,
            scanners=scanners,
            sample_ids=[sample_id(s, m) for s, m in groups],
            consistency=consistency,
            primary=PRIMARY_SCORE[self.task],
            cov=cov,
            magnification_cov=mag_cov,
            per_scanner=self._per_scanner_summary(
                scanners, acc.per_sample, acc.labels, acc.outputs
            ),
            per_sample={k: {s: list(v) for s, v in d.items()} for k, d in acc.per_sample.items()},
            class_dict=self.class_dict,
            rgb_stats={s: np.stack(v) for s, v in acc.rgb.items()} if acc.rgb else None,
            outputs=outputs,
        )

    def _scalar_key(self) -> str:
        return {"segmentation": "cov_fraction", "classification": "positive_probability"}.get(
            self.task, "scalar"
        )

    def _class_fractions(self, preds: list[np.ndarray]) -> dict[int, list[float]]:
        k = self._num_classes() or (max(int(p.max(initial=0)) for p in preds) + 1)
        out: dict[int, list[float]] = {c: [] for c in range(k)}
        for p in preds:
            counts = np.bincount(p.ravel(), minlength=k)[:k] / max(1, p.size)
            for c in range(k):
                out[c].append(float(counts[c]))
        return out

    @staticmethod
    def _update_by_shape(
        metrics: Any, ids: list[str], scanner: str, preds: list[np.ndarray]
    ) -> None:
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, p in enumerate(preds):
            by_shape[p.shape].append(i)
        for index in by_shape.values():
            metrics.update([ids[i] for i in index], scanner, np.stack([preds[i] for i in index]))

    def _mask_to_output(self, mask: np.ndarray, out: dict[str, Any]) -> np.ndarray:
        """Bring a ground-truth mask into the prediction's geometry."""
        mask = _resize(mask, out["model_input_shape"], nearest=True)
        return _centre_crop(mask, out["predictions"].shape)

    def _open_writers(
        self, out_dir: Path, scanners: list[str], ids: list[str]
    ) -> dict[str, _ZarrWriter]:
        if not self.save_predictions:
            return {}
        folder = out_dir / "predictions"
        folder.mkdir(parents=True, exist_ok=True)
        attrs = {
            "task": self.task,
            "sample_ids": ids,
            "class_dict": {str(k): v for k, v in (self.class_dict or {}).items()},
        }
        return {s: _ZarrWriter(folder / f"{s}.zarr", {**attrs, "scanner": s}) for s in scanners}

    def _worst_samples(self, result: EvaluationResult) -> list[tuple[int, tuple[str, str], float]]:
        pc = result.primary_result
        pair = pc.worst_pair
        if pair is None or self.n_examples == 0:
            return []
        values = np.asarray(pc.per_sample[pair], dtype=np.float64)
        order = np.argsort(
            np.where(np.isnan(values), np.inf, values if pc.higher_is_better else -values)
        )
        position = {sid: i for i, sid in enumerate(result.sample_ids)}
        row_ids = pc.specimen_ids or result.sample_ids
        picked = []
        for row in order[: self.n_examples]:
            if np.isnan(values[row]):
                continue
            picked.append((position[row_ids[row]], pair, float(values[row])))
        return picked

    def _caption(self, output: dict[str, Any]) -> str:
        if self.task == "segmentation":
            pred = output["predictions"]
            names = self.class_dict or {}
            parts = []
            for c in np.unique(pred):
                name = names.get(int(c), str(int(c)))
                parts.append(f"{name} {np.mean(pred == c):.0%}")
            return ", ".join(parts)
        if self.task == "classification":
            probs = output["probabilities"]
            return f"class {int(np.argmax(probs))}, p = " + ", ".join(f"{v:.2f}" for v in probs)
        feats = output["features"]
        return f"embedding dim {feats.size}, norm {np.linalg.norm(feats):.2f}"

    def _patch_examples(
        self, collection: PairedCollection, result: EvaluationResult
    ) -> list[ExamplePair]:
        from tia_scanner_robust.data.paired import load_sample_image  # noqa: PLC0415

        examples = []
        groups = collection.groups
        for index, pair, score in self._worst_samples(result):
            spec, mag = groups[index]
            images, preds, captions = [], [], []
            for scanner in pair:
                image = load_sample_image(collection.get(spec, scanner, mag))
                out = self._infer_images([image])[0]
                captions.append(f"{scanner}: {self._caption(out)}")
                if self.task == "segmentation":
                    pred = out["predictions"].astype(np.int64)
                    view = _centre_crop(
                        _resize(image, out["model_input_shape"], nearest=False), pred.shape
                    )
                    images.append(_downsample(view, nearest=False))
                    preds.append(_downsample(pred, nearest=True))
                else:
                    images.append(_downsample(image, nearest=False))
                    preds.append(None)
            if self.task == "segmentation" and preds[0].shape != preds[1].shape:
                preds[1] = _resize(preds[1], preds[0].shape, nearest=True)
                images[1] = _resize(images[1], preds[0].shape, nearest=False)
            examples.append(
                ExamplePair(
                    specimen_id=result.sample_ids[index],
                    scanners=pair,
                    images=(images[0], images[1]),
                    predictions=(preds[0], preds[1]),
                    score=score,
                    score_name=result.primary,
                    captions=(captions[0], captions[1]),
                )
            )
        return examples

    # -------------------------------------------------------------- WSI mode
    def _wsi_ioconfig(self) -> Any:
        if self.ioconfig is None:
            msg = (
                "WSI mode needs an IO config (patch size, stride, resolution): pass ioconfig= "
                "or use a model that provides one (the builtin model, TIAToolbox pretrained "
                "models, models with an `ioconfig` attribute)."
            )
            raise ValueError(msg)
        return self.ioconfig

    @staticmethod
    def _stem_runs(paths: list[str]) -> list[list[str]]:
        """Split paths into runs with distinct file stems (engine outputs are named by stem)."""
        runs: list[list[str]] = []
        for path in paths:
            stem = Path(path).stem
            for run in runs:
                if all(Path(q).stem != stem for q in run):
                    run.append(path)
                    break
            else:
                runs.append([path])
        return runs

    @staticmethod
    def _engine_mask(members: list[PairedSample], geometry: dict[str, Any]) -> np.ndarray | None:
        """Low-resolution mask of a slide's regions (``None``: whole slide needed)."""
        if any(m.region is None for m in members):
            return None
        boxes = []
        for m in members:
            x, y, w, h = m.region
            factor = (m.mpp / geometry["mpp"]) if (m.mpp and geometry["mpp"]) else 1.0
            boxes.append((x, y, x + w * factor, y + h * factor))
        return _wsi.region_mask(boxes, geometry["baseline"])

    def _run_wsi_engine(
        self, scanner: str, samples: list[PairedSample], work: Path
    ) -> dict[str, dict[str, Any]]:
        """Run the engine once per scanner (several calls only for clashing file stems).

        Returns:
            ``str(path) -> {"zarr": output path, "geometry": slide geometry}``.
        """
        ioconfig = self._wsi_ioconfig()
        res = ioconfig.input_resolutions[0]
        by_path: dict[str, list[PairedSample]] = defaultdict(list)
        for sample in samples:
            by_path[str(sample.path)].append(sample)
        geometry = {p: _wsi.slide_geometry(p, res["resolution"], res["units"]) for p in by_path}
        out: dict[str, dict[str, Any]] = {}
        for k, run in enumerate(self._stem_runs(list(by_path))):
            masks = [self._engine_mask(by_path[p], geometry[p]) for p in run]
            kwargs: dict[str, Any] = {
                "patch_mode": False,
                "ioconfig": ioconfig,
                "save_dir": work / f"{scanner}_{k}",
                "output_type": "zarr",
                "auto_get_mask": self.auto_get_mask,
                "overwrite": True,
            }
            if any(m is not None for m in masks):
                kwargs["masks"] = masks
            if self.task == "classification":
                kwargs["return_probabilities"] = True
            t0 = time.perf_counter()
            outputs = self._engine().run([Path(p) for p in run], **kwargs)
            self._timings[f"infer/{scanner}"] += time.perf_counter() - t0
            for src, dst in outputs.items():
                out[str(src)] = {"zarr": str(dst), "geometry": geometry[str(src)]}
        return out

    def _evaluate_wsi(self, collection: PairedCollection, out_dir: Path) -> EvaluationResult:
        scanners = collection.scanners
        ids = [sample_id(s, m) for s, m in collection.groups]
        work = out_dir / ".engine_tmp"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        engine_out = {
            scanner: self._run_wsi_engine(scanner, collection.by_scanner(scanner), work)
            for scanner in tqdm(scanners, desc="Engine per scanner", disable=not self.verbose)
        }
        acc = _Accumulator()
        handles: list[_wsi.RegionHandle] = []
        handle_id: dict[tuple[str, str], int] = {}
        t0 = time.perf_counter()
        for spec, mag in tqdm(collection.groups, desc="Aligning", disable=not self.verbose):
            for scanner in scanners:
                sample = collection.get(spec, scanner, mag)
                info = engine_out[scanner][str(sample.path)]
                handle = self._align_wsi_sample(sample, info, acc)
                if handle is not None:
                    handle_id[(sample_id(spec, mag), scanner)] = len(handles)
                    handles.append(handle)
        self._timings["align_seconds"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        if self.task == "segmentation":
            from tia_scanner_robust.metrics.consistency import (  # noqa: PLC0415
                PairedConsistency,
            )

            score = _wsi.CanvasDice(
                handles, self._canvas_classes(), ignore_background=self.ignore_background
            )
            metric = PairedConsistency(score, scanners=scanners, nan_policy="omit")
            for scanner in scanners:
                metric.update(ids, scanner, np.array([handle_id[(i, scanner)] for i in ids]))
            consistency = {"dice": metric.compute()}
        else:
            metrics = self._metrics(scanners, nan_policy="omit")
            for scanner in scanners:
                metrics.update(ids, scanner, np.stack(acc.outputs[scanner]))
            consistency = metrics.compute()
        self._timings["metrics_seconds"] += time.perf_counter() - t0
        if any(len(v) != len(ids) for v in acc.rgb.values()):
            acc.rgb.clear()  # RGB statistics only when every sample is a region
        result = self._make_result("wsi", collection, consistency, acc)
        if self.task == "segmentation":
            result.examples = self._wsi_examples(collection, result, handles, handle_id)
        else:
            result.examples = self._wsi_examples_vectors(collection, result)
        result.prediction_paths = self._keep_wsi_outputs(engine_out, work, out_dir / "predictions")
        return result

    def _align_wsi_sample(
        self, sample: PairedSample, info: dict[str, Any], acc: _Accumulator
    ) -> _wsi.RegionHandle | None:
        """Read one sample's region from the engine output into the accumulator."""
        from tia_scanner_robust.data.paired import load_sample_image  # noqa: PLC0415

        scanner = sample.scanner
        acc.labels[scanner].append(sample.label)
        if sample.region is not None:
            acc.rgb[scanner].append(_rgb_stats(load_sample_image(sample)))
        if self.task != "segmentation":
            key = "probabilities" if self.task == "classification" else "features"
            box = _wsi.region_box(sample.region, sample.mpp, info["geometry"])
            vector = _wsi.pool_patches(info["zarr"], key, box)
            acc.outputs[scanner].append(vector)
            nan = bool(np.isnan(vector).any())
            acc.scalars[scanner].append(float("nan") if nan else self._scalar({key: vector}))
            return None
        canvas = _wsi._open_array(info["zarr"], "predictions").shape  # noqa: SLF001
        box = _wsi.region_box(sample.region, sample.mpp, info["geometry"], canvas[:2])
        handle = _wsi.RegionHandle(info["zarr"], box)
        fractions = _wsi.class_fractions(handle, self._canvas_classes())
        for c, value in enumerate(fractions[: self._num_classes() or fractions.size]):
            acc.per_sample[f"fraction_{c}"][scanner].append(float(value))
        cov_c = self._cov_class()
        acc.scalars[scanner].append(float(fractions[cov_c]) if cov_c < fractions.size else np.nan)
        return handle

    def _canvas_classes(self) -> int:
        return self._num_classes() or 256

    def _keep_wsi_outputs(
        self, engine_out: dict[str, dict[str, dict[str, Any]]], work: Path, folder: Path
    ) -> dict[str, str]:
        """Move the engine outputs to ``out_dir/predictions/<scanner>/`` (or delete them)."""
        paths: dict[str, str] = {}
        if self.save_predictions:
            folder.mkdir(parents=True, exist_ok=True)
            for scanner, outputs in engine_out.items():
                target = folder / scanner
                if target.exists():
                    shutil.rmtree(target)
                target.mkdir()
                for src, info in outputs.items():
                    zarr_path = Path(info["zarr"])
                    dest = target / f"{zarr_path.parent.name}_{zarr_path.name}"
                    zarr_path.rename(dest)
                    info["zarr"] = str(dest)
                    info["source"] = src
                paths[scanner] = str(target)
        shutil.rmtree(work, ignore_errors=True)
        return paths

    @staticmethod
    def _wsi_image(sample: PairedSample, shape: tuple[int, int] | None = None) -> np.ndarray:
        """RGB view of a sample (its region, or a thumbnail), resized to ``shape`` if given."""
        from tia_scanner_robust.data.paired import load_sample_image  # noqa: PLC0415

        if sample.region is not None:
            image = load_sample_image(sample)
        else:
            from tiatoolbox.wsicore.wsireader import WSIReader  # noqa: PLC0415

            reader = WSIReader.open(sample.path)
            width, height = (int(v) for v in reader.info.slide_dimensions)
            scale = min(1.0, _EXAMPLE_SIDE / max(width, height))
            bounds = (0, 0, width, height)
            image = reader.read_bounds(bounds, resolution=scale, units="baseline")[..., :3]
        image = np.ascontiguousarray(image)
        if shape is None:
            return _downsample(image, nearest=False)
        return _resize(image, shape, nearest=False)

    def _wsi_examples(
        self,
        collection: PairedCollection,
        result: EvaluationResult,
        handles: list[_wsi.RegionHandle],
        handle_id: dict[tuple[str, str], int],
    ) -> list[ExamplePair]:
        examples = []
        groups = collection.groups
        for index, pair, score in self._worst_samples(result):
            spec, mag = groups[index]
            sid = result.sample_ids[index]
            ha, hb = (handles[handle_id[(sid, s)]] for s in pair)
            shape = (min(ha.shape[0], hb.shape[0]), min(ha.shape[1], hb.shape[1]))
            step = max(1, math.ceil(max(shape) / _EXAMPLE_SIDE))
            images, preds, captions = [], [], []
            for scanner, handle in zip(pair, (ha, hb), strict=True):
                x0, y0 = handle.box[:2]
                arr = _wsi._open_array(handle.zarr_path, "predictions")  # noqa: SLF001
                pred = np.asarray(arr[y0 : y0 + shape[0] : step, x0 : x0 + shape[1] : step]).astype(
                    np.int64
                )
                sample = collection.get(spec, scanner, mag)
                images.append(self._wsi_image(sample, pred.shape))
                preds.append(pred)
                captions.append(f"{scanner}: {self._caption({'predictions': pred})}")
            examples.append(
                ExamplePair(
                    sid, pair, tuple(images), tuple(preds), score, result.primary, tuple(captions)
                )
            )
        return examples

    def _wsi_examples_vectors(
        self, collection: PairedCollection, result: EvaluationResult
    ) -> list[ExamplePair]:

        examples = []
        groups = collection.groups
        key = "probabilities" if self.task == "classification" else "features"
        for index, pair, score in self._worst_samples(result):
            spec, mag = groups[index]
            images, captions = [], []
            for scanner in pair:
                sample = collection.get(spec, scanner, mag)
                images.append(self._wsi_image(sample))
                vector = result.outputs[scanner][index] if result.outputs else None
                captions.append(
                    f"{scanner}: {self._caption({key: vector})}" if vector is not None else scanner
                )
            examples.append(
                ExamplePair(
                    result.sample_ids[index],
                    pair,
                    tuple(images),
                    (None, None),
                    score,
                    result.primary,
                    tuple(captions),
                )
            )
        return examples


def _min_uint(labels: np.ndarray) -> np.ndarray:
    top = int(labels.max(initial=0))
    dtype = np.uint8 if top < 256 else (np.uint16 if top < 65536 else np.int32)
    return labels.astype(dtype)


def _ioconfig_dict(ioconfig: Any) -> dict[str, Any]:
    out = {}
    for key in (
        "input_resolutions",
        "output_resolutions",
        "patch_input_shape",
        "patch_output_shape",
        "stride_shape",
        "save_resolution",
    ):
        value = getattr(ioconfig, key, None)
        if value is not None:
            out[key] = np.asarray(value).tolist() if key.endswith("shape") else value
    out["class"] = type(ioconfig).__name__
    return out


def _model_config(model: Any) -> Any:
    config = getattr(model, "config", None)
    if callable(config):
        with contextlib.suppress(Exception):
            return config()
        return None
    return config if isinstance(config, dict) else None
