"""Patch-feature store (zarr), bag datasets, and the ScanGen batch sampler.

Store layout (one zarr group per slide, nested by sanitised ids)::

    store.zarr/                       attrs: format, version, feature_dim
      <specimen>/<scanner>/<magnification>/
        features      (N, D) float32  patch embeddings of one slide
        coordinates   (N, 4) int64    patch bounds (x0, y0, x1, y1), optional
        attrs: specimen_id, scanner, magnification, label, split, model,
               n_instances, feature_dim, complete, + user attributes

Keys replace every character outside ``[A-Za-z0-9._-]`` by ``_`` (a missing
magnification is stored as ``na``); the exact ids live in the attributes, and
a write whose sanitised key collides with a different slide is refused.

Atomicity: a slide is written as *data first, ``complete=True`` last*. The
group is created with ``complete=False``, the arrays are written, and only
then is the attribute flipped. A group whose flag is not True (or whose
metadata cannot be read) is treated as absent by every reader and is replaced
by the next :meth:`FeatureStore.write_slide`. This works on every zarr store
(a rename-based scheme would only work on local directories), so a resumable
extraction simply skips ``has_slide(...)`` slides. One writer at a time.

Examples:
    >>> import tempfile, numpy as np
    >>> store = FeatureStore(tempfile.mkdtemp() + "/f.zarr", mode="w")
    >>> info = store.write_slide("P1", "AT2", np.ones((3, 4)), magnification="40x", label=1)
    >>> store.has_slide("P1", "AT2", "40x"), info.key
    (True, 'P1/AT2/40x')
    >>> store.read_slide("P1", "AT2", "40x").features.shape
    (3, 4)

"""

from __future__ import annotations

import contextlib
import math
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from tia_scanner_robust.bags import pad_bags
from tia_scanner_robust.seeding import make_rng

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    import pandas as pd

__all__ = [
    "MISSING_LABEL",
    "STORE_FORMAT",
    "BagDataset",
    "FeatureStore",
    "ScanGenBatchSampler",
    "SlideFeatures",
    "SlideInfo",
    "collate_bags",
    "sanitize_key",
    "split_specimens",
]

#: ``format`` attribute of a store's root group.
STORE_FORMAT = "tia_scanner_robust.feature_store"
_STORE_VERSION = 1
#: Label given to slides without one; ``F.cross_entropy`` ignores it by default.
MISSING_LABEL = -100
_NO_MAGNIFICATION = "na"
_RESERVED_ATTRS = frozenset(
    {
        "specimen_id",
        "scanner",
        "magnification",
        "label",
        "split",
        "model",
        "n_instances",
        "feature_dim",
        "complete",
    }
)
_MODES = ("r", "r+", "a", "w", "w-")


def _zarr() -> tuple[Any, bool]:
    """The zarr module (imported on first use) and whether it is zarr 3."""
    import zarr  # noqa: PLC0415 - only the store needs zarr; samplers and datasets do not

    return zarr, int(zarr.__version__.split(".")[0]) >= 3


def sanitize_key(value: object) -> str:
    """A zarr-safe path component for an id (see the module docstring).

    Examples:
        >>> sanitize_key("TCGA 05/4244 (a)")
        'TCGA_05_4244_a_'
        >>> sanitize_key("__x")
        'k__x'

    """
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", str(value))
    if not text or not text[0].isalnum():
        text = "k" + text
    return text


@dataclass(frozen=True)
class SlideInfo:
    """Metadata of one stored slide (the row of :meth:`FeatureStore.slides`).

    Attributes:
        key: Group path inside the store, ``specimen/scanner/magnification``.
        specimen_id: Exact specimen id.
        scanner: Exact scanner name.
        magnification: Magnification label (e.g. ``"40x"``) or ``None``.
        label: Slide label or ``None``.
        split: Split name or ``None``.
        model: Name of the feature extractor or ``None``.
        n_instances: Number of patches ``N``.
        feature_dim: Feature size ``D``.
        complete: Whether the slide was fully written.
        extra: Any other attributes.

    """

    key: str
    specimen_id: str
    scanner: str
    magnification: str | None
    label: int | float | None
    split: str | None
    model: str | None
    n_instances: int
    feature_dim: int
    complete: bool
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def get(self, name: str, default: object = None) -> object:
        """A named field or extra attribute.

        Examples:
            >>> SlideInfo("k", "P", "S", None, 1, None, None, 2, 3, True, {"site": "A"}).get("site")
            'A'

        """
        if name in _RESERVED_ATTRS or name == "key":
            return getattr(self, name)
        return self.extra.get(name, default)


@dataclass
class SlideFeatures:
    """Arrays and metadata of one slide read from a :class:`FeatureStore`.

    Examples:
        >>> import tempfile
        >>> store = FeatureStore(tempfile.mkdtemp() + "/f.zarr")
        >>> _ = store.write_slide("P1", "AT2", np.ones((2, 3)), np.zeros((2, 4)), label=1)
        >>> slide = store.read_slide("P1", "AT2")
        >>> slide.features.shape, slide.coordinates.shape, slide.info.label
        ((2, 3), (2, 4), 1)

    """

    features: np.ndarray
    coordinates: np.ndarray | None
    info: SlideInfo


def _info_from_attrs(key: str, attrs: Mapping[str, Any]) -> SlideInfo:
    return SlideInfo(
        key=key,
        specimen_id=str(attrs.get("specimen_id", "")),
        scanner=str(attrs.get("scanner", "")),
        magnification=attrs.get("magnification"),
        label=attrs.get("label"),
        split=attrs.get("split"),
        model=attrs.get("model"),
        n_instances=int(attrs.get("n_instances", 0)),
        feature_dim=int(attrs.get("feature_dim", 0)),
        complete=attrs.get("complete") is True,
        extra={k: v for k, v in attrs.items() if k not in _RESERVED_ATTRS},
    )


def _json_scalar(value: object, name: str) -> object:
    """Turn NumPy scalars into Python ones so zarr can store them as JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is not None and not isinstance(value, (str, int, float, bool, list, dict)):
        msg = f"{name} must be a JSON-serialisable value, got {type(value).__name__}."
        raise TypeError(msg)
    if isinstance(value, float) and not math.isfinite(value):
        msg = f"{name} must be finite, got {value}."
        raise ValueError(msg)
    return value


class FeatureStore:
    """A zarr store of per-slide patch features (layout in the module docstring).

    Args:
        path: Directory of the zarr store.
        mode: ``"r"`` read-only, ``"r+"`` read/write an existing store,
            ``"a"`` read/write and create if missing (default), ``"w"`` create
            (deleting what was there), ``"w-"`` create, fail if it exists.
        zarr_format: Format of a *new* store (2 or 3; ``None``: the installed
            zarr's default). Existing stores keep theirs.

    Raises:
        ValueError: For an unknown mode, or a path holding another kind of
            zarr group.
        FileNotFoundError: Opening a missing store with ``"r"``/``"r+"``.

    Examples:
        >>> import tempfile, numpy as np
        >>> store = FeatureStore(tempfile.mkdtemp() + "/f.zarr")
        >>> _ = store.write_slide("P1", "AT2", np.zeros((2, 3)), split="train", label=0)
        >>> _ = store.write_slide("P1", "GT450", np.zeros((5, 3)), split="train", label=0)
        >>> [s.scanner for s in store.filter(split="train")]
        ['AT2', 'GT450']

    """

    def __init__(
        self, path: str | Path, mode: str = "a", *, zarr_format: int | None = None
    ) -> None:
        if mode not in _MODES:
            msg = f"Unknown mode {mode!r}; valid modes: {', '.join(_MODES)}."
            raise ValueError(msg)
        self.path = Path(path)
        self.mode = mode
        self.zarr_format = zarr_format
        if mode in ("r", "r+") and not self.path.exists():
            msg = f"Feature store {self.path} does not exist."
            raise FileNotFoundError(msg)
        self._root = self._open(mode)
        if mode != "r":
            self._root.attrs.update({"format": STORE_FORMAT, "version": _STORE_VERSION})
            # later openings (e.g. in DataLoader workers) must not truncate the store again
            self.mode = "r+" if mode in ("w", "w-") else mode

    # -- opening and pickling (DataLoader workers reopen the store) ---------
    def _open(self, mode: str) -> Any:
        zarr, is_zarr3 = _zarr()
        kwargs: dict[str, Any] = {}
        creating = mode in ("w", "w-") or (mode == "a" and not self.path.exists())
        if is_zarr3 and self.zarr_format is not None and creating:  # existing stores keep theirs
            kwargs["zarr_format"] = self.zarr_format
        try:
            root = zarr.open_group(str(self.path), mode=mode, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as error:
            msg = f"Cannot open feature store {self.path} with mode {mode!r}: {error}"
            raise ValueError(msg) from error
        found = root.attrs.get("format")
        if found is not None and found != STORE_FORMAT:
            msg = f"{self.path} is a zarr group of format {found!r}, not a feature store."
            raise ValueError(msg)
        return root

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_root"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._root = self._open(self.mode)

    @property
    def read_only(self) -> bool:
        """Whether the store was opened with mode ``"r"``."""
        return self.mode == "r"

    @property
    def feature_dim(self) -> int | None:
        """Feature size ``D`` shared by every slide (``None`` while empty)."""
        value = self._root.attrs.get("feature_dim")
        return None if value is None else int(value)

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, mode={self.mode!r}, slides={len(self)})"

    def __len__(self) -> int:
        return len(self.slides())

    # -- keys ----------------------------------------------------------------
    @staticmethod
    def slide_key(specimen_id: object, scanner: object, magnification: object = None) -> str:
        """Group path of a slide: ``specimen/scanner/magnification`` (sanitised).

        Examples:
            >>> FeatureStore.slide_key("P 1", "AT2")
            'P_1/AT2/na'

        """
        mag = _NO_MAGNIFICATION if magnification is None else sanitize_key(magnification)
        return f"{sanitize_key(specimen_id)}/{sanitize_key(scanner)}/{mag}"

    def _read_info(self, key: str) -> SlideInfo | None:
        """Metadata at ``key``.

        ``None`` if nothing is there; an incomplete record if something is
        there whose metadata cannot be read (an interrupted write).
        """
        try:
            attrs = dict(self._root[key].attrs)
        except (KeyError, FileNotFoundError):
            return None
        except Exception:  # noqa: BLE001 - unreadable metadata means an interrupted write
            return SlideInfo(key, "", "", None, None, None, None, 0, 0, complete=False)
        return _info_from_attrs(key, attrs)

    @staticmethod
    def _same_slide(
        info: SlideInfo, specimen_id: object, scanner: object, magnification: object
    ) -> bool:
        mag = None if magnification is None else str(magnification)
        return (info.specimen_id, info.scanner, info.magnification) == (
            str(specimen_id),
            str(scanner),
            mag,
        )

    # -- queries ---------------------------------------------------------------
    def has_slide(self, specimen_id: object, scanner: object, magnification: object = None) -> bool:
        """Whether a *complete* slide with exactly these ids is stored.

        Examples:
            >>> import tempfile
            >>> FeatureStore(tempfile.mkdtemp() + "/f.zarr").has_slide("P1", "AT2")
            False

        """
        info = self._read_info(self.slide_key(specimen_id, scanner, magnification))
        return (
            info is not None
            and info.complete
            and self._same_slide(info, specimen_id, scanner, magnification)
        )

    def slide_info(
        self, specimen_id: object, scanner: object, magnification: object = None
    ) -> SlideInfo:
        """Metadata of a complete slide.

        Raises:
            KeyError: If the slide is absent or incomplete.

        """
        key = self.slide_key(specimen_id, scanner, magnification)
        info = self._read_info(key)
        if (
            info is None
            or not info.complete
            or not self._same_slide(info, specimen_id, scanner, magnification)
        ):
            msg = f"No complete slide (specimen_id={specimen_id!r}, scanner={scanner!r}, "
            msg += f"magnification={magnification!r}) in {self.path}."
            raise KeyError(msg)
        return info

    def read_slide(
        self, specimen_id: object, scanner: object, magnification: object = None
    ) -> SlideFeatures:
        """Features, coordinates and metadata of a complete slide.

        Raises:
            KeyError: If the slide is absent or incomplete.

        """
        info = self.slide_info(specimen_id, scanner, magnification)
        return self.read_key(info.key, info)

    def read_key(self, key: str, info: SlideInfo | None = None) -> SlideFeatures:
        """Read a slide by its group key (as listed in :meth:`slides`).

        Raises:
            KeyError: If the slide is absent or incomplete.

        """
        info = info if info is not None else self._read_info(key)
        if info is None or not info.complete:
            msg = f"No complete slide at key {key!r} in {self.path}."
            raise KeyError(msg)
        group = self._root[key]
        features = np.asarray(group["features"][...], dtype=np.float32)
        coordinates = np.asarray(group["coordinates"][...]) if "coordinates" in group else None
        return SlideFeatures(features=features, coordinates=coordinates, info=info)

    def read_features(self, key: str) -> np.ndarray:
        """``(N, D)`` float32 features of the slide at ``key`` (no metadata check)."""
        return np.asarray(self._root[key]["features"][...], dtype=np.float32)

    def slides(self, *, include_incomplete: bool = False) -> list[SlideInfo]:
        """Metadata of every slide, sorted by key.

        Args:
            include_incomplete: Also list interrupted writes (``complete=False``).

        """
        infos: list[SlideInfo] = []
        for specimen in self._children(""):
            for scanner in self._children(specimen):
                for magnification in self._children(f"{specimen}/{scanner}"):
                    info = self._read_info(f"{specimen}/{scanner}/{magnification}")
                    if info is not None and (info.complete or include_incomplete):
                        infos.append(info)
        return infos

    def _children(self, path: str) -> list[str]:
        """Sorted child group names.

        Falls back to the directory listing when a child's metadata is
        unreadable (an interrupted write on a local store).
        """
        try:
            group = self._root[path] if path else self._root
            return sorted(group.group_keys())
        except Exception:
            folder = self.path / path
            if not folder.is_dir():
                raise
            return sorted(
                p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
            )

    def filter(
        self,
        *,
        split: str | Iterable[str] | None = None,
        scanner: str | Iterable[str] | None = None,
        specimen_id: str | Iterable[str] | None = None,
        magnification: str | Iterable[str] | None = None,
        model: str | Iterable[str] | None = None,
        labelled: bool | None = None,
    ) -> list[SlideInfo]:
        """Complete slides matching every given criterion.

        Each criterion is one value or a collection of accepted values;
        ``None`` does not filter. ``labelled=True`` keeps slides with a label,
        ``False`` those without.

        """

        def accepted(value: object) -> set[Any] | None:
            if value is None:
                return None
            if isinstance(value, str):
                return {value}
            return set(value)  # type: ignore[call-overload]

        criteria = {
            "split": accepted(split),
            "scanner": accepted(scanner),
            "specimen_id": accepted(specimen_id),
            "magnification": accepted(magnification),
            "model": accepted(model),
        }
        selected = []
        for info in self.slides():
            if any(
                ok is not None and getattr(info, name) not in ok for name, ok in criteria.items()
            ):
                continue
            if labelled is not None and (info.label is not None) != labelled:
                continue
            selected.append(info)
        return selected

    def to_dataframe(self) -> pd.DataFrame:
        """The slide table as a pandas DataFrame (one row per complete slide)."""
        import pandas as pd  # noqa: PLC0415 - optional, pulled in by tiatoolbox

        rows = []
        for info in self.slides():
            row = {k: getattr(info, k) for k in ("key", *sorted(_RESERVED_ATTRS))}
            row.update(info.extra)
            rows.append(row)
        return pd.DataFrame(rows)

    # -- writing ---------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.read_only:
            msg = f"Feature store {self.path} is open read-only (mode 'r')."
            raise PermissionError(msg)

    def write_slide(
        self,
        specimen_id: object,
        scanner: object,
        features: np.ndarray | torch.Tensor,
        coordinates: np.ndarray | None = None,
        *,
        magnification: object = None,
        label: float | None = None,
        split: str | None = None,
        model: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> SlideInfo:
        """Write one slide atomically (data first, ``complete=True`` last).

        An incomplete group at the same key (an interrupted write) is replaced.

        Args:
            specimen_id: Specimen id (stored exactly, keyed sanitised).
            scanner: Scanner name.
            features: ``(N, D)`` patch features, ``N >= 1`` (stored float32).
            coordinates: Optional ``(N, 4)`` patch bounds.
            magnification: Optional magnification label, e.g. ``"40x"``.
            label: Optional slide label (int class index or float).
            split: Optional split name.
            model: Optional feature-extractor name.
            attrs: Extra JSON-serialisable attributes.
            overwrite: Replace a complete slide with the same ids.

        Returns:
            The slide's :class:`SlideInfo`.

        Raises:
            PermissionError: If the store is read-only.
            ValueError: On bad shapes, non-finite features, a feature size
                that differs from the store's, an existing complete slide
                (without ``overwrite``) or a key collision.

        """
        self._check_writable()
        array = (
            features.detach().cpu().numpy()
            if isinstance(features, torch.Tensor)
            else np.asarray(features)
        )
        if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
            msg = f"features must have shape (N, D) with N, D >= 1, got {array.shape}."
            raise ValueError(msg)
        array = array.astype(np.float32, copy=False)
        if not np.isfinite(array).all():
            msg = f"features of slide ({specimen_id!r}, {scanner!r}) contain NaN or inf."
            raise ValueError(msg)
        n_instances, feature_dim = array.shape
        if self.feature_dim is not None and self.feature_dim != feature_dim:
            msg = f"features have feature size {feature_dim}; this store holds {self.feature_dim}."
            raise ValueError(msg)
        coords = None
        if coordinates is not None:
            coords = np.asarray(coordinates)
            if coords.shape != (n_instances, 4):
                msg = (
                    f"coordinates must have shape (N, 4) = {(n_instances, 4)}, got {coords.shape}."
                )
                raise ValueError(msg)
        extra = dict(attrs or {})
        clash = sorted(_RESERVED_ATTRS.intersection(extra))
        if clash:
            msg = f"attrs may not set reserved attributes {clash}; use the keyword arguments."
            raise ValueError(msg)
        metadata = {
            "specimen_id": str(specimen_id),
            "scanner": str(scanner),
            "magnification": None if magnification is None else str(magnification),
            "label": _json_scalar(label, "label"),
            "split": _json_scalar(split, "split"),
            "model": _json_scalar(model, "model"),
            "n_instances": int(n_instances),
            "feature_dim": int(feature_dim),
        }
        metadata.update({k: _json_scalar(v, f"attrs[{k!r}]") for k, v in extra.items()})

        key = self.slide_key(specimen_id, scanner, magnification)
        existing = self._read_info(key)
        if existing is not None:
            if existing.complete and not self._same_slide(
                existing, specimen_id, scanner, magnification
            ):
                msg = (
                    f"key collision: slide ({specimen_id!r}, {scanner!r}, {magnification!r}) "
                    f"maps to {key!r}, which holds ({existing.specimen_id!r}, "
                    f"{existing.scanner!r}, {existing.magnification!r})."
                )
                raise ValueError(msg)
            if existing.complete and not overwrite:
                msg = f"slide {key!r} already exists in {self.path}; pass overwrite=True."
                raise ValueError(msg)
        self._delete_key(key)  # an interrupted write (or the slide being overwritten)

        group = self._root.require_group(key)
        group.attrs.update({**metadata, "complete": False})
        self._write_array(group, "features", array, (min(n_instances, 4096), feature_dim))
        if coords is not None:
            self._write_array(
                group, "coordinates", coords.astype(np.int64), (min(n_instances, 4096), 4)
            )
        if self.feature_dim is None:
            self._root.attrs["feature_dim"] = int(feature_dim)
        group.attrs["complete"] = True  # the commit point
        return _info_from_attrs(key, {**metadata, "complete": True})

    @staticmethod
    def _write_array(group: Any, name: str, data: np.ndarray, chunks: tuple[int, int]) -> None:
        if _zarr()[1]:
            group.create_array(name, data=data, chunks=chunks, overwrite=True)
        else:  # pragma: no cover - zarr 2
            group.create_dataset(name, data=data, chunks=chunks, overwrite=True)

    def _delete_key(self, key: str) -> None:
        """Delete whatever is stored at ``key`` (no error when nothing is)."""
        with contextlib.suppress(KeyError, FileNotFoundError):
            del self._root[key]
        folder = self.path / key
        if folder.is_dir():  # leftovers whose metadata zarr could not parse
            shutil.rmtree(folder)

    def delete_slide(
        self, specimen_id: object, scanner: object, magnification: object = None
    ) -> bool:
        """Delete a slide (complete or not); returns whether something was deleted."""
        self._check_writable()
        key = self.slide_key(specimen_id, scanner, magnification)
        if self._read_info(key) is None:
            return False
        self._delete_key(key)
        return True

    def update_attributes(self, key: str, **attrs: Any) -> SlideInfo:
        """Change ``label``, ``split``, ``model`` or extra attributes of a complete slide.

        Raises:
            KeyError: If no complete slide is stored at ``key``.
            ValueError: When trying to change the ids, sizes or ``complete``.

        """
        self._check_writable()
        info = self._read_info(key)
        if info is None or not info.complete:
            msg = f"No complete slide at key {key!r} in {self.path}."
            raise KeyError(msg)
        frozen = sorted(
            set(attrs)
            & {"specimen_id", "scanner", "magnification", "n_instances", "feature_dim", "complete"}
        )
        if frozen:
            msg = f"cannot change {frozen} of a stored slide; write it again instead."
            raise ValueError(msg)
        values = {k: _json_scalar(v, k) for k, v in attrs.items()}
        self._root[key].attrs.update(values)
        return _info_from_attrs(key, {**dict(self._root[key].attrs)})

    def assign_splits(self, splits: Mapping[str, str]) -> int:
        """Set the ``split`` attribute of every slide from ``{specimen_id: split}``.

        Slides of specimens missing from the mapping are left unchanged.

        Returns:
            Number of slides updated.

        """
        count = 0
        for info in self.slides():
            if info.specimen_id in splits and info.split != splits[info.specimen_id]:
                self.update_attributes(info.key, split=splits[info.specimen_id])
                count += 1
        return count


# ---------------------------------------------------------------------------
# Bag dataset
# ---------------------------------------------------------------------------
class BagDataset(Dataset):
    """Slides of a :class:`FeatureStore` as MIL bags.

    Items are dicts: ``features`` ``(N, D)`` float32 tensor, ``label`` (int
    class index, float, or :data:`MISSING_LABEL` when the slide has none),
    ``specimen_id``, ``scanner``, ``magnification``, ``key`` and ``index``.

    Args:
        store: A store or the path of one (opened read-only).
        split: Keep slides of this split (or these splits); ``None``: all.
        scanners: Keep slides of these scanners.
        specimens: Keep slides of these specimens.
        magnifications: Keep slides at these magnifications.
        max_instances: If set, bags larger than this are subsampled (uniform
            without replacement, a new draw per access) to this size.
        label_key: Attribute holding the label (``"label"`` or an extra one).
        require_label: Raise if a selected slide has no label.
        seed: Seed (or NumPy generator) of the subsampling.

    Raises:
        ValueError: If nothing matches, or a label is missing while required.

    Examples:
        >>> import tempfile, numpy as np
        >>> store = FeatureStore(tempfile.mkdtemp() + "/f.zarr")
        >>> for i in range(3):
        ...     _ = store.write_slide(
        ...         f"P{i}", "AT2", np.ones((i + 1, 4)), label=i % 2, split="train"
        ...     )
        >>> batch = collate_bags([item for item in BagDataset(store, split="train")])
        >>> (
        ...     tuple(batch["features"].shape),
        ...     batch["mask"].sum(dim=1).tolist(),
        ...     batch["label"].tolist(),
        ... )
        ((3, 3, 4), [1, 2, 3], [0, 1, 0])

    """

    def __init__(
        self,
        store: FeatureStore | str | Path,
        split: str | Iterable[str] | None = None,
        *,
        scanners: str | Iterable[str] | None = None,
        specimens: str | Iterable[str] | None = None,
        magnifications: str | Iterable[str] | None = None,
        max_instances: int | None = None,
        label_key: str = "label",
        require_label: bool = False,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.store = store if isinstance(store, FeatureStore) else FeatureStore(store, mode="r")
        self.slides = self.store.filter(
            split=split, scanner=scanners, specimen_id=specimens, magnification=magnifications
        )
        if not self.slides:
            msg = (
                f"No complete slide in {self.store.path} matches split={split!r}, "
                f"scanners={scanners!r}, specimens={specimens!r}, "
                f"magnifications={magnifications!r}."
            )
            raise ValueError(msg)
        if max_instances is not None and (isinstance(max_instances, bool) or max_instances < 1):
            msg = f"max_instances must be None or a positive int, got {max_instances!r}."
            raise ValueError(msg)
        self.max_instances = max_instances
        self.label_key = label_key
        self._labels = [info.get(label_key) for info in self.slides]
        if require_label:
            missing = [
                info.key
                for info, label in zip(self.slides, self._labels, strict=True)
                if label is None
            ]
            if missing:
                msg = f"{len(missing)} slide(s) have no {label_key!r}: {missing[:5]}..."
                raise ValueError(msg)
        self._rng = make_rng(seed)

    def __len__(self) -> int:
        return len(self.slides)

    @property
    def specimen_ids(self) -> list[str]:
        """Specimen id of every item (for :class:`ScanGenBatchSampler`)."""
        return [info.specimen_id for info in self.slides]

    @property
    def scanner_ids(self) -> list[str]:
        """Scanner of every item."""
        return [info.scanner for info in self.slides]

    @property
    def labels(self) -> list[Any]:
        """Label of every item (:data:`MISSING_LABEL` where absent)."""
        return [MISSING_LABEL if label is None else label for label in self._labels]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            msg = f"index {index} out of range for {len(self)} bags."
            raise IndexError(msg)
        info = self.slides[index]
        features = self.store.read_features(info.key)
        if self.max_instances is not None and features.shape[0] > self.max_instances:
            keep = np.sort(self._rng.choice(features.shape[0], self.max_instances, replace=False))
            features = features[keep]
        label = self._labels[index]
        return {
            "features": torch.from_numpy(features),
            "label": MISSING_LABEL if label is None else label,
            "specimen_id": info.specimen_id,
            "scanner": info.scanner,
            "magnification": info.magnification,
            "key": info.key,
            "index": index % len(self),
        }


def collate_bags(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pad a list of :class:`BagDataset` items into one batch.

    Returns:
        Dict with ``features`` ``(B, N_max, D)``, ``mask`` ``(B, N_max)``
        (True = real instance), ``n_instances`` ``(B,)``, ``label`` ``(B,)``
        tensor (int64 for class indices, float32 if any label is a float), and
        lists ``specimen_id``, ``scanner``, ``magnification``, ``key``,
        ``index``.

    Examples:
        >>> items = [
        ...     {"features": torch.ones(2, 3), "label": 1},
        ...     {"features": torch.ones(4, 3), "label": 0},
        ... ]
        >>> batch = collate_bags(items)
        >>> (
        ...     tuple(batch["features"].shape),
        ...     batch["mask"].sum(dim=1).tolist(),
        ...     batch["label"].tolist(),
        ... )
        ((2, 4, 3), [2, 4], [1, 0])

    """
    if not batch:
        msg = "batch is empty."
        raise ValueError(msg)
    features, mask = pad_bags([item["features"] for item in batch])
    labels = [item.get("label", MISSING_LABEL) for item in batch]
    is_float = any(isinstance(label, float) for label in labels)
    out: dict[str, Any] = {
        "features": features,
        "mask": mask,
        "n_instances": mask.sum(dim=1),
        "label": torch.tensor(labels, dtype=torch.float32 if is_float else torch.int64),
    }
    for name in ("specimen_id", "scanner", "magnification", "key", "index"):
        out[name] = [item.get(name) for item in batch]
    return out


# ---------------------------------------------------------------------------
# ScanGen sampler and splits
# ---------------------------------------------------------------------------
def _check_batch_sizes(
    batch_size: int, specimens_per_batch: int | None, scanners_per_specimen: int
) -> int:
    """Validate the sampler's sizes; return ``specimens_per_batch``."""
    if scanners_per_specimen < 2:
        msg = (
            f"scanners_per_specimen must be >= 2 for attraction pairs, got {scanners_per_specimen}."
        )
        raise ValueError(msg)
    if specimens_per_batch is None:
        specimens_per_batch = batch_size // scanners_per_specimen
    if specimens_per_batch < 2:
        msg = f"specimens_per_batch must be >= 2 for repulsion pairs, got {specimens_per_batch}."
        raise ValueError(msg)
    if batch_size != specimens_per_batch * scanners_per_specimen:
        msg = (
            f"batch_size ({batch_size}) must equal specimens_per_batch ({specimens_per_batch}) "
            f"x scanners_per_specimen ({scanners_per_specimen})."
        )
        raise ValueError(msg)
    return specimens_per_batch


class ScanGenBatchSampler(Sampler[list[int]]):
    """Batches of slide indices that always contain ScanGen pairs.

    Each batch holds ``specimens_per_batch`` distinct specimens, each under
    ``scanners_per_specimen`` distinct scanners (one slide per specimen and
    scanner; if several, e.g. magnifications, one is drawn). Guarantee: every
    batch has attraction pairs (any specimen of the batch, under two
    scanners) **and** repulsion pairs: an *anchor* scanner is drawn among the
    scanners shared by at least two eligible specimens, and two of the
    batch's specimens are drawn among those scanned by it and include it.

    Args:
        specimen_ids: Specimen id of every dataset item.
        scanner_ids: Scanner of every dataset item.
        batch_size: Slides per batch; must equal
            ``specimens_per_batch * scanners_per_specimen``.
        specimens_per_batch: Specimens per batch (default
            ``batch_size // scanners_per_specimen``); at least 2.
        scanners_per_specimen: Scanners per specimen; at least 2.
        num_batches: Batches per epoch (default: enough for every eligible
            specimen once on average, at least 1).
        seed: Seed, or a NumPy generator (then epochs continue its stream).

    Raises:
        ValueError: If the pool cannot satisfy the guarantee (the message
            says why) or the sizes are inconsistent.

    Examples:
        >>> specimens = ["a", "a", "b", "b", "c", "c"]
        >>> scanners = ["X", "Y", "X", "Y", "X", "Y"]
        >>> sampler = ScanGenBatchSampler(specimens, scanners, batch_size=4, seed=0)
        >>> batch = next(iter(sampler))
        >>> len(batch), len({specimens[i] for i in batch})
        (4, 2)

    """

    def __init__(
        self,
        specimen_ids: Sequence[object],
        scanner_ids: Sequence[object],
        batch_size: int,
        specimens_per_batch: int | None = None,
        scanners_per_specimen: int = 2,
        *,
        num_batches: int | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        specimens = [str(s) for s in specimen_ids]
        scanners = [str(s) for s in scanner_ids]
        if len(specimens) != len(scanners):
            msg = (
                f"specimen_ids ({len(specimens)}) and scanner_ids ({len(scanners)}) "
                "differ in length."
            )
            raise ValueError(msg)
        specimens_per_batch = _check_batch_sizes(
            batch_size, specimens_per_batch, scanners_per_specimen
        )
        self.batch_size = batch_size
        self.specimens_per_batch = specimens_per_batch
        self.scanners_per_specimen = scanners_per_specimen

        slides: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for index, (specimen, scanner) in enumerate(zip(specimens, scanners, strict=True)):
            slides[specimen][scanner].append(index)
        self._slides = {
            p: {s: list(v) for s, v in by_scanner.items()} for p, by_scanner in slides.items()
        }
        self.eligible = sorted(
            p for p, by_scanner in self._slides.items() if len(by_scanner) >= scanners_per_specimen
        )
        if len(self.eligible) < specimens_per_batch:
            msg = (
                f"The pool cannot fill a ScanGen batch: {len(self.eligible)} specimen(s) are "
                f"scanned by >= {scanners_per_specimen} scanners, {specimens_per_batch} are "
                "needed per batch."
            )
            raise ValueError(msg)
        by_scanner: dict[str, list[str]] = defaultdict(list)
        for specimen in self.eligible:
            for scanner in self._slides[specimen]:
                by_scanner[scanner].append(specimen)
        self._anchors = {s: sorted(ps) for s, ps in sorted(by_scanner.items()) if len(ps) >= 2}
        if not self._anchors:
            msg = (
                "The pool cannot give repulsion pairs: no scanner has scanned two or more "
                f"specimens that are each scanned by >= {scanners_per_specimen} scanners."
            )
            raise ValueError(msg)
        if num_batches is None:
            num_batches = max(1, len(self.eligible) // specimens_per_batch)
        if num_batches < 1:
            msg = f"num_batches must be positive, got {num_batches}."
            raise ValueError(msg)
        self.num_batches = num_batches
        if isinstance(seed, np.random.Generator):
            self._generator: np.random.Generator | None = seed
            self.seed = None
        else:
            self._generator = None
            self.seed = int(make_rng(seed).integers(2**31)) if seed is None else int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration the given epoch's (reproducible per seed and epoch)."""
        self.epoch = int(epoch)

    def sample_batch(self, rng: np.random.Generator) -> list[int]:
        """Draw one batch of dataset indices (see the class docstring)."""
        k = self.scanners_per_specimen
        anchor = list(self._anchors)[rng.integers(len(self._anchors))]
        pair = list(rng.choice(self._anchors[anchor], 2, replace=False))
        others = [p for p in self.eligible if p not in pair]
        chosen = pair + list(rng.choice(others, self.specimens_per_batch - 2, replace=False))
        batch: list[int] = []
        for position, specimen in enumerate(chosen):
            available = sorted(self._slides[specimen])
            if position < 2:  # the anchor pair: include the shared scanner
                rest = [s for s in available if s != anchor]
                picked = [anchor, *rng.choice(rest, k - 1, replace=False)]
            else:
                picked = list(rng.choice(available, k, replace=False))
            for scanner in picked:
                candidates = self._slides[specimen][scanner]
                batch.append(candidates[rng.integers(len(candidates))])
        return [int(i) for i in rng.permutation(batch)]

    def __iter__(self) -> Iterator[list[int]]:
        rng = (
            self._generator
            if self._generator is not None
            else np.random.default_rng([self.seed, self.epoch])
        )
        self.epoch += 1
        for _ in range(self.num_batches):
            yield self.sample_batch(rng)


def split_specimens(
    specimen_ids: Iterable[object],
    fractions: Mapping[str, float] | Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    *,
    labels: Sequence[object] | None = None,
) -> dict[str, str]:
    """Assign every specimen to exactly one split (no specimen in two splits).

    Specimens are sorted, shuffled with ``seed`` and cut by the fractions
    (largest-remainder rounding), separately per label when ``labels`` is
    given (stratified: class balance preserved, as in the ScanGen paper).
    The result does not depend on the order of the input.

    Args:
        specimen_ids: Specimen id per slide (repeats allowed).
        fractions: ``{name: fraction}``, or a sequence of fractions named
            ``train``/``val``/``test`` (2 or 3 values) or ``split0``, ``split1``...;
            must sum to 1.
        seed: Random seed.
        labels: Optional label per slide, aligned with ``specimen_ids``; a
            specimen's slides must agree.

    Returns:
        ``{specimen_id: split_name}`` (ids as strings).

    Raises:
        ValueError: On bad fractions, mismatched lengths or conflicting labels.

    Examples:
        >>> splits = split_specimens(["a", "a", "b", "c", "d"], {"train": 0.5, "test": 0.5}, seed=0)
        >>> sorted(splits.values()).count("train"), len(splits)
        (2, 4)

    """
    ids = [str(s) for s in specimen_ids]
    if isinstance(fractions, dict) or hasattr(fractions, "items"):
        names = [str(k) for k in fractions]
        values = [float(v) for v in fractions.values()]  # type: ignore[union-attr]
    else:
        values = [float(v) for v in fractions]
        defaults = {2: ["train", "test"], 3: ["train", "val", "test"]}
        names = defaults.get(len(values), [f"split{i}" for i in range(len(values))])
    if not values or any(v < 0 for v in values) or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        given = dict(zip(names, values, strict=True))
        msg = f"fractions must be non-negative and sum to 1, got {given}."
        raise ValueError(msg)
    strata: dict[object, set[str]] = defaultdict(set)
    if labels is None:
        strata[None] = set(ids)
    else:
        if len(labels) != len(ids):
            msg = f"labels ({len(labels)}) and specimen_ids ({len(ids)}) differ in length."
            raise ValueError(msg)
        label_of: dict[str, object] = {}
        for specimen, label in zip(ids, labels, strict=True):
            if label_of.setdefault(specimen, label) != label:
                msg = (
                    f"specimen {specimen!r} has conflicting labels "
                    f"{label_of[specimen]!r} and {label!r}."
                )
                raise ValueError(msg)
        for specimen, label in label_of.items():
            strata[label].add(specimen)
    rng = make_rng(seed)
    assignment: dict[str, str] = {}
    for stratum in sorted(strata, key=str):
        members = sorted(strata[stratum])
        order = rng.permutation(len(members))
        exact = np.asarray(values) * len(members)
        counts = np.floor(exact).astype(int)
        remainder = len(members) - counts.sum()
        counts[np.argsort(-(exact - counts), kind="stable")[:remainder]] += 1
        bounds = np.concatenate([[0], np.cumsum(counts)])
        for name, start, stop in zip(names, bounds[:-1], bounds[1:], strict=True):
            for position in order[start:stop]:
                assignment[members[position]] = name
    return assignment
