"""ScanGen as a trainer hook: a multi-scanner contrastive term on the MIL projection ``g``.

``L_total = L_CE(f(a(g(h))), y) + lambda * L_ScanGen(g(h))`` (ScanGen paper,
METHODS.md section 1.1).

Every training step, :class:`ScanGenHook` (in ``on_loss``, after the trainer
computed the cross-entropy of the task batch):

1. draws one ScanGen batch of slide indices from the multi-scanner *pool*
   with :meth:`~tia_scanner_robust.data.features.ScanGenBatchSampler.sample_batch`
   (``specimens_per_batch`` specimens, each under ``scanners_per_specimen``
   scanners, with attraction and repulsion pairs guaranteed);
2. ``granularity="slide"``: subsamples ``n_subsample`` patches of every slide,
   projects them with the model's ``g`` (``model.embed``) and averages them
   into one embedding per slide (:func:`~tia_scanner_robust.losses.scangen.slide_embeddings`);
   ``granularity="patch"``: projects ``patches_per_sample`` patches at the
   *same* indices in every scan of a specimen (registered bags) and treats
   each location as a specimen;
3. adds ``losses["scangen"] = lam * L_ScanGen`` and logs the unweighted
   value and the :class:`~tia_scanner_robust.losses.scangen.ScanGenStats`
   (``scangen/...``) through ``trainer.log_scalar``.

``lam = 0`` is the baseline: no ScanGen batch is drawn and the losses are
returned unchanged (the model keeps ``g``, the paper's fair comparison).

The hook draws from its own NumPy and torch generators; their states are
part of :meth:`ScanGenHook.state_dict`, so a resumed run draws the same
ScanGen batches as an uninterrupted one.

Examples:
    >>> import tempfile, numpy as np, torch
    >>> from tia_scanner_robust.data.features import FeatureStore
    >>> from tia_scanner_robust.models.mil import MILModel
    >>> store = FeatureStore(tempfile.mkdtemp() + "/f.zarr")
    >>> for p in range(4):
    ...     for s in ("A", "B"):
    ...         _ = store.write_slide(f"P{p}", s, np.random.rand(6, 8), split="scangen")
    >>> hook = ScanGenHook(store, lam=0.5, split="scangen", batch_size=4, seed=0)
    >>> model = MILModel(8, projection_hidden=4)
    >>> loss, stats = hook.scangen_term(model)
    >>> loss.ndim, stats.n_attract > 0, stats.n_repel > 0
    (0, True, True)

"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.data.features import (
    BagDataset,
    FeatureStore,
    ScanGenBatchSampler,
    collate_bags,
)
from tia_scanner_robust.losses.scangen import (
    GRANULARITIES,
    ScanGenLoss,
    ScanGenStats,
    slide_embeddings,
)
from tia_scanner_robust.models.mil import subsample_bags
from tia_scanner_robust.training.hooks import Hook, register_hook
from tia_scanner_robust.training.state import derive_seed

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["ScanGenHook", "find_embed"]

logger = logging.getLogger(__name__)

_SEED_SALT = 0x5CA9  # decorrelates the hook's stream from the trainer's


def find_embed(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The projection ``g`` of a model: its ``embed`` method (DDP and wrappers unwrapped).

    Raises:
        TypeError: If neither the model nor a wrapped ``module``/``mil``
            attribute has an ``embed`` method.

    Examples:
        >>> from tia_scanner_robust.models.mil import MILModel
        >>> model = MILModel(4, projection_hidden=3)
        >>> find_embed(model)(torch.zeros(2, 4)).shape
        torch.Size([2, 3])

    """
    current: Any = model
    for _ in range(4):
        embed = getattr(current, "embed", None)
        if callable(embed):
            return embed
        current = getattr(current, "module", None) or getattr(current, "mil", None)
        if current is None:
            break
    msg = (
        "ScanGenHook needs a model with an embed(features) method (the projection g), "
        f"e.g. MILModel; got {type(model).__name__}."
    )
    raise TypeError(msg)


@register_hook("scangen")
class ScanGenHook(Hook):
    """Add ``lam * L_ScanGen`` on a multi-scanner batch to every training step.

    Args:
        pool: The multi-scanner pool: a
            :class:`~tia_scanner_robust.data.features.BagDataset`, a
            :class:`~tia_scanner_robust.data.features.FeatureStore` or the path
            of one (then filtered with ``split``/``scanners``).
        lam: Weight ``lambda`` of the ScanGen term (0: the baseline).
        alpha: Attraction weight (repulsion ``1 - alpha``).
        margin: Repulsion radius ``m`` in ``(0, 2]``.
        squared: Squared distance/hinge (the paper) or plain.
        granularity: ``"slide"`` or ``"patch"``.
        n_subsample: Patches averaged per slide embedding (slide granularity).
        patches_per_sample: Patch locations per specimen (patch granularity).
        batch_size: Slides per ScanGen batch
            (``specimens_per_batch * scanners_per_specimen``).
        scanners_per_specimen: Scanners per specimen in a batch (>= 2).
        split: Split(s) of the pool to use when ``pool`` is a store/path.
        scanners: Scanners of the pool to use (e.g. the limited-scanner
            ablation); ``None``: all.
        cache: Keep the pool's features in memory (fast; default ``True``).
        seed: Seed of the hook's generators (default: the trainer's seed).

    Raises:
        ValueError: On invalid options, or a pool that cannot fill a batch.

    Examples:
        >>> ScanGenHook.__init__.__defaults__[:2]
        (1.0, 0.5)

    """

    def __init__(
        self,
        pool: BagDataset | FeatureStore | str | Path,
        lam: float = 1.0,
        alpha: float = 0.5,
        margin: float = 0.5,
        *,
        squared: bool = True,
        granularity: str = "slide",
        n_subsample: int = 32,
        patches_per_sample: int = 4,
        batch_size: int = 16,
        scanners_per_specimen: int = 2,
        split: str | Iterable[str] | None = None,
        scanners: str | Iterable[str] | None = None,
        cache: bool = True,
        seed: int | None = None,
    ) -> None:
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
            msg = f"lam must be a number >= 0, got {lam!r}."
            raise ValueError(msg)
        for name, value in (
            ("n_subsample", n_subsample),
            ("patches_per_sample", patches_per_sample),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"{name} must be a positive int, got {value!r}."
                raise ValueError(msg)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            msg = f"seed must be a non-negative int or None, got {seed!r}."
            raise ValueError(msg)
        self.lam = float(lam)
        self.granularity = check_in_choices(granularity, GRANULARITIES, "granularity")
        self.loss = ScanGenLoss(alpha, margin, squared=squared, granularity=granularity)
        self.n_subsample = n_subsample
        self.patches_per_sample = patches_per_sample
        if isinstance(pool, (str, Path)):
            pool = FeatureStore(pool, mode="r")
        if isinstance(pool, FeatureStore):
            pool = BagDataset(pool, split, scanners=scanners)
        elif isinstance(pool, BagDataset):
            if scanners is not None:
                keep = {scanners} if isinstance(scanners, str) else set(scanners)
                pool = BagDataset(pool.store, split, scanners=keep)
        else:
            msg = f"pool must be a BagDataset, a FeatureStore or a path, got {type(pool).__name__}."
            raise TypeError(msg)
        self.pool = pool
        self.sampler = ScanGenBatchSampler(
            pool.specimen_ids,
            pool.scanner_ids,
            batch_size=batch_size,
            scanners_per_specimen=scanners_per_specimen,
            seed=0,
        )
        self._cache: dict[int, torch.Tensor] | None = {} if cache else None
        self.seed = seed
        self._rng: np.random.Generator | None = None
        self._generator: torch.Generator | None = None
        self.draws = 0
        if seed is not None:
            self._init_generators(seed)

    def __repr__(self) -> str:
        return (
            f"ScanGenHook(lam={self.lam}, {self.loss.extra_repr()}, pool={len(self.pool)} slides, "
            f"batch_size={self.sampler.batch_size})"
        )

    # ------------------------------------------------------------------ generators
    def _init_generators(self, seed: int) -> None:
        derived = derive_seed(int(seed), _SEED_SALT)
        self._rng = np.random.default_rng(derived)
        self._generator = torch.Generator().manual_seed(derived)

    def _ensure_generators(self, trainer: Any) -> None:
        if self._rng is None:
            seed = getattr(getattr(trainer, "config", None), "seed", 0)
            self._init_generators(int(seed) if seed is not None else 0)

    def _bag(self, index: int) -> torch.Tensor:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        bag = self.pool[index]["features"]
        if self._cache is not None:
            self._cache[index] = bag
        return bag

    # ------------------------------------------------------------------ the term
    def sample(self) -> dict[str, Any]:
        """Draw one ScanGen batch from the pool (collated, on the CPU)."""
        if self._rng is None:
            self._init_generators(0)
        indices = self.sampler.sample_batch(self._rng)  # type: ignore[arg-type]
        self.draws += 1
        items = [
            {
                "features": self._bag(i),
                "specimen_id": self.pool.specimen_ids[i],
                "scanner": self.pool.scanner_ids[i],
            }
            for i in indices
        ]
        return collate_bags(items)

    def scangen_term(
        self, model: torch.nn.Module, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, ScanGenStats]:
        """Draw a ScanGen batch and return the unweighted ``L_ScanGen`` and its stats."""
        batch = self.sample()
        embed = find_embed(model)
        if device is None:
            device = next(model.parameters()).device
        features, mask = batch["features"], batch["mask"]
        specimens, scanners = batch["specimen_id"], batch["scanner"]
        if self.granularity == "slide":
            feats, kept = subsample_bags(features, mask, self.n_subsample, self._generator)
            z = slide_embeddings(embed(feats.to(device)), kept.to(device))
        else:
            z, specimens, scanners = self._patch_embeddings(embed, batch, device)
        return self.loss(z, specimens, scanners, return_stats=True)

    def _patch_embeddings(
        self, embed: Callable[[torch.Tensor], torch.Tensor], batch: dict[str, Any], device: Any
    ) -> tuple[torch.Tensor, list[str], list[str]]:
        """Patch granularity: the same patch indices in every scan of a specimen."""
        features, n_real = batch["features"], batch["n_instances"]
        specimens, scanners = batch["specimen_id"], batch["scanner"]
        rng = self._rng
        k = self.patches_per_sample
        locations: dict[str, np.ndarray] = {}
        for specimen in dict.fromkeys(specimens):
            rows = [i for i, s in enumerate(specimens) if s == specimen]
            n_min = int(min(int(n_real[i]) for i in rows))
            locations[specimen] = rng.choice(n_min, min(k, n_min), replace=False)  # type: ignore[union-attr]
        z_parts, ids, scans = [], [], []
        for i, specimen in enumerate(specimens):
            loc = torch.from_numpy(locations[specimen])
            z_parts.append(embed(features[i, loc].to(device)))
            ids += [f"{specimen}@{int(j)}" for j in locations[specimen]]
            scans += [scanners[i]] * len(loc)
        return torch.cat(z_parts), ids, scans

    # ------------------------------------------------------------------ hook API
    def on_fit_start(self, trainer: Any) -> None:
        """Seed the generators from the trainer's seed (unless given or resumed)."""
        self._ensure_generators(trainer)

    def on_loss(
        self,
        trainer: Any,
        batch: dict[str, Any],  # noqa: ARG002 - the ScanGen batch comes from the pool
        outputs: Any,  # noqa: ARG002
        losses: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Add ``lam * L_ScanGen`` as the ``"scangen"`` term (nothing when ``lam == 0``)."""
        if self.lam == 0:
            return losses
        self._ensure_generators(trainer)
        model = trainer.model
        term, stats = self.scangen_term(model, getattr(trainer, "device", None))
        if hasattr(trainer, "log_scalar"):
            trainer.log_scalar("scangen_unweighted", term)
            for name, value in stats.to_dict().items():
                if np.isfinite(value):
                    trainer.log_scalar(name, value)
        return {**losses, "scangen": self.lam * term}

    def state_dict(self) -> dict[str, Any]:
        """The generators' states and the number of batches drawn."""
        if self._rng is None or self._generator is None:
            return {}
        state = self._rng.bit_generator.state
        return {
            "numpy_state": {
                "bit_generator": state["bit_generator"],
                "state": {k: int(v) for k, v in state["state"].items()},
                "has_uint32": int(state["has_uint32"]),
                "uinteger": int(state["uinteger"]),
            },
            "torch_state": self._generator.get_state(),
            "draws": self.draws,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if not state:
            return
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = dict(state["numpy_state"])
        self._generator = torch.Generator()
        self._generator.set_state(state["torch_state"])
        self.draws = int(state["draws"])
