"""Writing an evaluation to disk: ``metrics.json``, ``images.csv``, per-model sweeps and figures.

Layout of an output folder (the schema of ``metrics.json`` is documented in ``docs/metrics-json.md``)::

    metrics.json            every figure, per model, with versions and model-file checksums
    images.csv              one row per image and model: status, failure reason, faces found, box
    models.csv              the comparison table: one row per model
    roc.png roc_log.png det.png          every model on one figure
    <model>/sweep.csv       every distinct threshold, in the model's own units
    <model>/sweep_grid.csv  the seed's grid 0.10 .. 1.09 step 0.01
    <model>/threshold_metrics.png  <model>/score_histogram.png
"""

from __future__ import annotations

import copy
import platform
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from faceval import __version__, plots
from faceval.atomic import write_csv, write_json
from faceval.datasets import Dataset
from faceval.evaluate import Evaluation, ModelResult
from faceval.extraction import EmbeddingSet
from faceval.groups import write_group_files
from faceval.metrics import (
    DEFAULT_FARS,
    Sweep,
    excluded_share,
    failure_adjusted_rates,
    far_key,
    roc_curve,
    seed_grid,
    sweep_at,
    threshold_sweep,
    verification_summary,
)
from faceval.scoring import Similarity

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
# Thresholds users already apply, to show what their current setting does on their people: dlib's 0.6
# (face_recognition's default tolerance), a Euclidean distance.
REFERENCE_THRESHOLDS = {("dlib", Similarity.EUCLIDEAN): 0.6}


def reference_threshold(model: str, similarity: Similarity) -> float | None:
    """The customary threshold of a model, in its units, when it has one."""
    return REFERENCE_THRESHOLDS.get((model, similarity))


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


def summary_in_model_units(summary: dict[str, Any], similarity: Similarity) -> dict[str, Any]:
    """A `verification_summary` with every threshold converted to the model's own units."""
    converted = copy.deepcopy(summary)
    eer = converted["eer"]
    for key in ("threshold", "threshold_above", "threshold_below"):
        eer[key] = similarity.threshold_for_report(eer[key])
    converted["best_f1"]["threshold"] = similarity.threshold_for_report(converted["best_f1"]["threshold"])
    for figure in converted["tar_at_far"].values():
        figure["threshold"] = similarity.threshold_for_report(figure["threshold"])
    return converted


def _operating_point(sweep: Sweep, index: int = 0) -> dict[str, float]:
    point = sweep.at(index)
    return {name: float(getattr(point, name)[0]) for name in ("fmr", "fnmr", "precision", "recall", "f1", "accuracy")}


def add_failure_adjusted_rates(point: dict[str, Any], fte: float) -> None:
    """Add ``fnmr_with_failures`` and ``fmr_with_failures`` (`faceval.metrics.failure_adjusted_rates`) to an
    operating point that has ``fnmr`` and ``fmr``; ``fte`` is the share of images missing from the scored set."""
    point["fnmr_with_failures"], point["fmr_with_failures"] = failure_adjusted_rates(point["fnmr"], point["fmr"], fte)


def model_summary(result: ModelResult, dataset_images: int, fars: Sequence[float] = DEFAULT_FARS) -> dict[str, Any]:
    """The ``models.<name>`` entry of ``metrics.json``."""
    similarity = result.similarity
    entry: dict[str, Any] = {
        "similarity": similarity.value,
        "units": similarity.model_units,
        "accept_when": "distance <= threshold" if similarity is Similarity.EUCLIDEAN else "similarity >= threshold",
        "n_images": result.n_images,
        "n_failed": result.n_failed,
        "fte": result.n_failed / dataset_images if dataset_images else None,
        "fte_for_adjusted_rates": excluded_share(result.n_images, dataset_images),
        "n_pairs": result.table.n_genuine + result.table.n_impostor,
        "n_genuine": result.table.n_genuine,
        "n_impostor": result.table.n_impostor,
    }
    if result.table.n_genuine and result.table.n_impostor:
        entry.update(summary_in_model_units(verification_summary(result.table, fars), similarity))
        reference = reference_threshold(result.name, similarity)
        if reference is not None:
            sweep = sweep_at(result.table, [similarity.from_model_units(reference)])
            entry["at_reference_threshold"] = {"threshold": reference, **_operating_point(sweep)}
        fte = entry["fte_for_adjusted_rates"] or 0.0
        eer = entry["eer"]
        # At the EER threshold both rates equal the EER.
        eer["fnmr_with_failures"], eer["fmr_with_failures"] = failure_adjusted_rates(eer["value"], eer["value"], fte)
        for point in (entry["best_f1"], *entry["tar_at_far"].values(), entry.get("at_reference_threshold")):
            if point is not None:
                add_failure_adjusted_rates(point, fte)
    else:
        entry.update({"auc": None, "eer": None, "best_f1": None, "tar_at_far": {far_key(f): None for f in fars}})
    entry["model"] = result.description
    return entry


def metrics_document(evaluation: Evaluation, command: Iterable[str] | None = None) -> dict[str, Any]:
    """The whole ``metrics.json`` document."""
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": list(command) if command is not None else None,
        "environment": environment(),
        "dataset": evaluation.dataset,
        "models": {
            name: {
                **model_summary(result, evaluation.dataset["n_images"]),
                **(evaluation.groups[name].to_dict() if name in evaluation.groups else {}),
            }
            for name, result in evaluation.models.items()
        },
        "comparisons": [comparison.to_dict() for comparison in evaluation.comparisons],
        "notes": evaluation.notes,
    }


def write_sweep_csv(path: Path, sweep: Sweep, similarity: Similarity) -> None:
    """One row per threshold (model units): counts and rates at that threshold."""
    columns = sweep.columns()
    columns["threshold"] = similarity.to_model_units(sweep.threshold) + 0.0
    write_csv(path, list(columns), zip(*(column.tolist() for column in columns.values()), strict=True))


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


def write_models_csv(path: Path, document: dict[str, Any]) -> None:
    """The comparison table: one row per model, thresholds in each model's own units."""
    header = ["model", "units", "n_images", "n_failed", "fte", "n_genuine", "n_impostor", "auc", "eer",
              "eer_threshold", "tar_at_far_1e-3", "tar_threshold_1e-3", "best_f1", "best_f1_threshold"]  # fmt: skip

    def rows() -> Iterable[list[Any]]:
        for name, model in document["models"].items():
            scored = model["auc"] is not None
            tar = model["tar_at_far"]["1e-3"] if scored else None
            yield [
                name, model["units"], model["n_images"], model["n_failed"], model["fte"], model["n_genuine"],
                model["n_impostor"], model["auc"],
                model["eer"]["value"] if scored else None, model["eer"]["threshold"] if scored else None,
                tar["tar"] if tar else None, tar["threshold"] if tar else None,
                model["best_f1"]["f1"] if scored else None, model["best_f1"]["threshold"] if scored else None,
            ]  # fmt: skip

    write_csv(path, header, rows())


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def draw_model_figures(folder: Path, result: ModelResult, summary: dict[str, Any]) -> None:
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
        best_threshold=summary["best_f1"]["threshold"],
        title=f"{result.name}: accuracy, precision, recall, F1",
    )
    markers = {"EER threshold": summary["eer"]["threshold"], "best-F1 threshold": summary["best_f1"]["threshold"]}
    tar = summary["tar_at_far"].get("1e-3")
    if tar and tar["threshold"] is not None:
        markers["FMR 1e-3 threshold"] = tar["threshold"]
    if "at_reference_threshold" in summary:
        markers["customary threshold"] = summary["at_reference_threshold"]["threshold"]
    plots.plot_score_histograms(
        model_scores,
        table.genuine,
        table.impostor,
        folder / "score_histogram.png",
        units=similarity.model_units,
        markers=markers,
        title=f"{result.name}: genuine and impostor scores",
    )


def write_report(
    out_dir: str | Path,
    evaluation: Evaluation,
    dataset: Dataset | None = None,
    embedding_sets: Sequence[EmbeddingSet] = (),
    command: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Write every output file of an evaluation into ``out_dir`` and return the ``metrics.json`` document."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    document = metrics_document(evaluation, command)
    curves = []
    for name, result in evaluation.models.items():
        summary = document["models"][name]
        folder = out / _safe_name(name)
        summary["files"] = {}
        if name in evaluation.groups:
            written = write_group_files(folder, evaluation.groups[name], name)
            summary["files"].update({key: f"{folder.name}/{file}" for key, file in written.items()})
        if summary["auc"] is None:
            continue
        write_sweep_csv(folder / "sweep.csv", threshold_sweep(result.table), result.similarity)
        grid = seed_grid()
        write_sweep_csv(
            folder / "sweep_grid.csv",
            sweep_at(result.table, result.similarity.from_model_units(grid)),
            result.similarity,
        )
        draw_model_figures(folder, result, summary)
        summary["files"] |= {
            key: f"{folder.name}/{file}"
            for key, file in (
                ("sweep", "sweep.csv"),
                ("sweep_grid", "sweep_grid.csv"),
                ("threshold_metrics", "threshold_metrics.png"),
                ("score_histogram", "score_histogram.png"),
            )
        }
        roc = roc_curve(result.table)
        curves.append(plots.Curve(f"{name} (AUC = {summary['auc']:.3f})", roc.fmr, roc.tmr))
    if curves:
        plots.plot_roc(curves, out / "roc.png")
        plots.plot_roc(curves, out / "roc_log.png", log_fmr=True, title="ROC (log FMR)")
        plots.plot_det(curves, out / "det.png")
    write_models_csv(out / "models.csv", document)
    if dataset is not None and embedding_sets:
        write_images_csv(out / "images.csv", dataset, embedding_sets)
    write_json(out / "metrics.json", document)
    return document
