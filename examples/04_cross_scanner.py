"""Example 04: the real cross-scanner experiment (leave-one-scanner-out, unpaired protocol).

What it does, on a labelled multi-scanner dataset whose scanners saw
*different* tissue (the domain-generalisation setting: Camelyon17, MIDOG,
COSAS...):

1. reads a manifest CSV (``specimen_id,scanner,path,mask_path``; see
   :func:`tia_scanner_robust.engines.unpaired.read_unpaired_manifest`), or
   writes one for a folder laid out as ``<scanner>/{images,masks}/<name>.png``
   (``--data-dir``);
2. for every held-out scanner (default: each in turn, leave-one-scanner-out)
   trains on the other scanners -- a few images of each training scanner are
   kept aside for validation, which picks ``best.pt``; the held-out scanner is
   never seen during training or model selection -- the shipped configs
   ``baseline``, ``colorjitter``, ``randstainna``, ``fda`` and each
   ``..._simcons``, for every seed, with one training setting (``--arch``,
   ``--encoder``, ``--crop-size``, ``--steps``, ``--lr``...) applied on top
   of every config, so only the augmentation and the SimCons term differ;
3. evaluates every model on the held-out scanner through TIAToolbox's
   ``SemanticSegmentor`` with
   :class:`~tia_scanner_robust.engines.unpaired.UnpairedEvaluator` (tumour
   Dice against each image's mask, background class ignored) and records the
   trivial predictors' Dice (all tumour, all background) on the same images;
4. writes ``results.md`` / ``results.json``: per held-out scanner the mean
   +- std over seeds, the mean and the minimum over held-out scanners
   (computed per seed, then mean +- std over seeds), the trivial rows;
   ``cross_scanner_dice.png`` (bars per held-out scanner) and, for the first
   seed of ``--overlay-variant``, the evaluator's overlays of the typical and
   worst held-out image of every fold (``overlays/<fold>.png``).

Every run is cached: a finished run is never retrained (same config ->
reused, see :func:`tia_scanner_robust.demo.train_variant`), an interrupted
one resumes from its ``last.pt``, and evaluations are keyed by the
checkpoint's SHA-256. Re-run the same command to continue; add seeds later
and only the new runs train.

Run small first::

    python examples/04_cross_scanner.py --data-dir ../shared/data/cosas_xscanner \
        --steps 20 --seeds 0 --variants baseline

The run recorded in docs/results.md is stated there with its command.
Outputs go to ``out/04_cross_scanner`` by default.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from tia_scanner_robust._io import atomic_write_image, atomic_write_json, atomic_write_text
from tia_scanner_robust.demo import train_variant
from tia_scanner_robust.engines.unpaired import (
    UnpairedEvaluator,
    choose_protocol,
    group_by_scanner,
    read_unpaired_manifest,
)
from tia_scanner_robust.report.comparison import aggregate_records, records_markdown
from tia_scanner_robust.training import list_configs, load_experiment_config
from tia_scanner_robust.training.configs import merge_overrides

#: Rows of the table: (label, shipped config).
VARIANTS = {
    "baseline": "Baseline",
    "colorjitter": "ColorJitter",
    "colorjitter_simcons": "ColorJitter + SimCons",
    "randstainna": "RandStainNA",
    "randstainna_simcons": "RandStainNA + SimCons",
    "fda": "FDA",
    "fda_simcons": "FDA + SimCons",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


# ----------------------------------------------------------------------------- data
def write_folder_manifest(data_dir: Path, out_csv: Path) -> Path:
    """A manifest for ``data_dir/<scanner>/{images,masks}/<name>.<ext>`` (same stems)."""
    rows = []
    for scanner_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        images = sorted(
            p for p in (scanner_dir / "images").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES
        )
        masks = {
            p.stem: p
            for p in (scanner_dir / "masks").glob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
        }
        for image in images:
            if image.stem not in masks:
                msg = f"{scanner_dir / 'masks'}: no mask for {image.name}."
                raise FileNotFoundError(msg)
            rows.append(
                [
                    f"{scanner_dir.name}/{image.stem}",
                    scanner_dir.name,
                    str(image.resolve()),
                    str(masks[image.stem].resolve()),
                ]
            )
    if not rows:
        msg = f"{data_dir}: no <scanner>/images/*.png found."
        raise FileNotFoundError(msg)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["specimen_id", "scanner", "path", "mask_path"])
    writer.writerows(rows)
    atomic_write_text(out_csv, buffer.getvalue())
    return out_csv


def rescaled_copy(samples: list[Any], factor: float, folder: Path) -> Path:
    """Write every sample shrunk by ``factor`` (area for images, nearest for masks); its manifest.

    Training and testing then see the same scale; a smaller scale buys more
    optimiser steps on a CPU.
    """
    from PIL import Image  # noqa: PLC0415

    from tia_scanner_robust.data.paired import load_sample_image, load_sample_mask  # noqa: PLC0415

    for sample in samples:
        stem = sample.specimen_id.split("/")[-1]
        image_path = folder / sample.scanner / "images" / f"{stem}.png"
        mask_path = folder / sample.scanner / "masks" / f"{stem}.png"
        if image_path.is_file() and mask_path.is_file():
            continue
        image = load_sample_image(sample)
        mask = np.asarray(load_sample_mask(sample, image.shape), dtype=np.uint8)
        size = (round(image.shape[1] / factor), round(image.shape[0] / factor))
        small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
        small_mask = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
        atomic_write_image(image_path, small)
        atomic_write_image(mask_path, small_mask)
    return write_folder_manifest(folder, folder / "manifest.csv")


def split_training_scanners(
    groups: dict[str, list[Any]], held_out: str, n_val: int, split_seed: int
) -> tuple[list[Any], list[Any]]:
    """Training and validation samples of a fold: ``n_val`` random images per training scanner."""
    train, val = [], []
    for scanner, items in groups.items():
        if scanner == held_out:
            continue
        order = np.random.default_rng([split_seed, *scanner.encode()]).permutation(len(items))
        chosen = set(order[:n_val].tolist()) if len(items) > n_val else set()
        for k, sample in enumerate(items):
            (val if k in chosen else train).append(sample)
    return train, val


def materialise(samples: list[Any], folder: Path) -> Path:
    """Write ``samples`` as ``folder/{images,masks}/<scanner>__<id>.png`` (the trainer's layout)."""
    from tia_scanner_robust.data.paired import load_sample_image, load_sample_mask  # noqa: PLC0415

    wanted = set()
    for sample in samples:
        stem = f"{sample.scanner}__{sample.specimen_id.replace('/', '_')}"
        wanted.add(stem)
        image_path = folder / "images" / f"{stem}.png"
        mask_path = folder / "masks" / f"{stem}.png"
        if image_path.is_file() and mask_path.is_file():
            continue
        image = load_sample_image(sample)
        mask = np.asarray(load_sample_mask(sample, image.shape), dtype=np.uint8)
        atomic_write_image(image_path, image)
        atomic_write_image(mask_path, mask)
    for sub in ("images", "masks"):  # a changed split must not leave stale files behind
        for path in (folder / sub).glob("*.png"):
            if path.stem not in wanted:
                path.unlink()
    return folder


# --------------------------------------------------------------------------- config
def experiment_config(
    config: str,
    *,
    train_dir: Path,
    val_dir: Path,
    run_dir: Path,
    seed: int,
    args: argparse.Namespace,
) -> Any:
    """A shipped config with this experiment's training setting on top."""
    n_train = len(list((train_dir / "images").glob("*.png")))
    steps_per_epoch = max(1, n_train // args.batch_size)
    model_kwargs: dict[str, Any] = {}
    if args.encoder_depth is not None:
        model_kwargs["encoder_depth"] = args.encoder_depth
        model_kwargs["decoder_channels"] = [256, 128, 64, 32, 16][5 - args.encoder_depth :]
    setting = {
        "trainer": {
            "epochs": math.ceil(args.steps / steps_per_epoch),
            "max_steps": args.steps,
            "batch_size": args.batch_size,
            "val_batch_size": 1,  # validation images differ in size (whole images, no crop)
            "lr": args.lr,
            "weight_decay": 1e-4,
            "scheduler": "cosine",
            "min_lr": args.lr / 100,
            "device": args.device,
            "amp": False,
            "seed": seed,
            "output_dir": str(run_dir),
            "val_every_steps": args.val_every,
            "checkpoint_every_steps": args.val_every,
            "log_every_n_steps": 10,
            "num_workers": 0,
            "progress": args.progress,
        },
        "model": {
            "arch": args.arch,
            "encoder_name": args.encoder,
            "encoder_weights": args.encoder_weights,
            "num_classes": 2,
            "patch_size": args.crop_size,
            "model_kwargs": model_kwargs,
        },
        "data": {
            "train_dir": str(train_dir),
            "val_dir": str(val_dir),
            "crop_size": args.crop_size,
            "val_crop_size": None,
            "num_classes": 2,
        },
    }
    return load_experiment_config(config, overrides=merge_overrides(setting, {}))


def setting_tag(args: argparse.Namespace) -> str:
    """Short hash of the training setting (runs of different settings never share a folder)."""
    text = json.dumps({k: getattr(args, k) for k in SETTING_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# ------------------------------------------------------------------------ evaluate
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def evaluate_held_out(
    checkpoint: Path,
    samples: list[Any],
    out_dir: Path,
    args: argparse.Namespace,
    *,
    overlay: bool,
) -> dict[str, Any]:
    """Unpaired-protocol evaluation of one checkpoint (cached by the checkpoint's hash)."""
    sha = _sha256(checkpoint)
    cache = out_dir / "unpaired.json"
    if cache.is_file():
        cached = json.loads(cache.read_text(encoding="utf-8"))
        wants_overlay = overlay and not (out_dir / "unpaired_examples.png").is_file()
        if cached.get("checkpoint_sha256") == sha and not wants_overlay:
            return cached
    evaluator = UnpairedEvaluator(
        str(checkpoint),
        task="segmentation",
        num_classes=2,
        ignore_background=True,
        batch_size=4,
        device=args.device,
        n_examples=1 if overlay else 0,
        save_predictions=False,
        n_resamples=500,
        verbose=False,
    )
    result = evaluator.evaluate(samples, out_dir)
    if overlay:
        from tia_scanner_robust.report.unpaired import unpaired_figures  # noqa: PLC0415

        unpaired_figures(result, out_dir)
    record = {**result.to_dict(), "checkpoint_sha256": sha, "checkpoint": str(checkpoint)}
    atomic_write_json(cache, record)
    return record


# ------------------------------------------------------------------------- report
def summarise(records: list[dict[str, Any]], held_out: list[str]) -> list[dict[str, Any]]:
    """One flat row per (variant, seed) with Dice per held-out scanner, mean and minimum."""
    by_key: dict[tuple[str, int], dict[str, Any]] = {}
    for rec in records:
        row = by_key.setdefault(
            (rec["config"], rec["seed"]),
            {"label": VARIANTS.get(rec["config"], rec["config"]), "config": rec["config"]},
        )
        row["seed"] = rec["seed"]
        row[f"dice@{rec['held_out']}"] = rec["dice"]
        row[f"val@{rec['held_out']}"] = rec["val_dice"]
    rows = []
    for row in by_key.values():
        values = [row.get(f"dice@{s}") for s in held_out]
        complete = all(v is not None for v in values)
        row["dice_mean"] = float(np.mean(values)) if complete else None
        row["dice_min"] = float(np.min(values)) if complete else None
        rows.append(row)
    return rows


def trivial_rows(trivial: dict[str, dict[str, float]], held_out: list[str]) -> list[str]:
    """Markdown rows of the constant predictors (no seeds: they do not train)."""
    lines = []
    for name, label in (("all_foreground", "all tumour"), ("all_background", "all background")):
        values = [trivial.get(s, {}).get(name) for s in held_out]
        cells = ["n/a" if v is None else f"{100 * v:.2f}" for v in values]
        finite = [v for v in values if v is not None]
        full = len(finite) == len(values)
        mean = f"{100 * np.mean(finite):.2f}" if full else "n/a"
        low = f"{100 * np.min(finite):.2f}" if full else "n/a"
        lines.append(f"| trivial: {label} | - | {' | '.join(cells)} | {mean} | {low} |")
    return lines


def plot_bars(
    rows: list[dict[str, Any]], trivial: dict[str, dict[str, float]], held_out: list[str], out: Path
) -> Path:
    """Grouped bars: Dice per held-out scanner per variant (mean +- std over seeds)."""
    import matplotlib as mpl  # noqa: PLC0415

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(rows) + 2), 4.0), dpi=110)
    width = 0.8 / max(1, len(held_out))
    x = np.arange(len(rows))
    for k, scanner in enumerate(held_out):
        means = [r.get(f"dice@{scanner}_mean", np.nan) for r in rows]
        stds = [r.get(f"dice@{scanner}_std", 0.0) for r in rows]
        bars = ax.bar(
            x + (k - (len(held_out) - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            capsize=2,
            label=f"held out: {scanner}",
        )
        level = trivial.get(scanner, {}).get("all_foreground")
        if level is not None:
            ax.axhline(level, color=bars.patches[0].get_facecolor(), ls="--", lw=1)
    ax.set_xticks(x, [r["label"] for r in rows], rotation=25, ha="right")
    ax.set_ylabel("tumour Dice on the held-out scanner")
    ax.set_ylim(0, 1)
    ax.set_title("Leave-one-scanner-out; dashed: all-tumour predictor per scanner")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


# --------------------------------------------------------------------------- main
#: Arguments that define what is trained (their hash names the runs' folder).
SETTING_KEYS = [
    "arch",
    "encoder",
    "encoder_depth",
    "encoder_weights",
    "crop_size",
    "steps",
    "batch_size",
    "lr",
    "val_every",
    "n_val",
    "split_seed",
    "downsample",
]


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Read (and rescale) the samples, check the arguments, write every fold's folders."""
    out: Path = args.out_dir
    manifest = args.manifest or write_folder_manifest(args.data_dir, out / "manifest.csv")
    samples = read_unpaired_manifest(manifest)
    if args.downsample != 1:
        folder = out / f"data/scale-1_{args.downsample:g}"
        manifest = rescaled_copy(samples, args.downsample, folder)
        samples = read_unpaired_manifest(manifest)
    groups = group_by_scanner(samples)
    scanners = list(groups)
    held_out = list(args.held_out or scanners)
    unknown = sorted(set(held_out) - set(scanners))
    if unknown:
        msg = f"--held-out: unknown scanner(s) {unknown}; the manifest has {scanners}."
        raise ValueError(msg)
    missing = sorted(set(args.variants) - set(list_configs()))
    if missing:
        msg = f"--variants: unknown config(s) {missing}; shipped: {sorted(list_configs())}."
        raise ValueError(msg)
    counts = ", ".join(f"{s} ({len(groups[s])})" for s in scanners)
    print(
        f"{len(samples)} samples, scanners {counts}; protocol chosen for them: "
        f"{choose_protocol('auto', samples)}; setting {setting_tag(args)}",
        flush=True,
    )
    folds = {}
    for scanner in held_out:
        train, val = split_training_scanners(groups, scanner, args.n_val, args.split_seed)
        fold_dir = out / "data" / f"folds-1_{args.downsample:g}" / f"heldout-{scanner}"
        folds[scanner] = (
            materialise(train, fold_dir / "train"),
            materialise(val, fold_dir / "val"),
            groups[scanner],
        )
        print(f"  fold held-out {scanner}: train {len(train)}, val {len(val)}", flush=True)
    return {"manifest": manifest, "groups": groups, "held_out": held_out, "folds": folds}


def run_one(
    config: str,
    seed: int,
    scanner: str,
    fold: tuple[Path, Path, list[Any]],
    args: argparse.Namespace,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Train (or reuse) one model of one fold and score it on the held-out scanner."""
    train_dir, val_dir, test = fold
    name = f"{config}-seed{seed}"
    where = Path(setting_tag(args)) / f"heldout-{scanner}" / name
    cfg = experiment_config(
        config,
        train_dir=train_dir,
        val_dir=val_dir,
        run_dir=args.out_dir / "runs" / where,
        seed=seed,
        args=args,
    )
    trained = train_variant(cfg)
    overlay = config == args.overlay_variant and seed == args.seeds[0]
    ev = evaluate_held_out(
        trained.checkpoint, test, args.out_dir / "eval" / where, args, overlay=overlay
    )
    row = ev["per_scanner"][scanner]
    trivial = {k: v for k, v in row["trivial"].items() if k.startswith("all_")}
    record = {
        "config": config,
        "seed": seed,
        "held_out": scanner,
        "dice": row["mean"],
        "dice_ci95": row.get("ci95"),
        "val_dice": trained.best_metric,
        "global_step": trained.global_step,
        "seconds_per_step": trained.seconds_per_step,
        "reused": trained.reused,
    }
    nan = float("nan")
    how = "reused" if trained.reused else f"trained, {trained.seconds_per_step or nan:.2f} s/step"
    val = trained.best_metric if trained.best_metric is not None else nan
    print(
        f"    Dice on {scanner} {row['mean']:.4f} "
        f"(all-tumour {trivial.get('all_foreground', nan):.4f}), val Dice {val:.4f} ({how})",
        flush=True,
    )
    return record, trivial


def write_results(
    records: list[dict[str, Any]],
    trivial: dict[str, dict[str, float]],
    prepared: dict[str, Any],
    args: argparse.Namespace,
    seconds: float,
) -> None:
    """``results.md``, ``results.json`` and ``cross_scanner_dice.png`` in the output folder."""
    out, held_out, groups = args.out_dir, prepared["held_out"], prepared["groups"]
    flat = summarise(records, held_out)
    metrics = [f"dice@{s}" for s in held_out] + ["dice_mean", "dice_min"]
    rows = aggregate_records(flat, metrics=metrics)
    headers = {f"dice@{s}": f"held out {s}" for s in held_out}
    headers |= {"dice_mean": "mean over scanners", "dice_min": "min over scanners"}
    table = records_markdown(rows, headers)
    table += "\n" + "\n".join(trivial_rows(trivial, held_out))
    val_rows = aggregate_records(flat, metrics=[f"val@{s}" for s in held_out])
    val_table = records_markdown(val_rows, {f"val@{s}": f"fold {s}" for s in held_out})
    figure = plot_bars(rows, trivial, held_out, out / "cross_scanner_dice.png")
    settings = {
        "manifest": str(prepared["manifest"]),
        "scanners": {s: len(v) for s, v in groups.items()},
        "held_out": held_out,
        "variants": list(args.variants),
        "seeds": list(args.seeds),
        "setting_tag": setting_tag(args),
        **{k: getattr(args, k) for k in [*SETTING_KEYS, "device", "threads"]},
    }
    text = [
        "# Cross-scanner experiment (leave-one-scanner-out, unpaired protocol)",
        "",
        "Setting: " + json.dumps(settings, default=str),
        "",
        (
            "Tumour Dice on the held-out scanner, in percent, mean +- std over seeds; mean and "
            "minimum over held-out scanners computed per seed, then mean +- std."
        ),
        "",
        table,
        "",
        "Validation Dice (training scanners' held-aside images; selects best.pt):",
        "",
        val_table,
        "",
        f"Wall time of this invocation: {seconds:.0f} s.",
        "",
    ]
    atomic_write_text(out / "results.md", "\n".join(text))
    atomic_write_json(
        out / "results.json",
        {"settings": settings, "runs": records, "table": rows, "trivial": trivial},
    )
    print("\n" + "\n".join(text))
    print(f"Wrote {out / 'results.md'}, {out / 'results.json'}, {figure}")


def main(args: argparse.Namespace) -> None:
    """Every (seed, variant, held-out scanner), then the table."""
    import torch  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    prepared = prepare(args)
    held_out = prepared["held_out"]
    # seed by seed, variant by variant: a stopped run already has complete rows
    jobs = [(s, c, h) for s in args.seeds for c in args.variants for h in held_out]
    records, trivial = [], {}
    for i, (seed, config, scanner) in enumerate(jobs, start=1):
        label = VARIANTS.get(config, config)
        print(f"[{i}/{len(jobs)}] held out {scanner}: {label}, seed {seed}", flush=True)
        record, trivial[scanner] = run_one(config, seed, scanner, prepared["folds"][scanner], args)
        records.append(record)
    write_results(records, trivial, prepared, args, time.perf_counter() - t0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", type=Path, help="labelled multi-scanner manifest CSV")
    source.add_argument(
        "--data-dir", type=Path, help="folder of <scanner>/{images,masks}/ (a manifest is written)"
    )
    parser.add_argument("--out-dir", type=Path, default=Path("out/04_cross_scanner"))
    parser.add_argument("--held-out", nargs="+", help="held-out scanners (default: each in turn)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="shipped configs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=100, help="optimiser steps per model")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--crop-size", type=int, default=96)
    parser.add_argument(
        "--downsample", type=float, default=2.0, help="shrink every image and mask by this factor"
    )
    parser.add_argument("--arch", default="Unet")
    parser.add_argument("--encoder", default="tu-resnet18")
    parser.add_argument("--encoder-depth", type=int, default=4, choices=[3, 4, 5])
    parser.add_argument(
        "--encoder-weights", default=None, help="smp encoder weights (e.g. imagenet; needs the hub)"
    )
    parser.add_argument("--val-every", type=int, default=25, help="validate every N steps")
    parser.add_argument("--n-val", type=int, default=2, help="validation images per train scanner")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/val split")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--overlay-variant", default="baseline", help="config drawn as overlays")
    parser.add_argument("--progress", action="store_true", help="show the trainer's bars")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
