"""One place that seeds every random number generator the plugin touches.

Randomness enters the plugin through Python's :mod:`random`, NumPy and torch
(and albumentations, which draws from per-transform generators seeded by
``A.Compose(seed=...)``). :func:`seed_everything` seeds the global generators;
:func:`make_rng` gives an independent NumPy generator for code that should not
depend on global state.

Examples:
    >>> from tia_scanner_robust.seeding import seed_everything, make_rng
    >>> seed_everything(0)
    0
    >>> a = make_rng(1).random(3)
    >>> b = make_rng(1).random(3)
    >>> bool((a == b).all())
    True

"""

from __future__ import annotations

import os
import random

import numpy as np

__all__ = ["make_rng", "reseed_transform", "seed_everything"]

_MAX_SEED = 2**32 - 1


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        msg = f"seed must be an int, got {type(seed).__name__}."
        raise TypeError(msg)
    seed = int(seed)
    if not 0 <= seed <= _MAX_SEED:
        msg = f"seed must be in [0, {_MAX_SEED}], got {seed}."
        raise ValueError(msg)
    return seed


def seed_everything(seed: int, *, deterministic: bool = False) -> int:
    """Seed Python, NumPy and torch (CPU and all CUDA devices).

    Args:
        seed: Non-negative integer below ``2**32``.
        deterministic: Also ask torch for deterministic kernels
            (``torch.use_deterministic_algorithms``, cuDNN deterministic mode).
            Slower on GPU; off by default.

    Returns:
        The seed, so calls can be chained into logs.

    Raises:
        TypeError: If ``seed`` is not an integer.
        ValueError: If ``seed`` is out of range.

    Examples:
        >>> import numpy as np
        >>> _ = seed_everything(42)
        >>> x = np.random.rand()
        >>> _ = seed_everything(42)
        >>> x == np.random.rand()
        True

    """
    seed = _check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - legacy global state is what users' code reads
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch  # noqa: PLC0415 - seeding must work before torch is needed
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return seed
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(mode=True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return seed


def make_rng(seed: int | np.random.Generator | None = None) -> np.random.Generator:
    """Return a NumPy ``Generator`` from a seed (or pass a generator through).

    Args:
        seed: An integer seed, an existing generator (returned unchanged) or
            ``None`` for fresh OS entropy.

    Returns:
        A :class:`numpy.random.Generator`.

    Examples:
        >>> g = make_rng(3)
        >>> make_rng(g) is g
        True

    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(_check_seed(seed))


def reseed_transform(transform: object, seed: int) -> None:
    """Give an albumentations transform (or ``Compose``) one fresh random stream.

    All nested transforms *share* one NumPy generator and one Python
    ``random.Random`` seeded with ``seed`` (albumentations'
    ``set_random_state``). albumentations 2.0.8's own ``Compose(seed=...)``
    / ``set_random_seed`` gives every child its own generator with the *same*
    seed, so two children with equal probabilities fire together (a
    horizontal and a vertical flip always flip together, ColorJitter and FDA
    draw correlated values). Objects without ``set_random_state`` are left
    alone.

    Args:
        transform: An albumentations transform or composition.
        seed: Non-negative integer below ``2**32``.

    Examples:
        >>> import albumentations as A, numpy as np
        >>> t = A.ColorJitter(p=1.0)
        >>> x = np.full((8, 8, 3), 120, np.uint8)
        >>> reseed_transform(t, 3)
        >>> a = t(image=x)["image"]
        >>> reseed_transform(t, 3)
        >>> b = t(image=x)["image"]
        >>> bool((a == b).all())
        True

    """
    seed = _check_seed(seed)
    setter = getattr(transform, "set_random_state", None)
    if callable(setter):
        setter(np.random.default_rng(seed), random.Random(seed))  # noqa: S311 - augmentation RNG
