"""The ``faceval`` command line: a thin layer over the Python API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from faceval import __version__
from faceval.datasets import DatasetError
from faceval.demo import CITATION, DemoDataError, prepare_demo_data
from faceval.model_files import ModelError, list_models
from faceval.pipeline import EvaluationRequest, metrics_from_embeddings_file, run_evaluation


def _fail(message: str) -> None:
    raise click.ClickException(message)


def print_summary(document: dict[str, Any], out_dir: Path) -> None:
    """The short terminal summary: per model images, failures, pairs, AUC, EER, best-F1 threshold, TAR@1e-3."""
    dataset = document["dataset"]
    click.echo(
        f"\n{dataset['n_images']} images of {dataset['n_identities']} identities"
        + (f" ({dataset['n_skipped_files']} other files set aside)" if dataset.get("n_skipped_files") else "")
    )
    header = (
        f"{'model':<16}{'images':>8}{'failed':>8}{'pairs':>12}{'AUC':>8}{'EER':>8}{'best-F1 thr':>13}"
        f"{'F1':>7}{'TAR@FAR1e-3':>13}"
    )
    click.echo(header)
    for name, model in document["models"].items():
        if model["auc"] is None:
            click.echo(f"{name:<16}{model['n_images']:>8}{model['n_failed']:>8}{model['n_pairs']:>12}   (no metrics)")
            continue
        tar = model["tar_at_far"]["1e-3"]
        tar_text = f"{tar['tar']:.3f}" + ("" if tar["supported"] else "*")
        click.echo(
            f"{name:<16}{model['n_images']:>8}{model['n_failed']:>8}{model['n_pairs']:>12}{model['auc']:>8.4f}"
            f"{model['eer']['value']:>8.4f}{model['best_f1']['threshold']:>13.4f}{model['best_f1']['f1']:>7.3f}"
            f"{tar_text:>13}"
        )
        reference = model.get("at_reference_threshold")
        if reference:
            click.echo(
                f"{'':<16}at the customary threshold {reference['threshold']:g} ({model['units']}): "
                f"FMR {reference['fmr']:.4f}, FNMR {reference['fnmr']:.4f}, F1 {reference['f1']:.3f}"
            )
    if any(m["auc"] is not None and not m["tar_at_far"]["1e-3"]["supported"] for m in document["models"].values()):
        click.echo("* too few impostor pairs to measure FMR 1e-3 (rule of three: need 3,000)")
    for note in document["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"results: {out_dir / 'metrics.json'}")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="faceval")
def main() -> None:
    """How well does a face-recognition model verify your own people, and at which threshold?"""


@main.command()
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "models",
    multiple=True,
    default=("dlib",),
    show_default=True,
    help="Model to evaluate; repeat to compare: dlib, japanese-face:PATH, sface[:PATH], arcface:PATH, "
    "or onnx:PATH with --spec. 'faceval models' lists them.",
)
@click.option(
    "--spec",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML or JSON preprocessing spec for --model onnx:PATH (input size, crop, colour, mean/std, ...).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("results"),
    show_default=True,
    help="Folder for metrics.json, CSV files and plots.",
)
@click.option(
    "--layout",
    type=click.Choice(["auto", "flat", "folders", "manifest"]),
    default="auto",
    show_default=True,
    help="Dataset layout: flat name_xxx files, one folder per identity, or a CSV.",
)
@click.option(
    "--manifest",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A CSV with path,identity[,attributes] columns (paths relative to the CSV).",
)
@click.option(
    "--dlib-detector",
    type=click.Choice(["hog", "cnn", "none"]),
    default="hog",
    show_default=True,
    help="dlib face detector; 'none' uses the whole image as the face (pre-cropped sets).",
)
@click.option(
    "--dlib-upsample",
    type=click.IntRange(0, 4),
    default=1,
    show_default=True,
    help="Times dlib's detector doubles the image first (finds smaller faces, slower).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def evaluate(
    sources: tuple[Path, ...],
    models: tuple[str, ...],
    spec: Path | None,
    out: Path,
    layout: str,
    manifest: Path | None,
    dlib_detector: str,
    dlib_upsample: int,
    quiet: bool,
) -> None:
    """Embed every image of SOURCES with each model and measure verification over all pairs.

    SOURCES is a folder of face images (flat 'name_001.png' files, or one sub-folder per identity) or a
    manifest CSV.
    """
    if manifest is not None:
        sources = (*sources, manifest)
    if not sources:
        _fail("give a dataset folder or --manifest CSV, e.g. faceval evaluate ./faces --model dlib")
    request = EvaluationRequest(
        sources=sources,
        models=models,
        out_dir=out,
        layout=layout,
        dlib_options={"detector": dlib_detector, "upsample": dlib_upsample},
        spec_file=spec,
        progress=not quiet,
    )
    try:
        document = run_evaluation(request, command=sys.argv)
    except (DatasetError, ModelError, ValueError, FileNotFoundError) as error:
        _fail(str(error))
    print_summary(document, out)


@main.command()
@click.argument("embeddings", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--metric",
    type=click.Choice(["euclidean", "cosine"]),
    required=True,
    help="How the vectors are compared: euclidean distance (dlib) or cosine similarity.",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("results"), show_default=True)
def metrics(embeddings: Path, metric: str, out: Path) -> None:
    """Compute the metrics from EMBEDDINGS, an .npz file with 'labels' and 'vectors' arrays made elsewhere."""
    try:
        document = metrics_from_embeddings_file(embeddings, metric, out, command=sys.argv)
    except ValueError as error:
        _fail(str(error))
    print_summary(document, out)


@main.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    help="A local copy of the AT&T faces (files are matched by checksum): for offline machines.",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/demo"), show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(data: Path | None, out: Path, quiet: bool) -> None:
    """Download (once, checksum-verified) the public AT&T faces and evaluate dlib on them."""
    try:
        folder = prepare_demo_data(data, progress=not quiet)
    except DemoDataError as error:
        _fail(str(error))
    click.echo(f"demo data: {folder} (AT&T Database of Faces; cite {CITATION})")
    request = EvaluationRequest(sources=(folder,), out_dir=out, progress=not quiet)
    print_summary(run_evaluation(request, command=sys.argv), out)


@main.command()
def models() -> None:
    """List the known model files: name, sha256, licence, and where each was found or how to get it."""
    for entry in list_models():
        click.echo(f"{entry['name']}  ({entry['file']})")
        click.echo(f"    {entry['description']}")
        click.echo(f"    sha256:  {entry['sha256'] or 'not pinned (proprietary: checked by your own copy)'}")
        click.echo(f"    licence: {entry['licence']}")
        click.echo(f"    found:   {entry['found_at']}" if entry["found_at"] else f"    get it:  {entry['how_to_get']}")


if __name__ == "__main__":  # pragma: no cover
    main()
