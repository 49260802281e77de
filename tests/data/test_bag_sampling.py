"""The ScanGen batch sampler and specimen splits."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tia_scanner_robust.data.bag_sampling import ScanGenBatchSampler, split_specimens
from tia_scanner_robust.losses.pairs import count_pairs


def multi_scanner_pool(n_specimens=12, scanners=("A", "B", "C", "D")):
    specimens, scanner_ids = [], []
    rng = np.random.default_rng(0)
    for p in range(n_specimens):
        chosen = rng.choice(len(scanners), rng.integers(1, len(scanners) + 1), replace=False)
        for s in chosen:
            specimens.append(f"p{p}")
            scanner_ids.append(scanners[s])
    return specimens, scanner_ids


@pytest.mark.parametrize(("batch_size", "per_specimen"), [(4, 2), (8, 2), (9, 3), (12, 3)])
def test_sampler_guarantees_pairs(batch_size, per_specimen):
    specimens, scanners = multi_scanner_pool()
    sampler = ScanGenBatchSampler(
        specimens, scanners, batch_size, scanners_per_specimen=per_specimen, num_batches=200, seed=1
    )
    seen = Counter()
    for batch in sampler:
        assert len(batch) == batch_size
        assert len(set(batch)) == batch_size
        batch_specimens = [specimens[i] for i in batch]
        batch_scanners = [scanners[i] for i in batch]
        n_attract, n_repel = count_pairs(batch_specimens, batch_scanners)
        assert n_attract >= 1
        assert n_repel >= 1
        per = Counter(batch_specimens)
        assert set(per.values()) == {per_specimen}
        for p in per:  # distinct scanners per specimen
            assert (
                len({s for s, q in zip(batch_scanners, batch_specimens, strict=True) if q == p})
                == per_specimen
            )
        seen.update(batch_specimens)
    assert set(seen) == set(sampler.eligible)  # every eligible specimen gets drawn


def test_sampler_is_reproducible_and_varies_by_epoch():
    specimens, scanners = multi_scanner_pool()
    a = ScanGenBatchSampler(specimens, scanners, 4, seed=3)
    b = ScanGenBatchSampler(specimens, scanners, 4, seed=3)
    first_a, first_b = list(a), list(b)
    assert first_a == first_b
    assert list(a) != first_a  # the next epoch differs
    a.set_epoch(0)
    assert list(a) == first_a


def test_sampler_rejects_impossible_pools():
    # every specimen under one scanner: no attraction pair possible
    with pytest.raises(ValueError, match="cannot fill"):
        ScanGenBatchSampler(["a", "b", "c"], ["X", "X", "Y"], 4)
    # two specimens, each under two scanners, but no scanner in common: no repulsion pair
    with pytest.raises(ValueError, match="repulsion"):
        ScanGenBatchSampler(["a", "a", "b", "b"], ["W", "X", "Y", "Z"], 4)
    with pytest.raises(ValueError, match="specimens_per_batch"):
        ScanGenBatchSampler(["a", "a"], ["X", "Y"], 2)
    with pytest.raises(ValueError, match="must equal"):
        ScanGenBatchSampler(["a", "a", "b", "b"], ["X", "Y", "X", "Y"], 5, specimens_per_batch=2)
    with pytest.raises(ValueError, match="scanners_per_specimen"):
        ScanGenBatchSampler(["a", "b"], ["X", "X"], 2, scanners_per_specimen=1)


def test_split_specimens_no_leak_and_stratified():
    specimens = [f"p{i}" for i in range(40) for _ in range(3)]  # three slides each
    labels = [int(i < 20) for i in range(40) for _ in range(3)]
    splits = split_specimens(
        specimens, {"train": 0.5, "val": 0.25, "test": 0.25}, seed=0, labels=labels
    )
    assert set(splits) == set(specimens)  # each specimen exactly one split
    counts = Counter(splits.values())
    assert counts == {"train": 20, "val": 10, "test": 10}
    for name in ("train", "val", "test"):
        positives = sum(1 for p, s in splits.items() if s == name and int(p[1:]) < 20)
        assert positives == counts[name] // 2  # class balance preserved
    # independent of the input order; changes with the seed
    assert (
        split_specimens(
            specimens[::-1], {"train": 0.5, "val": 0.25, "test": 0.25}, 0, labels=labels[::-1]
        )
        == splits
    )
    assert split_specimens(specimens, (0.5, 0.25, 0.25), seed=1, labels=labels) != splits
    with pytest.raises(ValueError, match="sum to 1"):
        split_specimens(specimens, (0.5, 0.2))
    with pytest.raises(ValueError, match="conflicting labels"):
        split_specimens(["a", "a"], (0.5, 0.5), labels=[0, 1])
