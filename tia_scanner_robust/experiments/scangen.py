"""ScanGen experiments: MIL training through the trainer, evaluation, ablations, FM benchmark.

The pipeline (ScanGen paper, METHODS.md section 1):

- a :class:`~tia_scanner_robust.data.features.FeatureStore` holds the
  patch features; its ``split`` attribute says what a slide is for:
  ``train`` (the labelled task pool, often few scanners), ``scangen`` (the
  multi-scanner pool of the ScanGen term), ``val`` (model selection) and
  ``test`` (held-out specimens under every scanner);
- :func:`train_mil_model` trains ``f(a(g(h)))`` with the
  :class:`~tia_scanner_robust.training.trainer.Trainer` (cross-entropy,
  best checkpoint by validation AUC) and, when ``scangen.lam > 0``, the
  :class:`~tia_scanner_robust.training.scangen.ScanGenHook`;
- :func:`evaluate_mil` reports task AUC, scanner CoV and magnification CoV
  (:mod:`tia_scanner_robust.metrics.functional`) on held-out specimens;
- :func:`compare_scangen` (paper Table 2 shape: baseline vs ScanGen per
  aggregator, relative change in %), :func:`limited_scanner_ablation`
  (paper Fig. 4) and :func:`benchmark_feature_extractors` (paper Table 1
  shape: one row per feature extractor).

Configs are plain dicts (YAML) with sections ``data``, ``model``,
``trainer`` and ``scangen`` (see ``configs/mil_baseline.yaml`` and
``configs/mil_scangen.yaml``, loaded by :func:`load_mil_config`).

Examples:
    >>> import tempfile
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

import copy
import itertools
import json
import logging
import math
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml
from torch import nn

from tia_scanner_robust._io import atomic_write_json, atomic_write_text
from tia_scanner_robust.data.features import (
    BagDataset,
    FeatureStore,
    collate_bags,
    split_specimens,
)
from tia_scanner_robust.metrics.functional import (
    coefficient_of_variation,
    magnification_cov,
    roc_auc,
)
from tia_scanner_robust.models.mil import AGGREGATORS, MILModel
from tia_scanner_robust.seeding import seed_everything
from tia_scanner_robust.training.trainer import FitResult, Trainer

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "DEFAULT_MIL_CONFIG",
    "SYNTHETIC_EXTRACTORS",
    "MILBagModule",
    "MILTrainer",
    "MemoryBags",
    "assign_scangen_splits",
    "benchmark_feature_extractors",
    "build_mil_model",
    "compare_scangen",
    "evaluate_mil",
    "format_benchmark_markdown",
    "format_comparison_markdown",
    "limited_scanner_ablation",
    "load_mil_config",
    "make_synthetic_store",
    "run_mil",
    "train_mil_model",
]

logger = logging.getLogger(__name__)

#: Defaults of every MIL config (the shipped YAML files override parts of it).
DEFAULT_MIL_CONFIG: dict[str, Any] = {
    "name": "mil",
    "data": {
        "store": None,
        "train_split": "train",
        "val_split": "val",
        "test_split": "test",
        "scangen_split": "scangen",
        "max_instances": None,
        "positive_class": 1,
    },
    "model": {
        "aggregator": "gap",
        "num_classes": 2,
        "projection_hidden": 128,
        "projection_dropout": 0.0,
        # per aggregator name (or one flat dict for the configured aggregator)
        "aggregator_kwargs": {
            "gap": {"hidden_dim": 64},
            "abmil": {"attention_dim": 64},
            "dsmil": {"query_dim": 64},
            "slotmil": {"num_slots": 8, "hidden_dim": 64},
        },
    },
    "trainer": {
        "epochs": 25,
        "max_steps": 400,
        "batch_size": 16,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "optimizer": "adam",
        "task": "classification",
        "target_key": "label",
        "image_key": "features",
        "monitor": "val_auc",
        "mode": "max",
        "ignore_index": -100,
        "log_every_n_steps": 10,
        "progress": False,
        "device": "auto",
        "seed": 0,
    },
    "scangen": {
        "lam": 0.0,
        "alpha": 0.7,
        "margin": 1.0,
        "squared": True,
        "granularity": "slide",
        "n_subsample": 32,
        "patches_per_sample": 4,
        "batch_size": 16,
        "scanners_per_specimen": 2,
        "scanners": None,
    },
    # make_synthetic_store keyword arguments (used with ``--synthetic``)
    "synthetic": {
        "feature_dim": 64,
        "task_specimens": 300,
        "task_scanners": 2,
        "multi_specimens": 100,
        "patches": 64,
        "magnifications": ["40x"],
        "seed": 0,
    },
}

_SECTIONS = ("data", "model", "trainer", "scangen", "synthetic")


# ----------------------------------------------------------------------------- configs
def _merge(base: dict[str, Any], override: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if where == "" and key not in (*_SECTIONS, "name"):
            msg = f"Unknown MIL config section {key!r}; valid: name, {', '.join(_SECTIONS)}."
            raise ValueError(msg)
        if (
            isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and key != "aggregator_kwargs"
        ):
            out[key] = _merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_mil_config(
    config: str | Path | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A full MIL config: defaults <- a YAML file / shipped name / dict <- overrides.

    Args:
        config: A YAML path, a shipped config name (``"mil_baseline"``,
            ``"mil_scangen"``, ``"mil_scangen_abmil"``...), a dict or ``None``.
        overrides: Nested dict merged last.

    Returns:
        The merged config dict.

    Raises:
        FileNotFoundError: If the file or shipped name does not exist.
        ValueError: On unknown top-level sections.

    Examples:
        >>> load_mil_config("mil_scangen")["scangen"]["lam"] > 0
        True
        >>> load_mil_config("mil_baseline", {"model": {"aggregator": "abmil"}})["model"][
        ...     "aggregator"
        ... ]
        'abmil'

    """
    loaded: Mapping[str, Any] = {}
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file():
            shipped = resources.files("tia_scanner_robust") / "configs" / f"{config}.yaml"
            if not shipped.is_file():
                msg = f"MIL config {config!r} is neither a file nor a shipped config name."
                raise FileNotFoundError(msg)
            text = shipped.read_text(encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        loaded = yaml.safe_load(text) or {}
        if not isinstance(loaded, dict):
            msg = f"MIL config {config!r} must be a YAML mapping."
            raise ValueError(msg)
    elif config is not None:
        loaded = config
    merged = _merge(DEFAULT_MIL_CONFIG, loaded, "")
    return _merge(merged, overrides or {}, "")


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


def make_synthetic_store(
    path: str | Path,
    *,
    feature_dim: int = 64,
    task_specimens: int = 300,
    task_scanners: int = 2,
    multi_specimens: int = 100,
    patches: int = 64,
    magnifications: Sequence[str] = ("40x",),
    fractions: Mapping[str, float] | None = None,
    world: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> FeatureStore:
    """A store of synthetic FM-like features with the ScanGen splits.

    ``train``: ``task_specimens`` labelled specimens, each scanned once by one
    of the first ``task_scanners`` scanners; the ``multi_specimens``
    specimens scanned by every scanner (and magnification) are split by
    specimen into ``scangen``/``val``/``test`` (default 0.5/0.2/0.3).

    Examples:
        >>> import tempfile
        >>> store = make_synthetic_store(
        ...     tempfile.mkdtemp() + "/s.zarr", task_specimens=4, multi_specimens=10, patches=4
        ... )
        >>> sorted({s.split for s in store.slides()})
        ['scangen', 'test', 'train', 'val']

    """
    from tia_scanner_robust.data.synthetic_features import (  # noqa: PLC0415
        SyntheticFeatureWorld,
    )

    store = FeatureStore(path, mode="w")
    sim = SyntheticFeatureWorld(
        feature_dim=feature_dim,
        magnifications=tuple(magnifications),
        seed=1000 + seed,
        **dict(world or {}),
    )
    task = sim.sample(
        task_specimens,
        patches,
        scanners=sim.scanners[:task_scanners],
        scanners_per_specimen=1,
        magnifications=list(magnifications)[:1],
        specimen_prefix="T",
        seed=2000 + seed,
    )
    task.write_to_store(store, split="train")
    multi = sim.sample(multi_specimens, patches, specimen_prefix="M", seed=3000 + seed)
    splits = split_specimens(
        multi.specimen_ids,
        dict(fractions or {"scangen": 0.5, "val": 0.2, "test": 0.3}),
        seed=seed,
        labels=list(multi.labels),
    )
    multi.write_to_store(store, split=splits)
    return store


# ----------------------------------------------------------------------------- model/trainer
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


class MILTrainer(Trainer):
    """:class:`Trainer` for bag batches: ``(features, mask)`` inputs and ``val_auc``.

    The batch is a :func:`~tia_scanner_robust.data.features.collate_bags`
    dict; validation adds ``val_auc`` (one-vs-rest AUC of the positive class,
    NaN when the validation labels have one class) to ``val_loss`` and
    ``val_accuracy``.

    Examples:
        >>> MILTrainer.prepare_inputs.__doc__.split(".")[0]
        'Padded features and mask on the device'

    """

    positive_class: int = 1

    def prepare_inputs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Padded features and mask on the device."""
        features = batch[self.config.image_key]
        mask = batch.get("mask")
        return {
            "features": torch.as_tensor(features).float().to(self.device),
            "mask": None if mask is None else torch.as_tensor(mask).to(self.device),
        }

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Base validation metrics plus ``val_auc``."""
        metrics = super().validate()
        if self.val_dataset is None:
            return metrics
        was_training = self.model.training
        self.model.eval()
        scores, labels = [], []
        for batch in self._val_loader():
            logits = self.model(self.prepare_inputs(batch))["logits"].float()
            scores.append(torch.softmax(logits, dim=1)[:, self.positive_class].cpu())
            labels.append(torch.as_tensor(batch[self.config.target_key]).cpu())
        self.model.train(was_training)
        y = torch.cat(labels).numpy()
        s = torch.cat(scores).numpy()
        valid = y >= 0
        y_bin = (y[valid] == self.positive_class).astype(int)
        metrics["val_auc"] = (
            float(roc_auc(y_bin, s[valid])) if 0 < y_bin.sum() < y_bin.size else math.nan
        )
        return metrics


def build_mil_model(feature_dim: int, model_config: Mapping[str, Any]) -> MILModel:
    """A :class:`MILModel` from the ``model`` section of a config.

    ``aggregator_kwargs`` is either one dict for the configured aggregator or
    ``{aggregator name: kwargs}`` (the entry of the configured one is used).
    The optional keys ``projection_out`` and ``projection`` are passed on too,
    so a :attr:`MILModel.config <tia_scanner_robust.models.mil.MILModel.config>`
    is a valid section (its ``feature_dim`` is ignored: the argument wins).

    Examples:
        >>> build_mil_model(8, {"aggregator": "abmil", "projection_hidden": 4}).aggregator_name
        'abmil'
        >>> model = build_mil_model(8, {"aggregator": "dsmil", "projection_out": 6})
        >>> build_mil_model(8, model.config).config == model.config
        True

    """
    cfg = dict(model_config)
    name = cfg.get("aggregator", "gap")
    kwargs = dict(cfg.get("aggregator_kwargs") or {})
    per = {k: v for k, v in kwargs.items() if k in AGGREGATORS and isinstance(v, dict)}
    flat = {k: v for k, v in kwargs.items() if k not in per}
    kwargs = {**per.get(str(name).lower(), {}), **flat}
    projection_out = cfg.get("projection_out")
    return MILModel(
        feature_dim,
        int(cfg.get("num_classes", 2)),
        name,
        projection_hidden=int(cfg.get("projection_hidden", 128)),
        projection_out=None if projection_out is None else int(projection_out),
        projection_dropout=float(cfg.get("projection_dropout", 0.0)),
        aggregator_kwargs=kwargs,
        projection=bool(cfg.get("projection", True)),
    )


def _open_store(store: FeatureStore | str | Path | None, config: Mapping[str, Any]) -> FeatureStore:
    if store is None:
        store = config["data"].get("store")
    if store is None:
        msg = "No feature store: pass store= or set data.store in the config."
        raise ValueError(msg)
    return store if isinstance(store, FeatureStore) else FeatureStore(store, mode="r")


def train_mil_model(
    config: Mapping[str, Any],
    output_dir: str | Path,
    *,
    store: FeatureStore | str | Path | None = None,
    resume: bool = False,
) -> tuple[MILModel, FitResult]:
    """Train a MIL model (baseline, or ScanGen when ``scangen.lam > 0``) with the trainer.

    Args:
        config: A config from :func:`load_mil_config`.
        output_dir: Run folder (checkpoints, logs).
        store: The feature store (default: ``config["data"]["store"]``).
        resume: Continue from ``output_dir/last.pt`` when it exists.

    Returns:
        ``(model, fit_result)``; the model holds the best-validation weights
        when a ``best.pt`` was written, else the last ones.

    """
    store = _open_store(store, config)
    data, tcfg, sg = config["data"], dict(config["trainer"]), config["scangen"]
    tcfg["output_dir"] = str(output_dir)
    seed = int(tcfg.get("seed", 0))
    train_bags = BagDataset(
        store, data["train_split"], max_instances=data.get("max_instances"), seed=seed
    )
    # in memory unless bags are subsampled (then a new subset is drawn per access)
    train = train_bags if data.get("max_instances") else MemoryBags(train_bags)
    val = None
    if data.get("val_split") and store.filter(split=data["val_split"]):
        val = MemoryBags(BagDataset(store, data["val_split"]))
    seed_everything(seed)
    mil = build_mil_model(int(store.feature_dim or 0), config["model"])
    hooks = []
    if float(sg.get("lam", 0.0)) > 0:
        from tia_scanner_robust.training.scangen import ScanGenHook  # noqa: PLC0415

        hooks.append(
            ScanGenHook(
                store,
                lam=float(sg["lam"]),
                alpha=float(sg["alpha"]),
                margin=float(sg["margin"]),
                squared=bool(sg.get("squared", True)),
                granularity=sg.get("granularity", "slide"),
                n_subsample=int(sg.get("n_subsample", 32)),
                patches_per_sample=int(sg.get("patches_per_sample", 4)),
                batch_size=int(sg.get("batch_size", 16)),
                scanners_per_specimen=int(sg.get("scanners_per_specimen", 2)),
                split=data["scangen_split"],
                scanners=sg.get("scanners"),
            )
        )
    trainer = MILTrainer(
        MILBagModule(mil), train, val, config=tcfg, hooks=hooks, collate_fn=collate_bags
    )
    trainer.positive_class = int(data.get("positive_class", 1))
    try:
        result = trainer.fit(resume_from="auto" if resume else None)
    finally:
        trainer.close()
    if result.best_checkpoint is not None:
        state = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
        trainer.model.load_state_dict(state["model"])
    return mil.cpu().eval(), result


# ----------------------------------------------------------------------------- evaluation
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
    labels = np.asarray(bags.labels)
    valid = labels >= 0
    y = (labels[valid] == positive_class).astype(int)
    auc = float(roc_auc(y, probs[valid])) if 0 < y.sum() < y.size else math.nan
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
    config: Mapping[str, Any],
    output_dir: str | Path,
    *,
    store: FeatureStore | str | Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train and evaluate one config; writes ``results.json`` in ``output_dir``.

    Returns:
        ``{"name", "config", "fit": {...}, "test": evaluate_mil(...)}``.

    """
    output_dir = Path(output_dir)
    store = _open_store(store, config)
    model, fit = train_mil_model(config, output_dir, store=store, resume=resume)
    data = config["data"]
    test = evaluate_mil(
        model, store, data["test_split"], positive_class=int(data.get("positive_class", 1))
    )
    result = {
        "name": config.get("name", "mil"),
        "config": json.loads(json.dumps(config, default=str)),
        "fit": {
            "best_metric": fit.best_metric,
            "best_epoch": fit.best_epoch,
            "global_step": fit.global_step,
            "monitor": fit.monitor,
        },
        "test": test,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "results.json", _jsonable(result))
    return result


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return _jsonable(obj.item())
    return obj


# ----------------------------------------------------------------------------- comparisons
def _mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std())


def _rel(new: float, old: float) -> float:
    return (
        100.0 * (new / old - 1.0) if old and math.isfinite(old) and math.isfinite(new) else math.nan
    )


def _summary(baseline: list[dict[str, Any]], scangen: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {"n_seeds": len(baseline)}
    for metric in ("auc", "scanner_cov", "magnification_cov"):
        b_mean, b_std = _mean_std([r[metric] for r in baseline])
        s_mean, s_std = _mean_std([r[metric] for r in scangen])
        row[metric] = {
            "baseline": b_mean,
            "baseline_std": b_std,
            "scangen": s_mean,
            "scangen_std": s_std,
            "delta": s_mean - b_mean,
            "relative_change_percent": _rel(s_mean, b_mean),
        }
    return row


def _variant(config: Mapping[str, Any], **sections: Mapping[str, Any]) -> dict[str, Any]:
    return _merge(dict(config), sections, "")


def compare_scangen(
    config: Mapping[str, Any],
    output_dir: str | Path,
    *,
    store: FeatureStore | str | Path | None = None,
    aggregators: Sequence[str] = ("gap",),
    seeds: Sequence[int] = (0,),
) -> dict[str, Any]:
    """Baseline (``lam = 0``, keeps ``g``) vs ScanGen per aggregator (paper Table 2 shape).

    Args:
        config: A ScanGen config (its ``scangen.lam`` must be > 0).
        output_dir: Folder of the runs; ``comparison.json`` and
            ``comparison.md`` are written there.
        store: Feature store (default: the config's).
        aggregators: Aggregator names.
        seeds: Trainer seeds (mean and std over them).

    Returns:
        ``{"rows": {aggregator: summary}, "runs": [...]}``; a summary holds,
        per metric, baseline/ScanGen mean and std, delta and relative change %.

    """
    if float(config["scangen"]["lam"]) <= 0:
        msg = "compare_scangen needs a config with scangen.lam > 0."
        raise ValueError(msg)
    output_dir = Path(output_dir)
    store = _open_store(store, config)
    rows: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    for aggregator in aggregators:
        per: dict[str, list[dict[str, Any]]] = {"baseline": [], "scangen": []}
        for seed in seeds:
            for variant, results in per.items():
                lam = 0.0 if variant == "baseline" else float(config["scangen"]["lam"])
                cfg = _variant(
                    config,
                    model={"aggregator": aggregator},
                    trainer={"seed": int(seed)},
                    scangen={"lam": lam},
                )
                run_dir = output_dir / aggregator / f"{variant}_seed{seed}"
                res = run_mil(cfg, run_dir, store=store)
                results.append(res["test"])
                runs.append(
                    {"aggregator": aggregator, "variant": variant, "seed": int(seed), **res["test"]}
                )
        rows[aggregator] = _summary(per["baseline"], per["scangen"])
    result = {"rows": rows, "runs": runs, "seeds": [int(s) for s in seeds]}
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "comparison.json", _jsonable(result))
    atomic_write_text(output_dir / "comparison.md", format_comparison_markdown(rows))
    return result


def _fmt(mean: float | None, std: float | None = None, digits: int = 3) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_comparison_markdown(
    rows: Mapping[str, Mapping[str, Any]], label: str = "Aggregator"
) -> str:
    """Markdown table: one row per key, AUC / scanner CoV / magnification CoV, baseline vs ScanGen.

    Examples:
        >>> row = {
        ...     m: {
        ...         "baseline": 0.5,
        ...         "baseline_std": 0.0,
        ...         "scangen": 0.4,
        ...         "scangen_std": 0.0,
        ...         "delta": -0.1,
        ...         "relative_change_percent": -20.0,
        ...     }
        ...     for m in ("auc", "scanner_cov", "magnification_cov")
        ... }
        >>> "-20.0%" in format_comparison_markdown({"gap": row})
        True

    """
    header = (
        f"| {label} | AUC baseline | AUC ScanGen | ΔAUC | scanner CoV baseline | "
        "scanner CoV ScanGen | Δ CoV % | magnification CoV baseline | "
        "magnification CoV ScanGen | Δ mag. CoV % |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for name, row in rows.items():
        a, c, m = row["auc"], row["scanner_cov"], row["magnification_cov"]

        def pct(value: float) -> str:
            return "n/a" if not math.isfinite(value) else f"{value:+.1f}%"

        lines.append(
            f"| {name} | {_fmt(a['baseline'], a['baseline_std'])} | "
            f"{_fmt(a['scangen'], a['scangen_std'])} | {_fmt(a['delta'])} | "
            f"{_fmt(c['baseline'], c['baseline_std'])} | {_fmt(c['scangen'], c['scangen_std'])} | "
            f"{pct(c['relative_change_percent'])} | {_fmt(m['baseline'], m['baseline_std'])} | "
            f"{_fmt(m['scangen'], m['scangen_std'])} | {pct(m['relative_change_percent'])} |"
        )
    return header + "\n".join(lines) + "\n"


def limited_scanner_ablation(
    config: Mapping[str, Any],
    output_dir: str | Path,
    *,
    store: FeatureStore | str | Path | None = None,
    min_scanners: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    """ScanGen with every combination of ``min_scanners..S`` pool scanners (paper Fig. 4).

    The CoV gain of a combination is the relative change (%) of the test
    scanner CoV against the baseline (``lam = 0``, same seed); the test set
    keeps every scanner.

    Returns:
        A dict with keys ``baseline``, ``combinations`` (one entry per
        scanner combination with ``scanners``, ``size``, ``test`` and
        ``cov_change_percent``), ``by_size`` (per combination size: ``mean``,
        ``std``, ``min``, ``max`` of the CoV change), ``best`` and ``worst``
        (the combination with the largest / smallest CoV reduction of every
        size) and ``scanner_in_best`` / ``scanner_in_worst`` (how often each
        scanner appears among them).

    """
    output_dir = Path(output_dir)
    store = _open_store(store, config)
    pool_scanners = sorted({s.scanner for s in store.filter(split=config["data"]["scangen_split"])})
    if len(pool_scanners) < max(2, min_scanners):
        msg = f"The ScanGen pool has {len(pool_scanners)} scanner(s); at least 2 are needed."
        raise ValueError(msg)
    base_cfg = _variant(config, trainer={"seed": int(seed)}, scangen={"lam": 0.0})
    baseline = run_mil(base_cfg, output_dir / "baseline", store=store)["test"]
    combos = []
    for size in range(max(2, min_scanners), len(pool_scanners) + 1):
        for combo in itertools.combinations(pool_scanners, size):
            cfg = _variant(config, trainer={"seed": int(seed)}, scangen={"scanners": list(combo)})
            res = run_mil(cfg, output_dir / "+".join(combo), store=store)["test"]
            combos.append(
                {
                    "scanners": list(combo),
                    "size": size,
                    "test": res,
                    "cov_change_percent": _rel(res["scanner_cov"], baseline["scanner_cov"]),
                }
            )
    by_size: dict[str, Any] = {}
    best, worst = [], []
    for size in sorted({c["size"] for c in combos}):
        group = [c for c in combos if c["size"] == size]
        gains = np.asarray([c["cov_change_percent"] for c in group], dtype=float)
        by_size[str(size)] = {
            "mean": float(np.nanmean(gains)),
            "std": float(np.nanstd(gains)),
            "min": float(np.nanmin(gains)),
            "max": float(np.nanmax(gains)),
            "n": len(group),
        }
        if len(group) > 1:
            best.append(group[int(np.nanargmin(gains))]["scanners"])
            worst.append(group[int(np.nanargmax(gains))]["scanners"])
    result = {
        "baseline": baseline,
        "combinations": combos,
        "by_size": by_size,
        "best": best,
        "worst": worst,
        "scanner_in_best": {s: sum(s in c for c in best) for s in pool_scanners},
        "scanner_in_worst": {s: sum(s in c for c in worst) for s in pool_scanners},
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "ablation.json", _jsonable(result))
    return result


def benchmark_feature_extractors(
    stores: Mapping[str, FeatureStore | str | Path],
    config: Mapping[str, Any],
    output_dir: str | Path,
    *,
    seeds: Sequence[int] = (0,),
) -> dict[str, Any]:
    """Paper Table 1 shape: one row per feature extractor, without and with ScanGen.

    Args:
        stores: ``{extractor name: feature store}`` (same slides and splits).
        config: A ScanGen config (``scangen.lam > 0``).
        output_dir: Writes ``benchmark.json`` and ``benchmark.md``.
        seeds: Trainer seeds.

    Returns:
        ``{"rows": {name: summary}, "runs": [...]}``.

    """
    output_dir = Path(output_dir)
    rows, runs = {}, []
    for name, store in stores.items():
        res = compare_scangen(
            config,
            output_dir / name,
            store=store,
            aggregators=(config["model"]["aggregator"],),
            seeds=seeds,
        )
        rows[name] = next(iter(res["rows"].values()))
        runs += [{"extractor": name, **r} for r in res["runs"]]
    result = {
        "rows": rows,
        "runs": runs,
        "seeds": [int(s) for s in seeds],
        "aggregator": config["model"]["aggregator"],
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "benchmark.json", _jsonable(result))
    atomic_write_text(output_dir / "benchmark.md", format_benchmark_markdown(rows))
    return result


def format_benchmark_markdown(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown of :func:`benchmark_feature_extractors` (rows: feature extractors)."""
    return format_comparison_markdown(rows, label="Feature extractor")


#: The rows of ``benchmark-fm --synthetic``: synthetic FM-like feature worlds
#: standing in for feature extractors (NOT real foundation models).
SYNTHETIC_EXTRACTORS: dict[str, dict[str, Any]] = {
    "synthetic-d64": {"feature_dim": 64},
    "synthetic-d128": {"feature_dim": 128},
    "synthetic-d64-strong-scanner-shift": {"feature_dim": 64, "world": {"scanner_shift": 0.8}},
}


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
