"""One contract test parametrized over every style transform of the plugin.

Each transform must behave as an albumentations 2.x ``ImageOnlyTransform``:

- ``A.Compose([t], seed=k)`` reproduces its outputs (same seed, same
  sequence of outputs; another seed, another sequence; successive calls
  differ);
- shape and dtype are preserved for uint8 and float32 (``[0, 1]``) images;
- ``p=0`` is the identity;
- ``A.to_dict`` -> JSON -> ``A.from_dict`` gives a transform with the same
  outputs under the same seed, where the arguments allow it (the others must
  refuse with ``NotImplementedError``);
- bad input (grayscale, RGBA, empty, int32, float64, NaN) fails with a
  ``ValueError``/``TypeError`` naming the problem. ``A.ColorJitter`` and
  ``A.HEStain`` are albumentations' own: only the checks they satisfy run.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import albumentations as A  # noqa: N812 - albumentations' conventional alias
import numpy as np
import pytest

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class Context:
    """Inputs shared by the cases: a non-square H&E tile and two references."""

    image: np.ndarray
    references: list[np.ndarray]


@dataclass(frozen=True)
class Case:
    """One transform under contract."""

    name: str
    build: Callable[[Context, float], A.BasicTransform]
    metadata: bool = False  # needs references in the call (fda_reference=[...])
    not_serialisable: str | None = None  # why A.to_dict must refuse
    bad_input_skips: dict[str, str] = field(default_factory=dict)  # bad input -> reason


def _module(name: str) -> Any:
    try:
        return importlib.import_module(f"tia_scanner_robust.augmentations.{name}")
    except ImportError as exc:  # pragma: no cover - only while a module is being written
        pytest.skip(f"tia_scanner_robust.augmentations.{name} not available: {exc}")


def _randstainna(color_spaces: list[str] | None) -> Callable[[Context, float], A.BasicTransform]:
    def build(_ctx: Context, p: float) -> A.BasicTransform:
        return _module("randstainna").RandStainNA(color_spaces=color_spaces, p=p)

    return build


def _fda_bank(ctx: Context, p: float) -> A.BasicTransform:
    return _module("fda").FourierDomainAdaptation(reference_images=ctx.references, p=p)


def _fda_metadata(_ctx: Context, p: float) -> A.BasicTransform:
    return _module("fda").FourierDomainAdaptation(p=p)


def _color_jitter(_ctx: Context, p: float) -> A.BasicTransform:
    return _module("presets").he_color_jitter(p=p)


def _he_stain(_ctx: Context, p: float) -> A.BasicTransform:
    return _module("presets").he_stain(p=p)


def _scanner(_ctx: Context, p: float) -> A.BasicTransform:
    return _module("scanner").ScannerSimulator(p=p)


_OPENCV = "albumentations' own transform: OpenCV raises cv2.error (not ValueError/TypeError)"
CASES = [
    Case("randstainna-default", _randstainna(None)),
    Case("randstainna-LAB", _randstainna(["LAB"])),
    Case("randstainna-HSV", _randstainna(["HSV"])),
    Case("randstainna-HED", _randstainna(["HED"])),
    Case(
        "fda-bank",
        _fda_bank,
        not_serialisable="a bank of reference arrays is not JSON; use metadata mode to serialise",
    ),
    Case("fda-metadata", _fda_metadata, metadata=True),
    Case(
        "he-color-jitter",
        _color_jitter,
        bad_input_skips={
            "grayscale": "A.ColorJitter accepts one-channel images by design",
            "empty": _OPENCV,
            "int32": _OPENCV,
            "float64": _OPENCV,
            "nan": "A.ColorJitter does not check for NaN",
        },
    ),
    Case(
        "he-stain",
        _he_stain,
        bad_input_skips={
            "empty": "A.HEStain fails with an AttributeError deep inside albumentations",
            "int32": "A.HEStain raises RuntimeError (albucore cannot infer the dtype's range)",
            "float64": "A.HEStain accepts float64 and returns float64",
            "nan": "A.HEStain does not check for NaN",
        },
    ),
    Case("scanner-simulator", _scanner),
]
CASE_IDS = [case.name for case in CASES]


@pytest.fixture(scope="module")
def ctx(he_image: np.ndarray) -> Context:
    image = np.ascontiguousarray(he_image[120:168, 340:404])  # 48 x 64, non-square
    references = [
        np.ascontiguousarray(he_image[600:648, 500:564]),
        np.ascontiguousarray(he_image[800:896, 100:228]),  # another size: resized
    ]
    return Context(image=image, references=references)


def _as_dtype(image: np.ndarray, dtype: type) -> np.ndarray:
    return image if dtype == np.uint8 else image.astype(np.float32) / 255


def _call(
    case: Case, ctx: Context, transform: A.BasicTransform | A.Compose, image: np.ndarray
) -> np.ndarray:
    extra = {"fda_reference": ctx.references} if case.metadata else {}
    return transform(image=image, **extra)["image"]


def _outputs(
    case: Case, ctx: Context, transform: A.BasicTransform, seed: int, image: np.ndarray
) -> list[np.ndarray]:
    compose = A.Compose([transform], seed=seed)
    return [_call(case, ctx, compose, image) for _ in range(4)]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_seed_reproducibility(case: Case, ctx: Context) -> None:
    first = _outputs(case, ctx, case.build(ctx, 1.0), 11, ctx.image)
    again = _outputs(case, ctx, case.build(ctx, 1.0), 11, ctx.image)
    other = _outputs(case, ctx, case.build(ctx, 1.0), 12, ctx.image)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    assert len({out.tobytes() for out in first}) > 1  # successive calls draw new parameters
    assert any(not np.array_equal(out, ctx.image) for out in first)  # it does something


@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["uint8", "float32"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_shape_and_dtype_preserved(case: Case, ctx: Context, dtype: type) -> None:
    image = _as_dtype(ctx.image, dtype)
    for out in _outputs(case, ctx, case.build(ctx, 1.0), 0, image):
        assert out.shape == image.shape
        assert out.dtype == image.dtype
        if dtype == np.float32:
            assert np.isfinite(out).all()
            assert out.min() >= 0.0
            assert out.max() <= 1.0


@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["uint8", "float32"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_p0_is_identity(case: Case, ctx: Context, dtype: type) -> None:
    image = _as_dtype(ctx.image, dtype)
    for out in _outputs(case, ctx, case.build(ctx, 0.0), 0, image):
        np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_serialisation_round_trip(case: Case, ctx: Context) -> None:
    transform = case.build(ctx, 1.0)
    if case.not_serialisable:
        with pytest.raises(NotImplementedError):
            A.to_dict(transform)
        pytest.skip(f"not serialisable by design: {case.not_serialisable}")
    serialised = json.loads(json.dumps(A.to_dict(transform)))
    restored = A.from_dict(serialised)
    assert type(restored) is type(transform)
    expected = _outputs(case, ctx, transform, 5, ctx.image)
    actual = _outputs(case, ctx, restored, 5, ctx.image)
    for a, b in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(a, b)


def _bad_inputs(image: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
    """name -> (array, regex the error message must match)."""
    return {
        "grayscale": (np.ascontiguousarray(image[..., 0]), r"(?i)grayscale|shape|channel"),
        "rgba": (np.dstack([image, image[..., :1]]), r"(?i)rgba|shape|channel"),
        "empty": (np.ascontiguousarray(image[:0]), r"(?i)empty"),
        "int32": (image.astype(np.int32), r"(?i)dtype|int32"),
        "float64": (image.astype(np.float64) / 255, r"(?i)dtype|float64"),
        "nan": (np.full(image.shape, np.nan, np.float32), r"(?i)nan"),
    }


BAD_INPUT_NAMES = ["grayscale", "rgba", "empty", "int32", "float64", "nan"]


@pytest.mark.parametrize("bad", BAD_INPUT_NAMES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bad_input_is_a_clear_error(case: Case, ctx: Context, bad: str) -> None:
    if bad in case.bad_input_skips:
        pytest.skip(case.bad_input_skips[bad])
    image, pattern = _bad_inputs(ctx.image)[bad]
    compose = A.Compose([case.build(ctx, 1.0)], seed=0)
    with pytest.raises((ValueError, TypeError), match=pattern):
        _call(case, ctx, compose, image)
