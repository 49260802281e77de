"""Synthetic foundation-model-like patch features with a known scanner effect.

A stand-in for real FM embeddings of multi-scanner WSIs (which need the
slides, the FM weights and hours of extraction) with a structure one can
check: where the label lives, how each scanner and magnification distorts the
features. A :class:`SyntheticFeatureWorld` fixes the "physics" (label
direction, scanner and magnification effects); :meth:`SyntheticFeatureWorld.sample`
draws specimens and scans them.

Generative model (``D`` = ``feature_dim``; ``u`` a fixed random unit vector)::

    specimen p:  y_p ~ Bernoulli(positive_fraction)
                 c_p = content_scale * xi_p + label_strength * y_p * u,   xi_p ~ N(0, I)
    tissue:      t_pk = c_p + patch_spread * zeta_pk,   k = 1..N_p          (shared by all
                 scans of p: patch k is the same location, i.e. registered patches)
                 with signal_fraction < 1, only that fraction of p's patches carries
                 the label shift (the rest use c_p without it): a MIL-like signal
    magnif. m:   t' = (1 - blur_m) t + blur_m c_p                (lower resolution: less detail)
    scanner s:   h = R_s (a_s * t') + b_s + e_m + noise * eps
                 a_s = exp(scanner_scale * N(0, I))    per-dimension gain
                 b_s ~ N(0, scanner_shift^2 I)          offset
                 R_s near-identity rotation of strength scanner_rotation (0: none)
                 e_m ~ N(0, magnification_shift^2 I)    (0 for the first magnification)

The first scanner and magnification are the reference (``a = 1``, ``b = 0``,
``R = I``, ``e = 0``, ``blur = 0``): every other scanner differs from it. The
label is recoverable from the slide mean projected on ``u``; the scanner moves
the slide mean by ``b_s`` and rescales it, so a classifier on GAP features
gives predictions that change with the scanner (non-zero scanner CoV) unless
it is made invariant, which is what ScanGen's projection ``g`` learns.

Examples:
    >>> world = SyntheticFeatureWorld(feature_dim=16, scanners=("A", "B"), seed=0)
    >>> data = world.sample(n_specimens=4, patches_per_slide=8, seed=1)
    >>> len(data), data.features[0].shape, data.scanners[:2]
    (8, (8, 16), ['A', 'B'])

"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust.seeding import make_rng

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tia_scanner_robust.data.feature_store import FeatureStore

__all__ = [
    "DEFAULT_SCANNERS",
    "SyntheticFeatureSet",
    "SyntheticFeatureWorld",
    "generate_synthetic_features",
]

#: The six scanners of the ScanGen paper's multi-scanner set (first = reference).
DEFAULT_SCANNERS = ("AT2", "GT450", "S360MD", "P1000", "UFS", "DP200")
_PATCH_SIZE = 224


def _near_identity_rotation(dim: int, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A random orthogonal matrix close to the identity (``strength`` 0 -> I)."""
    if strength == 0:
        return np.eye(dim)
    q, r = np.linalg.qr(np.eye(dim) + strength * rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))  # fix signs so that q -> I as strength -> 0


@dataclass
class SyntheticFeatureSet:
    """Slides drawn from a :class:`SyntheticFeatureWorld` (one entry per slide).

    Attributes:
        features: ``(N, D)`` float32 patch features per slide.
        coordinates: ``(N, 4)`` patch bounds per slide (identical for the
            scans of one specimen: registered patches).
        specimen_ids: Specimen id per slide.
        scanners: Scanner per slide.
        magnifications: Magnification per slide.
        labels: ``(n_slides,)`` int64 slide labels (the specimen's).
        specimen_content: ``{specimen_id: c_p}`` latent content vectors.
        world: The world that generated the slides.

    Examples:
        >>> data = SyntheticFeatureWorld(feature_dim=8, scanners=("A", "B"), seed=0).sample(
        ...     3, 4, seed=1
        ... )
        >>> test = data.subset([i for i, s in enumerate(data.specimen_ids) if s == "S0002"])
        >>> test.scanners, test.slide_means().shape
        (['A', 'B'], (2, 8))

    """

    features: list[np.ndarray]
    coordinates: list[np.ndarray]
    specimen_ids: list[str]
    scanners: list[str]
    magnifications: list[str]
    labels: np.ndarray
    specimen_content: dict[str, np.ndarray] = field(repr=False)
    world: SyntheticFeatureWorld = field(repr=False)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def specimens(self) -> list[str]:
        """Distinct specimen ids in order of appearance."""
        return list(dict.fromkeys(self.specimen_ids))

    def slide_means(self) -> np.ndarray:
        """``(n_slides, D)`` mean feature of every slide (the GAP input)."""
        return np.stack([f.mean(axis=0) for f in self.features])

    def subset(self, indices: Sequence[int]) -> SyntheticFeatureSet:
        """The slides at ``indices`` (e.g. one split)."""
        keep = [int(i) for i in indices]
        specimens = {self.specimen_ids[i] for i in keep}
        return SyntheticFeatureSet(
            features=[self.features[i] for i in keep],
            coordinates=[self.coordinates[i] for i in keep],
            specimen_ids=[self.specimen_ids[i] for i in keep],
            scanners=[self.scanners[i] for i in keep],
            magnifications=[self.magnifications[i] for i in keep],
            labels=self.labels[keep],
            specimen_content={k: v for k, v in self.specimen_content.items() if k in specimens},
            world=self.world,
        )

    def write_to_store(
        self,
        store: FeatureStore,
        split: str | Mapping[str, str] | None = None,
        model: str = "synthetic",
        *,
        overwrite: bool = False,
    ) -> int:
        """Write every slide into a :class:`~tia_scanner_robust.data.feature_store.FeatureStore`.

        Args:
            store: A writable feature store.
            split: One split name for all slides, ``{specimen_id: split}``, or
                ``None``.
            model: Stored as the slides' ``model`` attribute.
            overwrite: Replace slides that already exist (otherwise they are
                skipped, as a resumed extraction would).

        Returns:
            Number of slides written.

        """
        written = 0
        for index in range(len(self)):
            specimen, scanner, mag = (
                self.specimen_ids[index],
                self.scanners[index],
                self.magnifications[index],
            )
            if not overwrite and store.has_slide(specimen, scanner, mag):
                continue
            slide_split = (
                split.get(specimen) if split is not None and not isinstance(split, str) else split
            )
            store.write_slide(
                specimen,
                scanner,
                self.features[index],
                self.coordinates[index],
                magnification=mag,
                label=int(self.labels[index]),
                split=slide_split,
                model=model,
                overwrite=overwrite,
            )
            written += 1
        return written


class SyntheticFeatureWorld:
    """The fixed effects of a synthetic multi-scanner world (see the module docstring).

    Args:
        feature_dim: Feature size ``D``.
        scanners: Scanner names (first = reference).
        magnifications: Magnification names (first = reference).
        content_scale: Std of the specimen content ``c_p``.
        label_strength: Length of the positive class's shift along ``u``.
        signal_fraction: Fraction of a positive specimen's patches that carry
            the label shift.
        patch_spread: Std of patches around their specimen content.
        scanner_shift: Std of the per-dimension scanner offset ``b_s``.
        scanner_scale: Std of the log per-dimension scanner gain ``a_s``.
        scanner_rotation: Strength of the scanner rotation ``R_s`` (0: none).
        magnification_shift: Std of the magnification offset ``e_m``.
        magnification_blur: Blur ``beta_m`` of non-reference magnifications.
        noise: Std of the per-observation acquisition noise.
        seed: Seed of the world's effects (label direction, scanner effects).

    Attributes:
        label_direction: ``u``, ``(D,)`` unit vector.
        scanner_shift_vectors: ``{scanner: b_s}``.
        scanner_gains: ``{scanner: a_s}``.
        scanner_rotations: ``{scanner: R_s}``.
        magnification_shift_vectors: ``{magnification: e_m}``.

    Examples:
        >>> world = SyntheticFeatureWorld(feature_dim=8, scanners=("A", "B", "C"), seed=0)
        >>> (
        ...     float(abs(world.scanner_shift_vectors["A"]).sum()),
        ...     world.scanner_gains["A"].tolist()[:2],
        ... )
        (0.0, [1.0, 1.0])

    """

    def __init__(
        self,
        feature_dim: int = 64,
        scanners: Sequence[str] = DEFAULT_SCANNERS,
        magnifications: Sequence[str] = ("40x",),
        *,
        content_scale: float = 0.3,
        label_strength: float = 0.6,
        signal_fraction: float = 1.0,
        patch_spread: float = 1.0,
        scanner_shift: float = 0.5,
        scanner_scale: float = 0.2,
        scanner_rotation: float = 0.02,
        magnification_shift: float = 0.3,
        magnification_blur: float = 0.3,
        noise: float = 0.3,
        seed: int = 0,
    ) -> None:
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, int) or feature_dim < 2:
            msg = f"feature_dim must be an int >= 2, got {feature_dim!r}."
            raise ValueError(msg)
        self.scanners = tuple(str(s) for s in scanners)
        self.magnifications = tuple(str(m) for m in magnifications)
        for name, values in (("scanners", self.scanners), ("magnifications", self.magnifications)):
            if not values or len(set(values)) != len(values):
                msg = f"{name} must be a non-empty sequence of distinct names, got {values}."
                raise ValueError(msg)
        params = {
            "content_scale": content_scale,
            "label_strength": label_strength,
            "patch_spread": patch_spread,
            "scanner_shift": scanner_shift,
            "scanner_scale": scanner_scale,
            "scanner_rotation": scanner_rotation,
            "magnification_shift": magnification_shift,
            "magnification_blur": magnification_blur,
            "noise": noise,
        }
        for name, value in params.items():
            if not np.isfinite(value) or value < 0:
                msg = f"{name} must be a finite non-negative number, got {value}."
                raise ValueError(msg)
        if not 0.0 < signal_fraction <= 1.0:
            msg = f"signal_fraction must be in (0, 1], got {signal_fraction}."
            raise ValueError(msg)
        if magnification_blur > 1.0:
            msg = f"magnification_blur must be in [0, 1], got {magnification_blur}."
            raise ValueError(msg)
        self.feature_dim = feature_dim
        self.params = {**params, "signal_fraction": signal_fraction}
        self.seed = seed
        rng = make_rng(seed)
        direction = rng.standard_normal(feature_dim)
        self.label_direction = direction / np.linalg.norm(direction)
        self.scanner_shift_vectors: dict[str, np.ndarray] = {}
        self.scanner_gains: dict[str, np.ndarray] = {}
        self.scanner_rotations: dict[str, np.ndarray] = {}
        for index, scanner in enumerate(self.scanners):
            shift = scanner_shift * rng.standard_normal(feature_dim)
            gain = np.exp(scanner_scale * rng.standard_normal(feature_dim))
            rotation = _near_identity_rotation(feature_dim, scanner_rotation, rng)
            if index == 0:  # the reference scanner
                shift, gain, rotation = (
                    np.zeros(feature_dim),
                    np.ones(feature_dim),
                    np.eye(feature_dim),
                )
            self.scanner_shift_vectors[scanner] = shift
            self.scanner_gains[scanner] = gain
            self.scanner_rotations[scanner] = rotation
        self.magnification_shift_vectors = {
            mag: (
                np.zeros(feature_dim)
                if i == 0
                else magnification_shift * rng.standard_normal(feature_dim)
            )
            for i, mag in enumerate(self.magnifications)
        }
        self.magnification_blurs = {
            mag: (0.0 if i == 0 else float(magnification_blur))
            for i, mag in enumerate(self.magnifications)
        }

    def __repr__(self) -> str:
        return (
            f"SyntheticFeatureWorld(feature_dim={self.feature_dim}, scanners={self.scanners}, "
            f"magnifications={self.magnifications}, seed={self.seed})"
        )

    def observe(
        self,
        tissue: np.ndarray,
        content: np.ndarray,
        scanner: str,
        magnification: str,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Features of ``tissue`` patches ``(N, D)`` seen by a scanner at a magnification."""
        if scanner not in self.scanner_gains:
            msg = f"Unknown scanner {scanner!r}; valid scanners: {', '.join(self.scanners)}."
            raise ValueError(msg)
        if magnification not in self.magnification_blurs:
            msg = (
                f"Unknown magnification {magnification!r}; valid: {', '.join(self.magnifications)}."
            )
            raise ValueError(msg)
        blur = self.magnification_blurs[magnification]
        seen = (1.0 - blur) * tissue + blur * content
        seen = (seen * self.scanner_gains[scanner]) @ self.scanner_rotations[scanner].T
        seen = (
            seen
            + self.scanner_shift_vectors[scanner]
            + self.magnification_shift_vectors[magnification]
        )
        seen = seen + self.params["noise"] * rng.standard_normal(seen.shape)
        return seen.astype(np.float32)

    def sample(
        self,
        n_specimens: int,
        patches_per_slide: int | tuple[int, int] = 64,
        *,
        scanners: Sequence[str] | None = None,
        scanners_per_specimen: int | None = None,
        magnifications: Sequence[str] | None = None,
        positive_fraction: float = 0.5,
        specimen_prefix: str = "S",
        seed: int | np.random.Generator | None = None,
    ) -> SyntheticFeatureSet:
        """Draw specimens and their scans.

        Args:
            n_specimens: Number of specimens.
            patches_per_slide: Patches per specimen (all its scans share them),
                or an inclusive ``(low, high)`` range drawn per specimen.
            scanners: Scanners to use (default: all of the world's).
            scanners_per_specimen: Scan each specimen with this many random
                scanners among ``scanners`` (default: all of them). Use 1 for a
                single-scanner task pool.
            magnifications: Magnifications scanned (default: all), each with
                every chosen scanner.
            positive_fraction: Probability of label 1.
            specimen_prefix: Specimen ids are ``f"{prefix}{index:04d}"``; use
                different prefixes for independent pools.
            seed: Seed of this draw.

        Returns:
            A :class:`SyntheticFeatureSet`, slides ordered by specimen, then
            scanner, then magnification.

        """
        if isinstance(n_specimens, bool) or not isinstance(n_specimens, int) or n_specimens < 1:
            msg = f"n_specimens must be a positive int, got {n_specimens!r}."
            raise ValueError(msg)
        if not 0.0 <= positive_fraction <= 1.0:
            msg = f"positive_fraction must be in [0, 1], got {positive_fraction}."
            raise ValueError(msg)
        low, high = (
            (patches_per_slide, patches_per_slide)
            if isinstance(patches_per_slide, int)
            else patches_per_slide
        )
        if not 1 <= low <= high:
            msg = (
                "patches_per_slide must be >= 1 (or a range low <= high), "
                f"got {patches_per_slide!r}."
            )
            raise ValueError(msg)
        pool = list(self.scanners if scanners is None else scanners)
        unknown = [s for s in pool if s not in self.scanner_gains]
        if unknown or not pool:
            msg = f"Unknown scanners {unknown}; valid scanners: {', '.join(self.scanners)}."
            raise ValueError(msg)
        per_specimen = len(pool) if scanners_per_specimen is None else scanners_per_specimen
        if not 1 <= per_specimen <= len(pool):
            msg = f"scanners_per_specimen must be in [1, {len(pool)}], got {scanners_per_specimen}."
            raise ValueError(msg)
        mags = list(self.magnifications if magnifications is None else magnifications)
        rng = make_rng(seed)
        p = self.params
        out: dict[str, list[Any]] = {
            k: [] for k in ("features", "coordinates", "specimen_ids", "scanners", "mags")
        }
        labels: list[int] = []
        contents: dict[str, np.ndarray] = {}
        for index in range(n_specimens):
            specimen = f"{specimen_prefix}{index:04d}"
            label = int(rng.random() < positive_fraction)
            base = p["content_scale"] * rng.standard_normal(self.feature_dim)
            n_patches = int(rng.integers(low, high + 1))
            tissue = base + p["patch_spread"] * rng.standard_normal((n_patches, self.feature_dim))
            carries = (
                rng.random(n_patches) < p["signal_fraction"]
                if p["signal_fraction"] < 1
                else np.ones(n_patches, bool)
            )
            tissue = (
                tissue + (label * p["label_strength"]) * carries[:, None] * self.label_direction
            )
            content = (
                base + label * p["label_strength"] * p["signal_fraction"] * self.label_direction
            )
            contents[specimen] = content
            columns = int(np.ceil(np.sqrt(n_patches)))
            grid = np.arange(n_patches)
            x0, y0 = (grid % columns) * _PATCH_SIZE, (grid // columns) * _PATCH_SIZE
            coordinates = np.stack([x0, y0, x0 + _PATCH_SIZE, y0 + _PATCH_SIZE], axis=1).astype(
                np.int64
            )
            chosen = sorted(rng.choice(len(pool), per_specimen, replace=False))
            for scanner in (pool[i] for i in chosen):
                for mag in mags:
                    out["features"].append(self.observe(tissue, content, scanner, mag, rng))
                    out["coordinates"].append(coordinates)
                    out["specimen_ids"].append(specimen)
                    out["scanners"].append(scanner)
                    out["mags"].append(mag)
                    labels.append(label)
        return SyntheticFeatureSet(
            features=out["features"],
            coordinates=out["coordinates"],
            specimen_ids=out["specimen_ids"],
            scanners=out["scanners"],
            magnifications=out["mags"],
            labels=np.asarray(labels, dtype=np.int64),
            specimen_content=contents,
            world=self,
        )


def generate_synthetic_features(
    n_specimens: int = 40,
    patches_per_slide: int | tuple[int, int] = 64,
    *,
    scanners_per_specimen: int | None = None,
    seed: int = 0,
    **world_kwargs: Any,
) -> SyntheticFeatureSet:
    """One-call synthetic multi-scanner set: a world (``seed``) and one draw (``seed + 1``).

    Args:
        n_specimens: Number of specimens.
        patches_per_slide: Patches per slide (or a range).
        scanners_per_specimen: Scanners per specimen (default: all).
        seed: Seed of the world; the draw uses ``seed + 1``.
        **world_kwargs: Passed to :class:`SyntheticFeatureWorld`.

    Examples:
        >>> data = generate_synthetic_features(n_specimens=3, patches_per_slide=4, feature_dim=8)
        >>> len(data), len(data.specimens)
        (18, 3)

    """
    world = SyntheticFeatureWorld(seed=seed, **world_kwargs)
    return world.sample(
        n_specimens,
        patches_per_slide,
        scanners_per_specimen=scanners_per_specimen,
        seed=seed + 1,
    )
