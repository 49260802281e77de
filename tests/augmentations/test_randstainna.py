"""RandStainNA: templates (fit, YAML), the transform contract and the CLI."""

from __future__ import annotations

import math

import albumentations as A  # noqa: N812 - the library's documented alias
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.augmentations.colorspace import (
    COLOR_SPACES,
    channel_stats,
    colorspace_to_rgb,
    rgb_to_colorspace,
)
from tia_scanner_robust.augmentations.randstainna import (
    MIN_STD_FRACTION,
    RandStainNA,
    RandStainNATemplate,
    SeriesDistribution,
    _choose_family,
    _fit_default_template,
    default_randstainna_template,
    expand_image_paths,
    fit_randstainna_template,
    load_randstainna_template,
    sample_virtual_template,
    save_randstainna_template,
)
from tia_scanner_robust.cli.fit_randstainna import fit_randstainna

# Mid-range colour statistics (8-bit convention): inside the domain and the sRGB gamut.
MID = {
    "LAB": ([150.0, 135.0, 125.0], [10.0, 4.0, 4.0]),
    "HSV": ([130.0, 120.0, 150.0], [8.0, 20.0, 20.0]),
    "HED": ([0.10, 0.08, 0.05], [0.015, 0.012, 0.008]),
}


def image_with_stats(space, mean, std, rng, size=8, dtype=np.float32):
    """RGB image whose colour values have exactly ``mean``/``std`` per channel (before rounding)."""
    z = np.clip(rng.standard_normal((size, size, 3)), -2.5, 2.5)
    z = (z - z.mean(axis=(0, 1))) / z.std(axis=(0, 1))
    return colorspace_to_rgb(
        (np.asarray(mean) + np.asarray(std) * z).astype(np.float32), space, dtype
    )


def make_template(space, mean_std=None, std_std=None, families=("normal",) * 6):
    mean, std = MID[space]
    mean_std = mean_std if mean_std is not None else [s * 0.3 for s in std]
    std_std = std_std if std_std is not None else [s * 0.1 for s in std]
    avg = tuple(SeriesDistribution(families[c], mean[c], mean_std[c]) for c in range(3))
    sd = tuple(SeriesDistribution(families[3 + c], std[c], std_std[c]) for c in range(3))
    return RandStainNATemplate(space, avg, sd, n_images=10, metadata={"made": "test"})


def draw(family, mean, std, rng, n):
    if family == "laplace":
        return rng.laplace(mean, std / math.sqrt(2), n)
    return rng.normal(mean, std, n)


def excess_kurtosis(x):
    x = np.asarray(x) - np.mean(x)
    return float(np.mean(x**4) / np.mean(x**2) ** 2 - 3)


# --- templates and files --------------------------------------------------------------------


def test_yaml_round_trip(tmp_path):
    template = make_template(
        "HSV", families=("laplace", "normal", "normal", "normal", "laplace", "normal")
    )
    path = save_randstainna_template(template, tmp_path / "sub" / "t.yaml")
    text = path.read_text()
    assert text.startswith("# RandStainNA template")
    assert load_randstainna_template(path) == template
    data = yaml.safe_load(text)
    assert data["H"]["avg"] == {"distribution": "laplace", "mean": 130.0, "std": pytest.approx(2.4)}
    assert RandStainNATemplate.from_dict(template.to_dict()) == template


def test_reference_yaml_layout_is_read(tmp_path):
    """The reference implementation's files (family 'norm', extra keys) load."""
    text = "color_space: LAB\nmethods: Reinhard\nrandom: true\nn_each_class: 0\n" + "".join(
        f"{c}:\n  avg: {{distribution: norm, mean: {m}, std: 2.0}}\n"
        f"  std: {{distribution: laplace, mean: 5.0, std: 1.0}}\n"
        for c, m in zip("LAB", (150, 140, 120), strict=True)
    )
    (tmp_path / "ref.yaml").write_text(text)
    template = load_randstainna_template(tmp_path / "ref.yaml")
    assert template.channel_mean[1] == SeriesDistribution("normal", 140.0, 2.0)
    assert template.channel_std[2].distribution == "laplace"


def test_unreadable_and_malformed_template_files(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_randstainna_template(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("L: [unclosed\n")
    with pytest.raises(ValueError, match=r"Could not read RandStainNA template file .*bad.yaml"):
        load_randstainna_template(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match=r"list.yaml: expected a mapping"):
        load_randstainna_template(listing)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.pop("color_space"), "missing field 'color_space'"),
        (lambda d: d.update(color_space="XYZ"), "'color_space' must be one of"),
        (lambda d: d.pop("A"), "field 'A' is missing"),
        (lambda d: d["A"].pop("std"), "field 'A.std' is missing"),
        (lambda d: d["B"]["std"].pop("mean"), "missing field 'B.std.mean'"),
        (
            lambda d: d["L"]["avg"].update(std="wide"),
            "'L.avg.std' must be a finite number, got 'wide'",
        ),
        (lambda d: d["L"]["avg"].update(std=-1.0), "'L.avg.std' must be non-negative"),
        (
            lambda d: d["L"]["avg"].update(distribution="cauchy"),
            "'L.avg.distribution' must be one of",
        ),
        (lambda d: d["L"]["avg"].update(extra=1), "unknown field.*'extra'.*'L.avg'"),
        (lambda d: d.update(colour_space="LAB"), "unknown field.*'colour_space'"),
        (lambda d: d.update(n_images=0), "'n_images' must be a positive integer"),
        (lambda d: d.update(metadata=[1]), "'metadata' must be a mapping"),
    ],
)
def test_template_with_bad_fields_names_file_and_field(tmp_path, edit, match):
    data = make_template("LAB").to_dict()
    edit(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=match) as info:
        load_randstainna_template(path)
    assert "broken.yaml" in str(info.value)


def test_shipped_templates_are_reproducible_from_the_bundled_image():
    for space in COLOR_SPACES:
        shipped = default_randstainna_template(space)
        assert shipped.n_images == 64
        assert "stain_norm_target" in shipped.metadata["description"]
        refit = _fit_default_template(space)
        for a, b in zip(
            shipped.channel_mean + shipped.channel_std,
            refit.channel_mean + refit.channel_std,
            strict=True,
        ):
            assert a.distribution == b.distribution
            assert a.mean == pytest.approx(b.mean, rel=1e-4, abs=1e-7)
            assert a.std == pytest.approx(b.std, rel=1e-4, abs=1e-7)


# --- fitting --------------------------------------------------------------------------------


def test_choose_family_by_log_likelihood():
    rng = np.random.default_rng(0)
    assert _choose_family(rng.normal(0, 1, 500)) == "normal"
    assert _choose_family(rng.laplace(0, 1, 500)) == "laplace"
    assert _choose_family(np.full(10, 3.0)) == "normal"  # degenerate
    # Hand check: normal loglik of [0, 0, 0, 0, 10] is worse than laplace's (median 0, b = 2).
    assert _choose_family(np.array([0.0, 0.0, 0.0, 0.0, 10.0])) == "laplace"


@pytest.mark.parametrize("space", COLOR_SPACES)
def test_fit_recovers_known_distributions(space):
    """Images whose channel means/stds follow known families: fit recovers them."""
    rng = np.random.default_rng(7)
    n = 300
    mean, std = MID[space]
    families = ["normal", "laplace", "normal", "laplace", "normal", "laplace"]
    spreads = [s * 0.4 for s in std] + [s * 0.12 for s in std]
    centres = list(mean) + list(std)
    series = np.stack([draw(families[k], centres[k], spreads[k], rng, n) for k in range(6)], axis=1)
    images = (
        image_with_stats(space, row[:3], row[3:], rng) for row in series
    )  # a generator: streamed
    template = fit_randstainna_template(images, space, verbose=False)
    assert template.n_images == n
    assert template.color_space == space
    fitted = template.channel_mean + template.channel_std
    for k in range(6):
        assert fitted[k].distribution == families[k], k
        # The fit reports the series' sample mean/std; compare with the generated series
        # (exact up to conversion error) and with the true parameters (sampling error).
        conversion = {"LAB": 0.3, "HSV": 1e-3, "HED": 1e-6}[space]  # OpenCV float Lab bias
        assert fitted[k].mean == pytest.approx(
            series[:, k].mean(), abs=0.05 * spreads[k] + conversion
        )
        assert fitted[k].std == pytest.approx(series[:, k].std(), rel=0.05)
        assert abs(fitted[k].mean - centres[k]) < 4 * spreads[k] / math.sqrt(n)
        assert fitted[k].std == pytest.approx(spreads[k], rel=0.2)


def test_fit_forced_family_and_metadata():
    rng = np.random.default_rng(1)
    images = [image_with_stats("LAB", *MID["LAB"], rng) for _ in range(5)]
    template = fit_randstainna_template(
        images, "lab", distribution="laplace", metadata={"site": "x"}, verbose=False
    )
    assert {s.distribution for s in template.channel_mean + template.channel_std} == {"laplace"}
    assert template.metadata["site"] == "x"
    mean, std = channel_stats(rgb_to_colorspace(images[0], "LAB"))
    single = fit_randstainna_template(images[:1], "LAB", verbose=False)
    np.testing.assert_allclose([s.mean for s in single.channel_mean], mean)
    np.testing.assert_allclose([s.mean for s in single.channel_std], std)
    assert all(s.std == 0 for s in single.channel_mean)


def test_fit_from_paths_arrays_and_folders(tmp_path, he_tiles):
    for i, tile in enumerate(he_tiles[:3]):
        atomic_write_image(tmp_path / f"tile{i}.png", tile)
    (tmp_path / "readme.txt").write_text("not an image")
    paths = expand_image_paths(tmp_path)
    assert [p.name for p in paths] == ["tile0.png", "tile1.png", "tile2.png"]
    from_arrays = fit_randstainna_template(he_tiles[:3], "HED", verbose=False)
    from_folder = fit_randstainna_template(str(tmp_path), "HED", verbose=False)
    mixed = fit_randstainna_template([paths[0], he_tiles[1], str(paths[2])], "HED", verbose=False)
    assert from_folder.channel_mean == from_arrays.channel_mean == mixed.channel_mean
    assert from_folder.channel_std == from_arrays.channel_std


def test_fit_errors_name_the_culprit(tmp_path):
    with pytest.raises(ValueError, match="No images"):
        fit_randstainna_template([], verbose=False)
    with pytest.raises(ValueError, match=r"images\[1\] must be an RGB image.*grayscale"):
        fit_randstainna_template(
            [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)], verbose=False
        )
    with pytest.raises(ValueError, match="got one array of shape"):
        fit_randstainna_template(np.zeros((4, 4, 3), np.uint8), verbose=False)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"corrupt\.png"):
        fit_randstainna_template([corrupt], verbose=False)
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        fit_randstainna_template([tmp_path / "missing.png"], verbose=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No image files"):
        expand_image_paths(tmp_path / "empty")
    with pytest.raises(ValueError, match="Unknown color_space"):
        fit_randstainna_template([np.zeros((4, 4, 3), np.uint8)], "RGB", verbose=False)


# --- sampling -------------------------------------------------------------------------------


def test_sampling_uses_the_fitted_family_with_matched_mean_and_std():
    template = make_template(
        "LAB", families=("laplace", "normal", "normal", "normal", "normal", "normal")
    )
    rng = np.random.default_rng(3)
    draws = np.array(
        [sample_virtual_template(template, rng, std_hyper=0.5)[0] for _ in range(6000)]
    )
    expected_std = np.array([s.std for s in template.channel_mean]) * 1.5
    np.testing.assert_allclose(
        draws.mean(axis=0), [s.mean for s in template.channel_mean], atol=0.1
    )
    np.testing.assert_allclose(draws.std(axis=0), expected_std, rtol=0.05)
    assert excess_kurtosis(draws[:, 0]) > 2.0  # laplace: 3
    assert abs(excess_kurtosis(draws[:, 1])) < 0.5  # normal: 0


@pytest.mark.parametrize(
    ("distribution", "kurtosis"), [("uniform", -1.2), ("laplace", 3.0), ("normal", 0.0)]
)
def test_distribution_override(distribution, kurtosis):
    template = make_template("HED", families=("laplace",) * 6)
    rng = np.random.default_rng(4)
    draws = np.array(
        [sample_virtual_template(template, rng, distribution=distribution)[0] for _ in range(6000)]
    )
    sd = np.array([s.std for s in template.channel_mean])
    np.testing.assert_allclose(draws.std(axis=0), sd, rtol=0.06)
    assert excess_kurtosis(draws[:, 2]) == pytest.approx(kurtosis, abs=0.6)
    if distribution == "uniform":
        centre = np.array([s.mean for s in template.channel_mean])
        assert (np.abs(draws - centre) <= math.sqrt(3) * sd + 1e-12).all()


def test_sampled_std_is_clipped_positive_and_std_hyper_minus_one_is_the_mean():
    template = make_template("LAB", std_std=[20.0, 20.0, 20.0])  # draws often negative
    rng = np.random.default_rng(5)
    stds = np.array([sample_virtual_template(template, rng, std_hyper=0.0)[1] for _ in range(500)])
    floor = MIN_STD_FRACTION * np.array([s.mean for s in template.channel_std])
    assert (stds >= floor - 1e-12).all()
    assert np.isclose(stds, floor).any()
    mu, sigma = sample_virtual_template(template, rng, std_hyper=-1.0)
    np.testing.assert_array_equal(mu, [s.mean for s in template.channel_mean])
    np.testing.assert_array_equal(sigma, [s.mean for s in template.channel_std])


# --- the transform --------------------------------------------------------------------------


@pytest.mark.parametrize("space", COLOR_SPACES)
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_output_statistics_match_the_sampled_virtual_template(space, dtype):
    rng = np.random.default_rng(11)
    image = image_with_stats(space, *MID[space], rng, size=48, dtype=dtype)
    before_mean, before_std = channel_stats(rgb_to_colorspace(image, space))
    template = make_template(
        space, mean_std=[0.8 * s for s in MID[space][1]], std_std=[0.3 * s for s in MID[space][1]]
    )
    transform = RandStainNA(templates=template, std_hyper=0.0, p=1.0)
    pipeline = A.Compose([transform], seed=0)
    # Conversion error (OpenCV's float Lab) and, for uint8, one RGB level of rounding.
    atol = {"LAB": 0.35, "HSV": 0.1, "HED": 2e-4}[space] * (1 if dtype == np.float32 else 3)
    moved_mean, moved_std = [], []
    for _ in range(4):
        out = pipeline(image=image)["image"]
        params = transform.params
        assert params["color_space"] == space
        assert out.dtype == image.dtype
        assert out.shape == image.shape
        mean, std = channel_stats(rgb_to_colorspace(out, space))
        np.testing.assert_allclose(mean, params["target_mean"], atol=atol)
        np.testing.assert_allclose(std, params["target_std"], rtol=0.03)
        moved_mean.append(np.abs(before_mean - params["target_mean"]).max())
        moved_std.append(np.abs(before_std / params["target_std"] - 1).max())
    # The draws moved the statistics well beyond the tolerances (the checks have teeth).
    assert max(moved_mean) > 3 * atol
    assert max(moved_std) > 0.15


@pytest.mark.parametrize("space", COLOR_SPACES)
def test_template_of_the_image_itself_is_identity(he_tile, space):
    """Returns RGB (a BGR result would fail this) and reproduces the image's own stats."""
    template = fit_randstainna_template([he_tile], space, verbose=False)  # series std 0
    out = RandStainNA(templates=template, p=1.0)(image=he_tile)["image"]
    assert np.abs(out.astype(int) - he_tile).mean() < 0.5


def test_seed_reproducibility_and_p_zero(he_tile):
    def run(seed):
        pipeline = A.Compose([RandStainNA(p=1.0)], seed=seed)
        return [pipeline(image=he_tile)["image"] for _ in range(4)]

    first, again, other = run(5), run(5), run(6)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    assert not np.array_equal(first[0], first[1])
    np.testing.assert_array_equal(RandStainNA(p=0.0)(image=he_tile)["image"], he_tile)


def test_random_choice_among_color_spaces():
    transform = RandStainNA(color_spaces=["LAB", "HSV", "HED"], p=1.0)
    transform.set_random_seed(0)
    seen = {transform.get_params()["color_space"] for _ in range(60)}
    assert seen == {"LAB", "HSV", "HED"}
    assert set(RandStainNA().active_templates) == {"LAB", "HSV", "HED"}
    only = RandStainNA(color_spaces="hed")
    assert {only.get_params()["color_space"] for _ in range(10)} == {"HED"}


def test_float_images_and_batches(he_tile):
    image = he_tile.astype(np.float32) / 255
    out = A.Compose([RandStainNA(p=1.0)], seed=0)(image=image)["image"]
    assert out.dtype == np.float32
    assert 0.0 <= out.min() <= out.max() <= 1.0
    batch = np.stack([he_tile[:64, :64], he_tile[64:128, :64]])
    assert RandStainNA(p=1.0)(images=batch)["images"].shape == batch.shape


def _outputs(transform, image, seed=3):
    pipeline = A.Compose([transform], seed=seed)
    return [pipeline(image=image)["image"] for _ in range(3)]


@pytest.mark.parametrize("kind", ["default", "path", "dict", "object"])
def test_serialisation_round_trip(tmp_path, he_tile, kind):
    template = default_randstainna_template("HSV")
    save_randstainna_template(template, tmp_path / "hsv.yaml")
    templates = {
        "default": None,
        "path": str(tmp_path / "hsv.yaml"),
        "dict": template.to_dict(),
        "object": template,
    }[kind]
    transform = RandStainNA(templates=templates, std_hyper=0.2, distribution="uniform", p=0.8)
    data = A.to_dict(transform)
    restored = A.from_dict(yaml.safe_load(yaml.safe_dump(data)))  # plain data only
    assert isinstance(restored, RandStainNA)
    assert restored.std_hyper == 0.2
    assert restored.distribution == "uniform"
    assert restored.p == 0.8
    assert restored.active_templates == transform.active_templates
    tile = he_tile[:64, :64]
    for a, b in zip(_outputs(transform, tile), _outputs(restored, tile), strict=True):
        np.testing.assert_array_equal(a, b)


def test_constructor_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown colour space in color_spaces 'RGB'"):
        RandStainNA(color_spaces=["LAB", "RGB"])
    with pytest.raises(ValueError, match="lists LAB twice"):
        RandStainNA(color_spaces=["LAB", "lab"])
    with pytest.raises(ValueError, match="std_hyper"):
        RandStainNA(std_hyper=-1.5)
    with pytest.raises(ValueError, match="distribution"):
        RandStainNA(distribution="cauchy")
    with pytest.raises(ValueError, match="templates only cover LAB"):
        RandStainNA(templates=make_template("LAB"), color_spaces=["LAB", "HED"])
    with pytest.raises(ValueError, match="two templates for colour space LAB"):
        RandStainNA(templates=[make_template("LAB"), make_template("LAB")])
    with pytest.raises(FileNotFoundError, match=r"absent\.yaml"):
        RandStainNA(templates=str(tmp_path / "absent.yaml"))
    broken = make_template("HED").to_dict()
    del broken["E"]["avg"]["mean"]
    with pytest.raises(ValueError, match=r"templates\[0\].*'E.avg.mean'"):
        RandStainNA(templates=[broken])
    with pytest.raises(ValueError, match="templates must be None"):
        RandStainNA(templates=[])
    with pytest.raises(ValueError, match=r"templates\[0\] must be a YAML file path"):
        RandStainNA(templates=[42])


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (np.zeros((16, 16), np.uint8), ValueError, "grayscale"),
        (np.zeros((16, 16, 4), np.uint8), ValueError, "RGBA"),
        (np.zeros((16, 0, 3), np.uint8), ValueError, "empty"),
        (np.zeros((16, 16, 3), np.float64), TypeError, "uint8 or float32"),
        (np.full((16, 16, 3), np.nan, np.float32), ValueError, "NaN"),
    ],
)
def test_transform_rejects_bad_images(image, error, match):
    with pytest.raises(error, match=match):
        RandStainNA(p=1.0)(image=image)


# --- CLI ------------------------------------------------------------------------------------


def test_cli_fits_and_writes_a_loadable_template(tmp_path, he_tiles):
    folder = tmp_path / "tiles"
    for i, tile in enumerate(he_tiles[:4]):
        atomic_write_image(folder / f"t{i}.png", tile)
    out = tmp_path / "template.yaml"
    result = CliRunner().invoke(
        fit_randstainna, [str(folder), "-o", str(out), "--color-space", "hsv", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    template = load_randstainna_template(out)
    expected = fit_randstainna_template(he_tiles[:4], "HSV", verbose=False)
    assert template.channel_mean == expected.channel_mean
    assert template.channel_std == expected.channel_std
    assert template.metadata["inputs"] == [str(folder)]
    again = CliRunner().invoke(fit_randstainna, [str(folder), "-o", str(out)])
    assert again.exit_code != 0
    assert "--overwrite" in again.output


def test_cli_errors_name_the_problem(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(fit_randstainna, [str(empty), "-o", str(tmp_path / "t.yaml")])
    assert result.exit_code != 0
    assert "No image files" in result.output
    assert not (tmp_path / "t.yaml").exists()
    (empty / "broken.png").write_bytes(b"junk")
    result = CliRunner().invoke(
        fit_randstainna, [str(empty), "-o", str(tmp_path / "t.yaml"), "--quiet"]
    )
    assert result.exit_code != 0
    assert "broken.png" in result.output
    assert not (tmp_path / "t.yaml").exists()
