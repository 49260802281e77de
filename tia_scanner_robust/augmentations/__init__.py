"""Style augmentations as albumentations 2.x transforms, and the scanner simulator.

- :class:`RandStainNA` (Shen et al., 2022): random virtual stain templates in
  LAB/HSV/HED with Reinhard transfer; fit templates with
  :func:`fit_randstainna_template`.
- :class:`FourierDomainAdaptation` (Yang and Soatto, 2020): low-frequency
  amplitude swap with a paired scan or a reference bank.
- :class:`ScannerSimulator` and :data:`SCANNER_PROFILES`: deterministic
  simulated scanners used to synthesise scanner-paired data.
- :func:`style_augmentation`: named presets (``"colorjitter"``,
  ``"randstainna"``, ``"fda"``, ``"hestain"`` and ``"+"`` combinations).
- :class:`BatchStyleAugment` (:mod:`.batched`): the same augmentations on a
  ``(B, 3, H, W)`` torch batch on any device (GPU included).

Names resolve lazily so importing this package does not import every module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tia_scanner_robust._lazy import lazy_exports

# --- static imports for type checkers (generated from _EXPORTS) ---
if TYPE_CHECKING:
    from .batched.augment import (
        BatchStyleAugment,
        batched_version,
    )
    from .fda import (
        FourierDomainAdaptation,
    )
    from .presets import (
        STYLE_AUGMENTATIONS,
        he_color_jitter,
        he_stain,
        style_augmentation,
    )
    from .preview import (
        make_augmentation_preview,
        save_augmentation_preview,
    )
    from .randstainna import (
        RandStainNA,
        RandStainNATemplate,
        default_randstainna_template,
        expand_image_paths,
        fit_randstainna_template,
        load_randstainna_template,
        official_reinhard_transfer,
        sample_virtual_template,
        save_randstainna_template,
    )
    from .scanner import (
        SCANNER_PROFILES,
        ScannerProfile,
        ScannerSimulator,
        get_scanner_profile,
        simulate_paired_scans,
        simulate_scanner,
    )
# --- end of static imports ---

_EXPORTS: dict[str, str] = {
    "RandStainNA": "randstainna",
    "RandStainNATemplate": "randstainna",
    "fit_randstainna_template": "randstainna",
    "load_randstainna_template": "randstainna",
    "save_randstainna_template": "randstainna",
    "default_randstainna_template": "randstainna",
    "sample_virtual_template": "randstainna",
    "expand_image_paths": "randstainna",
    "FourierDomainAdaptation": "fda",
    "ScannerProfile": "scanner",
    "ScannerSimulator": "scanner",
    "SCANNER_PROFILES": "scanner",
    "simulate_scanner": "scanner",
    "simulate_paired_scans": "scanner",
    "get_scanner_profile": "scanner",
    "make_augmentation_preview": "preview",
    "save_augmentation_preview": "preview",
    "style_augmentation": "presets",
    "he_color_jitter": "presets",
    "he_stain": "presets",
    "STYLE_AUGMENTATIONS": "presets",
    "official_reinhard_transfer": "randstainna",
    "BatchStyleAugment": "batched.augment",
    "batched_version": "batched.augment",
}

__all__ = [
    "SCANNER_PROFILES",
    "STYLE_AUGMENTATIONS",
    "BatchStyleAugment",
    "FourierDomainAdaptation",
    "RandStainNA",
    "RandStainNATemplate",
    "ScannerProfile",
    "ScannerSimulator",
    "batched_version",
    "default_randstainna_template",
    "expand_image_paths",
    "fit_randstainna_template",
    "get_scanner_profile",
    "he_color_jitter",
    "he_stain",
    "load_randstainna_template",
    "make_augmentation_preview",
    "official_reinhard_transfer",
    "sample_virtual_template",
    "save_augmentation_preview",
    "save_randstainna_template",
    "simulate_paired_scans",
    "simulate_scanner",
    "style_augmentation",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
