"""Dual-stream MIL (Li, Li and Eliceiri, CVPR 2021).

Examples:
    >>> out = DSMILAggregator(8, num_classes=3)(torch.randn(2, 5, 8))
    >>> tuple(out["class_attention"].shape)
    (2, 5, 3)

"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn

from tia_scanner_robust.bags import check_positive_int, masked_softmax
from tia_scanner_robust.models.mil.base import MILAggregator

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DSMILAggregator"]


class DSMILAggregator(MILAggregator):
    """Dual-stream MIL (Li, Li and Eliceiri, CVPR 2021), as in the official code.

    - Instance stream: a linear instance classifier gives ``instance_logits``
      ``(B, N, C)``; max-pooling over instances gives ``max_instance_logits``
      and, per class ``c``, the critical instance ``m_c``.
    - Bag stream: queries ``q_k = q(h_k)`` (``Linear-ReLU-Linear-Tanh`` of
      width ``query_dim``); the attention of instance ``k`` for class ``c`` is
      ``A[k, c] = softmax_k(<q_k, q_{m_c}> / sqrt(query_dim))`` (relative to the
      critical instance); ``b_c = sum_k A[k, c] v_k`` with ``v`` the identity
      (``passing_v=False``, the official default) or ``Dropout-Linear-ReLU``;
      ``bag_logits`` come from a ``Conv1d(C, C, kernel_size=D)`` over ``b``.
    - Combined ``logits = (bag_logits + max_instance_logits) / 2``. The
      official training script averages the two streams' losses and, at test
      time, their probabilities; averaging logits keeps the one-``logits``
      contract (train with CE on them). :meth:`paper_loss` gives the official
      ``0.5 * CE(bag) + 0.5 * CE(max instance)`` for those who want it.

    ``attention`` is ``A`` averaged over classes (``class_attention`` keeps the
    ``(B, N, C)`` array); ``embedding`` is ``b`` flattened to ``(B, C * D)``.

    Args:
        in_dim: Instance feature size.
        num_classes: Number of classes.
        query_dim: Width of the query network.
        nonlinear_query: Two-layer query network (official default) instead of
            one linear layer.
        passing_v: Transform the values with ``Dropout-Linear-ReLU``.
        dropout_v: Dropout of the value network.

    Examples:
        >>> out = DSMILAggregator(8, num_classes=2)(torch.randn(2, 5, 8))
        >>> tuple(out["instance_logits"].shape), tuple(out["logits"].shape)
        ((2, 5, 2), (2, 2))

    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int = 2,
        query_dim: int = 128,
        *,
        nonlinear_query: bool = True,
        passing_v: bool = False,
        dropout_v: float = 0.0,
    ) -> None:
        super().__init__(in_dim, num_classes)
        self.query_dim = check_positive_int(query_dim, "query_dim")
        self.instance_classifier = nn.Linear(self.in_dim, self.num_classes)
        if nonlinear_query:
            self.query = nn.Sequential(
                nn.Linear(self.in_dim, self.query_dim),
                nn.ReLU(),
                nn.Linear(self.query_dim, self.query_dim),
                nn.Tanh(),
            )
        else:
            self.query = nn.Linear(self.in_dim, self.query_dim)
        self.value: nn.Module = (
            nn.Sequential(nn.Dropout(dropout_v), nn.Linear(self.in_dim, self.in_dim), nn.ReLU())
            if passing_v
            else nn.Identity()
        )
        self.bag_classifier = nn.Conv1d(self.num_classes, self.num_classes, kernel_size=self.in_dim)
        self._extra_config = {
            "query_dim": self.query_dim,
            "nonlinear_query": bool(nonlinear_query),
            "passing_v": bool(passing_v),
            "dropout_v": float(dropout_v),
        }

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Run both streams; see the class docstring for the output keys."""
        mask = self._check(features, mask)
        instance_logits = self.instance_classifier(features)
        masked_logits = instance_logits.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        max_instance_logits, critical = masked_logits.max(dim=1)  # (B, C) each
        critical_features = features.gather(
            1, critical.unsqueeze(-1).expand(-1, -1, features.shape[-1])
        )  # (B, C, D)
        queries = self.query(features)  # (B, N, Q)
        critical_queries = self.query(critical_features)  # (B, C, Q)
        scores = torch.einsum("bnq,bcq->bnc", queries, critical_queries) / math.sqrt(self.query_dim)
        class_attention = masked_softmax(scores, mask.unsqueeze(-1), dim=1)  # over instances
        bag = torch.einsum("bnc,bnd->bcd", class_attention, self.value(features))  # (B, C, D')
        bag_logits = self.bag_classifier(bag).squeeze(-1)
        logits = 0.5 * (bag_logits + max_instance_logits)
        return {
            "logits": logits,
            "bag_logits": bag_logits,
            "max_instance_logits": max_instance_logits,
            "instance_logits": instance_logits.masked_fill(~mask.unsqueeze(-1), 0.0),
            "attention": class_attention.mean(dim=-1),
            "class_attention": class_attention,
            "embedding": bag.flatten(1),
        }

    @staticmethod
    def paper_loss(outputs: Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """The official DS-MIL objective ``0.5 * CE(bag) + 0.5 * CE(max instance)``.

        Examples:
            >>> agg = DSMILAggregator(8)
            >>> loss = agg.paper_loss(agg(torch.randn(2, 5, 8)), torch.tensor([0, 1]))
            >>> loss.ndim
            0

        """
        bag = F.cross_entropy(outputs["bag_logits"], target)
        instance = F.cross_entropy(outputs["max_instance_logits"], target)
        return 0.5 * (bag + instance)
