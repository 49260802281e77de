"""Hook registry, entry-point discovery and the SimCons hook's maths."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING

import albumentations as A  # noqa: N812
import numpy as np
import pytest
import torch
from torch import nn

from tia_scanner_robust.losses.functional import segmentation_loss
from tia_scanner_robust.losses.simcons import SimConsLoss
from tia_scanner_robust.training import hooks as hooks_module
from tia_scanner_robust.training.hooks import (
    ENTRY_POINT_GROUP,
    HOOK_REGISTRY,
    Hook,
    available_hooks,
    create_hook,
    hook_state_keys,
    register_hook,
)
from tia_scanner_robust.training.simcons import SimConsHook, metadata_keys
from tia_scanner_robust.training.trainer import Trainer

if TYPE_CHECKING:
    from pathlib import Path


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ThirdPartyHook(Hook):
    """Loaded through a (monkeypatched) entry point."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale


class NotAHook:
    pass


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [
        EntryPoint("third_party", f"{__name__}:ThirdPartyHook", ENTRY_POINT_GROUP),
        EntryPoint("broken", f"{__name__}:NotAHook", ENTRY_POINT_GROUP),
    ]

    def entry_points(*, group: str) -> list[EntryPoint]:
        return [ep for ep in eps if ep.group == group]

    monkeypatch.setattr(hooks_module, "entry_points", entry_points)


def test_registry_and_errors() -> None:
    hook = create_hook("simcons", style_augmentation=lambda x: x, lam=0.5)
    assert isinstance(hook, SimConsHook)
    assert hook.lam == 0.5
    assert HOOK_REGISTRY["simcons"] is SimConsHook
    assert "simcons" in available_hooks()
    with pytest.raises(KeyError, match=r"Unknown hook 'nope'; valid names: .*simcons"):
        create_hook("nope")
    with pytest.raises(TypeError, match="Hook subclass"):
        register_hook("not_a_hook")(NotAHook)
    with pytest.raises(ValueError, match="already registered"):

        @register_hook("simcons")
        class Other(Hook):
            pass

    with pytest.raises(ValueError, match="non-empty"):
        register_hook("")
    assert hook_state_keys([hook, Hook(), SimConsHook(lambda x: x)]) == [
        "simcons",
        "Hook",
        "simcons#1",
    ]


def test_entry_point_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch)
    assert {"third_party", "broken", "simcons"} <= set(available_hooks())
    hook = create_hook("third_party", scale=2.0)
    assert isinstance(hook, ThirdPartyHook)
    assert hook.scale == 2.0
    with pytest.raises(TypeError, match="not a tia_scanner_robust Hook"):
        create_hook("broken")
    with pytest.raises(KeyError, match="third_party"):
        create_hook("missing")


def test_base_hook_is_a_no_op() -> None:
    hook = Hook()
    batch = {"image": torch.zeros(1)}
    losses = {"supervised": torch.tensor(1.0)}
    assert hook.on_batch_start(None, batch) is batch
    assert hook.on_loss(None, batch, None, losses) is losses
    assert hook.on_validation_end(None, {"a": 1.0}) == {"a": 1.0}
    assert hook.state_dict() == {}


def make_trainer(tmp_path: Path, hook: Hook, batch_size: int = 3) -> Trainer:
    data = [{"image": np.zeros((8, 8, 3), np.uint8), "mask": np.zeros((8, 8), np.int64)}] * 3
    return Trainer(
        Net(),
        data,
        config={
            "batch_size": batch_size,
            "progress": False,
            "output_dir": str(tmp_path),
            "device": "cpu",
        },
        hooks=[hook],
    )


def fixed_batch(tiles: list[np.ndarray], n: int = 3, size: int = 16) -> dict:
    images = np.stack([t[:size, :size] for t in tiles[:n]])
    masks = (images.mean(-1) < 180).astype(np.int64)
    return {"image": torch.from_numpy(images), "mask": torch.from_numpy(masks)}


@pytest.mark.parametrize("supervise", ["first", "both"])
def test_simcons_total_equals_supervised_plus_lambda_consistency(
    tmp_path: Path, he_tiles: list[np.ndarray], supervise: str
) -> None:
    torch.manual_seed(0)
    lam = 0.4
    hook = SimConsHook(A.ColorJitter(p=1.0), lam=lam, supervise=supervise)
    trainer = make_trainer(tmp_path, hook)
    trainer.global_step = 5
    batch = fixed_batch(he_tiles)
    total, losses = trainer.compute_losses(dict(batch))
    assert set(losses) == {"supervised", "consistency"}
    # Reference: the same augmented view (deterministic in (seed, step, rank)), one forward.
    images = batch["image"].numpy()
    augmented = hook.augment_batch(images, hook._step_seed(trainer))
    assert not np.array_equal(augmented, images)
    both = torch.from_numpy(np.concatenate([images, augmented]))
    out = trainer.model(trainer.prepare_inputs({"image": both}))
    b = images.shape[0]
    if supervise == "first":
        sup = segmentation_loss(out[:b], batch["mask"])
    else:
        sup = segmentation_loss(out, torch.cat([batch["mask"], batch["mask"]]))
    cons = SimConsLoss()(out[:b], out[b:])
    torch.testing.assert_close(losses["supervised"], sup)
    torch.testing.assert_close(losses["consistency"], lam * cons)
    torch.testing.assert_close(total, sup + lam * cons)
    assert trainer._step_scalars["consistency_unweighted"] == pytest.approx(cons.item(), rel=1e-5)


def test_simcons_batch_building_and_determinism(he_tiles: list[np.ndarray]) -> None:
    hook = SimConsHook(A.ColorJitter(p=1.0), supervise="first")

    class FakeTrainer:
        class config:  # noqa: N801
            seed = 3
            image_key = "image"
            task = "segmentation"

        global_step = 0
        rank = 0

    trainer = FakeTrainer()
    batch = fixed_batch(he_tiles, n=2)
    batch["path"] = ["a.png", "b.png"]
    batch["index"] = torch.tensor([4, 9])
    out = hook.on_batch_start(trainer, batch)
    assert out["image"].shape == (4, 16, 16, 3)
    assert torch.equal(out["image"][:2], batch["image"])
    assert torch.equal(out["mask"][2:], batch["mask"])
    assert out["path"] == ["a.png", "b.png", "a.png", "b.png"]
    assert out["index"].tolist() == [4, 9, 4, 9]
    assert out["supervised_mask"].tolist() == [True, True, False, False]
    again = hook.on_batch_start(trainer, batch)
    assert torch.equal(again["image"], out["image"])  # same step -> same views
    trainer.global_step = 1
    other = hook.on_batch_start(trainer, batch)
    assert not torch.equal(other["image"][2:], out["image"][2:])


def test_simcons_passes_other_batch_images_as_fda_references(he_tiles: list[np.ndarray]) -> None:
    seen: list[tuple[int, int]] = []

    class RecordingFDA:
        metadata_key = "fda_reference"

        def set_random_state(self, random_generator: object, py_random: object) -> None:
            pass

        def __call__(self, *, image: np.ndarray, **kwargs: list[np.ndarray]) -> dict:
            ref = kwargs[self.metadata_key][0]
            seen.append((int(image[0, 0, 0]), int(ref[0, 0, 0])))
            return {"image": image}

    hook = SimConsHook(RecordingFDA(), lam=0.3)
    images = np.stack([np.full((4, 4, 3), v, np.uint8) for v in (10, 20, 30, 40)])
    hook.augment_batch(images, seed=0)
    assert [s[0] for s in seen] == [10, 20, 30, 40]
    assert all(own != ref for own, ref in seen)  # never the image itself
    assert metadata_keys(A.Compose([A.ColorJitter(), A.FDA(metadata_key="fda_reference")])) == [
        "fda_reference"
    ]
    # Real albumentations FDA through the same path: same shape/dtype, changed pixels.
    fda = SimConsHook(A.FDA(metadata_key="fda_reference", p=1.0, beta_limit=(0.05, 0.1)))
    tiles = np.stack([t[:32, :32] for t in he_tiles[:3]])
    out = fda.augment_batch(tiles, seed=1)
    assert out.shape == tiles.shape
    assert out.dtype == np.uint8
    assert not np.array_equal(out, tiles)


def test_simcons_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="supervise"):
        SimConsHook(lambda x: x, supervise="second")
    with pytest.raises(ValueError, match="lam"):
        SimConsHook(lambda x: x, lam=-1)
    with pytest.raises(ValueError, match="denominator"):
        SimConsHook(lambda x: x, denominator="cubic")
    with pytest.raises(TypeError, match="preset name or a callable"):
        SimConsHook(42)
    hook = SimConsHook(lambda x: x)
    with pytest.raises(TypeError, match="uint8 RGB"):
        hook.on_batch_start(None, {"image": torch.zeros(2, 3, 4, 4)})
    resize = SimConsHook(lambda x: x[:2])
    with pytest.raises(ValueError, match="photometric"):
        resize.on_batch_start(None, {"image": torch.zeros(2, 4, 4, 3, dtype=torch.uint8)})
    with pytest.raises(ValueError, match="not built by SimConsHook"):
        hook.on_loss(None, {}, torch.zeros(2, 2, 4, 4), {})


def test_simcons_preset_name() -> None:
    pytest.importorskip("tia_scanner_robust.augmentations.presets")
    hook = SimConsHook("colorjitter")
    image = np.stack([np.full((8, 8, 3), 150, np.uint8)] * 2)
    out = hook.augment_batch(image, seed=0)
    assert out.shape == image.shape
    assert not np.array_equal(out, image)


def test_simcons_classification_mode(tmp_path: Path) -> None:
    class Clf(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.mean(dim=(2, 3)))

    data = [{"image": np.full((4, 4, 3), i * 40, np.uint8), "label": i % 2} for i in range(4)]
    hook = SimConsHook(lambda x: 255 - x, lam=1.0)
    trainer = Trainer(
        Clf(),
        data,
        data,
        config={
            "batch_size": 2,
            "task": "classification",
            "monitor": "val_accuracy",
            "progress": False,
            "output_dir": str(tmp_path),
            "epochs": 1,
            "device": "cpu",
        },
        hooks=[hook],
    )
    batch = {
        "image": torch.from_numpy(np.stack([d["image"] for d in data[:2]])),
        "label": torch.tensor([0, 1]),
    }
    _total, losses = trainer.compute_losses(batch)
    assert hook.loss.mode == "classification"
    out = trainer.model(
        trainer.prepare_inputs({"image": torch.cat([batch["image"], 255 - batch["image"]])})
    )
    expected = SimConsLoss(mode="classification")(out[:2], out[2:])
    torch.testing.assert_close(losses["consistency"], expected)
    result = trainer.fit()
    assert "val_accuracy" in result.history[0]
