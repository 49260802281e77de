"""Offline colour-deconvolution segmenter: background / tissue / nuclei.

:class:`ColourDeconvolutionSegmenter` is a weight-free TIAToolbox
:class:`~tiatoolbox.models.models_abc.ModelABC` that TIAToolbox's
:class:`~tiatoolbox.models.engine.semantic_segmentor.SemanticSegmentor` runs
in patch mode and in WSI mode like any trained network. It is the evaluator's
``"builtin"`` model: it needs no download, so the whole evaluation pipeline runs
offline, and it is **scanner-sensitive by construction** (fixed thresholds on
raw colour), which is exactly what a scanner-consistency report should expose.

Per pixel, with RGB values ``x`` in ``[0, 255]``:

1. Colour deconvolution (Ruifrok and Johnston, 2001) with scikit-image's
   stain matrix, vectorised in torch::

       OD = log(max(x / 255, 1e-6)) / log(1e-6)
       HED = max(OD @ hed_from_rgb, 0)  # identical to skimage.color.rgb2hed

   The hematoxylin channel ``H = HED[..., 0]`` is smoothed with a Gaussian
   (``sigma`` pixels).
2. Soft scores, a sigmoid of the signed distance to each fixed threshold::

       n = sigmoid((H_smooth - h_threshold) / h_temperature)        # nuclei
       s = (max_c x - min_c x) / max_c x,  v = max_c x / 255         # HSV S, V
       t = 1 - (1 - sigmoid((s - s_threshold) / t_temperature))
             * (1 - sigmoid((v_dark - v) / t_temperature))          # tissue

   giving the soft class probabilities
   ``[(1 - n)(1 - t), (1 - n) t, n]`` for ``{0: background, 1: tissue, 2: nuclei}``
   (they sum to one).
3. Morphology on the arg-max labels (vectorised over the batch with SciPy):
   nuclei are closed, their holes filled, opened, and objects smaller than
   ``min_nucleus_area`` pixels removed; tissue components smaller than
   ``min_tissue_area`` are removed.
4. Output: a *soft one-hot* map
   ``(1 - softness) * onehot(cleaned labels) + softness * soft probabilities``.
   With ``softness < 0.5`` its arg-max is exactly the cleaned label map, while
   the engine's merge of overlapping patches (an average) still sees graded
   confidences.

Calibration (fixed; documented in ``docs/evaluation.md``): on TIAToolbox's
bundled H&E image (:func:`tiatoolbox.data.stain_norm_target`) the hematoxylin
channel has median 0.028 and Otsu threshold 0.049, so ``h_threshold = 0.05``
marks about 26% of pixels as nuclei; the HSV saturation of glass is below 0.1
and that of stained tissue above 0.2, so ``s_threshold = 0.15``.

Examples:
    >>> import numpy as np, torch
    >>> from tiatoolbox.data import stain_norm_target
    >>> model = ColourDeconvolutionSegmenter()
    >>> batch = torch.from_numpy(stain_norm_target()[None, :128, :128].copy())
    >>> probs = ColourDeconvolutionSegmenter.infer_batch(model, batch, device="cpu")
    >>> probs.shape
    (1, 128, 128, 3)
    >>> sorted(np.unique(probs.argmax(-1)).tolist())
    [0, 1, 2]

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import ndimage as ndi
from tiatoolbox.models.models_abc import ModelABC
from torch.nn import functional as F  # noqa: N812

from tia_scanner_robust._tiatoolbox import segmentor_ioconfig
from tia_scanner_robust._validation import check_in_choices

if TYPE_CHECKING:
    from tiatoolbox.models.engine.io_config import IOSegmentorConfig
    from torch import nn

__all__ = [
    "CLASSICAL_CLASS_DICT",
    "HED_FROM_RGB",
    "ColourDeconvolutionSegmenter",
    "classical_ioconfig",
    "clean_label_maps",
]

#: Class index -> name of the builtin segmenter's outputs.
CLASSICAL_CLASS_DICT: dict[int, str] = {0: "background", 1: "tissue", 2: "nuclei"}

#: scikit-image's ``hed_from_rgb`` (inverse of Ruifrok and Johnston's ``rgb_from_hed``).
HED_FROM_RGB: np.ndarray = np.linalg.inv(
    np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
)

_LOG_ADJUST = float(np.log(1e-6))


def _disk(radius: int) -> np.ndarray:
    """Disk structuring element of the given radius, shaped ``(1, k, k)`` for batches."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (yy**2 + xx**2 <= radius**2)[None]


def _remove_small(mask: np.ndarray, min_area: int, structure: np.ndarray) -> np.ndarray:
    """Remove connected components (within each image of a batch) below ``min_area``."""
    if min_area <= 1 or not mask.any():
        return mask
    labels, _ = ndi.label(mask, structure=structure)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_area
    keep[0] = False
    return keep[labels]


def _fill_holes(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """Fill holes in every image of a ``(N, H, W)`` batch independently.

    A background slice is padded at both ends of the batch axis so that the
    3-D border seeds of :func:`scipy.ndimage.binary_fill_holes` are only the
    pad slices and the in-plane image borders; with an in-plane ``structure``
    no region connects across images.
    """
    padded = np.pad(mask, ((1, 1), (0, 0), (0, 0)))
    return ndi.binary_fill_holes(padded, structure=structure)[1:-1]


def clean_label_maps(
    labels: np.ndarray,
    *,
    radius: int = 2,
    min_nucleus_area: int = 30,
    min_tissue_area: int = 64,
) -> np.ndarray:
    """Morphological clean-up of background/tissue/nuclei label maps.

    Nuclei (label 2): closing with a disk of ``radius``, hole filling, opening,
    removal of objects smaller than ``min_nucleus_area`` pixels. Closing and
    opening run on an edge-padded copy, so nuclei cut by the patch border are
    not eroded by it. Tissue (labels
    1 and 2 together): removal of components smaller than ``min_tissue_area``.
    Cleaned nuclei always lie inside tissue. Every operation is applied to the
    whole batch at once (8-connectivity within each image, none across images).

    Args:
        labels: ``(N, H, W)`` or ``(H, W)`` integer label map with values in {0, 1, 2}.
        radius: Radius in pixels of the closing/opening disk (0 disables both).
        min_nucleus_area: Smallest kept nucleus, in pixels.
        min_tissue_area: Smallest kept tissue component, in pixels.

    Returns:
        The cleaned ``uint8`` label map, same shape as ``labels``.

    Raises:
        ValueError: If ``labels`` is not 2-D or 3-D or a size parameter is negative.

    Examples:
        >>> import numpy as np
        >>> lab = np.ones((20, 20), np.uint8)
        >>> lab[5:12, 5:12] = 2
        >>> lab[8, 8] = 1  # a hole inside the nucleus
        >>> lab[0, 0] = 2  # a one-pixel speck
        >>> out = clean_label_maps(lab, radius=1, min_nucleus_area=5)
        >>> int(out[8, 8]), int(out[0, 0]), int((out == 2).sum())
        (2, 1, 45)

    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        msg = f"labels must be (H, W) or (N, H, W); got shape {labels.shape}."
        raise ValueError(msg)
    for name, value in (
        ("radius", radius),
        ("min_nucleus_area", min_nucleus_area),
        ("min_tissue_area", min_tissue_area),
    ):
        if value < 0:
            msg = f"{name} must be >= 0, got {value}."
            raise ValueError(msg)
    single = labels.ndim == 2
    batch = labels[None] if single else labels
    conn = np.zeros((3, 3, 3), bool)
    conn[1] = True  # 8-connectivity in-plane, nothing across the batch axis

    nuclei = batch == 2
    if radius > 0:
        # edge padding: objects cut by the patch border are not eroded by the border
        pad = 2 * radius
        disk = _disk(radius)
        padded = np.pad(nuclei, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        nuclei = ndi.binary_closing(padded, structure=disk)[:, pad:-pad, pad:-pad]
    nuclei = _fill_holes(nuclei, conn[1:2])
    if radius > 0:
        padded = np.pad(nuclei, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        nuclei = ndi.binary_opening(padded, structure=disk)[:, pad:-pad, pad:-pad]
    nuclei = _remove_small(nuclei, min_nucleus_area, conn)

    tissue = _remove_small((batch >= 1) | nuclei, min_tissue_area, conn)
    out = tissue.astype(np.uint8)
    out[nuclei & tissue] = 2
    return out[0] if single else out


class ColourDeconvolutionSegmenter(ModelABC):
    """Weight-free background/tissue/nuclei segmenter as a TIAToolbox ``ModelABC``.

    See the module docstring for the method. Inputs are NHWC RGB batches in
    ``[0, 255]`` (what TIAToolbox's datasets yield); outputs are NHWC class
    probabilities for ``{0: background, 1: tissue, 2: nuclei}``. Run it with
    :class:`~tiatoolbox.models.engine.semantic_segmentor.SemanticSegmentor`
    and :func:`classical_ioconfig`.

    Args:
        h_threshold: Hematoxylin optical-density threshold for nuclei.
        h_temperature: Width of the nuclei sigmoid (H units).
        s_threshold: HSV saturation threshold for tissue.
        v_dark: HSV value below which a pixel counts as tissue (dark debris,
            dense nuclei) whatever its saturation.
        t_temperature: Width of the tissue sigmoids.
        sigma: Gaussian smoothing of the H channel, in pixels (0 disables).
        radius: Disk radius of the morphological closing/opening.
        min_nucleus_area: Smallest kept nucleus (pixels).
        min_tissue_area: Smallest kept tissue component (pixels).
        softness: Weight of the soft probabilities in the output, in
            ``[0, 0.5)``; 0 gives a hard one-hot map.
        output: ``"cleaned"`` (soft one-hot of the morphologically cleaned
            labels, the default) or ``"soft"`` (the raw sigmoid probabilities,
            no morphology).

    Attributes:
        class_dict: ``{0: "background", 1: "tissue", 2: "nuclei"}``.
        fully_convolutional: ``True``: patches of any size can be processed
            (the evaluator then groups patch datasets by size, not resizing).

    Examples:
        >>> import numpy as np, torch
        >>> model = ColourDeconvolutionSegmenter()
        >>> x = torch.full((1, 3, 8, 8), 255.0)  # white glass
        >>> model(x)[0, :, 0, 0].argmax().item()
        0
        >>> x = torch.tensor([60.0, 40.0, 120.0]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
        >>> model(x)[0, :, 0, 0].argmax().item()  # dark purple: hematoxylin
        2

    """

    fully_convolutional: bool = True

    def __init__(
        self: ColourDeconvolutionSegmenter,
        *,
        h_threshold: float = 0.05,
        h_temperature: float = 0.005,
        s_threshold: float = 0.15,
        v_dark: float = 0.35,
        t_temperature: float = 0.03,
        sigma: float = 1.0,
        radius: int = 2,
        min_nucleus_area: int = 30,
        min_tissue_area: int = 64,
        softness: float = 0.4,
        output: str = "cleaned",
    ) -> None:
        super().__init__()
        if h_temperature <= 0 or t_temperature <= 0:
            msg = (
                f"h_temperature and t_temperature must be > 0, "
                f"got {h_temperature} and {t_temperature}."
            )
            raise ValueError(msg)
        if not 0.0 <= softness < 0.5:
            msg = (
                f"softness must be in [0, 0.5) so that the arg-max equals the "
                f"cleaned labels, got {softness}."
            )
            raise ValueError(msg)
        if sigma < 0:
            msg = f"sigma must be >= 0, got {sigma}."
            raise ValueError(msg)
        self.output = check_in_choices(output, ("cleaned", "soft"), "output")
        self.class_dict = dict(CLASSICAL_CLASS_DICT)
        self.h_threshold = float(h_threshold)
        self.h_temperature = float(h_temperature)
        self.s_threshold = float(s_threshold)
        self.v_dark = float(v_dark)
        self.t_temperature = float(t_temperature)
        self.sigma = float(sigma)
        self.radius = int(radius)
        self.min_nucleus_area = int(min_nucleus_area)
        self.min_tissue_area = int(min_tissue_area)
        self.softness = float(softness)
        self.register_buffer(
            "hed_from_rgb", torch.as_tensor(HED_FROM_RGB, dtype=torch.float32), persistent=False
        )
        self.register_buffer("gauss", self._gaussian_kernel(self.sigma), persistent=False)

    @staticmethod
    def _gaussian_kernel(sigma: float) -> torch.Tensor:
        """Separable 1-D Gaussian kernel (truncated at 2 sigma), normalised."""
        if sigma <= 0:
            return torch.ones(1)
        half = max(1, int(np.ceil(2 * sigma)))
        grid = torch.arange(-half, half + 1, dtype=torch.float32)
        kernel = torch.exp(-(grid**2) / (2 * sigma**2))
        return kernel / kernel.sum()

    def config(self: ColourDeconvolutionSegmenter) -> dict[str, Any]:
        """Return the constructor arguments (for reports and checkpoints).

        Examples:
            >>> ColourDeconvolutionSegmenter(h_threshold=0.06).config()["h_threshold"]
            0.06

        """
        keys = (
            "h_threshold",
            "h_temperature",
            "s_threshold",
            "v_dark",
            "t_temperature",
            "sigma",
            "radius",
            "min_nucleus_area",
            "min_tissue_area",
            "softness",
            "output",
        )
        return {k: getattr(self, k) for k in keys}

    def hematoxylin(self: ColourDeconvolutionSegmenter, x: torch.Tensor) -> torch.Tensor:
        """Hematoxylin channel of NCHW RGB ``x`` in ``[0, 255]``, as ``(N, H, W)``.

        Identical (up to float32 rounding) to ``skimage.color.rgb2hed(img)[..., 0]``.

        Examples:
            >>> import numpy as np, torch
            >>> from skimage.color import rgb2hed
            >>> img = np.random.default_rng(0).integers(0, 256, (4, 5, 3)).astype(np.uint8)
            >>> x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
            >>> h = ColourDeconvolutionSegmenter().hematoxylin(x)[0].numpy()
            >>> bool(np.allclose(h, rgb2hed(img)[..., 0], atol=1e-5))
            True

        """
        od = torch.log(torch.clamp(x / 255.0, min=1e-6)) / _LOG_ADJUST
        hed = torch.einsum("nchw,cd->ndhw", od, self.hed_from_rgb)
        return torch.clamp(hed[:, 0], min=0.0)

    def _smooth(self: ColourDeconvolutionSegmenter, image: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian smoothing of ``(N, H, W)`` with reflect padding."""
        kernel = self.gauss.to(image)
        half = kernel.numel() // 2
        if half == 0:
            return image
        x = image[:, None]
        h, w = x.shape[-2:]
        if h <= half or w <= half:  # too small to reflect: replicate instead
            x = F.pad(x, (half, half, half, half), mode="replicate")
        else:
            x = F.pad(x, (half, half, half, half), mode="reflect")
        x = F.conv2d(x, kernel.view(1, 1, 1, -1))
        x = F.conv2d(x, kernel.view(1, 1, -1, 1))
        return x[:, 0]

    def forward(self: ColourDeconvolutionSegmenter, x: torch.Tensor) -> torch.Tensor:
        """Soft class probabilities ``(N, 3, H, W)`` of an NCHW RGB batch in ``[0, 255]``.

        Args:
            x: Float tensor ``(N, 3, H, W)``, RGB values in ``[0, 255]``.

        Returns:
            Probabilities of background, tissue and nuclei (sum 1 per pixel).

        """
        x = x.float()
        hema = self._smooth(self.hematoxylin(x))
        nuclei = torch.sigmoid((hema - self.h_threshold) / self.h_temperature)
        cmax = x.amax(dim=1)
        cmin = x.amin(dim=1)
        saturation = (cmax - cmin) / torch.clamp(cmax, min=1e-6)
        value = cmax / 255.0
        not_sat = 1 - torch.sigmoid((saturation - self.s_threshold) / self.t_temperature)
        not_dark = 1 - torch.sigmoid((self.v_dark - value) / self.t_temperature)
        tissue = 1 - not_sat * not_dark
        background = (1 - nuclei) * (1 - tissue)
        return torch.stack([background, (1 - nuclei) * tissue, nuclei], dim=1)

    @staticmethod
    def infer_batch(
        model: nn.Module,
        batch_data: np.ndarray | torch.Tensor,
        *,
        device: str = "cpu",
    ) -> np.ndarray:
        """Run the segmenter on an NHWC batch (TIAToolbox's engine contract).

        Args:
            model: A :class:`ColourDeconvolutionSegmenter` (possibly wrapped by
                ``torch.compile`` or ``DataParallel``).
            batch_data: ``(N, H, W, 3)`` RGB patches in ``[0, 255]``.
            device: Torch device to run on.

        Returns:
            ``(N, H, W, 3)`` float32 class probabilities (see ``output``).

        """
        core = getattr(model, "module", model)
        x = batch_data if torch.is_tensor(batch_data) else torch.from_numpy(np.asarray(batch_data))
        x = x.to(device=device, dtype=torch.float32).permute(0, 3, 1, 2).contiguous()
        model.eval()
        with torch.inference_mode():
            soft = model(x).permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
        if core.output == "soft":
            return soft
        cleaned = clean_label_maps(
            soft.argmax(-1),
            radius=core.radius,
            min_nucleus_area=core.min_nucleus_area,
            min_tissue_area=core.min_tissue_area,
        )
        onehot = np.eye(soft.shape[-1], dtype=np.float32)[cleaned]
        return (1.0 - core.softness) * onehot + core.softness * soft

    @staticmethod
    def postproc(image: Any) -> Any:
        """Arg-max over the class axis (works lazily on dask arrays)."""
        return image.argmax(axis=-1)


def classical_ioconfig(
    *,
    resolution: float = 0.5,
    units: str = "mpp",
    patch_shape: int | tuple[int, int] = 256,
    stride: int | tuple[int, int] | None = None,
) -> IOSegmentorConfig:
    """IO configuration of :class:`ColourDeconvolutionSegmenter` for ``SemanticSegmentor``.

    Input and output share one resolution and shape (the model is fully
    convolutional and crops nothing). The default reads WSIs at 0.5 um/px so
    that scanners with different native pixel sizes are compared at the same
    physical scale; use ``units="baseline", resolution=1.0`` for images without
    pixel-size metadata. In patch mode the resolution is not used.

    Args:
        resolution: Read (and save) resolution.
        units: ``"mpp"``, ``"power"`` or ``"baseline"``.
        patch_shape: Patch size (int or ``(h, w)``).
        stride: Stride (default: ``patch_shape``, no overlap).

    Returns:
        An :class:`~tiatoolbox.models.engine.io_config.IOSegmentorConfig`.

    Examples:
        >>> cfg = classical_ioconfig(units="baseline", resolution=1.0, patch_shape=128)
        >>> cfg.patch_input_shape, cfg.patch_output_shape, cfg.stride_shape
        ((128, 128), (128, 128), (128, 128))

    """
    check_in_choices(units, ("mpp", "power", "baseline"), "units")
    shape = (patch_shape, patch_shape) if np.isscalar(patch_shape) else tuple(patch_shape)
    shape = (int(shape[0]), int(shape[1]))
    if stride is None:
        stride_shape = shape
    elif np.isscalar(stride):
        stride_shape = (int(stride), int(stride))
    else:
        stride_shape = (int(stride[0]), int(stride[1]))
    if min(*shape, *stride_shape) <= 0:
        msg = f"patch_shape and stride must be positive, got {shape} and {stride_shape}."
        raise ValueError(msg)
    return segmentor_ioconfig(
        {"units": units, "resolution": float(resolution)}, shape, stride_shape
    )
