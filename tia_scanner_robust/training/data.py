"""Segmentation training data: an image/mask folder dataset and the paper's augmentations.

Layout read by :class:`SegmentationFolderDataset`::

    root/
      images/  a.png  b.jpg ...   RGB tiles
      masks/   a.png  b.png ...   single-channel label maps (value = class index)

Images and masks pair by file stem; a missing or extra mask is an error
naming the files. Items are dicts with ``"image"`` (``(H, W, 3)`` uint8),
``"mask"`` (``(H, W)`` int64), ``"index"`` and ``"path"``.

Reproducibility: the augmentation random state of each item is re-seeded
from ``(seed, epoch, index)`` (:func:`derive_seed`) before the transform
runs, so an item's augmentation does not depend on the worker that loads it,
on the order of loading, or on whether training was resumed; the trainer
calls :meth:`SegmentationFolderDataset.set_epoch` at every epoch.

Style transforms that read call metadata (FDA's ``metadata_key``,
``"fda_reference"``) receive another image of the dataset, chosen from the
same per-item seed, as their reference (as the SimCons paper does for FDA).

Examples:
    >>> t = build_train_transform(crop_size=32)
    >>> import numpy as np
    >>> out = t(image=np.zeros((40, 40, 3), np.uint8), mask=np.zeros((40, 40), np.uint8))
    >>> out["image"].shape, out["mask"].shape
    ((32, 32, 3), (32, 32))

"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import albumentations as A  # noqa: N812
import cv2
import numpy as np
import torch

from tia_scanner_robust._validation import check_in_choices, read_rgb_image
from tia_scanner_robust.data.readers import check_mask_values, read_mask
from tia_scanner_robust.training.state import derive_seed, reseed_transform

if TYPE_CHECKING:
    from collections.abc import Callable

    from tia_scanner_robust.training.hooks import Hook

__all__ = [
    "IMAGE_EXTENSIONS",
    "SegmentationFolderDataset",
    "batch_style_hook",
    "build_eval_transform",
    "build_train_transform",
    "derive_seed",
    "read_mask",
    "reseed_transform",
]

#: File extensions accepted as images (masks are read from any of these too).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _ordinary_augmentations(
    *,
    flip_p: float,
    blur_p: float,
    noise_p: float,
    style: A.BasicTransform | A.BaseCompose | None,
) -> list[Any]:
    transforms: list[Any] = [A.HorizontalFlip(p=flip_p), A.VerticalFlip(p=flip_p)]
    if style is not None:
        transforms.append(style)
    transforms += [
        A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.1, 1.5), p=blur_p),
        A.GaussNoise(std_range=(0.01, 0.05), p=noise_p),
    ]
    return transforms


def build_train_transform(
    crop_size: int | None = 256,
    *,
    flip_p: float = 0.5,
    blur_p: float = 0.2,
    noise_p: float = 0.2,
    style_augmentation: A.BasicTransform | A.BaseCompose | str | None = None,
    style_p: float = 0.5,
    style_device: str = "cpu",
    style_kwargs: dict[str, Any] | None = None,
) -> A.Compose:
    """The paper's ordinary training augmentations, plus optional crop and style.

    Order: pad-if-needed + random crop (``crop_size``), horizontal and
    vertical flips, the optional style augmentation, Gaussian blur
    (kernel 3-5, sigma 0.1-1.5), Gaussian noise (std 1-5 % of 255).

    Args:
        crop_size: Random crop side (smaller images and their masks are
            reflect-padded first); ``None`` skips cropping.
        flip_p: Probability of each flip.
        blur_p: Probability of the blur.
        noise_p: Probability of the noise.
        style_augmentation: A transform, a name for
            :func:`tia_scanner_robust.augmentations.style_augmentation`, or ``None``.
        style_p: ``p`` passed to a named style augmentation.
        style_device: ``"cpu"`` (the style augmentation is part of this
            pipeline) or ``"batch"`` (left out: it runs on the training device,
            see :func:`batch_style_hook`).
        style_kwargs: Options of a named style augmentation (files already
            read: see :func:`~tia_scanner_robust.training.run_config.load_style_kwargs`).

    Returns:
        An ``A.Compose`` taking ``image=`` and ``mask=``.

    Examples:
        >>> t = build_train_transform(crop_size=None, blur_p=0.0, noise_p=0.0)
        >>> [type(x).__name__ for x in t.transforms]
        ['HorizontalFlip', 'VerticalFlip', 'GaussianBlur', 'GaussNoise']

    """
    check_in_choices(style_device, ("cpu", "batch"), "style_device")
    if style_device == "batch":
        style_augmentation = None  # deferred to the device (batch_style_hook)
    if isinstance(style_augmentation, str):
        # Lazy: the presets module imports every style augmentation.
        from tia_scanner_robust.augmentations import (  # noqa: PLC0415
            style_augmentation as make_style,
        )

        style_augmentation = make_style(
            style_augmentation, **{"p": style_p, **(style_kwargs or {})}
        )
    transforms: list[Any] = []
    if crop_size is not None:
        transforms += [
            A.PadIfNeeded(
                min_height=crop_size,
                min_width=crop_size,
                border_mode=cv2.BORDER_REFLECT_101,
                fill_mask=0,
            ),
            A.RandomCrop(height=crop_size, width=crop_size),
        ]
    transforms += _ordinary_augmentations(
        flip_p=flip_p, blur_p=blur_p, noise_p=noise_p, style=style_augmentation
    )
    return A.Compose(transforms)


def batch_style_hook(
    style_augmentation: A.BasicTransform | A.BaseCompose | str | None,
    style_p: float = 0.5,
    style_device: str = "cpu",
    style_kwargs: dict[str, Any] | None = None,
) -> Hook | None:
    """The hook that styles the batch on the device for ``style_device="batch"``, else ``None``.

    Examples:
        >>> batch_style_hook("fda", 0.5, "cpu") is None
        True
        >>> type(batch_style_hook("randstainna", 0.5, "batch")).__name__
        'BatchStyleHook'

    """
    check_in_choices(style_device, ("cpu", "batch"), "style_device")
    if style_device == "cpu" or style_augmentation is None:
        return None
    # Lazy: the hook module loads the batched augmentations on demand.
    from tia_scanner_robust.training.simcons import BatchStyleHook  # noqa: PLC0415

    return BatchStyleHook(style_augmentation, p=style_p, style_kwargs=style_kwargs)


def build_eval_transform(crop_size: int | None = None) -> A.Compose | None:
    """Deterministic evaluation transform: a centre crop (padded if needed), or ``None``.

    Examples:
        >>> build_eval_transform() is None
        True

    """
    if crop_size is None:
        return None
    return A.Compose(
        [
            A.PadIfNeeded(
                min_height=crop_size,
                min_width=crop_size,
                border_mode=cv2.BORDER_REFLECT_101,
                fill_mask=0,
            ),
            A.CenterCrop(height=crop_size, width=crop_size),
        ]
    )


def _metadata_keys(transform: object) -> list[str]:
    """``metadata_key`` names used by a transform or any transform nested in it.

    A transform with its own reference bank (FDA's ``reference_images``) is
    left out: it draws its references from the bank.
    """
    keys: list[str] = []
    key = getattr(transform, "metadata_key", None)
    if isinstance(key, str) and getattr(transform, "reference_images", None) is None:
        keys.append(key)
    for child in getattr(transform, "transforms", None) or []:
        keys += [k for k in _metadata_keys(child) if k not in keys]
    return keys


def _list_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if path.stem in files:
            msg = (
                f"Two files share the stem {path.stem!r} in {folder}: "
                f"{files[path.stem].name}, {path.name}."
            )
            raise ValueError(msg)
        files[path.stem] = path
    return files


class SegmentationFolderDataset(torch.utils.data.Dataset):
    """Image/mask pairs from ``root/images`` and ``root/masks`` (same stems).

    Args:
        root: Folder holding the two sub-folders.
        transform: albumentations transform called as
            ``transform(image=..., mask=...)`` (e.g. :func:`build_train_transform`),
            or ``None``.
        images_dir: Name of the image sub-folder.
        masks_dir: Name of the mask sub-folder.
        num_classes: If given, mask values must lie in ``[0, num_classes)``
            (or equal ``ignore_index``); checked when an item is read.
        ignore_index: Label value allowed besides the classes.
        seed: Base seed of the per-item augmentation state.

    Raises:
        FileNotFoundError: If a folder is missing or holds no images.
        ValueError: If images and masks do not pair by stem.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from tia_scanner_robust._io import atomic_write_image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = atomic_write_image(root / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
        >>> _ = atomic_write_image(root / "masks" / "a.png", np.ones((8, 8), np.uint8))
        >>> item = SegmentationFolderDataset(root)[0]
        >>> item["image"].shape, item["mask"].dtype, int(item["mask"].max())
        ((8, 8, 3), dtype('int64'), 1)

    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable[..., dict[str, Any]] | None = None,
        *,
        images_dir: str = "images",
        masks_dir: str = "masks",
        num_classes: int | None = None,
        ignore_index: int | None = None,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        image_folder, mask_folder = self.root / images_dir, self.root / masks_dir
        for folder, what in ((image_folder, "image"), (mask_folder, "mask")):
            if not folder.is_dir():
                msg = (
                    f"The {what} folder {folder} does not exist (expected "
                    f"{self.root}/{images_dir}/ and {self.root}/{masks_dir}/)."
                )
                raise FileNotFoundError(msg)
        images, masks = _list_files(image_folder), _list_files(mask_folder)
        if not images:
            msg = f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {image_folder}."
            raise FileNotFoundError(msg)
        missing = sorted(set(images) - set(masks))
        extra = sorted(set(masks) - set(images))
        if missing or extra:
            parts = []
            if missing:
                parts.append(
                    f"{len(missing)} image(s) without a mask in {mask_folder}: {missing[:5]}"
                )
            if extra:
                parts.append(
                    f"{len(extra)} mask(s) without an image in {image_folder}: {extra[:5]}"
                )
            msg = "Images and masks do not pair by file stem; " + "; ".join(parts) + "."
            raise ValueError(msg)
        self.stems = sorted(images)
        self.image_paths = [images[s] for s in self.stems]
        self.mask_paths = [masks[s] for s in self.stems]
        self.transform = transform
        # Transforms reading call metadata (FDA's ``fda_reference``) get another
        # training image as reference (the SimCons paper's FDA setting).
        self.metadata_keys = _metadata_keys(transform)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that keys the per-item augmentation seeds."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.stems)

    def _check_mask(self, mask: np.ndarray, index: int) -> None:
        if self.num_classes is None:
            return
        check_mask_values(
            mask, self.num_classes, self.mask_paths[index], ignore_index=self.ignore_index
        )

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read image and mask ``index`` without augmentation."""
        image = read_rgb_image(self.image_paths[index])
        mask = read_mask(self.mask_paths[index]).astype(np.int64)
        if image.shape[:2] != mask.shape:
            msg = (
                f"Image {self.image_paths[index]} is {image.shape[:2]} but its mask "
                f"{self.mask_paths[index]} is {mask.shape}."
            )
            raise ValueError(msg)
        self._check_mask(mask, index)
        return image, mask

    def _references(self, index: int, item_seed: int) -> dict[str, list[np.ndarray]]:
        """Another image of the dataset (chosen from the item's seed) per metadata key."""
        if not self.metadata_keys:
            return {}
        n = len(self.stems)
        other = index
        if n > 1:
            offset = int(np.random.default_rng(item_seed).integers(1, n))
            other = (index + offset) % n
        reference = read_rgb_image(self.image_paths[other])
        return {key: [reference] for key in self.metadata_keys}

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask = self.load(index)
        if self.transform is not None:
            item_seed = derive_seed(self.seed, self.epoch, index)
            reseed_transform(self.transform, item_seed)
            out = self.transform(image=image, mask=mask, **self._references(index, item_seed))
            image, mask = out["image"], out["mask"]
        return {
            "image": np.ascontiguousarray(image, dtype=np.uint8),
            "mask": np.ascontiguousarray(mask, dtype=np.int64),
            "index": int(index),
            "path": str(self.image_paths[index]),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, n={len(self)})"
