"""MIL models from configs and checkpoints.

- :func:`build_mil_model`: a :class:`~tia_scanner_robust.models.mil.MILModel`
  from the ``model`` section of a MIL config (or a :attr:`MILModel.config`);
- :func:`load_mil_checkpoint`: a trained model from a checkpoint file, read
  with ``torch.load(weights_only=True)`` (loading never runs code from the
  file); self-describing checkpoints (with ``"model_config"``) need no config.

Examples:
    >>> import tempfile
    >>> model = build_mil_model(8, {"aggregator": "gap", "projection_hidden": 4})
    >>> path = tempfile.mkdtemp() + "/mil.pt"
    >>> torch.save({"state_dict": model.state_dict(), "model_config": model.config}, path)
    >>> loaded = load_mil_checkpoint(path)
    >>> torch.equal(loaded.projection.net[0].weight, model.projection.net[0].weight)
    True

"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from tia_scanner_robust._validation import (
    load_checkpoint_dict,
    state_dict_mismatch,
    summarize_state_dict_error,
)
from tia_scanner_robust.models.mil.base import AGGREGATORS
from tia_scanner_robust.models.mil.model import MILModel

__all__ = ["build_mil_model", "load_mil_checkpoint"]


def build_mil_model(feature_dim: int, model_config: Mapping[str, Any]) -> MILModel:
    """A :class:`MILModel` from the ``model`` section of a config.

    ``aggregator_kwargs`` is either one dict for the configured aggregator or
    ``{aggregator name: kwargs}`` (the entry of the configured one is used).
    The optional keys ``projection_out`` and ``projection`` are passed on too,
    so a :attr:`MILModel.config <tia_scanner_robust.models.mil.MILModel.config>`
    is a valid section (its ``feature_dim`` is ignored: the argument wins).

    Examples:
        >>> build_mil_model(8, {"aggregator": "abmil", "projection_hidden": 4}).aggregator_name
        'abmil'
        >>> model = build_mil_model(8, {"aggregator": "dsmil", "projection_out": 6})
        >>> build_mil_model(8, model.config).config == model.config
        True

    """
    cfg = dict(model_config)
    name = cfg.get("aggregator", "gap")
    kwargs = dict(cfg.get("aggregator_kwargs") or {})
    per = {k: v for k, v in kwargs.items() if k in AGGREGATORS and isinstance(v, dict)}
    flat = {k: v for k, v in kwargs.items() if k not in per}
    kwargs = {**per.get(str(name).lower(), {}), **flat}
    projection_out = cfg.get("projection_out")
    return MILModel(
        feature_dim,
        int(cfg.get("num_classes", 2)),
        name,
        projection_hidden=int(cfg.get("projection_hidden", 128)),
        projection_out=None if projection_out is None else int(projection_out),
        projection_dropout=float(cfg.get("projection_dropout", 0.0)),
        aggregator_kwargs=kwargs,
        projection=bool(cfg.get("projection", True)),
    )


def _build_mil(
    path: Path,
    payload: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    model_config: Mapping[str, Any] | None,
    feature_dim: int | None,
) -> MILModel:
    """The (untrained) MIL model of a checkpoint: ``model_config`` wins, else the stored one.

    A stored :attr:`MILModel.config` (it has ``feature_dim``) goes through
    :meth:`MILModel.from_config`; an explicit ``model_config`` or a stored
    ``model`` config section goes through :func:`build_mil_model`.
    """
    config = model_config if model_config is not None else payload.get("model_config")
    if not isinstance(config, Mapping):
        if model_config is not None:
            msg = f"model_config must be a mapping, got {type(model_config).__name__}."
            raise TypeError(msg)
        msg = (
            f"{path} stores no MIL model config (a checkpoint written before the "
            "trainer saved it, or a bare state dict): pass model_config= (the "
            "'model' section of the MIL config used for training)."
        )
        raise ValueError(msg)
    if model_config is None and "feature_dim" in config:  # a stored MILModel.config
        stored = dict(config)
        if feature_dim is not None:
            stored["feature_dim"] = int(feature_dim)
        try:
            return MILModel.from_config(stored)
        except (TypeError, ValueError) as error:
            msg = (
                f"{path} stores a model_config that does not describe a MIL model "
                f"({error}); pass model_config= (the 'model' section of the MIL config)."
            )
            raise ValueError(msg) from error
    if feature_dim is None:
        feature_dim = config.get("feature_dim")
    if feature_dim is None:
        weight = state.get("projection.net.0.weight")
        if weight is None:
            msg = f"Cannot infer feature_dim from {path}: pass feature_dim=."
            raise ValueError(msg)
        feature_dim = int(weight.shape[1])
    return build_mil_model(int(feature_dim), config)


def load_mil_checkpoint(
    path: str | Path,
    model_config: Mapping[str, Any] | None = None,
    feature_dim: int | None = None,
) -> MILModel:
    """A :class:`MILModel` from a checkpoint (read with ``torch.load(weights_only=True)``).

    Accepted payloads: the trainer's checkpoints (``last.pt``/``best.pt`` of
    :func:`~tia_scanner_robust.training.mil.train_mil_model`, i.e.
    ``tia-scanner-robust train-mil``: a dict with ``"model"``, the state dict
    of the ``MILBagModule`` adapter whose keys start with ``"mil."``, and
    ``"model_config"``, the model's
    :attr:`~tia_scanner_robust.models.mil.MILModel.config`), a dict with
    ``"state_dict"`` (and optionally ``"model_config"``), or a bare
    ``MILModel`` state dict.

    Checkpoints written since the trainer stores the MIL config are
    self-describing: no ``model_config`` is needed. Older checkpoints (whose
    ``"model_config"`` is missing or ``None``) and bare state dicts need
    ``model_config=``.

    Args:
        path: The checkpoint file.
        model_config: The ``model`` section of the MIL config
            (:func:`build_mil_model`;
            a :attr:`MILModel.config` works too). When given it wins over the
            config stored in the checkpoint. Default: the stored one.
        feature_dim: Feature size ``D``; default: the stored config's, else
            ``model_config``'s ``feature_dim``, else read from the weights of ``g``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file holds no state dict, no model config is known
            (the message says to pass ``model_config=``), the stored config is
            not a MIL model config, or the weights do not fit the model.

    Examples:
        >>> import tempfile, torch
        >>> path = tempfile.mkdtemp() + "/mil.pt"
        >>> model = MILModel(8, aggregator="abmil", projection_hidden=4)
        >>> torch.save({"model": model.state_dict(), "model_config": model.config}, path)
        >>> load_mil_checkpoint(path).config == model.config
        True

    """
    path = Path(path)
    payload = load_checkpoint_dict(
        path,
        what="MIL checkpoint",
        expected="a MIL checkpoint ('model' or 'state_dict', and 'model_config') written by "
        "train-mil, or a MILModel state dict",
    )
    state = payload.get("model", payload.get("state_dict", payload))
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        msg = f"{path} holds no MIL state dict (expected a 'model' or 'state_dict' entry)."
        raise ValueError(msg)
    if state and all(k.startswith("mil.") for k in state):
        state = {k[len("mil.") :]: v for k, v in state.items()}
    model = _build_mil(path, payload, state, model_config, feature_dim)
    summary = state_dict_mismatch(model.state_dict(), state)
    try:
        model.load_state_dict(dict(state))
    except RuntimeError as error:
        summary = summary or summarize_state_dict_error(error)
        msg = (
            f"Weights in {path} do not fit the configured MIL model "
            f"({model.config.get('aggregator')}): {summary}. They were saved from another "
            "architecture or model_config."
        )
        raise ValueError(msg) from None
    return model.eval()
