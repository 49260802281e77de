"""Limited-scanner ablation of ScanGen (paper Fig. 4), run as a script.

ScanGen is trained with every combination of ``--min-scanners`` .. S of the
multi-scanner pool's scanners (the test set keeps every scanner); each
combination's CoV gain is the relative change (%) of the test scanner CoV
against the baseline (``lambda = 0``, same seed). Writes ``ablation.json``
in the output folder and prints the per-size summary.

The features come from ``--store`` (a FeatureStore with the ScanGen splits,
e.g. from ``tia-scanner-robust extract-features``) or, with ``--synthetic``,
from a synthetic FM-like store (NOT a real foundation model) built in the
output folder with the config's ``synthetic`` sizes.

Usage::

    python experiments/scangen_ablation.py --help
    python experiments/scangen_ablation.py --synthetic -o runs/ablation \
        --set "synthetic.world={scanners: [A, B, C, D]}" --set trainer.max_steps=100

"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from tia_scanner_robust._io import atomic_write_json, to_jsonable
from tia_scanner_robust.cli.train_mil import parse_set_options
from tia_scanner_robust.training.fm_benchmark import relative_change_percent
from tia_scanner_robust.training.mil import open_store, run_mil
from tia_scanner_robust.training.mil_config import MILConfig, load_mil_config
from tia_scanner_robust.training.synthetic import make_synthetic_store

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tia_scanner_robust.data.feature_store import FeatureStore

__all__ = ["limited_scanner_ablation", "main"]


def limited_scanner_ablation(
    config: MILConfig | Mapping[str, Any],
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
    config = load_mil_config(config)
    output_dir = Path(output_dir)
    store = open_store(store, config)
    pool_scanners = sorted({s.scanner for s in store.filter(split=config.data.scangen_split)})
    if len(pool_scanners) < max(2, min_scanners):
        msg = f"The ScanGen pool has {len(pool_scanners)} scanner(s); at least 2 are needed."
        raise ValueError(msg)
    base_cfg = config.updated({"trainer": {"seed": int(seed)}, "scangen": {"lam": 0.0}})
    baseline = run_mil(base_cfg, output_dir / "baseline", store=store)["test"]
    combos = []
    for size in range(max(2, min_scanners), len(pool_scanners) + 1):
        for combo in itertools.combinations(pool_scanners, size):
            cfg = config.updated(
                {"trainer": {"seed": int(seed)}, "scangen": {"scanners": list(combo)}}
            )
            res = run_mil(cfg, output_dir / "+".join(combo), store=store)["test"]
            combos.append(
                {
                    "scanners": list(combo),
                    "size": size,
                    "test": res,
                    "cov_change_percent": relative_change_percent(
                        res["scanner_cov"], baseline["scanner_cov"]
                    ),
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
    atomic_write_json(output_dir / "ablation.json", to_jsonable(result))
    return result


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_spec", default="mil_scangen", show_default=True)
@click.option(
    "--store",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="FeatureStore (zarr folder) with train/scangen/val/test splits.",
)
@click.option("--synthetic", is_flag=True, help="Build a synthetic FM-like store in the output.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--min-scanners", type=click.IntRange(2), default=2, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override a MIL config field (YAML value). Repeatable.",
)
def main(
    config_spec: str,
    store: Path | None,
    *,
    synthetic: bool,
    output_dir: Path,
    min_scanners: int,
    seed: int,
    sets: tuple[str, ...],
) -> None:
    """Run the limited-scanner ablation and print the CoV change per combination size."""
    try:
        config = load_mil_config(config_spec, parse_set_options(sets))
    except (FileNotFoundError, ValueError) as err:
        raise click.UsageError(str(err)) from err
    if synthetic == (store is not None or config.data.store is not None):
        msg = "Give exactly one of --store (or data.store) or --synthetic."
        raise click.UsageError(msg)
    output_dir.mkdir(parents=True, exist_ok=True)
    features: Any = store
    if synthetic:
        features = make_synthetic_store(
            output_dir / "synthetic_features.zarr", **config.synthetic.store_kwargs()
        )
    result = limited_scanner_ablation(
        config, output_dir, store=features, min_scanners=min_scanners, seed=seed
    )
    click.echo(json.dumps(result["by_size"], indent=2))
    click.echo(f"wrote {output_dir / 'ablation.json'}")


if __name__ == "__main__":
    main()
