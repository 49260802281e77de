"""Feasibility check: does ScanGen cut scanner CoV on the synthetic FM features?

A plain PyTorch loop (not the plugin's trainer) training GAP + g with
CE only (lambda = 0, the baseline that keeps g) versus CE + lambda * ScanGen,
on features from :mod:`tia_scanner_robust.data.synthetic_features`:

- task pool D_task: labelled specimens, each scanned once by one of the
  ``--task-scanners`` first scanners (TCGA/CPTAC-like: few scanner types);
- multi-scanner pool: specimens scanned by every scanner, split by specimen
  into ScanGen-train / validation / test;
- test: held-out specimens under all scanners: AUC over all test slides and
  scanner CoV = mean_n sigma_n / |mu_n| of the positive-class probability
  (population std, METHODS.md 1.3).

Usage::

    python benchmarks/scangen_synthetic_check.py --seeds 0 1 2 3 4

"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from sklearn.metrics import roc_auc_score

from tia_scanner_robust.data.features import ScanGenBatchSampler
from tia_scanner_robust.data.synthetic_features import SyntheticFeatureWorld
from tia_scanner_robust.losses.scangen import ScanGenLoss, slide_embeddings
from tia_scanner_robust.models.mil import MILModel, subsample_bags
from tia_scanner_robust.seeding import seed_everything


def scanner_cov(probabilities: np.ndarray, specimens: list[str], eps: float = 1e-6) -> float:
    """Mean over specimens of std / |mean| across their scans (ddof=0)."""
    values = []
    specimen_array = np.asarray(specimens)
    for specimen in dict.fromkeys(specimens):
        p = probabilities[specimen_array == specimen]
        if abs(p.mean()) >= eps:
            values.append(p.std() / abs(p.mean()))
    return float(np.mean(values))


def build_data(seed: int, args: argparse.Namespace) -> dict:
    world = SyntheticFeatureWorld(feature_dim=args.dim, seed=1000 + seed)
    task = world.sample(
        args.task_specimens,
        args.patches,
        scanners=world.scanners[: args.task_scanners],
        scanners_per_specimen=1,
        specimen_prefix="T",
        seed=2000 + seed,
    )
    multi = world.sample(args.multi_specimens, args.patches, specimen_prefix="M", seed=3000 + seed)
    specimens = multi.specimens
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(specimens))
    n_train = int(0.6 * len(specimens))
    train_specimens = {specimens[i] for i in order[:n_train]}
    train_idx = [i for i, s in enumerate(multi.specimen_ids) if s in train_specimens]
    test_idx = [i for i, s in enumerate(multi.specimen_ids) if s not in train_specimens]
    return {"task": task, "scangen": multi.subset(train_idx), "test": multi.subset(test_idx)}


def train_and_eval(data: dict, lam: float, seed: int, args: argparse.Namespace) -> dict:
    seed_everything(seed)
    task, scangen, test = data["task"], data["scangen"], data["test"]
    task_x = torch.from_numpy(np.stack(task.features))  # equal bag sizes here
    task_y = torch.from_numpy(task.labels)
    sg_x = torch.from_numpy(np.stack(scangen.features))
    model = MILModel(args.dim, 2, "gap", projection_hidden=args.hidden, aggregator_kwargs={"hidden_dim": 64})
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
    loss_fn = ScanGenLoss(alpha=args.alpha, margin=args.margin)
    sampler = ScanGenBatchSampler(
        scangen.specimen_ids, scangen.scanners, batch_size=args.sg_batch, scanners_per_specimen=2, seed=seed
    )
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(args.steps):
        idx = torch.from_numpy(rng.choice(len(task_y), args.task_batch, replace=False))
        logits = model(task_x[idx])["logits"]
        loss = F.cross_entropy(logits, task_y[idx])
        if lam > 0:
            batch = sampler.sample_batch(rng)
            feats, mask = subsample_bags(sg_x[batch], None, args.subsample, gen)
            z = slide_embeddings(model.embed(feats), mask)
            loss = loss + lam * loss_fn(
                z, [scangen.specimen_ids[i] for i in batch], [scangen.scanners[i] for i in batch]
            )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    probs = model.predict_bags(test.features, batch_size=64)["probabilities"][:, 1]
    return {
        "auc": roc_auc_score(test.labels, probs),
        "cov": scanner_cov(probs, test.specimen_ids),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lam", type=float, default=0.5)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--margin", type=float, default=0.5)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--patches", type=int, default=64)
    parser.add_argument("--subsample", type=int, default=32)
    parser.add_argument("--task-specimens", type=int, default=300)
    parser.add_argument("--task-scanners", type=int, default=2)
    parser.add_argument("--multi-specimens", type=int, default=80)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--task-batch", type=int, default=16)
    parser.add_argument("--sg-batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    start = time.perf_counter()
    for seed in args.seeds:
        data = build_data(seed, args)
        base = train_and_eval(data, 0.0, seed, args)
        ours = train_and_eval(data, args.lam, seed, args)
        rows.append((base, ours))
        print(
            f"seed {seed}: baseline AUC {base['auc']:.3f} CoV {base['cov']:.3f} | "
            f"ScanGen AUC {ours['auc']:.3f} CoV {ours['cov']:.3f} "
            f"({100 * (ours['cov'] / base['cov'] - 1):+.1f}%)"
        )
    b_auc = np.mean([b["auc"] for b, _ in rows])
    o_auc = np.mean([o["auc"] for _, o in rows])
    b_cov = np.mean([b["cov"] for b, _ in rows])
    o_cov = np.mean([o["cov"] for _, o in rows])
    print(
        f"mean over {len(rows)} seeds: AUC {b_auc:.3f} -> {o_auc:.3f} ({o_auc - b_auc:+.3f}); "
        f"CoV {b_cov:.3f} -> {o_cov:.3f} ({100 * (o_cov / b_cov - 1):+.1f}%); "
        f"{time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
