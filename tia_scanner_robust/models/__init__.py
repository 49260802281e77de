"""TIAToolbox ``ModelABC`` models of the plugin.

- :class:`ColourDeconvolutionSegmenter` and :func:`classical_ioconfig`: the
  offline, weight-free background/tissue/nuclei segmenter (the evaluator's
  ``"builtin"`` model).
- :class:`SmpSegmentationModel`: a ``segmentation_models_pytorch`` network.

Names resolve lazily so that importing this package does not import torch or
TIAToolbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tia_scanner_robust._lazy import lazy_exports

# --- static imports for type checkers (generated from _EXPORTS) ---
if TYPE_CHECKING:
    from .classical import (
        CLASSICAL_CLASS_DICT,
        ColourDeconvolutionSegmenter,
        classical_ioconfig,
        clean_label_maps,
    )
    from .mil import (
        AGGREGATORS,
        MIL_CONFIG_KEYS,
        ABMILAggregator,
        DSMILAggregator,
        GAPAggregator,
        MILAggregator,
        MILModel,
        ProjectionMLP,
        SlotMILAggregator,
        build_mil_model,
        create_aggregator,
        load_mil_checkpoint,
        masked_mean,
        pad_bags,
        subsample_bags,
        subsample_mask,
    )
    from .mil_predictor import (
        MILSlidePredictor,
    )
    from .segmentation import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        SMP_CHECKPOINT_FORMAT,
        SmpSegmentationModel,
        imagenet_normalise,
    )
# --- end of static imports ---

_EXPORTS: dict[str, str] = {
    "MILSlidePredictor": "mil_predictor",
    "load_mil_checkpoint": "mil",
    "build_mil_model": "mil",
    "CLASSICAL_CLASS_DICT": "classical",
    "ColourDeconvolutionSegmenter": "classical",
    "classical_ioconfig": "classical",
    "clean_label_maps": "classical",
    "SmpSegmentationModel": "segmentation",
    "imagenet_normalise": "segmentation",
    "IMAGENET_MEAN": "segmentation",
    "IMAGENET_STD": "segmentation",
    "SMP_CHECKPOINT_FORMAT": "segmentation",
    "MILModel": "mil",
    "MIL_CONFIG_KEYS": "mil",
    "ProjectionMLP": "mil",
    "GAPAggregator": "mil",
    "ABMILAggregator": "mil",
    "DSMILAggregator": "mil",
    "SlotMILAggregator": "mil",
    "MILAggregator": "mil",
    "AGGREGATORS": "mil",
    "create_aggregator": "mil",
    "pad_bags": "mil",
    "subsample_bags": "mil",
    "subsample_mask": "mil",
    "masked_mean": "mil",
}

__all__ = [
    "AGGREGATORS",
    "CLASSICAL_CLASS_DICT",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MIL_CONFIG_KEYS",
    "SMP_CHECKPOINT_FORMAT",
    "ABMILAggregator",
    "ColourDeconvolutionSegmenter",
    "DSMILAggregator",
    "GAPAggregator",
    "MILAggregator",
    "MILModel",
    "MILSlidePredictor",
    "ProjectionMLP",
    "SlotMILAggregator",
    "SmpSegmentationModel",
    "build_mil_model",
    "classical_ioconfig",
    "clean_label_maps",
    "create_aggregator",
    "imagenet_normalise",
    "load_mil_checkpoint",
    "masked_mean",
    "pad_bags",
    "subsample_bags",
    "subsample_mask",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
