"""Multiple-instance learning over patch embeddings: ``y_hat = f(a(g(h)))``.

ScanGen (METHODS.md section 1) trains a projection ``g`` (a 3-layer MLP, the
place where scanner bias is removed) in front of a MIL aggregator ``a`` and a
classifier ``f``. Here ``a`` and ``f`` live together in one *aggregator*
module; every aggregator shares one contract:

- input: ``features`` ``(B, N, D)`` float and ``mask`` ``(B, N)`` bool, True
  for a real instance and False for padding (``mask=None``: all real); every
  bag needs at least one real instance;
- output: a dict with ``"logits"`` ``(B, C)``, ``"embedding"`` (the pooled bag
  representation fed to the classifier) and, where defined, ``"attention"``
  ``(B, N)`` (zero on padding, sums to 1 over a bag's real instances);
- padding never changes the output.

Aggregators: :class:`GAPAggregator` (masked mean + MLP classifier, the one the
ScanGen paper reports), :class:`ABMILAggregator` (gated attention, Ilse et al.
2018), :class:`DSMILAggregator` (dual stream, Li et al. 2021) and
:class:`SlotMILAggregator` (slot attention pooling with patch subsampling and
slot-mixup, Keum et al. 2023). :func:`create_aggregator` looks one up by name;
:class:`MILModel` chains ``g`` and the aggregator.

Every module here has a JSON-serialisable ``config`` (its constructor
arguments) and a ``from_config`` classmethod that rebuilds it; the trainer
stores :attr:`MILModel.config` in its checkpoints (``"model_config"``), which
makes them self-describing (see
:func:`~tia_scanner_robust.models.mil_predictor.load_mil_checkpoint`).

Examples:
    >>> import torch
    >>> model = MILModel(feature_dim=32, num_classes=2, aggregator="abmil", projection_hidden=16)
    >>> out = model(torch.randn(3, 10, 32), torch.ones(3, 10, dtype=torch.bool))
    >>> tuple(out["logits"].shape), tuple(out["attention"].shape), tuple(out["projected"].shape)
    ((3, 2), (3, 10), (3, 10, 16))
    >>> MILModel.from_config(model.config).config == model.config
    True

"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn
from tqdm.auto import tqdm

from tia_scanner_robust.bags import (
    check_bags,
    check_positive_int,
    masked_mean,
    masked_softmax,
    pad_bags,
    subsample_bags,
    subsample_mask,
)
from tia_scanner_robust.seeding import make_rng

if TYPE_CHECKING:
    from collections.abc import Iterable

    import numpy as np

__all__ = [
    "AGGREGATORS",
    "MIL_CONFIG_KEYS",
    "ABMILAggregator",
    "DSMILAggregator",
    "GAPAggregator",
    "MILAggregator",
    "MILModel",
    "ProjectionMLP",
    "SlotMILAggregator",
    "check_bags",
    "create_aggregator",
    "masked_mean",
    "masked_softmax",
    "pad_bags",
    "subsample_bags",
    "subsample_mask",
]


def _config_kwargs(cls: type, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as a dict of keyword arguments, checked to be a mapping."""
    if not isinstance(config, Mapping):
        msg = f"{cls.__name__} config must be a mapping, got {type(config).__name__}."
        raise TypeError(msg)
    return dict(copy.deepcopy(config))


# ---------------------------------------------------------------------------
# Projection g
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# Aggregators a (+ classifier f)
# ---------------------------------------------------------------------------
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


#: Aggregator names accepted by :func:`create_aggregator` and :class:`MILModel`.
AGGREGATORS: dict[str, type[MILAggregator]] = {
    "gap": GAPAggregator,
    "abmil": ABMILAggregator,
    "dsmil": DSMILAggregator,
    "slotmil": SlotMILAggregator,
}


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


# ---------------------------------------------------------------------------
# The model f(a(g(h)))
# ---------------------------------------------------------------------------
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
        :func:`~tia_scanner_robust.experiments.scangen.build_mil_model`.
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
