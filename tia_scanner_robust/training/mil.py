"""MIL training through the trainer: bag adapter, task adapter, train / evaluate / run.

The ScanGen pipeline (ScanGen paper, METHODS.md section 1):

- a :class:`~tia_scanner_robust.data.feature_store.FeatureStore` holds the
  patch features; its ``split`` attribute says what a slide is for:
  ``train`` (the labelled task pool, often few scanners), ``scangen`` (the
  multi-scanner pool of the ScanGen term), ``val`` (model selection) and
  ``test`` (held-out specimens under every scanner);
- :func:`train_mil_model` trains ``f(a(g(h)))`` with the
  :class:`~tia_scanner_robust.training.trainer.Trainer` and the
  :class:`MILTask` adapter (bag inputs, cross-entropy, best checkpoint by
  validation AUC) and, when ``scangen.lam > 0``, the
  :class:`~tia_scanner_robust.training.scangen.ScanGenHook`;
- :func:`evaluate_mil` reports task AUC, scanner CoV and magnification CoV
  (:mod:`tia_scanner_robust.metrics.functional`) on held-out specimens;
- :func:`run_mil` does both for one config and writes ``results.json``.

Configs are typed (:class:`~tia_scanner_robust.training.mil_config.MILConfig`,
loaded by :func:`~tia_scanner_robust.training.mil_config.load_mil_config`).
The baseline-vs-ScanGen tables live in
:mod:`~tia_scanner_robust.training.fm_benchmark`.

Examples:
    >>> import tempfile
    >>> from tia_scanner_robust.training.mil_config import load_mil_config
    >>> from tia_scanner_robust.training.synthetic import make_synthetic_store
    >>> out = tempfile.mkdtemp()
    >>> store = make_synthetic_store(
    ...     out + "/f.zarr", task_specimens=24, multi_specimens=12, patches=8, feature_dim=8
    ... )
    >>> config = load_mil_config(
    ...     "mil_scangen",
    ...     overrides={
    ...         "trainer": {"max_steps": 4, "epochs": 1, "batch_size": 8},
    ...         "scangen": {"batch_size": 4},
    ...     },
    ... )
    >>> result = run_mil(config, out + "/run", store=store)
    >>> 0.0 <= result["test"]["auc"] <= 1.0, result["test"]["scanner_cov"] >= 0.0
    (True, True)

"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from tia_scanner_robust._io import atomic_write_json, to_jsonable
from tia_scanner_robust.data.bag_datasets import BagDataset, collate_bags
from tia_scanner_robust.data.bag_sampling import split_specimens
from tia_scanner_robust.data.feature_store import FeatureStore
from tia_scanner_robust.metrics.functional import (
    coefficient_of_variation,
    magnification_cov,
    roc_auc,
)
from tia_scanner_robust.models.mil import MILModel, build_mil_model
from tia_scanner_robust.seeding import seed_everything
from tia_scanner_robust.training.mil_config import MILConfig, load_mil_config
from tia_scanner_robust.training.scangen import ScanGenHook
from tia_scanner_robust.training.tasks import (
    AccuracyMetrics,
    ClassificationTask,
    batch_entry,
)
from tia_scanner_robust.training.trainer import FitResult, Trainer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from tia_scanner_robust.training.config import TrainerConfig
    from tia_scanner_robust.training.distributed import DistributedContext
    from tia_scanner_robust.training.hooks import Hook

__all__ = [
    "BagAUCMetrics",
    "MILBagModule",
    "MILTask",
    "MILTrainer",
    "MemoryBags",
    "assign_scangen_splits",
    "build_mil_trainer",
    "evaluate_mil",
    "open_store",
    "run_mil",
    "train_mil_model",
]


# ----------------------------------------------------------------------------- data
class MemoryBags(torch.utils.data.Dataset):
    """A :class:`~tia_scanner_robust.data.features.BagDataset` held in memory.

    Args:
        dataset: The bag dataset to read once.

    Examples:
        >>> import tempfile, numpy as np
        >>> store = FeatureStore(tempfile.mkdtemp() + "/f.zarr")
        >>> _ = store.write_slide("P1", "A", np.ones((3, 2)), label=1)
        >>> bags = MemoryBags(BagDataset(store))
        >>> len(bags), bags[0]["label"]
        (1, 1)

    """

    def __init__(self, dataset: BagDataset) -> None:
        self.items = [dataset[i] for i in range(len(dataset))]
        self.specimen_ids = [item["specimen_id"] for item in self.items]
        self.scanner_ids = [item["scanner"] for item in self.items]
        self.magnifications = [item["magnification"] for item in self.items]
        self.labels = [item["label"] for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


class MILBagModule(nn.Module):
    """Adapter so the trainer can call a :class:`MILModel` with one input dict.

    ``forward({"features": (B, N, D), "mask": (B, N)})`` returns the MIL
    model's output dict (with ``logits``); :meth:`embed` is ``g``;
    :attr:`config` is the MIL model's, which the trainer stores in its
    checkpoints (``"model_config"``) so that
    :func:`~tia_scanner_robust.models.mil_predictor.load_mil_checkpoint` can
    rebuild the model without being told its configuration.

    Examples:
        >>> module = MILBagModule(MILModel(4, projection_hidden=3))
        >>> module({"features": torch.zeros(2, 5, 4), "mask": None})["logits"].shape
        torch.Size([2, 2])
        >>> module.config["feature_dim"], module.config["aggregator"]
        (4, 'gap')

    """

    def __init__(self, mil: MILModel) -> None:
        super().__init__()
        self.mil = mil

    @property
    def config(self) -> dict[str, Any]:
        """The wrapped model's :attr:`~tia_scanner_robust.models.mil.MILModel.config`."""
        return self.mil.config

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Run the MIL model on a padded bag batch."""
        return self.mil(inputs["features"], inputs.get("mask"))

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """The projection ``g``."""
        return self.mil.embed(features)


# ----------------------------------------------------------------------------- task adapter
def _positive_auc(labels: np.ndarray, scores: np.ndarray, positive_class: int) -> float:
    """One-vs-rest AUC of ``positive_class`` over labels ``>= 0`` (NaN with one class)."""
    valid = labels >= 0
    y = (labels[valid] == positive_class).astype(int)
    return float(roc_auc(y, scores[valid])) if 0 < y.sum() < y.size else math.nan


class BagAUCMetrics(AccuracyMetrics):
    """``val_accuracy`` plus ``val_auc``: one-vs-rest AUC of the positive class.

    Scores and labels of every rank are gathered before the AUC (NaN when the
    validation labels have one class).

    Examples:
        >>> import torch
        >>> from tia_scanner_robust.training.config import TrainerConfig
        >>> from tia_scanner_robust.training.distributed import DistributedContext
        >>> m = BagAUCMetrics(TrainerConfig(task="classification"), torch.device("cpu"), 1)
        >>> m.update({"logits": torch.tensor([[0.0, 1.0], [1.0, 0.0]])}, torch.tensor([1, 0]), {})
        >>> m.compute(DistributedContext())
        {'val_accuracy': 1.0, 'val_auc': 1.0}

    """

    def __init__(self, config: TrainerConfig, device: torch.device, positive_class: int) -> None:
        super().__init__(config, device)
        self.positive_class = positive_class
        self.scores: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def update(self, outputs: Any, targets: torch.Tensor, batch: dict[str, Any]) -> None:
        """Count the batch's correct predictions and keep its scores and labels."""
        super().update(outputs, targets, batch)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs
        self.scores.append(torch.softmax(logits.float(), dim=1)[:, self.positive_class].cpu())
        self.labels.append(targets.cpu())

    def compute(self, context: DistributedContext) -> dict[str, float]:
        """Accuracy over the ranks and the AUC of every rank's scores."""
        metrics = super().compute(context)
        mine = (
            torch.cat(self.scores).numpy() if self.scores else np.zeros(0, np.float32),
            torch.cat(self.labels).numpy() if self.labels else np.zeros(0, np.int64),
        )
        gathered = context.gather_objects(mine)
        scores = np.concatenate([s for s, _ in gathered])
        labels = np.concatenate([y for _, y in gathered])
        metrics["val_auc"] = _positive_auc(labels, scores, self.positive_class)
        return metrics


class MILTask(ClassificationTask):
    """Task adapter for bag batches: ``(features, mask)`` inputs, CE, ``val_auc``.

    The batch is a :func:`~tia_scanner_robust.data.bag_datasets.collate_bags`
    dict; validation adds ``val_auc`` (one-vs-rest AUC of ``positive_class``,
    NaN when the validation labels have one class) to ``val_loss`` and
    ``val_accuracy``, in the same single pass over the validation set.

    Args:
        positive_class: Class whose probability is the AUC score.

    Examples:
        >>> import torch
        >>> from tia_scanner_robust.training.config import TrainerConfig
        >>> batch = {"features": torch.zeros(2, 3, 4), "mask": torch.ones(2, 3, dtype=bool)}
        >>> config = TrainerConfig(task="classification", image_key="features")
        >>> inputs = MILTask().prepare_inputs(batch, config=config, device=torch.device("cpu"))
        >>> sorted(inputs), inputs["features"].dtype
        (['features', 'mask'], torch.float32)

    """

    name: ClassVar[str] = "mil"

    def __init__(self, positive_class: int = 1) -> None:
        if isinstance(positive_class, bool) or not isinstance(positive_class, int):
            msg = f"positive_class must be an int, got {positive_class!r}."
            raise TypeError(msg)
        self.positive_class = positive_class

    def prepare_inputs(
        self, batch: dict[str, Any], *, config: TrainerConfig, device: torch.device
    ) -> dict[str, torch.Tensor | None]:
        """Padded features (``config.image_key``) and mask on the device."""
        features = batch_entry(batch, config.image_key, "image_key")
        mask = batch.get("mask")
        return {
            "features": torch.as_tensor(features).float().to(device),
            "mask": None if mask is None else torch.as_tensor(mask).to(device),
        }

    def validation_metrics(self, *, config: TrainerConfig, device: torch.device) -> BagAUCMetrics:
        """Accuracy and AUC of the positive class."""
        return BagAUCMetrics(config, device, self.positive_class)


def build_mil_trainer(
    model: nn.Module,
    train_dataset: torch.utils.data.Dataset | Sequence[dict[str, Any]],
    val_dataset: torch.utils.data.Dataset | Sequence[dict[str, Any]] | None = None,
    *,
    config: TrainerConfig | dict[str, Any] | None = None,
    hooks: Sequence[Hook | str] = (),
    collate_fn: Callable[[list[Any]], Any] | None = collate_bags,
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor | dict[str, torch.Tensor]] | None = None,
    positive_class: int = 1,
) -> Trainer:
    """A :class:`~tia_scanner_robust.training.trainer.Trainer` with the :class:`MILTask` adapter.

    Args:
        model: A bag model called with ``{"features", "mask"}`` (e.g. :class:`MILBagModule`).
        train_dataset: Bag dataset (e.g. a
            :class:`~tia_scanner_robust.data.bag_datasets.BagDataset`).
        val_dataset: Optional validation bags.
        config: Trainer config (``image_key``/``target_key`` of the bag batches).
        hooks: Hooks, e.g. a :class:`~tia_scanner_robust.training.scangen.ScanGenHook`.
        collate_fn: Collate function (default
            :func:`~tia_scanner_robust.data.bag_datasets.collate_bags`).
        loss_fn: Optional replacement of the cross-entropy.
        positive_class: Class whose probability is the ``val_auc`` score.

    Returns:
        The trainer.

    """
    return Trainer(
        model,
        train_dataset,
        val_dataset,
        config=config,
        loss_fn=loss_fn,
        hooks=hooks,
        collate_fn=collate_fn,
        task=MILTask(positive_class),
    )


#: The name of earlier releases (then a ``Trainer`` subclass), kept importable:
#: ``MILTrainer(model, train, val, config=..., hooks=..., collate_fn=...)``.
MILTrainer = build_mil_trainer


# ----------------------------------------------------------------------------- train, evaluate
def open_store(store: FeatureStore | str | Path | None, config: MILConfig) -> FeatureStore:
    """``store`` (a store or a path), else the config's ``data.store``, opened read-only.

    Raises:
        ValueError: If neither names a store.

    """
    if store is None:
        store = config.data.store
    if store is None:
        msg = "No feature store: pass store= or set data.store in the config."
        raise ValueError(msg)
    return store if isinstance(store, FeatureStore) else FeatureStore(store, mode="r")


def _scangen_hook(config: MILConfig, store: FeatureStore) -> ScanGenHook:
    sg = config.scangen
    return ScanGenHook(
        store,
        lam=sg.lam,
        alpha=sg.alpha,
        margin=sg.margin,
        squared=sg.squared,
        granularity=sg.granularity,
        n_subsample=sg.n_subsample,
        patches_per_sample=sg.patches_per_sample,
        batch_size=sg.batch_size,
        scanners_per_specimen=sg.scanners_per_specimen,
        split=config.data.scangen_split,
        scanners=sg.scanners,
    )


def train_mil_model(
    config: MILConfig | Mapping[str, Any],
    output_dir: str | Path,
    *,
    store: FeatureStore | str | Path | None = None,
    resume: bool = False,
) -> tuple[MILModel, FitResult]:
    """Train a MIL model (baseline, or ScanGen when ``scangen.lam > 0``) with the trainer.

    Args:
        config: A :class:`~tia_scanner_robust.training.mil_config.MILConfig`
            (or a mapping of one, validated by
            :func:`~tia_scanner_robust.training.mil_config.load_mil_config`).
        output_dir: Run folder (checkpoints, logs).
        store: The feature store (default: ``config.data.store``).
        resume: Continue from ``output_dir/last.pt`` when it exists.

    Returns:
        ``(model, fit_result)``; the model holds the best-validation weights
        when a ``best.pt`` was written, else the last ones.

    """
    config = load_mil_config(config)
    store = open_store(store, config)
    data = config.data
    tcfg = dataclasses.replace(config.trainer, output_dir=str(output_dir))
    train_bags = BagDataset(
        store, data.train_split, max_instances=data.max_instances, seed=tcfg.seed
    )
    # in memory unless bags are subsampled (then a new subset is drawn per access)
    train = train_bags if data.max_instances else MemoryBags(train_bags)
    val = None
    if data.val_split and store.filter(split=data.val_split):
        val = MemoryBags(BagDataset(store, data.val_split))
    seed_everything(tcfg.seed)
    mil = build_mil_model(int(store.feature_dim or 0), config.model.to_dict())
    hooks = [_scangen_hook(config, store)] if config.scangen.lam > 0 else []
    trainer = build_mil_trainer(
        MILBagModule(mil),
        train,
        val,
        config=tcfg,
        hooks=hooks,
        positive_class=data.positive_class,
    )
    try:
        result = trainer.fit(resume_from="auto" if resume else None)
    finally:
        trainer.close()
    if result.best_checkpoint is not None:
        state = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
        trainer.model.load_state_dict(state["model"])
    return mil.cpu().eval(), result


def evaluate_mil(
    model: MILModel,
    store: FeatureStore | str | Path,
    split: str | Iterable[str] | None = "test",
    *,
    positive_class: int = 1,
    scanners: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Task AUC, scanner CoV and magnification CoV on held-out slides.

    The score is the probability of ``positive_class``. Scanner CoV treats
    every (specimen, magnification) as one specimen of METHODS.md Eq. 1 with
    its scanners as groups; magnification CoV groups each (specimen,
    scanner) by magnification (``None`` when every slide has one
    magnification).

    Returns:
        Dict: ``auc``, ``scanner_cov``, ``magnification_cov``, ``n_slides``,
        ``n_specimens``, ``scanners``.

    Examples:
        >>> import tempfile
        >>> from tia_scanner_robust.training.synthetic import make_synthetic_store
        >>> store = make_synthetic_store(
        ...     tempfile.mkdtemp() + "/s.zarr",
        ...     task_specimens=4,
        ...     multi_specimens=10,
        ...     patches=4,
        ...     feature_dim=8,
        ... )
        >>> res = evaluate_mil(MILModel(8, projection_hidden=4), store, "test")
        >>> sorted(res)[:3], res["scanner_cov"] >= 0
        (['auc', 'magnification_cov', 'n_slides'], True)

    """
    store = store if isinstance(store, FeatureStore) else FeatureStore(store, mode="r")
    bags = MemoryBags(BagDataset(store, split, scanners=scanners))
    probs = model.predict_bags(bags, batch_size=32)["probabilities"][:, positive_class]
    auc = _positive_auc(np.asarray(bags.labels), probs, positive_class)
    mags = [str(m) for m in bags.magnifications]
    units = [f"{p}|{m}" for p, m in zip(bags.specimen_ids, mags, strict=True)]
    scanner_cov = coefficient_of_variation(probs, units, bags.scanner_ids).cov
    mag_cov = None
    if len(set(mags)) > 1:
        mag_cov = float(magnification_cov(probs, bags.specimen_ids, bags.scanner_ids, mags).cov)
    return {
        "auc": auc,
        "scanner_cov": float(scanner_cov),
        "magnification_cov": mag_cov,
        "n_slides": len(bags),
        "n_specimens": len(set(bags.specimen_ids)),
        "scanners": sorted(set(bags.scanner_ids)),
    }


def run_mil(
    config: MILConfig | Mapping[str, Any],
    output_dir: str | Path,
    *,
    store: FeatureStore | str | Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train and evaluate one config; writes ``results.json`` in ``output_dir``.

    Returns:
        ``{"name", "config", "fit": {...}, "test": evaluate_mil(...)}``.

    """
    config = load_mil_config(config)
    output_dir = Path(output_dir)
    store = open_store(store, config)
    model, fit = train_mil_model(config, output_dir, store=store, resume=resume)
    test = evaluate_mil(
        model, store, config.data.test_split, positive_class=config.data.positive_class
    )
    result = {
        "name": config.name,
        "config": config.to_dict(),
        "fit": {
            "best_metric": fit.best_metric,
            "best_epoch": fit.best_epoch,
            "global_step": fit.global_step,
            "monitor": fit.monitor,
        },
        "test": test,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "results.json", to_jsonable(result))
    return result


# ----------------------------------------------------------------------------- splits
def assign_scangen_splits(
    store: FeatureStore,
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
) -> dict[str, str]:
    """Split a store's specimens into ``train``/``scangen``/``val``/``test`` (stratified by label).

    Use it when the slides carry no ScanGen splits (e.g. a paired manifest
    where every specimen is multi-scanner). Default fractions 0.4/0.2/0.2/0.2.

    Returns:
        ``{specimen_id: split}``.

    Examples:
        >>> import tempfile
        >>> store = FeatureStore(tempfile.mkdtemp() + "/f.zarr")
        >>> for p in range(10):
        ...     _ = store.write_slide(f"P{p}", "A", np.ones((1, 2)), label=p % 2)
        >>> sorted(set(assign_scangen_splits(store).values()))
        ['scangen', 'test', 'train', 'val']

    """
    slides = store.slides()
    splits = split_specimens(
        [s.specimen_id for s in slides],
        dict(fractions or {"train": 0.4, "scangen": 0.2, "val": 0.2, "test": 0.2}),
        seed=seed,
        labels=[s.label for s in slides],
    )
    store.assign_splits(splits)
    return splits
