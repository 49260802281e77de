"""The aggregator contract, the classifier head and the aggregator registry.

Every aggregator (``a`` and the classifier ``f`` of ``y_hat = f(a(g(h)))``)
subclasses :class:`MILAggregator`: ``forward(features, mask=None)`` takes
``(B, N, D)`` features and a ``(B, N)`` bool mask and returns a dict with
``"logits"`` ``(B, C)`` and ``"embedding"``. :data:`AGGREGATORS` maps names to
classes; the package ``__init__`` fills it with the built-in families (this
module imports none of them) and :func:`create_aggregator` looks one up.

Examples:
    >>> sorted(AGGREGATORS)
    ['abmil', 'dsmil', 'gap', 'slotmil']
    >>> create_aggregator("gap", in_dim=4).config["num_classes"]
    2

"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from tia_scanner_robust.bags import check_bags, check_positive_int

__all__ = ["AGGREGATORS", "MILAggregator", "create_aggregator"]


def _config_kwargs(cls: type, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as a dict of keyword arguments, checked to be a mapping."""
    if not isinstance(config, Mapping):
        msg = f"{cls.__name__} config must be a mapping, got {type(config).__name__}."
        raise TypeError(msg)
    return dict(copy.deepcopy(config))


class MILAggregator(nn.Module):
    """Base class of the aggregators: argument checks and the shared contract.

    Subclasses implement ``forward(features, mask=None) -> dict`` with at
    least ``"logits"`` ``(B, C)`` and ``"embedding"``.

    Args:
        in_dim: Instance feature size ``D``.
        num_classes: Number of output logits ``C``.

    Examples:
        >>> class MaxPool(MILAggregator):
        ...     def forward(self, features, mask=None):
        ...         mask = self._check(features, mask)
        ...         pooled = features.masked_fill(~mask[..., None], float("-inf")).amax(dim=1)
        ...         return {"logits": pooled[:, : self.num_classes], "embedding": pooled}
        >>> MaxPool(4)(torch.randn(2, 3, 4))["logits"].shape
        torch.Size([2, 2])

    """

    #: Whether the aggregator offers ``slot_mixup`` (mixes labels; see SlotMIL).
    supports_mixup: ClassVar[bool] = False

    def __init__(self, in_dim: int, num_classes: int = 2) -> None:
        super().__init__()
        self.in_dim = check_positive_int(in_dim, "in_dim")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        #: Constructor arguments besides ``in_dim``/``num_classes`` (subclasses fill it).
        self._extra_config: dict[str, Any] = {}

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (a JSON-serialisable dict; see :meth:`from_config`).

        ``in_dim``, ``num_classes`` and what the subclass recorded in
        ``_extra_config`` (a custom subclass that records nothing is rebuilt
        with its defaults).
        """
        return {
            "in_dim": self.in_dim,
            "num_classes": self.num_classes,
            **copy.deepcopy(self._extra_config),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MILAggregator:
        """Rebuild from :attr:`config` (fresh weights).

        Examples:
            >>> from tia_scanner_robust.models.mil import ABMILAggregator
            >>> agg = ABMILAggregator(8, attention_dim=4, gated=False)
            >>> ABMILAggregator.from_config(agg.config).config == agg.config
            True

        """
        return cls(**_config_kwargs(cls, config))

    def _check(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return check_bags(features, mask, self.in_dim)


def _classifier(in_dim: int, num_classes: int, hidden_dim: int | None, dropout: float) -> nn.Module:
    if hidden_dim is None:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, num_classes))
    hidden_dim = check_positive_int(hidden_dim, "hidden_dim")
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_dim, num_classes),
    )


#: Aggregator names accepted by :func:`create_aggregator` and :class:`MILModel`
#: (filled by :mod:`tia_scanner_robust.models.mil` with the built-in families).
AGGREGATORS: dict[str, type[MILAggregator]] = {}


def create_aggregator(name: str, **kwargs: Any) -> MILAggregator:
    """Build an aggregator by name (``"gap"``, ``"abmil"``, ``"dsmil"``, ``"slotmil"``).

    Args:
        name: Case-insensitive aggregator name.
        **kwargs: Passed to the class (``in_dim`` is required).

    Raises:
        ValueError: For an unknown name (the message lists the valid ones).

    Examples:
        >>> type(create_aggregator("GAP", in_dim=8)).__name__
        'GAPAggregator'
        >>> create_aggregator("transmil", in_dim=8)
        Traceback (most recent call last):
        ...
        ValueError: Unknown aggregator 'transmil'; valid names: abmil, dsmil, gap, slotmil.

    """
    key = name.lower() if isinstance(name, str) else name
    if key not in AGGREGATORS:
        msg = f"Unknown aggregator {name!r}; valid names: {', '.join(sorted(AGGREGATORS))}."
        raise ValueError(msg)
    return AGGREGATORS[key](**kwargs)
