"""Benchmark the ScanGen loss and its training-step overhead.

1. ``ScanGenLoss`` forward + backward at B = 1024 and 4096, D = 512: median
   time and peak memory, against a naive implementation (Python double loop
   over ordered pairs, one cosine per pair, as a literal reading of the
   equation). The naive loop is timed on a ``--naive-subset`` x subset of the
   batch and extrapolated quadratically (the number of pairs grows as B^2);
   the printed naive numbers say so.
2. Training-step overhead: one optimiser step of GAP + g with CE only versus
   CE + lambda * ScanGen (slide granularity: each ScanGen sample is the mean
   of g over ``n_subsample`` random patches of a slide), for a task batch of
   8 bags x 512 patches and a ScanGen batch of 16 slides x 512 patches
   (``--bag-size``).
3. ``--trainer-step``: the same comparison through the real code path,
   ``MILTrainer.train_step`` with and without ``ScanGenHook`` (cached pool of
   16 specimens x 2 scanners): adds the hook's draw, row gather, pair ids,
   stats and the trainer's logging, i.e. the host-side work per step that
   section 2 leaves out (the task batch is pre-collated on the device).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the
increase of the process's peak resident set size (``ru_maxrss``) during the
measured call, each case in a fresh subprocess (tracemalloc does not see
torch's allocations).

Usage::

    python benchmarks/bench_scangen.py                   # CPU
    python benchmarks/bench_scangen.py --device cuda
    python benchmarks/bench_scangen.py --write docs/benchmarks_scangen.md
    python benchmarks/bench_scangen.py --skip-loss --trainer-step --subsamples 32

"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tia_scanner_robust._io import atomic_write_text  # noqa: E402
from tia_scanner_robust.losses.scangen import ScanGenLoss, slide_embeddings  # noqa: E402
from tia_scanner_robust.models.mil import MILModel, subsample_bags  # noqa: E402


def make_batch(batch: int, dim: int, device: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, dim, generator=gen).to(device).requires_grad_(requires_grad=True)
    index = torch.arange(batch)
    specimens = (index // 4).to(device)  # every specimen under 4 scanners
    scanners = (index % 4).to(device)
    return z, specimens, scanners


def naive_scangen(z, specimens, scanners, alpha=0.5, margin=0.5):
    """Literal double loop over ordered pairs (the reference the vectorised loss replaces)."""
    terms = []
    spec, scan = specimens.tolist(), scanners.tolist()
    for i in range(len(spec)):
        for j in range(len(spec)):
            if i == j:
                continue
            if spec[i] == spec[j] and scan[i] != scan[j]:
                d = 1 - F.cosine_similarity(z[i], z[j], dim=0)
                terms.append(alpha * d**2)
            elif scan[i] == scan[j] and spec[i] != spec[j]:
                d = 1 - F.cosine_similarity(z[i], z[j], dim=0)
                terms.append((1 - alpha) * torch.clamp(margin - d, min=0) ** 2)
    return torch.stack(terms).sum() / len(terms)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: str, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(fn, device: str) -> float:
    """Peak extra memory (MiB) of one call (see the module docstring)."""
    if device.startswith("cuda"):
        sync(device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (after - before) / 1024  # ru_maxrss is in KiB on Linux


# -- one case per subprocess (clean peak-RSS readings) --------------------------
def case_loss(args: argparse.Namespace) -> dict:
    z, specimens, scanners = make_batch(args.batch, args.dim, args.device)
    loss_fn = ScanGenLoss(0.5, 0.5)

    def vectorised():
        z.grad = None
        loss_fn(z, specimens, scanners).backward()

    memory = peak_memory(vectorised, args.device)  # first call: also the warm-up
    seconds = timed(vectorised, args.repeats, args.device, warmup=0)
    return {"seconds": seconds, "memory_mib": memory}


def case_naive(args: argparse.Namespace) -> dict:
    sub = args.naive_subset
    z, specimens, scanners = make_batch(sub, args.dim, args.device)

    def naive():
        z.grad = None
        naive_scangen(z, specimens, scanners).backward()

    memory = peak_memory(naive, args.device)
    seconds = timed(naive, max(1, args.repeats // 3), args.device, warmup=0)
    factor = (args.batch / sub) ** 2
    # the two implementations agree on the subset
    expected = ScanGenLoss(0.5, 0.5)(z, specimens, scanners).item()
    got = naive_scangen(z, specimens, scanners).item()
    return {
        "seconds": seconds * factor,
        "memory_mib": memory * factor,
        "subset_seconds": seconds,
        "subset": sub,
        "agree": abs(expected - got) < 1e-5 * max(1.0, abs(expected)),
    }


def case_step(args: argparse.Namespace) -> dict:
    device = args.device
    torch.manual_seed(0)
    model = MILModel(args.fm_dim, 2, "gap", projection_hidden=512).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    task = torch.randn(8, args.bag_size, args.fm_dim, device=device)
    labels = torch.randint(0, 2, (8,), device=device)
    pool = torch.randn(16, args.bag_size, args.fm_dim, device=device)
    specimens = torch.arange(16, device=device) // 2
    scanners = torch.arange(16, device=device) % 2
    loss_fn = ScanGenLoss(0.5, 0.5)
    gen = torch.Generator(device="cpu").manual_seed(0)

    def step():
        loss = F.cross_entropy(model(task)["logits"], labels)
        if args.n_subsample >= 0:
            if args.n_subsample > 0:
                feats, mask = subsample_bags(pool, None, args.n_subsample, gen)
            else:  # 0 = every patch
                feats, mask = pool, None
            z = slide_embeddings(model.embed(feats), mask)
            loss = loss + 0.5 * loss_fn(z, specimens, scanners)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    memory = peak_memory(step, device)
    seconds = timed(step, args.repeats, device, warmup=1)
    return {"seconds": seconds, "memory_mib": memory}


def case_trainer_step(args: argparse.Namespace) -> dict:
    """The real training step: ``MILTrainer.train_step`` with or without ``ScanGenHook``.

    Unlike ``case_step`` (the bare arithmetic of the branch) this goes through
    the hook (pool draw, row gather, pair ids, stats) and the trainer's
    logging, i.e. the host-side work a training run pays per step.
    """
    import tempfile  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from tia_scanner_robust.data.features import (  # noqa: PLC0415
        BagDataset,
        FeatureStore,
        collate_bags,
    )
    from tia_scanner_robust.training.mil import MILBagModule, MILTrainer  # noqa: PLC0415
    from tia_scanner_robust.training.scangen import ScanGenHook  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        store = FeatureStore(Path(tmp) / "pool.zarr", mode="w")
        rng = np.random.default_rng(0)
        for p in range(8):  # task bags
            feats = rng.standard_normal((args.bag_size, args.fm_dim), dtype=np.float32)
            store.write_slide(f"T{p}", "A", feats, label=p % 2, split="train")
        for p in range(16):  # pool: 16 specimens x 2 scanners
            for scanner in ("A", "B"):
                feats = rng.standard_normal((args.bag_size, args.fm_dim), dtype=np.float32)
                store.write_slide(f"P{p}", scanner, feats, split="scangen")
        hooks = []
        if args.n_subsample >= 0:
            n = args.n_subsample or args.bag_size
            hooks = [ScanGenHook(store, 0.5, split="scangen", n_subsample=n, batch_size=16)]
        torch.manual_seed(0)
        model = MILBagModule(MILModel(args.fm_dim, 2, "gap", projection_hidden=512))
        config = {
            "epochs": 1,
            "batch_size": 8,
            "task": "classification",
            "image_key": "features",
            "target_key": "label",
            "progress": False,
            "device": args.device,
            "output_dir": str(Path(tmp) / "run"),
            "optimizer": "adam",
            "lr": 1e-4,
        }
        data = BagDataset(store, "train")
        trainer = MILTrainer(model, data, config=config, hooks=hooks, collate_fn=collate_bags)
        batch = collate_bags(list(data))
        batch["features"] = batch["features"].to(args.device)  # data loading is not timed
        seconds = timed(lambda: trainer.train_step(dict(batch)), args.repeats, args.device)
    return {"seconds": seconds, "memory_mib": 0.0}


CASES = {
    "loss": case_loss,
    "naive": case_naive,
    "step": case_step,
    "trainer-step": case_trainer_step,
}


def run_case(name: str, args: argparse.Namespace, **overrides) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--device",
        args.device,
        "--dim",
        str(args.dim),
    ]
    cmd += [
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
        "--naive-subset",
        str(args.naive_subset),
        "--fm-dim",
        str(args.fm_dim),
        "--bag-size",
        str(args.bag_size),
    ]
    for key, value in overrides.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine_description(device: str) -> str:
    lines = [
        (
            f"- Python {platform.python_version()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads"
        )
    ]
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        keep = ("Model name", "CPU(s):", "Thread(s) per core", "L3 cache")
        lines += [
            f"- {line.strip()}" for line in lscpu.splitlines() if line.strip().startswith(keep)
        ]
    except (OSError, subprocess.CalledProcessError):
        lines.append(f"- {platform.processor() or platform.machine()}")
    if device.startswith("cuda"):
        lines.append(f"- GPU: {torch.cuda.get_device_name()}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--naive-subset", type=int, default=96)
    parser.add_argument(
        "--fm-dim", type=int, default=1024, help="FM feature size for the training step"
    )
    parser.add_argument("--subsamples", type=int, nargs="+", default=[32, 64, 128, 0])
    parser.add_argument("--bag-size", type=int, default=512, help="patches per bag (step)")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    parser.add_argument(
        "--trainer-step",
        action="store_true",
        help="also time MILTrainer.train_step with the real ScanGenHook (host-side overhead)",
    )
    parser.add_argument(
        "--skip-loss", action="store_true", help="skip section 1 (loss versus naive loop)"
    )
    parser.add_argument("--write", type=Path, default=None, help="write a Markdown report here")
    parser.add_argument("--child", choices=sorted(CASES), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1024, help=argparse.SUPPRESS)
    parser.add_argument("--n-subsample", type=int, default=-1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(CASES[args.child](args)))
        return

    lines = [f"## ScanGen loss, forward + backward (D = {args.dim}, device {args.device})", ""]
    lines += [
        (
            "| B | vectorised median (s) | peak mem (MiB) | naive loop (s) | naive mem (MiB) "
            "| speed-up |"
        )
    ]
    lines += ["|---|---|---|---|---|---|"]
    naive_note = ""
    for size in [] if args.skip_loss else args.sizes:
        vec = run_case("loss", args, batch=size)
        naive = run_case("naive", args, batch=size)
        naive_note = (
            f"Naive loop timed on B = {naive['subset']} ({naive['subset_seconds']:.2f} s) and "
            f"extrapolated by (B / {naive['subset']})^2; values agree with the vectorised loss "
            f"on the subset: {naive['agree']}."
        )
        lines.append(
            f"| {size} | {vec['seconds']:.4f} | {vec['memory_mib']:.0f} "
            f"| {naive['seconds']:.0f} (extrap.) | {naive['memory_mib']:.0f} (extrap.) "
            f"| {naive['seconds'] / vec['seconds']:.0f}x |"
        )
        print(lines[-1], flush=True)
    lines += ["", naive_note, ""]
    lines += [
        (
            f"## Training step, GAP + g (FM D = {args.fm_dim}, hidden 512): 8 task bags x "
            f"{args.bag_size} patches + ScanGen batch of 16 slides x {args.bag_size} patches"
        ),
        "",
        "| step | median (s) | ratio to CE only | peak mem (MiB) |",
        "|---|---|---|---|",
    ]
    base = run_case("step", args, n_subsample=-1)
    lines.append(
        f"| CE only (lambda = 0) | {base['seconds']:.4f} | 1.00 | {base['memory_mib']:.0f} |"
    )
    print(lines[-1], flush=True)
    for n in args.subsamples:
        res = run_case("step", args, n_subsample=n)
        label = f"CE + ScanGen, {n if n else args.bag_size} patches/slide"
        lines.append(
            f"| {label} | {res['seconds']:.4f} | {res['seconds'] / base['seconds']:.2f} "
            f"| {res['memory_mib']:.0f} |"
        )
        print(lines[-1], flush=True)
    if args.trainer_step:
        lines += [
            "",
            "Through the trainer (MILTrainer.train_step, ScanGenHook on a cached pool):",
            "",
            "| step | median (s) | ratio to CE only |",
            "|---|---|---|",
        ]
        base = run_case("trainer-step", args, n_subsample=-1)
        lines.append(f"| CE only | {base['seconds']:.4f} | 1.00 |")
        print(lines[-1], flush=True)
        for n in args.subsamples:
            res = run_case("trainer-step", args, n_subsample=n)
            label = f"CE + ScanGen hook, {n if n else args.bag_size} patches/slide"
            ratio = res["seconds"] / base["seconds"]
            lines.append(f"| {label} | {res['seconds']:.4f} | {ratio:.2f} |")
            print(lines[-1], flush=True)
    lines += ["", "Machine:", "", machine_description(args.device), ""]
    report = "\n".join(lines)
    print(report)
    if args.write is not None:
        atomic_write_text(args.write, f"# ScanGen benchmarks\n\n{report}")


if __name__ == "__main__":
    main()
