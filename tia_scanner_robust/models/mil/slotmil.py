"""Slot-MIL (Keum, Kim, Lee and Lee, 2023): slot attention pooling with slot-mixup.

Examples:
    >>> agg = SlotMILAggregator(8, num_slots=2, num_heads=2).eval()
    >>> tuple(agg(torch.randn(1, 4, 8))["slot_attention"].shape)
    (1, 2, 4)

"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn

from tia_scanner_robust.bags import check_positive_int, subsample_mask
from tia_scanner_robust.models.mil.base import MILAggregator
from tia_scanner_robust.seeding import make_rng

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SlotMILAggregator"]


class SlotMILAggregator(MILAggregator):
    """Slot-MIL (Keum, Kim, Lee and Lee, 2023): slot attention pooling.

    ``S`` learnable slots attend to the instances once (one iteration of slot
    attention, Locatello et al. 2020, with multi-head projections):
    ``A = softmax_over_slots(q(slots) k(h)^T / sqrt(d_h))``, then each slot
    takes the ``A``-weighted mean of ``v(h)`` over the real instances
    (weights renormalised over instances, ``+eps`` as in slot attention), a
    residual update and an MLP. A single learnable query then attention-pools
    the ``S`` slots (pooling by multi-head attention) and a linear layer gives
    the logits.

    Training-time regularisers from the paper:

    - patch subsampling: in training mode only, each bag keeps a random subset
      of its instances (``subsample``: a fraction in ``(0, 1]`` or an integer
      count; ``None`` disables it). Evaluation mode is deterministic.
    - slot-mixup: :meth:`slot_mixup` mixes the slots of a bag with those of
      another bag of the batch, ``lam * S_i + (1 - lam) * S_perm(i)`` with
      ``lam ~ Beta(alpha, alpha)`` (one ``lam`` per batch as in Zhang et al.'s
      mixup), and returns the mixed soft targets. Slots are aligned across
      bags (the same learnable queries), which is what makes the mixing
      meaningful. It is a separate method because it changes the labels: the
      training step calls it instead of ``forward`` and uses
      ``F.cross_entropy(logits, soft_targets)``.

    ``attention`` ``(B, N)`` is the instance weight implied by the two
    poolings (``sum_s w_s A'[s, n]``, sums to 1 per bag); ``slot_attention``
    ``(B, S, N)`` and ``slots`` ``(B, S, d)`` are returned too.

    Args:
        in_dim: Instance feature size.
        num_classes: Number of classes.
        num_slots: Number of slots ``S`` (16 in the paper's default setting).
        num_heads: Attention heads (must divide ``hidden_dim``).
        hidden_dim: Slot width ``d``; ``None`` means ``in_dim``.
        subsample: Training-time patch subsampling (fraction or count).
        dropout: Dropout before the classifier.
        eps: Added to the slot attention before renormalising over instances.

    Examples:
        >>> agg = SlotMILAggregator(8, num_slots=4, num_heads=2).eval()
        >>> out = agg(torch.randn(2, 6, 8))
        >>> tuple(out["slots"].shape), tuple(out["attention"].shape)
        ((2, 4, 8), (2, 6))

    """

    supports_mixup: ClassVar[bool] = True

    def __init__(
        self,
        in_dim: int,
        num_classes: int = 2,
        *,
        num_slots: int = 16,
        num_heads: int = 4,
        hidden_dim: int | None = None,
        subsample: float | None = None,
        dropout: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(in_dim, num_classes)
        self.num_slots = check_positive_int(num_slots, "num_slots")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.hidden_dim = (
            self.in_dim if hidden_dim is None else check_positive_int(hidden_dim, "hidden_dim")
        )
        if self.hidden_dim % self.num_heads:
            msg = f"num_heads ({self.num_heads}) must divide hidden_dim ({self.hidden_dim})."
            raise ValueError(msg)
        if subsample is not None and not (
            (isinstance(subsample, float) and 0.0 < subsample <= 1.0)
            or (isinstance(subsample, int) and not isinstance(subsample, bool) and subsample >= 1)
        ):
            msg = (
                "subsample must be None, a fraction in (0, 1] or a positive int, "
                f"got {subsample!r}."
            )
            raise ValueError(msg)
        self.subsample = subsample
        self.eps = float(eps)
        d = self.hidden_dim
        self.slots = nn.Parameter(torch.randn(self.num_slots, d) * d**-0.5)
        self.norm_input = nn.LayerNorm(self.in_dim)
        self.norm_slots = nn.LayerNorm(d)
        self.to_q = nn.Linear(d, d)
        self.to_k = nn.Linear(self.in_dim, d)
        self.to_v = nn.Linear(self.in_dim, d)
        self.to_out = nn.Linear(d, d)
        self.norm_mlp = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        self.pool_query = nn.Parameter(torch.randn(1, 1, d) * d**-0.5)
        self.pool = nn.MultiheadAttention(d, self.num_heads, batch_first=True)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(d, self.num_classes))
        self._extra_config = {
            "num_slots": self.num_slots,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "subsample": (
                None
                if subsample is None
                else float(subsample)
                if isinstance(subsample, float)
                else int(subsample)
            ),
            "dropout": float(dropout),
            "eps": self.eps,
        }

    def _training_mask(self, mask: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if not self.training or self.subsample is None:
            return mask
        if isinstance(self.subsample, float):  # a fraction of each bag's real instances
            n_keep: int | torch.Tensor = torch.ceil(self.subsample * mask.sum(dim=1)).clamp_min(1)
        else:
            n_keep = self.subsample
        return subsample_mask(mask, n_keep, generator)

    def encode(
        self,
        features: torch.Tensor,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Slots of each bag.

        Returns:
            ``(slots (B, S, d), slot_attention (B, S, N), mask used (B, N))``;
            ``slot_attention`` is averaged over heads and sums to 1 over the
            real (and, in training, kept) instances of each slot.

        """
        mask = self._training_mask(self._check(features, mask), generator)
        batch, n_instances = mask.shape
        heads, d_head = self.num_heads, self.hidden_dim // self.num_heads
        inputs = self.norm_input(features)
        keys = self.to_k(inputs).view(batch, n_instances, heads, d_head)
        values = self.to_v(inputs).view(batch, n_instances, heads, d_head)
        init = self.slots.unsqueeze(0).expand(batch, -1, -1)
        queries = self.to_q(self.norm_slots(init)).view(batch, self.num_slots, heads, d_head)
        scores = torch.einsum("bshd,bnhd->bhsn", queries, keys) * d_head**-0.5
        attention = torch.softmax(scores, dim=2)  # slots compete for each instance
        attention = (attention + self.eps) * mask[:, None, None, :].to(attention.dtype)
        attention = attention / attention.sum(dim=-1, keepdim=True)  # weighted mean over instances
        updates = torch.einsum("bhsn,bnhd->bshd", attention, values).reshape(
            batch, self.num_slots, -1
        )
        slots = init + self.to_out(updates)
        slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attention.mean(dim=1), mask

    def classify(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pool slots ``(B, S, d)`` with the learnable query and classify.

        Returns:
            ``(logits (B, C), slot_weights (B, S), embedding (B, d))``.

        """
        query = self.pool_query.expand(slots.shape[0], -1, -1)
        pooled, weights = self.pool(
            query, slots, slots, need_weights=True, average_attn_weights=True
        )
        embedding = pooled.squeeze(1)
        return self.classifier(embedding), weights.squeeze(1), embedding

    def forward(
        self,
        features: torch.Tensor,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Encode, pool and classify; see the class docstring for the output keys."""
        slots, slot_attention, used = self.encode(features, mask, generator)
        logits, slot_weights, embedding = self.classify(slots)
        attention = torch.einsum("bs,bsn->bn", slot_weights, slot_attention)
        return {
            "logits": logits,
            "attention": attention,
            "slot_attention": slot_attention,
            "slot_weights": slot_weights,
            "slots": slots,
            "embedding": embedding,
            "mask": used,
        }

    def slot_mixup(
        self,
        features: torch.Tensor,
        mask: torch.Tensor | None,
        targets: torch.Tensor,
        *,
        alpha: float = 1.0,
        rng: int | np.random.Generator | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Slot-mixup: classify mixed slots of bag pairs and mix their labels.

        Args:
            features: ``(B, N, D)`` instance features.
            mask: ``(B, N)`` padding mask (or ``None``).
            targets: ``(B,)`` class indices or ``(B, C)`` soft targets.
            alpha: Beta distribution parameter of the mixing weight.
            rng: Seed or NumPy generator for ``lam`` (see
                :func:`tia_scanner_robust.seeding.make_rng`).
            generator: Torch generator for the pairing permutation and the
                patch subsampling.

        Returns:
            Dict with ``logits`` ``(B, C)``, ``targets`` ``(B, C)`` soft
            targets for ``F.cross_entropy``, ``lam`` (0-d tensor) and
            ``permutation`` ``(B,)``.

        Examples:
            >>> agg = SlotMILAggregator(8, num_slots=4, num_heads=2)
            >>> out = agg.slot_mixup(torch.randn(4, 6, 8), None, torch.tensor([0, 1, 0, 1]), rng=0)
            >>> torch.allclose(out["targets"].sum(dim=1), torch.ones(4))
            True

        """
        if alpha <= 0:
            msg = f"alpha must be positive, got {alpha}."
            raise ValueError(msg)
        slots, _, _ = self.encode(features, mask, generator)
        batch = slots.shape[0]
        if targets.ndim == 1:
            soft = F.one_hot(targets.long(), self.num_classes).to(slots.dtype)
        elif targets.ndim == 2 and targets.shape[1] == self.num_classes:
            soft = targets.to(slots.dtype)
        else:
            msg = (
                f"targets must have shape (B,) or (B, {self.num_classes}), "
                f"got {tuple(targets.shape)}."
            )
            raise ValueError(msg)
        if soft.shape[0] != batch:
            msg = f"targets has {soft.shape[0]} rows for a batch of {batch} bags."
            raise ValueError(msg)
        lam = float(make_rng(rng).beta(alpha, alpha))
        device = generator.device if generator is not None else "cpu"
        permutation = torch.randperm(batch, generator=generator, device=device).to(slots.device)
        mixed = lam * slots + (1.0 - lam) * slots[permutation]
        logits, _, _ = self.classify(mixed)
        return {
            "logits": logits,
            "targets": lam * soft + (1.0 - lam) * soft[permutation],
            "lam": torch.tensor(lam),
            "permutation": permutation,
        }
