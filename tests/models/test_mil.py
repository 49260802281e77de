"""MIL aggregators: one contract (shapes, padding invariance, gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from tia_scanner_robust.models.mil import (
    AGGREGATORS,
    DSMILAggregator,
    MILModel,
    ProjectionMLP,
    SlotMILAggregator,
    check_bags,
    create_aggregator,
    masked_mean,
    pad_bags,
    subsample_bags,
    subsample_mask,
)

D, C = 12, 3
SMALL_KWARGS = {
    "gap": {"hidden_dim": 8},
    "abmil": {"attention_dim": 8},
    "dsmil": {"query_dim": 8},
    "slotmil": {"num_slots": 4, "num_heads": 2},
}


def make(name: str, **extra):
    torch.manual_seed(0)
    return create_aggregator(name, in_dim=D, num_classes=C, **SMALL_KWARGS[name], **extra)


@pytest.fixture
def bags():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(3, 7, D, generator=gen)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 1:] = False  # a one-instance bag
    return features, mask


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_output_shapes_and_attention(name, bags):
    features, mask = bags
    out = make(name).eval()(features, mask)
    assert out["logits"].shape == (3, C)
    assert out["embedding"].shape[0] == 3
    attention = out["attention"]
    assert attention.shape == (3, 7)
    assert torch.all(attention[~mask] == 0)
    assert torch.allclose(attention.sum(dim=1), torch.ones(3), atol=1e-5)
    assert torch.isfinite(out["logits"]).all()


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_padding_does_not_change_output(name, bags):
    features, mask = bags
    agg = make(name).eval()
    reference = agg(features, mask)
    # append junk instances (large values) that the mask marks as padding
    junk = 100 * torch.randn(3, 5, D, generator=torch.Generator().manual_seed(1))
    padded = torch.cat([features, junk], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(3, 5, dtype=torch.bool)], dim=1)
    # also overwrite the existing padding slots with junk
    padded[:, :7][~mask] = 1e3
    out = agg(padded, padded_mask)
    assert torch.allclose(out["logits"], reference["logits"], atol=1e-6)
    assert torch.allclose(out["attention"][:, :7], reference["attention"], atol=1e-6)
    # a bag alone equals the same bag in a padded batch
    alone = agg(features[1:2, :4], None)
    assert torch.allclose(alone["logits"], reference["logits"][1:2], atol=1e-6)


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_gradient_reaches_every_parameter(name, bags):
    features, mask = bags
    agg = make(name).train()
    features = features.clone().requires_grad_(True)
    out = agg(features, mask)
    F.cross_entropy(out["logits"], torch.tensor([0, 1, 2])).backward()
    for param_name, param in agg.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, param_name
    assert torch.all(features.grad[~mask] == 0)  # padding gets no gradient


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_permutation_invariance(name, bags):
    features, _ = bags
    agg = make(name).eval()
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(2))
    a = agg(features)["logits"]
    b = agg(features[:, perm])["logits"]
    assert torch.allclose(a, b, atol=1e-5)


def test_gap_is_masked_mean_and_abmil_attention_is_softmax(bags):
    features, mask = bags
    gap = make("gap")
    out = gap(features, mask)
    assert torch.allclose(out["embedding"], masked_mean(features, mask))
    assert torch.allclose(out["embedding"][1], features[1, :4].mean(dim=0))
    abmil = make("abmil")
    hidden = torch.tanh(abmil.attention_v(features[0])) * torch.sigmoid(
        abmil.attention_u(features[0])
    )
    expected = torch.softmax(abmil.attention_w(hidden).squeeze(-1), dim=0)
    assert torch.allclose(abmil(features, mask)["attention"][0], expected, atol=1e-6)


def test_dsmil_critical_instance_and_combination(bags):
    features, mask = bags
    agg = make("dsmil").eval()
    out = agg(features, mask)
    instance = agg.instance_classifier(features[1, :4])
    assert torch.allclose(out["max_instance_logits"][1], instance.max(dim=0).values, atol=1e-6)
    assert torch.allclose(out["logits"], 0.5 * (out["bag_logits"] + out["max_instance_logits"]))
    # the critical instance attends most to itself for its class (q . q is maximal-ish): check the
    # attention is a softmax over real instances of <q_k, q_crit>
    crit = instance[:, 0].argmax()
    q = agg.query(features[1, :4])
    expected = torch.softmax(q @ q[crit] / np.sqrt(agg.query_dim), dim=0)
    assert torch.allclose(out["class_attention"][1, :4, 0], expected, atol=1e-6)
    loss = DSMILAggregator.paper_loss(out, torch.tensor([0, 1, 2]))
    assert loss.item() > 0


def test_slotmil_subsampling_only_in_training(bags):
    features, mask = bags
    agg = make("slotmil", subsample=0.5)
    agg.eval()
    assert torch.equal(agg(features, mask)["mask"], mask)
    agg.train()
    used = agg(features, mask, generator=torch.Generator().manual_seed(0))["mask"]
    assert used.sum(dim=1).tolist() == [4, 2, 1]  # ceil(0.5 * n_real)
    assert torch.all(used <= mask)


def test_slot_mixup_mixes_labels(bags):
    features, mask = bags
    agg = make("slotmil")
    targets = torch.tensor([0, 1, 2])
    out = agg.slot_mixup(
        features, mask, targets, alpha=0.4, rng=0, generator=torch.Generator().manual_seed(0)
    )
    lam, perm = out["lam"].item(), out["permutation"]
    expected = lam * F.one_hot(targets, C) + (1 - lam) * F.one_hot(targets[perm], C)
    assert torch.allclose(out["targets"], expected.float())
    F.cross_entropy(out["logits"], out["targets"]).backward()
    assert agg.slots.grad is not None
    model = MILModel(D, C, "gap", projection_hidden=8)
    with pytest.raises(ValueError, match="slot-mixup"):
        model.slot_mixup(features, mask, targets)
    slot_model = MILModel(
        D, C, "slotmil", projection_hidden=8, aggregator_kwargs={"num_slots": 2, "num_heads": 2}
    )
    assert slot_model.slot_mixup(features, mask, targets, rng=1)["logits"].shape == (3, C)


def test_mil_model_is_f_a_g(bags):
    features, mask = bags
    model = MILModel(
        D, C, "abmil", projection_hidden=16, aggregator_kwargs={"attention_dim": 8}
    ).eval()
    out = model(features, mask)
    assert out["projected"].shape == (3, 7, 16)
    assert torch.allclose(out["projected"], model.embed(features))
    assert torch.allclose(out["logits"], model.aggregator(model.embed(features), mask)["logits"])
    assert sum(isinstance(m, torch.nn.Linear) for m in model.projection.modules()) == 3
    identity = MILModel(D, C, projection=False)
    assert torch.equal(identity.embed(features), features)


def test_predict_bags_matches_forward_and_restores_mode(bags):
    features, mask = bags
    model = MILModel(D, C, "dsmil", projection_hidden=16).train()
    bag_list = [features[i][mask[i]] for i in range(3)]
    got = model.predict_bags(bag_list, batch_size=2)
    assert model.training  # restored
    model.eval()
    expected = model(features, mask)["logits"]
    assert np.allclose(got["logits"], expected.detach().numpy(), atol=1e-5)
    assert np.allclose(got["probabilities"].sum(axis=1), 1.0)
    assert got["predictions"].tolist() == expected.argmax(dim=1).tolist()
    as_dicts = model.predict_bags([{"features": b.numpy()} for b in bag_list])
    assert np.allclose(as_dicts["logits"], got["logits"], atol=1e-5)


def test_bag_utilities():
    features, mask = pad_bags([np.ones((2, 3)), torch.zeros(4, 3)])
    assert features.shape == (2, 4, 3)
    assert mask.sum(dim=1).tolist() == [2, 4]
    assert features[0, 2:].abs().sum() == 0
    gen = torch.Generator().manual_seed(0)
    sub = subsample_mask(mask, torch.tensor([1, 3]), gen)
    assert sub.sum(dim=1).tolist() == [1, 3]
    assert torch.all(sub <= mask)
    f, m = subsample_bags(torch.arange(8.0).reshape(1, 8, 1), None, 3, gen)
    assert f.shape == (1, 3, 1)
    assert m.all()
    assert len(set(f.flatten().tolist())) == 3
    # uniform: each instance is kept about 3/8 of the time
    counts = torch.zeros(8)
    for _ in range(400):
        counts += subsample_mask(torch.ones(1, 8, dtype=torch.bool), 3, gen)[0]
    assert torch.all((counts / 400 - 3 / 8).abs() < 0.1)


def test_validation_errors():
    with pytest.raises(ValueError, match="valid names: abmil, dsmil, gap, slotmil"):
        create_aggregator("clam", in_dim=4)
    with pytest.raises(ValueError, match="at least one real instance"):
        check_bags(torch.zeros(2, 3, 4), torch.tensor([[True, False, False], [False] * 3]))
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        make("gap")(torch.zeros(3, D))
    with pytest.raises(ValueError, match="feature size"):
        make("gap")(torch.zeros(1, 3, D + 1))
    with pytest.raises(ValueError, match="mask must have shape"):
        make("gap")(torch.zeros(1, 3, D), torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating-point"):
        make("gap")(torch.zeros(1, 3, D, dtype=torch.long))
    with pytest.raises(ValueError, match="num_heads"):
        SlotMILAggregator(10, num_heads=3)
    with pytest.raises(ValueError, match="in_dim"):
        ProjectionMLP(0)
