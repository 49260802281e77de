"""The MIL model ``y_hat = f(a(g(h)))``: projection ``g`` chained with an aggregator.

Examples:
    >>> model = MILModel(16, aggregator="dsmil", projection_hidden=8)
    >>> out = model(torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool))
    >>> tuple(out["logits"].shape), tuple(out["projected"].shape)
    ((2, 2), (2, 5, 8))

"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm.auto import tqdm

from tia_scanner_robust.bags import check_bags, check_positive_int, pad_bags
from tia_scanner_robust.models.mil.base import _config_kwargs, create_aggregator
from tia_scanner_robust.models.mil.projection import ProjectionMLP

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import numpy as np

__all__ = ["MIL_CONFIG_KEYS", "MILModel"]


#: Keys of :attr:`MILModel.config` (the constructor's arguments).
MIL_CONFIG_KEYS: tuple[str, ...] = (
    "feature_dim",
    "num_classes",
    "aggregator",
    "projection",
    "projection_hidden",
    "projection_out",
    "projection_dropout",
    "aggregator_kwargs",
)


class MILModel(nn.Module):
    """Projection ``g`` + aggregator/classifier: ``logits = f(a(g(h)))``.

    The baseline keeps ``g`` too (the paper's fair comparison); set
    ``projection=False`` only for ablations (then ``g`` is the identity).

    Args:
        feature_dim: Foundation-model feature size ``D``.
        num_classes: Number of classes.
        aggregator: Name from :data:`AGGREGATORS`.
        projection_hidden: Hidden width of ``g``.
        projection_out: Output size of ``g`` (default: ``projection_hidden``).
        projection_dropout: Dropout inside ``g``.
        aggregator_kwargs: Extra keyword arguments of the aggregator.
        projection: Whether to use ``g`` at all.

    :attr:`config` holds every constructor argument (the aggregator's
    resolved keyword arguments included) as a JSON-serialisable dict, and
    :meth:`from_config` rebuilds the architecture from it; the trainer saves
    it as the checkpoints' ``"model_config"``.

    Examples:
        >>> model = MILModel(32, aggregator="gap", projection_hidden=16).eval()
        >>> probs = model.predict_bags([torch.randn(5, 32), torch.randn(9, 32)])["probabilities"]
        >>> probs.shape
        (2, 2)
        >>> model.config["aggregator"], model.config["aggregator_kwargs"]
        ('gap', {'hidden_dim': 256, 'dropout': 0.0})

    """

    def __init__(
        self,
        feature_dim: int,
        num_classes: int = 2,
        aggregator: str = "gap",
        *,
        projection_hidden: int = 512,
        projection_out: int | None = None,
        projection_dropout: float = 0.0,
        aggregator_kwargs: Mapping[str, Any] | None = None,
        projection: bool = True,
    ) -> None:
        super().__init__()
        self.feature_dim = check_positive_int(feature_dim, "feature_dim")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        if projection:
            self.projection: nn.Module = ProjectionMLP(
                self.feature_dim, projection_hidden, projection_out, projection_dropout
            )
            out_dim = self.projection.out_dim
        else:
            self.projection = nn.Identity()
            out_dim = self.feature_dim
        self.embedding_dim = out_dim
        self.aggregator_name = aggregator
        self.aggregator = create_aggregator(
            aggregator,
            in_dim=out_dim,
            num_classes=self.num_classes,
            **dict(aggregator_kwargs or {}),
        )
        self._projection_config: dict[str, Any] = {
            "projection": bool(projection),
            "projection_hidden": int(projection_hidden),
            "projection_out": None if projection_out is None else int(projection_out),
            "projection_dropout": float(projection_dropout),
        }

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model: a JSON-serialisable dict.

        Keys: ``feature_dim``, ``num_classes``, ``aggregator`` (lower-case
        name), ``projection``, ``projection_hidden``, ``projection_out``,
        ``projection_dropout`` and ``aggregator_kwargs`` (the aggregator's
        resolved keyword arguments, defaults included). It is also a valid
        ``model`` section for
        :func:`~tia_scanner_robust.models.mil.build_mil_model`.
        """
        aggregator_kwargs = self.aggregator.config
        del aggregator_kwargs["in_dim"], aggregator_kwargs["num_classes"]
        return {
            "feature_dim": self.feature_dim,
            "num_classes": self.num_classes,
            "aggregator": str(self.aggregator_name).lower(),
            **copy.deepcopy(self._projection_config),
            "aggregator_kwargs": aggregator_kwargs,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MILModel:
        """A model (fresh weights) with the architecture described by :attr:`config`.

        Keys other than ``feature_dim`` may be left out (constructor defaults).

        Raises:
            TypeError: If ``config`` is not a mapping.
            ValueError: On unknown keys or a missing ``feature_dim``.

        Examples:
            >>> model = MILModel(8, aggregator="slotmil", projection_hidden=8)
            >>> clone = MILModel.from_config(model.config)
            >>> clone.aggregator_name, clone.aggregator.num_slots
            ('slotmil', 16)

        """
        kwargs = _config_kwargs(cls, config)
        unknown = sorted(set(kwargs) - set(MIL_CONFIG_KEYS))
        if unknown:
            msg = f"Unknown MILModel config keys {unknown}; valid: {', '.join(MIL_CONFIG_KEYS)}."
            raise ValueError(msg)
        if "feature_dim" not in kwargs:
            msg = "MILModel config lacks 'feature_dim'."
            raise ValueError(msg)
        return cls(**kwargs)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Project patch embeddings with ``g``: ``(..., D) -> (..., D')``."""
        if features.shape[-1] != self.feature_dim:
            msg = f"features have feature size {features.shape[-1]}, expected {self.feature_dim}."
            raise ValueError(msg)
        return self.projection(features)

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Run ``f(a(g(h)))``; the aggregator's dict plus ``projected`` ``(B, N, D')``."""
        mask = check_bags(
            features, mask, self.feature_dim, check_empty=False
        )  # the aggregator does
        projected = self.embed(features)
        outputs = dict(self.aggregator(projected, mask))
        outputs["projected"] = projected
        return outputs

    def slot_mixup(
        self,
        features: torch.Tensor,
        mask: torch.Tensor | None,
        targets: torch.Tensor,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """Slot-mixup through ``g`` (only for aggregators with ``supports_mixup``)."""
        if not self.aggregator.supports_mixup:
            msg = (
                f"aggregator {self.aggregator_name!r} does not support slot-mixup (use 'slotmil')."
            )
            raise ValueError(msg)
        mask = check_bags(features, mask, self.feature_dim)
        return self.aggregator.slot_mixup(self.embed(features), mask, targets, **kwargs)

    @torch.no_grad()
    def predict_bags(
        self,
        bags: Iterable[torch.Tensor | np.ndarray | Mapping[str, Any]],
        batch_size: int = 8,
        device: torch.device | str | None = None,
        *,
        progress: bool = False,
    ) -> dict[str, np.ndarray]:
        """Slide-level predictions for a collection of bags, in evaluation mode.

        Args:
            bags: Bags of shape ``(N_i, D)`` (tensors or arrays), or dicts with
                a ``"features"`` entry (e.g. a
                :class:`~tia_scanner_robust.data.features.BagDataset`).
            batch_size: Bags per forward pass (padded to the largest).
            device: Device to run on (default: the model's).
            progress: Show a tqdm progress bar.

        Returns:
            Dict of NumPy arrays: ``logits`` ``(M, C)``, ``probabilities``
            (softmax) ``(M, C)`` and ``predictions`` ``(M,)``.

        """
        batch_size = check_positive_int(batch_size, "batch_size")
        if device is None:
            device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        logits: list[torch.Tensor] = []
        pending: list[torch.Tensor] = []

        def flush() -> None:
            features, mask = pad_bags(pending)
            logits.append(self(features.to(device), mask.to(device))["logits"].float().cpu())
            pending.clear()

        iterator: Iterable[Any] = bags
        if progress:
            iterator = tqdm(bags, desc="predict bags", unit="bag")
        try:
            for bag in iterator:
                features = bag["features"] if isinstance(bag, dict) else bag
                pending.append(torch.as_tensor(features))
                if len(pending) == batch_size:
                    flush()
            if pending:
                flush()
        finally:
            self.train(was_training)
        if not logits:
            msg = "bags is empty."
            raise ValueError(msg)
        stacked = torch.cat(logits)
        return {
            "logits": stacked.numpy(),
            "probabilities": torch.softmax(stacked, dim=1).numpy(),
            "predictions": stacked.argmax(dim=1).numpy(),
        }
