"""Training and evaluating one demo variant: config, training run, scanner-paired Dice.

- :func:`demo_config` takes a shipped config (``baseline``,
  ``colorjitter_simcons``...) and applies the light demo model
  (:data:`DEMO_MODEL`: Unet with a ResNet18 encoder of depth 4, 128-px crops,
  cosine schedule, ``max_steps`` steps) and the task's data;
- :func:`train_variant` trains it (checkpointed, resumable, and reused when
  already finished with the same config);
- :func:`evaluate_variant` runs the best checkpoint through
  :class:`~tia_scanner_robust.engines.consistency.ScannerConsistencyEvaluator`
  (TIAToolbox's ``SemanticSegmentor.run()`` per scanner): scanner-paired Dice
  (average and minimum over the scanner pairs) on ``paired/``, and the task
  Dice against the labels on the held-out reference scans, as a
  :class:`~tia_scanner_robust.report.comparison.VariantEvaluation`;
- :class:`VariantSpec` and :func:`run_variant`: one (variant, seed), trained
  and evaluated, stored by what it trains.

Finished runs and evaluations are cached on disk and reused.

Examples:
    >>> spec = VariantSpec("FDA + SimCons", "fda_simcons")
    >>> spec.run_name(seed=0, steps=DEFAULT_STEPS)
    'fda_simcons-seed0-steps200'
    >>> DEMO_MODEL["arch"], DEMO_MODEL["encoder_name"]
    ('Unet', 'tu-resnet18')

"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._io import atomic_write_json
from tia_scanner_robust.report.comparison import VariantEvaluation
from tia_scanner_robust.training.configs import load_experiment_config, merge_overrides

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tia_scanner_robust.demo.task import DemoTask
    from tia_scanner_robust.training.config import ExperimentConfig

__all__ = [
    "DEFAULT_STEPS",
    "DEMO_MODEL",
    "RunRecord",
    "TrainedVariant",
    "VariantSpec",
    "demo_config",
    "evaluate_variant",
    "run_cache_key",
    "run_variant",
    "train_variant",
]

logger = logging.getLogger(__name__)

#: The light demo network (overrides the shipped configs' DeepLabV3+ / ResNet34):
#: a Unet on timm's ResNet18 (smp's ``tu-`` encoders build only the stages the
#: depth uses: 3.1 M parameters at depth 4) with a thin decoder.
DEMO_MODEL: dict[str, Any] = {
    "arch": "Unet",
    "encoder_name": "tu-resnet18",
    "encoder_weights": None,
    "patch_size": 128,
    "model_kwargs": {"encoder_depth": 4, "decoder_channels": [64, 32, 16, 16]},
}
#: Optimiser steps of a full demo run.
DEFAULT_STEPS = 200

_RUN_MARKER = "done.json"
_EVAL_FILE = "evaluation.json"


def demo_config(
    config: str | Path,
    task: DemoTask,
    *,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    output_dir: str | Path = "runs/demo",
    batch_size: int = 8,
    lr: float = 1e-3,
    device: str = "cpu",
    progress: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """A shipped config (or YAML file) with the light demo model and the task's data.

    Overrides applied on top of ``config``: :data:`DEMO_MODEL` (Unet,
    ResNet18 encoder of depth 4, 128-px patches), 128-px crops, Adam with
    ``lr`` and a cosine schedule over ``steps`` optimiser steps, the task's
    folders and number of classes, ``seed``, ``device`` and ``output_dir``;
    then ``overrides`` (e.g. a different SimCons ``lam``). The style
    augmentation and the hooks come from ``config``.

    Args:
        config: Shipped config name or YAML file.
        task: The :class:`~tia_scanner_robust.demo.task.DemoTask`.
        steps: Optimiser steps (``max_steps``); the number of epochs follows.
        seed: Seed of the run.
        output_dir: Where checkpoints and logs go.
        batch_size: Batch size (SimCons doubles the images per step).
        lr: Learning rate.
        device: Torch device.
        progress: Show the trainer's progress bars.
        overrides: Further nested overrides.

    Returns:
        The validated config.

    """
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        msg = f"steps must be a positive integer, got {steps!r}."
        raise ValueError(msg)
    n_train = task.n_images("train")
    steps_per_epoch = max(1, n_train // int(batch_size))
    crop = int(DEMO_MODEL["patch_size"])
    light = {
        "trainer": {
            "epochs": math.ceil(int(steps) / steps_per_epoch),
            "max_steps": int(steps),
            "batch_size": int(batch_size),
            "lr": float(lr),
            "scheduler": "cosine",
            "min_lr": float(lr) / 100,
            "device": device,
            "seed": int(seed),
            "output_dir": str(output_dir),
            "checkpoint_every_steps": 50,
            "log_every_n_steps": 10,
            "num_workers": 0,
            "progress": bool(progress),
        },
        "model": {**DEMO_MODEL, "num_classes": task.num_classes, "class_dict": task.class_dict},
        "data": {
            "train_dir": str(task.train_dir),
            "val_dir": str(task.val_dir),
            "crop_size": crop,
            "val_crop_size": None,
            "num_classes": task.num_classes,
        },
    }
    return load_experiment_config(config, overrides=merge_overrides(light, dict(overrides or {})))


# --------------------------------------------------------------------------- training
@dataclass
class TrainedVariant:
    """A finished training run.

    Attributes:
        output_dir: The run folder.
        checkpoint: Best checkpoint (``best.pt``), or ``last.pt`` without validation.
        global_step: Optimiser steps done.
        best_metric: Best validation Dice (``None`` without validation).
        best_epoch: Its epoch.
        train_seconds: Wall time of the training (of the session that finished it).
        seconds_per_step: ``train_seconds`` per step of that session.
        reused: ``True`` when a finished run was found and not retrained.
    """

    output_dir: Path
    checkpoint: Path
    global_step: int
    best_metric: float | None
    best_epoch: int | None
    train_seconds: float
    seconds_per_step: float | None
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "output_dir": str(self.output_dir),
            "checkpoint": str(self.checkpoint),
            "global_step": self.global_step,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
            "seconds_per_step": self.seconds_per_step,
        }


def _clear_run(folder: Path) -> None:
    for name in (_RUN_MARKER, "last.pt", "best.pt", "metrics.jsonl", "metrics.csv", "steps.jsonl"):
        (folder / name).unlink(missing_ok=True)


#: Config fields that locate a run rather than define it (compared relative to the run folder).
_PATH_FIELDS = (("trainer", "output_dir"), ("data", "train_dir"), ("data", "val_dir"))
#: Config fields that change what is shown, not what is trained.
_DISPLAY_FIELDS = (("trainer", "progress"), ("trainer", "num_workers"))
#: Config fields renamed since runs were first cached: (section, old, new).
_RENAMED_FIELDS = (("trainer", "checkpoint_every_n_steps", "checkpoint_every_steps"),)


def run_cache_key(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a finished run is reused by: its config without where it lies or how it displays.

    Paths are made relative to the run folder (``trainer.output_dir``), so a
    run folder copied or moved with its data (e.g. a copied demo output
    folder) is still recognised; ``trainer.progress`` and
    ``trainer.num_workers`` are left out; a field stored under its old name
    (``trainer.checkpoint_every_n_steps``) counts as its new one.

    Examples:
        >>> a = {
        ...     "trainer": {"output_dir": "/a/runs/x", "lr": 0.1, "progress": True},
        ...     "data": {"train_dir": "/a/data/train", "val_dir": None},
        ... }
        >>> b = {
        ...     "trainer": {"output_dir": "/copy/runs/x", "lr": 0.1, "progress": False},
        ...     "data": {"train_dir": "/copy/data/train", "val_dir": None},
        ... }
        >>> run_cache_key(a) == run_cache_key(b), run_cache_key(a)["data"]["train_dir"]
        (True, '../../data/train')
        >>> old = {"trainer": {"checkpoint_every_n_steps": 20}}
        >>> run_cache_key(old) == run_cache_key({"trainer": {"checkpoint_every_steps": 20}})
        True

    """
    key = json.loads(json.dumps(dict(config), default=str))
    folder = (key.get("trainer") or {}).get("output_dir")
    for section, name in _PATH_FIELDS:
        node = key.get(section)
        if isinstance(node, dict) and node.get(name) is not None and folder is not None:
            node[name] = Path(os.path.relpath(node[name], folder)).as_posix()
    for section, name in _DISPLAY_FIELDS:
        if isinstance(key.get(section), dict):
            key[section].pop(name, None)
    for section, old, new in _RENAMED_FIELDS:
        node = key.get(section)
        if isinstance(node, dict) and old in node:
            value = node.pop(old)
            if node.get(new) is None:
                node[new] = value
    return key


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for name in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(name), new.get(name), f"{path}.{name}" if path else name)
        return out
    return [] if old == new else [f"{path or 'config'}: {old!r} -> {new!r}"]


def train_variant(config: ExperimentConfig, *, resume: bool = True) -> TrainedVariant:
    """Train a config with :func:`~tia_scanner_robust.training.builder.build_trainer`.

    The run folder is ``config.trainer.output_dir``. With ``resume``, a run
    finished with the same config (``done.json``, compared by
    :func:`run_cache_key`: a copied or moved folder is reused too) is reused
    without training, and an interrupted one continues from ``last.pt``. A
    finished run with a different config is never deleted implicitly: it is
    an error unless ``resume=False``, which trains again from scratch.

    Args:
        config: The experiment config.
        resume: Reuse / resume what the folder holds (``False``: start afresh,
            replacing the folder's run).

    Returns:
        The :class:`TrainedVariant`.

    Raises:
        ValueError: With ``resume``, if the folder holds a finished run of another config.

    """
    from tia_scanner_robust.training import build_trainer  # noqa: PLC0415

    folder = Path(config.trainer.output_dir)
    marker = folder / _RUN_MARKER
    wanted = config.to_dict()
    if marker.is_file():
        done = json.loads(marker.read_text(encoding="utf-8"))
        checkpoint = folder / str(done.get("checkpoint", ""))
        same = run_cache_key(done.get("config") or {}) == run_cache_key(wanted)
        if resume and same and checkpoint.is_file():
            return TrainedVariant(
                output_dir=folder,
                checkpoint=checkpoint,
                global_step=int(done["global_step"]),
                best_metric=done.get("best_metric"),
                best_epoch=done.get("best_epoch"),
                train_seconds=float(done.get("train_seconds", 0.0)),
                seconds_per_step=done.get("seconds_per_step"),
                reused=True,
            )
        if resume and not same:
            changed = _differences(run_cache_key(done.get("config") or {}), run_cache_key(wanted))
            msg = (
                f"Run folder {folder} holds a finished run of another config "
                f"({'; '.join(changed[:3])}); it is kept. Choose another output folder, or "
                "start afresh explicitly (--overwrite, resume=False)."
            )
            raise ValueError(msg)
        logger.warning(
            "Training again in %s (%s).",
            folder,
            "resume=False" if not resume else f"its checkpoint {checkpoint.name} is missing",
        )
        _clear_run(folder)
    elif not resume:
        _clear_run(folder)
    trainer = build_trainer(config)
    start_step = 0
    if resume and trainer.last_checkpoint_path.is_file():
        trainer.load_checkpoint(trainer.last_checkpoint_path)
        start_step = trainer.global_step
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    seconds = time.perf_counter() - t0
    steps_now = result.global_step - start_step
    checkpoint = result.best_checkpoint or result.last_checkpoint
    if checkpoint is None:  # pragma: no cover - the trainer always writes last.pt
        msg = f"Training in {folder} wrote no checkpoint."
        raise RuntimeError(msg)
    trained = TrainedVariant(
        output_dir=folder,
        checkpoint=checkpoint,
        global_step=result.global_step,
        best_metric=result.best_metric,
        best_epoch=result.best_epoch,
        train_seconds=seconds,
        seconds_per_step=seconds / steps_now if steps_now else None,
    )
    atomic_write_json(
        marker,
        {**trained.to_dict(), "checkpoint": checkpoint.name, "config": wanted},
    )
    return trained


# --------------------------------------------------------------------------- evaluation
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _maybe(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def evaluate_variant(
    checkpoint: str | Path,
    task: DemoTask,
    out_dir: str | Path,
    *,
    name: str = "model",
    batch_size: int = 16,
    device: str = "cpu",
    progress: bool = True,
    report: bool = True,
) -> VariantEvaluation:
    """Evaluate a checkpoint on the task's paired test set through TIAToolbox's engine.

    Runs :class:`~tia_scanner_robust.engines.consistency.ScannerConsistencyEvaluator`
    (``SemanticSegmentor.run()`` once per scanner) with the background class
    ignored in Dice (so the paired Dice of the ``"nuclei"`` scheme is the
    nuclei Dice between two scanners' predictions). The result is cached in
    ``out_dir/evaluation.json`` keyed by the checkpoint's hash.

    Args:
        checkpoint: A trainer checkpoint (``best.pt``/``last.pt``).
        task: The :class:`~tia_scanner_robust.demo.task.DemoTask`.
        out_dir: Evaluation folder.
        name: Report label.
        batch_size: Engine batch size.
        device: Torch device.
        progress: Show the evaluator's progress bar.
        report: Also write the evaluator's own report (JSON, HTML, figures) in ``out_dir``.

    Returns:
        The :class:`~tia_scanner_robust.report.comparison.VariantEvaluation`.

    """
    from tia_scanner_robust.engines import ScannerConsistencyEvaluator  # noqa: PLC0415

    checkpoint = Path(checkpoint)
    out_dir = Path(out_dir)
    sha = _sha256(checkpoint)
    cache = out_dir / _EVAL_FILE
    if cache.is_file():
        cached = json.loads(cache.read_text(encoding="utf-8"))
        # an evaluation cached before intervals and warnings existed is redone
        if cached.get("checkpoint_sha256") == sha and "warnings" in cached:
            cached["name"] = name
            return VariantEvaluation.from_dict(cached)
    evaluator = ScannerConsistencyEvaluator(
        str(checkpoint),
        task="segmentation",
        num_classes=task.num_classes,
        ignore_background=True,
        cov_class=task.nuclei_class,
        batch_size=batch_size,
        device=device,
        n_examples=1,
        save_predictions=False,
        verbose=progress,
    )
    t0 = time.perf_counter()
    result = evaluator.evaluate(task.collection, out_dir / "engine")
    seconds = time.perf_counter() - t0
    shutil.rmtree(out_dir / "engine", ignore_errors=True)
    report_dir = None
    if report:
        from tia_scanner_robust.report import write_report  # noqa: PLC0415

        write_report(result, out_dir, title=f"Scanner consistency: {name}", analysis=False)
        report_dir = str(out_dir)
    pc = result.primary_result
    reference = result.scanners[0]
    per_scanner = {
        s: _maybe(result.per_scanner.get(s, {}).get("mean_gt_dice")) for s in result.scanners
    }
    evaluation = VariantEvaluation(
        name=name,
        scanners=list(result.scanners),
        matrix=[[_maybe(v) for v in row] for row in np.asarray(pc.matrix, dtype=float)],
        pairs={f"{a}|{b}": _maybe(v) for (a, b), v in pc.pairs.items()},
        n_samples={f"{a}|{b}": int(v) for (a, b), v in pc.n_samples.items()},
        paired_dice_avg=float(pc.average),
        paired_dice_min=float(pc.minimum),
        min_pair=list(pc.min_pair) if pc.min_pair else None,
        task_dice=per_scanner.get(reference),
        task_dice_per_scanner=per_scanner,
        cov=None if result.cov is None else _maybe(result.cov.cov),
        checkpoint=str(checkpoint),
        checkpoint_sha256=sha,
        eval_seconds=seconds,
        report_dir=report_dir,
        average_ci95=_interval((pc.ci95 or {}).get("average")),
        minimum_ci95=_interval((pc.ci95 or {}).get("minimum")),
        pair_ci95={
            f"{a}|{b}": _interval(v) for (a, b), v in ((pc.ci95 or {}).get("pairs") or {}).items()
        },
        warnings=list(result.warnings),
    )
    atomic_write_json(cache, evaluation.to_dict())
    return evaluation


def _interval(value: Any) -> list[float] | None:
    """A ``[low, high]`` bootstrap interval as plain floats (``None`` if absent or not finite)."""
    if value is None:
        return None
    low, high = (_maybe(v) for v in value)
    return None if low is None or high is None else [low, high]


# --------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class VariantSpec:
    """A training variant: a report label, a shipped config and extra overrides.

    Runs are stored by *what they train* (:meth:`run_name`), not by label:
    two specs giving the same config (e.g. ``lam=0.3`` on a config whose
    ``lam`` already is 0.3) share one run.

    Examples:
        >>> spec = VariantSpec("FDA + SimCons (lambda 0.5)", "fda_simcons", lam=0.5)
        >>> spec.slug, spec.all_overrides()["hooks"][0]["kwargs"]["lam"]
        ('fda-simcons-lambda-0-5', 0.5)
        >>> spec.run_name(seed=1, steps=200)
        'fda_simcons-lam0.5-seed1-steps200'
        >>> VariantSpec("same as shipped", "fda_simcons", lam=0.3).run_name(seed=1, steps=200)
        'fda_simcons-seed1-steps200'

    """

    label: str
    config: str
    lam: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def slug(self) -> str:
        """File-system friendly label."""
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-") or "run"

    def run_name(self, *, seed: int, steps: int) -> str:
        """Folder name of this spec's run: config, non-default lambda, overrides, seed, steps."""
        parts = [Path(self.config).stem]
        if self.lam is not None:
            shipped = [h.kwargs.get("lam") for h in load_experiment_config(self.config).hooks]
            if float(self.lam) not in shipped:
                parts.append(f"lam{self.lam:g}")
        if self.overrides:
            text = json.dumps(self.overrides, sort_keys=True, default=str)
            parts.append(hashlib.sha256(text.encode()).hexdigest()[:8])
        return "-".join([*parts, f"seed{seed}", f"steps{steps}"])

    def all_overrides(self) -> dict[str, Any]:
        """``overrides`` plus the SimCons ``lam`` (which rewrites the config's hooks)."""
        out = dict(self.overrides)
        if self.lam is not None:
            base = load_experiment_config(self.config)
            hooks = [h.to_dict() for h in base.hooks]
            if not any(h["name"] == "simcons" for h in hooks):
                msg = (
                    f"VariantSpec {self.label!r}: lam is set but {self.config!r} "
                    "has no simcons hook."
                )
                raise ValueError(msg)
            for hook in hooks:
                if hook["name"] == "simcons":
                    hook["kwargs"] = {**hook["kwargs"], "lam": float(self.lam)}
            out["hooks"] = hooks
        return out


@dataclass
class RunRecord:
    """One trained and evaluated (variant, seed)."""

    label: str
    config: str
    lam: float | None
    seed: int
    steps: int
    trained: TrainedVariant
    evaluation: VariantEvaluation

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "label": self.label,
            "config": self.config,
            "lam": self.lam,
            "seed": self.seed,
            "steps": self.steps,
            "training": self.trained.to_dict(),
            "evaluation": self.evaluation.to_dict(),
        }


def run_variant(
    spec: VariantSpec,
    task: DemoTask,
    out_dir: str | Path,
    *,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    batch_size: int = 8,
    lr: float = 1e-3,
    device: str = "cpu",
    progress: bool = True,
    resume: bool = True,
) -> RunRecord:
    """Train (or reuse) and evaluate one variant with one seed.

    The run lives in ``out_dir/runs/<name>`` and its evaluation in
    ``out_dir/eval/<name>``, with ``name = spec.run_name(seed=..., steps=...)``.
    """
    run_name = spec.run_name(seed=seed, steps=steps)
    config = demo_config(
        spec.config,
        task,
        steps=steps,
        seed=seed,
        output_dir=Path(out_dir) / "runs" / run_name,
        batch_size=batch_size,
        lr=lr,
        device=device,
        progress=progress,
        overrides=spec.all_overrides(),
    )
    trained = train_variant(config, resume=resume)
    evaluation = evaluate_variant(
        trained.checkpoint,
        task,
        Path(out_dir) / "eval" / run_name,
        name=spec.label,
        device=device,
        progress=progress,
    )
    return RunRecord(spec.label, spec.config, spec.lam, seed, steps, trained, evaluation)
