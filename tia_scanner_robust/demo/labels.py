"""Demo-scale segmentation labels derived on the reference scan.

The offline demo needs a segmentation task with ground truth but ships no
annotated data. :func:`derive_labels` makes one from any H&E image: it renders
the image through the *reference* scanner profile of the simulator
(:data:`~tia_scanner_robust.augmentations.scanner.SCANNER_PROFILES`, first
entry) and labels that rendering with the built-in classical segmenter
(:class:`~tia_scanner_robust.models.classical.ColourDeconvolutionSegmenter`:
hematoxylin threshold from colour deconvolution, saturation threshold for
tissue, then morphological clean-up). The labels are therefore a fixed
function of the tissue as the reference scanner sees it; a network trained on
them must reproduce them on scans by the *other* simulated scanners, which
is what the scanner-paired test measures.

Label schemes (:data:`LABEL_SCHEMES`):

- ``"nuclei"`` (default): ``{0: "other", 1: "nuclei"}``, binary nuclei
  segmentation (the SCORPION paper's task family);
- ``"tissue"``: ``{0: "background", 1: "tissue", 2: "nuclei"}``, the classical
  segmenter's three classes.

These are *pseudo* labels from a threshold method, not pathologist
annotations: adequate to measure scanner consistency and its mitigation at
demo scale, not to claim nuclei segmentation accuracy.

Examples:
    >>> import numpy as np
    >>> from tiatoolbox.data import stain_norm_target
    >>> labels = derive_labels(stain_norm_target()[:128, :128])
    >>> labels.shape, labels.dtype, sorted(np.unique(labels).tolist())
    ((128, 128), dtype('uint8'), [0, 1])
    >>> bool((labels == derive_labels(stain_norm_target()[:128, :128])).all())
    True

"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tia_scanner_robust._validation import check_in_choices, check_rgb_image

if TYPE_CHECKING:
    from tia_scanner_robust.augmentations.scanner import ScannerProfile
    from tia_scanner_robust.models.classical import ColourDeconvolutionSegmenter

__all__ = ["LABEL_CLASS_DICTS", "LABEL_SCHEMES", "derive_labels", "reference_rendering"]

#: Label schemes of :func:`derive_labels`.
LABEL_SCHEMES: tuple[str, ...] = ("nuclei", "tissue")
#: Class names of each scheme.
LABEL_CLASS_DICTS: dict[str, dict[int, str]] = {
    "nuclei": {0: "other", 1: "nuclei"},
    "tissue": {0: "background", 1: "tissue", 2: "nuclei"},
}
_NUCLEI = 2  # the classical segmenter's nuclei class


def reference_rendering(
    image: np.ndarray, profile: str | ScannerProfile | None = None
) -> np.ndarray:
    """The image as the reference (or a named) simulated scanner renders it.

    Args:
        image: RGB uint8 image.
        profile: A profile name or object; ``None`` takes the reference
            scanner (the first entry of ``SCANNER_PROFILES``).

    Returns:
        uint8 RGB image of the same shape (deterministic).

    Examples:
        >>> import numpy as np
        >>> image = np.full((16, 16, 3), 200, np.uint8)
        >>> reference_rendering(image).shape
        (16, 16, 3)

    """
    from tia_scanner_robust.augmentations.scanner import (  # noqa: PLC0415 - heavy import
        SCANNER_PROFILES,
        simulate_scanner,
    )

    check_rgb_image(image, "image")
    if profile is None:
        profile = next(iter(SCANNER_PROFILES.values()))
    return simulate_scanner(np.ascontiguousarray(image), profile)


def derive_labels(
    image: np.ndarray,
    *,
    scheme: str = "nuclei",
    profile: str | ScannerProfile | None = None,
    render: bool = True,
    segmenter: ColourDeconvolutionSegmenter | None = None,
) -> np.ndarray:
    """Label map of an H&E image from the classical segmenter on its reference rendering.

    Args:
        image: RGB uint8 image (whole demo image: labelling it at once avoids
            seams at tile borders; a 1000 x 1000 image takes about 0.5 s).
        scheme: ``"nuclei"`` (binary) or ``"tissue"`` (background / tissue /
            nuclei); see :data:`LABEL_CLASS_DICTS`.
        profile: Scanner profile of the rendering (default: the reference).
        render: ``False`` labels ``image`` as given (already a reference scan).
        segmenter: The classical segmenter (default: its calibrated defaults).

    Returns:
        ``(H, W)`` uint8 label map.

    Raises:
        ValueError: On an unknown ``scheme`` or a non-RGB image.

    Examples:
        >>> import numpy as np
        >>> glass = np.full((32, 32, 3), 250, np.uint8)
        >>> int(derive_labels(glass, scheme="tissue").max())  # all background
        0

    """
    import torch  # noqa: PLC0415 - heavy import

    from tia_scanner_robust.models.classical import (  # noqa: PLC0415 - heavy import
        ColourDeconvolutionSegmenter,
    )

    check_in_choices(scheme, LABEL_SCHEMES, "scheme")
    check_rgb_image(image, "image")
    if image.dtype != np.uint8:
        msg = f"image must be uint8 RGB, got {image.dtype}."
        raise TypeError(msg)
    rendered = reference_rendering(image, profile) if render else np.ascontiguousarray(image)
    model = segmenter if segmenter is not None else ColourDeconvolutionSegmenter()
    batch = torch.from_numpy(rendered[None].copy())
    probs = ColourDeconvolutionSegmenter.infer_batch(model, batch, device="cpu")
    labels = probs[0].argmax(axis=-1)
    if scheme == "nuclei":
        labels = labels == _NUCLEI
    return labels.astype(np.uint8)
