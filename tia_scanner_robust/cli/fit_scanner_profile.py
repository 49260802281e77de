"""``tia-scanner-robust fit-scanner-profile``: a scanner profile fitted from real pairs.

Reads a scanner-paired dataset (SCORPION folder or manifest, e.g. the output
of ``build-paired wsis``), takes the specimens scanned by both ``--reference``
and ``--target``, holds back a fraction of them, fits the profile mapping the
reference scanner's images to the target's on the rest
(:func:`~tia_scanner_robust.augmentations.scanner_fit.fit_scanner_profile`),
writes it as YAML, and writes a realism report (JSON + PNG panel) on the
held-back pairs
(:func:`~tia_scanner_robust.augmentations.scanner_realism.scanner_realism_report`).

The YAML is accepted wherever a profile name is: ``simulate_scanner(image,
"profile.yaml")``, ``ScannerSimulator(["profile.yaml"])``,
``build-paired simulate --profile profile.yaml``.

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from click.testing import CliRunner
    >>> out = Path(tempfile.mkdtemp())
    >>> args = ["--data", "demo", "--reference", "reference", "--target", "warm-soft"]
    >>> args += ["-o", str(out / "warm.yaml"), "--demo-tiles", "4", "--demo-tile-size", "160"]
    >>> result = CliRunner().invoke(fit_scanner_profile, args)
    >>> result.exit_code, (out / "warm.yaml").is_file(), (out / "warm_realism.png").is_file()
    (0, True, True)

"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tia_scanner_robust.cli._options import seed_option
from tia_scanner_robust.cli._paired_data import FORMAT_OPTION

if TYPE_CHECKING:
    from tia_scanner_robust.data.collection import PairedCollection

__all__ = ["fit_scanner_profile", "paired_images"]


def paired_images(
    collection: PairedCollection, reference: str, target: str
) -> tuple[list[str], list[tuple[Any, Any]]]:
    """Specimens scanned by both scanners and their ``(reference, target)`` images.

    Raises:
        click.ClickException: If a scanner is unknown or no specimen has both.

    """
    from tia_scanner_robust.data.readers import load_sample_image  # noqa: PLC0415

    for option, scanner in (("--reference", reference), ("--target", target)):
        if scanner not in collection.scanners:
            msg = f"{option} {scanner!r} is not a scanner of the data: {collection.scanners}."
            raise click.ClickException(msg)
    if reference == target:
        msg = "--reference and --target must be different scanners."
        raise click.ClickException(msg)
    names, pairs = [], []
    for specimen in collection.specimens:
        scans = collection.by_specimen(specimen)
        if reference in scans and target in scans:
            names.append(specimen)
            pairs.append((load_sample_image(scans[reference]), load_sample_image(scans[target])))
    if not pairs:
        msg = (
            f"No specimen has both {reference!r} and {target!r}: the fit needs paired scans "
            "of the same tissue (e.g. from 'build-paired wsis')."
        )
        raise click.ClickException(msg)
    return names, pairs


def _jpeg_quality(option: str, collection: PairedCollection, target: str) -> int | None:
    if option.lower() == "none":
        return None
    if option.lower() != "auto":
        try:
            quality = int(option)
        except ValueError:
            quality = 0
        if not 1 <= quality <= 100:
            msg = (
                f"--jpeg-quality must be 'auto', 'none' or an integer in [1, 100], got {option!r}."
            )
            raise click.ClickException(msg)
        return quality
    from tia_scanner_robust.augmentations.scanner_fit import (  # noqa: PLC0415
        estimate_jpeg_quality,
    )

    paths = [
        s.path
        for s in collection.by_scanner(target)
        if s.path is not None and s.path.suffix.lower() in {".jpg", ".jpeg"}
    ][:20]
    qualities = [q for q in (estimate_jpeg_quality(p) for p in paths) if q is not None]
    return int(sorted(qualities)[len(qualities) // 2]) if qualities else None


@click.command(name="fit-scanner-profile", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data", required=True, help="Paired data: SCORPION folder, manifest CSV, or 'demo'."
)
@FORMAT_OPTION
@click.option("--reference", required=True, help="Scanner whose images are the input (A).")
@click.option("--target", required=True, help="Scanner whose look is fitted (B).")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Profile YAML to write.",
)
@click.option("--name", default=None, help="Profile name (default: the target scanner).")
@click.option(
    "--holdout",
    default=0.25,
    show_default=True,
    type=click.FloatRange(0.0, 0.9),
    help="Fraction of specimens held back for the realism report (0: no report).",
)
@click.option(
    "--jpeg-quality",
    default="auto",
    show_default=True,
    help="'auto' (from the target's JPEG files), 'none', or a quality 1-100.",
)
@click.option("--max-pairs", default=64, show_default=True, help="Most pairs used by the fit.")
@click.option("--no-sharpness", is_flag=True, help="Do not fit blur / sharpening.")
@click.option("--no-noise", is_flag=True, help="Do not fit sensor noise.")
@click.option("--demo-tiles", default=9, show_default=True, help="--data demo: tiles.")
@click.option("--demo-tile-size", default=256, show_default=True, help="--data demo: tile side.")
@seed_option(text="Seed of the hold-out split.")
def fit_scanner_profile(
    *,
    data: str,
    data_format: str,
    reference: str,
    target: str,
    output: Path,
    name: str | None,
    holdout: float,
    jpeg_quality: str,
    max_pairs: int,
    no_sharpness: bool,
    no_noise: bool,
    demo_tiles: int,
    demo_tile_size: int,
    seed: int,
) -> None:
    """Fit a profile that makes scanner REFERENCE's images look like scanner TARGET's.

    The pairs must be registered regions of the same tissue. Writes OUTPUT
    (YAML) and, unless --holdout 0, OUTPUT_STEM_realism.json and .png: the
    simulated versus the real target on the held-back pairs.
    """
    import numpy as np  # noqa: PLC0415

    from tia_scanner_robust.augmentations.scanner_fit import (  # noqa: PLC0415
        fit_scanner_profile as fit,
    )
    from tia_scanner_robust.augmentations.scanner_realism import (  # noqa: PLC0415
        realism_panel,
        save_realism_report,
        scanner_realism_report,
    )
    from tia_scanner_robust.cli._paired_data import load_collection  # noqa: PLC0415

    output.parent.mkdir(parents=True, exist_ok=True)
    collection = load_collection(
        data,
        data_format,
        output.parent,
        seed=seed,
        demo_tiles=demo_tiles,
        demo_tile_size=demo_tile_size,
    )
    names, pairs = paired_images(collection, reference, target)
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_held = round(holdout * len(pairs)) if holdout > 0 else 0
    if holdout > 0 and len(pairs) < 2:
        msg = (
            f"Only {len(pairs)} pair of {reference!r} and {target!r}: a realism report needs at "
            "least 2 (one to fit, one held back); pass --holdout 0 to fit without it."
        )
        raise click.ClickException(msg)
    n_held = min(max(n_held, 1 if holdout > 0 else 0), len(pairs) - 1)
    held, used = sorted(order[:n_held]), sorted(order[n_held:])[:max_pairs]
    try:
        result = fit(
            [pairs[i] for i in used],
            name=name or target,
            description=f"Fitted: {reference} -> {target} from {len(used)} pair(s) of {data}.",
            jpeg_quality=_jpeg_quality(jpeg_quality, collection, target),
            fit_sharpness=not no_sharpness,
            fit_noise=not no_noise,
            seed=seed,
        )
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    result.save(
        output,
        data=str(data),
        reference=reference,
        target=target,
        fit_specimens=[names[i] for i in used],
        held_back_specimens=[names[i] for i in held],
    )
    click.echo(f"Wrote the fitted profile {result.profile.name!r} to {output}.")
    click.echo(f"  {_describe(result.profile)}")
    if not held:
        return
    held_pairs = [pairs[i] for i in held]
    report = scanner_realism_report(result.profile, held_pairs, names=[names[i] for i in held])
    report["reference_scanner"], report["target_scanner"] = reference, target
    png = realism_panel(result.profile, held_pairs, report)
    json_path, png_path = save_realism_report(
        report, output.with_name(f"{output.stem}_realism.json"), png
    )
    summary = report["summary"]
    click.echo(
        f"Realism on {summary['n_pairs']} held-back pair(s): mean |RGB diff| simulated vs real "
        f"{summary['mad_simulated_vs_real']:.2f}, reference vs real "
        f"{summary['mad_reference_vs_real']:.2f}. Report: {json_path}, panel: {png_path}."
    )


def _describe(profile: Any) -> str:
    sharp = (
        f"blur sigma {profile.blur_sigma:.2f} px"
        if profile.blur_sigma > 0
        else f"sharpen {profile.sharpen_amount:.2f}"
    )
    gamma = ", ".join(f"{g:.2f}" for g in profile.gamma)
    return (
        f"gamma ({gamma}); levels {profile.levels}; saturation {profile.saturation:.2f}; "
        f"{sharp}; read noise {profile.noise_read:.4f}; JPEG {profile.jpeg_quality}"
    )
