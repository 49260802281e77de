r"""Pure loss functions on torch tensors: soft Dice forms, symmetric KL, CE + Dice.

Every function here is stateless and differentiable; the loss classes
(:class:`~tia_scanner_robust.losses.simcons.SimConsLoss`) and the trainer's
default supervised loss are thin wrappers around them.

Shapes: ``p``/``q`` are probability maps ``(B, C, *spatial)`` (segmentation)
or ``(B, C)`` (classification); ``C`` is the class axis (``dim=1``).

The soft Dice *score* between two maps of one class is

.. math::

    D_\text{squared}(p, q) = \frac{2 \sum p q + \epsilon}{\sum p^2 + \sum q^2 + \epsilon}
    \qquad
    D_\text{linear}(p, q) = \frac{2 \sum p q + \epsilon}{\sum p + \sum q + \epsilon}

The squared form equals 1 exactly when ``p == q`` (the consistency loss
``1 - D`` is then 0); the linear form is below 1 for identical *soft* maps,
so ``1 - D_linear`` also rewards sharpening. ``eps`` sits in numerator and
denominator so that a class absent from both maps scores 1 (consistent), not 0.

Examples:
    >>> import torch
    >>> p = torch.softmax(torch.randn(2, 3, 4, 4), dim=1)
    >>> float(soft_dice_consistency(p, p, denominator="squared"))
    0.0
    >>> float(soft_dice_consistency(p, p, denominator="linear")) > 0
    True

"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

from tia_scanner_robust._validation import check_in_choices

__all__ = [
    "DENOMINATORS",
    "REDUCTIONS",
    "dice_loss",
    "probability_mse",
    "reduce_loss",
    "segmentation_loss",
    "soft_dice_consistency",
    "soft_dice_score",
    "symmetric_kl_divergence",
]

#: Denominator forms of the soft Dice score.
DENOMINATORS: tuple[str, ...] = ("squared", "linear")
#: Reductions of per-sample losses (``"batch"`` pools the batch before the ratio).
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none", "batch")


def _check_pair(p: torch.Tensor, q: torch.Tensor, *, min_ndim: int = 2) -> None:
    if not isinstance(p, torch.Tensor) or not isinstance(q, torch.Tensor):
        msg = f"p and q must be torch tensors, got {type(p).__name__} and {type(q).__name__}."
        raise TypeError(msg)
    if p.shape != q.shape:
        msg = f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}."
        raise ValueError(msg)
    if p.ndim < min_ndim:
        msg = f"p and q must have at least {min_ndim} dims (B, C, ...), got shape {tuple(p.shape)}."
        raise ValueError(msg)


def soft_dice_score(
    p: torch.Tensor,
    q: torch.Tensor,
    *,
    denominator: str = "squared",
    per_sample: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Soft Dice score per class between two probability maps.

    Args:
        p: ``(B, C, *spatial)`` probabilities (or any non-negative maps).
        q: Same shape as ``p``.
        denominator: ``"squared"`` (``sum p^2 + sum q^2``) or ``"linear"``
            (``sum p + sum q``, the plain soft Dice).
        per_sample: ``True`` sums over the spatial axes of each sample and
            returns ``(B, C)``; ``False`` also pools the batch axis and
            returns ``(C,)``.
        eps: Smoothing added to numerator and denominator.

    Returns:
        The score, ``(B, C)`` or ``(C,)``; 1 means identical (squared form).

    Raises:
        ValueError: On mismatched shapes or an unknown ``denominator``.

    Examples:
        >>> import torch
        >>> p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]).reshape(1, 2, 1, 2)
        >>> soft_dice_score(p, p).tolist()
        [[1.0, 1.0]]

    """
    _check_pair(p, q)
    check_in_choices(denominator, DENOMINATORS, "denominator")
    dims = tuple(range(2, p.ndim)) if per_sample else (0, *range(2, p.ndim))
    intersection = (p * q).sum(dim=dims) if dims else p * q
    if denominator == "squared":
        denom = (p * p).sum(dim=dims) + (q * q).sum(dim=dims) if dims else p * p + q * q
    else:
        denom = p.sum(dim=dims) + q.sum(dim=dims) if dims else p + q
    return (2.0 * intersection + eps) / (denom + eps)


def reduce_loss(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce a per-sample loss ``(B,)`` by ``"mean"``, ``"sum"`` or ``"none"``.

    Examples:
        >>> import torch
        >>> reduce_loss(torch.tensor([1.0, 3.0]), "mean").item()
        2.0

    """
    check_in_choices(reduction, ("mean", "sum", "none"), "reduction")
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def soft_dice_consistency(
    p: torch.Tensor,
    q: torch.Tensor,
    *,
    denominator: str = "squared",
    reduction: str = "mean",
    eps: float = 1e-6,
) -> torch.Tensor:
    """SimCons segmentation consistency ``1 - D(p, q)``, per class then class-averaged.

    ``L = mean_c (1 - D_c(p, q))``. Reductions: ``"mean"`` (default) computes
    ``L`` for each sample (sums over its pixels) and averages over the batch;
    ``"sum"`` adds the per-sample values; ``"none"`` returns them, shape
    ``(B,)``; ``"batch"`` pools all pixels of the batch into one Dice per
    class before the ratio (one scalar).

    Args:
        p: ``(B, C, *spatial)`` probabilities of the original view.
        q: Probabilities of the style-augmented view, same shape.
        denominator: ``"squared"`` (0 iff ``p == q``) or ``"linear"``.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"batch"``.
        eps: Smoothing of the Dice ratio.

    Returns:
        The loss: a scalar, or ``(B,)`` for ``reduction="none"``.

    Examples:
        >>> import torch
        >>> p = torch.tensor([1.0, 0.0, 0.0, 1.0]).reshape(1, 1, 2, 2)
        >>> q = torch.tensor([1.0, 1.0, 0.0, 0.0]).reshape(1, 1, 2, 2)
        >>> round(float(soft_dice_consistency(p, q, eps=0.0)), 6)  # 1 - 2*1/(2+2)
        0.5

    """
    check_in_choices(reduction, REDUCTIONS, "reduction")
    if reduction == "batch":
        score = soft_dice_score(p, q, denominator=denominator, per_sample=False, eps=eps)
        return (1.0 - score).mean()
    score = soft_dice_score(p, q, denominator=denominator, per_sample=True, eps=eps)
    return reduce_loss((1.0 - score).mean(dim=1), reduction)


def symmetric_kl_divergence(
    logits_p: torch.Tensor,
    logits_q: torch.Tensor,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """Symmetrised KL divergence between two categorical distributions given by logits.

    ``0.5 * (KL(p || q) + KL(q || p))`` with ``p = softmax(logits_p)``,
    computed from log-softmax for numerical stability, summed over the class
    axis (``dim=1``) and averaged over any remaining (spatial) axes, then
    reduced over the batch.

    Args:
        logits_p: ``(B, C, ...)`` logits.
        logits_q: Same shape.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``).

    Returns:
        The divergence (0 when the distributions are equal).

    Examples:
        >>> import torch
        >>> a = torch.tensor([[2.0, 0.0]])
        >>> float(symmetric_kl_divergence(a, a))
        0.0

    """
    _check_pair(logits_p, logits_q)
    log_p = F.log_softmax(logits_p, dim=1)
    log_q = F.log_softmax(logits_q, dim=1)
    p, q = log_p.exp(), log_q.exp()
    per_position = 0.5 * ((p * (log_p - log_q)).sum(dim=1) + (q * (log_q - log_p)).sum(dim=1))
    per_sample = per_position.reshape(per_position.shape[0], -1).mean(dim=1)
    return reduce_loss(per_sample, reduction)


def probability_mse(p: torch.Tensor, q: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Mean squared difference of two probability tensors, per sample then reduced.

    Examples:
        >>> import torch
        >>> probability_mse(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])).item()
        1.0

    """
    _check_pair(p, q)
    per_sample = ((p - q) ** 2).reshape(p.shape[0], -1).mean(dim=1)
    return reduce_loss(per_sample, reduction)


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int | None = None,
    include_background: bool = True,
    eps: float = 1.0,
) -> torch.Tensor:
    """Supervised multi-class soft Dice loss (linear denominator) from logits.

    One Dice per class pooled over the batch and pixels (the usual Dice loss
    of ``segmentation_models_pytorch``), ``1 - D`` averaged over classes.
    Pixels equal to ``ignore_index`` are excluded.

    Args:
        logits: ``(B, C, H, W)`` logits.
        target: ``(B, H, W)`` integer labels in ``[0, C)`` (or ``ignore_index``).
        ignore_index: Label to ignore, or ``None``.
        include_background: Whether class 0 enters the class average.
        eps: Smoothing (1.0: an empty class in a batch gives no gradient spike).

    Returns:
        Scalar loss.

    Raises:
        ValueError: On shape mismatch or labels out of range.

    Examples:
        >>> import torch
        >>> target = torch.tensor([[[0, 1], [1, 0]]])
        >>> perfect = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2) * 50.0
        >>> float(dice_loss(perfect, target)) < 1e-6
        True

    """
    num_classes = logits.shape[1]
    valid, safe_target = _valid_target(logits, target, ignore_index)
    probs = logits.softmax(dim=1) * valid.unsqueeze(1)
    one_hot = F.one_hot(safe_target, num_classes).movedim(-1, 1).to(probs.dtype)
    one_hot = one_hot * valid.unsqueeze(1)
    score = soft_dice_score(probs, one_hot, denominator="linear", per_sample=False, eps=eps)
    if not include_background and num_classes > 1:
        score = score[1:]
    return (1.0 - score).mean()


def _valid_target(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.ndim < 3 or target.shape != (logits.shape[0], *logits.shape[2:]):
        msg = (
            "target must have shape (B, *spatial) matching logits (B, C, *spatial); "
            f"got logits {tuple(logits.shape)} and target {tuple(target.shape)}."
        )
        raise ValueError(msg)
    target = target.long()
    valid = torch.ones_like(target, dtype=torch.bool)
    if ignore_index is not None:
        valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    if safe_target.numel() and (safe_target.min() < 0 or safe_target.max() >= logits.shape[1]):
        msg = (
            f"target labels must lie in [0, {logits.shape[1] - 1}] (logits have "
            f"{logits.shape[1]} classes); got range [{int(safe_target.min())}, "
            f"{int(safe_target.max())}]."
        )
        raise ValueError(msg)
    return valid.to(logits.dtype), safe_target


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ce_weight: float = 1.0,
    dice_weight: float = 1.0,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Cross-entropy plus soft Dice loss, the trainer's default for segmentation.

    ``L = ce_weight * CE(logits, target) + dice_weight * dice_loss(logits, target)``.

    Examples:
        >>> import torch
        >>> logits = torch.zeros(1, 2, 2, 2)
        >>> target = torch.zeros(1, 2, 2, dtype=torch.long)
        >>> round(segmentation_loss(logits, target, dice_weight=0.0).item(), 4)  # ln 2
        0.6931

    """
    _valid_target(logits, target, ignore_index)
    ce = F.cross_entropy(
        logits, target.long(), ignore_index=-100 if ignore_index is None else ignore_index
    )
    if dice_weight == 0:
        return ce_weight * ce
    return ce_weight * ce + dice_weight * dice_loss(logits, target, ignore_index=ignore_index)
