"""A ``segmentation_models_pytorch`` network as a TIAToolbox ``ModelABC``.

:class:`SmpSegmentationModel` wraps any smp architecture/encoder (default:
DeepLabV3+ with a ResNet34 encoder, the SimCons paper's model) so that
TIAToolbox's :class:`~tiatoolbox.models.engine.semantic_segmentor.SemanticSegmentor`
runs it in patch and WSI mode, and so that the plugin's trainer trains it.

Data flow (as TIAToolbox's engines expect):

- ``preproc_func`` (per patch, in the engine's dataset): ``(H, W, 3)`` uint8
  RGB -> float32 ImageNet-normalised ``(H, W, 3)``;
- :meth:`SmpSegmentationModel.infer_batch`: ``(N, H, W, 3)`` tensor ->
  softmax probabilities ``(N, H, W, C)`` float32 NumPy. A uint8 batch is
  normalised inside; a floating batch is taken as already pre-processed;
- ``postproc_func``: argmax over the last axis (label map);
- :meth:`SmpSegmentationModel.forward`: normalised ``(N, 3, H, W)`` float ->
  logits ``(N, C, H, W)`` (what the trainer calls).

No pretrained weights are downloaded unless asked for (``encoder_weights=None``
by default; ``"imagenet"`` fetches them through smp for users online).

Examples:
    >>> import numpy as np, torch
    >>> model = SmpSegmentationModel(
    ...     arch="Unet",
    ...     encoder_name="resnet18",
    ...     num_classes=2,
    ...     patch_size=64,
    ...     model_kwargs={"encoder_depth": 3, "decoder_channels": (16, 8, 4)},
    ... )
    >>> batch = torch.from_numpy(np.zeros((1, 64, 64, 3), np.uint8))
    >>> SmpSegmentationModel.infer_batch(model, batch, device="cpu").shape
    (1, 64, 64, 2)

"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import segmentation_models_pytorch as smp
import torch
from tiatoolbox.models.engine.io_config import IOSegmentorConfig
from tiatoolbox.models.models_abc import ModelABC

from tia_scanner_robust._constants import IMAGENET_MEAN, IMAGENET_STD
from tia_scanner_robust._io import atomic_open, to_jsonable
from tia_scanner_robust._validation import (
    check_in_choices,
    load_checkpoint_dict,
    load_state_dict_checked,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SMP_CHECKPOINT_FORMAT",
    "SmpSegmentationModel",
    "imagenet_normalise",
]

#: Format tag written into checkpoints by :meth:`SmpSegmentationModel.save_checkpoint`.
SMP_CHECKPOINT_FORMAT = "tia_scanner_robust.smp_segmentation/1"

_UNITS = ("mpp", "power", "baseline", "level")


def imagenet_normalise(image: np.ndarray) -> np.ndarray:
    """Normalise an RGB image ``(..., 3)`` with ImageNet statistics.

    Args:
        image: uint8 values in ``[0, 255]``.

    Returns:
        float32 array ``(image / 255 - mean) / std``, same shape.

    Examples:
        >>> import numpy as np
        >>> imagenet_normalise(np.full((1, 1, 3), 255, np.uint8)).round(3).tolist()
        [[[2.249, 2.429, 2.64]]]

    """
    image = np.asarray(image)
    if image.shape[-1] != 3:
        msg = f"image must have 3 channels in the last axis, got shape {image.shape}."
        raise ValueError(msg)
    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    return ((image.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def _normalise_tensor(batch: torch.Tensor) -> torch.Tensor:
    """NHWC uint8/float tensor -> normalised NCHW float32 tensor."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=batch.device)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=batch.device)
    x = (batch.to(torch.float32) / 255.0 - mean) / std
    return x.permute(0, 3, 1, 2).contiguous()


class SmpSegmentationModel(ModelABC):
    """``segmentation_models_pytorch`` segmentation network as a TIAToolbox model.

    Args:
        arch: smp architecture name (``"DeepLabV3Plus"``, ``"Unet"``,
            ``"UnetPlusPlus"``, ``"FPN"``, ...; case-insensitive as in
            :func:`segmentation_models_pytorch.create_model`).
        encoder_name: smp encoder (``"resnet34"``, ``"resnet18"``,
            ``"efficientnet-b0"``, ``"tu-<timm name>"``...).
        encoder_weights: ``None`` (random, offline; default) or a weight name
            such as ``"imagenet"`` (downloaded by smp).
        num_classes: Number of output classes (>= 2; softmax outputs).
        in_channels: Input channels (3 for RGB).
        patch_size: Side of the square input/output patch used by the IO
            config. Most smp models need a multiple of 32 (16 for DeepLabV3+).
        stride: Stride of the WSI patch grid; defaults to ``patch_size``.
        resolution: Resolution at which TIAToolbox reads input patches.
        units: Units of ``resolution``: ``"baseline"`` (default, works for
            every image), ``"mpp"``, ``"power"`` or ``"level"``.
        class_dict: Optional ``{index: name}`` map for TIAToolbox outputs.
        model_kwargs: Extra keyword arguments for ``smp.create_model``
            (``encoder_depth``, ``decoder_channels``...).

    Raises:
        ValueError: On an unknown architecture/encoder or invalid options.

    Examples:
        >>> model = SmpSegmentationModel(encoder_name="resnet18", patch_size=64)
        >>> model.config["arch"], model.ioconfig.patch_input_shape
        ('DeepLabV3Plus', [64, 64])

    """

    def __init__(
        self,
        arch: str = "DeepLabV3Plus",
        encoder_name: str = "resnet34",
        encoder_weights: str | None = None,
        num_classes: int = 2,
        *,
        in_channels: int = 3,
        patch_size: int = 256,
        stride: int | None = None,
        resolution: float = 1.0,
        units: str = "baseline",
        class_dict: dict[int, str] | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or int(num_classes) < 2:
            msg = f"num_classes must be an int >= 2 (softmax outputs), got {num_classes!r}."
            raise ValueError(msg)
        if int(patch_size) < 16:
            msg = f"patch_size must be >= 16, got {patch_size!r}."
            raise ValueError(msg)
        stride = int(patch_size) if stride is None else int(stride)
        if not 0 < stride <= int(patch_size):
            msg = f"stride must be in [1, patch_size={patch_size}], got {stride}."
            raise ValueError(msg)
        check_in_choices(units, _UNITS, "units")
        if float(resolution) <= 0:
            msg = f"resolution must be > 0, got {resolution!r}."
            raise ValueError(msg)
        model_kwargs = dict(model_kwargs or {})
        try:
            self.net: nn.Module = smp.create_model(
                arch,
                encoder_name=encoder_name,
                encoder_weights=encoder_weights,
                in_channels=int(in_channels),
                classes=int(num_classes),
                **model_kwargs,
            )
        except KeyError as err:
            msg = f"Could not build smp model arch={arch!r}, encoder_name={encoder_name!r}: {err}"
            raise ValueError(msg) from err
        self.config: dict[str, Any] = {
            "arch": arch,
            "encoder_name": encoder_name,
            "encoder_weights": encoder_weights,
            "num_classes": int(num_classes),
            "in_channels": int(in_channels),
            "patch_size": int(patch_size),
            "stride": stride,
            "resolution": float(resolution),
            "units": units,
            "class_dict": None
            if class_dict is None
            else {int(k): str(v) for k, v in class_dict.items()},
            "model_kwargs": to_jsonable(model_kwargs, allow_nan=True),
        }
        self.class_dict = self.config["class_dict"]

    @property
    def ioconfig(self) -> IOSegmentorConfig:
        """The :class:`IOSegmentorConfig` to pass to ``SemanticSegmentor.run``."""
        size = [self.config["patch_size"]] * 2
        res = [{"units": self.config["units"], "resolution": self.config["resolution"]}]
        return IOSegmentorConfig(
            input_resolutions=copy.deepcopy(res),
            output_resolutions=copy.deepcopy(res),
            patch_input_shape=list(size),
            patch_output_shape=list(size),
            stride_shape=[self.config["stride"]] * 2,
            save_resolution=copy.deepcopy(res[0]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Normalised ``(N, C_in, H, W)`` float tensor -> logits ``(N, C, H, W)``."""
        return self.net(x)

    @staticmethod
    def preproc(image: np.ndarray) -> np.ndarray:
        """ImageNet-normalise one ``(H, W, 3)`` uint8 patch (TIAToolbox ``preproc_func``)."""
        return imagenet_normalise(image)

    @staticmethod
    def postproc(image: np.ndarray) -> np.ndarray:
        """Argmax over the class (last) axis: probabilities -> label map."""
        return np.argmax(image, axis=-1)

    @staticmethod
    def infer_batch(
        model: nn.Module,
        batch_data: torch.Tensor | np.ndarray,
        *,
        device: str,
    ) -> np.ndarray:
        """Run the model on an NHWC batch and return NHWC softmax probabilities.

        Args:
            model: A :class:`SmpSegmentationModel` (possibly wrapped in
                ``DataParallel``).
            batch_data: ``(N, H, W, 3)`` tensor or array: uint8 RGB (normalised
                here) or float32 already passed through :meth:`preproc`.
            device: Torch device string.

        Returns:
            ``(N, H, W, num_classes)`` float32 probabilities.

        """
        model.eval()
        batch = torch.as_tensor(batch_data)
        if batch.ndim != 4:
            msg = f"batch_data must be (N, H, W, C), got shape {tuple(batch.shape)}."
            raise ValueError(msg)
        batch = batch.to(device)
        if batch.dtype == torch.uint8:
            x = _normalise_tensor(batch)
        else:
            x = batch.to(torch.float32).permute(0, 3, 1, 2).contiguous()
        with torch.inference_mode():
            probs = torch.softmax(model(x), dim=1)
        return probs.permute(0, 2, 3, 1).float().cpu().numpy()

    def save_checkpoint(self, path: str | Path) -> Path:
        """Save the architecture config and weights atomically (``torch.save``).

        Args:
            path: Destination file (``.pt``).

        Returns:
            The path written.

        """
        payload = {
            "format": SMP_CHECKPOINT_FORMAT,
            "config": copy.deepcopy(self.config),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }
        path = Path(path)
        with atomic_open(path, "wb") as handle:
            torch.save(payload, handle)
        return path

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SmpSegmentationModel:
        """Build an (untrained) model from a :attr:`config` dict."""
        if not isinstance(config, dict):
            msg = f"config must be a dict, got {type(config).__name__}."
            raise TypeError(msg)
        valid = {
            "arch",
            "encoder_name",
            "encoder_weights",
            "num_classes",
            "in_channels",
            "patch_size",
            "stride",
            "resolution",
            "units",
            "class_dict",
            "model_kwargs",
        }
        unknown = sorted(set(config) - valid)
        if unknown:
            msg = f"Unknown model config key(s) {unknown}; valid keys: {', '.join(sorted(valid))}."
            raise ValueError(msg)
        kwargs = dict(config)
        # A checkpointed model never downloads weights again: the state dict has them.
        kwargs["encoder_weights"] = None
        return cls(**kwargs)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, map_location: str = "cpu"
    ) -> SmpSegmentationModel:
        """Load a model saved by :meth:`save_checkpoint` or by the plugin's trainer.

        Reads with ``torch.load(weights_only=True)``: no code in the file runs.

        Args:
            path: Checkpoint file.
            map_location: Device the tensors are loaded onto.

        Returns:
            The model with its weights, in eval mode.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            ValueError: If the file lacks an architecture config or weights.

        """
        path = Path(path)
        payload = load_checkpoint_dict(
            path,
            expected="a segmentation checkpoint ('config' and 'state_dict') saved by "
            "SmpSegmentationModel.save_checkpoint or the plugin's Trainer",
            map_location=map_location,
        )
        config = payload.get("config", payload.get("model_config"))
        state = payload.get("state_dict", payload.get("model"))
        if not isinstance(config, dict) or not isinstance(state, dict):
            msg = (
                f"{path} lacks an architecture config and weights ('config'/'model_config' "
                "and 'state_dict'/'model' entries); was it written by "
                "SmpSegmentationModel.save_checkpoint or the plugin's Trainer?"
            )
            raise ValueError(msg)
        model = cls.from_config(config)
        load_state_dict_checked(model, state, source=f"checkpoint {path}")
        return model.eval()
