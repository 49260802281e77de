"""Slide-level prediction with a MIL model, from a feature store or from WSIs through TIAToolbox.

:class:`MILSlidePredictor` wraps a trained
:class:`~tia_scanner_robust.models.mil.MILModel` (``y_hat = f(a(g(h)))``,
METHODS.md section 1) so that a whole slide gets one prediction:

- :meth:`MILSlidePredictor.predict_store`: the bags are the slides of a
  :class:`~tia_scanner_robust.data.features.FeatureStore` (features extracted
  earlier, e.g. by :func:`~tia_scanner_robust.features.extract.extract_features`);
- :meth:`MILSlidePredictor.predict_wsis`: the bags come from TIAToolbox's
  ``DeepFeatureExtractor`` run in WSI mode (``patch_mode=False``,
  ``output_type="zarr"``) with the feature backbone; each slide's
  ``features`` and ``coordinates`` are read back from the zarr the engine
  wrote and the MIL model runs on that bag.

The engine runs through the package's TIAToolbox adapter
(:func:`tia_scanner_robust._tiatoolbox.run_wsi_engine`): a fresh engine per
run, backbones returning ``[features]`` or an array both accepted, and one
engine run per group of paths with distinct file stems (the engine names its
outputs by stem).

Examples:
    >>> import tempfile, numpy as np, torch
    >>> from tia_scanner_robust.data.features import FeatureStore
    >>> store = FeatureStore(tempfile.mkdtemp() + "/f.zarr")
    >>> _ = store.write_slide("P1", "AT2", np.ones((3, 8), np.float32), label=1)
    >>> _ = torch.manual_seed(0)
    >>> predictor = MILSlidePredictor(MILModel(8, projection_hidden=4))
    >>> record = predictor.predict_store(store)[0]
    >>> record["specimen_id"], record["probabilities"].shape, record["attention"].round(3).tolist()
    ('P1', (2,), [0.333, 0.333, 0.333])

"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tia_scanner_robust._tiatoolbox import read_ioconfig, read_wsi_features, run_wsi_engine
from tia_scanner_robust.bags import pad_bags
from tia_scanner_robust.data.features import MISSING_LABEL, BagDataset, FeatureStore
from tia_scanner_robust.models.mil import MILModel, load_mil_checkpoint

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tiatoolbox.models.engine.io_config import IOPatchPredictorConfig

__all__ = ["MILSlidePredictor", "default_ioconfig"]


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        msg = f"{name} must be a positive integer, got {value!r}."
        raise ValueError(msg)
    return int(value)


def default_ioconfig(patch_size: int = 224, mpp: float = 0.5) -> IOPatchPredictorConfig:
    """The predictor's default IO config (:func:`~tia_scanner_robust._tiatoolbox.read_ioconfig`).

    Non-overlapping ``patch_size`` patches read at ``mpp`` microns per pixel.

    Examples:
        >>> cfg = default_ioconfig(256, 0.5)
        >>> cfg.patch_input_shape, cfg.input_resolutions
        ((256, 256), [{'units': 'mpp', 'resolution': 0.5}])

    """
    return read_ioconfig(patch_size, mpp)


class MILSlidePredictor:
    """A MIL model as a slide predictor over a feature store or over WSIs.

    Args:
        mil_model: The trained :class:`MILModel` (used in evaluation mode).
        feature_model: The patch backbone for :meth:`predict_wsis`: a
            TIAToolbox foundation-model name, a timm name or an ``nn.Module``
            (see :func:`~tia_scanner_robust.features.extract.resolve_feature_model`).
            Not needed for :meth:`predict_store`.
        ioconfig: Engine IO config of :meth:`predict_wsis` (default: the
            backbone's ``ioconfig`` attribute, else :func:`default_ioconfig`).
        batch_size: Bags per MIL forward pass and patches per engine batch.
        device: ``"cpu"`` or ``"cuda"``.
        positive_class: Class whose probability is each record's ``score``.
        pretrained: Load pretrained weights for a backbone name.
        normalization: ``(mean, std)`` of the backbone's input (default: the
            model's, as in feature extraction); installed as the backbone's
            ``preproc_func`` (replacing a TIAToolbox model's own).
        progress: Show tqdm progress bars.

    Examples:
        >>> predictor = MILSlidePredictor(MILModel(8, projection_hidden=4), positive_class=1)
        >>> predictor.predict_bag(np.zeros((5, 8), np.float32))["probabilities"].shape
        (2,)

    """

    def __init__(
        self,
        mil_model: MILModel,
        feature_model: str | nn.Module | None = None,
        *,
        ioconfig: IOPatchPredictorConfig | None = None,
        batch_size: int = 32,
        device: str = "cpu",
        positive_class: int = 1,
        pretrained: bool = True,
        normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
        progress: bool = False,
    ) -> None:
        if not isinstance(mil_model, MILModel):
            msg = f"mil_model must be a MILModel, got {type(mil_model).__name__}."
            raise TypeError(msg)
        self.batch_size = _positive_int(batch_size, "batch_size")
        if (
            isinstance(positive_class, bool)
            or not isinstance(positive_class, (int, np.integer))
            or not 0 <= positive_class < mil_model.num_classes
        ):
            msg = (
                f"positive_class must be an int in [0, {mil_model.num_classes}), "
                f"got {positive_class!r}."
            )
            raise ValueError(msg)
        self.positive_class = int(positive_class)
        self.device = str(device)
        self.progress = progress
        self.mil_model = mil_model.to(self.device).eval()
        self.feature_model: nn.Module | None = None
        self.feature_model_name: str | None = None
        if feature_model is not None:
            from tia_scanner_robust.features.extract import (  # noqa: PLC0415
                make_preproc,
                resolve_feature_model,
            )

            net, name, default_norm = resolve_feature_model(feature_model, pretrained=pretrained)
            mean, std = normalization or default_norm
            net.preproc_func = make_preproc(tuple(mean), tuple(std))  # type: ignore[assignment]
            self.feature_model, self.feature_model_name = net, name
        if ioconfig is None and self.feature_model is not None:
            ioconfig = getattr(self.feature_model, "ioconfig", None)
        self.ioconfig = ioconfig if ioconfig is not None else default_ioconfig()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        feature_model: str | nn.Module | None = None,
        *,
        model_config: Mapping[str, Any] | None = None,
        feature_dim: int | None = None,
        **kwargs: Any,
    ) -> MILSlidePredictor:
        """A predictor from a MIL checkpoint (see :func:`load_mil_checkpoint`).

        Checkpoints of ``tia-scanner-robust train-mil`` store the model's
        config, so ``model_config`` is only needed for older checkpoints or
        bare state dicts; when given, it wins over the stored config.
        ``kwargs`` go to the constructor.

        Examples:
            >>> import tempfile, torch
            >>> path = tempfile.mkdtemp() + "/mil.pt"
            >>> model = MILModel(8, projection_hidden=4)
            >>> torch.save({"model": model.state_dict(), "model_config": model.config}, path)
            >>> MILSlidePredictor.from_checkpoint(path).mil_model.feature_dim
            8
            >>> torch.save({"model": model.state_dict()}, path)  # no stored config
            >>> config = {"aggregator": "gap", "projection_hidden": 4}
            >>> MILSlidePredictor.from_checkpoint(path, model_config=config).mil_model.feature_dim
            8

        """
        model = load_mil_checkpoint(path, model_config, feature_dim)
        return cls(model, feature_model, **kwargs)

    # ------------------------------------------------------------------ bags
    def _records(self, bags: Sequence[torch.Tensor]) -> list[dict[str, Any]]:
        """Logits, probabilities, prediction, score and attention of each bag."""
        out: list[dict[str, Any]] = []
        with torch.inference_mode():
            for start in range(0, len(bags), self.batch_size):
                chunk = bags[start : start + self.batch_size]
                features, mask = pad_bags(chunk)
                result = self.mil_model(features.to(self.device), mask.to(self.device))
                logits = result["logits"].float().cpu()
                probs = torch.softmax(logits, dim=1).numpy()
                attention = result.get("attention")
                attention = None if attention is None else attention.float().cpu().numpy()
                for i, bag in enumerate(chunk):
                    weights = None if attention is None else attention[i, : bag.shape[0]]
                    out.append(
                        {
                            "logits": logits[i].numpy(),
                            "probabilities": probs[i],
                            "prediction": int(probs[i].argmax()),
                            "score": float(probs[i, self.positive_class]),
                            "n_instances": int(bag.shape[0]),
                            "attention": weights,
                        }
                    )
        return out

    def predict_bag(self, features: np.ndarray | torch.Tensor) -> dict[str, Any]:
        """Prediction of one ``(N, D)`` bag: logits, probabilities, prediction, score, attention.

        Raises:
            ValueError: If the bag is not ``(N, D)`` with ``N >= 1`` and the
                model's ``D``.

        """
        bag = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if bag.ndim != 2 or bag.shape[0] == 0 or bag.shape[1] != self.mil_model.feature_dim:
            msg = (
                f"features must have shape (N >= 1, {self.mil_model.feature_dim}), "
                f"got {tuple(bag.shape)}."
            )
            raise ValueError(msg)
        return self._records([bag])[0]

    def predict_store(
        self,
        store: FeatureStore | str | Path,
        *,
        split: str | Sequence[str] | None = None,
        scanners: str | Sequence[str] | None = None,
        specimens: str | Sequence[str] | None = None,
        magnifications: str | Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Predict every (selected) slide of a feature store.

        Args:
            store: A :class:`FeatureStore` or its path (opened read-only).
            split: Keep slides of this split (or these); ``None``: all.
            scanners: Keep slides of these scanners.
            specimens: Keep slides of these specimens.
            magnifications: Keep slides at these magnifications.

        Returns:
            One dict per slide, in store order: ``key``, ``specimen_id``,
            ``scanner``, ``magnification``, ``label`` (``None`` when missing),
            ``logits``, ``probabilities``, ``prediction``, ``score`` (the
            probability of ``positive_class``), ``n_instances`` and
            ``attention`` (``(N,)`` or ``None``).

        Raises:
            ValueError: If no slide matches or the feature size differs from the model's.

        """
        dataset = BagDataset(
            store, split, scanners=scanners, specimens=specimens, magnifications=magnifications
        )
        dim = dataset.store.feature_dim
        if dim is not None and dim != self.mil_model.feature_dim:
            msg = (
                f"Store {dataset.store.path} has feature size {dim}, "
                f"the MIL model expects {self.mil_model.feature_dim}."
            )
            raise ValueError(msg)
        records: list[dict[str, Any]] = []
        starts = range(0, len(dataset), self.batch_size)
        for start in tqdm(starts, desc="predict slides", disable=not self.progress):
            items = [dataset[i] for i in range(start, min(start + self.batch_size, len(dataset)))]
            chunk = self._records([item["features"] for item in items])
            for item, record in zip(items, chunk, strict=True):
                label = item["label"]
                record.update(
                    key=item["key"],
                    specimen_id=item["specimen_id"],
                    scanner=item["scanner"],
                    magnification=item["magnification"],
                    label=None if label == MISSING_LABEL else label,
                )
            records.extend(chunk)
        return records

    # ------------------------------------------------------------------ WSIs
    def predict_wsis(
        self,
        wsi_paths: Sequence[str | Path],
        save_dir: str | Path,
        *,
        masks: Sequence[str | Path | np.ndarray | None] | None = None,
        auto_get_mask: bool = False,
    ) -> list[dict[str, Any]]:
        """Extract patch features of WSIs with TIAToolbox's engine and predict each slide.

        ``DeepFeatureExtractor.run(..., patch_mode=False, output_type="zarr")``
        writes one zarr per slide under ``save_dir`` (in ``run_<k>`` folders,
        one per group of distinct file stems; shared with feature extraction:
        :func:`~tia_scanner_robust._tiatoolbox.run_wsi_engine`); each
        slide's ``features`` and ``coordinates`` are then read from its zarr
        (:func:`~tia_scanner_robust._tiatoolbox.read_wsi_features`) and
        form one bag.

        Args:
            wsi_paths: Slide files readable by TIAToolbox.
            save_dir: Folder for the engine's outputs (created; existing
                outputs of the same run folders are overwritten).
            masks: Optional tissue mask per slide: an image file or a binary
                array covering the slide (any size; TIAToolbox scales it),
                ``None`` entries: the whole slide (or ``auto_get_mask``).
            auto_get_mask: Let TIAToolbox compute tissue masks (for slides
                without a mask).

        Returns:
            One dict per slide, in input order: ``path``, ``zarr`` (engine
            output), ``coordinates`` ``(N, 4)`` (patch bounds in pixels at
            the ``ioconfig`` resolution), ``n_instances``, and, when ``N >= 1``, ``logits``,
            ``probabilities``, ``prediction``, ``score`` and ``attention``
            (a slide without any patch gets NaN probabilities, ``prediction``
            and ``attention`` ``None``).

        Raises:
            ValueError: Without a feature model, or when ``masks`` and
                ``wsi_paths`` differ in length.
            FileNotFoundError: If a slide or mask file is missing.

        """
        if self.feature_model is None:
            msg = "predict_wsis needs a feature_model (pass one to MILSlidePredictor)."
            raise ValueError(msg)
        paths = [Path(p) for p in wsi_paths]
        zarrs = run_wsi_engine(
            self.feature_model,
            paths,
            save_dir,
            ioconfig=self.ioconfig,
            batch_size=self.batch_size,
            device=self.device,
            masks=masks,
            auto_get_mask=auto_get_mask,
            progress=self.progress,
        )
        return [self._predict_zarr(path, out) for path, out in zip(paths, zarrs, strict=True)]

    def _predict_zarr(self, path: Path, zarr_path: Path) -> dict[str, Any]:
        """Read one slide's engine output (features, coordinates) and predict it."""
        features, coordinates = read_wsi_features(zarr_path)
        base: dict[str, Any] = {
            "path": path,
            "zarr": zarr_path,
            "coordinates": coordinates,
            "n_instances": int(features.shape[0]),
        }
        if features.shape[0] == 0:
            nan = np.full(self.mil_model.num_classes, np.nan, np.float32)
            return {
                **base,
                "logits": nan,
                "probabilities": nan.copy(),
                "prediction": None,
                "score": float("nan"),
                "attention": None,
            }
        return {**self.predict_bag(features), **base}
