"""Output folders: a lock per run, no silent overwrite, no debris, reusable copies.

Two runs into one folder: the second is refused naming the owner; a lock left
by a dead process is reported and taken over; a folder holding an earlier
run is refused without ``--resume``/``--overwrite``; temporary files of
interrupted writes are removed at start; a copied demo folder is reused.
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

import pytest

from tests.robustness._cli import dead_pid, end, error_line, invoke, live_process, write_lock
from tia_scanner_robust.run_folder import LOCK_NAME

if TYPE_CHECKING:
    from pathlib import Path

#: Commands writing a run folder, with the arguments they need. Each fails
#: fast after taking the folder (the baseline config's data folders do not
#: exist here; --data names a missing folder), so no test trains anything.
RUN_COMMANDS = {
    "train": ["train", "--config", "baseline", "-o", "{out}"],
    "train-mil": ["train-mil", "--store", "{tmp}/missing.zarr", "-o", "{out}"],
    "evaluate": ["evaluate", "--data", "{tmp}/missing", "-o", "{out}"],
    "analyze": ["analyze", "--data", "{tmp}/missing", "-o", "{out}"],
    "demo": ["demo", "--simcons-config", "fda_simcons", "-o", "{out}"],
    "benchmark-fm": ["benchmark-fm", "--synthetic", "--models", "nope", "-o", "{out}"],
}


def _args(command: str, tmp_path: Path, out: Path) -> list[str]:
    return [
        a.replace("{out}", str(out)).replace("{tmp}", str(tmp_path)) for a in RUN_COMMANDS[command]
    ]


@pytest.mark.parametrize("command", sorted(RUN_COMMANDS))
def test_second_run_into_a_locked_folder_is_refused(command: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    owner = live_process()
    try:
        lock = write_lock(out, owner.pid)
        if command == "train-mil":  # a store that exists, so the run gets to the folder
            shutil.copytree(_tiny_store(tmp_path), tmp_path / "missing.zarr")
        result = invoke(_args(command, tmp_path, out))
        assert result.exit_code == 1, result.output
        line = error_line(result)
        assert f"Output folder {out} is in use by another run" in line
        assert f"process {owner.pid}" in line
        assert lock.is_file()  # the owner's lock is left alone
    finally:
        end(owner)


def _tiny_store(tmp_path: Path) -> Path:
    from tia_scanner_robust.data.feature_store import FeatureStore  # noqa: PLC0415

    path = tmp_path / "tiny.zarr"
    if not path.exists():
        FeatureStore(path, mode="w")
    return path


@pytest.mark.parametrize("command", ["train", "evaluate", "analyze"])
def test_stale_lock_is_reported_and_taken_over(command: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    pid = dead_pid()
    write_lock(out, pid)
    with pytest.warns(UserWarning, match=rf"stale lock in .*process {pid} .* no longer runs"):
        result = invoke(_args(command, tmp_path, out))
    # the run went on past the folder (and failed later, on the missing data)
    assert "in use by another run" not in result.output
    assert result.exit_code in {1, 2}, result.output
    assert not (out / LOCK_NAME).exists()  # released at the end


@pytest.mark.parametrize("command", ["train", "train-mil", "evaluate", "analyze", "benchmark-fm"])
def test_folder_holding_an_earlier_run_is_refused(command: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"earlier weights")
    (out / "metrics.csv").write_text("epoch,val_dice\n0,0.9\n", encoding="utf-8")
    if command == "train-mil":
        shutil.copytree(_tiny_store(tmp_path), tmp_path / "missing.zarr")
    result = invoke(_args(command, tmp_path, out))
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert f"Output folder {out} already holds files (last.pt, metrics.csv)" in line
    assert "--overwrite" in line
    assert (out / "last.pt").read_bytes() == b"earlier weights"
    assert not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
@pytest.mark.parametrize("command", ["train", "train-mil", "benchmark-fm"])
def test_resume_or_overwrite_accepts_the_folder(command: str, flag: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"earlier weights")
    if command == "train-mil":
        shutil.copytree(_tiny_store(tmp_path), tmp_path / "missing.zarr")
    args = _args(command, tmp_path, out)
    args += ["--resume", "auto"] if (command, flag) == ("train", "--resume") else [flag]
    result = invoke(args)
    assert "already holds files" not in result.output
    assert (out / "last.pt").read_bytes() == b"earlier weights"  # nothing deleted up front


def test_overwrite_is_accepted_by_evaluate(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "report.json").write_text("{}", encoding="utf-8")
    result = invoke([*_args("evaluate", tmp_path, out), "--overwrite"])
    assert result.exit_code == 1
    assert "no such file or folder" in error_line(result)  # got past the folder


def test_evaluate_reuses_its_demo_data_folder(tmp_path: Path) -> None:
    """``demo_data/`` (built by ``--data demo``) is an input cache, not an earlier result."""
    out = tmp_path / "run"
    (out / "demo_data").mkdir(parents=True)
    result = invoke(_args("evaluate", tmp_path, out))
    assert "already holds files" not in result.output


@pytest.mark.parametrize("command", ["train", "train-mil"])
def test_interrupted_writes_are_removed_at_start(command: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    debris = [out / ".last.pt.k2j3h4.tmp", out / ".metrics.csv.x1y2.tmp"]
    for path in debris:
        path.write_bytes(b"half a checkpoint")
    (out / "last.pt").write_bytes(b"weights")
    if command == "train-mil":
        shutil.copytree(_tiny_store(tmp_path), tmp_path / "missing.zarr")
    args = _args(command, tmp_path, out)
    invoke([*args, "--resume", "auto"] if command == "train" else [*args, "--resume"])
    assert not any(path.exists() for path in debris)
    assert (out / "last.pt").read_bytes() == b"weights"


def test_train_variant_keeps_a_finished_run_of_another_config(tmp_path: Path) -> None:
    """A finished run is never deleted implicitly (it was retrained from scratch before)."""
    from tia_scanner_robust.demo.variants import train_variant  # noqa: PLC0415
    from tia_scanner_robust.training.configs import load_experiment_config  # noqa: PLC0415

    folder = tmp_path / "runs" / "baseline-seed0-steps200"
    config = load_experiment_config("baseline", overrides={"trainer": {"output_dir": str(folder)}})
    older = config.to_dict()
    older["trainer"]["lr"] = 0.5
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(b"finished weights")
    marker = {"checkpoint": "best.pt", "global_step": 200, "config": older}
    (folder / "done.json").write_text(json.dumps(marker), encoding="utf-8")
    with pytest.raises(ValueError, match=r"finished run of another config \(trainer.lr: 0.5"):
        train_variant(config)
    assert (folder / "best.pt").read_bytes() == b"finished weights"
    assert (folder / "done.json").is_file()


def test_train_variant_reuses_a_moved_run(tmp_path: Path) -> None:
    """The cache key holds no location: a run folder moved with its data is reused."""
    from tia_scanner_robust.demo.variants import train_variant  # noqa: PLC0415
    from tia_scanner_robust.training.configs import load_experiment_config  # noqa: PLC0415

    def config_in(root: Path, *, progress: bool) -> object:
        trainer = {"output_dir": str(root / "runs" / "x"), "progress": progress}
        data = {"train_dir": str(root / "data" / "train"), "val_dir": str(root / "data" / "val")}
        return load_experiment_config("baseline", overrides={"trainer": trainer, "data": data})

    first = tmp_path / "first"
    folder = first / "runs" / "x"
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(b"finished weights")
    marker = {"checkpoint": "best.pt", "global_step": 3, "config": config_in(first, progress=True)}
    marker["config"] = marker["config"].to_dict()  # type: ignore[attr-defined]
    (folder / "done.json").write_text(json.dumps(marker), encoding="utf-8")
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    trained = train_variant(config_in(copy, progress=False))  # type: ignore[arg-type]
    assert trained.reused
    assert trained.checkpoint == copy / "runs" / "x" / "best.pt"


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_demo_in_a_copied_output_folder_reuses_its_results(tmp_path: Path) -> None:
    """Re-running ``demo`` in a copy deleted ``best.pt`` and retrained (the key held the path)."""
    args = ["--quick", "--steps", "2", "--batch-size", "2", "--no-progress"]
    first = invoke(["demo", "-o", tmp_path / "first", *args])
    assert first.exit_code == 0, first.output
    shutil.copytree(tmp_path / "first", tmp_path / "copy")
    runs = sorted((tmp_path / "copy" / "runs").glob("*/best.pt"))
    assert len(runs) == 2
    before = {path: path.read_bytes() for path in runs}
    again = invoke(
        ["demo", "-o", tmp_path / "copy", "--quick", "--steps", "2", "--batch-size", "2"]
    )
    assert again.exit_code == 0, again.output
    assert again.output.count("trained (reused)") == 2
    assert {path: path.read_bytes() for path in runs} == before
    # other options for the same runs: refused, the finished models kept
    other = invoke(["demo", "-o", tmp_path / "copy", *args[:3], "--batch-size", "3"])
    assert other.exit_code == 1, other.output
    assert "holds a finished run of another config (trainer.batch_size: 2 -> 3" in error_line(other)
    assert {path: path.read_bytes() for path in runs} == before
