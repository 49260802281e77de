"""tia_scanner_robust: measure and mitigate scanner sensitivity in TIAToolbox.

A TIAToolbox plugin implementing two methods for scanner-robust computational
pathology:

- **ScanGen**: a scanner-contrastive loss over foundation-model patch
  embeddings for multiple-instance learning, with the coefficient of
  variation (CoV) of slide predictions as the bias measure.
- **SCORPION / SimCons**: scanner-paired consistency evaluation and the
  SimCons style-augmentation consistency loss.

Subpackages are imported lazily so that ``import tia_scanner_robust`` stays
cheap; heavy dependencies (torch, tiatoolbox) load only where used.

Examples:
    >>> import tia_scanner_robust as tsr
    >>> isinstance(tsr.__version__, str)
    True

"""

from __future__ import annotations

from tia_scanner_robust.seeding import seed_everything

__version__ = "0.1.0"

__all__ = ["__version__", "seed_everything"]
