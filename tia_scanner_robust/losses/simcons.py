r"""SimCons consistency loss (SCORPION paper, Eq. 1) between two views' predictions.

``L_total = L_sup(F(x), y) + lambda * L_cons(F(x), F(SA(x)))``; this module
implements ``L_cons``. The training-side wiring (building ``SA(x)``, one
forward on the 2B batch, adding ``lambda * L_cons``) lives in
:class:`tia_scanner_robust.training.simcons.SimConsHook`.

Segmentation (``p = softmax(pred)``, ``q = softmax(pred_aug)`` over ``dim=1``):

.. math::

    L_\text{cons} = \frac{1}{C} \sum_c \Big(1 - \frac{2 \sum p_c q_c}
                     {\sum p_c^2 + \sum q_c^2}\Big)

(``denominator="squared"``, zero exactly when ``p == q``) or the plain soft
Dice with ``sum p_c + sum q_c`` (``denominator="linear"``). Sums run over the
pixels of each sample, the loss is averaged over the batch
(``reduction="mean"``); ``reduction="batch"`` pools the batch into one Dice
per class.

Classification (``pred`` of shape ``(B, C)``): symmetric KL divergence
``0.5 (KL(p||q) + KL(q||p))`` or the MSE of the probabilities.

Examples:
    >>> import torch
    >>> loss = SimConsLoss()
    >>> logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    >>> float(loss(logits, logits.detach().clone()).detach())
    0.0

"""

from __future__ import annotations

import torch
from torch import nn

from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.losses.functional import (
    DENOMINATORS,
    REDUCTIONS,
    probability_mse,
    soft_dice_consistency,
    symmetric_kl_divergence,
)

__all__ = ["CLASSIFICATION_LOSSES", "MODES", "SimConsLoss"]

#: Task modes of :class:`SimConsLoss`.
MODES: tuple[str, ...] = ("segmentation", "classification")
#: Consistency terms for classification.
CLASSIFICATION_LOSSES: tuple[str, ...] = ("symmetric_kl", "mse")


class SimConsLoss(nn.Module):
    """Consistency loss between predictions on an image and its style-augmented view.

    Args:
        mode: ``"segmentation"`` (inputs ``(B, C, *spatial)``, soft Dice
            consistency) or ``"classification"`` (inputs ``(B, C)``).
        denominator: Segmentation only: ``"squared"`` (default; 0 exactly for
            identical maps) or ``"linear"`` (plain soft Dice, also rewards
            sharpening).
        reduction: ``"mean"`` (per sample, then batch mean), ``"sum"``,
            ``"none"`` (per-sample ``(B,)``) or, segmentation only,
            ``"batch"`` (one Dice per class pooled over the batch).
        stop_gradient: If ``True`` the original branch ``pred`` is detached so
            only the augmented branch is pulled towards it. Default ``False``:
            both branches receive gradients, as in the paper.
        classification_loss: ``"symmetric_kl"`` or ``"mse"`` (of probabilities).
        from_logits: Inputs are logits (softmax over ``dim=1`` is applied
            inside). Set ``False`` to pass probabilities.
        eps: Smoothing of the Dice ratio.

    Raises:
        ValueError: On an unknown option.

    Examples:
        >>> import torch
        >>> crit = SimConsLoss(mode="classification")
        >>> a = torch.tensor([[3.0, 0.0]])
        >>> b = torch.tensor([[0.0, 3.0]])
        >>> crit(a, b).item() > 0
        True

    """

    def __init__(
        self,
        mode: str = "segmentation",
        denominator: str = "squared",
        reduction: str = "mean",
        *,
        stop_gradient: bool = False,
        classification_loss: str = "symmetric_kl",
        from_logits: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.mode = check_in_choices(mode, MODES, "mode")
        self.denominator = check_in_choices(denominator, DENOMINATORS, "denominator")
        self.reduction = check_in_choices(reduction, REDUCTIONS, "reduction")
        if mode == "classification" and reduction == "batch":
            msg = "reduction='batch' is defined for mode='segmentation' only."
            raise ValueError(msg)
        self.classification_loss = check_in_choices(
            classification_loss, CLASSIFICATION_LOSSES, "classification_loss"
        )
        self.stop_gradient = bool(stop_gradient)
        self.from_logits = bool(from_logits)
        if eps < 0:
            msg = f"eps must be >= 0, got {eps}."
            raise ValueError(msg)
        self.eps = float(eps)

    def extra_repr(self) -> str:
        """Summarise the options."""
        return (
            f"mode={self.mode!r}, denominator={self.denominator!r}, "
            f"reduction={self.reduction!r}, stop_gradient={self.stop_gradient}"
        )

    def forward(self, pred: torch.Tensor, pred_aug: torch.Tensor) -> torch.Tensor:
        """Compute ``L_cons(pred, pred_aug)``.

        Args:
            pred: Logits (or probabilities) of the original view:
                ``(B, C, *spatial)`` for segmentation, ``(B, C)`` for
                classification.
            pred_aug: Same for the style-augmented view, same shape.

        Returns:
            Scalar loss, or ``(B,)`` with ``reduction="none"``.

        Raises:
            ValueError: If the shapes differ or do not fit the mode.

        """
        if pred.shape != pred_aug.shape:
            msg = (
                f"pred and pred_aug must have the same shape, got {tuple(pred.shape)} "
                f"and {tuple(pred_aug.shape)}."
            )
            raise ValueError(msg)
        if self.mode == "segmentation" and pred.ndim < 3:
            msg = f"mode='segmentation' expects (B, C, *spatial) inputs, got {tuple(pred.shape)}."
            raise ValueError(msg)
        if self.mode == "classification" and pred.ndim != 2:
            msg = f"mode='classification' expects (B, C) inputs, got {tuple(pred.shape)}."
            raise ValueError(msg)
        if self.stop_gradient:
            pred = pred.detach()
        if self.mode == "classification" and self.classification_loss == "symmetric_kl":
            if self.from_logits:
                return symmetric_kl_divergence(pred, pred_aug, reduction=self.reduction)
            log_p = pred.clamp_min(1e-12).log()
            log_q = pred_aug.clamp_min(1e-12).log()
            return symmetric_kl_divergence(log_p, log_q, reduction=self.reduction)
        p = pred.softmax(dim=1) if self.from_logits else pred
        q = pred_aug.softmax(dim=1) if self.from_logits else pred_aug
        if self.mode == "classification":
            return probability_mse(p, q, reduction=self.reduction)
        return soft_dice_consistency(
            p, q, denominator=self.denominator, reduction=self.reduction, eps=self.eps
        )
