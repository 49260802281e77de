"""SimCons hook: the second view is styled on the training device when a batched version exists."""

from __future__ import annotations

import albumentations as A  # noqa: N812
import numpy as np
import pytest
import torch

from tia_scanner_robust.augmentations import style_augmentation
from tia_scanner_robust.augmentations.batched import BatchStyleAugment
from tia_scanner_robust.training.simcons import SimConsHook

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FakeTrainer:
    class config:  # noqa: N801
        seed = 3
        image_key = "image"
        task = "segmentation"

    device = torch.device("cpu")
    global_step = 2
    rank = 0


def tile_batch(he_tiles: list[np.ndarray], n: int = 3, size: int = 32) -> dict:
    images = np.stack([t[:size, :size] for t in he_tiles[:n]])
    return {
        "image": torch.from_numpy(images),
        "mask": torch.from_numpy((images.mean(-1) < 180).astype(np.int64)),
    }


@pytest.mark.parametrize(
    "style", ["colorjitter", "randstainna", "fda", "scanner", "colorjitter+fda"]
)
def test_presets_run_batched_by_default(he_tiles: list[np.ndarray], style: str) -> None:
    hook = SimConsHook(style)
    assert isinstance(hook.batched, BatchStyleAugment)
    assert "device" in repr(hook)
    trainer = FakeTrainer()
    batch = tile_batch(he_tiles)
    out = hook.on_batch_start(trainer, batch)
    assert out["image"].shape == (6, 32, 32, 3)
    assert out["image"].dtype == torch.uint8
    assert torch.equal(out["image"][:3], batch["image"])
    assert not torch.equal(out["image"][3:], batch["image"])
    # the NumPy entry point gives the same view (same seed, batched on the CPU)
    seeded = hook.augment_batch(batch["image"].numpy(), hook._step_seed(trainer))
    assert np.array_equal(seeded, out["image"][3:].numpy())
    assert torch.equal(hook.on_batch_start(trainer, batch)["image"], out["image"])


def test_style_device_switch(he_tiles: list[np.ndarray]) -> None:
    cpu = SimConsHook("randstainna", style_device="cpu")
    assert cpu.batched is None
    batch = tile_batch(he_tiles)
    out = cpu.on_batch_start(FakeTrainer(), batch)
    assert out["image"].shape == (6, 32, 32, 3)
    # albumentations objects convert too; transforms without a batched version stay on the CPU
    assert SimConsHook(A.Compose([A.ColorJitter(p=1.0)])).batched is not None
    assert SimConsHook(A.HEStain(p=1.0)).batched is None
    assert SimConsHook(lambda x: x).batched is None
    with pytest.raises(ValueError, match="style_device"):
        SimConsHook("hestain", style_device="batch")
    with pytest.raises(ValueError, match="style_device"):
        SimConsHook("colorjitter", style_device="gpu")
    # FDA with fda_references="none" uses its own bank: CPU path
    bank = style_augmentation("fda", p=1.0, reference_images=[he_tiles[0]])
    assert SimConsHook(bank, fda_references="none").batched is None


def test_batch_style_augment_instance_is_used_as_is(he_tiles: list[np.ndarray]) -> None:
    augment = BatchStyleAugment("fda", p=1.0, beta_range=(0.05, 0.1))
    hook = SimConsHook(augment)
    assert hook.batched is augment
    out = hook.on_batch_start(FakeTrainer(), tile_batch(he_tiles, n=2))
    assert out["supervised_mask"].tolist() == [True, True, False, False]


def test_batch_style_hook_styles_on_the_device_deterministically(
    he_tiles: list[np.ndarray],
) -> None:
    from tia_scanner_robust.training.hooks import create_hook  # noqa: PLC0415
    from tia_scanner_robust.training.simcons import BatchStyleHook  # noqa: PLC0415

    hook = create_hook("batch_style", style_augmentation="randstainna", p=1.0)
    assert isinstance(hook, BatchStyleHook)
    trainer = FakeTrainer()
    batch = tile_batch(he_tiles)
    out = hook.on_batch_start(trainer, batch)
    assert out["image"].shape == batch["image"].shape
    assert out["image"].dtype == torch.uint8
    assert torch.equal(out["mask"], batch["mask"])
    assert not torch.equal(out["image"], batch["image"])
    assert torch.equal(hook.on_batch_start(trainer, batch)["image"], out["image"])
    trainer.global_step = 3
    assert not torch.equal(hook.on_batch_start(trainer, batch)["image"], out["image"])
    # then SimCons draws its second view from the styled batch
    both = SimConsHook("colorjitter").on_batch_start(trainer, out)
    assert torch.equal(both["image"][:3], out["image"])
    with pytest.raises(ValueError, match="batched version"):
        BatchStyleHook("hestain")
    with pytest.raises(TypeError, match="uint8 RGB"):
        hook.on_batch_start(trainer, {"image": torch.zeros(2, 3, 8, 8)})


def test_style_device_batch_in_the_data_pipeline() -> None:
    from tia_scanner_robust.training.config import DataConfig, ExperimentConfig  # noqa: PLC0415
    from tia_scanner_robust.training.data import (  # noqa: PLC0415
        batch_style_hook,
        build_train_transform,
    )
    from tia_scanner_robust.training.simcons import BatchStyleHook  # noqa: PLC0415

    cpu = build_train_transform(None, style_augmentation="fda", style_p=1.0)
    batch = build_train_transform(None, style_augmentation="fda", style_p=1.0, style_device="batch")
    names = [type(t).__name__ for t in cpu.transforms]
    assert "FourierDomainAdaptation" in names
    assert "FourierDomainAdaptation" not in [type(t).__name__ for t in batch.transforms]
    assert batch_style_hook("fda", 1.0, "cpu") is None
    assert batch_style_hook(None, 1.0, "batch") is None
    hook = batch_style_hook("colorjitter+fda", 0.5, "batch")
    assert isinstance(hook, BatchStyleHook)
    assert hook.augment.probabilities == [0.5, 0.5]
    config = ExperimentConfig.from_dict(
        {"data": {"style_augmentation": "fda", "style_device": "batch"}}
    )
    assert config.data.style_device == "batch"
    assert DataConfig().style_device == "cpu"
    with pytest.raises(ValueError, match="style_device"):
        DataConfig(style_device="gpu")
    with pytest.raises(ValueError, match="style_device"):
        build_train_transform(None, style_device="gpu")
