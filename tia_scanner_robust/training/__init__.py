"""Training: the trainer, the hook protocol, SimCons, configs and segmentation data.

- :class:`Trainer`: train/validation loops, checkpoints with exact resume,
  DDP under ``torchrun``, AMP, CSV/JSONL logs.
- :class:`Hook`, :func:`register_hook`, :func:`create_hook`: the plugin
  protocol (third-party hooks through the ``tia_scanner_robust.hooks``
  entry-point group).
- :class:`SimConsHook`: style-consistency training (SCORPION paper).
- :class:`ExperimentConfig` and friends, :func:`load_config`: YAML configs.
- :class:`SegmentationFolderDataset`, :func:`build_train_transform`: data.
- :class:`TrainingTask` adapters (:class:`SegmentationTask`,
  :class:`ClassificationTask`, :class:`MILTask`): what differs per task.
- MIL: :func:`train_mil_model`, :func:`evaluate_mil`, :func:`run_mil`,
  :class:`MILConfig` / :func:`load_mil_config`, :func:`compare_scangen`,
  :func:`benchmark_feature_extractors`, :func:`make_synthetic_store`.

Names resolve lazily so importing this package does not import torch.

Examples:
    >>> from tia_scanner_robust.training import create_hook
    >>> type(create_hook("simcons", style_augmentation=lambda x: x)).__name__
    'SimConsHook'

"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tia_scanner_robust._lazy import lazy_exports

# --- static imports for type checkers (generated from _EXPORTS) ---
if TYPE_CHECKING:
    from .builder import (
        build_trainer,
    )
    from .config import (
        DataConfig,
        ExperimentConfig,
        HookConfig,
        ModelConfig,
        TrainerConfig,
        load_config,
    )
    from .configs import (
        config_path,
        list_configs,
        load_experiment_config,
        merge_overrides,
        parse_overrides,
        resolve_config,
    )
    from .data import (
        SegmentationFolderDataset,
        build_eval_transform,
        build_train_transform,
    )
    from .fm_benchmark import (
        SYNTHETIC_EXTRACTORS,
        benchmark_feature_extractors,
        compare_scangen,
        format_benchmark_markdown,
        format_comparison_markdown,
    )
    from .hooks import (
        ENTRY_POINT_GROUP,
        HOOK_REGISTRY,
        Hook,
        available_hooks,
        create_hook,
        register_hook,
    )
    from .lightning import (
        ScanGenCallback,
        SimConsCallback,
    )
    from .mil import (
        MemoryBags,
        MILBagModule,
        MILTask,
        MILTrainer,
        assign_scangen_splits,
        build_mil_trainer,
        evaluate_mil,
        run_mil,
        train_mil_model,
    )
    from .mil_config import (
        MILConfig,
        load_mil_config,
    )
    from .scangen import (
        ScanGenHook,
    )
    from .simcons import (
        SimConsHook,
    )
    from .synthetic import (
        make_synthetic_store,
    )
    from .tasks import (
        ClassificationTask,
        SegmentationTask,
        TrainingTask,
        create_task,
    )
    from .trainer import (
        FitResult,
        Trainer,
    )
# --- end of static imports ---

_EXPORTS: dict[str, str] = {
    "Trainer": "trainer",
    "FitResult": "trainer",
    "build_trainer": "builder",
    "TrainingTask": "tasks",
    "SegmentationTask": "tasks",
    "ClassificationTask": "tasks",
    "create_task": "tasks",
    "MILBagModule": "mil",
    "MILTask": "mil",
    "MILTrainer": "mil",
    "MemoryBags": "mil",
    "assign_scangen_splits": "mil",
    "build_mil_trainer": "mil",
    "evaluate_mil": "mil",
    "run_mil": "mil",
    "train_mil_model": "mil",
    "MILConfig": "mil_config",
    "load_mil_config": "mil_config",
    "SYNTHETIC_EXTRACTORS": "fm_benchmark",
    "benchmark_feature_extractors": "fm_benchmark",
    "compare_scangen": "fm_benchmark",
    "format_benchmark_markdown": "fm_benchmark",
    "format_comparison_markdown": "fm_benchmark",
    "make_synthetic_store": "synthetic",
    "Hook": "hooks",
    "HOOK_REGISTRY": "hooks",
    "ENTRY_POINT_GROUP": "hooks",
    "available_hooks": "hooks",
    "create_hook": "hooks",
    "register_hook": "hooks",
    "SimConsHook": "simcons",
    "ScanGenHook": "scangen",
    "SimConsCallback": "lightning",
    "ScanGenCallback": "lightning",
    "DataConfig": "config",
    "ExperimentConfig": "config",
    "HookConfig": "config",
    "ModelConfig": "config",
    "TrainerConfig": "config",
    "load_config": "config",
    "config_path": "configs",
    "list_configs": "configs",
    "load_experiment_config": "configs",
    "merge_overrides": "configs",
    "parse_overrides": "configs",
    "resolve_config": "configs",
    "SegmentationFolderDataset": "data",
    "build_eval_transform": "data",
    "build_train_transform": "data",
}

__all__ = [
    "ENTRY_POINT_GROUP",
    "HOOK_REGISTRY",
    "SYNTHETIC_EXTRACTORS",
    "ClassificationTask",
    "DataConfig",
    "ExperimentConfig",
    "FitResult",
    "Hook",
    "HookConfig",
    "MILBagModule",
    "MILConfig",
    "MILTask",
    "MILTrainer",
    "MemoryBags",
    "ModelConfig",
    "ScanGenCallback",
    "ScanGenHook",
    "SegmentationFolderDataset",
    "SegmentationTask",
    "SimConsCallback",
    "SimConsHook",
    "Trainer",
    "TrainerConfig",
    "TrainingTask",
    "assign_scangen_splits",
    "available_hooks",
    "benchmark_feature_extractors",
    "build_eval_transform",
    "build_mil_trainer",
    "build_train_transform",
    "build_trainer",
    "compare_scangen",
    "config_path",
    "create_hook",
    "create_task",
    "evaluate_mil",
    "format_benchmark_markdown",
    "format_comparison_markdown",
    "list_configs",
    "load_config",
    "load_experiment_config",
    "load_mil_config",
    "make_synthetic_store",
    "merge_overrides",
    "parse_overrides",
    "register_hook",
    "resolve_config",
    "run_mil",
    "train_mil_model",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
