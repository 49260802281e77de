"""Build a ready-to-fit segmentation trainer from an experiment config.

:func:`build_trainer` turns an
:class:`~tia_scanner_robust.training.config.ExperimentConfig` (the YAML of
``tia-scanner-robust train``) into the model (the smp wrapper or the user's
own class, :func:`~tia_scanner_robust.models.factory.build_model`), the
image/mask folder datasets (checked eagerly unless ``data.check_data`` is
false), the configured hooks and the trainer. Style-augmentation files of
``data.style_kwargs`` and of a hook's ``style_kwargs`` are checked and read
here (:func:`~tia_scanner_robust.training.run_config.load_style_kwargs`); the
trainer writes the full resolved config with the package versions to the run
folder's ``config.yaml``, which ``train --config RUN/config.yaml`` runs again.

Examples:
    >>> from tia_scanner_robust.training.config import ExperimentConfig
    >>> build_trainer(ExperimentConfig())
    Traceback (most recent call last):
    ...
    ValueError: DataConfig.train_dir is required to build a trainer.

"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tia_scanner_robust.seeding import seed_everything
from tia_scanner_robust.training.hooks import Hook, create_hook
from tia_scanner_robust.training.run_config import load_style_kwargs, package_versions
from tia_scanner_robust.training.trainer import Trainer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tia_scanner_robust.training.config import ExperimentConfig

__all__ = ["build_hooks", "build_trainer"]


def _has_bank(style_kwargs: dict[str, Any]) -> bool:
    """Whether FDA options (alone or a component's) carry a ``reference_images`` bank."""
    if style_kwargs.get("reference_images") is not None:
        return True
    fda = style_kwargs.get("fda")
    return isinstance(fda, dict) and fda.get("reference_images") is not None


def build_hooks(config: ExperimentConfig) -> list[Hook]:
    """The configured hooks, with the files of their ``style_kwargs`` checked and read.

    A SimCons hook whose FDA has a reference bank takes its references from
    the bank (``fda_references: none``) unless the config says otherwise.

    Raises:
        FileNotFoundError: If a file of a hook's ``style_kwargs`` is missing
            (the message names ``hooks[i].kwargs.style_kwargs``).

    """
    hooks = []
    for i, hook in enumerate(config.hooks):
        kwargs = dict(hook.kwargs)
        if isinstance(kwargs.get("style_kwargs"), dict):
            kwargs["style_kwargs"] = load_style_kwargs(
                kwargs["style_kwargs"], f"hooks[{i}].kwargs.style_kwargs"
            )
            if hook.name == "simcons" and _has_bank(kwargs["style_kwargs"]):
                kwargs.setdefault("fda_references", "none")
        hooks.append(create_hook(hook.name, **kwargs))
    return hooks


def build_trainer(config: ExperimentConfig, *, hooks: Sequence[Hook] = ()) -> Trainer:
    """Build the model, folder datasets, hooks and :class:`Trainer` of a config.

    Args:
        config: An :class:`~tia_scanner_robust.training.config.ExperimentConfig`
            (``data.train_dir`` is required).
        hooks: Extra hook instances appended after the configured ones.

    Returns:
        A ready-to-``fit`` trainer.

    Raises:
        ValueError: If ``data.train_dir`` is missing, a file or the model is
            invalid, or the data check fails (the message names the file).
        FileNotFoundError: If a data folder or a configured file is missing.

    """
    # Lazy: smp/TIAToolbox/albumentations are only needed for config-built runs.
    from tia_scanner_robust.models.factory import build_model  # noqa: PLC0415
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
    style_kwargs = load_style_kwargs(data.style_kwargs, "data.style_kwargs")
    model = build_model(
        mcfg.arch,
        encoder_name=mcfg.encoder_name,
        encoder_weights=mcfg.encoder_weights,
        num_classes=mcfg.num_classes,
        patch_size=mcfg.patch_size,
        resolution=mcfg.resolution,
        units=mcfg.units,
        model_kwargs=mcfg.model_kwargs,
        class_dict=mcfg.class_dict,
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
            style_kwargs=style_kwargs,
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
    if data.check_data:
        # Lazy: the check reads every file; only config-built runs need it.
        from tia_scanner_robust.training.data_check import (  # noqa: PLC0415
            check_segmentation_data,
        )

        for dataset in (train, val):
            if dataset is not None:
                check_segmentation_data(
                    dataset, num_classes=num_classes, ignore_index=tcfg.ignore_index
                )
    built = build_hooks(config)
    style_hook = batch_style_hook(
        data.style_augmentation, data.style_p, data.style_device, style_kwargs
    )
    built = built if style_hook is None else [style_hook, *built]
    trainer = Trainer(model, train, val, config=tcfg, hooks=[*built, *hooks])
    trainer.run_config = _recorded_config(config)
    return trainer


def _recorded_config(config: ExperimentConfig) -> dict[str, Any]:
    """The config as the run folder records it: folders absolute, package versions added."""
    recorded = config.to_dict()
    for section, key in (("data", "train_dir"), ("data", "val_dir"), ("trainer", "output_dir")):
        if recorded[section].get(key) is not None:
            recorded[section][key] = str(Path(recorded[section][key]).resolve())
    recorded["versions"] = package_versions()
    return recorded
