"""The hook protocol of the trainer, the hook registry and entry-point discovery.

A hook is a small object with no-op ``on_*`` methods; it takes and returns
tensors and dicts, so the same hook can be driven by another training loop.
:class:`~tia_scanner_robust.training.trainer.Trainer` calls them in list order:

.. code-block:: text

    on_fit_start(trainer)
    for each epoch:
        on_epoch_start(trainer, epoch)
        for each training batch (dict of CPU tensors/lists from the DataLoader):
            batch   = on_batch_start(trainer, batch)          -> may replace the batch
            inputs  = trainer.prepare_inputs(batch)           (device, float, normalised)
            outputs = model(inputs)                           (ONE forward)
            outputs = on_forward(trainer, batch, outputs)     -> may replace the outputs
            losses  = trainer.compute_loss(outputs, batch)    {"supervised": ...}
            losses  = on_loss(trainer, batch, outputs, losses) -> may add named terms
            total   = sum(losses.values()); total.backward()
            on_after_backward(trainer)                        (gradients are ready)
            optimiser step, scheduler step
        metrics = validation (val_loss, val_dice / val_accuracy)
        metrics = on_validation_end(trainer, metrics)         -> may add metrics
        on_epoch_end(trainer, epoch, metrics)
    on_fit_end(trainer)

Conventions a hook can rely on:

- the batch arrives as the DataLoader collated it, on the CPU: by default
  ``batch["image"]`` is an ``(N, H, W, 3)`` uint8 tensor (before
  normalisation) and ``batch["mask"]``/``batch["label"]`` the targets;
- a hook that enlarges the batch (SimCons concatenates a second view) sets
  ``batch["supervised_mask"]``, a ``(N,)`` bool tensor: the trainer's
  supervised loss uses only the rows where it is ``True``;
- every entry of ``losses`` is summed into the total loss and logged under
  its name (``train_<name>``); purely informative scalars go through
  ``trainer.log_scalar(name, value)`` (not summed);
- ``state_dict``/``load_state_dict`` carry the hook's state through
  checkpoints (plain tensors, numbers, strings, lists and dicts only: the
  checkpoint is read with ``torch.load(weights_only=True)``).

Useful trainer attributes: ``model`` (unwrapped), ``device``, ``config``,
``epoch``, ``global_step``, ``rank``, ``world_size``, ``is_main_process``.
Hooks that may run under another loop read them through
:func:`trainer_rank`, :func:`trainer_step`, :func:`trainer_config_value` and
:func:`hook_logger`, which take Lightning's names too (``global_rank``) and
fail with a message naming the hook argument to pass instead of silently
using a default.

Registry: ``@register_hook("name")`` adds a class to :data:`HOOK_REGISTRY`;
:func:`create_hook` builds one by name. Third-party packages expose hooks
through the entry-point group ``tia_scanner_robust.hooks``:

.. code-block:: toml

    [project.entry-points."tia_scanner_robust.hooks"]
    my_hook = "my_package.hooks:MyHook"

Examples:
    >>> class CountBatches(Hook):
    ...     def __init__(self):
    ...         self.n = 0
    ...
    ...     def on_batch_start(self, trainer, batch):
    ...         self.n += 1
    ...         return batch
    ...
    ...     def state_dict(self):
    ...         return {"n": self.n}
    ...
    ...     def load_state_dict(self, state):
    ...         self.n = int(state["n"])
    >>> hook = CountBatches()
    >>> hook.on_batch_start(None, {"image": None}) == {"image": None}
    True
    >>> hook.state_dict()
    {'n': 1}

"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import torch

__all__ = [
    "ENTRY_POINT_GROUP",
    "HOOK_REGISTRY",
    "Hook",
    "available_hooks",
    "create_hook",
    "get_hook_class",
    "hook_logger",
    "hook_state_keys",
    "register_hook",
    "trainer_config_value",
    "trainer_rank",
    "trainer_step",
]

logger = logging.getLogger(__name__)

#: Entry-point group scanned for third-party hooks.
ENTRY_POINT_GROUP = "tia_scanner_robust.hooks"

_H = TypeVar("_H", bound="Hook")


class Hook:
    """Base class of trainer hooks: every method is a no-op (or returns its input).

    Subclass it and override what you need; see the module docstring for the
    call order and the batch/loss conventions. ``name`` is set by
    :func:`register_hook` and keys the hook's state in checkpoints.

    Examples:
        >>> import torch
        >>> class L2(Hook):
        ...     def on_loss(self, trainer, batch, outputs, losses):
        ...         return {**losses, "l2": 1e-3 * outputs.pow(2).mean()}
        >>> sorted(L2().on_loss(None, {}, torch.ones(2), {"supervised": torch.tensor(1.0)}))
        ['l2', 'supervised']

    """

    name: ClassVar[str | None] = None

    def on_fit_start(self, trainer: Any) -> None:
        """Called once before the first epoch (also when resuming)."""

    def on_fit_end(self, trainer: Any) -> None:
        """Called once after training ends."""

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Called at the start of every training epoch (0-based ``epoch``)."""

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        """Called after validation with the epoch's logged metrics."""

    def on_batch_start(self, trainer: Any, batch: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG002 - no-op protocol method
        """Transform a training batch (CPU, before normalisation); return the batch."""
        return batch

    def on_forward(self, trainer: Any, batch: dict[str, Any], outputs: Any) -> Any:  # noqa: ARG002 - no-op protocol method
        """Inspect or replace the model outputs of a training batch."""
        return outputs

    def on_loss(
        self,
        trainer: Any,  # noqa: ARG002 - no-op protocol method
        batch: dict[str, Any],  # noqa: ARG002
        outputs: Any,  # noqa: ARG002
        losses: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Add, replace or reweight named loss terms; all returned terms are summed."""
        return losses

    def on_after_backward(self, trainer: Any) -> None:
        """Called after ``backward()``, before gradient clipping and the optimiser step."""

    def on_validation_end(self, trainer: Any, metrics: dict[str, float]) -> dict[str, float]:  # noqa: ARG002 - no-op protocol method
        """Add validation metrics (reduced over ranks already); return the dict."""
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (tensors, numbers, strings, lists, dicts only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state written by :meth:`state_dict`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


#: Registered hook classes by name (built-ins register when their module loads).
HOOK_REGISTRY: dict[str, type[Hook]] = {}

#: Built-in hooks that register themselves when their module is imported.
_BUILTIN_MODULES: dict[str, str] = {
    "simcons": "tia_scanner_robust.training.simcons",
    "batch_style": "tia_scanner_robust.training.simcons",
    "scangen": "tia_scanner_robust.training.scangen",
}


def register_hook(name: str) -> Callable[[type[_H]], type[_H]]:
    """Class decorator adding a :class:`Hook` subclass to :data:`HOOK_REGISTRY`.

    Args:
        name: Registry name (also the ``name`` attribute of the class).

    Returns:
        The decorator.

    Raises:
        ValueError: If ``name`` is empty or taken by another class.
        TypeError: If the decorated object is not a ``Hook`` subclass.

    Examples:
        >>> @register_hook("doc_example_noop")
        ... class Noop(Hook):
        ...     pass
        >>> create_hook("doc_example_noop").name
        'doc_example_noop'

    """
    if not isinstance(name, str) or not name:
        msg = f"Hook name must be a non-empty string, got {name!r}."
        raise ValueError(msg)

    def decorator(cls: type[_H]) -> type[_H]:
        if not (isinstance(cls, type) and issubclass(cls, Hook)):
            msg = f"@register_hook({name!r}) must decorate a Hook subclass, got {cls!r}."
            raise TypeError(msg)
        existing = HOOK_REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            where = f"{existing.__module__}.{existing.__qualname__}"
            msg = f"Hook name {name!r} is already registered to {where}."
            raise ValueError(msg)
        cls.name = name
        HOOK_REGISTRY[name] = cls
        return cls

    return decorator


def _entry_points() -> dict[str, Any]:
    """Entry points of :data:`ENTRY_POINT_GROUP` by name (never raises)."""
    try:
        found = entry_points(group=ENTRY_POINT_GROUP)
    except Exception as err:  # noqa: BLE001 - broken metadata must not break training
        logger.warning("Could not read entry points %r: %s", ENTRY_POINT_GROUP, err)
        return {}
    return {ep.name: ep for ep in found}


def _load_builtin(name: str) -> None:
    module = _BUILTIN_MODULES.get(name)
    if module is None or name in HOOK_REGISTRY:
        return
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise


def available_hooks() -> list[str]:
    """Names accepted by :func:`create_hook`: registered, built-in and entry points.

    Examples:
        >>> "simcons" in available_hooks()
        True

    """
    for name in _BUILTIN_MODULES:
        _load_builtin(name)
    return sorted(set(HOOK_REGISTRY) | set(_entry_points()))


def get_hook_class(name: str) -> Callable[..., Hook]:
    """Resolve a hook name to its class (or factory) without instantiating it.

    Lookup order: :data:`HOOK_REGISTRY`, the built-in modules, then the
    entry points of group :data:`ENTRY_POINT_GROUP`.

    Raises:
        KeyError: If the name is unknown; the message lists the valid names.
        TypeError: If an entry point does not load a Hook class or factory.

    """
    _load_builtin(name)
    if name in HOOK_REGISTRY:
        return HOOK_REGISTRY[name]
    eps = _entry_points()
    if name in eps:
        loaded = eps[name].load()
        if isinstance(loaded, type) and not issubclass(loaded, Hook):
            msg = (
                f"Entry point {name!r} ({eps[name].value}) of group {ENTRY_POINT_GROUP!r} "
                f"loads {loaded!r}, which is not a tia_scanner_robust Hook subclass."
            )
            raise TypeError(msg)
        if not callable(loaded):
            msg = (
                f"Entry point {name!r} of group {ENTRY_POINT_GROUP!r} loads a non-callable "
                f"{loaded!r}."
            )
            raise TypeError(msg)
        return loaded
    msg = f"Unknown hook {name!r}; valid names: {', '.join(available_hooks()) or '(none)'}."
    raise KeyError(msg)


def create_hook(name: str, **kwargs: Any) -> Hook:
    """Build a hook by name with keyword arguments.

    Args:
        name: A registered or entry-point hook name (e.g. ``"simcons"``).
        **kwargs: Passed to the hook's constructor.

    Returns:
        The hook instance.

    Raises:
        KeyError: If the name is unknown (the message lists valid names).
        TypeError: If the factory does not return a :class:`Hook`.

    Examples:
        >>> create_hook("no_such_hook")
        Traceback (most recent call last):
        ...
        KeyError: "Unknown hook 'no_such_hook'; valid names: ..."

    """
    factory = get_hook_class(name)
    hook = factory(**kwargs)
    if not isinstance(hook, Hook):
        msg = f"Hook factory {name!r} returned {type(hook).__name__}, not a Hook."
        raise TypeError(msg)
    return hook


def hook_state_keys(hooks: Sequence[Hook]) -> list[str]:
    """Checkpoint keys of a hook list: the registry name (or class name), ``#k`` for repeats.

    Examples:
        >>> hook_state_keys([Hook(), Hook()])
        ['Hook', 'Hook#1']

    """
    keys: list[str] = []
    counts: dict[str, int] = {}
    for hook in hooks:
        base = getattr(hook, "name", None) or type(hook).__name__
        k = counts.get(base, 0)
        counts[base] = k + 1
        keys.append(base if k == 0 else f"{base}#{k}")
    return keys


# ----------------------------------------------------------------------------- what hooks read
# Hooks run under this project's Trainer, under another loop (Lightning, a
# plain PyTorch loop) or by hand with ``trainer=None``. They read what they
# need from the trainer through these functions: the value is the right one
# for every trainer, or the call fails with a message saying what to pass.


def trainer_rank(trainer: Any) -> int:
    """The process rank of the loop driving a hook, read explicitly.

    ``trainer.rank`` (this project's Trainer), else ``trainer.global_rank``
    (Lightning), else the rank of the initialised ``torch.distributed``
    process group, else 0 (one process; also for ``trainer=None``).

    Examples:
        >>> from types import SimpleNamespace
        >>> trainer_rank(SimpleNamespace(rank=2)), trainer_rank(SimpleNamespace(global_rank=1))
        (2, 1)
        >>> trainer_rank(None)
        0

    """
    for name in ("rank", "global_rank"):
        value = getattr(trainer, name, None)
        if value is not None:
            return int(value)
    import torch.distributed as dist  # noqa: PLC0415 - torch only when a hook needs it

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return 0


def trainer_step(trainer: Any, hook: str) -> int:
    """``trainer.global_step`` (optimiser steps done; 0 for ``trainer=None``).

    Raises:
        AttributeError: If the trainer has no ``global_step``.

    Examples:
        >>> from types import SimpleNamespace
        >>> trainer_step(SimpleNamespace(global_step=7), "MyHook"), trainer_step(None, "MyHook")
        (7, 0)
        >>> trainer_step(object(), "MyHook")
        Traceback (most recent call last):
        ...
        AttributeError: MyHook needs trainer.global_step (the optimiser step, ...); object has none.

    """
    if trainer is None:
        return 0
    step = getattr(trainer, "global_step", None)
    if step is None:
        msg = (
            f"{hook} needs trainer.global_step (the optimiser step, which seeds its random "
            f"draws); {type(trainer).__name__} has none."
        )
        raise AttributeError(msg)
    return int(step)


def trainer_config_value(trainer: Any, field: str, hook: str, argument: str, default: Any) -> Any:
    """``trainer.config.<field>`` for a hook option left at ``None``.

    ``default`` only for ``trainer=None`` (a hook driven by hand); a trainer
    without that config field (Lightning, a plain loop) raises instead of
    silently using the default.

    Raises:
        AttributeError: If the trainer has no ``config.<field>``; the message
            names the hook argument to pass.

    Examples:
        >>> from types import SimpleNamespace
        >>> trainer = SimpleNamespace(config=SimpleNamespace(seed=3))
        >>> trainer_config_value(trainer, "seed", "MyHook", "seed", 0)
        3
        >>> trainer_config_value(None, "seed", "MyHook", "seed", 0)
        0
        >>> trainer_config_value(object(), "seed", "MyHook", "seed", 0)
        Traceback (most recent call last):
        ...
        AttributeError: MyHook: seed=None takes trainer.config.seed, ... pass seed=... to the hook.

    """
    if trainer is None:
        return default
    config = getattr(trainer, "config", None)
    if config is None or not hasattr(config, field):
        msg = (
            f"{hook}: {argument}=None takes trainer.config.{field}, which "
            f"{type(trainer).__name__} does not have; pass {argument}=... to the hook."
        )
        raise AttributeError(msg)
    return getattr(config, field)


def hook_logger(
    trainer: Any, log_fn: Callable[..., None] | None, hook: str
) -> Callable[..., None] | None:
    """Where a hook logs its informative scalars: ``log_fn``, else ``trainer.log_scalar``.

    ``None`` (nothing logged) only for ``trainer=None`` without ``log_fn``.

    Raises:
        AttributeError: If the trainer has no ``log_scalar`` and no
            ``log_fn`` was given (the values would be lost without a word).

    Examples:
        >>> logged = []
        >>> log = hook_logger(object(), lambda name, value: logged.append(name), "MyHook")
        >>> log("x", 1.0)
        >>> logged, hook_logger(None, None, "MyHook")
        (['x'], None)

    """
    if log_fn is not None:
        return log_fn
    if trainer is None:
        return None
    log_scalar = getattr(trainer, "log_scalar", None)
    if not callable(log_scalar):
        msg = (
            f"{hook} logs through trainer.log_scalar(name, value), which "
            f"{type(trainer).__name__} does not have; pass log_fn=... to the hook, e.g. "
            "log_fn=lambda name, value: pl_module.log(name, value) in Lightning (or "
            "SimConsCallback/ScanGenCallback from tia_scanner_robust.training.lightning)."
        )
        raise AttributeError(msg)
    return log_scalar
