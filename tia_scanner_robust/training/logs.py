"""The trainer's run logs: ``config.json``/``.yaml``, ``steps.jsonl``, ``metrics.jsonl``/``.csv``.

``config.json`` holds the trainer section; ``config.yaml`` (when the trainer
was built from an experiment config) the full resolved config with the
package versions, which ``tia-scanner-robust train --config RUN/config.yaml``
runs again.

``steps.jsonl`` gets one line every ``log_every_n_steps`` optimiser steps
(appended, line-buffered); ``metrics.jsonl`` and ``metrics.csv`` hold one row
per epoch and are rewritten atomically from the in-memory history, so a
resumed run never shows the epochs or steps of the attempt it replaces.
Only rank 0 writes (``enabled=False`` elsewhere).

Examples:
    >>> import json, pathlib, tempfile
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> logs = RunLogs(out)
    >>> logs.open({"lr": 0.1}, global_step=0, history=[])
    >>> logs.log_step({"epoch": 0, "step": 1, "loss": 0.5})
    >>> logs.write_epochs([{"epoch": 0, "val_loss": 0.25}])
    >>> logs.close()
    >>> json.loads((out / "steps.jsonl").read_text())["loss"]
    0.5
    >>> (out / "metrics.csv").read_text().splitlines()
    ['epoch,val_loss', '0,0.25']

"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml

from tia_scanner_robust._io import atomic_write_json, atomic_write_text, to_jsonable

__all__ = ["RunLogs"]


class RunLogs:
    """Write a training run's logs in ``output_dir`` (nothing when ``enabled`` is false).

    Args:
        output_dir: The run folder.
        enabled: Whether this process writes (rank 0 only under DDP).

    """

    def __init__(self, output_dir: str | Path, *, enabled: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.enabled = enabled
        self._steps_file: Any = None

    def open(
        self,
        config: dict[str, Any],
        *,
        global_step: int,
        history: list[dict],
        run_config: dict[str, Any] | None = None,
    ) -> None:
        """Start (or resume) logging: write the config, trim and reopen ``steps.jsonl``.

        Args:
            config: The trainer config as a plain dict (``config.json``).
            run_config: The full experiment config (``config.yaml``), if any.
            global_step: Steps done so far; step lines after it (left by an
                interrupted attempt) are dropped.
            history: Epoch records so far (``metrics.jsonl``/``metrics.csv``
                are rewritten from them).

        """
        if not self.enabled:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.output_dir / "config.json", config)
        if run_config is not None:
            text = yaml.safe_dump(to_jsonable(run_config, allow_nan=True), sort_keys=False)
            atomic_write_text(self.output_dir / "config.yaml", text)
        steps = self.output_dir / "steps.jsonl"
        kept = []
        if steps.is_file():
            for line in steps.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    rec = json.loads(line)
                    if int(rec.get("step", 0)) <= global_step:
                        kept.append(line)
        atomic_write_text(steps, "".join(f"{line}\n" for line in kept))
        self._steps_file = steps.open("a", buffering=1, encoding="utf-8")
        self.write_epochs(history)

    def close(self) -> None:
        """Close ``steps.jsonl`` (safe to call twice)."""
        if self._steps_file is not None:
            self._steps_file.close()
            self._steps_file = None

    def log_step(self, record: dict[str, Any]) -> None:
        """Append one record to ``steps.jsonl`` (ignored before :meth:`open`)."""
        if self._steps_file is None:
            return
        self._steps_file.write(json.dumps(record) + "\n")

    def write_epochs(self, history: list[dict[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` and ``metrics.csv`` atomically from ``history``."""
        if not self.enabled:
            return
        atomic_write_text(
            self.output_dir / "metrics.jsonl",
            "".join(json.dumps(r) + "\n" for r in history),
        )
        columns: list[str] = []
        for rec in history:
            columns += [k for k in rec if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.output_dir / "metrics.csv", buffer.getvalue())
