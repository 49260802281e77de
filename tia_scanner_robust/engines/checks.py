"""Checks the evaluator makes before and during inference: task fit, finite outputs, resolution.

- :func:`model_kind` and :func:`check_model_fits`: what a model produces
  (label maps, class probabilities, or features) and whether that fits the
  task; a segmenter asked to classify is refused **before** inference, with a
  message that says what fits (TIAToolbox would otherwise flatten every
  pixel's class scores into hundreds of thousands of "classes");
- :class:`FiniteOutputGuard`: a forward hook that counts non-finite model
  outputs row by row (NaN weights give NaN probabilities whose arg-max is
  class 0, which would look like a perfectly consistent all-background model);
- :class:`ResolutionLog`: per scanner, the image sizes read, the sizes fed to
  the model, the model output sizes and how many images were resized (the
  ``input_resolution`` of ``report.json``).

Examples:
    >>> from tia_scanner_robust.models.classical import ColourDeconvolutionSegmenter
    >>> model_kind(ColourDeconvolutionSegmenter(), None)
    'segmentation'
    >>> check_model_fits("classification", ColourDeconvolutionSegmenter(), None, "builtin")
    Traceback (most recent call last):
    ...
    ValueError: model builtin is a segmentation model (ColourDeconvolutionSegmenter): it fits ...

"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    from torch import nn

__all__ = [
    "TASK_FITS",
    "FiniteOutputGuard",
    "ResolutionLog",
    "check_model_fits",
    "model_kind",
]

#: Model kind -> the evaluation tasks its outputs fit.
TASK_FITS: dict[str, tuple[str, ...]] = {
    "segmentation": ("segmentation",),
    "classification": ("classification", "embedding"),
    "embedding": ("embedding",),
}

_HINTS = {
    "segmentation": (
        "a segmentation model: 'builtin', a TIAToolbox segmenter such as "
        "'fcn_resnet50_unet-bcss', or a checkpoint of the plugin's trainer"
    ),
    "classification": (
        "a patch classifier: a TIAToolbox classifier such as 'resnet18-kather100k' "
        "(offline: --model resnet18-kather100k --weights PATH, or a checkpoint "
        "{'arch': 'resnet18-kather100k', 'state_dict': ...})"
    ),
    "embedding": (
        "a feature extractor: a torchvision/timm backbone such as 'resnet18' "
        "(offline: --weights PATH for its state dict) or a patch classifier"
    ),
}


def model_kind(model: nn.Module, ioconfig: Any) -> str | None:  # noqa: PLR0911 - one per kind
    """What ``model`` produces: ``"segmentation"``, ``"classification"``, ``"embedding"``.

    Decided from the model's class and IO config: fully convolutional models,
    TIAToolbox segmenters (``UNetModel``, ``IOSegmentorConfig``) and smp
    models are segmenters; TIAToolbox ``CNNBackbone`` / ``TimmBackbone`` are
    feature extractors; ``CNNModel`` / ``TimmModel`` (with a class head) are
    classifiers. ``None`` when unknown (a model's own ``task`` attribute, if
    one of the three, wins).

    Examples:
        >>> from torch import nn
        >>> model_kind(nn.Identity(), None) is None
        True

    """
    declared = getattr(model, "task", None)
    if declared in TASK_FITS:
        return str(declared)
    from tiatoolbox.models.architecture.vanilla import (  # noqa: PLC0415
        CNNBackbone,
        CNNModel,
        TimmBackbone,
        TimmModel,
    )

    if isinstance(model, (CNNBackbone, TimmBackbone)):
        return "embedding"
    if isinstance(model, (CNNModel, TimmModel)):
        return "classification"
    if getattr(model, "fully_convolutional", False):
        return "segmentation"
    names = {cls.__name__ for cls in type(model).__mro__}
    if names & {"UNetModel", "SmpSegmentationModel", "HoVerNet", "HoVerNetPlus", "MicroNet"}:
        return "segmentation"
    if ioconfig is not None and type(ioconfig).__name__ in {
        "IOSegmentorConfig",
        "IOInstanceSegmentorConfig",
    }:
        return "segmentation"
    if ioconfig is not None and type(ioconfig).__name__ == "IOPatchPredictorConfig":
        return "classification"
    return None


def check_model_fits(task: str, model: nn.Module, ioconfig: Any, description: str) -> str | None:
    """Refuse a model whose outputs do not fit ``task``; return its kind.

    Raises:
        ValueError: ``"model X is a <kind> model (<class>): it fits task(s) ...;
            for task '<task>' pass <what fits>."``

    Examples:
        >>> from torch import nn
        >>> check_model_fits("embedding", nn.Identity(), None, "module:Identity") is None
        True

    """
    kind = model_kind(model, ioconfig)
    if kind is None or task in TASK_FITS[kind]:
        return kind
    fits = ", ".join(repr(t) for t in TASK_FITS[kind])
    msg = (
        f"model {description} is a {kind} model ({type(model).__name__}): it fits task {fits}, "
        f"not {task!r}. For task {task!r} pass {_HINTS[task]}."
    )
    raise ValueError(msg)


def _first_tensor(output: Any) -> Any:
    import torch  # noqa: PLC0415

    if torch.is_tensor(output):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        for item in output:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


class FiniteOutputGuard:
    """Forward hook on a model: rows of its outputs that hold NaN or inf, in call order.

    The engines feed images in order (no shuffling), so the ``k``-th output
    row of a run is the ``k``-th image; :meth:`reset` starts a new run.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> layer = nn.Linear(2, 2)
        >>> guard = FiniteOutputGuard(layer)
        >>> _ = layer(torch.tensor([[1.0, 2.0], [float("nan"), 0.0]]))
        >>> guard.bad_rows, guard.n_nan
        ([1], 2)
        >>> guard.close()

    """

    def __init__(self, model: nn.Module) -> None:
        self._handle = model.register_forward_hook(self._hook)
        self.reset()

    def reset(self) -> None:
        """Forget what was seen (a new engine run starts)."""
        self.rows_seen = 0
        self.bad_rows: list[int] = []
        self.n_nan = 0
        self.n_inf = 0

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:  # noqa: ARG002
        import torch  # noqa: PLC0415

        tensor = _first_tensor(output)
        if tensor is None or not torch.is_floating_point(tensor) or tensor.ndim == 0:
            return
        flat = tensor.detach().reshape(tensor.shape[0], -1)
        finite = torch.isfinite(flat)
        if not bool(finite.all()):
            bad = (~finite.all(dim=1)).nonzero().flatten().tolist()
            self.bad_rows.extend(self.rows_seen + int(i) for i in bad)
            self.n_nan += int(torch.isnan(flat).sum())
            self.n_inf += int(torch.isinf(flat).sum())
        self.rows_seen += int(tensor.shape[0])

    def close(self) -> None:
        """Remove the hook."""
        self._handle.remove()


class ResolutionLog:
    """Per scanner: sizes read, sizes fed to the model, output sizes, resizes.

    Examples:
        >>> log = ResolutionLog()
        >>> log.add("AT2", (256, 256), (128, 128), (128, 128), mpp=0.25)
        >>> row = log.to_dict(model_mpp=0.5)["AT2"]
        >>> row["n_resized"], row["image_shapes"], row["sample_mpp"]
        (1, {'256x256': 1}, [0.25])
        >>> log.resized()["AT2"]["to"]
        [128, 128]

    """

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, Any]] = {}

    def add(
        self,
        scanner: str,
        image_shape: Sequence[int],
        input_shape: Sequence[int],
        output_shape: Sequence[int] | None,
        *,
        mpp: float | None = None,
    ) -> None:
        """Record one image."""
        row = self._rows.setdefault(
            scanner,
            {
                "n_images": 0,
                "n_resized": 0,
                "image": Counter(),
                "input": Counter(),
                "output": Counter(),
                "mpp": set(),
            },
        )
        image_shape = tuple(int(v) for v in image_shape[:2])
        input_shape = tuple(int(v) for v in input_shape[:2])
        row["n_images"] += 1
        row["n_resized"] += int(image_shape != input_shape)
        row["image"][image_shape] += 1
        row["input"][input_shape] += 1
        if output_shape is not None:
            row["output"][tuple(int(v) for v in output_shape[:2])] += 1
        if mpp is not None:
            row["mpp"].add(float(mpp))

    def to_dict(self, *, model_mpp: float | None = None, rule: str | None = None) -> dict:
        """``{scanner: {...}}`` for ``report.json`` (shapes as ``"HxW": count``)."""

        def shapes(counter: Counter) -> dict[str, int]:
            return {f"{h}x{w}": n for (h, w), n in sorted(counter.items())}

        out = {}
        for scanner, row in self._rows.items():
            out[scanner] = {
                "n_images": row["n_images"],
                "n_resized": row["n_resized"],
                "image_shapes": shapes(row["image"]),
                "model_input_shapes": shapes(row["input"]),
                "model_output_shapes": shapes(row["output"]),
                "sample_mpp": sorted(row["mpp"]),
                "model_mpp": model_mpp,
                "output_rule": rule,
            }
        return out

    def resized(self) -> dict[str, dict[str, Any]]:
        """Per scanner with resized images: ``n_resized``, ``n_images``, ``from``, ``to``."""
        out = {}
        for scanner, row in self._rows.items():
            if not row["n_resized"]:
                continue
            to = row["input"].most_common(1)[0][0]
            sources = [list(s) for s in row["image"] if s != to]
            out[scanner] = {
                "n_resized": row["n_resized"],
                "n_images": row["n_images"],
                "from": sources,
                "to": list(to),
            }
        return out


def as_label_grid(prediction: np.ndarray, input_shape: Sequence[int]) -> tuple[np.ndarray, str]:
    """A label map on the model-input grid's rule; returns the map and the rule applied.

    The rule (TIAToolbox's ``patch_output_shape`` convention): an output
    **smaller** than the input covers the input's centre (TIAToolbox's
    ``UNetModel`` returns the centre half), so it is kept as is and compared
    on that centre region (ground-truth masks are centre-cropped to match);
    an output **larger** than the input covers the same field of view at a
    finer grid, so it is resized (nearest) down to the input's grid.

    Examples:
        >>> import numpy as np
        >>> out, rule = as_label_grid(np.zeros((8, 8), int), (4, 4))
        >>> out.shape, rule
        ((4, 4), 'resized')
        >>> as_label_grid(np.zeros((2, 2), int), (4, 4))[1]
        'centre'

    """
    from tia_scanner_robust.engines._imageops import resize  # noqa: PLC0415

    h, w = prediction.shape[:2]
    th, tw = int(input_shape[0]), int(input_shape[1])
    if (h, w) == (th, tw):
        return prediction, "same"
    if h >= th and w >= tw:
        return resize(prediction, (th, tw), nearest=True), "resized"
    return prediction, "centre"
