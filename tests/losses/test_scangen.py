"""ScanGen loss against an explicit double-loop reference (METHODS.md 1.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tia_scanner_robust.losses.pairs import count_pairs, encode_ids, scangen_pair_masks
from tia_scanner_robust.losses.scangen import (
    ScanGenLoss,
    ScanGenStats,
    cosine_distance_matrix,
    scangen_loss,
    scangen_loss_and_stat_tensors,
    slide_embeddings,
)


def reference_loss(z, specimens, scanners, alpha, margin, *, squared):
    """Literal transcription of the equation: Python loops over ordered pairs."""
    z = np.asarray(z, dtype=np.float64)
    attract_sum = repel_sum = 0.0
    n_pairs = 0
    for i in range(len(z)):
        for j in range(len(z)):
            if i == j:
                continue
            cos = z[i] @ z[j] / (np.linalg.norm(z[i]) * np.linalg.norm(z[j]))
            d = 1.0 - cos
            if specimens[i] == specimens[j] and scanners[i] != scanners[j]:
                attract_sum += alpha * (d**2 if squared else d)
                n_pairs += 1
            elif scanners[i] == scanners[j] and specimens[i] != specimens[j]:
                hinge = max(0.0, margin - d)
                repel_sum += (1 - alpha) * (hinge**2 if squared else hinge)
                n_pairs += 1
    return (attract_sum + repel_sum) / n_pairs if n_pairs else 0.0


SPECIMENS = ["p1", "p1", "p1", "p2", "p2", "p3", "p3", "p4"]
SCANNERS = ["AT2", "GT450", "AT2", "AT2", "DP200", "GT450", "DP200", "AT2"]


@pytest.fixture
def batch():
    return torch.randn(
        len(SPECIMENS), 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )


def test_hand_computed_two_dimensional_case():
    # 0 and 1: same specimen, other scanner, orthogonal -> d = 1 (attraction)
    # 0 and 2: same scanner, other specimen, 60 degrees apart -> d = 0.5 (repulsion)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, math.sqrt(3) / 2]])
    specimens, scanners = [0, 0, 1], [0, 1, 0]
    alpha, margin = 0.3, 0.8
    # |P| = 2 ordered pairs, |N| = 2; pair (1, 2): other specimen, other scanner -> ignored
    expected_sq = (2 * alpha * 1.0**2 + 2 * (1 - alpha) * (margin - 0.5) ** 2) / 4
    expected_plain = (2 * alpha * 1.0 + 2 * (1 - alpha) * (margin - 0.5)) / 4
    assert scangen_loss(z, specimens, scanners, alpha, margin).item() == pytest.approx(
        expected_sq, abs=1e-6
    )
    plain = scangen_loss(z, specimens, scanners, alpha, margin, squared=False).item()
    assert plain == pytest.approx(expected_plain, abs=1e-6)


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize(
    ("alpha", "margin"), [(0.5, 0.5), (0.3, 1.0), (0.7, 0.2), (1.0, 0.5), (0.0, 2.0)]
)
def test_matches_double_loop_reference(batch, alpha, margin, squared):
    loss = ScanGenLoss(alpha, margin, squared=squared)(batch, SPECIMENS, SCANNERS)
    expected = reference_loss(batch.numpy(), SPECIMENS, SCANNERS, alpha, margin, squared=squared)
    assert loss.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_both_terms_are_active(batch):
    # a margin of 2 keeps every repulsion pair inside the hinge; alpha 0/1 isolate the terms
    only_attract = scangen_loss(batch, SPECIMENS, SCANNERS, alpha=1.0, margin=2.0).item()
    only_repel = scangen_loss(batch, SPECIMENS, SCANNERS, alpha=0.0, margin=2.0).item()
    both = scangen_loss(batch, SPECIMENS, SCANNERS, alpha=0.5, margin=2.0).item()
    assert only_attract > 0
    assert only_repel > 0
    assert both == pytest.approx(0.5 * only_attract + 0.5 * only_repel)


def test_stats_are_consistent(batch):
    loss, stats = ScanGenLoss(0.4, 0.6)(batch, SPECIMENS, SCANNERS, return_stats=True)
    assert (stats.n_attract, stats.n_repel) == count_pairs(SPECIMENS, SCANNERS)
    attract, repel = scangen_pair_masks(SPECIMENS, SCANNERS)
    d = cosine_distance_matrix(batch)
    assert stats.mean_attract_distance == pytest.approx(d[attract].mean().item())
    assert stats.mean_repel_distance == pytest.approx(d[repel].mean().item())
    assert stats.attract_term + stats.repel_term == pytest.approx(loss.item())
    assert stats.to_dict()["scangen/loss"] == pytest.approx(loss.item())


def test_stat_tensors_match_stats_without_boolean_indexing(batch):
    loss_fn = ScanGenLoss(0.4, 0.6)
    loss, stats = loss_fn(batch, SPECIMENS, SCANNERS, return_stats=True)
    loss_t, tensors = loss_fn.loss_and_stat_tensors(
        batch.clone().requires_grad_(), SPECIMENS, SCANNERS
    )
    assert loss_t.item() == loss.item()
    assert loss_t.requires_grad
    assert all(t.ndim == 0 and not t.requires_grad for t in tensors.values())
    assert ScanGenStats.from_tensors(tensors) == stats
    attract, repel = scangen_pair_masks(SPECIMENS, SCANNERS)
    d = cosine_distance_matrix(batch)
    assert tensors["active_repel_fraction"].item() == pytest.approx(
        (d[repel] < 0.6).double().mean().item()
    )
    assert 0 < stats.active_repel_fraction < 1  # the check above is not trivial
    assert stats.mean_attract_distance == pytest.approx(d[attract].mean().item(), rel=1e-12)
    # no pair at all: the means are NaN (not 0), the counts 0, the loss 0
    _, empty = scangen_loss_and_stat_tensors(batch[:3], ["a", "b", "c"], ["x", "y", "z"])
    numbers = ScanGenStats.from_tensors(empty)
    assert (numbers.n_attract, numbers.n_repel, numbers.loss) == (0, 0, 0.0)
    assert isinstance(numbers.n_attract, int)
    assert math.isnan(numbers.mean_attract_distance)
    assert math.isnan(numbers.mean_repel_distance)
    assert math.isnan(numbers.active_repel_fraction)


def test_permutation_invariance(batch):
    loss_fn = ScanGenLoss(0.4, 0.7)
    perm = torch.randperm(len(SPECIMENS), generator=torch.Generator().manual_seed(0))
    permuted = loss_fn(batch[perm], [SPECIMENS[i] for i in perm], [SCANNERS[i] for i in perm])
    assert permuted.item() == pytest.approx(loss_fn(batch, SPECIMENS, SCANNERS).item(), rel=1e-12)


def test_ids_as_tensors_or_strings_agree(batch):
    as_tensor = scangen_loss(batch, encode_ids(SPECIMENS), encode_ids(SCANNERS))
    as_numpy = scangen_loss(batch, np.asarray(encode_ids(SPECIMENS)), SCANNERS)
    as_strings = scangen_loss(batch, SPECIMENS, SCANNERS)
    assert as_tensor.item() == as_strings.item() == as_numpy.item()


def test_no_valid_pair_gives_zero_with_gradient():
    z = torch.randn(4, 8, requires_grad=True)
    # every sample its own specimen and scanner: no pair in P or N
    loss = ScanGenLoss()(z, ["a", "b", "c", "d"], ["w", "x", "y", "z"])
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert z.grad is not None
    assert torch.equal(z.grad, torch.zeros_like(z))
    # same specimen AND same scanner (duplicates) are not pairs either
    assert ScanGenLoss()(torch.randn(2, 3), ["a", "a"], ["x", "x"]).item() == 0.0
    # empty and single-element batches
    assert ScanGenLoss()(torch.randn(1, 3, requires_grad=True), ["a"], ["x"]).requires_grad


def test_gradient_matches_reference_and_is_finite_for_duplicates():
    z = torch.tensor(
        [[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [3.0, -1.0]], dtype=torch.float64, requires_grad=True
    )
    specimens, scanners = [0, 0, 1, 1], [0, 1, 0, 1]  # rows 0/1 identical: d = 0; row 2 zero vector
    loss = scangen_loss(z, specimens, scanners, 0.5, 0.5)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    assert torch.autograd.gradcheck(
        lambda x: scangen_loss(x, [0, 0, 1, 1], [0, 1, 0, 1], 0.5, 1.5),
        torch.randn(4, 3, dtype=torch.float64, requires_grad=True),
    )


def test_attraction_gradient_pulls_pairs_together():
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
    specimens, scanners = [0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1]
    optimiser = torch.optim.SGD([z], lr=0.5)
    first = None
    for _ in range(50):
        loss, stats = scangen_loss(z, specimens, scanners, 0.5, 0.5, return_stats=True)
        first = first if first is not None else stats
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    _, last = scangen_loss(z, specimens, scanners, 0.5, 0.5, return_stats=True)
    assert last.loss < first.loss
    assert last.mean_attract_distance < first.mean_attract_distance


def test_pair_masks_and_counts():
    attract, repel = scangen_pair_masks(SPECIMENS, SCANNERS)
    for i in range(len(SPECIMENS)):
        for j in range(len(SPECIMENS)):
            same_p, same_s = SPECIMENS[i] == SPECIMENS[j], SCANNERS[i] == SCANNERS[j]
            assert bool(attract[i, j]) == (i != j and same_p and not same_s)
            assert bool(repel[i, j]) == (i != j and same_s and not same_p)
    assert count_pairs(SPECIMENS, SCANNERS) == (int(attract.sum()), int(repel.sum()))


def test_validation_errors():
    z = torch.randn(3, 4)
    with pytest.raises(ValueError, match="alpha"):
        ScanGenLoss(alpha=1.5)
    with pytest.raises(ValueError, match="margin"):
        ScanGenLoss(margin=0.0)
    with pytest.raises(ValueError, match="granularity"):
        ScanGenLoss(granularity="tile")
    with pytest.raises(ValueError, match="same length"):
        scangen_loss(z, [0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="3 ids for 2"):
        scangen_loss(torch.randn(2, 4), [0, 1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        scangen_loss(torch.randn(3), [0, 1, 2], [0, 1, 2])
    with pytest.raises(TypeError, match="integer"):
        scangen_loss(z, torch.tensor([0.0, 1.0, 2.0]), [0, 1, 2])
    with pytest.raises(TypeError, match="floating-point"):
        scangen_loss(torch.ones(3, 4, dtype=torch.long), [0, 1, 2], [0, 1, 2])


def test_half_precision_is_computed_in_float32(batch):
    expected = scangen_loss(batch.float(), SPECIMENS, SCANNERS).item()
    got = scangen_loss(batch.to(torch.bfloat16), SPECIMENS, SCANNERS)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, abs=0.02)


def test_slide_embeddings_mean_of_subset():
    projected = torch.arange(2 * 6 * 1, dtype=torch.float32).reshape(2, 6, 1)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    full = slide_embeddings(projected, mask)
    assert full.squeeze(1).tolist() == [2.5, 7.0]  # the padded values 9..11 are ignored
    gen = torch.Generator().manual_seed(0)
    sub = slide_embeddings(projected, mask, n_subsample=2, generator=gen)
    # a mean of two distinct real values of each bag
    assert 0.5 <= sub[0, 0].item() <= 4.5
    assert 6.5 <= sub[1, 0].item() <= 7.5
    # n_subsample larger than the bag keeps every real instance
    assert torch.equal(slide_embeddings(projected, mask, n_subsample=100), full)
