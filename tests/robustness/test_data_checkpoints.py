"""Corpus: pickled, foreign and mismatched checkpoints give one line naming the file."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tia_scanner_robust.engines.loading import load_model_checkpoint, resolve_model
from tia_scanner_robust.models.mil import MILModel
from tia_scanner_robust.models.mil.checkpoint import load_mil_checkpoint
from tia_scanner_robust.training.checkpoint import (
    TRAINER_CHECKPOINT_FORMAT,
    read_resumable_checkpoint,
)

from ._corpus import rgb_tile


class Payload:
    """A class pickled into a checkpoint: weights_only refuses to import it."""

    def __init__(self) -> None:
        self.value = 1


def pickled_module(path):
    torch.save(nn.Linear(2, 2), path)
    return path


def pickled_object(path):
    torch.save({"state_dict": {}, "extra": Payload()}, path)
    return path


def png_file(path):
    rgb_tile(path.with_suffix(".png")).replace(path)
    return path


def text_file(path):
    path.write_text("definitely not a checkpoint\n")
    return path


def empty_file(path):
    path.write_bytes(b"")
    return path


def truncated(path):
    torch.save({"weight": torch.zeros(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:200])
    return path


def safetensors_like(path):
    path.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"__metadata__":{}}')
    return path


BAD_FILES = {
    "pickled_module": pickled_module,
    "pickled_object": pickled_object,
    "png": png_file,
    "text": text_file,
    "empty": empty_file,
    "truncated": truncated,
    "safetensors": safetensors_like,
}


def segmentation(path):
    from tia_scanner_robust.models.segmentation import SmpSegmentationModel  # noqa: PLC0415

    return SmpSegmentationModel.from_checkpoint(path)


LOADERS = {
    "evaluate --model": load_model_checkpoint,
    "evaluate --weights": lambda path: resolve_model(nn.Linear(2, 2), weights=path),
    "segmentation": segmentation,
    "mil": load_mil_checkpoint,
    "train --resume": read_resumable_checkpoint,
}


@pytest.mark.parametrize("bad", sorted(BAD_FILES))
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_unreadable_checkpoints_give_one_line(tmp_path, bad, loader):
    path = BAD_FILES[bad](tmp_path / "model.pt")
    with pytest.raises(ValueError, match="Cannot load") as caught:
        LOADERS[loader](path)
    message = str(caught.value)
    assert str(path) in message
    assert "expected" in message
    assert "\n" not in message
    if bad.startswith("pickled"):
        assert "weights_only=True" in message


def test_no_code_runs_from_a_malicious_pickle(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (marker.write_text, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Exploit()}, path)
    for loader in LOADERS.values():
        with pytest.raises(ValueError, match="Cannot load"):
            loader(path)
    assert not marker.exists()


# --------------------------------------------------- another architecture
def test_weights_of_another_architecture(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).state_dict(), path)
    with pytest.raises(ValueError, match="do not fit Linear") as caught:
        resolve_model(nn.Linear(3, 2), weights=path)
    message = str(caught.value)
    assert "2 missing key(s)" in message
    assert "4 unexpected key(s)" in message
    assert str(path) in message
    assert "\n" not in message


def test_registered_architecture_with_other_shapes(tmp_path):
    from tia_scanner_robust.engines.loading import register_architecture  # noqa: PLC0415

    register_architecture("corpus-linear", lambda d=4: nn.Linear(d, 2))
    path = tmp_path / "c.pt"
    state = nn.Linear(8, 2).state_dict()
    torch.save({"arch": "corpus-linear", "config": {"d": 4}, "state_dict": state}, path)
    with pytest.raises(
        ValueError, match=r"shape mismatch.*'weight': file \(2, 8\), model \(2, 4\)"
    ):
        load_model_checkpoint(path)


def test_segmentation_checkpoint_with_another_head(tmp_path):
    from tia_scanner_robust.models.segmentation import SmpSegmentationModel  # noqa: PLC0415

    model = SmpSegmentationModel(
        arch="Unet", encoder_name="resnet18", encoder_weights=None, num_classes=2, patch_size=64
    )
    path = model.save_checkpoint(tmp_path / "seg.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["num_classes"] = 3
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"do not fit SmpSegmentationModel: .*shape mismatch") as c:
        SmpSegmentationModel.from_checkpoint(path)
    assert "\n" not in str(c.value)


def test_mil_checkpoint_of_another_aggregator(tmp_path):
    path = tmp_path / "mil.pt"
    model = MILModel(8, aggregator="abmil", projection_hidden=4)
    torch.save({"model": model.state_dict()}, path)
    other = MILModel(8, aggregator="gap", projection_hidden=4).config
    with pytest.raises(ValueError, match="do not fit the configured MIL model") as caught:
        load_mil_checkpoint(path, model_config=other)
    assert "unexpected key(s)" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_resume_checkpoint_of_another_model(tmp_path):
    path = tmp_path / "last.pt"
    torch.save(
        {
            "format": TRAINER_CHECKPOINT_FORMAT,
            "model": nn.Linear(4, 3).state_dict(),
            "optimizer": {},
        },
        path,
    )
    assert read_resumable_checkpoint(path, nn.Linear(4, 3))["format"] == TRAINER_CHECKPOINT_FORMAT
    with pytest.raises(ValueError, match="does not fit this run's Linear") as caught:
        read_resumable_checkpoint(path, nn.Linear(4, 5))
    assert "shape mismatch" in str(caught.value)
