"""Tests of the ScanGen trainer hook: loss composition, lam = 0, resume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils._python_dispatch import TorchDispatchMode

from tia_scanner_robust.data.features import BagDataset, FeatureStore, collate_bags
from tia_scanner_robust.losses.scangen import ScanGenLoss, slide_embeddings
from tia_scanner_robust.models.mil import MILModel, subsample_bags
from tia_scanner_robust.training.hooks import create_hook
from tia_scanner_robust.training.mil import MILBagModule, MILTrainer
from tia_scanner_robust.training.scangen import ScanGenHook

DIM = 6
N_PATCHES = 5


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    store = FeatureStore(tmp_path / "f.zarr", mode="w")
    for p, s in itertools.product(range(6), ("A", "B", "C")):
        feats = rng.normal(size=(N_PATCHES, DIM)) + p
        store.write_slide(f"M{p}", s, feats, label=p % 2, split="scangen")
    for p in range(8):
        feats = rng.normal(size=(3 + p % 3, DIM))
        store.write_slide(f"T{p}", "A", feats, label=p % 2, split="train")
    return store


def reference_scangen(z, specimens, scanners, alpha, margin):
    """Hand-written ScanGen loss (explicit loops over ordered pairs)."""
    z = z.double()
    total, count = 0.0, 0
    for i, j in itertools.permutations(range(len(specimens)), 2):
        d = 1 - F.cosine_similarity(z[i], z[j], dim=0)
        if specimens[i] == specimens[j] and scanners[i] != scanners[j]:
            total += alpha * d**2
            count += 1
        elif scanners[i] == scanners[j] and specimens[i] != specimens[j]:
            total += (1 - alpha) * torch.clamp(margin - d, min=0) ** 2
            count += 1
    return total / count


def make_trainer(store, hooks, tmp_path, **config):
    torch.manual_seed(0)
    model = MILBagModule(MILModel(DIM, projection_hidden=4, aggregator_kwargs={"hidden_dim": 4}))
    cfg = {
        "epochs": 2,
        "batch_size": 4,
        "task": "classification",
        "image_key": "features",
        "target_key": "label",
        "monitor": "val_loss",
        "mode": "min",
        "progress": False,
        "device": "cpu",
        "output_dir": str(tmp_path / "run"),
        "seed": 3,
        **config,
    }
    return MILTrainer(
        model, BagDataset(store, "train"), config=cfg, hooks=hooks, collate_fn=collate_bags
    )


def task_batch(store):
    return collate_bags(list(BagDataset(store, "train"))[:4])


def test_total_is_ce_plus_lambda_scangen(store, tmp_path):
    lam, alpha, margin = 0.7, 0.6, 0.8
    kwargs = {
        "lam": lam,
        "alpha": alpha,
        "margin": margin,
        "split": "scangen",
        "batch_size": 6,
        "scanners_per_specimen": 3,
        "n_subsample": 64,
        "seed": 5,
    }
    hook = ScanGenHook(store, **kwargs)
    trainer = make_trainer(store, [hook], tmp_path)
    batch = task_batch(store)
    total, losses = trainer.compute_losses(batch)
    # reference: the same draw from a twin hook, embeddings computed by hand
    twin = ScanGenHook(store, **kwargs)
    sg = twin.sample()
    mil = trainer.model.mil
    with torch.no_grad():
        logits = mil(batch["features"], batch["mask"])["logits"]
        ce = F.cross_entropy(logits, batch["label"])
        z = torch.stack(
            [
                mil.projection(f[m]).mean(dim=0)
                for f, m in zip(sg["features"], sg["mask"], strict=True)
            ]
        )
    ref = reference_scangen(z, sg["specimen_id"], sg["scanner"], alpha, margin)
    assert set(losses) == {"supervised", "scangen"}
    assert losses["supervised"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert losses["scangen"].item() == pytest.approx(lam * ref.item(), rel=1e-4)
    assert total.item() == pytest.approx(ce.item() + lam * ref.item(), rel=1e-4)
    # the ScanGen term trains g only: no gradient reaches the aggregator/classifier
    losses["scangen"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mil.projection.parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in mil.aggregator.parameters())


def test_lambda_zero_leaves_ce(store, tmp_path):
    hook = create_hook("scangen", pool=store, lam=0.0, split="scangen", batch_size=4, seed=0)
    trainer = make_trainer(store, [hook], tmp_path)
    batch = task_batch(store)
    total, losses = trainer.compute_losses(batch)
    with torch.no_grad():
        logits = trainer.model.mil(batch["features"], batch["mask"])["logits"]
    assert set(losses) == {"supervised"}
    assert total.item() == pytest.approx(F.cross_entropy(logits, batch["label"]).item(), rel=1e-6)
    assert hook.draws == 0


def test_hook_state_round_trip(store):
    hook = ScanGenHook(store, split="scangen", batch_size=4, seed=1)
    hook.sample()
    state = hook.state_dict()
    expected = hook.sample()
    other = ScanGenHook(store, split="scangen", batch_size=4, seed=99)
    other.load_state_dict(state)
    got = other.sample()
    assert got["specimen_id"] == expected["specimen_id"]
    assert got["scanner"] == expected["scanner"]
    assert other.draws == hook.draws


def test_resume_matches_uninterrupted_run(store, tmp_path):
    def hook():
        return ScanGenHook(store, lam=1.0, split="scangen", batch_size=4, n_subsample=2)

    full = make_trainer(store, [hook()], tmp_path / "full")
    full.fit()
    part = make_trainer(store, [hook()], tmp_path / "part")
    assert part.fit(stop_at_step=3).stopped_early
    resumed = make_trainer(store, [hook()], tmp_path / "part")
    resumed.fit(resume_from="auto")
    for a, b in zip(
        full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b)
    assert resumed.hooks[0].draws == full.hooks[0].draws == full.global_step
    assert "train_scangen" in full.history[-1]


def test_bad_arguments(store):
    with pytest.raises(ValueError, match="lam"):
        ScanGenHook(store, lam=-1.0, split="scangen")
    with pytest.raises(ValueError, match="granularity"):
        ScanGenHook(store, granularity="tile", split="scangen")
    with pytest.raises(ValueError, match="cannot fill"):
        ScanGenHook(store, split="train", batch_size=4)


@pytest.fixture
def ragged_store(tmp_path):
    """Bags of 3-9 patches: with n_subsample = 6 some bags are short."""
    rng = np.random.default_rng(1)
    store = FeatureStore(tmp_path / "r.zarr", mode="w")
    for p, s in itertools.product(range(5), ("A", "B")):
        n = 3 + (2 * p + len(s) + (s == "B") * 3) % 7
        store.write_slide(f"R{p}", s, rng.normal(size=(n, DIM)) + p, split="scangen")
    return store


@pytest.mark.parametrize("cache", [True, False])
def test_gathering_only_kept_rows_matches_collate_then_subsample(ragged_store, cache):
    """The hook's draw equals sample() + subsample_bags + slide_embeddings (same stream)."""
    kwargs = {"split": "scangen", "batch_size": 6, "n_subsample": 6, "seed": 2, "cache": cache}
    hook, twin = ScanGenHook(ragged_store, **kwargs), ScanGenHook(ragged_store, **kwargs)
    model = MILModel(DIM, projection_hidden=4)
    short = 0
    for _ in range(4):
        loss, stats = hook.scangen_term(model)
        sg = twin.sample()
        feats, kept = subsample_bags(sg["features"], sg["mask"], 6, twin._generator)
        short += int((~kept).any(dim=1).sum())
        with torch.no_grad():
            z = slide_embeddings(model.embed(feats), kept)
        ref, ref_stats = ScanGenLoss()(z, sg["specimen_id"], sg["scanner"], return_stats=True)
        assert loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-7)
        assert stats.n_attract == ref_stats.n_attract
        assert stats.n_repel == ref_stats.n_repel
        assert stats.mean_repel_distance == pytest.approx(ref_stats.mean_repel_distance, rel=1e-5)
    assert short > 0  # the padded (masked) path was exercised
    assert hook.draws == twin.draws == 4


def test_cache_is_one_flat_tensor_on_the_cache_device(ragged_store):
    hook = ScanGenHook(ragged_store, split="scangen", batch_size=4, seed=0, cache_device="cpu")
    model = MILModel(DIM, projection_hidden=4)
    assert hook._flat is None  # loaded at the first draw, not at construction
    first, _ = hook.scangen_term(model)
    sizes = [b["features"].shape[0] for b in hook.pool]
    assert tuple(hook._flat.shape) == (sum(sizes), DIM)
    assert hook._flat.device == torch.device("cpu")
    for i in range(len(hook.pool)):
        torch.testing.assert_close(hook._bag(i), hook.pool[i]["features"])
    uncached = ScanGenHook(ragged_store, split="scangen", batch_size=4, seed=0, cache=False)
    torch.testing.assert_close(uncached.scangen_term(model)[0], first)
    assert uncached._flat is None


def test_on_loss_logs_stats_lazily_or_as_numbers(store, tmp_path):
    """Lazy trainer: tensors (no read-back in the hook); other trainers: finite numbers."""

    class NumbersTrainer:
        device = torch.device("cpu")

        class config:  # noqa: N801
            seed = 0

        def __init__(self, model):
            self.model, self.logged = model, {}

        def log_scalar(self, name, value):
            self.logged[name] = value

    hook = ScanGenHook(store, lam=0.5, split="scangen", batch_size=4, seed=1)
    trainer = make_trainer(store, [hook], tmp_path, optimizer="sgd")
    losses = hook.on_loss(trainer, {}, None, {})
    pending = trainer._step_scalars
    assert all(isinstance(v, torch.Tensor) for v in pending.values())
    assert {"scangen_unweighted", "scangen/n_attract", "scangen/loss"} <= set(pending)
    assert losses["scangen"].item() == pytest.approx(0.5 * pending["scangen/loss"].item())
    numbers = NumbersTrainer(trainer.model)
    twin = ScanGenHook(store, lam=0.5, split="scangen", batch_size=4, seed=1)
    twin.on_loss(numbers, {}, None, {})
    logged = {k: v for k, v in numbers.logged.items() if k != "scangen_unweighted"}
    assert all(isinstance(v, (int, float)) for v in logged.values())
    assert logged["scangen/n_attract"] == pending["scangen/n_attract"].item()
    assert logged["scangen/loss"] == pytest.approx(pending["scangen/loss"].item())


def test_hook_adds_no_read_back_to_the_step(store, tmp_path):
    """ScanGen's stats are read back with the step's losses: no extra item()/float()."""

    class ReadBacks(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default):
                type(self).count += 1
            return func(*args, **(kwargs or {}))

    counts = {}
    for name, hooks in (
        ("ce", []),
        ("scangen", [ScanGenHook(store, lam=1.0, split="scangen", batch_size=4, seed=0)]),
    ):
        trainer = make_trainer(store, hooks, tmp_path / name, optimizer="sgd")
        batch = task_batch(store)
        trainer.train_step(dict(batch))  # first draw fills the cache
        ReadBacks.count = 0
        with ReadBacks():
            logged = trainer.train_step(dict(batch))
        counts[name] = ReadBacks.count
        if name == "scangen":
            assert logged["scangen/n_attract"] > 0
            assert logged["scangen"] == pytest.approx(logged["scangen_unweighted"])
    assert counts["scangen"] == counts["ce"]
