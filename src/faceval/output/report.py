"""Writing an evaluation to disk: ``metrics.json``, ``images.csv``, per-model sweeps and figures.

Layout of an output folder (the schema of ``metrics.json`` is documented in ``docs/metrics-json.md``)::

    metrics.json            every figure, per model, with versions and model-file checksums
    images.csv              one row per image and model: status, failure reason, faces found, box
    models.csv              the comparison table: one row per model
    roc.png roc_log.png det.png          every model on one figure
    <model>/sweep.csv       the thresholds where a rate changes visibly, every FMR decade (model units)
    <model>/sweep_full.npz  every threshold of the table (only when asked: ``full_sweep``)
    <model>/sweep_grid.csv  the seed's grid 0.10 .. 1.09 step 0.01
    <model>/threshold_metrics.png  <model>/score_histogram.png
"""

from __future__ import annotations

import dataclasses
import platform
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from faceval import __version__
from faceval.atomic import atomic_write, write_csv, write_json
from faceval.models.extraction import EmbeddingSet
from faceval.models.scoring import Similarity
from faceval.output import plots
from faceval.output.figure_process import FigureProcess
from faceval.output.group_presentation import group_report_dict, write_group_files
from faceval.output.results import ModelFigures, ModelResult, Result, model_table
from faceval.sources.datasets import Dataset
from faceval.stats.metrics import Sweep, readable_sweep, roc_curve, seed_grid, sweep_at, threshold_sweep

SCHEMA_VERSION = 1
_PACKAGES = (
    "numpy",
    "scipy",
    "pillow",
    "dlib-bin",
    "face_recognition_models",
    "onnxruntime",
    "onnx",
    "opencv-python-headless",
    "matplotlib",
    "click",
)


def environment() -> dict[str, Any]:
    """Python, platform and installed versions of faceval's libraries, so every result can be reproduced."""
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "faceval": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
    }


def metrics_document(result: Result, command: Iterable[str] | None = None) -> dict[str, Any]:
    """The whole ``metrics.json`` document."""
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": list(command) if command is not None else None,
        "environment": environment(),
        "dataset": result.population,
        "models": {
            name: {
                **figures.to_dict(),
                **(group_report_dict(result.groups[name]) if name in result.groups else {}),
                **result.evaluation.model_extras.get(name, {}),
            }
            for name, figures in result.models.items()
        },
        "comparisons": [comparison.to_dict() for comparison in result.comparisons],
        "notes": result.notes,
    }


def write_sweep_csv(path: Path, sweep: Sweep, similarity: Similarity) -> None:
    """One row per threshold (model units): counts and rates at that threshold."""
    columns = sweep.columns()
    columns["threshold"] = similarity.to_model_units(sweep.threshold) + 0.0
    write_csv(path, list(columns), zip(*(column.tolist() for column in columns.values()), strict=True))


def write_sweep_npz(path: Path, sweep: Sweep, similarity: Similarity) -> None:
    """Every row of a sweep, one compressed array per column of ``sweep.csv`` (threshold in model units)."""
    columns = sweep.columns()
    columns["threshold"] = similarity.to_model_units(sweep.threshold) + 0.0
    with atomic_write(path, "wb") as handle:
        np.savez_compressed(handle, **columns)


def write_images_csv(path: Path, dataset: Dataset, embedding_sets: Sequence[EmbeddingSet]) -> None:
    """One row per image and model (``embedded`` or ``failed`` with its reason), plus set-aside files."""
    header = [
        "path",
        "identity",
        "model",
        "status",
        "failure_reason",
        "faces_found",
        "box_left_top_right_bottom",
        "detector_score",
    ]

    def rows() -> Iterable[list[Any]]:
        for embeddings in embedding_sets:
            for record, result in zip(dataset.records, embeddings.results, strict=True):
                detection = result.detection
                yield [
                    dataset.relative_path(record),
                    record.identity,
                    embeddings.model,
                    "embedded" if result.ok else "failed",
                    result.failure or "",
                    detection.faces_found if detection else "",
                    " ".join(map(str, detection.box)) if detection and detection.box else "",
                    f"{detection.score:.4f}" if detection and detection.score is not None else "",
                ]
        for path_, reason in dataset.skipped:
            yield [path_.as_posix(), "", "", "skipped", reason, "", "", ""]

    write_csv(path, header, rows())


def write_models_csv(path: Path, result: Result) -> None:
    """The comparison table: one row per model, thresholds in each model's own units."""
    header, rows = model_table(result)
    write_csv(path, header, rows)


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def draw_model_figures(folder: Path, result: ModelResult, figures: ModelFigures) -> None:
    """The seed's metrics-versus-threshold figure and the score histograms, thresholds in model units."""
    similarity, table = result.similarity, result.table
    model_scores = similarity.to_model_units(table.thresholds)
    # A fine grid over the observed range shows what the seed's 0.01 grid hides (cosine thresholds below 0.1).
    grid = np.linspace(model_scores.min(), model_scores.max(), 400)
    sweep = sweep_at(table, similarity.from_model_units(grid))
    plots.plot_threshold_metrics(
        grid,
        {"Accuracy": sweep.accuracy, "Precision": sweep.precision, "Recall": sweep.recall, "F1": sweep.f1},
        folder / "threshold_metrics.png",
        units=similarity.model_units,
        reverse_x=not similarity.larger_is_more_similar_in_model_units,
        best_threshold=figures.best_f1.threshold,
        title=f"{result.name}: accuracy, precision, recall, F1",
    )
    markers = {"EER threshold": figures.eer.threshold, "best-F1 threshold": figures.best_f1.threshold}
    tar = figures.tar_at_far.get("1e-3")
    if tar and tar.threshold is not None:
        markers["FMR 1e-3 threshold"] = tar.threshold
    if figures.at_reference_threshold is not None:
        markers["customary threshold"] = figures.at_reference_threshold.threshold
    plots.plot_score_histograms(
        model_scores,
        table.genuine,
        table.impostor,
        folder / "score_histogram.png",
        units=similarity.model_units,
        markers=markers,
        title=f"{result.name}: genuine and impostor scores",
    )


def draw_roc_figures(out: Path, curves: Sequence[plots.Curve]) -> None:
    """``roc.png``, ``roc_log.png`` and ``det.png``: every model on one figure."""
    plots.plot_roc(curves, out / "roc.png")
    plots.plot_roc(curves, out / "roc_log.png", log_fmr=True, title="ROC (log FMR)")
    plots.plot_det(curves, out / "det.png")


def write_report(
    out_dir: str | Path,
    result: Result,
    command: Iterable[str] | None = None,
    full_sweep: bool = False,
    figures: FigureProcess | None = None,
) -> dict[str, Any]:
    """Write every output file of an evaluation into ``out_dir`` and return the ``metrics.json`` document.

    ``sweep.csv`` holds the rows of `faceval.stats.metrics.readable_sweep` (a few thousand at most, at any size); with
    ``full_sweep`` every row of the table also goes to ``sweep_full.npz`` (one array per column). ``figures``
    draws the PNG files (a `FigureProcess` started with the command draws them in its own process while this one
    writes the tables); without it they are drawn here."""
    here = FigureProcess(background=False)
    figures = figures or here
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    document = metrics_document(result, command)
    for summary in document["models"].values():
        summary["files"] = {}  # each model's files, listed as they are written
    # The figures are submitted first, so that a `FigureProcess` draws them while the files are written here;
    # without one they are drawn at `wait`, after the tables.
    curves = []
    for name, model in result.evaluation.models.items():
        model_figures = result.models[name]
        if model_figures.auc is not None:
            figures.submit(draw_model_figures, out / _safe_name(name), model, model_figures)
            roc = roc_curve(model.table)
            curves.append(plots.Curve(f"{name} (AUC = {model_figures.auc:.3f})", roc.fmr, roc.tmr))
    if curves:
        figures.submit(draw_roc_figures, out, curves)
    # A report of one group holds the pairs' tables twice over and gets groups.csv only (its figures would repeat the
    # model's): written here, not sent to the figure process.
    # The per-identity influences (kept for model comparisons, with their identity-pair tables) are not drawn: they
    # stay here rather than cross the pipe.
    group_files = {
        name: (figures if len(report.groups) > 1 else here).submit(
            write_group_files, out / _safe_name(name), dataclasses.replace(report, influences={}), name
        )
        for name, report in result.groups.items()
    }
    # The main result first, then the tables: a failing figure or a full disk must not lose them.
    write_json(out / "metrics.json", document)
    write_models_csv(out / "models.csv", result)
    if result.dataset is not None and result.embedding_sets:
        write_images_csv(out / "images.csv", result.dataset, result.embedding_sets)
    for name, model in result.evaluation.models.items():
        summary, folder = document["models"][name], out / _safe_name(name)
        if result.models[name].auc is None:
            continue
        write_sweep_csv(folder / "sweep.csv", readable_sweep(model.table), model.similarity)
        if full_sweep:
            write_sweep_npz(folder / "sweep_full.npz", threshold_sweep(model.table), model.similarity)
            summary["files"]["sweep_full"] = f"{folder.name}/sweep_full.npz"
        grid = seed_grid()
        write_sweep_csv(
            folder / "sweep_grid.csv",
            sweep_at(model.table, model.similarity.from_model_units(grid)),
            model.similarity,
        )
        summary["files"] |= {
            key: f"{folder.name}/{file}"
            for key, file in (
                ("sweep", "sweep.csv"),
                ("sweep_grid", "sweep_grid.csv"),
                ("threshold_metrics", "threshold_metrics.png"),
                ("score_histogram", "score_histogram.png"),
            )
        }
    here.wait()
    figures.wait()
    for name, written in group_files.items():
        summary, folder = document["models"][name], out / _safe_name(name)
        group_entries = {key: f"{folder.name}/{file}" for key, file in written.result().items()}
        summary["files"] = {**group_entries, **summary["files"]}  # the group files first, as they always were
    write_json(out / "metrics.json", document)  # again, now listing every file written
    return document
