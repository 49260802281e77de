"""Build a ready-to-fit segmentation trainer from an experiment config.

:func:`build_trainer` turns an
:class:`~tia_scanner_robust.training.config.ExperimentConfig` (the YAML of
``tia-scanner-robust train``) into the smp model, the image/mask folder
datasets, the configured hooks and the trainer.

Examples:
    >>> from tia_scanner_robust.training.config import ExperimentConfig
    >>> build_trainer(ExperimentConfig())
    Traceback (most recent call last):
    ...
    ValueError: DataConfig.train_dir is required to build a trainer.

"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tia_scanner_robust.seeding import seed_everything
from tia_scanner_robust.training.hooks import Hook, create_hook
from tia_scanner_robust.training.trainer import Trainer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tia_scanner_robust.training.config import ExperimentConfig

__all__ = ["build_trainer"]


def build_trainer(config: ExperimentConfig, *, hooks: Sequence[Hook] = ()) -> Trainer:
    """Build the smp model, folder datasets, hooks and :class:`Trainer` of a config.

    Args:
        config: An :class:`~tia_scanner_robust.training.config.ExperimentConfig`
            (``data.train_dir`` is required).
        hooks: Extra hook instances appended after the configured ones.

    Returns:
        A ready-to-``fit`` trainer.

    Raises:
        ValueError: If ``data.train_dir`` is missing.

    """
    # Lazy: smp/TIAToolbox/albumentations are only needed for config-built runs.
    from tia_scanner_robust.models.segmentation import (  # noqa: PLC0415
        SmpSegmentationModel,
    )
    from tia_scanner_robust.training.data import (  # noqa: PLC0415
        SegmentationFolderDataset,
        batch_style_hook,
        build_eval_transform,
        build_train_transform,
    )

    data, mcfg, tcfg = config.data, config.model, config.trainer
    if data.train_dir is None:
        msg = "DataConfig.train_dir is required to build a trainer."
        raise ValueError(msg)
    num_classes = data.num_classes or mcfg.num_classes
    seed_everything(tcfg.seed)  # the model's random initialisation is part of the run
    model = SmpSegmentationModel(
        arch=mcfg.arch,
        encoder_name=mcfg.encoder_name,
        encoder_weights=mcfg.encoder_weights,
        num_classes=mcfg.num_classes,
        patch_size=mcfg.patch_size,
        resolution=mcfg.resolution,
        units=mcfg.units,
        model_kwargs=mcfg.model_kwargs,
    )
    train = SegmentationFolderDataset(
        data.train_dir,
        build_train_transform(
            data.crop_size,
            flip_p=data.flip_p,
            blur_p=data.blur_p,
            noise_p=data.noise_p,
            style_augmentation=data.style_augmentation,
            style_p=data.style_p,
            style_device=data.style_device,
        ),
        num_classes=num_classes,
        ignore_index=tcfg.ignore_index,
        seed=tcfg.seed,
    )
    val = None
    if data.val_dir is not None:
        val = SegmentationFolderDataset(
            data.val_dir,
            build_eval_transform(data.val_crop_size),
            num_classes=num_classes,
            ignore_index=tcfg.ignore_index,
            seed=tcfg.seed,
        )
    built = [create_hook(h.name, **h.kwargs) for h in config.hooks]
    style_hook = batch_style_hook(data.style_augmentation, data.style_p, data.style_device)
    built = built if style_hook is None else [style_hook, *built]
    return Trainer(model, train, val, config=tcfg, hooks=[*built, *hooks])
