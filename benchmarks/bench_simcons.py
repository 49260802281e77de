"""Benchmark of SimCons training against the baseline step (same model, batch, size, run).

Step times: the four variants below are timed in alternation (each round
runs every variant once, ``--steps`` rounds after ``--warmup``), so they see
the same machine load; the median is reported. Peak memory: each variant
runs two steps in a fresh subprocess.

1. The trainer's real step: :meth:`Trainer.train_step` without hooks
   (baseline) versus with :class:`SimConsHook` (ColorJitter second view,
   lambda 0.3): style augmentation of the second view on the CPU, one forward
   on the ``2B`` batch, supervised loss on the first view, consistency term.
   Target: SimCons step <= 2.1 x the baseline step (it sees twice the images).
2. Forward design, on pre-augmented inputs (no augmentation timed): one
   forward on the concatenated ``2B`` batch (the hook's design) versus two
   separate forwards of ``B`` (``model(x)``, ``model(SA(x))``), same losses.

Peak memory: "step peak" is what a step adds at its peak above the state
after one warm-up step (model, optimiser state, allocator caches): on CUDA
``torch.cuda.max_memory_allocated`` minus the allocated memory before the
steps; on Linux CPUs the peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs``) minus the resident set before the steps, in a
child process whose glibc returns every freed block of 64 KiB or more to
the system (``MALLOC_MMAP_THRESHOLD_``), so memory the warm-up step freed
does not hide the step's own peak.
"Process peak" is the whole process's peak (including Python, torch and
TIAToolbox imports).

Usage::

    python benchmarks/bench_simcons.py                         # demo model, 128 px, batch 8
    python benchmarks/bench_simcons.py --paper                 # DeepLabV3+/ResNet34, 256 px
    python benchmarks/bench_simcons.py --quick                 # smoke run
    python benchmarks/bench_simcons.py --write docs/benchmarks_simcons.md
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tiatoolbox.data import stain_norm_target

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tia_scanner_robust._io import atomic_write_text
from tia_scanner_robust.demo.variants import DEMO_MODEL
from tia_scanner_robust.losses.functional import segmentation_loss
from tia_scanner_robust.losses.simcons import SimConsLoss
from tia_scanner_robust.models.segmentation import SmpSegmentationModel
from tia_scanner_robust.training.simcons import SimConsHook
from tia_scanner_robust.training.trainer import Trainer

VARIANTS = ("baseline", "simcons", "manual_2b", "manual_two_forwards")


def _model(args: argparse.Namespace):
    torch.manual_seed(0)
    kwargs = {} if args.paper else DEMO_MODEL["model_kwargs"]
    return SmpSegmentationModel(
        arch=args.arch,
        encoder_name=args.encoder,
        num_classes=2,
        patch_size=args.size,
        model_kwargs=kwargs,
    )


def _batch(args: argparse.Namespace) -> dict:
    image = stain_norm_target()
    rng = np.random.default_rng(0)
    crops, masks = [], []
    for _ in range(args.batch):
        y, x = rng.integers(0, image.shape[0] - args.size, 2)
        crop = np.ascontiguousarray(image[y : y + args.size, x : x + args.size])
        crops.append(crop)
        masks.append((crop[..., 0] < 150).astype(np.int64))
    return {"image": torch.from_numpy(np.stack(crops)), "mask": torch.from_numpy(np.stack(masks))}


def _proc_status(field: str) -> int | None:
    """A ``/proc/self/status`` memory field (``VmHWM``, ``VmRSS``) in bytes, if available."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_bytes(device: torch.device) -> int:
    """Peak memory so far: CUDA allocator peak, else the process's peak RSS.

    ``VmHWM`` is per address space, so a spawned process starts afresh
    (``ru_maxrss`` would carry the parent's peak across ``exec``).
    """
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    hwm = _proc_status("VmHWM")
    if hwm is not None:
        return hwm
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def _step_function(variant: str, args: argparse.Namespace, batch: dict):
    """A fresh model, optimiser and trainer; return ``step()`` for one variant."""
    hooks = [SimConsHook("colorjitter", lam=0.3)] if variant == "simcons" else []
    model = _model(args)
    trainer = Trainer(
        model,
        [dict(zip(batch, row, strict=True)) for row in zip(*batch.values(), strict=True)],
        config={
            "batch_size": args.batch,
            "device": args.device,
            "progress": False,
            "output_dir": tempfile.mkdtemp(),
            "amp": False,
        },
        hooks=hooks,
    )
    consistency = SimConsLoss()
    augmented = SimConsHook("colorjitter").augment_batch(batch["image"].numpy(), seed=1)
    x = trainer.prepare_inputs(batch)
    x_aug = trainer.prepare_inputs({"image": torch.from_numpy(augmented)})
    y = trainer.prepare_targets(batch)
    model.train()

    def manual(*, two_forwards: bool) -> None:
        if two_forwards:
            a, b = model(x), model(x_aug)
        else:
            out = model(torch.cat([x, x_aug]))
            a, b = out[: len(x)], out[len(x) :]
        loss = segmentation_loss(a, y) + 0.3 * consistency(a, b)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()

    if variant in ("baseline", "simcons"):
        return lambda: trainer.train_step(dict(batch))
    return lambda: manual(two_forwards=variant == "manual_two_forwards")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_variants(args: argparse.Namespace) -> dict[str, list[float]]:
    """Step times of every variant, timed in alternation (each round runs each variant once)."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = _batch(args)
    steps = {v: _step_function(v, args, batch) for v in VARIANTS}
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for i in range(args.warmup + args.steps):
        for variant, step in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            if i >= args.warmup:
                times[variant].append(time.perf_counter() - t0)
    return times


def _memory_worker(variant: str, args: argparse.Namespace, queue: mp.Queue) -> None:
    """Peak memory of one variant in this fresh process."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    step = _step_function(variant, args, _batch(args))
    step()  # warm-up: allocator caches, optimiser state
    _sync(device)
    process_peak = _peak_bytes(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = int(torch.cuda.memory_allocated(device))
    else:
        _reset_peak()
        before = _proc_status("VmRSS") or _peak_bytes(device)
    for _ in range(2):
        step()
    _sync(device)
    peak = _peak_bytes(device)
    queue.put(
        {
            "peak_bytes": max(process_peak, peak),
            "step_peak_bytes": peak - before,
            "before_bytes": before,
        }
    )


_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def measure_memory(variant: str, args: argparse.Namespace) -> dict:
    """Run one variant in a fresh process (so its peak memory is its own)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_worker, args=(variant, args, queue))
    # glibc: serve every allocation >= 64 KiB by mmap and unmap it on free, so
    # freed tensors leave the resident set and a step's peak is not hidden by
    # memory the warm-up step freed but the allocator kept (the spawned child
    # reads the environment at start).
    saved = {key: os.environ.get(key) for key in _MALLOC_ENV}
    os.environ.update(_MALLOC_ENV)
    try:
        proc.start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    result = queue.get()
    proc.join()
    return result


def _machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        keep = ("Model name", "CPU(s):", "Thread(s) per core", "Core(s) per socket", "L3")
        lines = [line.strip() for line in lscpu.splitlines() if line.strip().startswith(keep)]
    except (OSError, subprocess.CalledProcessError):
        lines = [platform.processor() or platform.machine()]
    return "; ".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true", help="DeepLabV3+ / ResNet34, 256 px")
    parser.add_argument("--arch", default=None)
    parser.add_argument("--encoder", default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="2 timed steps, 1 warm-up")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--write", type=Path, default=None, help="append a Markdown section")
    args = parser.parse_args()
    args.arch = args.arch or ("DeepLabV3Plus" if args.paper else "Unet")
    args.encoder = args.encoder or ("resnet34" if args.paper else DEMO_MODEL["encoder_name"])
    args.size = args.size or (256 if args.paper else 128)
    if args.quick:
        args.steps, args.warmup = 2, 1

    setting = (
        f"{args.arch}/{args.encoder}, {args.size} px, batch {args.batch}, device {args.device}, "
        f"{args.threads} torch thread(s), {args.steps} timed steps after {args.warmup} warm-up"
    )
    print(setting)
    times = time_variants(args)
    results = {}
    for v in VARIANTS:
        results[v] = {
            "median_s": statistics.median(times[v]),
            "min_s": min(times[v]),
            "times_s": times[v],
            **measure_memory(v, args),
        }
    base = results["baseline"]
    rows = []
    for v in VARIANTS:
        r = results[v]
        ref = base if v in ("baseline", "simcons") else results["manual_2b"]
        rows.append(
            (
                v,
                r["median_s"],
                r["median_s"] / ref["median_s"],
                r["step_peak_bytes"] / 2**20,
                r["peak_bytes"] / 2**20,
            )
        )
    header = "| variant | step (s, median) | ratio | step peak (MiB) | process peak (MiB) |"
    lines = [header, "|---|---|---|---|---|"]
    for name, t, ratio, step_mib, peak_mib in rows:
        lines.append(f"| {name} | {t:.3f} | {ratio:.2f}x | {step_mib:.0f} | {peak_mib:.0f} |")
    ratio = results["simcons"]["median_s"] / base["median_s"]
    verdict = "meets" if ratio <= 2.1 else "misses"
    summary = (
        f"SimCons / baseline step time: {ratio:.2f}x ({verdict} the 2.1x target); "
        f"one 2B forward / two B forwards: "
        f"{results['manual_2b']['median_s'] / results['manual_two_forwards']['median_s']:.2f}x "
        "time (ratios of manual_* rows are to manual_2b)."
    )
    print("\n".join(lines))
    print(summary)
    machine = _machine()
    print(machine)
    if args.json:
        args.json.write_text(json.dumps({"setting": setting, "results": results}, indent=2))
    if args.write:
        text = args.write.read_text(encoding="utf-8") if args.write.is_file() else ""
        section = (
            f"\n### {setting}\n\nMachine: {machine}\n\n" + "\n".join(lines) + f"\n\n{summary}\n"
        )
        atomic_write_text(args.write, text + section)


if __name__ == "__main__":
    main()
