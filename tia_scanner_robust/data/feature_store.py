"""The patch-feature store: one zarr group per slide.

The bag datasets that read it live in :mod:`~tia_scanner_robust.data.bag_datasets`,
the ScanGen batch sampler and the specimen splits in
:mod:`~tia_scanner_robust.data.bag_sampling`. This module imports neither torch
nor (until a store is opened) zarr.

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
import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import pandas as pd
    import torch

__all__ = [
    "STORE_FORMAT",
    "FeatureStore",
    "SlideFeatures",
    "SlideInfo",
    "sanitize_key",
]

#: ``format`` attribute of a store's root group.
STORE_FORMAT = "tia_scanner_robust.feature_store"
_STORE_VERSION = 1
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
_EXTRACTION_ATTR = "extraction"


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


def _common_slide_settings(
    slides: list[SlideInfo], wanted: Mapping[str, Any]
) -> dict[str, Any] | None:
    """What the slides of a store without a record say made them (``None``: nothing).

    Only the fields every slide records (``model``, ``patch_size``) are
    compared; slides that disagree among themselves give a marker value.
    """
    found: dict[str, Any] = {}
    for name in ("model", "patch_size"):
        if name not in wanted:
            continue
        values = {json.dumps(info.get(name)) for info in slides}
        if values == {"null"}:
            continue
        found[name] = json.loads(values.pop()) if len(values) == 1 else "several values"
    if not found:
        return None
    return {**wanted, **found}


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


def _check_deletable(path: Path) -> None:
    """Refuse to let mode ``"w"`` delete a folder that is not a feature store."""
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    try:
        found = _zarr()[0].open_group(str(path), mode="r").attrs.get("format")
    except Exception:  # noqa: BLE001 - not a zarr group at all
        found = None
    if found != STORE_FORMAT:
        msg = (
            f"{path} exists and is not a feature store; refusing to delete it to create "
            "one. Choose a new or empty folder."
        )
        raise ValueError(msg)


class FeatureStore:
    """A zarr store of per-slide patch features (layout in the module docstring).

    Args:
        path: Directory of the zarr store.
        mode: ``"r"`` read-only, ``"r+"`` read/write an existing store,
            ``"a"`` read/write and create if missing (default), ``"w"`` create
            (deleting the feature store that was there; any other non-empty
            folder is refused), ``"w-"`` create, fail if it exists.
        zarr_format: Format of a *new* store (2 or 3; ``None``: the installed
            zarr's default). Existing stores keep theirs.

    Raises:
        ValueError: For an unknown mode, a path holding another kind of
            zarr group, or mode ``"w"`` on a non-empty folder that is not a
            feature store.
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
        if mode == "w":
            _check_deletable(self.path)
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
    def extraction(self) -> dict[str, Any] | None:
        """What made the store's features (``None`` for a store without a record).

        Recorded by :meth:`claim_extraction`: the feature extractor's name,
        the identity of its weights, the patch size, the input normalisation...
        """
        value = self._root.attrs.get(_EXTRACTION_ATTR)
        return dict(value) if isinstance(value, dict) else None

    def claim_extraction(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Record what makes the features, or refuse settings that differ from the record.

        A store holds features of one extractor only: resuming an extraction
        with another model, other weights (a random initialisation differs
        at every run), another patch size or normalisation would mix two
        networks' features. An empty store records ``settings``; a store
        with a record must match it exactly; a store with slides but no
        record (written before records existed) must match what its slides
        record (``model``, ``patch_size``) and then gets the record.

        Args:
            settings: JSON-serialisable description of the extraction.

        Returns:
            The settings as recorded.

        Raises:
            ValueError: If the settings differ from the store's (the message
                lists each differing field, recorded and requested).

        Examples:
            >>> import tempfile
            >>> store = FeatureStore(tempfile.mkdtemp() + "/f.zarr")
            >>> store.claim_extraction({"model": "resnet18", "patch_size": 224})
            {'model': 'resnet18', 'patch_size': 224}
            >>> store.claim_extraction({"model": "UNI", "patch_size": 224})  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: Feature store ... was extracted with other settings: model: 'resnet18' ...

        """
        wanted = json.loads(json.dumps(dict(settings)))  # tuples -> lists, as stored
        recorded = self.extraction
        if recorded is None:
            slides = self.slides()
            recorded = _common_slide_settings(slides, wanted) if slides else None
        if recorded is not None:
            fields = sorted(
                k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k)
            )
            if fields:
                diffs = "; ".join(
                    f"{k}: {recorded.get(k)!r} in the store, {wanted.get(k)!r} now" for k in fields
                )
                msg = (
                    f"Feature store {self.path} was extracted with other settings: {diffs}. "
                    "Its features would mix two extractors: write to another store, or "
                    "start this one afresh (extract-features --overwrite; overwrite=True)."
                )
                raise ValueError(msg)
        if self.extraction != wanted and not self.read_only:
            self._root.attrs[_EXTRACTION_ATTR] = wanted
        return wanted

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
        features = self._finite(np.asarray(group["features"][...], dtype=np.float32), key)
        coordinates = np.asarray(group["coordinates"][...]) if "coordinates" in group else None
        return SlideFeatures(features=features, coordinates=coordinates, info=info)

    def read_features(self, key: str) -> np.ndarray:
        """``(N, D)`` float32 features of the slide at ``key`` (no metadata check).

        Raises:
            ValueError: If the features hold NaN or inf (the message names
                the store and the slide).

        """
        return self._finite(np.asarray(self._root[key]["features"][...], dtype=np.float32), key)

    def _finite(self, features: np.ndarray, key: str) -> np.ndarray:
        """``features``, refused when they hold NaN or inf (a corrupt or foreign store)."""
        finite = np.isfinite(features)
        if not finite.all():
            rows = np.flatnonzero(~finite.all(axis=1))
            msg = (
                f"Feature store {self.path}: slide {key!r} holds NaN or inf features "
                f"({int((~finite).sum())} value(s) in {rows.size} of {features.shape[0]} patches, "
                f"first patch {int(rows[0])}); re-extract it (extract-features --overwrite)."
            )
            raise ValueError(msg)
        return features

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
        if hasattr(features, "detach"):  # a torch tensor (torch is not imported here)
            features = features.detach().cpu().numpy()
        array = np.asarray(features)
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
