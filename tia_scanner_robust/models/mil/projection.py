"""The projection ``g`` of ``y_hat = f(a(g(h)))``: an MLP on every patch embedding.

Examples:
    >>> g = ProjectionMLP(32, hidden_dim=16, out_dim=8)
    >>> tuple(g(torch.randn(4, 32)).shape)
    (4, 8)

"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tia_scanner_robust.bags import check_positive_int
from tia_scanner_robust.models.mil.base import _config_kwargs

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ProjectionMLP"]


class ProjectionMLP(nn.Module):
    """The projection ``g``: an MLP applied to every patch embedding.

    ``num_layers`` linear layers (3 in the ScanGen paper) with ReLU and dropout
    between them and no activation after the last one. Works on any leading
    shape ``(..., in_dim)``.

    Args:
        in_dim: Feature size of the foundation model.
        hidden_dim: Width of the hidden layers (the paper uses 256-1024
            depending on the FM's feature size).
        out_dim: Output size; ``None`` means ``hidden_dim``.
        dropout: Dropout probability after each hidden activation.
        num_layers: Number of linear layers (at least 1).

    Examples:
        >>> g = ProjectionMLP(32, hidden_dim=16)
        >>> tuple(g(torch.randn(2, 5, 32)).shape)
        (2, 5, 16)

    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 512,
        out_dim: int | None = None,
        dropout: float = 0.0,
        num_layers: int = 3,
    ) -> None:
        super().__init__()
        self.in_dim = check_positive_int(in_dim, "in_dim")
        hidden_dim = check_positive_int(hidden_dim, "hidden_dim")
        self.out_dim = hidden_dim if out_dim is None else check_positive_int(out_dim, "out_dim")
        num_layers = check_positive_int(num_layers, "num_layers")
        if not 0.0 <= dropout < 1.0:
            msg = f"dropout must be in [0, 1), got {dropout}."
            raise ValueError(msg)
        self._config: dict[str, Any] = {
            "in_dim": self.in_dim,
            "hidden_dim": hidden_dim,
            "out_dim": self.out_dim,
            "dropout": float(dropout),
            "num_layers": num_layers,
        }
        widths = [self.in_dim] + [hidden_dim] * (num_layers - 1) + [self.out_dim]
        layers: list[nn.Module] = []
        for index in range(num_layers):
            layers.append(nn.Linear(widths[index], widths[index + 1]))
            if index < num_layers - 1:
                layers.extend([nn.ReLU(), nn.Dropout(dropout)])
        self.net = nn.Sequential(*layers)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (a JSON-serialisable dict; see :meth:`from_config`)."""
        return copy.deepcopy(self._config)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ProjectionMLP:
        """Rebuild from :attr:`config` (fresh weights).

        Examples:
            >>> ProjectionMLP.from_config(ProjectionMLP(8, 4).config).config["hidden_dim"]
            4

        """
        return cls(**_config_kwargs(cls, config))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Project ``(..., in_dim)`` features to ``(..., out_dim)``."""
        if features.shape[-1] != self.in_dim:
            msg = f"features have feature size {features.shape[-1]}, expected {self.in_dim}."
            raise ValueError(msg)
        return self.net(features)
