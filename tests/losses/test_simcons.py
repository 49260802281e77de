"""SimConsLoss and the functional soft-Dice / KL forms against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from tia_scanner_robust.losses.functional import (
    dice_loss,
    probability_mse,
    segmentation_loss,
    soft_dice_consistency,
    soft_dice_score,
    symmetric_kl_divergence,
)
from tia_scanner_robust.losses.simcons import SimConsLoss

# A hand-computed 2-class 2x2 case (probabilities; class 1 = 1 - class 0).
P0 = torch.tensor([[0.9, 0.2], [0.6, 0.5]], dtype=torch.float64)
Q0 = torch.tensor([[0.7, 0.4], [0.1, 0.5]], dtype=torch.float64)


def _probs(c0: torch.Tensor) -> torch.Tensor:
    return torch.stack([c0, 1 - c0]).unsqueeze(0).double()  # (1, 2, 2, 2)


def test_identical_predictions_give_zero_squared() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 8, 8)
    loss = SimConsLoss()(logits, logits.clone())
    assert loss.item() == 0.0


def test_linear_form_is_not_zero_for_identical_soft_maps() -> None:
    p = torch.full((1, 2, 2, 2), 0.5, dtype=torch.float64)
    # linear: 2 * sum(p^2) / (2 * sum(p)) = 4*0.25 / (4*0.5) = 0.5 per class
    loss = soft_dice_consistency(p, p, denominator="linear", eps=0.0)
    assert loss.item() == pytest.approx(0.5)
    assert soft_dice_consistency(p, p, denominator="squared", eps=0.0).item() == 0.0
    crit = SimConsLoss(denominator="linear", from_logits=False, eps=0.0)
    assert crit(p, p).item() == pytest.approx(0.5)


def test_hand_computed_two_by_two_case() -> None:
    p, q = _probs(P0), _probs(Q0)
    # class 0: sum pq = .63+.08+.06+.25, sum p^2 = 1.46, sum q^2 = 0.91
    # class 1: sum pq = .03+.48+.36+.25, sum p^2 = 1.06, sum q^2 = 1.51
    expected_sq = 1 - (2 * 1.02 / (1.46 + 0.91) + 2 * 1.12 / (1.06 + 1.51)) / 2
    # linear: class 0 sums 2.2 and 1.7; class 1 sums 1.8 and 2.3
    expected_lin = 1 - (2 * 1.02 / (2.2 + 1.7) + 2 * 1.12 / (1.8 + 2.3)) / 2
    sq = SimConsLoss(from_logits=False, eps=0.0)(p, q)
    lin = SimConsLoss(denominator="linear", from_logits=False, eps=0.0)(p, q)
    assert sq.item() == pytest.approx(expected_sq, abs=1e-12)
    assert lin.item() == pytest.approx(expected_lin, abs=1e-12)
    # The default eps barely moves the value.
    assert SimConsLoss(from_logits=False)(p, q).item() == pytest.approx(expected_sq, abs=1e-5)
    # Logits: softmax inside gives the same as passing probabilities.
    assert SimConsLoss(eps=0.0)(p.log(), q.log()).item() == pytest.approx(expected_sq, abs=1e-12)


def test_reductions_per_sample_then_mean_vs_batch_pooled() -> None:
    p = torch.cat([_probs(P0), _probs(Q0)])
    q = torch.cat([_probs(Q0), _probs(Q0)])
    per_sample = soft_dice_consistency(p, q, reduction="none", eps=0.0)
    assert per_sample.shape == (2,)
    assert per_sample[1].item() == 0.0  # identical second sample
    assert soft_dice_consistency(p, q, reduction="mean", eps=0.0).item() == pytest.approx(
        per_sample.mean().item()
    )
    assert soft_dice_consistency(p, q, reduction="sum", eps=0.0).item() == pytest.approx(
        per_sample.sum().item()
    )
    # "batch": one Dice per class over all pixels of both samples.
    inter = (p * q).sum(dim=(0, 2, 3))
    denom = (p * p).sum(dim=(0, 2, 3)) + (q * q).sum(dim=(0, 2, 3))
    expected = (1 - 2 * inter / denom).mean()
    pooled = soft_dice_consistency(p, q, reduction="batch", eps=0.0)
    assert pooled.item() == pytest.approx(expected.item(), abs=1e-12)
    assert pooled.item() != pytest.approx(per_sample.mean().item(), abs=1e-6)


def test_absent_class_scores_consistent() -> None:
    # A class with zero probability in both maps must not add loss.
    p = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    p[:, 0] = 1.0
    assert soft_dice_score(p, p)[0].tolist() == [1.0, 1.0]
    assert soft_dice_consistency(p, p).item() == 0.0


def test_gradients_flow_to_both_branches_unless_stopped() -> None:
    torch.manual_seed(0)
    a = torch.randn(2, 3, 4, 4, requires_grad=True)
    b = torch.randn(2, 3, 4, 4, requires_grad=True)
    SimConsLoss()(a, b).backward()
    assert a.grad is not None
    assert b.grad is not None
    assert a.grad.abs().sum() > 0
    assert b.grad.abs().sum() > 0
    a2 = a.detach().clone().requires_grad_(True)
    b2 = b.detach().clone().requires_grad_(True)
    SimConsLoss(stop_gradient=True)(a2, b2).backward()
    assert a2.grad is None
    assert b2.grad.abs().sum() > 0
    # Stopping the gradient does not change the value.
    assert SimConsLoss(stop_gradient=True)(a, b).item() == SimConsLoss()(a, b).item()


def test_classification_symmetric_kl_and_mse_hand_values() -> None:
    p = torch.tensor([[0.8, 0.2]], dtype=torch.float64)
    q = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    kl_pq = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    kl_qp = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    crit = SimConsLoss(mode="classification")
    assert crit(p.log(), q.log()).item() == pytest.approx(0.5 * (kl_pq + kl_qp), abs=1e-12)
    assert symmetric_kl_divergence(p.log(), q.log()).item() == pytest.approx(
        0.5 * (kl_pq + kl_qp), abs=1e-12
    )
    assert crit(p.log(), p.log()).item() == pytest.approx(0.0, abs=1e-15)
    mse = SimConsLoss(mode="classification", classification_loss="mse")
    assert mse(p.log(), q.log()).item() == pytest.approx(0.09, abs=1e-12)
    assert probability_mse(p, q).item() == pytest.approx(0.09, abs=1e-12)
    probs_in = SimConsLoss(mode="classification", from_logits=False)
    assert probs_in(p, q).item() == pytest.approx(0.5 * (kl_pq + kl_qp), abs=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "detection"}, "mode"),
        ({"denominator": "cubic"}, "denominator"),
        ({"reduction": "median"}, "reduction"),
        ({"classification_loss": "l1"}, "classification_loss"),
        ({"mode": "classification", "reduction": "batch"}, "batch"),
        ({"eps": -1.0}, "eps"),
    ],
)
def test_invalid_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SimConsLoss(**kwargs)


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        SimConsLoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 3))
    with pytest.raises(ValueError, match="segmentation"):
        SimConsLoss()(torch.zeros(1, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="classification"):
        SimConsLoss(mode="classification")(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3))


def test_supervised_dice_and_ce() -> None:
    target = torch.tensor([[[0, 1], [1, 1]]])
    perfect = F.one_hot(target, 2).permute(0, 3, 1, 2).float() * 40.0
    assert dice_loss(perfect, target).item() < 1e-6
    logits = torch.zeros(1, 2, 2, 2)
    # uniform softmax, eps 1: class 0 Dice (2*0.5+1)/(2+1+1), class 1 (2*1.5+1)/(2+3+1)
    expected = 1 - ((2 * 0.5 + 1) / (2 + 1 + 1) + (2 * 1.5 + 1) / (2 + 3 + 1)) / 2
    assert dice_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)
    total = segmentation_loss(logits, target)
    assert total.item() == pytest.approx(math.log(2) + expected, abs=1e-6)
    # ignore_index removes pixels from both terms.
    ignored = torch.tensor([[[0, 255], [255, 255]]])
    assert segmentation_loss(perfect[:, :, :1, :1], target[:, :1, :1]).item() == pytest.approx(
        segmentation_loss(perfect, ignored, ignore_index=255).item(), abs=1e-6
    )
    with pytest.raises(ValueError, match="labels must lie"):
        segmentation_loss(logits, torch.full((1, 2, 2), 3))
    with pytest.raises(ValueError, match="target must have shape"):
        segmentation_loss(logits, torch.zeros(1, 3, 2, dtype=torch.long))
