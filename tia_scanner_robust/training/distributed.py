"""Distributed helpers of the trainer: ``torchrun`` process group, device, reductions.

Under ``torchrun`` (``WORLD_SIZE > 1``) :func:`init_distributed` joins the
process group (gloo on the CPU, NCCL on CUDA) unless one is already
initialised; a single process gets a :class:`DistributedContext` of rank 0
and world size 1 whose collectives are no-ops, so the training loop calls
them unconditionally.

Examples:
    >>> ctx = init_distributed("cpu")
    >>> ctx.rank, ctx.world_size, ctx.is_main_process
    (0, 1, True)
    >>> import torch
    >>> t = torch.tensor([1.0, 2.0])
    >>> ctx.all_reduce(t) is t, ctx.gather_objects({"a": 1})
    (True, [{'a': 1}])
    >>> resolve_device("cpu", ctx)
    device(type='cpu')

"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "init_distributed", "resolve_device"]


@dataclass
class DistributedContext:
    """Where this process sits in a (possibly single-process) run.

    Attributes:
        rank: Global rank (0 for a single process).
        world_size: Number of processes.
        local_rank: Rank on this node (``LOCAL_RANK``), used to pick the GPU.
        owns_process_group: ``True`` when :func:`init_distributed` created the
            process group (then :meth:`close` destroys it).

    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_process_group: bool = False

    @property
    def is_main_process(self) -> bool:
        """``True`` on rank 0 (the only rank writing files)."""
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Reduce ``tensor`` in place over the ranks (``"sum"`` or ``"max"``); returns it."""
        if self.world_size > 1:
            reduce_op = dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM
            dist.all_reduce(tensor, op=reduce_op)
        return tensor

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` for one process."""
        if self.world_size == 1:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group if :func:`init_distributed` created it."""
        if self.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_process_group = False


def init_distributed(device: str) -> DistributedContext:
    """Join the ``torchrun`` process group when there is one to join.

    Args:
        device: The configured device (``"cpu"`` forces gloo; otherwise NCCL
            when CUDA is available).

    Returns:
        The process's :class:`DistributedContext`.

    Raises:
        RuntimeError: If ``WORLD_SIZE > 1`` but torch has no distributed support.

    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    owns = False
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    elif world > 1:
        if not dist.is_available():  # pragma: no cover - torch built without distributed
            msg = "WORLD_SIZE > 1 but torch.distributed is not available."
            raise RuntimeError(msg)
        backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
        dist.init_process_group(backend=backend)
        owns = True
        rank, world_size = dist.get_rank(), dist.get_world_size()
    else:
        rank, world_size = 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    return DistributedContext(rank, world_size, local_rank, owns)


def resolve_device(name: str, context: DistributedContext) -> torch.device:
    """The training device of ``TrainerConfig.device`` for this rank.

    ``"auto"`` is CUDA when available, else the CPU; a CUDA device without an
    index becomes ``cuda:<local rank>`` under DDP (``cuda:0`` otherwise) and
    is made the current device.

    Raises:
        ValueError: If CUDA is requested but not available.

    """
    requested = name
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            msg = f"TrainerConfig.device is {requested!r} but CUDA is not available."
            raise ValueError(msg)
        if device.index is None:
            index = context.local_rank if context.world_size > 1 else 0
            device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    return device
