"""The compatibility modules ``data.paired``/``data.features``, and lazy torch imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tia_scanner_robust.data import (
    bag_datasets,
    bag_sampling,
    collection,
    datasets,
    feature_store,
    features,
    paired,
    readers,
)


def test_paired_re_exports_the_new_homes():
    homes = (collection, readers, datasets)
    for name in paired.__all__:
        owner = next(m for m in homes if name in m.__all__)
        assert getattr(paired, name) is getattr(owner, name), name
    assert set(paired.__all__) <= set(dir(paired))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        paired.nope  # noqa: B018 - the attribute access is the test


def test_features_re_exports_the_new_homes():
    homes = (feature_store, bag_datasets, bag_sampling)
    for name in features.__all__:
        owner = next(m for m in homes if name in m.__all__)
        assert getattr(features, name) is getattr(owner, name), name
    assert set(features.__all__) <= set(dir(features))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        features.nope  # noqa: B018 - the attribute access is the test


def _imports_torch(statement: str) -> bool:
    code = f"import sys\n{statement}\nprint('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return result.stdout.strip().splitlines()[-1] == "True"


def test_data_model_and_readers_do_not_import_torch():
    statement = (
        "import tia_scanner_robust.data, tia_scanner_robust.data.collection, "
        "tia_scanner_robust.data.readers, tia_scanner_robust.data.paired, "
        "tia_scanner_robust.data.features, tia_scanner_robust.data.feature_store, "
        "tia_scanner_robust.data.manifest, tia_scanner_robust.data.scorpion\n"
        "from tia_scanner_robust.data import PairedCollection, load_sample_image, read_mask\n"
        "from tia_scanner_robust.data.features import FeatureStore"
    )
    assert not _imports_torch(statement)
    # the check can fail: the torch datasets do import it
    assert _imports_torch("from tia_scanner_robust.data.paired import PairedImageDataset")
