"""An interrupted-and-resumed run equals the uninterrupted run, bit for bit (CPU)."""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING

import albumentations as A  # noqa: N812
import numpy as np
import pytest
import torch
from torch import nn

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.training.data import SegmentationFolderDataset, build_train_transform
from tia_scanner_robust.training.hooks import Hook
from tia_scanner_robust.training.simcons import SimConsHook
from tia_scanner_robust.training.state import capture_rng_state, restore_rng_state
from tia_scanner_robust.training.trainer import Trainer

if TYPE_CHECKING:
    from pathlib import Path


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Net(nn.Module):
    """BatchNorm and dropout: both depend on state the checkpoint must carry."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.Dropout2d(0.2),
            nn.Conv2d(6, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Crash(Hook):
    """Simulates a crash when the given number of steps is done."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_batch_start(self, trainer: Trainer, batch: dict) -> dict:
        if trainer.global_step == self.at_step:
            msg = "simulated crash"
            raise RuntimeError(msg)
        return batch


class Counter(Hook):
    """A hook with state: the number of batches seen (restored on resume)."""

    def __init__(self) -> None:
        self.n = 0

    def on_batch_start(self, trainer: Trainer, batch: dict) -> dict:
        self.n += 1
        return batch

    def state_dict(self) -> dict:
        return {"n": self.n}

    def load_state_dict(self, state: dict) -> None:
        self.n = int(state["n"])


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory, he_tiles: list[np.ndarray]) -> Path:
    root = tmp_path_factory.mktemp("seg")
    for i, tile in enumerate(he_tiles[:8]):
        crop = np.ascontiguousarray(tile[:24, :24])
        atomic_write_image(root / "images" / f"t{i}.png", crop)
        atomic_write_image(root / "masks" / f"t{i}.png", (crop.mean(-1) < 180).astype(np.uint8))
    return root


def make(data_root: Path, out: Path, hooks: list[Hook], model_seed: int = 0) -> Trainer:
    torch.manual_seed(model_seed)
    train = SegmentationFolderDataset(
        data_root, build_train_transform(16, blur_p=0.5, noise_p=0.5), seed=1
    )
    val = SegmentationFolderDataset(data_root)
    config = {
        "epochs": 3,
        "batch_size": 2,
        "lr": 0.01,
        "scheduler": "cosine",
        "checkpoint_every_n_steps": 3,
        "log_every_n_steps": 1,
        "progress": False,
        "output_dir": str(out),
        "seed": 7,
        "device": "cpu",  # the bit-exact guarantee is for the CPU
    }
    hook = SimConsHook(A.ColorJitter(p=1.0), lam=0.3)
    return Trainer(Net(), train, val, config=config, hooks=[hook, Counter(), *hooks])


def assert_same_run(a: Trainer, b: Trainer) -> None:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    oa, ob = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    for key in oa:
        for name in oa[key]:
            assert torch.equal(torch.as_tensor(oa[key][name]), torch.as_tensor(ob[key][name]))
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in a.history]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in b.history]
    assert a.optimizer.param_groups[0]["lr"] == b.optimizer.param_groups[0]["lr"]
    assert a.hooks[1].n == b.hooks[1].n
    assert torch.equal(torch.get_rng_state(), torch.get_rng_state())


def test_resume_mid_epoch_after_crash_is_bit_exact(data_root: Path, tmp_path: Path) -> None:
    reference = make(data_root, tmp_path / "ref", [])
    reference.fit()
    ref_rng = torch.get_rng_state()
    assert reference.global_step == 12

    crashing = make(data_root, tmp_path / "run", [Crash(at_step=7)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.fit()
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert (saved["global_step"], saved["epoch"], saved["batch_in_epoch"]) == (6, 1, 2)

    # A fresh process would rebuild everything, with another initialisation.
    resumed = make(data_root, tmp_path / "run", [], model_seed=123)
    resumed.fit(resume_from=tmp_path / "run" / "last.pt")
    assert_same_run(reference, resumed)
    assert torch.equal(torch.get_rng_state(), ref_rng)
    steps = [
        json.loads(x)["step"] for x in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(1, 13))  # the crashed run's step 7 was dropped and redone
    ref_csv = (tmp_path / "ref" / "metrics.csv").read_text().splitlines()
    run_csv = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(ref_csv) == len(run_csv) == 4


def test_resume_at_epoch_boundary_with_auto(data_root: Path, tmp_path: Path) -> None:
    reference = make(data_root, tmp_path / "ref", [])
    reference.fit()
    first = make(data_root, tmp_path / "run", [])
    result = first.fit(stop_at_step=4)  # the last step of epoch 0, before its validation
    assert result.stopped_early
    assert result.epochs_completed == 0
    resumed = make(data_root, tmp_path / "run", [], model_seed=5)
    resumed.fit(resume_from="auto")
    assert_same_run(reference, resumed)


def test_rng_state_roundtrip_through_weights_only_file(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002
    torch.manual_seed(3)
    np.random.normal()  # noqa: NPY002 - leaves a cached gaussian in the legacy state
    state = capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), np.random.normal(), torch.rand(3))  # noqa: NPY002
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (random.random(), np.random.normal(), torch.rand(3))  # noqa: NPY002
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    assert torch.equal(got[2], expected[2])


def test_resume_rejects_other_files(tmp_path: Path) -> None:
    torch.save({"model": {}}, tmp_path / "weights.pt")
    data = [{"image": np.zeros((4, 4, 3), np.uint8), "mask": np.zeros((4, 4), np.int64)}] * 2
    trainer = Trainer(
        Net(),
        data,
        config={"batch_size": 2, "progress": False, "output_dir": str(tmp_path), "device": "cpu"},
    )
    with pytest.raises(ValueError, match="not a resumable"):
        trainer.load_checkpoint(tmp_path / "weights.pt")
