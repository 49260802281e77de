"""Style augmentations on the batch, on any device, in torch.

Batched counterparts of the NumPy/OpenCV style augmentations, for a
``(B, 3, H, W)`` tensor, **uint8** (values ``0..255``) **or floating point
with values in** ``[0, 1]``, on the CPU or a GPU, with per-sample random
parameters drawn from a :class:`torch.Generator`; the output has the input's
dtype and device:

- :class:`BatchColorJitter` (:func:`color_jitter_batch`): ``A.ColorJitter``
  with the H&E ranges;
- :class:`BatchRandStainNA` (:func:`reinhard_transfer_batch`): RandStainNA in
  LAB/HSV/HED with the same templates and sampling;
- :class:`BatchFDA` (:func:`fda_swap_batch`): FDA with ``torch.fft``,
  references from the batch or a cached bank;
- :class:`BatchScannerSimulator` (:func:`simulate_scanner_batch`): the
  scanner simulator's built-in and fitted profiles (JPEG stays on the CPU);
- :class:`BatchStyleAugment`: any of them by name, alone or ``"+"``-combined,
  and :func:`batched_version` of an albumentations style augmentation.

For fixed parameters the outputs match the NumPy versions within one grey
level (uint8 LAB, HSV and grey conversions are OpenCV's own, through tables
built once with OpenCV); see ``docs/augmentations/batched.md``.

Examples:
    >>> import torch
    >>> from tia_scanner_robust.augmentations.batched import BatchStyleAugment
    >>> aug = BatchStyleAugment("randstainna+fda", p=1.0)
    >>> x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    >>> aug(x, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([2, 3, 32, 32])

"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tia_scanner_robust._lazy import lazy_exports

# --- static imports for type checkers (generated from _EXPORTS) ---
if TYPE_CHECKING:
    from .augment import (
        BATCHED_STYLE_AUGMENTATIONS,
        BatchStyleAugment,
        batched_version,
    )
    from .colorjitter import (
        BatchColorJitter,
        color_jitter_batch,
    )
    from .fda import (
        BatchFDA,
        fda_swap_batch,
        fda_weights,
    )
    from .randstainna import (
        BatchRandStainNA,
        reinhard_transfer_batch,
    )
    from .scanner import (
        BatchScannerSimulator,
        simulate_scanner_batch,
    )
# --- end of static imports ---

_EXPORTS: dict[str, str] = {
    "BATCHED_STYLE_AUGMENTATIONS": "augment",
    "BatchStyleAugment": "augment",
    "batched_version": "augment",
    "BatchColorJitter": "colorjitter",
    "color_jitter_batch": "colorjitter",
    "BatchFDA": "fda",
    "fda_swap_batch": "fda",
    "fda_weights": "fda",
    "BatchRandStainNA": "randstainna",
    "reinhard_transfer_batch": "randstainna",
    "BatchScannerSimulator": "scanner",
    "simulate_scanner_batch": "scanner",
}

__all__ = [
    "BATCHED_STYLE_AUGMENTATIONS",
    "BatchColorJitter",
    "BatchFDA",
    "BatchRandStainNA",
    "BatchScannerSimulator",
    "BatchStyleAugment",
    "batched_version",
    "color_jitter_batch",
    "fda_swap_batch",
    "fda_weights",
    "reinhard_transfer_batch",
    "simulate_scanner_batch",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
