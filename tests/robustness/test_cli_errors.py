"""Bad command lines and bad config values: one ``Error:`` line naming the option or field.

Usage errors (a bad option value, a config field) exit with code 2 before any
work starts; data errors exit with code 1. Inputs are written by the tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.robustness._cli import error_line, invoke

if TYPE_CHECKING:
    from pathlib import Path

#: Commands with ``--device``, with the other arguments they need to parse.
DEVICE_COMMANDS = {
    "train": ["train", "--config", "baseline"],
    "train-mil": ["train-mil", "--synthetic", "-o", "{tmp}/run"],
    "demo": ["demo", "-o", "{tmp}/demo"],
    "evaluate": ["evaluate", "--data", "demo", "-o", "{tmp}/eval"],
    "analyze": ["analyze", "--data", "demo", "-o", "{tmp}/analysis"],
    "extract-features": ["extract-features", "--manifest", "{tmp}/m.csv", "--model", "x"],
    "benchmark-fm": ["benchmark-fm", "--synthetic", "-o", "{tmp}/bench"],
}

#: Commands with ``--seed``.
SEED_COMMANDS = {
    **DEVICE_COMMANDS,
    "augment-preview": ["augment-preview", "-o", "{tmp}/p.png"],
    "fit-scanner-profile": ["fit-scanner-profile", "--data", "demo", "-o", "{tmp}/p.yaml"],
    "build-paired demo": ["build-paired", "demo", "-o", "{tmp}/paired"],
    "build-paired simulate": ["build-paired", "simulate", "{tmp}/m.csv", "-o", "{tmp}/s"],
}
SEED_COMMANDS.pop("benchmark-fm")  # --seeds (a list) there


def _args(template: list[str], tmp_path: Path) -> list[str]:
    (tmp_path / "m.csv").write_text("specimen_id,scanner,path\n", encoding="utf-8")
    return [a.replace("{tmp}", str(tmp_path)) for a in template]


@pytest.mark.parametrize("device", ["tpu9", "cuda:x", "gpu", "CPU "])
@pytest.mark.parametrize("command", sorted(DEVICE_COMMANDS))
def test_unknown_device_is_a_usage_error(command: str, device: str, tmp_path: Path) -> None:
    result = invoke([*_args(DEVICE_COMMANDS[command], tmp_path), "--device", device])
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert "--device" in line
    assert "valid: cpu, cuda, cuda:N, mps" in line
    assert not (tmp_path / "run").exists()  # refused before any work


@pytest.mark.parametrize("seed", ["-1", "4294967296", "1.5"])
@pytest.mark.parametrize("command", sorted(SEED_COMMANDS))
def test_seed_means_the_same_everywhere(command: str, seed: str, tmp_path: Path) -> None:
    result = invoke([*_args(SEED_COMMANDS[command], tmp_path), "--seed", seed])
    assert result.exit_code == 2, result.output
    assert "'--seed'" in error_line(result) or "--seed" in error_line(result)


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (["train", "--config", "baseline"], "trainer.lr"),
        (["train-mil", "--synthetic", "-o", "{tmp}/run"], "trainer.lr"),
        (["benchmark-fm", "--synthetic", "-o", "{tmp}/bench"], "trainer.lr"),
    ],
)
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_config_value_names_the_field(
    command: list[str], field: str, value: str, tmp_path: Path
) -> None:
    args = [*_args(command, tmp_path), "--set", f"{field}={value}"]
    result = invoke(args)
    assert result.exit_code == 2, result.output
    line = error_line(result)
    name = field.rpartition(".")[2]
    assert field in line or f"TrainerConfig.{name} must be" in line  # -inf: the range check
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "bench").exists()


def test_nan_inside_a_yaml_config_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "nan.yaml"
    config.write_text("trainer:\n  weight_decay: .nan\n", encoding="utf-8")
    result = invoke(["train", "--config", config])
    assert result.exit_code == 2, result.output
    assert "trainer.weight_decay" in error_line(result)


@pytest.mark.parametrize("command", ["train", "train-mil", "benchmark-fm"])
def test_non_utf8_config_names_the_file(command: str, tmp_path: Path) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes("trainer:\n  lr: 0.001  # café\n".encode("latin-1"))
    args = {
        "train": ["train", "--config", config],
        "train-mil": ["train-mil", "--config", config, "--synthetic", "-o", tmp_path / "r"],
        "benchmark-fm": ["benchmark-fm", "--config", config, "--synthetic", "-o", tmp_path / "b"],
    }[command]
    result = invoke(args)
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert "--config" in line
    assert str(config) in line
    assert "UTF-8" in line


@pytest.mark.parametrize("suffix", [".html", ".pdf", ".svg", ""])
def test_augment_preview_refuses_an_unsupported_extension(suffix: str, tmp_path: Path) -> None:
    out = tmp_path / f"grid{suffix}"
    result = invoke(["augment-preview", "-o", out])
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert "--output" in line
    assert str(out) in line
    assert ".png" in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.mkdir(), "is not a feature store"),  # an empty folder
        (lambda p: (p.mkdir(), (p / "x.txt").write_text("x")), "is not a feature store"),
        (lambda p: (p.mkdir(), (p / "zarr.json").write_bytes(b"\xff\xfe{")), "is not a feature"),
    ],
    ids=["empty-folder", "plain-folder", "broken-metadata"],
)
def test_train_mil_refuses_a_folder_that_is_not_a_feature_store(
    make: object, expected: str, tmp_path: Path
) -> None:
    store = tmp_path / "store.zarr"
    make(store)  # type: ignore[operator]
    result = invoke(["train-mil", "--store", store, "-o", tmp_path / "run"])
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert "--store" in line
    assert str(store) in line
    assert expected in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--set", "model.aggregator=nope"], "aggregator"),
        (["--set", "scangen.lam=-1"], "lam"),
        (["--set", "trainer.batch_size=zero"], "batch_size"),
        (["--set", "nosection.key=1"], "nosection"),
        (["--config", "{tmp}/missing.yaml"], "missing.yaml"),
        (["--set", "trainer.device=tpu9"], "trainer.device"),
        (["--set", "data.store={tmp}"], "data.store"),
    ],
)
def test_train_mil_config_errors_are_one_line(
    extra: list[str], expected: str, tmp_path: Path
) -> None:
    args = ["train-mil", "-o", tmp_path / "run", *_args(extra, tmp_path)]
    if "data.store" not in expected:
        args.append("--synthetic")
    result = invoke(args)
    assert result.exit_code == 2, result.output
    assert expected in error_line(result)
    assert not (tmp_path / "run").exists()


def test_train_mil_compare_without_scangen_is_refused_before_work(tmp_path: Path) -> None:
    args = ["train-mil", "--config", "mil_baseline", "--synthetic", "--compare"]
    result = invoke([*args, "-o", tmp_path / "run"])
    assert result.exit_code == 2, result.output
    assert "--compare" in error_line(result)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--config", "baseline", "-o", "/proc/tia_scanner_robust_run"],
        ["train-mil", "--synthetic", "-o", "/proc/tia_scanner_robust_run"],
        ["evaluate", "--data", "demo", "-o", "/proc/tia_scanner_robust_run"],
        ["demo", "-o", "/proc/tia_scanner_robust_run"],
    ],
    ids=lambda c: c[0],
)
def test_output_folder_that_cannot_be_written(command: list[str]) -> None:
    result = invoke(command)
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert "Cannot write to output folder /proc/tia_scanner_robust_run" in line


@pytest.mark.parametrize("seeds", ["a", "0,x", "-1", "1,4294967296"])
@pytest.mark.parametrize("command", ["train-mil", "benchmark-fm"])
def test_bad_seed_lists_are_refused_before_work(command: str, seeds: str, tmp_path: Path) -> None:
    args = [command, "--synthetic", "-o", tmp_path / "run", "--seeds", seeds]
    result = invoke([*args, "--compare"] if command == "train-mil" else args)
    assert result.exit_code == 2, result.output
    assert "--seeds" in error_line(result)
    assert not (tmp_path / "run").exists()


def test_augment_preview_into_an_unwritable_folder() -> None:
    result = invoke(["augment-preview", "-o", "/proc/tia_scanner_robust/grid.png"])
    assert result.exit_code == 1, result.output
    assert "Cannot write to output folder /proc/tia_scanner_robust" in error_line(result)
