"""SimConsCallback and ScanGenCallback with Lightning's CPU trainer on tiny models."""

from __future__ import annotations

import copy
import importlib
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn

L = pytest.importorskip("lightning")

from tia_scanner_robust._constants import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from tia_scanner_robust.losses import ScanGenLoss, SimConsLoss  # noqa: E402
from tia_scanner_robust.training import ScanGenCallback, SimConsCallback  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec"),
]


# ----------------------------------------------------------------------------- helpers
def jitter(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A batched photometric augmentation: per-image channel gain and offset."""
    b = images.shape[0]
    gain = 0.7 + 0.6 * torch.rand(b, 3, 1, 1, generator=generator)
    offset = 0.1 * torch.rand(b, 3, 1, 1, generator=generator) - 0.05
    return (images * gain.to(images.device) + offset.to(images.device)).clamp(0.0, 1.0)


class TinySegmenter(L.LightningModule):
    """A 2-layer conv net; records the supervised loss and the loss Lightning back-propagates."""

    def __init__(self, *, return_logits: bool = False, supervised_weight: float = 1.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))
        self.return_logits = return_logits
        self.supervised_weight = supervised_weight
        self.records: list[dict[str, Any]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> Any:
        logits = self(batch["image"])
        loss = self.supervised_weight * F.cross_entropy(logits, batch["mask"])
        self.records.append({"batch_idx": batch_idx, "supervised": loss.detach().clone()})
        return {"loss": loss, "logits": logits} if self.return_logits else loss

    def on_before_backward(self, loss: torch.Tensor) -> None:
        self.records[-1]["total"] = loss.detach().clone()

    def on_after_backward(self) -> None:
        self.records[-1]["grads"] = {
            name: p.grad.detach().clone() for name, p in self.named_parameters()
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def crops(he_image: np.ndarray, n: int = 8, size: int = 32) -> list[dict[str, torch.Tensor]]:
    """Real-tissue crops: float (3, H, W) images in [0, 1], masks of the dark pixels."""
    items = []
    for i in range(n):
        tile = he_image[100 + 90 * i : 100 + 90 * i + size, 300 : 300 + size]
        image = torch.from_numpy(np.ascontiguousarray(tile)).permute(2, 0, 1).float() / 255
        mask = torch.from_numpy((tile.mean(-1) < 180).astype(np.int64))
        items.append({"image": image, "mask": mask})
    return items


def loader(items: list[Any], batch_size: int = 4) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=False)


def make_trainer(callbacks: list[Any], max_steps: int = 2, **kwargs: Any) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


@pytest.fixture(scope="module")
def items(he_image: np.ndarray) -> list[dict[str, torch.Tensor]]:
    return crops(he_image)


# ----------------------------------------------------------------------------- optional import
def test_importing_training_does_not_import_lightning() -> None:
    code = (
        "import sys, tia_scanner_robust.training as t; "
        "assert 'SimConsCallback' in t._EXPORTS; "
        "assert 'lightning' not in sys.modules, 'lightning imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_lightning_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "lightning" or name.startswith("lightning."):
            monkeypatch.setitem(sys.modules, name, None)  # "not installed" for the import
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch.callbacks", None)
    monkeypatch.delitem(sys.modules, "tia_scanner_robust.training.lightning")
    with pytest.raises(ImportError, match=r"pip install tia-scanner-robust\[lightning\]"):
        importlib.import_module("tia_scanner_robust.training.lightning")
    monkeypatch.undo()
    importlib.import_module("tia_scanner_robust.training.lightning")


# ----------------------------------------------------------------------------- SimCons
@pytest.mark.parametrize("return_logits", [False, True])
def test_simcons_adds_exactly_lam_times_the_term(items: list[Any], return_logits: bool) -> None:
    torch.manual_seed(0)
    module = TinySegmenter(return_logits=return_logits)
    initial = copy.deepcopy(module.net)
    callback = SimConsCallback(jitter, lam=0.4, seed=3)
    trainer = make_trainer([callback], max_steps=1)
    trainer.fit(module, loader(items))

    # manual: the first batch, the style view drawn from (seed, epoch 0, batch 0, rank 0)
    batch = torch.utils.data.default_collate(items[:4])
    generator = torch.Generator().manual_seed(callback.step_seed(0, 0, 0))
    augmented = jitter(batch["image"], generator=generator)
    expected = SimConsLoss()(initial(batch["image"]), initial(augmented))
    record = module.records[0]
    added = record["total"] - record["supervised"]
    assert float(expected) > 1e-4
    torch.testing.assert_close(added, 0.4 * expected, rtol=1e-5, atol=1e-7)
    metrics = trainer.callback_metrics
    torch.testing.assert_close(metrics["simcons/consistency"], expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        metrics["simcons/consistency_weighted"], 0.4 * expected, rtol=1e-5, atol=1e-7
    )
    assert "training_step" not in module.__dict__  # teardown removed the wrapper


def test_simcons_gradients_reach_the_parameters_through_the_term(items: list[Any]) -> None:
    torch.manual_seed(0)
    plain = TinySegmenter(supervised_weight=0.0)
    make_trainer([], max_steps=1).fit(plain, loader(items))
    assert all(float(g.abs().sum()) == 0 for g in plain.records[0]["grads"].values())

    torch.manual_seed(0)
    module = TinySegmenter(supervised_weight=0.0)
    make_trainer([SimConsCallback(jitter, lam=1.0)], max_steps=1).fit(module, loader(items))
    grads = module.records[0]["grads"]
    assert set(grads) == {name for name, _ in module.named_parameters()}
    assert all(float(g.abs().sum()) > 0 for g in grads.values())


def _fit_weights(items: list[Any], seed: int, style_seed: int) -> dict[str, torch.Tensor]:
    L.seed_everything(seed, verbose=False)
    module = TinySegmenter()
    trainer = make_trainer([SimConsCallback(jitter, lam=0.5, seed=style_seed)], max_steps=3)
    trainer.fit(module, loader(items))
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_simcons_seeded_runs_repeat(items: list[Any]) -> None:
    first = _fit_weights(items, 0, style_seed=1)
    second = _fit_weights(items, 0, style_seed=1)
    other = _fit_weights(items, 0, style_seed=2)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize(("preset", "batched"), [("colorjitter", True), ("hestain", False)])
def test_simcons_preset_on_normalised_batches(items: list[Any], preset: str, batched: bool) -> None:
    callback = SimConsCallback(preset, lam=0.3, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    # presets with a torch version run batched on the device, the others per image on the CPU
    assert (callback._per_image is None) == batched
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    images = (torch.stack([item["image"] for item in items[:4]]) - mean) / std
    a = callback.augment(images, seed=5)
    b = callback.augment(images, seed=5)
    c = callback.augment(images, seed=6)
    assert a.shape == images.shape
    assert a.dtype == images.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert float((a - images).abs().mean()) > 0.01  # normalised like the input, but restyled
    pixels = a * std + mean
    assert float(pixels.min()) >= -1e-5
    assert float(pixels.max()) <= 1 + 1e-5


def test_simcons_tuple_batches_and_classification() -> None:
    class Classifier(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

        def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"logits": self.net(images)}

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            images, labels = batch
            return F.cross_entropy(self(images)["logits"], labels)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    data = [(torch.rand(3, 16, 16), i % 4) for i in range(8)]
    callback = SimConsCallback(jitter, lam=0.5, mode="classification")
    trainer = make_trainer([callback], max_steps=2)
    trainer.fit(Classifier(), loader(data))
    assert float(trainer.callback_metrics["simcons/consistency"]) > 0


def test_two_callbacks_chain_and_unwrap(items: list[Any]) -> None:
    torch.manual_seed(0)
    module = TinySegmenter()
    first = SimConsCallback(jitter, lam=0.2, seed=1, log_prefix="a/")
    second = SimConsCallback(jitter, lam=0.5, seed=2, log_prefix="b/")
    trainer = make_trainer([first, second], max_steps=1)
    trainer.fit(module, loader(items))
    metrics = trainer.callback_metrics
    record = module.records[0]
    expected = metrics["a/consistency_weighted"] + metrics["b/consistency_weighted"]
    torch.testing.assert_close(record["total"] - record["supervised"], expected)
    assert "training_step" not in module.__dict__
    # fitting again (a new trainer, the same callbacks) wraps once more, and cleans up again
    make_trainer([first, second], max_steps=1).fit(module, loader(items))
    assert len(module.records) == 2
    assert "training_step" not in module.__dict__


def test_simcons_refuses_manual_optimisation(items: list[Any]) -> None:
    class Manual(TinySegmenter):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

    with pytest.raises(RuntimeError, match="automatic_optimization=False"):
        make_trainer([SimConsCallback(jitter)], max_steps=1).fit(Manual(), loader(items))


def test_simcons_bad_options_fail_loudly() -> None:
    with pytest.raises(ValueError, match="lam"):
        SimConsCallback(jitter, lam=-1)
    with pytest.raises(ValueError, match="mode"):
        SimConsCallback(jitter, mode="detection")
    with pytest.raises(TypeError, match="style_augmentation"):
        SimConsCallback(42)
    with pytest.raises(TypeError, match=r"\(B, 3, H, W\)"):
        SimConsCallback(jitter).augment(torch.rand(2, 8, 8, 3), seed=0)
    with pytest.raises(ValueError, match="keep the batch shape"):
        SimConsCallback(lambda x: x[:, :, :4]).augment(torch.rand(2, 3, 8, 8), seed=0)


# ----------------------------------------------------------------------------- ScanGen
class TinyMIL(L.LightningModule):
    """Projection g (``embed``) + mean pooling + linear head; records losses and gradients."""

    def __init__(self, dim: int = 8, *, task_weight: float = 1.0) -> None:
        super().__init__()
        self.g = nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Linear(16, 6))
        self.head = nn.Linear(6, 2)
        self.task_weight = task_weight
        self.records: list[dict[str, Any]] = []

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return self.g(features)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        del batch_idx
        pooled = self.embed(batch["features"]).mean(dim=1)
        loss = self.task_weight * F.cross_entropy(self.head(pooled), batch["label"])
        self.records.append({"task": loss.detach().clone()})
        return loss

    def on_before_backward(self, loss: torch.Tensor) -> None:
        self.records[-1]["total"] = loss.detach().clone()

    def on_after_backward(self) -> None:
        self.records[-1]["g_grad"] = sum(float(p.grad.abs().sum()) for p in self.g.parameters())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def bag_items(n_specimens: int = 4, scanners: tuple[str, ...] = ("A", "B")) -> list[dict]:
    rng = np.random.default_rng(0)
    items = []
    for p in range(n_specimens):
        base = rng.normal(size=(5, 8))
        for s, scanner in enumerate(scanners):
            features = base + 0.3 * s + 0.1 * rng.normal(size=base.shape)
            items.append(
                {
                    "features": torch.tensor(features, dtype=torch.float32),
                    "label": p % 2,
                    "specimen_id": f"P{p}",
                    "scanner": scanner,
                }
            )
    return items


def test_scangen_batch_mode_adds_exactly_lam_times_the_term() -> None:
    torch.manual_seed(0)
    module = TinyMIL(task_weight=0.0)
    initial = copy.deepcopy(module)
    callback = ScanGenCallback(lam=0.7, alpha=0.4, margin=0.6, n_subsample=None)
    trainer = make_trainer([callback], max_steps=1)
    trainer.fit(module, loader(bag_items(), batch_size=8))

    batch = torch.utils.data.default_collate(bag_items()[:8])
    z = initial.embed(batch["features"]).mean(dim=1)
    expected = ScanGenLoss(0.4, 0.6)(z, batch["specimen_id"], batch["scanner"])
    record = module.records[0]
    assert float(expected) > 1e-4
    torch.testing.assert_close(record["total"] - record["task"], 0.7 * expected)
    assert record["g_grad"] > 0  # the task loss is zero: every gradient comes from ScanGen
    metrics = trainer.callback_metrics
    torch.testing.assert_close(metrics["scangen/unweighted"], expected)
    assert float(metrics["scangen/n_attract"]) == 8  # 4 specimens x 2 ordered pairs
    assert {"scangen/weighted", "scangen/mean_attract_distance"} <= set(metrics)


def test_scangen_pool_mode_draws_from_the_pool_and_checkpoints(tmp_path: Any) -> None:
    from tia_scanner_robust.data.features import FeatureStore  # noqa: PLC0415

    store = FeatureStore(tmp_path / "pool.zarr")
    rng = np.random.default_rng(1)
    for p in range(4):
        for scanner in ("A", "B", "C"):
            store.write_slide(f"P{p}", scanner, rng.random((6, 8)), split="scangen")
    torch.manual_seed(0)
    module = TinyMIL(task_weight=0.0)
    callback = ScanGenCallback(
        tmp_path / "pool.zarr", lam=0.5, split="scangen", batch_size=4, n_subsample=3, seed=2
    )
    trainer = make_trainer([callback], max_steps=2)
    trainer.fit(module, loader(bag_items(), batch_size=4))
    assert callback.hook.draws == 2
    assert all(r["g_grad"] > 0 for r in module.records)
    added = module.records[-1]["total"] - module.records[-1]["task"]
    torch.testing.assert_close(added, 0.5 * trainer.callback_metrics["scangen/unweighted"])
    assert float(trainer.callback_metrics["scangen/n_repel"]) > 0

    # the generator state travels through Lightning checkpoints
    state = callback.state_dict()
    fresh = ScanGenCallback(
        tmp_path / "pool.zarr", lam=0.5, split="scangen", batch_size=4, n_subsample=3, seed=2
    )
    fresh.load_state_dict(state)
    fresh._init_generators(0)  # what setup does on rank 0
    assert fresh.hook.draws == 2
    assert fresh.hook.sample()["specimen_id"] == callback.hook.sample()["specimen_id"]


def test_scangen_contract_errors() -> None:
    with pytest.raises(ValueError, match="pool"):
        ScanGenCallback(granularity="patch")
    with pytest.raises(ValueError, match="alpha"):
        ScanGenCallback(alpha=2.0)

    class NoEmbed(TinyMIL):
        embed = None  # type: ignore[assignment]

        def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
            del batch_idx
            loss = F.cross_entropy(self.head(self.g(batch["features"]).mean(1)), batch["label"])
            self.records.append({"task": loss.detach().clone()})
            return loss

    with pytest.raises(TypeError, match="embed"):
        make_trainer([ScanGenCallback()], max_steps=1).fit(NoEmbed(), loader(bag_items()))
    callback = ScanGenCallback(embed="g", n_subsample=2)  # an attribute path works instead
    trainer = make_trainer([callback], max_steps=1)
    trainer.fit(NoEmbed(), loader(bag_items()))
    assert float(trainer.callback_metrics["scangen/n_attract"]) == 4  # 2 specimens x 2 scanners


# ----------------------------------------------------------------------------- DDP
class RankRecordingJitter:
    """Batched augmentation that writes the seed of every view it draws, per rank."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        with (Path(self.folder) / f"rank{rank}.txt").open("a", encoding="utf-8") as handle:
            handle.write(f"{generator.initial_seed()}\n")
        return jitter(images, generator=generator)


def test_simcons_ddp_two_cpu_processes(items: list[Any], tmp_path: Any) -> None:
    torch.manual_seed(0)
    module = TinySegmenter()
    callback = SimConsCallback(RankRecordingJitter(str(tmp_path)), lam=0.3, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(
            accelerator="cpu",
            devices=2,
            strategy="ddp_fork",
            max_steps=2,
            callbacks=[callback],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(module, loader(items, batch_size=2))
    seeds = {r: (tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)}
    assert len(seeds[0]) == len(seeds[1]) == 2
    assert set(seeds[0]).isdisjoint(seeds[1])  # ranks draw their own views (global_rank)
    assert seeds[1][0] == str(callback.step_seed(0, 0, 1))
    assert "simcons/consistency" in trainer.callback_metrics


# ------------------------------------------------------------------ hooks under other trainers
def test_hooks_read_other_trainers_explicitly_or_fail_loudly(tmp_path: Any) -> None:
    """Issue 12, part 4: SimConsHook/ScanGenHook under a trainer that is not this project's."""
    from types import SimpleNamespace  # noqa: PLC0415

    from tia_scanner_robust.data.features import FeatureStore  # noqa: PLC0415
    from tia_scanner_robust.training import ScanGenHook, SimConsHook  # noqa: PLC0415
    from tia_scanner_robust.training.hooks import trainer_rank  # noqa: PLC0415

    lightning_trainer = make_trainer([], max_steps=1)  # has global_rank, no rank/config/log_scalar
    assert trainer_rank(lightning_trainer) == lightning_trainer.global_rank == 0
    # the rank is read from Lightning's global_rank, not defaulted to 0
    hook = SimConsHook("colorjitter", seed=0)
    on_rank1 = hook._step_seed(SimpleNamespace(global_rank=1, global_step=3))
    assert on_rank1 == hook._step_seed(SimpleNamespace(rank=1, global_step=3))
    assert on_rank1 != hook._step_seed(SimpleNamespace(global_rank=0, global_step=3))
    # options that default to this Trainer's config must be given explicitly
    batch = {
        "image": torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8),
        "mask": torch.zeros(2, 8, 8, dtype=torch.long),
    }
    with pytest.raises(AttributeError, match=r"pass seed=\.\.\."):
        SimConsHook("colorjitter").on_batch_start(lightning_trainer, batch)
    built = hook.on_batch_start(lightning_trainer, batch)
    logits = torch.randn(4, 2, 8, 8)
    with pytest.raises(AttributeError, match=r"pass mode=\.\.\."):
        hook.on_loss(lightning_trainer, built, logits, {})
    # logging is never skipped without a word: log_fn, or an error saying to pass one
    hook = SimConsHook("colorjitter", seed=0, mode="segmentation")
    with pytest.raises(AttributeError, match="log_fn"):
        hook.on_loss(lightning_trainer, built, logits, {})
    logged: dict[str, Any] = {}
    hook = SimConsHook(
        "colorjitter", seed=0, mode="segmentation", log_fn=lambda n, v: logged.update({n: v})
    )
    losses = hook.on_loss(lightning_trainer, built, logits, {})
    torch.testing.assert_close(losses["consistency"], 0.3 * logged["consistency_unweighted"])

    store = FeatureStore(tmp_path / "pool.zarr")
    rng = np.random.default_rng(1)
    for p in range(4):
        for scanner in ("A", "B"):
            store.write_slide(f"P{p}", scanner, rng.random((6, 8)), split="scangen")
    foreign = SimpleNamespace(model=TinyMIL(), device=torch.device("cpu"))
    with pytest.raises(AttributeError, match=r"pass seed=\.\.\."):
        ScanGenHook(store, split="scangen", batch_size=4).on_fit_start(foreign)
    scangen = ScanGenHook(store, split="scangen", batch_size=4, seed=0)
    with pytest.raises(AttributeError, match="log_fn"):
        scangen.on_loss(foreign, {}, None, {})
    logged.clear()
    scangen = ScanGenHook(
        store, split="scangen", batch_size=4, seed=0, log_fn=lambda n, v: logged.update({n: v})
    )
    losses = scangen.on_loss(foreign, {}, None, {})
    assert {"scangen_unweighted", "scangen/n_attract"} <= set(logged)
    assert isinstance(logged["scangen/n_attract"], int)  # numbers for a foreign logger
    torch.testing.assert_close(losses["scangen"], logged["scangen_unweighted"])
