"""End to end: dataset folders -> embeddings with each model -> all-pair metrics -> report on disk."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceval.atomic import output_folder
from faceval.compute.engine import EngineOptions, open_engine
from faceval.compute.gpu import dlib_cuda_note
from faceval.errors import InputError
from faceval.evaluation import evaluate_embeddings
from faceval.models.embedders import Embedder, EmbeddingResult, ModelSpec, parse_model_argument
from faceval.models.extraction import EmbeddingSet, RemoteWorkers, extract_embeddings
from faceval.models.onnx_embedder import available_cores
from faceval.models.scoring import Similarity
from faceval.models.store import EmbeddingStore
from faceval.output.figure_process import FigureProcess
from faceval.output.results import Evaluation, Result, model_figures, reference_threshold
from faceval.protocols import ProtocolRequest, evaluate_protocol, load_protocol
from faceval.sources.datasets import Dataset, ImageRecord, combine_datasets, load_dataset
from faceval.stats.audit import (
    Audit,
    AuditOptions,
    audit_embeddings,
    duplicate_paths_to_exclude,
    paths_to_exclude,
)
from faceval.stats.groups import GroupOptions, group_labels, load_thresholds


@dataclass(frozen=True)
class EmbeddingOptions:
    """How embeddings are computed and kept: the store (``cache=None`` is the default one), workers, heat."""

    cache: str | Path | None = None
    use_cache: bool = True
    jobs: int | None = None
    max_temp: float | None = None
    progress: bool = True


@dataclass(frozen=True)
class GroupRequest:
    """The group analysis: groups from ``group_by`` columns (several dataset folders: their folder names) or an
    identity-attribute CSV; ``thresholds`` in each model's units by model name (``""``: every model)."""

    group_by: Sequence[str] = ()
    attribute_csv: str | Path | None = None
    target_fmr: float = 1e-3
    thresholds: Mapping[str, float] = field(default_factory=dict)
    calibrate: float | None = None
    threshold_from: str | Path | None = None
    n_resamples: int = 1000
    intervals: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class OutputOptions:
    """The audit (with the first model), what to leave out, and ``report.html`` (``lang``: en | ja)."""

    audit: bool = True
    audit_options: AuditOptions = field(default_factory=AuditOptions)
    exclude_csv: str | Path | None = None
    exclude_duplicates: bool = False
    html: bool = True
    lang: str = "en"
    full_sweep: bool = False


@dataclass(frozen=True)
class SourcesRequest:
    """What every command that embeds images is asked: the data, the models, where results go, how to embed."""

    sources: Sequence[str | Path]
    models: Sequence[str] = ("dlib",)
    out_dir: str | Path = "results"
    layout: str = "auto"
    dlib_options: Mapping[str, Any] = field(default_factory=dict)
    spec_file: str | Path | None = None
    embedding: EmbeddingOptions = field(default_factory=EmbeddingOptions)


@dataclass(frozen=True)
class EvaluationRequest(SourcesRequest):
    """What ``faceval evaluate`` was asked to do."""

    groups: GroupRequest = field(default_factory=GroupRequest)
    protocol: ProtocolRequest = field(default_factory=ProtocolRequest)
    outputs: OutputOptions = field(default_factory=OutputOptions)
    engine: EngineOptions = field(default_factory=EngineOptions)


def load_sources(sources: Sequence[str | Path], layout: str = "auto") -> Dataset:
    """One dataset from one source, or several combined with each source's folder name as its group."""
    return combine_datasets([load_dataset(source, layout) for source in sources])  # type: ignore[arg-type]


def model_specs(
    models: Sequence[str],
    dlib_options: Mapping[str, Any] | None = None,
    spec_file: str | Path | None = None,
    jobs: int | None = None,
    device: str = "cpu",
) -> list[ModelSpec]:
    """`ModelSpec` for each ``--model`` value; ONNX Runtime gets an equal share of the cores per worker, and
    the ``device`` (`faceval.models.onnx_embedder.onnx_providers`)."""
    workers = jobs or available_cores()
    threads = max(1, available_cores() // workers)
    onnx_options: dict[str, Any] = {"threads": threads} | ({"device": device} if device != "cpu" else {})
    specs = [
        parse_model_argument(text, dlib_options=dlib_options, spec_file=spec_file, onnx_options=onnx_options)
        for text in models
    ]
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"model {', '.join(repeated)} is given twice; each --model must name a different model")
    return specs


def embed_dataset(
    dataset: Dataset,
    embedders: Sequence[ModelSpec | Embedder],
    options: EmbeddingOptions,
    workers: RemoteWorkers | None = None,
) -> list[EmbeddingSet]:
    """Every model's embeddings of ``dataset``, reusing and filling the embedding store.

    Models given as `ModelSpec` are all built before any image is embedded, so that a bad model file fails in
    seconds rather than after an hour of another model's work. With ``workers`` (a Dask cluster) the images are
    embedded there, each worker building the models from their `ModelSpec`.
    """
    recipes = list(embedders)
    embedders = [item.build() if isinstance(item, ModelSpec) else item for item in embedders]
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(EmbeddingStore(options.cache)) if options.use_cache else None
        return [
            extract_embeddings(
                dataset,
                # Remote workers build from the recipe: a model built here may hold this machine's paths or device.
                recipe if workers is not None else embedder,
                jobs=options.jobs,
                store=store,
                progress=options.progress,
                max_temp=options.max_temp,
                # A model with a batch axis runs several images per inference call.
                batch_size=getattr(embedder, "batch_size", 1),
                workers=workers,
            )
            for recipe, embedder in zip(recipes, embedders, strict=True)
        ]


def group_options(
    request: GroupRequest, models: Mapping[str, Similarity], customary: bool = True
) -> dict[str, GroupOptions]:
    """Each model's `GroupOptions`; its threshold is the user's, else the customary one (dlib 0.6), if any."""
    unknown = sorted(set(request.thresholds) - {"", *models})
    if unknown:
        raise InputError(f"--threshold names {', '.join(unknown)}, but the models are {', '.join(models)}")
    return {
        model: GroupOptions(
            target_fmr=request.target_fmr,
            threshold=request.thresholds.get(
                model, request.thresholds.get("", reference_threshold(model, similarity) if customary else None)
            ),
            calibrate=request.calibrate,
            threshold_from=None if request.threshold_from is None else load_thresholds(request.threshold_from, model),
            n_resamples=request.n_resamples,
            intervals=request.intervals,
            seed=request.seed,
        )
        for model, similarity in models.items()
    }


def run_evaluation(request: EvaluationRequest, command: Iterable[str] | None = None) -> Result:
    """Run the whole evaluation and write its files into ``request.out_dir``."""
    with output_folder(request.out_dir):  # first: an unusable or busy folder fails before the embedding
        result = evaluate_sources(request)
        result.save(
            request.out_dir,
            command,
            html=request.outputs.html,
            lang=request.outputs.lang,
            full_sweep=request.outputs.full_sweep,
        )
    return result


def evaluate_sources(request: EvaluationRequest) -> Result:
    """Embed the sources with every model (through the store) and evaluate them, writing nothing (but the
    ``--save-scores`` Parquet files into ``request.out_dir``).

    Everything that can be checked is checked before any image is embedded (the models, group columns,
    thresholds, pair lists and templates): a typo should fail in seconds, not after an hour of embedding.
    """
    protocol = load_protocol(request.protocol)
    dataset, protocol_notes = protocol.restrict(load_sources(request.sources, request.layout))
    specs = model_specs(
        request.models, request.dlib_options, request.spec_file, request.embedding.jobs, request.engine.device
    )
    embedders = [spec.build() for spec in specs]
    several_folders = len(request.sources) > 1 and request.groups.attribute_csv is None
    group_by = tuple(request.groups.group_by) or (("group",) if several_folders else ())
    groups = group_labels(dataset, None, group_by or None, request.groups.attribute_csv)
    # A customary threshold (dlib's 0.6) means nothing between normalised templates.
    customary = request.protocol.templates is None
    options = group_options(request.groups, {embedder.name: embedder.similarity for embedder in embedders}, customary)
    with open_engine(request.engine) as engine:
        embedding_sets = embed_dataset(
            dataset, specs if engine.workers is not None else embedders, request.embedding, engine.workers
        )
        outputs = request.outputs
        audit = audit_embeddings(dataset, embedding_sets[0], outputs.audit_options) if outputs.audit else None
        exclusion = None
        excluded = excluded_paths(dataset, outputs, audit)
        if excluded:
            before = figures_to_compare(evaluate_embeddings(dataset, embedding_sets, pair_feed=engine.pair_feed))
            dataset, embedding_sets, groups = without_paths(dataset, embedding_sets, groups, excluded)
            source = str(outputs.exclude_csv) if outputs.exclude_csv else "--exclude-duplicates"
            exclusion = {"source": source, "paths": sorted(excluded), "before": before}
        evaluation = evaluate_protocol(
            protocol,
            dataset,
            embedding_sets,
            groups,
            options,
            group_by,
            request.out_dir,
            request.embedding.progress,
            engine.pair_feed,
        )
    evaluation.notes[:0] = protocol_notes
    if exclusion is not None:
        exclusion["after"] = figures_to_compare(evaluation)
        evaluation.notes.append(f"{len(excluded)} images left out ({exclusion['source']}); report.html compares")
    evaluation.notes.extend(device_notes(specs, request.engine.device))
    return Result(evaluation, dataset, embedding_sets, audit=audit, exclusion=exclusion)


def excluded_paths(dataset: Dataset, outputs: OutputOptions, audit: Audit | None) -> set[str]:
    """The dataset-relative paths to leave out: those an audit.csv marks, and/or the extra duplicate copies."""
    excluded: set[str] = set()
    if outputs.exclude_csv is not None:
        excluded |= paths_to_exclude(outputs.exclude_csv)
    if outputs.exclude_duplicates:
        if audit is None:
            raise InputError("--exclude-duplicates needs the audit; drop --no-audit")
        excluded |= duplicate_paths_to_exclude(audit)
    known = {dataset.relative_path(record) for record in dataset.records}
    unknown = sorted(excluded - known)
    if unknown:
        raise InputError(
            f"{outputs.exclude_csv}: {len(unknown)} paths are not in this dataset (first: {unknown[0]}); give the "
            "same data folders as the run that wrote it"
        )
    return excluded


def without_paths(
    dataset: Dataset, embedding_sets: Sequence[EmbeddingSet], groups: np.ndarray | None, excluded: set[str]
) -> tuple[Dataset, list[EmbeddingSet], np.ndarray | None]:
    """The dataset, embeddings and group labels without the records at ``excluded`` (dataset-relative paths)."""
    keep = np.array([dataset.relative_path(record) not in excluded for record in dataset.records])
    records = tuple(record for record, kept in zip(dataset.records, keep, strict=True) if kept)
    kept_sets = [
        dataclasses.replace(
            embeddings, results=tuple(r for r, kept in zip(embeddings.results, keep, strict=True) if kept)
        )
        for embeddings in embedding_sets
    ]
    return dataclasses.replace(dataset, records=records), kept_sets, None if groups is None else groups[keep]


def figures_to_compare(evaluation: Evaluation) -> dict[str, dict[str, Any]]:
    """Per model the figures shown before and after an exclusion: images, AUC, EER, TAR at FMR 1e-3."""
    figures = {}
    for name, result in evaluation.models.items():
        model = model_figures(result, evaluation.dataset["n_images"])
        tar = model.tar_at_far.get("1e-3")
        figures[name] = {
            "n_images": model.n_images,
            "auc": model.auc,
            "eer": None if model.eer is None else model.eer.value,
            "tar_at_far_1e-3": None if tar is None else tar.tar,
        }
    return figures


def device_notes(specs: Sequence[ModelSpec], device: str) -> list[str]:
    """What the user should know about where the models ran (dlib without CUDA when a GPU was asked for)."""
    note = dlib_cuda_note(device) if any(spec.kind == "dlib" for spec in specs) else None
    return [note] if note else []


def load_embeddings_file(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``labels``, ``vectors`` and the optional arrays (``paths``, ``failed_paths``, ``failed_reasons``,
    ``similarity``; ``roles`` and ``groups`` for ``faceval identify``) of an .npz file, validated, with errors
    that say what is wrong."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable .npz file ({error})") from error
    with archive:
        missing = [key for key in ("labels", "vectors") if key not in archive.files]
        if missing:
            raise InputError(
                f"{path}: needs arrays 'labels' and 'vectors' (missing {', '.join(missing)}; "
                f"it has {', '.join(archive.files) or 'none'})"
            )
        labels, vectors = archive["labels"], archive["vectors"]
        extras = {
            key: archive[key]
            for key in ("paths", "failed_paths", "failed_reasons", "similarity", "roles", "groups")
            if key in archive.files
        }
    if vectors.dtype.kind not in "iuf":
        raise InputError(f"{path}: 'vectors' must be numbers, got {vectors.dtype} values")
    if vectors.ndim != 2 or len(labels) != len(vectors):
        raise InputError(
            f"{path}: 'vectors' must be 2-D with one row per label, got {vectors.shape} for {len(labels)} labels"
        )
    if not np.isfinite(vectors).all():
        rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        raise InputError(f"{path}: 'vectors' rows {rows[:10].tolist()} contain NaN or infinity")
    return labels.astype(str), vectors.astype(np.float64), extras


def file_similarity(path: Path, metric: str | None, extras: Mapping[str, np.ndarray]) -> Similarity:
    """How an embeddings file's vectors compare: ``--metric``, else what the file says; both must agree."""
    stored = str(extras["similarity"]) if "similarity" in extras else None
    if metric is None and stored is None:
        raise InputError(f"{path}: the file does not say how its vectors compare; give --metric euclidean|cosine")
    if metric is not None and stored is not None and metric != stored:
        raise InputError(f"{path}: its vectors are compared by {stored}, not {metric}; drop --metric")
    return Similarity(metric or stored)


def evaluate_vectors(
    vectors: Any,
    labels: Sequence[str],
    similarity: Similarity | str,
    *,
    name: str = "embeddings",
    root: str | Path = ".",
    paths: Sequence[str] | None = None,
    failed_paths: Sequence[str] = (),
    failed_reasons: Sequence[str] | None = None,
    groups: GroupRequest | None = None,
    description: Mapping[str, Any] | None = None,
    protocol: ProtocolRequest | None = None,
    out_dir: str | Path | None = None,
    progress: bool = False,
    engine: EngineOptions | None = None,
) -> Result:
    """The figures of vectors made elsewhere, one per labelled image; failures (images without a vector) count in
    the FTE. ``groups`` sets the target FMR, thresholds and bootstrap (no grouping columns here); ``protocol`` a
    pair list or templates (keys are ``paths``), ``out_dir`` where ``--save-scores`` writes; ``progress`` shows a
    progress bar while millions of pairs are scored; ``engine`` where the pairs are scored (a Dask cluster, a GPU;
    default: this process, or a GPU found by ``--device auto``)."""
    chosen = load_protocol(protocol or ProtocolRequest())
    similarity = Similarity(similarity)
    vectors = np.asarray(vectors, dtype=np.float64)
    labels = [str(label) for label in labels]
    if vectors.ndim != 2 or len(labels) != len(vectors):
        raise InputError(f"vectors must be 2-D with one row per label, got {vectors.shape} for {len(labels)} labels")
    root = Path(root)
    paths = [f"row {index}" for index in range(len(labels))] if paths is None else list(paths)
    reasons = ["failed"] * len(failed_paths) if failed_reasons is None else list(failed_reasons)
    # Failed images have no identity; they count as failures, never as pairs.
    records = [ImageRecord(root / str(p), label) for p, label in zip(paths, labels, strict=True)]
    records += [ImageRecord(root / str(p), "") for p in failed_paths]
    results = [EmbeddingResult(vector) for vector in vectors]
    results += [EmbeddingResult(None, failure=str(reason)) for reason in reasons]
    dataset = Dataset(root, "embeddings", tuple(records))
    description = dict(description or {"name": name, "kind": "embeddings", "similarity": similarity.value})
    embeddings = EmbeddingSet(name, similarity, description, tuple(results))
    request = groups or GroupRequest()
    options = group_options(request, {name: similarity}, customary=chosen.templates is None)
    with open_engine(engine) as running:
        evaluation = evaluate_protocol(
            chosen, dataset, [embeddings], None, options, (), out_dir, progress, running.pair_feed
        )
    if chosen.templates is None:
        evaluation.dataset.update(n_identities=len(set(labels)))
    return Result(evaluation)


def metrics_from_embeddings_file(
    path: str | Path,
    metric: str | None,
    out_dir: str | Path,
    command: Iterable[str] | None = None,
    groups: GroupRequest | None = None,
    protocol: ProtocolRequest | None = None,
    html: bool = True,
    lang: str = "en",
    full_sweep: bool = False,
    engine: EngineOptions | None = None,
    progress: bool = True,
) -> Result:
    """``faceval metrics``: the same figures from embeddings made elsewhere; the model is named after the file.

    ``metric`` may be left out when the file says how its vectors compare (``faceval embed`` files do). The
    failures such a file lists (``failed_paths``, ``failed_reasons``) count in the FTE.
    """
    path = Path(path)
    # The figures' process imports matplotlib while the statistics run.
    with output_folder(out_dir), FigureProcess() as figures:
        labels, vectors, extras = load_embeddings_file(path)
        similarity = file_similarity(path, metric, extras)
        if similarity is Similarity.COSINE and (zero := np.flatnonzero(~vectors.any(axis=1))).size:
            raise InputError(f"{path}: 'vectors' rows {zero[:10].tolist()} are all zeros: no cosine similarity")
        failed_paths = extras.get("failed_paths", np.array([], dtype=str))
        result = evaluate_vectors(
            vectors,
            labels.tolist(),
            similarity,
            name=path.stem,
            root=path.parent,
            paths=extras["paths"].tolist() if "paths" in extras else None,
            failed_paths=failed_paths.tolist(),
            failed_reasons=extras["failed_reasons"].tolist() if "failed_reasons" in extras else None,
            groups=groups,
            description={"name": path.stem, "kind": "embeddings", "file": str(path), "similarity": similarity.value},
            protocol=protocol,
            out_dir=out_dir,
            progress=progress,
            engine=engine,
        )
        result.population["root"] = str(path)
        result.save(out_dir, command, html=html, lang=lang, full_sweep=full_sweep, figures=figures)
    return result
