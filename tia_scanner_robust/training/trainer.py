"""The training engine: loops, checkpoints, exact resume, DDP, hooks.

TIAToolbox is inference-only; this trainer fills the gap for any
``torch.nn.Module`` (including TIAToolbox ``ModelABC`` models such as
:class:`~tia_scanner_robust.models.segmentation.SmpSegmentationModel`).

- Train/validation loops with tqdm bars; Adam/AdamW/SGD; cosine/step/no
  schedule (stepped per optimiser step); AMP on CUDA; gradient clipping.
- Default loss: cross-entropy + soft Dice (segmentation) or cross-entropy
  (classification); replace it with ``loss_fn=`` or by overriding
  :meth:`Trainer.compute_loss`.
- Validation: ``val_loss`` and ``val_dice`` (per class, pooled over the
  whole validation set, averaged over the foreground classes present) or
  ``val_accuracy``; the best epoch on ``config.monitor`` goes to ``best.pt``.
- Hooks (:mod:`tia_scanner_robust.training.hooks`) add loss terms, transform
  batches, add metrics.
- Checkpoints: ``last.pt`` (every ``checkpoint_every_n_steps`` steps and at
  every epoch end, atomically) holds the model, optimiser, scheduler, AMP
  scaler, counters, hook states and every RNG state (Python, NumPy, torch
  CPU/CUDA, per rank); data order and augmentations are functions of
  ``(seed, epoch[, index])``, so a run resumed from any checkpoint continues
  the uninterrupted trajectory (bit for bit on the CPU).
- Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the trainer joins the
  process group (gloo on CPU, NCCL on CUDA), wraps the model in DDP, shards
  data with ``DistributedSampler``, reduces metrics over ranks and lets rank 0
  alone write files.
- Logs: ``metrics.jsonl`` and ``metrics.csv`` (one row per epoch),
  ``steps.jsonl`` (every ``log_every_n_steps``), ``config.json``.

Examples:
    >>> import tempfile, torch
    >>> from torch.utils.data import TensorDataset
    >>> class DS(torch.utils.data.Dataset):
    ...     def __len__(self):
    ...         return 8
    ...
    ...     def __getitem__(self, i):
    ...         g = torch.Generator().manual_seed(i)
    ...         x = torch.randint(0, 256, (8, 8, 3), dtype=torch.uint8, generator=g)
    ...         return {"image": x, "mask": (x[..., 0] > 127).long()}
    >>> model = torch.nn.Conv2d(3, 2, 3, padding=1)
    >>> trainer = Trainer(
    ...     model,
    ...     DS(),
    ...     DS(),
    ...     config={
    ...         "epochs": 2,
    ...         "batch_size": 4,
    ...         "output_dir": tempfile.mkdtemp(),
    ...         "progress": False,
    ...     },
    ... )
    >>> result = trainer.fit()
    >>> result.global_step, result.best_epoch in (0, 1)
    (4, True)

"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812
from torch import nn
from tqdm.auto import tqdm

from tia_scanner_robust._io import atomic_open, atomic_write_json, atomic_write_text
from tia_scanner_robust.losses.functional import segmentation_loss
from tia_scanner_robust.seeding import seed_everything
from tia_scanner_robust.training.config import TrainerConfig
from tia_scanner_robust.training.hooks import Hook, create_hook, hook_state_keys
from tia_scanner_robust.training.state import (
    ShardSampler,
    SkipSampler,
    capture_rng_state,
    derive_seed,
    restore_rng_state,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tia_scanner_robust.training.config import ExperimentConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "SUPERVISED_MASK_KEY",
    "FitResult",
    "Trainer",
    "build_trainer",
]

logger = logging.getLogger(__name__)

#: Format tag of the trainer's checkpoints.
CHECKPOINT_FORMAT = "tia_scanner_robust.trainer/1"
#: Batch key of the optional ``(N,)`` bool tensor selecting supervised rows.
SUPERVISED_MASK_KEY = "supervised_mask"

# Config fields whose change between a checkpoint and a resumed run alters the trajectory.
_TRAJECTORY_FIELDS = (
    "epochs",
    "max_steps",
    "batch_size",
    "drop_last",
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "scheduler",
    "min_lr",
    "step_epochs",
    "gamma",
    "grad_clip_norm",
    "task",
    "seed",
)


# ----------------------------------------------------------------------------- results
@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        monitor: The monitored metric name.
        best_metric: Its best value (``None`` if never computed).
        best_epoch: The 0-based epoch of the best value.
        global_step: Optimiser steps done.
        epochs_completed: Epochs finished.
        stopped_early: ``True`` when ``stop_at_step`` ended the run.
        last_checkpoint: Path of ``last.pt`` (resumable state).
        best_checkpoint: Path of ``best.pt`` (weights of the best epoch), if written.
        history: One metrics dict per epoch.

    """

    monitor: str
    best_metric: float | None
    best_epoch: int | None
    global_step: int
    epochs_completed: int
    stopped_early: bool
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)


def _to_float_outputs(outputs: Any) -> Any:
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: _to_float_outputs(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_to_float_outputs(v) for v in outputs)
    return outputs


def _logits_of(outputs: Any) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict) and isinstance(outputs.get("logits"), torch.Tensor):
        return outputs["logits"]
    msg = (
        "The default loss and metrics need the model to return a logits tensor or a dict with "
        f"a 'logits' tensor; got {type(outputs).__name__}. Pass loss_fn= or override compute_loss."
    )
    raise TypeError(msg)


def _select_rows(value: Any, rows: torch.Tensor) -> Any:
    if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == rows.shape[0]:
        return value[rows.to(value.device)]
    if isinstance(value, dict):
        return {k: _select_rows(v, rows) for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------- trainer
class Trainer:
    """Train a model with hooks, exact resume and optional DDP.

    Args:
        model: Any ``torch.nn.Module``; called as ``model(inputs)`` with the
            prepared batch (see :meth:`prepare_inputs`).
        train_dataset: Map-style dataset returning dicts (``"image"``: HWC
            uint8 array/tensor, ``"mask"`` or ``"label"``). If it has
            ``set_epoch(epoch)``, the trainer calls it every epoch.
        val_dataset: Optional validation dataset (same item format).
        config: :class:`TrainerConfig`, a dict of its fields, or ``None``.
        loss_fn: ``loss_fn(outputs, targets) -> Tensor | dict[str, Tensor]``
            replacing the default supervised loss.
        hooks: :class:`~tia_scanner_robust.training.hooks.Hook` instances or
            registered hook names.
        collate_fn: DataLoader collate function (default: torch's).

    Raises:
        ValueError: If a dataset is empty or too small for one batch.

    Examples:
        >>> import torch, tempfile
        >>> data = [
        ...     {
        ...         "image": torch.zeros(8, 8, 3, dtype=torch.uint8),
        ...         "mask": torch.zeros(8, 8, dtype=torch.long),
        ...     }
        ... ] * 4
        >>> t = Trainer(
        ...     torch.nn.Conv2d(3, 2, 1),
        ...     data,
        ...     config={
        ...         "epochs": 1,
        ...         "batch_size": 2,
        ...         "progress": False,
        ...         "output_dir": tempfile.mkdtemp(),
        ...     },
        ... )
        >>> t.steps_per_epoch
        2

    """

    def __init__(
        self,
        model: nn.Module,
        train_dataset: torch.utils.data.Dataset | Sequence[dict[str, Any]],
        val_dataset: torch.utils.data.Dataset | Sequence[dict[str, Any]] | None = None,
        *,
        config: TrainerConfig | dict[str, Any] | None = None,
        loss_fn: Callable[[Any, torch.Tensor], torch.Tensor | dict[str, torch.Tensor]]
        | None = None,
        hooks: Sequence[Hook | str] = (),
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            msg = f"model must be a torch.nn.Module, got {type(model).__name__}."
            raise TypeError(msg)
        if config is None:
            config = TrainerConfig()
        elif isinstance(config, dict):
            config = TrainerConfig.from_dict(config)
        elif not isinstance(config, TrainerConfig):
            msg = f"config must be a TrainerConfig or a dict, got {type(config).__name__}."
            raise TypeError(msg)
        self.config: TrainerConfig = config
        self.train_dataset = train_dataset
        self.val_dataset = val_dataset
        self.loss_fn = loss_fn
        self.collate_fn = collate_fn
        self.hooks: list[Hook] = [self._as_hook(h, i) for i, h in enumerate(hooks)]
        self._hook_keys = hook_state_keys(self.hooks)

        self._setup_distributed()
        self.device = self._resolve_device()
        seed_everything(
            config.seed if self.world_size == 1 else derive_seed(config.seed, self.rank),
            deterministic=config.deterministic,
        )

        self.model = model.to(self.device)
        self.forward_model: nn.Module = self.model
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

        self.steps_per_epoch = self._count_steps_per_epoch()
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)

        self.amp = self._resolve_amp()
        self.optimizer = self._build_optimizer()
        self.scheduler = self._build_scheduler()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

        self.output_dir = Path(config.output_dir)
        self.epoch = 0
        self.batch_in_epoch = 0
        self.global_step = 0
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.history: list[dict[str, Any]] = []
        self._epoch_sums: dict[str, float] = {}
        self._epoch_count = 0
        self._step_scalars: dict[str, float | torch.Tensor] = {}
        self._finite_only: set[str] = set()
        self._steps_file: Any = None
        self._warned_monitor = False
        self._epoch_start_time = time.time()

    # ------------------------------------------------------------------ properties
    @property
    def is_main_process(self) -> bool:
        """``True`` on rank 0 (the only rank writing files)."""
        return self.rank == 0

    @property
    def last_checkpoint_path(self) -> Path:
        """Path of the resumable checkpoint."""
        return self.output_dir / "last.pt"

    @property
    def best_checkpoint_path(self) -> Path:
        """Path of the best-epoch weights."""
        return self.output_dir / "best.pt"

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _as_hook(hook: Hook | str, index: int) -> Hook:
        if isinstance(hook, str):
            return create_hook(hook)
        if not isinstance(hook, Hook):
            msg = (
                f"hooks[{index}] must be a Hook instance or a registered name, "
                f"got {type(hook).__name__}."
            )
            raise TypeError(msg)
        return hook

    def _setup_distributed(self) -> None:
        self._owns_process_group = False
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if dist.is_available() and dist.is_initialized():
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        elif world > 1:
            if not dist.is_available():  # pragma: no cover - torch built without distributed
                msg = "WORLD_SIZE > 1 but torch.distributed is not available."
                raise RuntimeError(msg)
            backend = (
                "nccl" if torch.cuda.is_available() and self.config.device != "cpu" else "gloo"
            )
            dist.init_process_group(backend=backend)
            self._owns_process_group = True
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        else:
            self.rank, self.world_size = 0, 1
        self.local_rank = int(os.environ.get("LOCAL_RANK", str(self.rank)))

    def _count_steps_per_epoch(self) -> int:
        cfg = self.config
        n_train = len(self.train_dataset)  # type: ignore[arg-type]
        if n_train == 0:
            msg = "train_dataset is empty."
            raise ValueError(msg)
        per_rank = math.ceil(n_train / self.world_size)
        if cfg.drop_last:
            steps = per_rank // cfg.batch_size
        else:
            steps = math.ceil(per_rank / cfg.batch_size)
        if steps == 0:
            msg = (
                f"train_dataset has {n_train} items: fewer than one batch of {cfg.batch_size} "
                f"per rank (world size {self.world_size}) with drop_last=True."
            )
            raise ValueError(msg)
        return steps

    def _resolve_device(self) -> torch.device:
        name = self.config.device
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(name)
        if device.type == "cuda":
            if not torch.cuda.is_available():
                msg = f"TrainerConfig.device is {self.config.device!r} but CUDA is not available."
                raise ValueError(msg)
            if device.index is None:
                device = torch.device("cuda", self.local_rank if self.world_size > 1 else 0)
            torch.cuda.set_device(device)
        return device

    def _resolve_amp(self) -> bool:
        requested = self.config.amp
        if self.device.type != "cuda":
            if requested is True:
                logger.warning("AMP requested but training runs on %s; AMP is off.", self.device)
            return False
        return requested in (True, "auto")

    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            msg = "The model has no trainable parameters."
            raise ValueError(msg)
        if cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )

    def _build_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        cfg = self.config
        if cfg.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=max(1, self.total_steps), eta_min=cfg.min_lr
            )
        if cfg.scheduler == "step":
            return torch.optim.lr_scheduler.StepLR(
                self.optimizer, step_size=cfg.step_epochs * self.steps_per_epoch, gamma=cfg.gamma
            )
        return None

    # ------------------------------------------------------------------ data
    def _train_loader(self, epoch: int, skip_batches: int) -> torch.utils.data.DataLoader:
        cfg = self.config
        if hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(epoch)
        sampler = torch.utils.data.DistributedSampler(
            self.train_dataset,  # type: ignore[arg-type]
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=True,
            seed=cfg.seed,
        )
        sampler.set_epoch(epoch)
        generator = torch.Generator()
        generator.manual_seed(derive_seed(cfg.seed, epoch, self.rank))
        return torch.utils.data.DataLoader(
            self.train_dataset,  # type: ignore[arg-type]
            batch_size=cfg.batch_size,
            sampler=SkipSampler(sampler, skip_batches * cfg.batch_size),
            num_workers=cfg.num_workers,
            collate_fn=self.collate_fn,
            drop_last=cfg.drop_last,
            generator=generator,
            pin_memory=self.device.type == "cuda",
        )

    def _val_loader(self) -> torch.utils.data.DataLoader:
        cfg = self.config
        if hasattr(self.val_dataset, "set_epoch"):
            self.val_dataset.set_epoch(0)
        return torch.utils.data.DataLoader(
            self.val_dataset,  # type: ignore[arg-type]
            batch_size=cfg.val_batch_size or cfg.batch_size,
            sampler=ShardSampler(len(self.val_dataset), self.rank, self.world_size),  # type: ignore[arg-type]
            num_workers=cfg.num_workers,
            collate_fn=self.collate_fn,
            pin_memory=self.device.type == "cuda",
        )

    def prepare_inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        """Move the batch's images to the device as model inputs.

        A uint8 ``(N, H, W, C)`` tensor/array is scaled to ``[0, 1]``,
        normalised with ``config.normalize_mean``/``normalize_std`` and
        permuted to ``(N, C, H, W)``. A floating tensor is taken as
        model-ready and only moved to the device.

        Raises:
            KeyError: If the batch lacks ``config.image_key``.
            ValueError: If a uint8 batch is not ``(N, H, W, C)`` with ``C``
                matching the normalisation statistics.

        """
        key = self.config.image_key
        if key not in batch:
            msg = f"Batch has no {key!r} entry (TrainerConfig.image_key); keys: {sorted(batch)}."
            raise KeyError(msg)
        x = batch[key]
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            msg = f"batch[{key!r}] must be a tensor or array, got {type(x).__name__}."
            raise TypeError(msg)
        x = x.to(self.device, non_blocking=True)
        if x.dtype != torch.uint8:
            return x.float()
        mean = torch.tensor(self.config.normalize_mean, device=self.device)
        std = torch.tensor(self.config.normalize_std, device=self.device)
        if x.ndim != 4 or x.shape[-1] != mean.numel():
            msg = (
                f"uint8 batch[{key!r}] must be (N, H, W, {mean.numel()}) (channels last), "
                f"got {tuple(x.shape)}."
            )
            raise ValueError(msg)
        x = (x.float() / 255.0 - mean) / std
        return x.permute(0, 3, 1, 2).contiguous()

    def prepare_targets(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's targets (``config.target_key``) as a long tensor on the device."""
        key = self.config.target_key
        if key not in batch:
            msg = f"Batch has no {key!r} entry (TrainerConfig.target_key); keys: {sorted(batch)}."
            raise KeyError(msg)
        y = batch[key]
        if isinstance(y, np.ndarray):
            y = torch.from_numpy(y)
        y = torch.as_tensor(y)
        return y.to(self.device, non_blocking=True).long()

    # ------------------------------------------------------------------ losses
    #: :meth:`log_scalar` takes tensors without reading them back and accepts
    #: ``finite_only`` (hooks may check this before passing tensors lazily).
    lazy_scalars: bool = True

    def log_scalar(
        self, name: str, value: float | torch.Tensor, *, finite_only: bool = False
    ) -> None:
        """Log an informative scalar for the current step (averaged per epoch, not summed).

        A tensor (its mean if it has several elements) is kept detached on its
        device: :meth:`train_step` reads every logged tensor back in one
        transfer together with the loss terms, so logging costs no device
        synchronisation of its own.

        Args:
            name: Logged name.
            value: A number or a tensor.
            finite_only: Leave the value out of the step's log (and of the
                epoch mean's sum) when it is NaN or infinite.

        """
        if isinstance(value, torch.Tensor):
            value = value.detach()
            if not value.is_floating_point():
                value = value.float()
            value = value.reshape(()) if value.numel() == 1 else value.float().mean()
        else:
            value = float(value)
        name = str(name)
        self._step_scalars[name] = value
        if finite_only:
            self._finite_only.add(name)
        else:
            self._finite_only.discard(name)

    @staticmethod
    def _to_floats(values: Sequence[float | torch.Tensor]) -> list[float]:
        """Python floats of numbers and 0-d tensors (one transfer for all the tensors).

        The tensors are cast to float64 (exact for float32 values and integer
        counts), stacked on the first tensor's device and read back with one
        ``tolist``.
        """
        positions = [i for i, value in enumerate(values) if isinstance(value, torch.Tensor)]
        out = [value if isinstance(value, torch.Tensor) else float(value) for value in values]
        if positions:
            device = values[positions[0]].device  # type: ignore[union-attr]
            stacked = torch.stack(
                [values[i].to(device, torch.float64) for i in positions]  # type: ignore[union-attr]
            )
            for i, number in zip(positions, stacked.tolist(), strict=True):
                out[i] = number
        return out  # type: ignore[return-value]

    def _logged_scalars(self, scalars: dict[str, float | torch.Tensor]) -> dict[str, float]:
        """``scalars`` as floats, without the non-finite ``finite_only`` ones."""
        values = self._to_floats(list(scalars.values()))
        return {
            k: v
            for k, v in zip(scalars, values, strict=True)
            if k not in self._finite_only or math.isfinite(v)
        }

    def supervised_loss(
        self, outputs: Any, targets: torch.Tensor
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """``loss_fn`` if given, else CE + Dice (segmentation) or CE (classification)."""
        if self.loss_fn is not None:
            return self.loss_fn(outputs, targets)
        logits = _logits_of(outputs)
        if self.config.task == "segmentation":
            return segmentation_loss(logits, targets, ignore_index=self.config.ignore_index)
        ignore = -100 if self.config.ignore_index is None else self.config.ignore_index
        return F.cross_entropy(logits, targets, ignore_index=ignore)

    def compute_loss(self, outputs: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Named supervised loss terms of a batch (before hooks).

        Rows where ``batch["supervised_mask"]`` is ``False`` are excluded.

        Returns:
            ``{"supervised": loss}`` or the dict returned by ``loss_fn``.

        """
        targets = self.prepare_targets(batch)
        rows = batch.get(SUPERVISED_MASK_KEY)
        if rows is not None:
            rows = torch.as_tensor(rows, dtype=torch.bool)
            if rows.shape[0] != targets.shape[0]:
                msg = (
                    f"batch[{SUPERVISED_MASK_KEY!r}] has {rows.shape[0]} rows but the targets "
                    f"have {targets.shape[0]}."
                )
                raise ValueError(msg)
            if not bool(rows.all()):
                outputs = _select_rows(outputs, rows)
                targets = targets[rows.to(targets.device)]
        out = self.supervised_loss(outputs, targets)
        if isinstance(out, dict):
            return dict(out)
        return {"supervised": out}

    def compute_losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run the hooks and ONE forward on a training batch; return ``(total, terms)``.

        This is the part of a training step before ``backward``:
        ``on_batch_start`` -> :meth:`prepare_inputs` -> forward ->
        ``on_forward`` -> :meth:`compute_loss` -> ``on_loss`` -> sum.
        """
        self._step_scalars, self._finite_only = {}, set()
        for hook in self.hooks:
            batch = hook.on_batch_start(self, batch)
            if not isinstance(batch, dict):
                msg = (
                    f"{type(hook).__name__}.on_batch_start must return the batch dict, "
                    f"got {type(batch).__name__}."
                )
                raise TypeError(msg)
        inputs = self.prepare_inputs(batch)
        with self._autocast():
            outputs = self.forward_model(inputs)
        outputs = _to_float_outputs(outputs)
        for hook in self.hooks:
            outputs = hook.on_forward(self, batch, outputs)
        losses = self.compute_loss(outputs, batch)
        for hook in self.hooks:
            losses = hook.on_loss(self, batch, outputs, losses)
            if not isinstance(losses, dict) or not all(
                isinstance(v, torch.Tensor) for v in losses.values()
            ):
                msg = f"{type(hook).__name__}.on_loss must return a dict of tensors."
                raise TypeError(msg)
        if not losses:
            msg = "No loss terms: compute_loss and the hooks returned an empty dict."
            raise ValueError(msg)
        bad = [k for k, v in losses.items() if v.numel() != 1]
        if bad:
            msg = f"Loss terms must be scalars; non-scalar term(s): {bad}."
            raise ValueError(msg)
        total = torch.stack([v.float().reshape(()) for v in losses.values()]).sum()
        return total, losses

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimisation step; returns the logged values (``loss`` and every term)."""
        total, losses = self.compute_losses(batch)
        # One read-back per step: the total (for the finiteness check), every
        # loss term and every scalar logged so far, in a single transfer.
        early = dict(self._step_scalars)
        values = self._to_floats([total, *losses.values(), *early.values()])
        terms = dict(zip(["loss", *losses], values[: len(losses) + 1], strict=True))
        if not math.isfinite(terms["loss"]):
            terms.pop("loss")
            msg = f"Non-finite loss at step {self.global_step}: {terms}."
            raise FloatingPointError(msg)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        for hook in self.hooks:
            hook.on_after_backward(self)
        if self.config.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        logged = terms
        logged.update(
            self._logged_scalars(dict(zip(early, values[len(losses) + 1 :], strict=True)))
        )
        late = {k: v for k, v in self._step_scalars.items() if k not in early or v is not early[k]}
        if late:  # logged after backward (e.g. gradient norms): one more read-back
            logged.update(self._logged_scalars(late))
        return logged

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation metrics, reduced over ranks.

        Segmentation: ``val_loss`` (sample-weighted mean of the supervised
        loss), ``val_dice`` (per class ``2 TP / (P + T)`` with counts pooled
        over the whole validation set, averaged over the classes with
        ``P + T > 0``, background excluded unless
        ``dice_include_background``) and ``val_dice_<c>`` per class.
        Classification: ``val_loss`` and ``val_accuracy``.
        """
        if self.val_dataset is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        stats: torch.Tensor | None = None
        ignore = self.config.ignore_index
        for batch in self._val_loader():
            inputs = self.prepare_inputs(batch)
            with self._autocast():
                outputs = self.model(inputs)
            outputs = _to_float_outputs(outputs)
            targets = self.prepare_targets(batch)
            losses = self.compute_loss(outputs, batch)
            n = targets.shape[0]
            loss_sum += float(sum(v.detach().float() for v in losses.values())) * n
            count += n
            logits = _logits_of(outputs)
            pred = logits.argmax(dim=1)
            valid = (
                torch.ones_like(targets, dtype=torch.bool) if ignore is None else targets != ignore
            )
            c = logits.shape[1]
            if self.config.task == "segmentation":
                t, p = targets[valid], pred[valid]
                batch_stats = torch.stack(
                    [
                        torch.bincount(t[p == t], minlength=c)[:c],
                        torch.bincount(p, minlength=c)[:c],
                        torch.bincount(t, minlength=c)[:c],
                    ]
                ).double()
            else:
                batch_stats = torch.stack(
                    [(pred[valid] == targets[valid]).sum(), valid.sum()]
                ).double()
            stats = batch_stats if stats is None else stats + batch_stats
        stats = self._complete_val_stats(stats)
        if self.world_size > 1:
            for tensor in (loss_sum, count, stats):
                dist.all_reduce(tensor)
        self.model.train(was_training)
        metrics = {"val_loss": float(loss_sum / count.clamp_min(1))}
        if self.config.task == "segmentation":
            tp, pc, tc = stats[0], stats[1], stats[2]
            denom = pc + tc
            dice = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.nan)
            classes = dice if self.config.dice_include_background or dice.numel() == 1 else dice[1:]
            present = classes[~torch.isnan(classes)]
            metrics["val_dice"] = float(present.mean()) if present.numel() else float("nan")
            metrics.update({f"val_dice_{i}": float(v) for i, v in enumerate(dice.tolist())})
        else:
            metrics["val_accuracy"] = float(stats[0] / stats[1].clamp_min(1))
        return metrics

    def _complete_val_stats(self, stats: torch.Tensor | None) -> torch.Tensor:
        """Give every rank a stats tensor of the same shape (a rank may get no items)."""
        if self.config.task == "classification":
            return (
                torch.zeros(2, dtype=torch.float64, device=self.device) if stats is None else stats
            )
        n_classes = torch.tensor([0 if stats is None else stats.shape[1]], device=self.device)
        if self.world_size > 1:
            dist.all_reduce(n_classes, op=dist.ReduceOp.MAX)
        if stats is None:
            return torch.zeros(3, int(n_classes.item()), dtype=torch.float64, device=self.device)
        return stats

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        *,
        resume_from: str | Path | None = None,
        stop_at_step: int | None = None,
    ) -> FitResult:
        """Train until ``config.epochs`` (or ``config.max_steps``) are done.

        Args:
            resume_from: A ``last.pt`` (or step) checkpoint to continue from;
                ``"auto"`` resumes from ``output_dir/last.pt`` when it exists.
            stop_at_step: Stop (after writing ``last.pt``) once this many
                optimiser steps are done, e.g. to split a run across jobs.
                Does not change the schedule.

        Returns:
            A :class:`FitResult`.

        """
        if resume_from is not None and str(resume_from) != "auto":
            self.load_checkpoint(resume_from)
        elif resume_from is not None and self.last_checkpoint_path.is_file():
            self.load_checkpoint(self.last_checkpoint_path)
        if stop_at_step is not None and (isinstance(stop_at_step, bool) or int(stop_at_step) < 1):
            msg = f"stop_at_step must be a positive int, got {stop_at_step!r}."
            raise ValueError(msg)
        self._open_logs()
        for hook in self.hooks:
            hook.on_fit_start(self)
        try:
            stopped = self._run_epochs(stop_at_step)
        finally:
            self._close_logs()
        for hook in self.hooks:
            hook.on_fit_end(self)
        if self.world_size > 1:
            dist.barrier()
        best = self.best_checkpoint_path if self.best_checkpoint_path.is_file() else None
        return FitResult(
            monitor=self.config.monitor,
            best_metric=self.best_metric,
            best_epoch=self.best_epoch,
            global_step=self.global_step,
            epochs_completed=len(self.history),
            stopped_early=stopped,
            last_checkpoint=self.last_checkpoint_path
            if self.last_checkpoint_path.is_file()
            else None,
            best_checkpoint=best,
            history=list(self.history),
        )

    def _run_epochs(self, stop_at_step: int | None) -> bool:
        """Epoch loop; returns ``True`` if ``stop_at_step`` interrupted it."""
        while self.epoch < self.config.epochs:
            if self.global_step >= self.total_steps and self.batch_in_epoch == 0:
                return False
            if stop_at_step is not None and self.global_step >= stop_at_step:
                return True
            # A checkpoint may end at the last step before its epoch-end work: finish it.
            if self.global_step < self.total_steps and self._train_epoch(stop_at_step):
                return True
            self._end_epoch()
        return False

    def _train_epoch(self, stop_at_step: int | None) -> bool:
        cfg = self.config
        epoch = self.epoch
        if self.batch_in_epoch == 0:
            self._epoch_sums, self._epoch_count = {}, 0
            self._epoch_start_time = time.time()
            for hook in self.hooks:
                hook.on_epoch_start(self, epoch)
        loader = self._train_loader(epoch, self.batch_in_epoch)
        self.forward_model.train()
        bar = tqdm(
            loader,
            total=self.steps_per_epoch,
            initial=self.batch_in_epoch,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not (cfg.progress and self.is_main_process),
        )
        for batch in bar:
            logged = self.train_step(batch)
            self.global_step += 1
            self.batch_in_epoch += 1
            for k, v in logged.items():
                self._epoch_sums[k] = self._epoch_sums.get(k, 0.0) + v
            self._epoch_count += 1
            bar.set_postfix(loss=f"{logged['loss']:.4f}")
            if self.global_step % cfg.log_every_n_steps == 0:
                self._log_step(logged)
            every = cfg.checkpoint_every_n_steps
            if every is not None and self.global_step % every == 0:
                self.save_checkpoint(self.last_checkpoint_path)
                if cfg.keep_step_checkpoints:
                    self.save_checkpoint(self.output_dir / f"step_{self.global_step:08d}.pt")
            if self.global_step >= self.total_steps:
                break
            if stop_at_step is not None and self.global_step >= stop_at_step:
                bar.close()
                self.save_checkpoint(self.last_checkpoint_path)
                return True
        bar.close()
        return False

    def _reduced_train_means(self) -> dict[str, float]:
        keys = sorted(self._epoch_sums)
        values = torch.tensor(
            [self._epoch_sums[k] for k in keys] + [float(self._epoch_count)],
            dtype=torch.float64,
            device=self.device,
        )
        if self.world_size > 1:
            dist.all_reduce(values)
        count = max(values[-1].item(), 1.0)
        return {f"train_{k}": values[i].item() / count for i, k in enumerate(keys)}

    def _end_epoch(self) -> None:
        record: dict[str, Any] = {"epoch": self.epoch, "step": self.global_step}
        record["lr"] = float(self.optimizer.param_groups[0]["lr"])
        record.update(self._reduced_train_means())
        metrics = self.validate()
        for hook in self.hooks:
            metrics = hook.on_validation_end(self, metrics)
            if not isinstance(metrics, dict):
                msg = f"{type(hook).__name__}.on_validation_end must return the metrics dict."
                raise TypeError(msg)
        record.update(metrics)
        record["time_s"] = round(time.time() - self._epoch_start_time, 3)
        self._update_best(record)
        for hook in self.hooks:
            hook.on_epoch_end(self, self.epoch, record)
        self.history.append(record)
        self._write_epoch_logs(record)
        self.epoch += 1
        self.batch_in_epoch = 0
        self._epoch_sums, self._epoch_count = {}, 0
        self.save_checkpoint(self.last_checkpoint_path)

    def _update_best(self, record: dict[str, Any]) -> None:
        cfg = self.config
        value = record.get(cfg.monitor)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            if not self._warned_monitor and self.is_main_process:
                logger.warning(
                    "Monitored metric %r is not among the epoch metrics %s; "
                    "best.pt is not written.",
                    cfg.monitor,
                    sorted(record),
                )
            self._warned_monitor = True
            return
        value = float(value)
        better = (
            self.best_metric is None
            or (cfg.mode == "max" and value > self.best_metric)
            or (cfg.mode == "min" and value < self.best_metric)
        )
        record["is_best"] = bool(better)
        if better:
            self.best_metric, self.best_epoch = value, self.epoch
            self._save_best()

    # ------------------------------------------------------------------ logging
    def _open_logs(self) -> None:
        if not self.is_main_process:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.output_dir / "config.json", self.config.to_dict())
        steps = self.output_dir / "steps.jsonl"
        kept = []
        if steps.is_file():
            for line in steps.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    rec = json.loads(line)
                    if int(rec.get("step", 0)) <= self.global_step:
                        kept.append(line)
        atomic_write_text(steps, "".join(f"{line}\n" for line in kept))
        self._steps_file = steps.open("a", buffering=1, encoding="utf-8")
        self._rewrite_epoch_logs()

    def _close_logs(self) -> None:
        if self._steps_file is not None:
            self._steps_file.close()
            self._steps_file = None

    def _log_step(self, logged: dict[str, float]) -> None:
        if self._steps_file is None:
            return
        rec = {"epoch": self.epoch, "step": self.global_step}
        rec["lr"] = float(self.optimizer.param_groups[0]["lr"])
        rec.update(logged)
        self._steps_file.write(json.dumps(rec) + "\n")

    def _write_epoch_logs(self, record: dict[str, Any]) -> None:
        if not self.is_main_process:
            return
        self._rewrite_epoch_logs()
        summary = ", ".join(
            f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float) and k != "lr"
        )
        logger.info("epoch %d: %s", record["epoch"], summary)

    def _rewrite_epoch_logs(self) -> None:
        """Write metrics.jsonl and metrics.csv atomically from the in-memory history."""
        if not self.is_main_process:
            return
        atomic_write_text(
            self.output_dir / "metrics.jsonl",
            "".join(json.dumps(r) + "\n" for r in self.history),
        )
        columns: list[str] = []
        for rec in self.history:
            columns += [k for k in rec if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_text(self.output_dir / "metrics.csv", buffer.getvalue())

    # ------------------------------------------------------------------ checkpoints
    def _gather_rng(self) -> list[dict[str, Any]]:
        state = capture_rng_state()
        if self.world_size == 1:
            return [state]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, state)
        return gathered

    def _model_config(self) -> dict[str, Any] | None:
        config = getattr(self.model, "config", None)
        return config if isinstance(config, dict) else None

    def state_dict(self) -> dict[str, Any]:
        """The full resumable state (every entry loadable with ``weights_only=True``)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "model_config": self._model_config(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "epoch_sums": dict(self._epoch_sums),
            "epoch_count": self._epoch_count,
            "history": list(self.history),
            "hooks": {k: h.state_dict() for k, h in zip(self._hook_keys, self.hooks, strict=True)},
            "rng": self._gather_rng(),
            "world_size": self.world_size,
            "config": self.config.to_dict(),
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write :meth:`state_dict` atomically (rank 0 writes; all ranks take part)."""
        state = self.state_dict()  # collective under DDP: every rank must call it
        path = Path(path)
        if self.is_main_process:
            with atomic_open(path, "wb") as handle:
                torch.save(state, handle)
        return path

    def _save_best(self) -> None:
        if not self.is_main_process:
            return
        payload = {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "model_config": self._model_config(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "monitor": self.config.monitor,
            "best_metric": self.best_metric,
        }
        with atomic_open(self.best_checkpoint_path, "wb") as handle:
            torch.save(payload, handle)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (``weights_only=True``).

        Restores model, optimiser, scheduler, AMP scaler, counters, best
        metric, history, hook states and the RNG states of this rank.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            ValueError: If it is not a trainer checkpoint.

        """
        path = Path(path)
        if not path.is_file():
            msg = f"Checkpoint file not found: {path}"
            raise FileNotFoundError(msg)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if (
            not isinstance(state, dict)
            or state.get("format") != CHECKPOINT_FORMAT
            or "optimizer" not in state
        ):
            msg = f"{path} is not a resumable tia_scanner_robust trainer checkpoint (last.pt)."
            raise ValueError(msg)
        self._warn_config_changes(state.get("config", {}), path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.global_step = int(state["global_step"])
        self.best_metric = state["best_metric"]
        self.best_epoch = state["best_epoch"]
        self._epoch_sums = {k: float(v) for k, v in state["epoch_sums"].items()}
        self._epoch_count = int(state["epoch_count"])
        self.history = list(state["history"])
        hook_states = dict(state.get("hooks", {}))
        for key, hook in zip(self._hook_keys, self.hooks, strict=True):
            if key in hook_states:
                hook.load_state_dict(hook_states.pop(key))
            elif hook.state_dict():
                logger.warning("No state for hook %r in %s; it starts fresh.", key, path)
        hook_states = {k: v for k, v in hook_states.items() if v}
        if hook_states:
            logger.warning(
                "Checkpoint %s holds state of hooks not in use: %s.", path, sorted(hook_states)
            )
        rng = state["rng"]
        if len(rng) == self.world_size:
            restore_rng_state(rng[self.rank])
        else:
            logger.warning(
                "Checkpoint was written with %d process(es), now %d: "
                "RNG states restored from rank 0.",
                len(rng),
                self.world_size,
            )
            restore_rng_state(rng[0])

    def _warn_config_changes(self, saved: dict[str, Any], path: Path) -> None:
        current = self.config.to_dict()
        changed = [k for k in _TRAJECTORY_FIELDS if k in saved and saved[k] != current.get(k)]
        if changed and self.is_main_process:
            logger.warning(
                "Resuming from %s with changed config field(s) %s: the run will not follow "
                "the original trajectory.",
                path,
                changed,
            )

    def close(self) -> None:
        """Leave the process group if this trainer created it."""
        if self._owns_process_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_process_group = False


# ----------------------------------------------------------------------------- builder
def build_trainer(config: ExperimentConfig, *, hooks: Sequence[Hook] = ()) -> Trainer:
    """Build the smp model, folder datasets, hooks and :class:`Trainer` of a config.

    Args:
        config: An :class:`~tia_scanner_robust.training.config.ExperimentConfig`
            (``data.train_dir`` is required).
        hooks: Extra hook instances appended after the configured ones.

    Returns:
        A ready-to-``fit`` trainer.

    Raises:
        ValueError: If ``data.train_dir`` is missing.

    """
    # Lazy: smp/TIAToolbox/albumentations are only needed for config-built runs.
    from tia_scanner_robust.models.segmentation import (  # noqa: PLC0415
        SmpSegmentationModel,
    )
    from tia_scanner_robust.training.data import (  # noqa: PLC0415
        SegmentationFolderDataset,
        build_eval_transform,
        build_train_transform,
    )

    data, mcfg, tcfg = config.data, config.model, config.trainer
    if data.train_dir is None:
        msg = "DataConfig.train_dir is required to build a trainer."
        raise ValueError(msg)
    num_classes = data.num_classes or mcfg.num_classes
    seed_everything(tcfg.seed)  # the model's random initialisation is part of the run
    model = SmpSegmentationModel(
        arch=mcfg.arch,
        encoder_name=mcfg.encoder_name,
        encoder_weights=mcfg.encoder_weights,
        num_classes=mcfg.num_classes,
        patch_size=mcfg.patch_size,
        resolution=mcfg.resolution,
        units=mcfg.units,
        model_kwargs=mcfg.model_kwargs,
    )
    train = SegmentationFolderDataset(
        data.train_dir,
        build_train_transform(
            data.crop_size,
            flip_p=data.flip_p,
            blur_p=data.blur_p,
            noise_p=data.noise_p,
            style_augmentation=data.style_augmentation,
            style_p=data.style_p,
        ),
        num_classes=num_classes,
        ignore_index=tcfg.ignore_index,
        seed=tcfg.seed,
    )
    val = None
    if data.val_dir is not None:
        val = SegmentationFolderDataset(
            data.val_dir,
            build_eval_transform(data.val_crop_size),
            num_classes=num_classes,
            ignore_index=tcfg.ignore_index,
            seed=tcfg.seed,
        )
    built = [create_hook(h.name, **h.kwargs) for h in config.hooks]
    return Trainer(model, train, val, config=tcfg, hooks=[*built, *hooks])
