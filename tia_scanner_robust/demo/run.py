"""The whole demo: build the task, train and evaluate each variant, write the comparison report.

:func:`run_demo` is what ``tia-scanner-robust demo`` runs: it builds the demo
task (:func:`~tia_scanner_robust.demo.task.build_demo_task`), trains and
evaluates a baseline and a SimCons model
(:func:`~tia_scanner_robust.demo.variants.run_variant`), and writes a
self-contained HTML report comparing them
(:func:`~tia_scanner_robust.report.comparison.write_comparison_report`).
Everything is cached on disk: re-running reuses the task, finished models and
finished evaluations.

Examples:
    >>> DEMO_VARIANTS
    {'baseline': 'baseline', 'simcons': 'fda_simcons'}
    >>> "plus fda in the training pipeline" in _demo_note(DEMO_VARIANTS)
    True

"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tia_scanner_robust.demo.task import DemoTask, build_demo_task
from tia_scanner_robust.demo.variants import (
    DEFAULT_STEPS,
    DEMO_MODEL,
    RunRecord,
    VariantSpec,
    run_variant,
)
from tia_scanner_robust.report.comparison import DEFAULT_NOTE, write_comparison_report

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["DEMO_VARIANTS", "QUICK_STEPS", "DemoResult", "run_demo"]

logger = logging.getLogger(__name__)

#: Demo variants: report label -> shipped config name.
DEMO_VARIANTS: dict[str, str] = {"baseline": "baseline", "simcons": "fda_simcons"}
#: Optimiser steps of ``--quick``.
QUICK_STEPS = 30


def _demo_note(variants: Mapping[str, str]) -> str:
    """The report's note: what the comparison mixes, and what it is."""
    parts = []
    for label, config in variants.items():
        style = config.removesuffix("_simcons")
        if config.endswith("_simcons") and style:
            parts.append(
                f"'{label}' uses the shipped {config} config: the baseline's flips, blur and "
                f"noise, plus {style} in the training pipeline, plus the SimCons consistency "
                f"loss, so its difference from the baseline mixes both; docs/results.md "
                f"separates them ({style} alone versus {style} + SimCons, over seeds)."
            )
    return " ".join([*parts, DEFAULT_NOTE])


@dataclass
class DemoResult:
    """What :func:`run_demo` produced."""

    out_dir: Path
    task: DemoTask
    records: dict[str, RunRecord]
    report_html: Path
    report_json: Path

    def summary_table(self) -> str:
        """A plain-text table of the variants' numbers."""
        header = (
            f"{'variant':<10} {'config':<22} {'paired Dice avg':>15} {'min':>7} "
            f"{'task Dice':>10} {'train s':>8}"
        )
        lines = [header, "-" * len(header)]
        for label, rec in self.records.items():
            ev = rec.evaluation
            task_dice = "n/a" if ev.task_dice is None else f"{ev.task_dice:.4f}"
            lines.append(
                f"{label:<10} {rec.config:<22} {ev.paired_dice_avg:>15.4f} "
                f"{ev.paired_dice_min:>7.4f} {task_dice:>10} {rec.trained.train_seconds:>8.1f}"
            )
        return "\n".join(lines)


def run_demo(
    out_dir: str | Path,
    *,
    steps: int | None = None,
    quick: bool = False,
    seed: int = 0,
    variants: Mapping[str, str] | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    resume: bool = True,
    profiles: Sequence[str] | None = None,
) -> DemoResult:
    """Build the paired demo set, train baseline and SimCons, evaluate, write the report.

    Args:
        out_dir: Output folder (``data/``, ``runs/``, ``eval/``, ``report.html``,
            ``report.json``). Re-running reuses what is finished.
        steps: Optimiser steps per model (default
            :data:`~tia_scanner_robust.demo.variants.DEFAULT_STEPS`, or
            :data:`QUICK_STEPS` with ``quick``).
        quick: Smoke run: few steps, batch 4.
        seed: Seed of both runs.
        variants: Report label -> shipped config (default :data:`DEMO_VARIANTS`).
        batch_size: Batch size (default 8, 4 with ``quick``).
        device: Torch device.
        progress: Show progress bars.
        echo: Called with one line per stage (e.g. ``click.echo``).
        resume: Reuse finished runs and continue interrupted ones (``False``:
            train every model again, replacing its run).
        profiles: Scanner profiles of the paired test set: built-in names
            or fitted profile files (``fit-scanner-profile``); the first is
            the reference scanner (default: every built-in profile).

    Returns:
        The :class:`DemoResult`.

    """
    say = echo or logger.info
    steps = int(steps) if steps is not None else (QUICK_STEPS if quick else DEFAULT_STEPS)
    batch_size = int(batch_size) if batch_size is not None else (4 if quick else 8)
    variants = dict(variants or DEMO_VARIANTS)
    out = Path(out_dir)
    t0 = time.perf_counter()
    say(f"[1/3] Demo task in {out / 'data'} (bundled H&E image, simulated scanners)")
    task = build_demo_task(out / "data", progress=progress, profiles=profiles)
    say(
        f"      {task.n_images('train')} training tiles, {task.n_images('val')} validation, "
        f"{len(task.collection.specimens)} held-out tiles x {len(task.collection.scanners)} "
        "scanners"
    )
    records: dict[str, RunRecord] = {}
    for i, (label, config) in enumerate(variants.items(), start=1):
        say(f"[2/3] ({i}/{len(variants)}) {label}: train '{config}' for {steps} steps, evaluate")
        record = run_variant(
            VariantSpec(label, config),
            task,
            out,
            steps=steps,
            seed=seed,
            batch_size=batch_size,
            device=device,
            progress=progress,
            resume=resume,
        )
        state = "reused" if record.trained.reused else f"{record.trained.train_seconds:.0f} s"
        say(
            f"      trained ({state}); paired Dice avg {record.evaluation.paired_dice_avg:.4f}, "
            f"min {record.evaluation.paired_dice_min:.4f}"
        )
        records[label] = record
    say(f"[3/3] Report in {out}")
    settings = {
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "quick": bool(quick),
        "device": device,
        "model": DEMO_MODEL,
        "crop_size": DEMO_MODEL["patch_size"],
        "variants": variants,
        "task": task.parameters | {"class_dict": task.class_dict},
        "n_tiles": {s: task.n_images(s) for s in ("train", "val", "test")},
        "scanners": task.collection.scanners,
        "wall_seconds": time.perf_counter() - t0,
    }
    paths = write_comparison_report(
        {label: rec.evaluation for label, rec in records.items()},
        out,
        settings=settings,
        note=_demo_note(variants),
        training={
            label: rec.trained.to_dict() | {"config": rec.config} for label, rec in records.items()
        },
    )
    return DemoResult(out, task, records, paths["html"], paths["json"])
