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
import json
import multiprocessing
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
    world = SyntheticFeatureWorld(feature_dim=args.dim, seed=1000 + seed, **json.loads(args.world))
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


def scangen_batch(model, sampler, scangen, sg_x, rng, gen, args):
    """Embeddings and ids of one ScanGen batch at the chosen granularity."""
    batch = sampler.sample_batch(rng)
    specimens = [scangen.specimen_ids[i] for i in batch]
    scanners = [scangen.scanners[i] for i in batch]
    if args.granularity == "slide":
        feats, mask = subsample_bags(sg_x[batch], None, args.subsample, gen)
        return slide_embeddings(model.embed(feats), mask), specimens, scanners
    # patch granularity: the same (registered) patch locations in every scan of a specimen
    n_patches = sg_x.shape[1]
    locations = {
        p: rng.choice(n_patches, args.patches_per_sample, replace=False) for p in set(specimens)
    }
    index = torch.tensor(np.stack([locations[p] for p in specimens]))  # (B, k)
    feats = sg_x[batch].gather(1, index[..., None].expand(-1, -1, sg_x.shape[-1]))
    z = model.embed(feats).flatten(0, 1)
    ids = [f"{p}@{loc}" for p in specimens for loc in locations[p]]
    return z, ids, [s for s in scanners for _ in range(args.patches_per_sample)]


def train_and_eval(data: dict, lam: float, seed: int, args: argparse.Namespace) -> dict:
    seed_everything(seed)
    task, scangen, test = data["task"], data["scangen"], data["test"]
    task_x = torch.from_numpy(np.stack(task.features))  # equal bag sizes here
    task_y = torch.from_numpy(task.labels)
    sg_x = torch.from_numpy(np.stack(scangen.features))
    model = MILModel(
        args.dim, 2, "gap", projection_hidden=args.hidden, aggregator_kwargs={"hidden_dim": 64}
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
    loss_fn = ScanGenLoss(
        alpha=args.alpha, margin=args.margin, squared=not args.plain, granularity=args.granularity
    )
    sampler = ScanGenBatchSampler(
        scangen.specimen_ids,
        scangen.scanners,
        batch_size=args.sg_batch,
        scanners_per_specimen=args.spp,
        seed=seed,
    )
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(args.steps):
        idx = torch.from_numpy(rng.choice(len(task_y), args.task_batch, replace=False))
        logits = model(task_x[idx])["logits"]
        loss = F.cross_entropy(logits, task_y[idx])
        if lam > 0:
            z, specimens, scanners = scangen_batch(model, sampler, scangen, sg_x, rng, gen, args)
            loss = loss + lam * loss_fn(z, specimens, scanners)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    out = model.predict_bags(test.features, batch_size=64)
    probs = out["probabilities"][:, 1]
    with torch.no_grad():
        z = model.embed(torch.from_numpy(np.stack(test.features))).mean(dim=1)
        _, stats = loss_fn(z, test.specimen_ids, test.scanners, return_stats=True)
    logit = out["logits"][:, 1] - out["logits"][:, 0]
    spec = np.asarray(test.specimen_ids)
    logit_sd = np.mean([logit[spec == p].std() for p in dict.fromkeys(test.specimen_ids)])
    return {
        "auc": roc_auc_score(test.labels, probs),
        "cov": scanner_cov(probs, test.specimen_ids),
        "d_att": stats.mean_attract_distance,
        "d_rep": stats.mean_repel_distance,
        "logit_sd": float(logit_sd),
    }


def run_seed(job: tuple[int, argparse.Namespace]) -> tuple[int, dict, dict]:
    seed, args = job
    torch.set_num_threads(1)
    data = build_data(seed, args)
    base = train_and_eval(data, 0.0, seed, args)
    return seed, base, {lam: train_and_eval(data, lam, seed, args) for lam in args.lam}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lam", type=float, nargs="+", default=[0.5])
    parser.add_argument("--world", default="{}", help="JSON of SyntheticFeatureWorld kwargs")
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
    parser.add_argument(
        "--spp", type=int, default=2, help="scanners per specimen in a ScanGen batch"
    )
    parser.add_argument("--plain", action="store_true", help="squared=False (plain d and hinge)")
    parser.add_argument("--granularity", choices=["slide", "patch"], default="slide")
    parser.add_argument(
        "--patches-per-sample", type=int, default=4, help="patch granularity: locations"
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--workers", type=int, default=1, help="processes (one seed each)")
    args = parser.parse_args()
    rows = []
    start = time.perf_counter()
    jobs = [(seed, args) for seed in args.seeds]
    if args.workers > 1:
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            results = pool.map(run_seed, jobs)
    else:
        results = [run_seed(job) for job in jobs]
    print(
        f"world {args.world}, steps {args.steps}, alpha {args.alpha}, margin {args.margin}, "
        f"spp {args.spp}, granularity {args.granularity}, squared {not args.plain}"
    )
    for lam in args.lam:
        for seed, base, by_lam in sorted(results, key=lambda r: r[0]):
            ours = by_lam[lam]
            rows.append((base, ours))
            print(
                f"lambda {lam} seed {seed}: baseline AUC {base['auc']:.3f} CoV {base['cov']:.3f} | "
                f"ScanGen AUC {ours['auc']:.3f} CoV {ours['cov']:.3f} "
                f"({100 * (ours['cov'] / base['cov'] - 1):+.1f}%) | test d_att/d_rep/logit sd "
                f"{base['d_att']:.3f}/{base['d_rep']:.3f}/{base['logit_sd']:.2f} -> "
                f"{ours['d_att']:.3f}/{ours['d_rep']:.3f}/{ours['logit_sd']:.2f}"
            )
        b_auc = np.mean([b["auc"] for b, _ in rows])
        o_auc = np.mean([o["auc"] for _, o in rows])
        b_cov = np.mean([b["cov"] for b, _ in rows])
        o_cov = np.mean([o["cov"] for _, o in rows])
        print(
            f"lambda {lam}, mean over {len(rows)} seeds: "
            f"AUC {b_auc:.3f} -> {o_auc:.3f} ({o_auc - b_auc:+.3f}); "
            f"CoV {b_cov:.3f} -> {o_cov:.3f} ({100 * (o_cov / b_cov - 1):+.1f}%)"
        )
        rows.clear()
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
