"""Run-state helpers of the trainer: seeds, RNG capture/restore, resumable samplers, loaders.

:func:`derive_seed` turns keys such as ``(seed, epoch, index)`` into a seed,
and :func:`reseed_transform` gives an albumentations transform a fresh
random state from it: augmentations become functions of those keys, which is
what makes a resumed run repeat the uninterrupted one.

:func:`capture_rng_state` stores every global RNG state (Python, NumPy,
torch CPU and CUDA) as tensors and numbers, so a checkpoint holding it loads
with ``torch.load(weights_only=True)``. :class:`SkipSampler` resumes an
epoch mid-way without loading the skipped items; :class:`ShardSampler`
splits a validation set over ranks without the padding of
``DistributedSampler`` (each item counted once).

Examples:
    >>> list(SkipSampler(range(6), skip=4))
    [4, 5]
    >>> list(ShardSampler(5, rank=1, world=2))
    [1, 3]

"""

from __future__ import annotations

import logging
import math
import random
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tia_scanner_robust.seeding import reseed_transform

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from tia_scanner_robust.training.config import TrainerConfig

__all__ = [
    "ShardSampler",
    "SkipSampler",
    "capture_rng_state",
    "derive_seed",
    "reseed_transform",
    "restore_rng_state",
    "steps_per_epoch",
    "train_loader",
    "val_loader",
]

logger = logging.getLogger(__name__)


def derive_seed(*keys: int) -> int:
    """Derive a 32-bit seed from integer keys (e.g. ``(seed, epoch, index)``).

    Uses :class:`numpy.random.SeedSequence`, so nearby keys give independent
    streams.

    Examples:
        >>> derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
        True
        >>> derive_seed(0, 1, 2) != derive_seed(0, 2, 1)
        True

    """
    clean = [int(k) % (2**63) for k in keys]
    return int(np.random.SeedSequence(clean).generate_state(1)[0])


# ----------------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict[str, Any]:
    """Every global RNG state as tensors/numbers (loadable with ``weights_only=True``).

    Examples:
        >>> import random
        >>> state = capture_rng_state()
        >>> a = random.random()
        >>> restore_rng_state(state)
        >>> a == random.random()
        True

    """
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    state: dict[str, Any] = {
        "python": {
            "version": int(version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            nps["kind"],
            nps["keys"].numpy().astype(np.uint32),
            int(nps["pos"]),
            int(nps["has_gauss"]),
            float(nps["cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
        else:
            logger.warning(
                "Checkpoint holds %d CUDA RNG states but %d devices are visible; "
                "CUDA RNG not restored.",
                len(cuda_states),
                torch.cuda.device_count(),
            )


# ----------------------------------------------------------------------------- samplers
class SkipSampler(torch.utils.data.Sampler[int]):
    """Yield a base sampler's indices after skipping the first ``skip`` of them."""

    def __init__(self, base: Iterable[int], skip: int) -> None:
        self.base = base
        self.skip = int(skip)

    def __iter__(self) -> Iterator[int]:
        for i, index in enumerate(self.base):
            if i >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)  # type: ignore[arg-type]


class ShardSampler(torch.utils.data.Sampler[int]):
    """Every ``world``-th index from ``rank``: no padding, so metrics count each item once."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


# ----------------------------------------------------------------------------- loaders
def steps_per_epoch(n_items: int, batch_size: int, *, world_size: int, drop_last: bool) -> int:
    """Optimiser steps of one epoch on each rank (a rank gets ``ceil(n / world)`` items).

    Raises:
        ValueError: If the dataset is empty or too small for one batch per rank.

    Examples:
        >>> steps_per_epoch(10, 4, world_size=1, drop_last=True)
        2
        >>> steps_per_epoch(10, 4, world_size=2, drop_last=False)
        2

    """
    if n_items == 0:
        msg = "train_dataset is empty."
        raise ValueError(msg)
    per_rank = math.ceil(n_items / world_size)
    steps = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
    if steps == 0:
        msg = (
            f"train_dataset has {n_items} items: fewer than one batch of {batch_size} "
            f"per rank (world size {world_size}) with drop_last=True."
        )
        raise ValueError(msg)
    return steps


def train_loader(
    dataset: Any,
    config: TrainerConfig,
    *,
    epoch: int,
    skip_batches: int,
    rank: int,
    world_size: int,
    device: torch.device,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> torch.utils.data.DataLoader:
    """The training loader of one epoch (of one rank), ``skip_batches`` batches in.

    The order is a function of ``(config.seed, epoch)`` (a shuffled
    ``DistributedSampler``) and the workers' generator of
    ``(config.seed, epoch, rank)``, so a resumed epoch continues the
    uninterrupted one. A dataset with ``set_epoch`` is told the epoch first.

    Examples:
        >>> from tia_scanner_robust.training.config import TrainerConfig
        >>> config = TrainerConfig(batch_size=2, drop_last=False)
        >>> loader = train_loader(
        ...     list(range(5)),
        ...     config,
        ...     epoch=0,
        ...     skip_batches=1,
        ...     rank=0,
        ...     world_size=1,
        ...     device=torch.device("cpu"),
        ... )
        >>> sum(len(b) for b in loader)
        3

    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    sampler = torch.utils.data.DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=config.seed
    )
    sampler.set_epoch(epoch)
    generator = torch.Generator()
    generator.manual_seed(derive_seed(config.seed, epoch, rank))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=SkipSampler(sampler, skip_batches * config.batch_size),
        num_workers=config.num_workers,
        collate_fn=collate_fn,
        drop_last=config.drop_last,
        generator=generator,
        pin_memory=device.type == "cuda",
    )


def val_loader(
    dataset: Any,
    config: TrainerConfig,
    *,
    rank: int,
    world_size: int,
    device: torch.device,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> torch.utils.data.DataLoader:
    """The validation loader of one rank (every item on exactly one rank, in order)."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=config.val_batch_size or config.batch_size,
        sampler=ShardSampler(len(dataset), rank, world_size),
        num_workers=config.num_workers,
        collate_fn=collate_fn,
        pin_memory=device.type == "cuda",
    )
