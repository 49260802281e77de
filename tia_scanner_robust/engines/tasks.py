"""One small specification per evaluation task (instead of ``if task == ...`` branches).

A :class:`TaskSpec` says, for one task, which TIAToolbox engine runs the
model, which engine output is compared across scanners, which pair score is
the headline, and which per-specimen scalar's CoV across scanners is
reported:

==================  ========================  ===============  =========  ======================
task                engine                    output           headline   per-scanner scalar
==================  ========================  ===============  =========  ======================
``segmentation``    ``SemanticSegmentor``     label map        ``dice``   fraction of a class
``classification``  ``PatchPredictor``        probabilities    agreement  positive probability
``embedding``       ``DeepFeatureExtractor``  features         cosine     (none)
==================  ========================  ===============  =========  ======================

The evaluator (:mod:`tia_scanner_robust.engines.consistency`) looks the task
up in :data:`TASK_SPECS` and asks the spec; the spec's hooks read the
evaluator's settings through the small :class:`TaskSettings` protocol.

Examples:
    >>> spec = TASK_SPECS["classification"]
    >>> spec.engine, spec.output, spec.primary
    ('PatchPredictor', 'probabilities', 'agreement')
    >>> PRIMARY_SCORE["embedding"]
    'cosine'

"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = [
    "PRIMARY_SCORE",
    "TASK_ENGINES",
    "TASK_SPECS",
    "ClassificationTask",
    "EmbeddingTask",
    "SegmentationTask",
    "TaskSettings",
    "TaskSpec",
]


class TaskSettings(Protocol):
    """The evaluator settings a task's hooks read."""

    class_dict: dict[int, str] | None
    positive_class: int
    ks: tuple[int, ...]
    ignore_background: bool
    empty_pairs: str

    @property
    def cov_class_index(self) -> int:
        """The segmentation class whose pixel fraction is the CoV scalar."""
        ...


@dataclass(frozen=True)
class TaskSpec:
    """What one task runs, compares and summarises.

    Attributes:
        name: The task's name.
        engine: The TIAToolbox engine class name.
        output: Key of the engine output compared across scanners.
        primary: The headline pair score (its matrix is the report's heatmap).
        scalar_key: Per-sample name of the per-specimen scalar whose CoV across
            scanners is reported (``None``: no CoV).
        dense: Outputs are label maps (else one vector per image).
        return_probabilities: Ask the engine for class probabilities.
    """

    name: str
    engine: str
    output: str
    primary: str
    scalar_key: str | None = None
    dense: bool = False
    return_probabilities: bool = False

    def from_engine(self, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The compared output of a patch-mode run, one row per image (``(N, D)`` vectors)."""
        values = np.asarray(out[self.output], dtype=np.float64)
        return {self.output: values.reshape(values.shape[0], -1)}

    def metric_kwargs(self, settings: TaskSettings) -> dict[str, Any]:  # noqa: ARG002
        """Keyword arguments of the task's ``ScannerConsistency`` metric."""
        return {}

    def scalar(self, output: dict[str, Any], settings: TaskSettings) -> float:  # noqa: ARG002
        """The per-specimen scalar whose CoV across scanners is reported."""
        return float("nan")

    def cov_quantity(self, settings: TaskSettings) -> str | None:  # noqa: ARG002
        """A description of the CoV scalar (``None``: no CoV)."""
        return None

    def caption(self, output: dict[str, Any], settings: TaskSettings) -> str:
        """One line describing one output (for the report's examples)."""
        raise NotImplementedError

    def summarise(self, outputs: np.ndarray, labels: list[Any]) -> dict[str, Any]:  # noqa: ARG002
        """Per-scanner summary numbers of the stacked vector outputs of one scanner."""
        return {}


@dataclass(frozen=True)
class SegmentationTask(TaskSpec):
    """``SemanticSegmentor`` label maps, paired Dice, CoV of a class' pixel fraction.

    Examples:
        >>> spec = TASK_SPECS["segmentation"]
        >>> spec.caption({"predictions": np.array([[0, 1], [1, 1]])}, _Settings())
        'background 25%, nuclei 75%'

    """

    def from_engine(self, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The label maps of a patch-mode run."""
        return {"predictions": np.asarray(out["predictions"])}

    def metric_kwargs(self, settings: TaskSettings) -> dict[str, Any]:
        """Dice with or without the background class, and the empty-vs-empty policy."""
        return {
            "ignore_background": settings.ignore_background,
            "empty_pairs": getattr(settings, "empty_pairs", "exclude"),
        }

    def scalar(self, output: dict[str, Any], settings: TaskSettings) -> float:
        """Fraction of the label map's pixels in the CoV class."""
        return float(np.mean(output["predictions"] == settings.cov_class_index))

    def cov_quantity(self, settings: TaskSettings) -> str | None:
        """``"fraction of pixels predicted as <class name>"``."""
        index = settings.cov_class_index
        name = (settings.class_dict or {}).get(index, f"class {index}")
        return f"fraction of pixels predicted as {name}"

    def caption(self, output: dict[str, Any], settings: TaskSettings) -> str:
        """Class fractions of the label map."""
        pred = output["predictions"]
        names = settings.class_dict or {}
        parts = []
        for c in np.unique(pred):
            name = names.get(int(c), str(int(c)))
            parts.append(f"{name} {np.mean(pred == c):.0%}")
        return ", ".join(parts)


@dataclass(frozen=True)
class ClassificationTask(TaskSpec):
    """``PatchPredictor`` probabilities, label agreement, CoV of a class probability.

    Examples:
        >>> TASK_SPECS["classification"].scalar(
        ...     {"probabilities": np.array([0.2, 0.8])}, _Settings()
        ... )
        0.8

    """

    def scalar(self, output: dict[str, Any], settings: TaskSettings) -> float:
        """Probability of the positive class.

        Raises:
            ValueError: If the model outputs fewer probabilities than ``positive_class`` needs.

        """
        probs = output["probabilities"]
        column = settings.positive_class if probs.size > 1 else 0
        if column >= probs.size:
            msg = (
                f"positive_class={settings.positive_class} but the model outputs "
                f"{probs.size} class probabilities."
            )
            raise ValueError(msg)
        return float(probs[column])

    def cov_quantity(self, settings: TaskSettings) -> str | None:
        """``"probability of <class name>"`` (``"class <k>"`` when the model names none)."""
        return f"probability of {_class_name(settings, settings.positive_class)}"

    def caption(self, output: dict[str, Any], settings: TaskSettings) -> str:
        """Predicted class and probabilities, with the model's class names.

        Examples:
            >>> TASK_SPECS["classification"].caption(
            ...     {"probabilities": np.array([0.2, 0.8])}, _Settings()
            ... )
            'nuclei (class 1), p = background 0.20, nuclei 0.80'

        """
        probs = output["probabilities"]
        shown = ", ".join(
            f"{_class_name(settings, k, short=True)} {v:.2f}" for k, v in enumerate(probs)
        )
        return f"{_class_name(settings, int(np.argmax(probs)))}, p = {shown}"

    def summarise(self, outputs: np.ndarray, labels: list[Any]) -> dict[str, Any]:
        """Mean probabilities, and accuracy and AUC against the labels when all are known."""
        from tia_scanner_robust.metrics.functional import roc_auc  # noqa: PLC0415

        row: dict[str, Any] = {"mean_probabilities": outputs.mean(axis=0)}
        if labels and all(v is not None for v in labels):
            y = np.asarray(labels, dtype=np.int64)
            row["accuracy"] = float(np.mean(outputs.argmax(axis=1) == y))
            if len(np.unique(y)) > 1:
                scores = outputs[:, 1] if outputs.shape[1] == 2 else outputs
                with contextlib.suppress(ValueError):
                    row["auc"] = roc_auc(y, scores)
        return row


@dataclass(frozen=True)
class EmbeddingTask(TaskSpec):
    """``DeepFeatureExtractor`` features, cosine and top-k retrieval, no CoV.

    Examples:
        >>> TASK_SPECS["embedding"].caption({"features": np.array([3.0, 4.0])}, _Settings())
        'embedding dim 2, norm 5.00'

    """

    def metric_kwargs(self, settings: TaskSettings) -> dict[str, Any]:
        """The top-k values of the retrieval accuracy."""
        return {"ks": settings.ks}

    def caption(self, output: dict[str, Any], settings: TaskSettings) -> str:  # noqa: ARG002
        """Size and norm of the embedding."""
        feats = output["features"]
        return f"embedding dim {feats.size}, norm {np.linalg.norm(feats):.2f}"

    def summarise(self, outputs: np.ndarray, labels: list[Any]) -> dict[str, Any]:  # noqa: ARG002
        """Feature size and mean feature norm."""
        return {
            "feature_dim": int(outputs.shape[1]),
            "mean_feature_norm": float(np.linalg.norm(outputs, axis=1).mean()),
        }


#: The evaluator's tasks, by name.
TASK_SPECS: dict[str, TaskSpec] = {
    "segmentation": SegmentationTask(
        "segmentation",
        engine="SemanticSegmentor",
        output="predictions",
        primary="dice",
        scalar_key="cov_fraction",
        dense=True,
    ),
    "classification": ClassificationTask(
        "classification",
        engine="PatchPredictor",
        output="probabilities",
        primary="agreement",
        scalar_key="positive_probability",
        return_probabilities=True,
    ),
    "embedding": EmbeddingTask(
        "embedding", engine="DeepFeatureExtractor", output="features", primary="cosine"
    ),
}
#: Tasks and the TIAToolbox engine each uses.
TASK_ENGINES: dict[str, str] = {name: spec.engine for name, spec in TASK_SPECS.items()}
#: The headline pair score of each task (its matrix is the report's heatmap).
PRIMARY_SCORE: dict[str, str] = {name: spec.primary for name, spec in TASK_SPECS.items()}


def _class_name(settings: TaskSettings, index: int, *, short: bool = False) -> str:
    """``"<name> (class k)"`` from the model's class dictionary, else ``"class k"``."""
    name = (settings.class_dict or {}).get(int(index))
    if not name:
        return f"class {index}"
    return str(name) if short else f"{name} (class {index})"


@dataclass
class _Settings:
    """Default settings (for the examples)."""

    class_dict: dict[int, str] | None = None
    positive_class: int = 1
    ks: tuple[int, ...] = (1,)
    ignore_background: bool = False
    empty_pairs: str = "exclude"
    cov_class_index: int = 1

    def __post_init__(self) -> None:
        if self.class_dict is None:
            self.class_dict = {0: "background", 1: "nuclei"}
