"""Batched torch style augmentations vs the NumPy per-image path, and vs a training step.

For ColorJitter (H&E preset), RandStainNA (LAB/HSV/HED), FDA (references from
the batch) and the scanner simulator (every built-in profile), at each
``--sizes`` (default 512 and 1024 px), prints images/s for:

- ``numpy 1 core``: the albumentations transform called per image (OpenCV,
  SciPy FFT and torch limited to one thread);
- ``batched cpu``: the batched class on a ``--batch-size`` CPU batch (the
  DataLoader's ``(B, H, W, 3)`` uint8 batch permuted to channels first, as
  the SimCons hook passes it) with its
  default ``backend="auto"`` (ColorJitter, RandStainNA and FDA run the
  OpenCV/SciPy function per sample with torch-drawn parameters; the scanner
  runs torch), ``--cpu-threads`` threads (default 1, per core like NumPy);
- ``torch-kernels cpu``: the same with ``backend="torch"`` (the torch kernels
  that run on a GPU, here on the CPU);
- ``torch cuda``: the same on the GPU when one is available (synchronised
  timings), otherwise the column says ``n/a (no CUDA)``;

and the fraction of a DeepLabV3+/ResNet34 training step (forward, Dice+CE-like
cross-entropy loss, backward, Adam step; ``--step-batch`` images, timed on
the same device) that styling the same number of images takes:
``(images per step / augmentation images/s) / step seconds``. FDA uses ``beta = 0.03``
in both paths (the window size sets its cost) and another image of the batch
as reference. The scanner's
JPEG stage is CPU-only: the batched rows run with ``jpeg="skip"`` and a
``scanner+jpeg`` row runs it on the CPU (``jpeg="cpu"``). The machine
(CPU, threads, GPU, library versions) is printed first. Timings are medians
of ``--repeats`` runs after one warm-up (which also builds the 8-bit colour
tables and caches); the NumPy and batched CPU runs alternate, so they see the
same machine load.

Usage::

    python benchmarks/bench_batched_augmentations.py [--sizes 512 1024] [--batch-size 8]
        [--repeats 3] [--cpu-threads 1] [--step-batch 2] [--skip-step] [--devices cpu cuda]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import albumentations as A  # noqa: N812
import cv2
import numpy as np
import scipy.fft
import torch
from tiatoolbox.data import stain_norm_target

from tia_scanner_robust.augmentations.batched import (
    BatchColorJitter,
    BatchFDA,
    BatchRandStainNA,
    BatchScannerSimulator,
)
from tia_scanner_robust.augmentations.fda import FourierDomainAdaptation
from tia_scanner_robust.augmentations.presets import he_color_jitter
from tia_scanner_robust.augmentations.randstainna import RandStainNA
from tia_scanner_robust.augmentations.scanner import ScannerSimulator

#: FDA's beta in both paths (its window size sets the cost: keep the work equal).
FDA_BETA = 0.03

if TYPE_CHECKING:
    from collections.abc import Callable


def machine() -> str:
    """One paragraph describing the machine and the libraries."""
    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if "model name" in line]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = (
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CUDA not available)"
    )
    return (
        f"machine: {platform.system()} {platform.release()}, CPU {cpu}, "
        f"{os.cpu_count()} logical cores\n"
        f"GPU: {gpu}\n"
        f"python {platform.python_version()}, torch {torch.__version__}, opencv {cv2.__version__}, "
        f"albumentations {version('albumentations')}, numpy {np.__version__}"
    )


def tiles(size: int, count: int) -> np.ndarray:
    """``count`` crops of ``size`` px of the bundled H&E image (upsampled if needed)."""
    image = stain_norm_target()
    if size > 600:
        image = cv2.resize(image, (2 * size, 2 * size), interpolation=cv2.INTER_CUBIC)
    limit = image.shape[0] - size
    rng = np.random.default_rng(0)
    corners = rng.integers(0, limit + 1, (count, 2))
    return np.stack([image[i : i + size, j : j + size] for i, j in corners])


def median_time(run: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    run()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(
    runs: dict[str, Callable[[], object]], repeats: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Median seconds of each run, the runs alternating (they see the same machine load)."""
    for run in runs.values():
        run()
    sync()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def numpy_run(name: str, images: np.ndarray) -> Callable[[], None]:
    """One pass of the albumentations transform over ``images``, one image at a time."""
    compose = A.Compose([numpy_transform(name)], seed=0)
    count = len(images)

    def run() -> None:
        with scipy.fft.set_workers(1):
            for i, image in enumerate(images):
                # FDA: another image of the batch as reference, as the batched path does
                references = {"fda_reference": [images[(i + 1) % count]]} if name == "fda" else {}
                compose(image=image, **references)

    return run


def batched_run(
    name: str, images: np.ndarray, device: torch.device, backend: str
) -> Callable[[], object]:
    # the DataLoader's (B, H, W, 3) uint8 batch seen channels first (a view)
    batch = torch.from_numpy(images).to(device).permute(0, 3, 1, 2)
    augment = batched(name, backend)
    generator = torch.Generator().manual_seed(0)
    return lambda: augment(batch, generator=generator)


def numpy_transform(name: str) -> A.BasicTransform:
    """The albumentations transform the batched ``name`` is compared with."""
    if name == "colorjitter":
        return he_color_jitter(p=1.0)
    if name == "randstainna":
        return RandStainNA(p=1.0)
    if name == "fda":
        return FourierDomainAdaptation(beta_range=(FDA_BETA, FDA_BETA), p=1.0)
    return ScannerSimulator(p=1.0)  # the NumPy simulator always runs its profile's JPEG


def batched(name: str, backend: str) -> Callable[..., torch.Tensor]:
    if name == "colorjitter":
        return BatchColorJitter(backend=backend)
    if name == "randstainna":
        return BatchRandStainNA(backend=backend)
    if name == "fda":
        return BatchFDA(beta_range=(FDA_BETA, FDA_BETA), backend=backend)
    return BatchScannerSimulator(jpeg="cpu" if name == "scanner+jpeg" else "skip")


def step_seconds(size: int, batch: int, device: torch.device, repeats: int) -> float:
    """Seconds of one DeepLabV3+/ResNet34 training step on ``batch`` images of ``size`` px."""
    import segmentation_models_pytorch as smp  # noqa: PLC0415 - optional for this benchmark

    model = smp.DeepLabV3Plus("resnet34", encoder_weights=None, classes=2).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.randint(0, 2, (batch, size, size), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()

    model.train()
    return median_time(run, repeats, sync)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu-threads", type=int, default=1)
    parser.add_argument("--step-batch", type=int, default=2)
    parser.add_argument("--skip-step", action="store_true", help="do not time the training step")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    parser.add_argument(
        "--augmentations",
        nargs="+",
        default=["colorjitter", "randstainna", "fda", "scanner", "scanner+jpeg"],
    )
    args = parser.parse_args()

    cv2.setNumThreads(1)
    torch.set_num_threads(args.cpu_threads)
    print(machine())
    print(
        f"torch CPU threads: {args.cpu_threads}; NumPy path: 1 thread; batch {args.batch_size}; "
        f"training step batch {args.step_batch}; medians of {args.repeats}"
    )
    cuda = torch.cuda.is_available() and "cuda" in args.devices
    for size in args.sizes:
        images = tiles(size, args.batch_size)
        steps = {}
        if not args.skip_step:
            steps["cpu"] = (
                step_seconds(size, args.step_batch, torch.device("cpu"), args.repeats)
                if "cpu" in args.devices
                else None
            )
            if cuda:
                steps["cuda"] = step_seconds(
                    size, args.step_batch, torch.device("cuda"), args.repeats
                )
        print(f"\n== {size} x {size} px ==")
        for device, seconds in steps.items():
            if seconds is not None:
                rate = args.step_batch / seconds
                print(f"DeepLabV3+/ResNet34 training step on {device}: {rate:.1f} images/s")
        header = (
            f"{'augmentation':<14}{'numpy 1 core':>14}{'batched cpu':>13}{'torch-kernels cpu':>19}"
            f"{'torch cuda':>16}"
        )
        if steps:
            header += f"{'% step cpu':>12}{'% step cuda':>13}"
        print(header)
        for name in args.augmentations:
            cpu_device = torch.device("cpu")
            runs = {"numpy": numpy_run(name, images)}
            if "cpu" in args.devices:
                runs["cpu"] = batched_run(name, images, cpu_device, "auto")
                runs["kernels"] = batched_run(name, images, cpu_device, "torch")
            seconds = interleaved(runs, args.repeats, lambda: None)
            rates = {key: len(images) / value for key, value in seconds.items()}
            rate_np = rates["numpy"]
            rate_cpu = rates.get("cpu", float("nan"))
            rate_kernels = rates.get("kernels", float("nan"))
            rate_cuda = None
            if cuda:
                gpu_run = batched_run(name, images, torch.device("cuda"), "auto")
                gpu_seconds = interleaved({"cuda": gpu_run}, args.repeats, torch.cuda.synchronize)
                rate_cuda = len(images) / gpu_seconds["cuda"]
            cuda_text = f"{rate_cuda:.1f}" if rate_cuda is not None else "n/a (no CUDA)"
            row = f"{name:<14}{rate_np:>14.1f}{rate_cpu:>13.1f}{rate_kernels:>19.1f}{cuda_text:>16}"
            if steps:
                parts = []
                for device, rate in (("cpu", rate_cpu), ("cuda", rate_cuda)):
                    step = steps.get(device)
                    if step is None or rate is None:
                        parts.append("n/a")
                    else:
                        parts.append(f"{100 * (args.step_batch / rate) / step:.1f}%")
                row += f"{parts[0]:>12}{parts[1]:>13}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
