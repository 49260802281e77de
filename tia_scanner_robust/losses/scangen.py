"""ScanGen loss: contrastive attraction across scanners, repulsion within a scanner.

METHODS.md section 1.1 (ScanGen paper, Eq. 2). For a batch of embeddings
``z_i`` with specimen ids ``p_i`` and scanner ids ``s_i`` and the cosine
distance ``d(i, j) = 1 - cos(z_i, z_j)``::

    P = {(i, j): i != j, p_i == p_j, s_i != s_j}     (attraction)
    N = {(i, j): i != j, s_i == s_j, p_i != p_j}     (repulsion)

    L = ( sum_P alpha d^2 + sum_N (1 - alpha) max(0, m - d)^2 ) / (|P| + |N|)

Pairs are *ordered*: ``(i, j)`` and ``(j, i)`` are both counted, in the sums
and in ``|P| + |N|`` alike, so the value equals the unordered-pair version.
``squared=False`` uses ``d`` and the plain hinge ``max(0, m - d)``. A batch
without any valid pair gives a zero loss that is still attached to the graph
(its gradient is zero). One ``B x B`` distance matrix and two boolean masks;
no Python loop over pairs.

Examples:
    >>> import torch
    >>> loss_fn = ScanGenLoss(alpha=0.5, margin=0.5)
    >>> z = torch.randn(6, 16, requires_grad=True)
    >>> loss = loss_fn(z, ["a", "a", "b", "b", "c", "c"], ["s1", "s2"] * 3)
    >>> loss.backward()
    >>> z.grad.shape
    torch.Size([6, 16])

"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal, overload

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn

from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.bags import check_bags, masked_mean, subsample_mask
from tia_scanner_robust.losses.pairs import scangen_pair_masks

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tia_scanner_robust.losses.pairs import IdsLike

__all__ = [
    "GRANULARITIES",
    "ScanGenLoss",
    "ScanGenStats",
    "cosine_distance_matrix",
    "scangen_loss",
    "scangen_loss_and_stat_tensors",
    "slide_embeddings",
]

#: What one ScanGen sample is: a slide embedding (mean of ``g`` over a random
#: subset of its patches) or an individual patch embedding.
GRANULARITIES = ("slide", "patch")


@dataclass(frozen=True)
class ScanGenStats:
    """Diagnostics of one ScanGen batch (detached Python numbers, for logging).

    Attributes:
        n_attract: ``|P|``, ordered attraction pairs.
        n_repel: ``|N|``, ordered repulsion pairs.
        mean_attract_distance: Mean ``d`` over ``P`` (NaN when ``P`` is empty).
        mean_repel_distance: Mean ``d`` over ``N`` (NaN when ``N`` is empty).
        active_repel_fraction: Fraction of ``N`` with ``d < margin`` (the
            pairs that still push; NaN when ``N`` is empty).
        attract_term: Attraction part of the loss (already divided by
            ``|P| + |N|``).
        repel_term: Repulsion part; ``loss = attract_term + repel_term``.
        loss: The loss value.

    """

    n_attract: int
    n_repel: int
    mean_attract_distance: float
    mean_repel_distance: float
    active_repel_fraction: float
    attract_term: float
    repel_term: float
    loss: float

    def to_dict(self, prefix: str = "scangen/") -> dict[str, float]:
        """Flat ``{prefix + name: value}`` dict for a logger.

        Examples:
            >>> s = ScanGenStats(2, 2, 0.1, 0.9, 0.0, 0.005, 0.0, 0.005)
            >>> s.to_dict()["scangen/n_attract"]
            2

        """
        return {f"{prefix}{key}": value for key, value in asdict(self).items()}

    @classmethod
    def from_tensors(cls, stats: Mapping[str, torch.Tensor]) -> ScanGenStats:
        """Python numbers from :func:`scangen_loss_and_stat_tensors`'s stats (one read-back).

        Examples:
            >>> t = {name: torch.tensor(0.0) for name in ScanGenStats.__dataclass_fields__}
            >>> ScanGenStats.from_tensors(t).n_attract
            0

        """
        names = list(cls.__dataclass_fields__)
        values = torch.stack([stats[name].detach().to(torch.float64) for name in names]).tolist()
        numbers = dict(zip(names, values, strict=True))
        numbers["n_attract"] = int(numbers["n_attract"])
        numbers["n_repel"] = int(numbers["n_repel"])
        return cls(**numbers)


def _check_embeddings(embeddings: torch.Tensor) -> torch.Tensor:
    if not isinstance(embeddings, torch.Tensor) or not embeddings.dtype.is_floating_point:
        msg = "embeddings must be a floating-point torch tensor of shape (B, D)."
        raise TypeError(msg)
    if embeddings.ndim != 2:
        msg = f"embeddings must have shape (B, D), got {tuple(embeddings.shape)}."
        raise ValueError(msg)
    if embeddings.dtype in (torch.float16, torch.bfloat16):
        return embeddings.float()  # the distance matrix needs float32 precision
    return embeddings


def cosine_distance_matrix(embeddings: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(B, B)`` cosine distances ``1 - cos(z_i, z_j)``, clamped to ``[0, 2]``.

    Rows are normalised with ``z / max(||z||, eps)`` (a zero vector stays zero
    and has distance 1 to everything), so the gradient is finite everywhere.

    Examples:
        >>> d = cosine_distance_matrix(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]))
        >>> d.tolist()
        [[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]]

    """
    embeddings = _check_embeddings(embeddings)
    unit = F.normalize(embeddings, p=2.0, dim=1, eps=eps)
    return (1.0 - unit @ unit.T).clamp(0.0, 2.0)


def _check_params(alpha: float, margin: float) -> tuple[float, float]:
    alpha = float(alpha)
    margin = float(margin)
    if not 0.0 <= alpha <= 1.0:
        msg = f"alpha must be in [0, 1], got {alpha}."
        raise ValueError(msg)
    if not 0.0 < margin <= 2.0:
        msg = f"margin must be in (0, 2] (cosine distances lie in [0, 2]), got {margin}."
        raise ValueError(msg)
    return alpha, margin


@overload
def scangen_loss(
    embeddings: torch.Tensor,
    specimen_ids: IdsLike,
    scanner_ids: IdsLike,
    alpha: float = ...,
    margin: float = ...,
    *,
    squared: bool = ...,
    eps: float = ...,
    return_stats: Literal[False] = ...,
) -> torch.Tensor: ...


@overload
def scangen_loss(
    embeddings: torch.Tensor,
    specimen_ids: IdsLike,
    scanner_ids: IdsLike,
    alpha: float = ...,
    margin: float = ...,
    *,
    squared: bool = ...,
    eps: float = ...,
    return_stats: Literal[True],
) -> tuple[torch.Tensor, ScanGenStats]: ...


def scangen_loss(
    embeddings: torch.Tensor,
    specimen_ids: IdsLike,
    scanner_ids: IdsLike,
    alpha: float = 0.5,
    margin: float = 0.5,
    *,
    squared: bool = True,
    eps: float = 1e-8,
    return_stats: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ScanGenStats]:
    """Functional ScanGen loss (see the module docstring for the equation).

    Args:
        embeddings: ``(B, D)`` embeddings ``z = g(h)`` (float16/bfloat16 are
            computed in float32).
        specimen_ids: ``B`` specimen ids (int tensor, or a sequence of str/int).
        scanner_ids: ``B`` scanner ids.
        alpha: Weight of attraction; repulsion gets ``1 - alpha``.
        margin: Radius ``m`` of the repulsion hinge, in ``(0, 2]``.
        squared: Squared distance and squared hinge (the paper) or plain.
        eps: Normalisation floor of the cosine distance.
        return_stats: Also return a :class:`ScanGenStats`.

    Returns:
        The 0-d loss, or ``(loss, stats)``.

    Raises:
        TypeError: If ``embeddings`` is not a floating-point tensor, or ids
            are floating point.
        ValueError: On bad shapes, lengths or parameter values.

    Examples:
        >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> # (0, 1): same specimen, other scanner -> attraction, d = 1
        >>> # (0, 2): same scanner, other specimen  -> repulsion, d = 0
        >>> loss = scangen_loss(z, [0, 0, 1], [0, 1, 0], alpha=0.5, margin=0.5)
        >>> round(loss.item(), 6)  # (2 * 0.5 * 1 + 2 * 0.5 * 0.25) / 4
        0.3125

    """
    loss, stats = _scangen_terms(
        embeddings,
        specimen_ids,
        scanner_ids,
        alpha,
        margin,
        squared=squared,
        eps=eps,
        with_stats=return_stats,
    )
    if not return_stats:
        return loss
    return loss, ScanGenStats.from_tensors(stats)  # type: ignore[arg-type]


def scangen_loss_and_stat_tensors(
    embeddings: torch.Tensor,
    specimen_ids: IdsLike,
    scanner_ids: IdsLike,
    alpha: float = 0.5,
    margin: float = 0.5,
    *,
    squared: bool = True,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`scangen_loss` plus its diagnostics as 0-d tensors (no device sync).

    The stats are the :class:`ScanGenStats` fields as detached 0-d tensors on
    the embeddings' device (``n_attract``/``n_repel`` int64, the others
    float; the means are NaN when their pair set is empty), computed with
    masked sums instead of boolean indexing, so nothing is read back to the
    host: a training loop can log them and read every logged value back at
    once. :meth:`ScanGenStats.from_tensors` turns them into Python numbers.

    Returns:
        ``(loss, {field name: 0-d tensor})``.

    Examples:
        >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> loss, stats = scangen_loss_and_stat_tensors(z, [0, 0, 1], [0, 1, 0])
        >>> int(stats["n_attract"]), round(float(stats["mean_attract_distance"]), 6)
        (2, 1.0)

    """
    loss, stats = _scangen_terms(
        embeddings,
        specimen_ids,
        scanner_ids,
        alpha,
        margin,
        squared=squared,
        eps=eps,
        with_stats=True,
    )
    return loss, stats  # type: ignore[return-value]


def _scangen_terms(
    embeddings: torch.Tensor,
    specimen_ids: IdsLike,
    scanner_ids: IdsLike,
    alpha: float,
    margin: float,
    *,
    squared: bool,
    eps: float,
    with_stats: bool,
) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
    """The loss and (``with_stats``) its stats as 0-d device tensors; no host sync."""
    alpha, margin = _check_params(alpha, margin)
    embeddings = _check_embeddings(embeddings)
    attract, repel = scangen_pair_masks(specimen_ids, scanner_ids, device=embeddings.device)
    if attract.shape[0] != embeddings.shape[0]:
        msg = f"got {attract.shape[0]} ids for {embeddings.shape[0]} embeddings."
        raise ValueError(msg)
    unit = F.normalize(embeddings, p=2.0, dim=1, eps=eps)
    cos = unit @ unit.T
    # d = 1 - cos and max(0, m - d) = max(0, cos - (1 - m)); torch.where keeps the
    # masked-out entries (and their gradients) at exactly zero without float masks.
    attract_values = 1.0 - cos
    repel_values = (cos - (1.0 - margin)).clamp_min(0.0)
    if squared:
        attract_values, repel_values = attract_values.square(), repel_values.square()
    else:  # rounding can give cos slightly above 1: keep d >= 0 in the plain form
        attract_values = attract_values.clamp_min(0.0)
    n_attract = attract.sum()
    n_repel = repel.sum()
    # clamp: an empty batch divides 0 by 1, keeping a (zero) gradient path.
    n_total = (n_attract + n_repel).clamp_min(1).to(cos.dtype)
    attract_term = alpha * torch.where(attract, attract_values, 0.0).sum() / n_total
    repel_term = (1.0 - alpha) * torch.where(repel, repel_values, 0.0).sum() / n_total
    loss = attract_term + repel_term
    if not with_stats:
        return loss, None
    with torch.no_grad():
        distance = (1.0 - cos).clamp(0.0, 2.0)
        # masked sums, not boolean indexing: no data-dependent shape, no sync
        pairs = torch.stack([attract, repel, repel & (distance < margin)]).to(cos.dtype)
        counts = pairs.sum(dim=(1, 2))  # |P|, |N|, active repulsion pairs
        sums = (pairs[:2] * distance).sum(dim=(1, 2))
        numerators = torch.cat([sums, counts[2:]])
        denominators = torch.stack([counts[0], counts[1], counts[1]])
        means = torch.where(
            denominators > 0, numerators / denominators.clamp_min(1.0), math.nan
        )  # NaN where the pair set is empty
        stats = {
            "n_attract": n_attract,
            "n_repel": n_repel,
            "mean_attract_distance": means[0],
            "mean_repel_distance": means[1],
            "active_repel_fraction": means[2],
            "attract_term": attract_term.detach(),
            "repel_term": repel_term.detach(),
            "loss": loss.detach(),
        }
    return loss, stats


class ScanGenLoss(nn.Module):
    """ScanGen contrastive loss as an ``nn.Module`` (paper Eq. 2).

    ``forward(embeddings (B, D), specimen_ids, scanner_ids)`` returns a 0-d
    tensor; see :func:`scangen_loss` and the module docstring.

    Args:
        alpha: Attraction weight (``1 - alpha`` for repulsion); the paper
            finds 0.3-0.7 appropriate.
        margin: Repulsion radius ``m`` in ``(0, 2]`` (paper range 0.2-1.0).
        squared: Squared distance/hinge (default, the paper) or plain.
        granularity: ``"slide"`` (default: each sample is the mean of ``g``
            over a random subset of a slide's patches, see
            :func:`slide_embeddings`) or ``"patch"`` (individual patch
            embeddings). Metadata for the training hook and sampler: the loss
            itself only sees ``(B, D)`` embeddings.
        eps: Normalisation floor of the cosine distance.

    Examples:
        >>> loss_fn = ScanGenLoss(alpha=0.5, margin=0.5)
        >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> loss, stats = loss_fn(z, [0, 0, 1], [0, 1, 0], return_stats=True)
        >>> round(loss.item(), 6), stats.n_attract, stats.n_repel
        (0.3125, 2, 2)
        >>> ScanGenLoss()(torch.randn(2, 4, requires_grad=True), ["a", "b"], ["x", "y"]).item()
        0.0

    """

    def __init__(
        self,
        alpha: float = 0.5,
        margin: float = 0.5,
        *,
        squared: bool = True,
        granularity: str = "slide",
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.alpha, self.margin = _check_params(alpha, margin)
        self.squared = bool(squared)
        self.granularity = check_in_choices(granularity, GRANULARITIES, "granularity")
        if eps <= 0:
            msg = f"eps must be positive, got {eps}."
            raise ValueError(msg)
        self.eps = float(eps)

    def forward(
        self,
        embeddings: torch.Tensor,
        specimen_ids: IdsLike,
        scanner_ids: IdsLike,
        *,
        return_stats: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, ScanGenStats]:
        """Compute the loss (and, with ``return_stats=True``, its diagnostics)."""
        return scangen_loss(
            embeddings,
            specimen_ids,
            scanner_ids,
            self.alpha,
            self.margin,
            squared=self.squared,
            eps=self.eps,
            return_stats=return_stats,
        )

    def loss_and_stat_tensors(
        self, embeddings: torch.Tensor, specimen_ids: IdsLike, scanner_ids: IdsLike
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss and its stats as 0-d tensors (:func:`scangen_loss_and_stat_tensors`)."""
        return scangen_loss_and_stat_tensors(
            embeddings,
            specimen_ids,
            scanner_ids,
            self.alpha,
            self.margin,
            squared=self.squared,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        """Hyper-parameters shown by ``print(module)``."""
        return (
            f"alpha={self.alpha}, margin={self.margin}, squared={self.squared}, "
            f"granularity={self.granularity!r}"
        )


def slide_embeddings(
    projected_bags: torch.Tensor,
    mask: torch.Tensor | None = None,
    n_subsample: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Slide-granularity ScanGen samples: mean of ``g`` over random patch subsets.

    Args:
        projected_bags: ``(B, N, D')`` projected patch embeddings ``g(h)``.
        mask: ``(B, N)`` real-instance mask (``None``: all real).
        n_subsample: Patches averaged per slide (uniform without replacement
            among the real ones); ``None`` uses them all.
        generator: Torch generator for the subset.

    Returns:
        ``(B, D')`` slide embeddings.

    Note:
        To save compute, subsample *before* projecting:
        ``f, m = subsample_bags(features, mask, n)`` (from
        :mod:`tia_scanner_robust.models.mil`) then
        ``slide_embeddings(model.embed(f), m)``; the result has the same
        distribution.

    Examples:
        >>> z = slide_embeddings(torch.ones(2, 5, 3), n_subsample=2)
        >>> z.tolist()
        [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]

    """
    mask = check_bags(projected_bags, mask)
    if n_subsample is not None:
        mask = subsample_mask(mask, n_subsample, generator)
    return masked_mean(projected_bags, mask)
