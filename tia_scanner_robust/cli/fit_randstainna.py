"""``tia-scanner-robust fit-randstainna``: fit a RandStainNA template from images.

A thin wrapper over :func:`tia_scanner_robust.augmentations.randstainna.fit_randstainna_template`:
folders are expanded to their image files, images are streamed one at a time,
and the template is written atomically as YAML.

Examples:
    >>> from click.testing import CliRunner
    >>> result = CliRunner().invoke(fit_randstainna, ["--help"])
    >>> "--color-space" in result.output
    True

"""

from __future__ import annotations

from pathlib import Path

import click

from tia_scanner_robust.cli._options import no_progress_option

__all__ = ["fit_randstainna"]


@click.command(
    "fit-randstainna",
    short_help="Fit a RandStainNA template (per-channel distributions) from images.",
)
@click.argument(
    "inputs",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    metavar="IMAGES_OR_DIR...",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Template YAML file to write.",
)
@click.option(
    "--color-space",
    type=click.Choice(["LAB", "HSV", "HED"], case_sensitive=False),
    default="LAB",
    show_default=True,
    help="Colour space of the template.",
)
@click.option(
    "--distribution",
    type=click.Choice(["auto", "normal", "laplace"]),
    default="auto",
    show_default=True,
    help="Family per series: 'auto' picks normal or laplace by log-likelihood.",
)
@click.option("--recursive", is_flag=True, help="Also collect images from subfolders.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@no_progress_option(aliases=("--quiet",))
def fit_randstainna(  # noqa: PLR0917 - click passes options positionally
    inputs: tuple[Path, ...],
    output: Path,
    color_space: str,
    distribution: str,
    recursive: bool,
    overwrite: bool,
    no_progress: bool,
) -> None:
    """Fit a RandStainNA template from IMAGES_OR_DIR (image files and/or folders).

    Each image is converted to the colour space and reduced to its per-channel
    mean and std; the template stores the distribution (mean, std, normal or
    laplace) of each of these six statistics across the images. Use it with
    ``RandStainNA(templates="template.yaml")``.
    """
    # Lazy imports keep ``tia-scanner-robust --help`` fast.
    from tia_scanner_robust import __version__  # noqa: PLC0415
    from tia_scanner_robust.augmentations.randstainna import (  # noqa: PLC0415
        expand_image_paths,
        fit_randstainna_template,
        save_randstainna_template,
    )

    if output.exists() and not overwrite:
        msg = f"Output file exists: {output} (pass --overwrite to replace it)."
        raise click.ClickException(msg)
    try:
        paths = expand_image_paths(inputs, recursive=recursive)
        template = fit_randstainna_template(
            paths,
            color_space.upper(),
            distribution=distribution,
            metadata={
                "created_by": f"tia-scanner-robust {__version__} fit-randstainna",
                "inputs": [str(p) for p in inputs],
            },
            verbose=not no_progress,
        )
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    save_randstainna_template(template, output)
    click.echo(
        f"Wrote {template.color_space} template fitted on {template.n_images} images to {output}"
    )
