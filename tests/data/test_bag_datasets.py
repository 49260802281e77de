"""Bag datasets over a feature store and their collation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tia_scanner_robust.data.bag_datasets import MISSING_LABEL, BagDataset, collate_bags


def test_bag_dataset_and_collate(store):
    sizes = {"P1": 3, "P2": 5, "P3": 2}
    for specimen, n in sizes.items():
        label = None if specimen == "P3" else int(specimen == "P2")
        store.write_slide(
            specimen, "AT2", np.full((n, 4), n, np.float32), label=label, split="train"
        )
    dataset = BagDataset(store, split="train")
    assert len(dataset) == 3
    item = dataset[1]
    assert item["features"].shape == (5, 4)
    assert (item["specimen_id"], item["scanner"], item["label"]) == ("P2", "AT2", 1)
    assert dataset[2]["label"] == MISSING_LABEL
    batch = collate_bags([dataset[i] for i in range(3)])
    assert batch["features"].shape == (3, 5, 4)
    assert batch["mask"].sum(dim=1).tolist() == [3, 5, 2]
    assert batch["label"].tolist() == [0, 1, MISSING_LABEL]
    assert batch["label"].dtype == torch.int64
    assert torch.all(batch["features"][0, 3:] == 0)
    # missing labels are ignored by cross-entropy's default ignore_index
    logits = torch.zeros(3, 2)
    assert torch.isfinite(torch.nn.functional.cross_entropy(logits, batch["label"]))
    with pytest.raises(ValueError, match="no 'label'"):
        BagDataset(store, require_label=True)
    capped = BagDataset(store.path, split="train", max_instances=2, seed=0)
    assert capped[1]["features"].shape == (2, 4)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate_bags)
    assert [b["features"].shape[0] for b in loader] == [2, 1]
    with pytest.raises(ValueError, match="No complete slide"):
        BagDataset(store, split="nope")
