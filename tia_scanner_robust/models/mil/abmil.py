"""Attention-based MIL pooling (Ilse, Tomczak and Welling, ICML 2018).

Examples:
    >>> out = ABMILAggregator(8, gated=False)(torch.randn(2, 5, 8))
    >>> tuple(out["logits"].shape)
    (2, 2)

"""

from __future__ import annotations

import torch
from torch import nn

from tia_scanner_robust.bags import check_positive_int, masked_softmax
from tia_scanner_robust.models.mil.base import MILAggregator

__all__ = ["ABMILAggregator"]


class ABMILAggregator(MILAggregator):
    """Attention-based MIL pooling (Ilse, Tomczak and Welling, ICML 2018).

    Gated attention (the paper's Eq. 9):
    ``a_k = softmax_k( w^T (tanh(V h_k) * sigmoid(U h_k)) )``,
    ``z = sum_k a_k h_k``, ``logits = W z + b``; ``gated=False`` drops the
    sigmoid gate (Eq. 8). The instance feature layer of the original network is
    the projection ``g`` here, so it is not repeated.

    Args:
        in_dim: Instance feature size.
        num_classes: Number of classes.
        attention_dim: Width ``L`` of the attention network (128 in the paper).
        gated: Use the gated variant.
        dropout: Dropout on the pooled embedding before the classifier.

    Examples:
        >>> out = ABMILAggregator(8)(torch.randn(2, 5, 8))
        >>> torch.allclose(out["attention"].sum(dim=1), torch.ones(2))
        True

    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int = 2,
        attention_dim: int = 128,
        *,
        gated: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dim, num_classes)
        attention_dim = check_positive_int(attention_dim, "attention_dim")
        self.gated = gated
        self.attention_v = nn.Linear(self.in_dim, attention_dim)
        self.attention_u = nn.Linear(self.in_dim, attention_dim) if gated else None
        self.attention_w = nn.Linear(attention_dim, 1)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(self.in_dim, self.num_classes)
        )
        self._extra_config = {
            "attention_dim": attention_dim,
            "gated": bool(gated),
            "dropout": float(dropout),
        }

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Attention-pool and classify; see the class docstring."""
        mask = self._check(features, mask)
        hidden = torch.tanh(self.attention_v(features))
        if self.attention_u is not None:
            hidden = hidden * torch.sigmoid(self.attention_u(features))
        scores = self.attention_w(hidden).squeeze(-1)
        attention = masked_softmax(scores, mask, dim=1)
        embedding = torch.einsum("bn,bnd->bd", attention, features)
        return {
            "logits": self.classifier(embedding),
            "attention": attention,
            "embedding": embedding,
        }
