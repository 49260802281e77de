"""Backend choice of the batched augmentations: torch kernels, or OpenCV per sample on the CPU.

On a GPU the torch kernels run on the whole batch. On the CPU, OpenCV's
fused 8-bit kernels (look-up tables, SIMD colour conversions) are several
times faster per core than torch's element-wise kernels, so ``backend="auto"``
(the default) runs each sample of a CPU batch through the NumPy/OpenCV
function of :mod:`tia_scanner_robust.augmentations` with the parameters drawn
for it in torch: same parameters, same sampling, the NumPy versions' exact
pixels, and the speed of the per-image path without albumentations'
per-call overhead. ``backend="torch"`` forces the torch kernels (any device);
``backend="opencv"`` requires a CPU batch.

Examples:
    >>> import torch
    >>> use_opencv("auto", torch.zeros(1, 3, 2, 2))
    True
    >>> use_opencv("torch", torch.zeros(1, 3, 2, 2))
    False

"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from tia_scanner_robust._validation import check_in_choices

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["BACKENDS", "check_backend", "map_images", "use_opencv"]

#: Values of ``backend``.
BACKENDS: tuple[str, ...] = ("auto", "torch", "opencv")


def check_backend(backend: str) -> str:
    """Validate a ``backend`` value."""
    return check_in_choices(backend, BACKENDS, "backend")


def use_opencv(backend: str, images: torch.Tensor) -> bool:
    """Whether ``images`` go through the per-sample OpenCV path.

    Raises:
        ValueError: For ``backend="opencv"`` on a batch that is not on the CPU.

    """
    if backend == "torch":
        return False
    on_cpu = images.device.type == "cpu"
    if backend == "opencv" and not on_cpu:
        msg = f"backend='opencv' needs a CPU batch; this one is on {images.device}."
        raise ValueError(msg)
    return on_cpu


def map_images(
    images: torch.Tensor,
    function: Callable[[int, np.ndarray], np.ndarray],
) -> torch.Tensor:
    """Apply ``function(i, image_i)`` to every sample; same dtype and device out.

    ``image_i`` is ``(H, W, 3)`` uint8, or float32 in ``[0, 1]``. A batch
    stored channels last (``x.permute(0, 3, 1, 2)`` of a ``(B, H, W, 3)``
    tensor, as the trainer's batches are) is read in place and the result
    keeps that layout; a channels-first batch is converted per image with
    ``cv2.merge``/``cv2.split`` (several times faster than a strided NumPy
    transpose of the whole batch).

    Examples:
        >>> import torch
        >>> x = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
        >>> map_images(x, lambda i, image: image + i)[:, 0, 0, 0].tolist()
        [0, 1]

    """
    source = images.cpu()
    if source.dtype != torch.uint8:
        source = source.to(torch.float32).clamp(0.0, 1.0)
    channels_last = source.permute(0, 2, 3, 1)
    if channels_last.is_contiguous():
        # (B, H, W, 3) in memory (e.g. a DataLoader batch permuted to channels
        # first): OpenCV reads it in place and the result keeps that layout.
        arrays = channels_last.numpy()
        out = np.empty_like(arrays)
        for i, image in enumerate(arrays):
            out[i] = function(i, image)
        result = torch.from_numpy(out).permute(0, 3, 1, 2)
    else:
        planes = source.contiguous().numpy()
        out = np.empty_like(planes)
        for i, image in enumerate(planes):
            hwc = function(i, cv2.merge([image[0], image[1], image[2]]))
            for c, channel in enumerate(cv2.split(np.ascontiguousarray(hwc, dtype=planes.dtype))):
                out[i, c] = channel
        result = torch.from_numpy(out)
    return result.to(device=images.device, dtype=images.dtype)
