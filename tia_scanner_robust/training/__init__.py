"""Training: the trainer, the hook protocol, SimCons, configs and segmentation data.

- :class:`Trainer`: train/validation loops, checkpoints with exact resume,
  DDP under ``torchrun``, AMP, CSV/JSONL logs.
- :class:`Hook`, :func:`register_hook`, :func:`create_hook`: the plugin
  protocol (third-party hooks through the ``tia_scanner_robust.hooks``
  entry-point group).
- :class:`SimConsHook`: style-consistency training (SCORPION paper).
- :class:`ExperimentConfig` and friends, :func:`load_config`: YAML configs.
- :class:`SegmentationFolderDataset`, :func:`build_train_transform`: data.

Names resolve lazily so importing this package does not import torch.

Examples:
    >>> from tia_scanner_robust.training import create_hook
    >>> type(create_hook("simcons", style_augmentation=lambda x: x)).__name__
    'SimConsHook'

"""

from __future__ import annotations

from tia_scanner_robust._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Trainer": "trainer",
    "FitResult": "trainer",
    "build_trainer": "trainer",
    "Hook": "hooks",
    "HOOK_REGISTRY": "hooks",
    "ENTRY_POINT_GROUP": "hooks",
    "available_hooks": "hooks",
    "create_hook": "hooks",
    "register_hook": "hooks",
    "SimConsHook": "simcons",
    "ScanGenHook": "scangen",
    "DataConfig": "config",
    "ExperimentConfig": "config",
    "HookConfig": "config",
    "ModelConfig": "config",
    "TrainerConfig": "config",
    "load_config": "config",
    "SegmentationFolderDataset": "data",
    "build_eval_transform": "data",
    "build_train_transform": "data",
}

__all__ = [
    "ENTRY_POINT_GROUP",
    "HOOK_REGISTRY",
    "DataConfig",
    "ExperimentConfig",
    "FitResult",
    "Hook",
    "HookConfig",
    "ModelConfig",
    "ScanGenHook",
    "SegmentationFolderDataset",
    "SimConsHook",
    "Trainer",
    "TrainerConfig",
    "available_hooks",
    "build_eval_transform",
    "build_train_transform",
    "build_trainer",
    "create_hook",
    "load_config",
    "register_hook",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
