"""One spelling per option: ``-o/--output-dir`` for folders, old spellings hidden aliases.

Every old spelling still works for one release (with a deprecation note) and
is absent from ``--help``; giving both spellings with different values is a
usage error naming both.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests.robustness._cli import end, error_line, invoke, live_process, write_lock

if TYPE_CHECKING:
    from pathlib import Path

#: (command words, old spelling): commands that take the folder's lock, so
#: that a run given the folder through the old spelling is refused by a lock
#: on that very folder -- proof that the alias reached the command.
LOCKED_ALIASES = [
    (["demo", "--simcons-config", "fda_simcons"], "--out-dir"),
    (["evaluate", "--data", "demo"], "--out-dir"),
    (["analyze", "--data", "demo"], "--out-dir"),
]

#: Every output-folder command: its words and the hidden old spellings.
OUTPUT_DIR_COMMANDS = [
    (["train"], []),
    (["train-mil"], []),
    (["benchmark-fm"], []),
    (["demo"], ["--out-dir"]),
    (["evaluate"], ["--out-dir"]),
    (["analyze"], ["--out-dir"]),
    (["extract-features"], ["--output"]),
    (["build-paired", "wsis"], []),
    (["build-paired", "simulate"], ["--out-dir"]),
    (["build-paired", "demo"], []),
]


@pytest.mark.parametrize(("words", "old"), OUTPUT_DIR_COMMANDS, ids=" ".join)
def test_output_folder_is_spelled_o_output_dir(words: list[str], old: list[str]) -> None:
    result = invoke([*words, "--help"])
    assert result.exit_code == 0, result.output
    assert re.search(r"-o, --output-dir (DIRECTORY|PATH)", result.output), result.output
    for spelling in old:
        assert spelling not in result.output.replace("--output-dir", "")
    assert "OUT_DIR" not in result.output.splitlines()[0]  # no positional in the usage line


@pytest.mark.parametrize(("words", "old"), LOCKED_ALIASES, ids=lambda v: v[0] if v else "")
def test_old_output_spelling_still_works(words: list[str], old: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    owner = live_process()
    try:
        write_lock(out, owner.pid)
        result = invoke([*words, old, out])
        assert result.exit_code == 1, result.output
        assert f"Note: '{old}' is deprecated; use '-o' / '--output-dir'." in result.output
        assert f"Output folder {out} is in use" in error_line(result)
    finally:
        end(owner)


@pytest.mark.parametrize(("words", "old"), LOCKED_ALIASES, ids=lambda v: v[0] if v else "")
def test_both_spellings_with_different_folders_is_a_usage_error(
    words: list[str], old: str, tmp_path: Path
) -> None:
    result = invoke([*words, "-o", tmp_path / "a", old, tmp_path / "b"])
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert "'-o' / '--output-dir'" in line
    assert old in line


@pytest.mark.parametrize("words", [["evaluate", "--data", "demo"], ["analyze", "--data", "demo"]])
def test_missing_output_folder_names_the_option(words: list[str]) -> None:
    result = invoke(words)
    assert result.exit_code == 2, result.output
    assert "Missing option '-o' / '--output-dir'" in error_line(result)


def test_build_paired_demo_takes_o_and_the_old_positional(tmp_path: Path) -> None:
    args = ["--tile-size", "64", "--n-tiles", "2"]
    new = invoke(["build-paired", "demo", "-o", tmp_path / "new", *args])
    assert new.exit_code == 0, new.output
    old = invoke(["build-paired", "demo", tmp_path / "old", *args])
    assert old.exit_code == 0, old.output
    assert "Note: the positional OUT_DIR is deprecated" in old.output
    for folder in ("new", "old"):
        assert (tmp_path / folder / "manifest.csv").is_file()


def test_extract_features_old_output_spelling(tmp_path: Path, monkeypatch) -> None:
    import tia_scanner_robust.data.manifest as manifest_module  # noqa: PLC0415
    import tia_scanner_robust.features.extract as extract_module  # noqa: PLC0415

    seen = {}
    monkeypatch.setattr(manifest_module, "read_manifest", lambda *_a, **_k: "collection")

    def fake_extract(collection: object, output: Path, *_a: object, **_k: object) -> dict:
        seen["output"] = output
        return {"written": 0}

    monkeypatch.setattr(extract_module, "extract_features", fake_extract)
    manifest = tmp_path / "m.csv"
    manifest.write_text("specimen_id,scanner,path\n", encoding="utf-8")
    base = ["extract-features", "--manifest", manifest, "--model", "resnet18"]
    for spelling in ("-o", "--output-dir", "--output"):
        result = invoke([*base, spelling, tmp_path / spelling.strip("-")])
        assert result.exit_code == 0, result.output
        assert seen["output"] == tmp_path / spelling.strip("-")


@pytest.mark.parametrize("spelling", ["--no-progress", "--quiet"])
def test_fit_randstainna_no_progress_and_its_old_spelling(spelling: str, tmp_path: Path) -> None:
    from tests.robustness._corpus import rgb_tile  # noqa: PLC0415

    for i in range(3):
        rgb_tile(tmp_path / "images" / f"t{i}.png", seed=i)
    out = tmp_path / "t.yaml"
    result = invoke(["fit-randstainna", tmp_path / "images", "-o", out, spelling])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert "--quiet" not in invoke(["fit-randstainna", "--help"]).output


@pytest.mark.parametrize(
    "words",
    [["train"], ["train-mil"], ["demo"], ["evaluate"], ["analyze"], ["benchmark-fm"]],
    ids=lambda w: w[0],
)
def test_overwrite_and_no_progress_are_offered_by_every_run_command(words: list[str]) -> None:
    text = invoke([*words, "--help"]).output
    assert "--overwrite" in text
    assert "nothing else is deleted" in " ".join(text.split())
    if words[0] != "benchmark-fm":
        assert "--no-progress" in text
