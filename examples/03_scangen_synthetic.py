"""ScanGen on synthetic FM-like features: baseline vs CE + lambda * ScanGen.

Setting (a) of ``docs/results.md``: synthetic foundation-model-like
patch features (:mod:`tia_scanner_robust.data.synthetic_features`), a
labelled task pool scanned by 2 of 6 scanners, a multi-scanner pool for the
ScanGen term, held-out test specimens under all 6 scanners. Both variants
keep the projection ``g``; they are trained with the plugin's trainer and
:class:`~tia_scanner_robust.training.scangen.ScanGenHook`, and evaluated with
task AUC and scanner CoV (METHODS.md Eq. 1). CPU only.

By default it runs a small version (1 seed, fewer slides: about a minute on 2 CPU cores).
The numbers in ``docs/results.md`` come from::

    python examples/03_scangen_synthetic.py --seeds 0 1 2 3 4 5 6 7 8 9 --full

"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from tia_scanner_robust.data.feature_store import FeatureStore
from tia_scanner_robust.training.fm_benchmark import compare_scangen, format_comparison_markdown
from tia_scanner_robust.training.mil_config import load_mil_config
from tia_scanner_robust.training.synthetic import make_synthetic_store


def main() -> None:
    """Run the comparison and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--aggregators", nargs="+", default=["gap"])
    parser.add_argument("--full", action="store_true", help="the documented setting")
    parser.add_argument("--alpha", type=float, default=0.7)
    parser.add_argument("--margin", type=float, default=1.0)
    parser.add_argument("--lam", type=float, default=1.0)
    parser.add_argument(
        "--out", default=None, help="output folder (default: a temp dir; stores are reused)"
    )
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="scangen_synthetic_"))
    if args.full:
        data_kwargs: dict = {}
        trainer = {"max_steps": 400, "epochs": 25}
    else:  # small: fewer slides and steps
        data_kwargs = {"task_specimens": 200, "multi_specimens": 60, "patches": 32}
        trainer = {"max_steps": 300, "epochs": 30}
    config = load_mil_config(
        "mil_scangen",
        {
            "trainer": trainer,
            "scangen": {"lam": args.lam, "alpha": args.alpha, "margin": args.margin},
        },
    )
    all_rows: dict[str, list] = {agg: [] for agg in args.aggregators}
    runs = []
    for seed in args.seeds:
        path = out / f"features_seed{seed}.zarr"
        done = out / f"features_seed{seed}.done"  # written once the store is complete
        if done.is_file():
            store = FeatureStore(path, mode="r")
        else:
            store = make_synthetic_store(path, seed=seed, **data_kwargs)
            done.write_text("ok\n")
        result = compare_scangen(
            config,
            out / f"seed{seed}",
            store=store,
            aggregators=args.aggregators,
            seeds=[seed],
        )
        runs += result["runs"]
        for agg in args.aggregators:
            all_rows[agg].append(result["rows"][agg])
    # mean +- std over seeds (every seed has its own synthetic world and store)
    table = {}
    for agg in args.aggregators:
        summary = {}
        for metric in ("auc", "scanner_cov", "magnification_cov"):
            base = np.array([r[metric]["baseline"] for r in all_rows[agg]], dtype=float)
            ours = np.array([r[metric]["scangen"] for r in all_rows[agg]], dtype=float)
            rel = 100 * (ours.mean() / base.mean() - 1) if np.isfinite(base).all() else np.nan
            summary[metric] = {
                "baseline": float(base.mean()),
                "baseline_std": float(base.std()),
                "scangen": float(ours.mean()),
                "scangen_std": float(ours.std()),
                "delta": float(ours.mean() - base.mean()),
                "relative_change_percent": float(rel),
            }
        table[agg] = summary
    markdown = format_comparison_markdown(table)
    (out / "summary.json").write_text(
        json.dumps({"seeds": args.seeds, "rows": table, "runs": runs}, indent=2, default=str)
    )
    (out / "summary.md").write_text(markdown)
    print(markdown)
    print(f"results in {out}")


if __name__ == "__main__":
    main()
