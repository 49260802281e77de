"""Batched style augmentations: random draws match the NumPy versions in distribution; API."""

from __future__ import annotations

import albumentations as A  # noqa: N812
import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from tia_scanner_robust.augmentations import (
    FourierDomainAdaptation,
    RandStainNA,
    style_augmentation,
)
from tia_scanner_robust.augmentations.batched import (
    BatchColorJitter,
    BatchFDA,
    BatchRandStainNA,
    BatchScannerSimulator,
    BatchStyleAugment,
    batched_version,
    fda_swap_batch,
)
from tia_scanner_robust.augmentations.presets import he_color_jitter
from tia_scanner_robust.augmentations.scanner import ScannerSimulator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_DRAWS = 240
SIZE = 32


@pytest.fixture(scope="module")
def crops(he_image: np.ndarray) -> np.ndarray:
    """``N_DRAWS`` different 32x32 crops of real H&E tissue (a fixed grid)."""
    step = (1000 - SIZE) // 15
    return np.stack(
        [
            he_image[i * step : i * step + SIZE, j * step : j * step + SIZE]
            for i in range(16)
            for j in range(15)
        ]
    )[:N_DRAWS]


def numpy_draws(transform: A.BasicTransform, crops: np.ndarray, seed: int = 0) -> np.ndarray:
    compose = A.Compose([transform], seed=seed)
    return np.stack([compose(image=crop)["image"] for crop in crops])


def torch_draws(augment: object, crops: np.ndarray, seed: int = 0) -> np.ndarray:
    batch = torch.from_numpy(crops).permute(0, 3, 1, 2)
    out = augment(batch, generator=torch.Generator().manual_seed(seed))
    return out.permute(0, 2, 3, 1).numpy()


def statistics(images: np.ndarray, crops: np.ndarray) -> dict[str, np.ndarray]:
    """Per-draw output statistics: channel means, spread, and change from the input."""
    values = images.astype(np.float64)
    return {
        "mean_r": values[..., 0].mean(axis=(1, 2)),
        "mean_g": values[..., 1].mean(axis=(1, 2)),
        "mean_b": values[..., 2].mean(axis=(1, 2)),
        "std": values.std(axis=(1, 2, 3)),
        "change": np.abs(values - crops.astype(np.float64)).mean(axis=(1, 2, 3)),
    }


def assert_same_distribution(
    numpy_out: np.ndarray, torch_out: np.ndarray, crops: np.ndarray
) -> None:
    first, second = statistics(numpy_out, crops), statistics(torch_out, crops)
    for name in first:
        result = ks_2samp(first[name], second[name])
        assert result.pvalue > 1e-3, (name, result)


def test_randstainna_draws_match_numpy_in_distribution(crops: np.ndarray) -> None:
    numpy_out = numpy_draws(RandStainNA(p=1.0), crops)
    torch_out = torch_draws(BatchRandStainNA(backend="torch"), crops)
    assert_same_distribution(numpy_out, torch_out, crops)


def test_randstainna_test_has_power(crops: np.ndarray) -> None:
    """A twice wider virtual-template spread is told apart (the test can fail)."""
    numpy_out = numpy_draws(RandStainNA(p=1.0, color_spaces=["LAB"]), crops)
    wider = torch_draws(
        BatchRandStainNA(color_spaces=["LAB"], std_hyper=0.4, backend="torch"), crops
    )
    with pytest.raises(AssertionError):
        assert_same_distribution(numpy_out, wider, crops)


def test_fda_draws_match_numpy_in_distribution(crops: np.ndarray) -> None:
    bank = crops[::40]
    numpy_out = numpy_draws(
        FourierDomainAdaptation(reference_images=list(bank), beta_range=(0.05, 0.2), p=1.0), crops
    )
    batched = BatchFDA(
        torch.from_numpy(bank).permute(0, 3, 1, 2), beta_range=(0.05, 0.2), backend="torch"
    )
    assert_same_distribution(numpy_out, torch_draws(batched, crops), crops)


def test_colorjitter_draws_match_albumentations_in_distribution(crops: np.ndarray) -> None:
    numpy_out = numpy_draws(he_color_jitter(p=1.0), crops)
    assert_same_distribution(
        numpy_out, torch_draws(BatchColorJitter(backend="torch"), crops), crops
    )


def test_scanner_draws_match_numpy_in_distribution(crops: np.ndarray) -> None:
    profiles = ["cool-sharp", "warm-soft", "pale-low-contrast"]
    numpy_out = numpy_draws(ScannerSimulator(profiles, p=1.0), crops)
    batched = BatchScannerSimulator(profiles, jpeg="cpu", backend="torch")
    assert_same_distribution(numpy_out, torch_draws(batched, crops), crops)


# --------------------------------------------------------------------------- API
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_style_augment_keeps_dtype_shape_and_is_seeded(
    he_tile: np.ndarray, dtype: torch.dtype
) -> None:
    batch = torch.from_numpy(np.stack([he_tile[:64, :64], he_tile[-64:, -64:]])).permute(0, 3, 1, 2)
    batch = batch if dtype == torch.uint8 else batch.to(dtype) / 255.0
    aug = BatchStyleAugment("colorjitter+randstainna+fda+scanner", p=1.0)
    out = aug(batch, generator=torch.Generator().manual_seed(3))
    assert out.dtype == dtype
    assert out.shape == batch.shape
    assert not torch.equal(out, batch)
    assert torch.equal(out, aug(batch, generator=torch.Generator().manual_seed(3)))
    if dtype != torch.uint8:
        assert float(out.min()) >= 0.0
        assert float(out.max()) <= 1.0
    assert torch.equal(BatchStyleAugment("fda", p=0.0)(batch), batch)
    last = aug(batch.permute(0, 2, 3, 1), torch.Generator().manual_seed(3), channels_last=True)
    assert torch.equal(last.permute(0, 3, 1, 2), out)


def test_oneof_applies_one_component_per_sample(he_tile: np.ndarray) -> None:
    batch = torch.from_numpy(he_tile[:32, :32]).permute(2, 0, 1).expand(8, -1, -1, -1).contiguous()
    aug = BatchStyleAugment("colorjitter+randstainna", p=1.0, combine="oneof")
    out = aug(batch, generator=torch.Generator().manual_seed(0))
    changed = (out != batch).flatten(1).any(1)
    assert bool(changed.all())


def test_fda_batch_references_are_other_images_and_bank_matches_direct(he_tile: np.ndarray) -> None:
    images = torch.from_numpy(
        np.stack([he_tile[i : i + 32, i : i + 32] for i in range(0, 160, 32)])
    ).permute(0, 3, 1, 2)
    params = BatchFDA().sample(5, torch.Generator().manual_seed(0))
    assert bool((params["reference_index"] != torch.arange(5)).all())
    bank = BatchFDA(images[:2], beta_range=(0.1, 0.2))
    params = bank.sample(5, torch.Generator().manual_seed(1))
    direct = fda_swap_batch(images, images[params["reference_index"]], params["beta"])
    assert torch.equal(bank.apply(images, params), direct)
    assert torch.equal(bank.apply(images, params), direct)  # cached amplitudes


def test_batched_version_of_presets() -> None:
    for name in ("colorjitter", "randstainna", "fda", "scanner", "colorjitter+fda"):
        batched = batched_version(style_augmentation(name, p=0.7))
        assert batched is not None
        assert batched.names == name.split("+")
        assert batched.probabilities == [0.7] * len(batched.names)
    oneof = batched_version(style_augmentation("colorjitter+fda", combine="oneof", p=0.6))
    assert oneof.combine == "oneof"
    assert oneof.p == 0.6
    assert batched_version(style_augmentation("hestain")) is None
    assert batched_version(RandStainNA(official=True)) is None
    assert batched_version(A.FDA(metadata_key="ref")) is None
    with pytest.raises(ValueError, match="no batched version"):
        BatchStyleAugment.from_transform(A.HEStain())


def test_style_augment_errors() -> None:
    with pytest.raises(ValueError, match="hestain"):
        BatchStyleAugment("hestain")
    with pytest.raises(TypeError, match="Unknown argument"):
        BatchStyleAugment("fda", beta=0.1)
    with pytest.raises(ValueError, match=r"per-component|each component"):
        BatchStyleAugment("fda+colorjitter", beta_range=(0.1, 0.2))
    aug = BatchStyleAugment("colorjitter")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        aug(torch.zeros(2, 8, 8, 3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        aug(torch.zeros(2, 3, 8, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match="beta"):
        fda_swap_batch(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), 0.7)


def test_cpu_backends_agree(he_tile: np.ndarray) -> None:
    """``auto`` on a CPU batch runs the NumPy functions (exact); torch kernels within a level."""
    batch = torch.from_numpy(
        np.stack([he_tile[:64, :64], he_tile[64:128, 64:128], he_tile[-64:, -64:]])
    ).permute(0, 3, 1, 2)
    for make in (BatchColorJitter, BatchRandStainNA, BatchFDA):
        opencv, torch_kernels = make(backend="opencv"), make(backend="torch")
        params = opencv.sample(3, torch.Generator().manual_seed(0))
        auto = make().apply(batch, params)
        assert torch.equal(auto, opencv.apply(batch, params)), make.__name__
        stored_hwc = batch.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
        assert torch.equal(make().apply(stored_hwc, params), auto), make.__name__
        diff = (torch_kernels.apply(batch, params).int() - auto.int()).abs()
        assert int(diff.max()) <= 1, make.__name__
    with pytest.raises(ValueError, match="backend"):
        BatchFDA(backend="cuda")
    # the scanner's OpenCV backend draws its noise from the generator too
    scanner = BatchScannerSimulator(["pale-low-contrast"], backend="opencv")
    first = scanner(batch, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first, scanner(batch, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(first, scanner(batch, generator=torch.Generator().manual_seed(1)))
    kernels = BatchScannerSimulator(["pale-low-contrast"], backend="torch")(batch)
    difference = kernels.float() - first.float()  # two independent noise draws
    assert float(difference.abs().mean()) < 2.5
    assert abs(float(difference.mean())) < 0.3
