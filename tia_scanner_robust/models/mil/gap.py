"""Global average pooling aggregator (the one the ScanGen paper reports).

Examples:
    >>> import torch
    >>> out = GAPAggregator(8, hidden_dim=None)(torch.randn(2, 3, 8))
    >>> tuple(out["embedding"].shape)
    (2, 8)

"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tia_scanner_robust.bags import masked_mean
from tia_scanner_robust.models.mil.base import MILAggregator, _classifier

if TYPE_CHECKING:
    import torch

__all__ = ["GAPAggregator"]


class GAPAggregator(MILAggregator):
    """Global average pooling + MLP classifier (the ScanGen paper's aggregator).

    ``z = mean_k h_k`` over the real instances, ``logits = MLP(z)``. The
    returned ``attention`` is the uniform weight ``1 / n`` of each real
    instance.

    Args:
        in_dim: Instance feature size.
        num_classes: Number of classes.
        hidden_dim: Hidden width of the classifier MLP; ``None`` gives a
            single linear layer.
        dropout: Dropout before the classifier's last layer.

    Examples:
        >>> import torch
        >>> agg = GAPAggregator(8, num_classes=3)
        >>> out = agg(torch.randn(2, 4, 8))
        >>> tuple(out["logits"].shape), out["attention"][0].tolist()
        ((2, 3), [0.25, 0.25, 0.25, 0.25])

    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int = 2,
        hidden_dim: int | None = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dim, num_classes)
        self.classifier = _classifier(self.in_dim, self.num_classes, hidden_dim, dropout)
        self._extra_config = {
            "hidden_dim": None if hidden_dim is None else int(hidden_dim),
            "dropout": float(dropout),
        }

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Pool and classify; see the class docstring for the output keys."""
        mask = self._check(features, mask)
        embedding = masked_mean(features, mask)
        weights = mask.to(features.dtype)
        attention = weights / weights.sum(dim=1, keepdim=True)
        return {
            "logits": self.classifier(embedding),
            "attention": attention,
            "embedding": embedding,
        }
