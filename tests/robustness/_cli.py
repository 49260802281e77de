"""Running the real ``tia-scanner-robust`` group and reading its one-line errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from click.testing import CliRunner, Result

from tia_scanner_robust.cli import main
from tia_scanner_robust.run_folder import LOCK_NAME

if TYPE_CHECKING:
    from pathlib import Path


def invoke(args: list[str]) -> Result:
    """Run ``tia-scanner-robust ARGS`` in-process (no debug traceback)."""
    env = {"TIA_SCANNER_ROBUST_DEBUG": ""}
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def error_line(result: Result) -> str:
    """The one ``Error: ...`` line of a failed command (asserting there is exactly one)."""
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def write_lock(folder: Path, pid: int) -> Path:
    """A lock file in ``folder`` as a run of process ``pid`` on this host writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    record = {"pid": pid, "host": socket.gethostname(), "started": time.time()}
    lock.write_text(json.dumps(record), encoding="utf-8")
    return lock


def dead_pid() -> int:
    """The process id of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def live_process() -> subprocess.Popen:
    """A process that lives until the caller ends it (the owner of a lock)."""
    code = "import time; time.sleep(120)"
    return subprocess.Popen([sys.executable, "-c", code])


def end(process: subprocess.Popen) -> None:
    """End a process started by :func:`live_process`."""
    process.terminate()
    process.wait(timeout=30)


__all__ = ["dead_pid", "end", "error_line", "invoke", "live_process", "write_lock"]
