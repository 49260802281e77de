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
makes them self-describing (see :func:`load_mil_checkpoint`;
:func:`build_mil_model` builds a model from a config's ``model`` section).

One module per concern:

- ``base``: :class:`MILAggregator`, the :data:`AGGREGATORS` registry (filled
  here, so that ``base`` imports no aggregator) and :func:`create_aggregator`;
- ``projection``: :class:`ProjectionMLP`;
- ``gap``, ``abmil``, ``dsmil``, ``slotmil``: one aggregator family each;
- ``model``: :class:`MILModel` and :data:`MIL_CONFIG_KEYS`;
- ``checkpoint``: :func:`build_mil_model` and :func:`load_mil_checkpoint`.

The bag helpers (:func:`check_bags`, :func:`pad_bags`, :func:`masked_mean`,
...) live in :mod:`tia_scanner_robust.bags` and are re-exported here.

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

from tia_scanner_robust.bags import (
    check_bags,
    masked_mean,
    masked_softmax,
    pad_bags,
    subsample_bags,
    subsample_mask,
)
from tia_scanner_robust.models.mil.abmil import ABMILAggregator
from tia_scanner_robust.models.mil.base import AGGREGATORS, MILAggregator, create_aggregator
from tia_scanner_robust.models.mil.checkpoint import build_mil_model, load_mil_checkpoint
from tia_scanner_robust.models.mil.dsmil import DSMILAggregator
from tia_scanner_robust.models.mil.gap import GAPAggregator
from tia_scanner_robust.models.mil.model import MIL_CONFIG_KEYS, MILModel
from tia_scanner_robust.models.mil.projection import ProjectionMLP
from tia_scanner_robust.models.mil.slotmil import SlotMILAggregator

AGGREGATORS.update(
    {
        "gap": GAPAggregator,
        "abmil": ABMILAggregator,
        "dsmil": DSMILAggregator,
        "slotmil": SlotMILAggregator,
    }
)

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
    "build_mil_model",
    "check_bags",
    "create_aggregator",
    "load_mil_checkpoint",
    "masked_mean",
    "masked_softmax",
    "pad_bags",
    "subsample_bags",
    "subsample_mask",
]
