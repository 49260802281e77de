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
from tia_scanner_robust.bags import masked_mean
from tia_scanner_robust.data.features import (
    BagDataset,
    FeatureStore,
    ScanGenBatchSampler,
    collate_bags,
)
from tia_scanner_robust.losses.pairs import encode_ids
from tia_scanner_robust.losses.scangen import (
    GRANULARITIES,
    ScanGenLoss,
    ScanGenStats,
)
from tia_scanner_robust.training.hooks import (
    Hook,
    hook_logger,
    register_hook,
    trainer_config_value,
)
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
        cache: Keep the pool's features in memory (fast; default ``True``):
            all pool bags are loaded at the first draw into one flat
            ``(sum N_i, D)`` tensor, from which every step gathers only the
            subsampled rows.
        cache_device: Device of that cache. ``None`` (default): the training
            device (no host-to-device copy of features per step) when the
            pool takes at most a quarter of the free GPU memory, else the
            CPU (then only the gathered rows are copied each step).
        seed: Seed of the hook's generators (default: the trainer's seed).
        log_fn: Where the hook logs its informative scalars, ``log_fn(name,
            value)`` (e.g. ``pl_module.log`` in Lightning); default: the
            trainer's ``log_scalar``. A trainer without ``log_scalar`` and no
            ``log_fn`` is an error, not a silent skip.

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
        cache_device: torch.device | str | None = None,
        seed: int | None = None,
        log_fn: Callable[..., None] | None = None,
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
        self.cache = bool(cache)
        self.cache_device = None if cache_device is None else torch.device(cache_device)
        # Filled at the first draw (cache=True): every pool bag in one flat tensor.
        self._flat: torch.Tensor | None = None
        self._offsets: np.ndarray | None = None
        self._lengths: np.ndarray | None = None
        # Ids as integers once (pair masks are built from these, never from strings).
        self._specimen_codes = encode_ids(pool.specimen_ids, "specimen_ids").numpy()
        self._scanner_codes = encode_ids(pool.scanner_ids, "scanner_ids").numpy()
        self.seed = seed
        self.log_fn = log_fn
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
            seed = trainer_config_value(trainer, "seed", "ScanGenHook", "seed", 0)
            self._init_generators(int(seed) if seed is not None else 0)

    # ------------------------------------------------------------------ pool cache
    def _load_cache(self, device: torch.device) -> None:
        """Read every pool bag once into one flat ``(sum N_i, D)`` float32 tensor.

        The tensor is allocated from the stored sizes and filled bag by bag,
        so loading never holds the pool twice.
        """
        limit = self.pool.max_instances
        lengths = np.array(
            [
                info.n_instances if limit is None else min(info.n_instances, limit)
                for info in self.pool.slides
            ],
            dtype=np.int64,
        )
        dim = int(self.pool.slides[0].feature_dim)
        if self.cache_device is not None:
            target = self.cache_device
        else:
            target = device
            n_bytes = int(lengths.sum()) * dim * 4
            if target.type == "cuda" and n_bytes > torch.cuda.mem_get_info(target)[0] // 4:
                logger.info(
                    "ScanGen pool cache (%.1f GiB) kept on the CPU: more than a quarter of the "
                    "free GPU memory (set cache_device to override).",
                    n_bytes / 2**30,
                )
                target = torch.device("cpu")
        flat = torch.empty(int(lengths.sum()), dim, dtype=torch.float32, device=target)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        for index, start in enumerate(offsets.tolist()):
            bag = self.pool[index]["features"]
            if tuple(bag.shape) != (int(lengths[index]), dim):
                msg = (
                    f"pool slide {self.pool.slides[index].key!r} has features of shape "
                    f"{tuple(bag.shape)}, its metadata says ({int(lengths[index])}, {dim})."
                )
                raise ValueError(msg)
            flat[start : start + bag.shape[0]].copy_(bag)
        self._flat, self._offsets, self._lengths = flat, offsets, lengths

    def _bag(self, index: int) -> torch.Tensor:
        if self._flat is not None:
            start = int(self._offsets[index])  # type: ignore[index]
            return self._flat[start : start + int(self._lengths[index])].cpu()  # type: ignore[index]
        return self.pool[index]["features"]

    # ------------------------------------------------------------------ the term
    def sample(self) -> dict[str, Any]:
        """Draw one ScanGen batch from the pool, collated (full bags, on the CPU).

        For inspection: the training step (:meth:`scangen_term`) draws the same
        slides but never collates them, it gathers only the rows it uses.
        """
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
        loss, stats = self.scangen_term_tensors(model, device)
        return loss, ScanGenStats.from_tensors(stats)

    def scangen_term_tensors(
        self, model: torch.nn.Module, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`scangen_term` with the stats as 0-d device tensors (no host sync).

        The draw is the one :meth:`sample` makes (same generators, same
        random numbers), but only the rows used are gathered: the subsample
        indices are chosen from the bag lengths first, then the rows are
        taken from the cache (on ``cache_device``) or from the bags read
        from the pool.
        """
        if self._rng is None:
            self._init_generators(0)
        embed = find_embed(model)
        if device is None:
            device = next(model.parameters()).device
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if self.cache and self._flat is None:
            self._load_cache(device)
        bags, flat_rows, specimens, scanners, slide_mask = self._draw_rows()
        parts = [flat_rows.reshape(-1), specimens, scanners]
        if slide_mask is not None:
            parts.append(slide_mask.reshape(-1))
        # one host -> device transfer of every index (plus the rows of an uncached pool)
        packed = torch.from_numpy(np.concatenate(parts).astype(np.int64)).to(device)
        n_rows, n_ids = flat_rows.size, specimens.shape[0]
        spec_ids = packed[n_rows : n_rows + n_ids]
        scan_ids = packed[n_rows + n_ids : n_rows + 2 * n_ids]
        if self._flat is not None and self._flat.device == device:
            feats = self._flat.index_select(0, packed[:n_rows])
        else:  # gather on the host, copy only the gathered rows
            source = self._flat if self._flat is not None else torch.cat(bags)  # type: ignore[arg-type]
            index = torch.from_numpy(flat_rows.reshape(-1)).to(source.device)
            feats = source.index_select(0, index).to(device)
        projected = embed(feats.reshape(*flat_rows.shape, feats.shape[-1]))
        if self.granularity == "patch":
            z = projected
        elif slide_mask is None:  # every slide has n_subsample rows: a plain mean
            z = projected.mean(dim=1)
        else:
            z = masked_mean(projected, packed[n_rows + 2 * n_ids :].view(flat_rows.shape).bool())
        return self.loss.loss_and_stat_tensors(z, spec_ids, scan_ids)

    def _draw_rows(
        self,
    ) -> tuple[list[torch.Tensor] | None, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Host side of a draw: the slides, then the rows to gather (no feature copy).

        Returns:
            ``(bags, rows, specimens, scanners, mask)``: the bags read from
            the pool (``None`` when cached), the rows to gather as indices into
            the cache (or into the concatenated bags), ``(B, k)`` for slide
            granularity and ``(R,)`` for patch granularity, the integer
            specimen and scanner ids of the samples, and the ``(B, k)`` mask
            of real rows (``None``: all real).
        """
        indices = np.asarray(self.sampler.sample_batch(self._rng), dtype=np.int64)  # type: ignore[arg-type]
        self.draws += 1
        if self._flat is not None:
            bags = None
            lengths = self._lengths[indices]  # type: ignore[index]
            bag_offsets = self._offsets[indices]  # type: ignore[index]
        else:
            bags = [self.pool[int(i)]["features"] for i in indices]
            lengths = np.array([bag.shape[0] for bag in bags], dtype=np.int64)
            bag_offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        if self.granularity == "slide":
            rows, mask = self._slide_rows(lengths)
            return (
                bags,
                rows + bag_offsets[:, None],
                self._specimen_codes[indices],
                self._scanner_codes[indices],
                mask,
            )
        rows, owners, ids, scanners = self._patch_rows(indices, lengths)
        return bags, rows + bag_offsets[owners], ids, scanners, None

    def _slide_rows(self, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Row indices ``(B, k)`` of the ``n_subsample`` patches kept per slide.

        The same draw as :func:`~tia_scanner_robust.models.mil.subsample_bags`
        on the collated batch (one ``(B, N_max)`` uniform draw from the
        hook's torch generator, the ``k`` real rows with the smallest keys),
        made from the lengths alone. Short bags (fewer than ``k`` rows) repeat their first row in
        the padding, which the returned mask excludes.

        Returns:
            ``(rows, mask)``; ``mask`` (``(B, k)`` bool) is ``None`` when no
            bag is short.
        """
        n_max = int(lengths.max())
        k = min(self.n_subsample, n_max)
        real = torch.arange(n_max)[None, :] < torch.from_numpy(lengths)[:, None]
        # _random_order(real)[:, :k] with topk instead of a full argsort (10x faster at
        # N = 4096); the same uniform keys, so the same rows (up to the order of ties)
        keys = torch.rand(real.shape, generator=self._generator).masked_fill(~real, 2.0)
        order = keys.topk(k, dim=1, largest=False).indices
        if int(lengths.min()) >= k:
            return order.numpy(), None
        kept = real.gather(1, order)
        return torch.where(kept, order, 0).numpy(), kept.numpy()

    def _patch_rows(
        self, indices: np.ndarray, lengths: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Patch granularity: the same patch indices in every scan of a specimen.

        Returns:
            ``(rows, owners, ids, scanners)`` per sampled patch, slide by
            slide: its row in its bag, its bag's position in the batch, an
            integer id of its (specimen, location) and its scanner code.
        """
        rng = self._rng
        k = self.patches_per_sample
        specimens = self._specimen_codes[indices].tolist()
        locations: dict[int, np.ndarray] = {}
        for specimen in dict.fromkeys(specimens):
            n_min = int(
                min(n for s, n in zip(specimens, lengths.tolist(), strict=True) if s == specimen)
            )
            locations[specimen] = rng.choice(n_min, min(k, n_min), replace=False)  # type: ignore[union-attr]
        stride = int(lengths.max())
        per_slide = [locations[s].astype(np.int64) for s in specimens]
        counts = [len(loc) for loc in per_slide]
        rows = np.concatenate(per_slide)
        owners = np.repeat(np.arange(len(specimens)), counts)
        ids = np.repeat(np.asarray(specimens, dtype=np.int64), counts) * stride + rows
        scanners = np.repeat(self._scanner_codes[indices], counts)
        return rows, owners, ids, scanners

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
        term, stats = self.scangen_term_tensors(model, getattr(trainer, "device", None))
        log = hook_logger(trainer, self.log_fn, "ScanGenHook")
        if log is not None:
            log("scangen_unweighted", term)
            lazy = self.log_fn is None and getattr(trainer, "lazy_scalars", False)
            if lazy:  # this Trainer reads them back with the step's losses
                for name, value in stats.items():
                    log(f"scangen/{name}", value, finite_only=True)
            else:  # a logger wanting numbers: one read-back, NaN stats left out
                for name, value in ScanGenStats.from_tensors(stats).to_dict().items():
                    if np.isfinite(value):
                        log(name, value)
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
