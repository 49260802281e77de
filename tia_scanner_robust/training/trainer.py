"""The training engine: loops, checkpoints, exact resume, DDP, hooks.

TIAToolbox is inference-only; this trainer fills the gap for any
``torch.nn.Module`` (including TIAToolbox ``ModelABC`` models such as
:class:`~tia_scanner_robust.models.segmentation.SmpSegmentationModel`).

- Train/validation loops with tqdm bars; Adam/AdamW/SGD; cosine/step/no
  schedule (stepped per optimiser step); AMP on CUDA; gradient clipping.
- Tasks: a small task adapter (:mod:`tia_scanner_robust.training.tasks`)
  supplies the model inputs and targets of a batch, the default supervised
  loss (cross-entropy + soft Dice for segmentation, cross-entropy for
  classification; ``loss_fn=`` replaces it) and the validation metrics;
  MIL uses :class:`~tia_scanner_robust.training.mil.MILTask`. A new task is
  an adapter, not a trainer subclass.
- Validation: ``val_loss`` and ``val_dice`` (per class, pooled over the
  whole validation set, averaged over the foreground classes present) or
  ``val_accuracy``; the best epoch on ``config.monitor`` goes to ``best.pt``. With
  ``val_every_steps`` validation runs every N optimiser steps (and at the
  last) instead of at epoch ends; ``max_steps`` fixes the run length in
  steps whatever the epoch length.
- Hooks (:mod:`tia_scanner_robust.training.hooks`) add loss terms, transform
  batches, add metrics.
- Checkpoints (:mod:`~tia_scanner_robust.training.checkpoint`): ``last.pt``
  (every ``checkpoint_every_steps`` steps and at every validation,
  atomically) holds the model, optimiser, scheduler, AMP
  scaler, counters, hook states and every RNG state (Python, NumPy, torch
  CPU/CUDA, per rank); data order and augmentations are functions of
  ``(seed, epoch[, index])``, so a run resumed from any checkpoint continues
  the uninterrupted trajectory (bit for bit on the CPU).
- Distributed (:mod:`~tia_scanner_robust.training.distributed`): under
  ``torchrun`` (``WORLD_SIZE > 1``) the trainer joins the process group
  (gloo on CPU, NCCL on CUDA), wraps the model in DDP, shards data with
  ``DistributedSampler``, reduces metrics over ranks and lets rank 0 alone
  write files.
- Logs (:mod:`~tia_scanner_robust.training.logs`): ``metrics.jsonl`` and
  ``metrics.csv`` (one row per epoch), ``steps.jsonl`` (every
  ``log_every_n_steps``), ``config.json``.

Examples:
    >>> import tempfile, torch
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
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm.auto import tqdm

from tia_scanner_robust.seeding import seed_everything
from tia_scanner_robust.training.checkpoint import (
    TRAINER_CHECKPOINT_FORMAT,
    best_weights,
    changed_trajectory_fields,
    model_config_of,
    read_resumable_checkpoint,
    restore_hook_states,
    write_checkpoint,
)
from tia_scanner_robust.training.config import TrainerConfig
from tia_scanner_robust.training.distributed import init_distributed, resolve_device
from tia_scanner_robust.training.hooks import Hook, create_hook, hook_state_keys
from tia_scanner_robust.training.logs import RunLogs
from tia_scanner_robust.training.optim import build_optimizer, build_scheduler
from tia_scanner_robust.training.results import FitResult, select_rows, to_float_outputs
from tia_scanner_robust.training.state import (
    capture_rng_state,
    derive_seed,
    restore_rng_state,
    steps_per_epoch,
    train_loader,
    val_loader,
)
from tia_scanner_robust.training.tasks import TrainingTask, create_task

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "SUPERVISED_MASK_KEY",
    "FitResult",
    "Trainer",
]

logger = logging.getLogger(__name__)

#: Batch key of the optional ``(N,)`` bool tensor selecting supervised rows.
SUPERVISED_MASK_KEY = "supervised_mask"


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
        task: The task adapter (:class:`~tia_scanner_robust.training.tasks.TrainingTask`):
            inputs, targets, default loss and validation metrics. Default:
            the built-in adapter named by ``config.task``.

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
        task: TrainingTask | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            msg = f"model must be a torch.nn.Module, got {type(model).__name__}."
            raise TypeError(msg)
        config = self._as_config(config)
        self.config: TrainerConfig = config
        self.train_dataset = train_dataset
        self.val_dataset = val_dataset
        self.loss_fn = loss_fn
        self.collate_fn = collate_fn
        self.task: TrainingTask = self._as_task(task, config)
        self.hooks: list[Hook] = [self._as_hook(h, i) for i, h in enumerate(hooks)]
        self._hook_keys = hook_state_keys(self.hooks)

        self.distributed = init_distributed(config.device)
        self.rank, self.world_size = self.distributed.rank, self.distributed.world_size
        self.local_rank = self.distributed.local_rank
        self.device = resolve_device(config.device, self.distributed)
        seed_everything(
            config.seed if self.world_size == 1 else derive_seed(config.seed, self.rank),
            deterministic=config.deterministic,
        )

        self.model = model.to(self.device)
        self.forward_model: nn.Module = self.model
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

        self.steps_per_epoch = steps_per_epoch(
            len(train_dataset),  # type: ignore[arg-type]
            config.batch_size,
            world_size=self.world_size,
            drop_last=config.drop_last,
        )
        # epochs and max_steps: whichever ends first; either alone sets the length.
        by_epochs = None if config.epochs is None else config.epochs * self.steps_per_epoch
        self.total_steps = min(s for s in (by_epochs, config.max_steps) if s is not None)
        self.num_epochs = math.ceil(self.total_steps / self.steps_per_epoch)

        self.amp = self._resolve_amp()
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = build_scheduler(
            self.optimizer,
            config,
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
        )
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
        self._logs = RunLogs(self.output_dir, enabled=self.is_main_process)
        self._warned_monitor = False
        self._epoch_start_time = time.time()
        #: The full experiment config (``build_trainer`` sets it), written as ``config.yaml``.
        self.run_config: dict[str, Any] | None = None

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
    def _as_config(config: TrainerConfig | dict[str, Any] | None) -> TrainerConfig:
        if config is None:
            return TrainerConfig()
        if isinstance(config, dict):
            return TrainerConfig.from_dict(config)
        if not isinstance(config, TrainerConfig):
            msg = f"config must be a TrainerConfig or a dict, got {type(config).__name__}."
            raise TypeError(msg)
        return config

    @staticmethod
    def _as_task(task: TrainingTask | None, config: TrainerConfig) -> TrainingTask:
        if task is None:
            return create_task(config.task)
        if not isinstance(task, TrainingTask):
            msg = f"task must be a TrainingTask adapter, got {type(task).__name__}."
            raise TypeError(msg)
        return task

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

    def _resolve_amp(self) -> bool:
        requested = self.config.amp
        if self.device.type != "cuda":
            if requested is True:
                logger.warning("AMP requested but training runs on %s; AMP is off.", self.device)
            return False
        return requested in (True, "auto")

    # ------------------------------------------------------------------ data
    def _train_loader(self, epoch: int, skip_batches: int) -> torch.utils.data.DataLoader:
        return train_loader(
            self.train_dataset,
            self.config,
            epoch=epoch,
            skip_batches=skip_batches,
            rank=self.rank,
            world_size=self.world_size,
            device=self.device,
            collate_fn=self.collate_fn,
        )

    def _val_loader(self) -> torch.utils.data.DataLoader:
        return val_loader(
            self.val_dataset,
            self.config,
            rank=self.rank,
            world_size=self.world_size,
            device=self.device,
            collate_fn=self.collate_fn,
        )

    def prepare_inputs(self, batch: dict[str, Any]) -> Any:
        """The model inputs of a batch, on the device (the task adapter's).

        For the built-in tasks a uint8 ``(N, H, W, C)`` tensor/array is
        scaled to ``[0, 1]``, normalised with
        ``config.normalize_mean``/``normalize_std`` and permuted to
        ``(N, C, H, W)``; a floating tensor is taken as model-ready and only
        moved to the device.

        Raises:
            KeyError: If the batch lacks ``config.image_key``.
            ValueError: If a uint8 batch is not ``(N, H, W, C)`` with ``C``
                matching the normalisation statistics.

        """
        return self.task.prepare_inputs(batch, config=self.config, device=self.device)

    def prepare_targets(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's targets (``config.target_key``) on the device (the task adapter's)."""
        return self.task.prepare_targets(batch, config=self.config, device=self.device)

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
        """``loss_fn`` if given, else the task's (CE + Dice: segmentation, CE: classification)."""
        if self.loss_fn is not None:
            return self.loss_fn(outputs, targets)
        return self.task.supervised_loss(outputs, targets, config=self.config)

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
                outputs = select_rows(outputs, rows)
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
        outputs = to_float_outputs(outputs)
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
        """Validation metrics in one pass over the validation set, reduced over ranks.

        ``val_loss`` (sample-weighted mean of the supervised loss) and the
        task adapter's metrics: for segmentation ``val_dice`` (per class
        ``2 TP / (P + T)`` with counts pooled over the whole validation set,
        averaged over the classes with ``P + T > 0``, background excluded
        unless ``dice_include_background``) and ``val_dice_<c>`` per class;
        for classification ``val_accuracy``.
        """
        if self.val_dataset is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        accumulator = self.task.validation_metrics(config=self.config, device=self.device)
        for batch in self._val_loader():
            inputs = self.prepare_inputs(batch)
            with self._autocast():
                outputs = self.model(inputs)
            outputs = to_float_outputs(outputs)
            targets = self.prepare_targets(batch)
            losses = self.compute_loss(outputs, batch)
            n = targets.shape[0]
            loss_sum += float(sum(v.detach().float() for v in losses.values())) * n
            count += n
            accumulator.update(outputs, targets, batch)
        task_metrics = accumulator.compute(self.distributed)
        self.distributed.all_reduce(loss_sum)
        self.distributed.all_reduce(count)
        self.model.train(was_training)
        metrics = {"val_loss": float(loss_sum / count.clamp_min(1))}
        metrics.update(task_metrics)
        return metrics

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        *,
        resume_from: str | Path | None = None,
        stop_at_step: int | None = None,
    ) -> FitResult:
        """Train until ``config.epochs`` or ``config.max_steps`` (the first reached) are done.

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
        self.distributed.barrier()
        best = self.best_checkpoint_path if self.best_checkpoint_path.is_file() else None
        return FitResult(
            monitor=self.config.monitor,
            best_metric=self.best_metric,
            best_epoch=self.best_epoch,
            global_step=self.global_step,
            epochs_completed=self.epoch,
            stopped_early=stopped,
            last_checkpoint=self.last_checkpoint_path
            if self.last_checkpoint_path.is_file()
            else None,
            best_checkpoint=best,
            history=list(self.history),
        )

    def _run_epochs(self, stop_at_step: int | None) -> bool:
        """Epoch loop; returns ``True`` if ``stop_at_step`` interrupted it."""
        while self.epoch < self.num_epochs:
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
            if cfg.val_every_steps is None:  # else the means span the steps between validations
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
            desc=f"epoch {epoch + 1}/{self.num_epochs}",
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
            validated = self._step_validation()
            every = cfg.checkpoint_every_steps
            on_grid = every is not None and self.global_step % every == 0
            if on_grid or validated:
                self.save_checkpoint(self.last_checkpoint_path)
            if on_grid and cfg.keep_step_checkpoints:
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
        self.distributed.all_reduce(values)
        count = max(values[-1].item(), 1.0)
        return {f"train_{k}": values[i].item() / count for i, k in enumerate(keys)}

    def _step_validation(self) -> bool:
        """With ``val_every_steps``: validate on its grid and at the last step."""
        every = self.config.val_every_steps
        if every is None or not (
            self.global_step % every == 0 or self.global_step >= self.total_steps
        ):
            return False
        self._evaluate(epoch_end=False)
        self._epoch_sums, self._epoch_count = {}, 0
        self._epoch_start_time = time.time()
        return True

    def _end_epoch(self) -> None:
        if self.config.val_every_steps is not None:
            last = self.history[-1] if self.history else {}
            record = {**last, "epoch": self.epoch, "step": self.global_step}
            for hook in self.hooks:
                hook.on_epoch_end(self, self.epoch, record)
            self.epoch += 1
            self.batch_in_epoch = 0
            if self.global_step >= self.total_steps:
                self.save_checkpoint(self.last_checkpoint_path)
            return
        self._evaluate(epoch_end=True)
        self.epoch += 1
        self.batch_in_epoch = 0
        self._epoch_sums, self._epoch_count = {}, 0
        self.save_checkpoint(self.last_checkpoint_path)

    def _evaluate(self, *, epoch_end: bool) -> None:
        """Validate, update ``best.pt`` and append a row to the history and the logs."""
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
        if epoch_end:
            for hook in self.hooks:
                hook.on_epoch_end(self, self.epoch, record)
        self.history.append(record)
        self._write_epoch_logs(record)

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
        self._logs.open(
            self.config.to_dict(),
            global_step=self.global_step,
            history=self.history,
            run_config=self.run_config,
        )

    def _close_logs(self) -> None:
        self._logs.close()

    def _log_step(self, logged: dict[str, float]) -> None:
        rec = {"epoch": self.epoch, "step": self.global_step}
        rec["lr"] = float(self.optimizer.param_groups[0]["lr"])
        rec.update(logged)
        self._logs.log_step(rec)

    def _write_epoch_logs(self, record: dict[str, Any]) -> None:
        if not self.is_main_process:
            return
        self._logs.write_epochs(self.history)
        summary = ", ".join(
            f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float) and k != "lr"
        )
        logger.info("epoch %d, step %d: %s", record["epoch"], record["step"], summary)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The full resumable state (every entry loadable with ``weights_only=True``)."""
        return {
            "format": TRAINER_CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "model_config": model_config_of(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "epoch_sums": dict(self._epoch_sums),
            "epoch_count": self._epoch_count,
            "history": list(self.history),
            "hooks": {k: h.state_dict() for k, h in zip(self._hook_keys, self.hooks, strict=True)},
            # collective under DDP: every rank's RNG state
            "rng": self.distributed.gather_objects(capture_rng_state()),
            "world_size": self.world_size,
            "config": self.config.to_dict(),
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write :meth:`state_dict` atomically (rank 0 writes; all ranks take part)."""
        state = self.state_dict()  # collective under DDP: every rank must call it
        path = Path(path)
        if self.is_main_process:
            write_checkpoint(state, path)
        return path

    def _save_best(self) -> None:
        if not self.is_main_process:
            return
        payload = best_weights(
            self.model,
            epoch=self.epoch,
            global_step=self.global_step,
            monitor=self.config.monitor,
            best_metric=self.best_metric,
        )
        write_checkpoint(payload, self.best_checkpoint_path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (``weights_only=True``).

        Restores model, optimiser, scheduler, AMP scaler, counters, best
        metric, history, hook states and the RNG states of this rank.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            ValueError: If it is not a trainer checkpoint.

        """
        path = Path(path)
        state = read_resumable_checkpoint(path, self.model)
        changed = changed_trajectory_fields(state.get("config", {}), self.config.to_dict())
        if changed and self.is_main_process:
            logger.warning(
                "Resuming from %s with changed config field(s) %s: the run will not follow "
                "the original trajectory.",
                path,
                changed,
            )
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
        restore_hook_states(self.hooks, self._hook_keys, dict(state.get("hooks", {})), path)
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

    def close(self) -> None:
        """Leave the process group if this trainer created it."""
        self.distributed.close()
