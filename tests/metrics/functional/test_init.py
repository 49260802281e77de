"""The package keeps its public names, re-exports and deprecated aliases."""

from __future__ import annotations

import importlib

import pytest

import tia_scanner_robust.metrics as metrics
from tia_scanner_robust import _io
from tia_scanner_robust.metrics import consistency, functional
from tia_scanner_robust.metrics.functional import PairConsistencyResult

SUBMODULES = ("core", "cov", "dice", "pair_scores", "pairwise", "retrieval", "classification")


def test_every_public_name_of_the_submodules_is_reexported():
    for name in SUBMODULES:
        module = importlib.import_module(f"tia_scanner_robust.metrics.functional.{name}")
        for public in module.__all__:
            assert getattr(functional, public) is getattr(module, public), (name, public)
            assert public in functional.__all__, (name, public)


def test_to_jsonable_lives_in_io_and_stays_reexported():
    assert functional.to_jsonable is _io.to_jsonable
    assert metrics.to_jsonable is _io.to_jsonable


def test_deprecated_aliases_warn_and_resolve():
    with pytest.warns(DeprecationWarning, match="PairConsistencyResult"):
        assert functional.PairConsistency is PairConsistencyResult
    with pytest.warns(DeprecationWarning, match="PairConsistencyResult"):
        assert metrics.PairConsistency is PairConsistencyResult
    with pytest.warns(DeprecationWarning, match="CoVAccumulator"):
        assert consistency.CoVMetric is consistency.CoVAccumulator
    with pytest.warns(DeprecationWarning, match="CoVAccumulator"):
        assert metrics.CoVMetric is consistency.CoVAccumulator
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = functional.nope
