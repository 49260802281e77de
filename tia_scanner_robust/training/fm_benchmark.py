"""Baseline vs ScanGen tables: per aggregator (paper Table 2) and per feature extractor (Table 1).

- :func:`compare_scangen`: the baseline (``lam = 0``, keeps ``g``) and
  ScanGen for every aggregator and seed, mean and std per metric, delta and
  relative change in % (``train-mil --compare``);
- :func:`benchmark_feature_extractors`: one row per feature store
  (``benchmark-fm``); :data:`SYNTHETIC_EXTRACTORS` are the synthetic
  FM-like worlds of ``benchmark-fm --synthetic`` (NOT real foundation models);
- :func:`format_comparison_markdown` / :func:`format_benchmark_markdown`:
  the Markdown tables.

The limited-scanner ablation (paper Fig. 4) is a script of the repository:
``experiments/scangen_ablation.py``.

"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._io import atomic_write_json, atomic_write_text, to_jsonable
from tia_scanner_robust.training.mil import open_store, run_mil
from tia_scanner_robust.training.mil_config import MILConfig, load_mil_config

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tia_scanner_robust.data.feature_store import FeatureStore

__all__ = [
    "SYNTHETIC_EXTRACTORS",
    "benchmark_feature_extractors",
    "compare_scangen",
    "format_benchmark_markdown",
    "format_comparison_markdown",
    "relative_change_percent",
]

#: The rows of ``benchmark-fm --synthetic``: synthetic FM-like feature worlds
#: standing in for feature extractors (NOT real foundation models).
SYNTHETIC_EXTRACTORS: dict[str, dict[str, Any]] = {
    "synthetic-d64": {"feature_dim": 64},
    "synthetic-d128": {"feature_dim": 128},
    "synthetic-d64-strong-scanner-shift": {"feature_dim": 64, "world": {"scanner_shift": 0.8}},
}


def _mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std())


def relative_change_percent(new: float, old: float) -> float:
    """``100 (new / old - 1)``; NaN when either is missing or ``old`` is 0.

    Examples:
        >>> round(relative_change_percent(0.8, 1.0), 6)
        -20.0

    """
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
            "relative_change_percent": relative_change_percent(s_mean, b_mean),
        }
    return row


def compare_scangen(
    config: MILConfig | Mapping[str, Any],
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
    config = load_mil_config(config)
    if config.scangen.lam <= 0:
        msg = "compare_scangen needs a config with scangen.lam > 0."
        raise ValueError(msg)
    output_dir = Path(output_dir)
    store = open_store(store, config)
    rows: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    for aggregator in aggregators:
        per: dict[str, list[dict[str, Any]]] = {"baseline": [], "scangen": []}
        for seed in seeds:
            for variant, results in per.items():
                lam = 0.0 if variant == "baseline" else config.scangen.lam
                cfg = config.updated(
                    {
                        "model": {"aggregator": aggregator},
                        "trainer": {"seed": int(seed)},
                        "scangen": {"lam": lam},
                    }
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
    atomic_write_json(output_dir / "comparison.json", to_jsonable(result))
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


def benchmark_feature_extractors(
    stores: Mapping[str, FeatureStore | str | Path],
    config: MILConfig | Mapping[str, Any],
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
    config = load_mil_config(config)
    output_dir = Path(output_dir)
    rows, runs = {}, []
    for name, store in stores.items():
        res = compare_scangen(
            config,
            output_dir / name,
            store=store,
            aggregators=(config.model.aggregator,),
            seeds=seeds,
        )
        rows[name] = next(iter(res["rows"].values()))
        runs += [{"extractor": name, **r} for r in res["runs"]]
    result = {
        "rows": rows,
        "runs": runs,
        "seeds": [int(s) for s in seeds],
        "aggregator": config.model.aggregator,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "benchmark.json", to_jsonable(result))
    atomic_write_text(output_dir / "benchmark.md", format_benchmark_markdown(rows))
    return result


def format_benchmark_markdown(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown of :func:`benchmark_feature_extractors` (rows: feature extractors)."""
    return format_comparison_markdown(rows, label="Feature extractor")
