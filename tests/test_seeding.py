from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tia_scanner_robust.seeding import make_rng, seed_everything


def test_seed_everything_reproduces_all_generators() -> None:
    seed_everything(123)
    first = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    seed_everything(123)
    second = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    assert first == second
    seed_everything(124)
    third = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    assert all(a != b for a, b in zip(first, third, strict=True))


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "3", True])
def test_bad_seeds_are_rejected(bad: object) -> None:
    with pytest.raises((TypeError, ValueError), match="seed"):
        seed_everything(bad)  # type: ignore[arg-type]


def test_make_rng() -> None:
    assert np.array_equal(make_rng(5).integers(0, 100, 10), make_rng(5).integers(0, 100, 10))
    gen = np.random.default_rng(0)
    assert make_rng(gen) is gen
