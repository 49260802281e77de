"""Scanner-consistency evaluation of a model through TIAToolbox's own engines.

:class:`ScannerConsistencyEvaluator` runs a model on every scanner's images of
a :class:`~tia_scanner_robust.data.paired.PairedCollection` with the TIAToolbox
engine that fits the task, aligns the outputs by specimen (and location), and
computes the SCORPION / ScanGen consistency metrics:

==================  ========================  ===========================
task                engine                    pair scores
==================  ========================  ===========================
``segmentation``    ``SemanticSegmentor``     paired Dice
``classification``  ``PatchPredictor``        label agreement, ``|dp|``
``embedding``       ``DeepFeatureExtractor``  cosine, top-k retrieval
==================  ========================  ===========================

Patch datasets (PNG/JPEG tiles) run in patch mode: each scanner's images are
stacked in specimen order and passed to the engine's ``run()``, in chunks of
``chunk_size`` specimens so that memory stays bounded
(:mod:`~tia_scanner_robust.engines.patch`). Whole-slide images run in WSI mode
(``patch_mode=False``, ``output_type="zarr"``) once per scanner; the
per-region predictions are then read back lazily, block by block, from the
engines' zarr outputs (:mod:`~tia_scanner_robust.engines.wsi`). What differs
between tasks is one :class:`~tia_scanner_robust.engines.tasks.TaskSpec` each
(:data:`~tia_scanner_robust.engines.tasks.TASK_SPECS`).

Every number is kept in an :class:`~tia_scanner_robust.engines.results.EvaluationResult`;
:mod:`tia_scanner_robust.report` turns it into ``report.json`` and a
self-contained ``report.html``.

Examples:
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from tiatoolbox.data import stain_norm_target
    >>> from tia_scanner_robust._io import atomic_write_image
    >>> from tia_scanner_robust.data.paired import PairedCollection, PairedSample
    >>> root = Path(tempfile.mkdtemp())
    >>> tile = stain_norm_target()[:96, :96]
    >>> samples = []
    >>> for scanner, image in (("A", tile), ("B", tile), ("C", tile[..., ::-1].copy())):
    ...     path = atomic_write_image(root / f"{scanner}.png", image)
    ...     samples.append(PairedSample("s/1", scanner, path=path))
    >>> evaluator = ScannerConsistencyEvaluator("builtin", verbose=False)
    >>> result = evaluator.evaluate(PairedCollection(samples), root / "out")
    >>> result.consistency["dice"].pairs[("A", "B")]
    1.0
    >>> result.min_pair
    ('A', 'C')

"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from tia_scanner_robust.engines.base import SIZE_POLICIES, versions
from tia_scanner_robust.engines.checks import ResolutionLog
from tia_scanner_robust.engines.patch import PatchModeEvaluator
from tia_scanner_robust.engines.results import EvaluationResult, ExamplePair, sample_id
from tia_scanner_robust.engines.tasks import PRIMARY_SCORE, TASK_ENGINES, TASK_SPECS
from tia_scanner_robust.engines.wsi import WSIModeEvaluator
from tia_scanner_robust.seeding import seed_everything

if TYPE_CHECKING:
    from tia_scanner_robust.data.paired import PairedCollection

__all__ = [
    "PRIMARY_SCORE",
    "SIZE_POLICIES",
    "TASK_ENGINES",
    "TASK_SPECS",
    "EvaluationResult",
    "ExamplePair",
    "ScannerConsistencyEvaluator",
    "sample_id",
]


class ScannerConsistencyEvaluator(PatchModeEvaluator, WSIModeEvaluator):
    """Measure how much a model's outputs change between scanners.

    Args:
        model: What to evaluate: ``"builtin"`` (the offline colour-deconvolution
            segmenter, default), a TIAToolbox pretrained name (weights from the
            Hugging Face hub, or from ``weights``), a checkpoint file written by
            the plugin, or an ``nn.Module`` (a TIAToolbox ``ModelABC``). See
            :func:`~tia_scanner_robust.engines.loading.resolve_model`.
        task: ``"segmentation"``, ``"classification"`` or ``"embedding"``.
        weights: Local weights for a pretrained name or module.
        ioconfig: TIAToolbox IO config. Default: the model's own (pretrained
            models, the builtin model, models with an ``ioconfig`` attribute);
            in patch mode a config with each image group's size is derived
            from it (or built with ``baseline`` units when there is none).
        batch_size: Patches per forward pass.
        num_workers: Data-loader workers of the engine.
        device: Torch device (``"cpu"``, ``"cuda"``...).
        chunk_size: Patch mode: specimens per engine call (bounds memory).
            ``None`` runs every specimen of a scanner in one call.
        size_policy: Patch mode with images of several sizes (or not the
            model's input size): ``"group"`` runs one engine call per image
            size (fully convolutional models), ``"resize"`` resizes every image
            to the IO config's ``patch_input_shape``; ``"auto"`` (default)
            groups for models declaring ``fully_convolutional = True`` (the
            builtin model) and resizes otherwise.
        num_classes: Segmentation: number of classes (default: from the
            model's ``class_dict``, else inferred).
        ignore_background: Segmentation: skip class 0 in Dice (paired and
            against ground truth).
        cov_class: Segmentation: the class whose pixel fraction is the
            per-specimen scalar of the CoV (default: the class whose name
            contains "nucle", else 1).
        target_map: Segmentation: ``{predicted label: ground-truth label}``
            applied to predictions before scoring against masks (e.g.
            ``{0: 0, 1: 0, 2: 1}`` scores the builtin model's nuclei against a
            binary nuclei mask). Default: identity; for the builtin model with
            binary masks, nuclei vs the rest.
        positive_class: Classification: class whose probability is the
            per-specimen scalar of the CoV (and the score of the AUC for two
            classes).
        ks: Embedding: top-k values of the retrieval accuracy.
        n_examples: Worst-pair examples kept for the report.
        save_predictions: Keep per-scanner predictions (zarr) in ``out_dir``.
        auto_get_mask: WSI mode without regions: restrict the engine to
            TIAToolbox's automatic tissue mask.
        seed: Seed for every random number generator (and the bootstrap).
        verbose: Show progress bars.
        empty_pairs: Segmentation: how an empty-vs-empty sample (no
            foreground in either map) counts in paired Dice: ``"exclude"``
            (default: left out, counted in ``n_empty``), ``"one"``
            (SCORPION: Dice 1) or ``"nan"`` (the pair score becomes NaN).
        n_resamples: Bootstrap resamples of the 95% intervals over specimens.
        mpp: Resolution (µm/px) the model is fed at. WSI mode: the engine reads
            at it. Patch mode: an image whose sample ``mpp`` differs is
            rescaled to it (and warned about). ``None``: the IO config's.
        patch_size: The model's patch size in pixels (replaces the IO
            config's ``patch_input_shape``, its stride, and its output shape
            when equal): WSI mode reads such patches; patch mode resizes images
            to it under ``size_policy="resize"``.

    Model outputs larger than their input are resized (nearest) to the
    input grid; smaller ones cover the input's centre (TIAToolbox's
    ``UNetModel``) and are compared there (masks are centre-cropped to match).
    NaN or inf model outputs stop the evaluation with an error naming the
    scanner and the sample. A model whose outputs do not fit ``task`` (a
    segmenter asked to classify) is refused before inference.

    Raises:
        ValueError: On an unknown task or policy, or a model that cannot be resolved.

    Examples:
        >>> ScannerConsistencyEvaluator("builtin").task
        'segmentation'
        >>> ScannerConsistencyEvaluator("builtin", task="regression")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Unknown task 'regression'; valid values: segmentation, ...

    """

    # ------------------------------------------------------------- evaluate
    def evaluate(self, collection: PairedCollection, out_dir: str | Path) -> EvaluationResult:
        """Run the model on every scanner and compute the consistency metrics.

        Args:
            collection: A paired collection (always complete: every specimen
                has every scanner) of patches or of WSIs, with at least two scanners.
            out_dir: Folder for saved predictions and engine outputs (created).

        Returns:
            An :class:`EvaluationResult` (write it with
            :func:`tia_scanner_robust.report.write_report`).

        Raises:
            TypeError: If ``collection`` is not a ``PairedCollection``.
            ValueError: If it has fewer than two scanners or mixes patches and WSIs.

        """
        from tia_scanner_robust.data.paired import PairedCollection  # noqa: PLC0415

        if not isinstance(collection, PairedCollection):
            msg = f"collection must be a PairedCollection, got {type(collection).__name__}."
            raise TypeError(msg)
        if len(collection.scanners) < 2:
            msg = (
                f"collection has {len(collection.scanners)} scanner(s) "
                f"{collection.scanners}; consistency needs at least 2."
            )
            raise ValueError(msg)
        kinds = {s.is_wsi for s in collection}
        if len(kinds) != 1:
            msg = "collection mixes patch images and whole-slide images; evaluate them separately."
            raise ValueError(msg)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(self.seed)
        self._timings = defaultdict(float)
        self._resolution = ResolutionLog()
        self._output_rules = set()
        start = time.perf_counter()
        if kinds.pop():
            result = self._evaluate_wsi(collection, out_dir)
        else:
            result = self._evaluate_patches(collection, out_dir)
        self._timings["total_seconds"] = time.perf_counter() - start
        result.timings = dict(self._timings)
        result.versions = versions()
        result.config = self.config()
        result.out_dir = out_dir
        return result
