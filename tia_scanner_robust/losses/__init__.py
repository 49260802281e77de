"""Losses: SimCons consistency, ScanGen contrastive, and their functional cores.

- :class:`SimConsLoss`: consistency between predictions on an image and its
  style-augmented view (SCORPION paper, Eq. 1).
- :class:`ScanGenLoss`: scanner-contrastive loss over embeddings (ScanGen, Eq. 2).
- :mod:`tia_scanner_robust.losses.functional`: pure functions (soft Dice
  forms, symmetric KL, CE + Dice).

Names resolve lazily so that importing this package stays cheap.

Examples:
    >>> from tia_scanner_robust.losses import SimConsLoss
    >>> SimConsLoss().denominator
    'squared'

"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tia_scanner_robust._lazy import lazy_exports

# --- static imports for type checkers (generated from _EXPORTS) ---
if TYPE_CHECKING:
    from .functional import (
        dice_loss,
        probability_mse,
        segmentation_loss,
        soft_dice_consistency,
        soft_dice_score,
        symmetric_kl_divergence,
    )
    from .pairs import (
        count_pairs,
        encode_ids,
        scangen_pair_masks,
    )
    from .scangen import (
        ScanGenLoss,
        ScanGenStats,
        cosine_distance_matrix,
        scangen_loss,
        slide_embeddings,
    )
    from .simcons import (
        SimConsLoss,
    )
# --- end of static imports ---

_EXPORTS: dict[str, str] = {
    "SimConsLoss": "simcons",
    "ScanGenLoss": "scangen",
    "scangen_loss": "scangen",
    "scangen_pair_masks": "pairs",
    "dice_loss": "functional",
    "probability_mse": "functional",
    "segmentation_loss": "functional",
    "soft_dice_consistency": "functional",
    "soft_dice_score": "functional",
    "symmetric_kl_divergence": "functional",
    "ScanGenStats": "scangen",
    "slide_embeddings": "scangen",
    "cosine_distance_matrix": "scangen",
    "count_pairs": "pairs",
    "encode_ids": "pairs",
}

__all__ = [
    "ScanGenLoss",
    "ScanGenStats",
    "SimConsLoss",
    "cosine_distance_matrix",
    "count_pairs",
    "dice_loss",
    "encode_ids",
    "probability_mse",
    "scangen_loss",
    "scangen_pair_masks",
    "segmentation_loss",
    "slide_embeddings",
    "soft_dice_consistency",
    "soft_dice_score",
    "symmetric_kl_divergence",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
