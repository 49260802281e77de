"""Output folders that two runs cannot share and a rerun cannot silently destroy.

Every command that writes a run folder (``train``, ``train-mil``, ``demo``,
``evaluate``...) goes through :func:`open_run_folder`:

- **a lock**: ``.tia-scanner-robust.lock`` in the folder holds the process id,
  host and start time of the run that owns it; a second run into the same
  folder is refused with a message naming the owner. A lock left behind by a
  process that no longer exists (a crash, ``kill -9``) is *stale*: it is
  reported and taken over.
- **no silent overwrite**: a folder that already holds files is refused unless
  the run resumes (``resume=True``) or the user asked to start afresh
  (``overwrite=True``: the run then rewrites the files it writes; nothing else
  in the folder is deleted);
- **no debris**: temporary files of interrupted atomic writes
  (``.NAME.*.tmp``, see :mod:`tia_scanner_robust._io`) are removed at start.

Under ``torchrun`` only rank 0 (``RANK`` unset or ``0``) takes the lock and
checks the folder; the other ranks write into the folder rank 0 holds.

Examples:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> with open_run_folder(root) as folder:
    ...     _ = (folder / "a.txt").write_text("x")
    ...     (folder / LOCK_NAME).exists()
    True
    >>> (root / LOCK_NAME).exists()
    False
    >>> try:
    ...     open_run_folder(root).__enter__()
    ... except RunFolderError as error:
    ...     print(str(error).split(";")[0])
    Output folder ... already holds files (a.txt)

"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "LOCK_NAME",
    "RunFolderError",
    "RunFolderLockedError",
    "acquire_lock",
    "check_writable_folder",
    "clean_interrupted_writes",
    "open_run_folder",
    "release_lock",
]

#: Name of the lock file inside a run folder.
LOCK_NAME = ".tia-scanner-robust.lock"
_IGNORED = {LOCK_NAME, ".DS_Store"}


class RunFolderError(RuntimeError):
    """The output folder cannot be used as asked (the message says why and what to do)."""


class RunFolderLockedError(RunFolderError):
    """Another live process holds the output folder's lock."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def check_writable_folder(folder: str | Path) -> Path:
    """Create ``folder`` if needed and check that files can be written in it.

    Raises:
        RunFolderError: With the folder named, if it cannot be created or written
            (a file in the way, a read-only or virtual file system such as /proc).

    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        msg = f"Cannot write to output folder {folder}: {error.strerror or error}."
        raise RunFolderError(msg) from error
    return folder


def acquire_lock(folder: str | Path) -> Path:
    """Take the folder's lock, or raise :class:`RunFolderLockedError`.

    A lock whose process is gone (same host) is stale: it is reported with a
    warning and replaced.

    Returns:
        The lock file's path.

    """
    folder = check_writable_folder(folder)
    lock = folder / LOCK_NAME
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            owner = _read_lock(lock)
            same_host = owner.get("host") == record["host"]
            pid = owner.get("pid", -1)
            pid = pid if isinstance(pid, int) else -1
            if not owner or (same_host and not _pid_alive(pid)):
                warnings.warn(
                    f"Removing a stale lock in {folder} (process {pid} on "
                    f"{owner.get('host', '?')} no longer runs; the run it belonged to was "
                    "interrupted).",
                    stacklevel=2,
                )
                lock.unlink(missing_ok=True)
                continue
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
            msg = (
                f"Output folder {folder} is in use by another run (process {pid} on "
                f"{owner.get('host', '?')}, started {started}). Wait for it to finish, or "
                f"choose another output folder. If that process is gone, delete {lock}."
            )
            raise RunFolderLockedError(msg) from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
        return lock
    msg = f"Could not take the lock {lock}."
    raise RunFolderLockedError(msg)


def _read_lock(lock: Path) -> dict:
    try:
        data = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def release_lock(folder: str | Path) -> None:
    """Remove the folder's lock if this process holds it."""
    lock = Path(folder) / LOCK_NAME
    if _read_lock(lock).get("pid") == os.getpid():
        lock.unlink(missing_ok=True)


def clean_interrupted_writes(folder: str | Path) -> list[Path]:
    """Delete temporary files left by interrupted atomic writes (``.NAME.*.tmp``).

    Returns:
        The files removed.

    """
    removed = []
    for tmp in Path(folder).rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _existing_files(folder: Path, ignore: Iterable[str]) -> list[str]:
    skip = _IGNORED | set(ignore)
    return sorted(p.name for p in folder.iterdir() if p.name not in skip)


@contextlib.contextmanager
def open_run_folder(
    folder: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    ignore: Iterable[str] = (),
) -> Iterator[Path]:
    """Lock ``folder`` for one run; refuse a used folder unless resuming or overwriting.

    Args:
        folder: The run's output folder (created if missing).
        resume: The run continues the work already in the folder.
        overwrite: The user accepts that the run rewrites the folder's files.
        ignore: Names inside the folder that do not count as earlier work
            (e.g. input files the user keeps there).

    Yields:
        The folder, locked; the lock is released when the block ends, also on error.

    Raises:
        RunFolderLockedError: Another live run holds the folder.
        RunFolderError: The folder holds earlier work and neither ``resume`` nor
            ``overwrite`` is set, or it cannot be written.

    """
    folder = Path(folder)
    if os.environ.get("RANK", "0").strip() not in {"", "0"}:  # a DDP worker: rank 0 holds it
        yield folder
        return
    acquire_lock(folder)
    try:
        clean_interrupted_writes(folder)
        existing = _existing_files(folder, ignore)
        if existing and not (resume or overwrite):
            shown = ", ".join(existing[:5]) + (", ..." if len(existing) > 5 else "")
            msg = (
                f"Output folder {folder} already holds files ({shown}); pass --resume to "
                "continue that run, --overwrite to replace it, or choose another folder."
            )
            raise RunFolderError(msg)
        yield folder
    finally:
        release_lock(folder)
