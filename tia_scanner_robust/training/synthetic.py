"""Synthetic FM-like feature stores with the ScanGen splits (tests, demos, ``--synthetic``).

:func:`make_synthetic_store` samples a
:class:`~tia_scanner_robust.data.synthetic_features.SyntheticFeatureWorld`
into a :class:`~tia_scanner_robust.data.feature_store.FeatureStore`: a
labelled single-scanner ``train`` pool and multi-scanner specimens split
into ``scangen``/``val``/``test``. The sizes of ``train-mil --synthetic``
come from :class:`~tia_scanner_robust.training.mil_config.SyntheticConfig`.

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tia_scanner_robust.data.bag_sampling import split_specimens
from tia_scanner_robust.data.feature_store import FeatureStore
from tia_scanner_robust.data.synthetic_features import SyntheticFeatureWorld

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

__all__ = ["make_synthetic_store"]


def make_synthetic_store(
    path: str | Path,
    *,
    feature_dim: int = 64,
    task_specimens: int = 300,
    task_scanners: int = 2,
    multi_specimens: int = 100,
    patches: int = 64,
    magnifications: Sequence[str] = ("40x",),
    fractions: Mapping[str, float] | None = None,
    world: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> FeatureStore:
    """A store of synthetic FM-like features with the ScanGen splits.

    ``train``: ``task_specimens`` labelled specimens, each scanned once by one
    of the first ``task_scanners`` scanners; the ``multi_specimens``
    specimens scanned by every scanner (and magnification) are split by
    specimen into ``scangen``/``val``/``test`` (default 0.5/0.2/0.3).
    ``world`` holds extra keyword arguments of
    :class:`~tia_scanner_robust.data.synthetic_features.SyntheticFeatureWorld`
    (e.g. ``scanners``, ``scanner_shift``). The features are synthetic, NOT
    those of a real foundation model.

    Examples:
        >>> import tempfile
        >>> store = make_synthetic_store(
        ...     tempfile.mkdtemp() + "/s.zarr", task_specimens=4, multi_specimens=10, patches=4
        ... )
        >>> sorted({s.split for s in store.slides()})
        ['scangen', 'test', 'train', 'val']

    """
    store = FeatureStore(path, mode="w")
    sim = SyntheticFeatureWorld(
        feature_dim=feature_dim,
        magnifications=tuple(magnifications),
        seed=1000 + seed,
        **dict(world or {}),
    )
    task = sim.sample(
        task_specimens,
        patches,
        scanners=sim.scanners[:task_scanners],
        scanners_per_specimen=1,
        magnifications=list(magnifications)[:1],
        specimen_prefix="T",
        seed=2000 + seed,
    )
    task.write_to_store(store, split="train")
    multi = sim.sample(multi_specimens, patches, specimen_prefix="M", seed=3000 + seed)
    splits = split_specimens(
        multi.specimen_ids,
        dict(fractions or {"scangen": 0.5, "val": 0.2, "test": 0.3}),
        seed=seed,
        labels=list(multi.labels),
    )
    multi.write_to_store(store, split=splits)
    return store
