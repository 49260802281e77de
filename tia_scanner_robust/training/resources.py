"""CPU threads and DataLoader workers of a training run, chosen so they do not oversubscribe.

A training process uses ``threads`` torch intra-op threads in the main
process and ``workers`` DataLoader processes (each decoding and augmenting
on one core). Torch's default of one thread per core, plus the workers, plus
whatever else runs on the machine, oversubscribes the cores: on a busy 2-core
machine a step took 7-10 s with the default threads and 2.7-3.6 s with one.

:func:`default_threads` therefore gives the main process the cores that are
left: ``max(1, min(cores // (workers + 1), cores - busy))`` where ``cores``
is the number of CPUs this process may use (``os.sched_getaffinity``) and
``busy`` the 1-minute load average rounded down (work of other processes).
``--threads`` on ``train`` and ``train-mil`` overrides it;
``--workers`` sets ``trainer.num_workers``.

Examples:
    >>> default_threads(0, cores=16, load=0.0)
    16
    >>> default_threads(3, cores=16, load=0.0)
    4
    >>> default_threads(0, cores=2, load=1.3)  # a busy 2-core machine
    1

"""

from __future__ import annotations

import os

import torch

__all__ = ["available_cores", "default_threads", "set_threads"]


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere).

    Examples:
        >>> available_cores() >= 1
        True

    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _load_average() -> float:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # not available (Windows)
        return 0.0


def default_threads(
    workers: int = 0, *, cores: int | None = None, load: float | None = None
) -> int:
    """Torch intra-op threads for a training process with ``workers`` DataLoader workers.

    Args:
        workers: DataLoader worker processes (each takes a core).
        cores: CPUs available (default: :func:`available_cores`).
        load: Load of other processes, in cores (default: the 1-minute load average).

    Returns:
        ``max(1, min(cores // (workers + 1), cores - floor(load)))``.

    """
    cores = available_cores() if cores is None else max(1, int(cores))
    load = _load_average() if load is None else max(0.0, float(load))
    share = cores // (max(0, int(workers)) + 1)
    return max(1, min(share, cores - int(load)))


def set_threads(threads: int | None, workers: int = 0) -> int:
    """Set torch's intra-op threads (``threads``, or :func:`default_threads` when ``None``).

    Returns:
        The number of threads set.

    Raises:
        ValueError: If ``threads`` is not a positive int.

    """
    if threads is None:
        threads = default_threads(workers)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        msg = f"threads must be a positive int, got {threads!r}."
        raise ValueError(msg)
    torch.set_num_threads(threads)
    return threads
