"""examples/04_cross_scanner.py on generated data: folds, caching, table and trivial row."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from tiatoolbox.data import stain_norm_target

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.engines.unpaired import group_by_scanner, read_unpaired_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "04_cross_scanner.py"


def load_script():
    spec = importlib.util.spec_from_file_location("example_04_cross_scanner", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_dataset(root: Path) -> dict[str, list[np.ndarray]]:
    """Two 'scanners' (the second colour-shifted), 3 tiles each, masks from darkness."""
    he = stain_norm_target()
    masks: dict[str, list[np.ndarray]] = {}
    for s, (scanner, shift) in enumerate((("A", 0), ("B", 40))):
        for k in range(3):
            y, x = 60 * k + 200 * s, 50 * k
            tile = he[y : y + 40 + 4 * k, x : x + 44].astype(np.int16)
            tile = np.clip(tile + np.array([shift, -shift // 2, 0]), 0, 255).astype(np.uint8)
            mask = (tile.mean(axis=2) < np.median(tile.mean(axis=2))).astype(np.uint8)
            atomic_write_image(root / scanner / "images" / f"t{k}.png", tile)
            atomic_write_image(root / scanner / "masks" / f"t{k}.png", mask)
            masks.setdefault(scanner, []).append(mask)
    return masks


def all_tumour_dice(masks: list[np.ndarray]) -> float:
    """Tumour Dice of predicting tumour everywhere (masks are non-empty here)."""
    return float(np.mean([2 * m.sum() / (m.sum() + m.size) for m in masks]))


def test_cross_scanner_smoke(tmp_path):
    module = load_script()
    masks = make_dataset(tmp_path / "data")
    argv = [
        "--data-dir", str(tmp_path / "data"),
        "--out-dir", str(tmp_path / "out"),
        "--variants", "baseline", "fda_simcons",
        "--seeds", "0",
        "--steps", "2",
        "--batch-size", "2",
        "--crop-size", "32",
        "--downsample", "1",
        "--encoder-depth", "3",
        "--val-every", "1",
        "--n-val", "1",
        "--lr", "1e-3",
    ]  # fmt: skip
    module.main(module.parse_args(argv))
    out = json.loads((tmp_path / "out" / "results.json").read_text())
    assert out["settings"]["held_out"] == ["A", "B"]
    runs = out["runs"]
    assert {(r["config"], r["held_out"]) for r in runs} == {
        (c, h) for c in ("baseline", "fda_simcons") for h in ("A", "B")
    }
    assert all(0.0 <= r["dice"] <= 1.0 and r["global_step"] == 2 for r in runs)
    assert not any(r["reused"] for r in runs)
    # the trivial row is the all-tumour Dice of the held-out scanner's own masks
    for scanner in ("A", "B"):
        got = out["trivial"][scanner]["all_foreground"]
        assert got == pytest.approx(all_tumour_dice(masks[scanner]), abs=1e-6)
    rows = {r["label"]: r for r in out["table"]}
    base = [r["dice"] for r in runs if r["config"] == "baseline"]
    assert rows["Baseline"]["dice_mean_mean"] == pytest.approx(np.mean(base))
    assert rows["Baseline"]["dice_min_mean"] == pytest.approx(np.min(base))
    text = (tmp_path / "out" / "results.md").read_text()
    assert "trivial: all tumour" in text
    assert "FDA + SimCons" in text
    assert (tmp_path / "out" / "cross_scanner_dice.png").is_file()
    overlays = list((tmp_path / "out" / "eval").rglob("unpaired_examples.png"))
    assert len(overlays) == 2  # baseline, seed 0, one per fold
    # a second invocation trains nothing and gives the same numbers
    module.main(module.parse_args(argv))
    again = json.loads((tmp_path / "out" / "results.json").read_text())
    assert all(r["reused"] for r in again["runs"])
    assert [r["dice"] for r in again["runs"]] == [r["dice"] for r in runs]


def test_split_keeps_held_out_scanner_out(tmp_path):
    module = load_script()
    make_dataset(tmp_path / "data")
    manifest = module.write_folder_manifest(tmp_path / "data", tmp_path / "m.csv")
    groups = group_by_scanner(read_unpaired_manifest(manifest))
    train, val = module.split_training_scanners(groups, "A", n_val=1, split_seed=0)
    assert {s.scanner for s in train + val} == {"B"}
    assert (len(train), len(val)) == (2, 1)
    (tmp_path / "data" / "B" / "masks" / "t1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"no mask for t1\.png"):
        module.write_folder_manifest(tmp_path / "data", tmp_path / "m2.csv")
