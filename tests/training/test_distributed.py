"""DDP with 2 CPU processes (gloo): identical weights on both ranks, equal to 1 process x 2B."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F  # noqa: N812
from torch import nn

from tia_scanner_robust.training.trainer import Trainer

N_ITEMS = 10  # 5 per rank; validation shards are uneven (5 / 5) but never padded


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Items(torch.utils.data.Dataset):
    """Deterministic synthetic items (the same on every rank)."""

    def __len__(self) -> int:
        return N_ITEMS

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng(i)
        image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        return {"image": image, "mask": (image[..., 0] > 127).astype(np.int64)}


def ce_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # A per-pixel mean: the DDP gradient average equals the 2B-batch gradient.
    return F.cross_entropy(outputs, targets)


def run(out: Path, batch_size: int) -> Trainer:
    torch.manual_seed(0)
    config = {
        "epochs": 2,
        "batch_size": batch_size,
        "optimizer": "sgd",
        "lr": 0.5,
        "progress": False,
        "output_dir": str(out),
        "seed": 3,
        "device": "cpu",  # gloo; NCCL would need one GPU per rank
    }
    trainer = Trainer(Net(), Items(), Items(), config=config, loss_fn=ce_loss)
    trainer.fit()
    return trainer


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
        }
    )
    trainer = run(Path(out) / "run", batch_size=2)
    assert trainer.world_size == world
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    torch.save({"state": state, "history": trainer.history}, Path(out) / f"rank{rank}.pt")
    trainer.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def one_thread() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.timeout(120)
def test_ddp_two_cpu_ranks_match_single_process(tmp_path: Path, one_thread: None) -> None:
    # fork (Linux) reuses the parent's imports: seconds instead of the ~40 s that spawn or
    # forkserver spend re-importing torch on a busy 2-core machine. The parent runs with one
    # intra-op thread (fixture) and so do the workers, as in DataLoader's forked workers.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(
        _worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method=method
    )
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), key
    # Rank 0 alone wrote the logs and checkpoints, and both ranks saw the same reduced metrics.
    run_dir = tmp_path / "run"
    assert (run_dir / "last.pt").is_file()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    strip = [
        [{k: v for k, v in rec.items() if k != "time_s"} for rec in r["history"]] for r in (r0, r1)
    ]
    assert strip[0] == strip[1]

    # Expected behaviour: 2 ranks x batch 2 == 1 process x batch 4 (same samples per step).
    single = run(tmp_path / "single", batch_size=4)
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(r0["state"][key], value, rtol=1e-5, atol=1e-6)
    for dist_rec, single_rec in zip(r0["history"], single.history, strict=True):
        assert dist_rec["step"] == single_rec["step"] == 2 * (dist_rec["epoch"] + 1)
        assert dist_rec["val_dice"] == pytest.approx(single_rec["val_dice"], abs=1e-6)
        assert dist_rec["train_loss"] == pytest.approx(single_rec["train_loss"], rel=1e-5)
