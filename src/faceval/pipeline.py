"""End to end: dataset folders -> embeddings with each model -> all-pair metrics -> report on disk."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceval.datasets import Dataset, ImageRecord, combine_datasets, load_dataset
from faceval.embedders import Embedder, EmbeddingResult, ModelSpec, parse_model_argument
from faceval.engine import EngineOptions, open_engine
from faceval.evaluate import (
    evaluate_embeddings,
)
from faceval.extraction import EmbeddingSet, RemoteWorkers, extract_embeddings
from faceval.gpu import dlib_cuda_note
from faceval.groups import GroupOptions, group_labels, load_thresholds
from faceval.onnx_embedder import available_cores
from faceval.report import reference_threshold, write_report
from faceval.scoring import Similarity
from faceval.store import EmbeddingStore


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
    seed: int = 0


@dataclass(frozen=True)
class EvaluationRequest:
    """What ``faceval evaluate`` was asked to do."""

    sources: Sequence[str | Path]
    models: Sequence[str] = ("dlib",)
    out_dir: str | Path = "results"
    layout: str = "auto"
    dlib_options: Mapping[str, Any] = field(default_factory=dict)
    spec_file: str | Path | None = None
    embedding: EmbeddingOptions = field(default_factory=EmbeddingOptions)
    groups: GroupRequest = field(default_factory=GroupRequest)
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
    the ``device`` (`faceval.gpu.onnx_providers`)."""
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
        raise ValueError(f"model {', '.join(repeated)} is given twice; each --model must name a different model")
    return specs


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create the output folder now, so that an unusable one fails before the embedding, not after it."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"{out}: cannot be used as the output folder ({error.strerror}); choose another --out"
        ) from None
    return out


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


def group_options(request: GroupRequest, models: Mapping[str, Similarity]) -> dict[str, GroupOptions]:
    """Each model's `GroupOptions`; its threshold is the user's, else the customary one (dlib 0.6), if any."""
    unknown = sorted(set(request.thresholds) - {"", *models})
    if unknown:
        raise ValueError(f"--threshold names {', '.join(unknown)}, but the models are {', '.join(models)}")
    return {
        model: GroupOptions(
            target_fmr=request.target_fmr,
            threshold=request.thresholds.get(model, request.thresholds.get("", reference_threshold(model, similarity))),
            calibrate=request.calibrate,
            threshold_from=None if request.threshold_from is None else load_thresholds(request.threshold_from, model),
            n_resamples=request.n_resamples,
            seed=request.seed,
        )
        for model, similarity in models.items()
    }


def run_evaluation(request: EvaluationRequest, command: Iterable[str] | None = None) -> dict[str, Any]:
    """Run the whole evaluation and write the report; returns the ``metrics.json`` document.

    Everything that can be checked is checked before any image is embedded (the output folder, the models,
    group columns, thresholds): a typo should fail in seconds, not after an hour of embedding.
    """
    prepare_out_dir(request.out_dir)
    dataset = load_sources(request.sources, request.layout)
    specs = model_specs(
        request.models, request.dlib_options, request.spec_file, request.embedding.jobs, request.engine.device
    )
    embedders = [spec.build() for spec in specs]
    several_folders = len(request.sources) > 1 and request.groups.attribute_csv is None
    group_by = tuple(request.groups.group_by) or (("group",) if several_folders else ())
    groups = group_labels(dataset, None, group_by or None, request.groups.attribute_csv)
    options = group_options(request.groups, {embedder.name: embedder.similarity for embedder in embedders})
    with open_engine(request.engine) as engine:
        embedding_sets = embed_dataset(
            dataset, specs if engine.workers is not None else embedders, request.embedding, engine.workers
        )
        evaluation = evaluate_embeddings(
            dataset, embedding_sets, groups, options, group_by, request.embedding.progress, engine.pair_feed
        )
    evaluation.notes.extend(device_notes(specs, request.engine.device))
    return write_report(request.out_dir, evaluation, dataset, embedding_sets, command)


def device_notes(specs: Sequence[ModelSpec], device: str) -> list[str]:
    """What the user should know about where the models ran (dlib without CUDA when a GPU was asked for)."""
    note = dlib_cuda_note(device) if any(spec.kind == "dlib" for spec in specs) else None
    return [note] if note else []


def load_embeddings_file(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``labels``, ``vectors`` and the optional arrays (``paths``, ``failed_paths``, ``failed_reasons``,
    ``similarity``) of an .npz file, validated, with errors that say what is wrong."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable .npz file ({error})") from error
    with archive:
        missing = [key for key in ("labels", "vectors") if key not in archive.files]
        if missing:
            raise ValueError(
                f"{path}: needs arrays 'labels' and 'vectors' (missing {', '.join(missing)}; "
                f"it has {', '.join(archive.files) or 'none'})"
            )
        labels, vectors = archive["labels"], archive["vectors"]
        extras = {
            key: archive[key]
            for key in ("paths", "failed_paths", "failed_reasons", "similarity")
            if key in archive.files
        }
    if vectors.dtype.kind not in "iuf":
        raise ValueError(f"{path}: 'vectors' must be numbers, got {vectors.dtype} values")
    if vectors.ndim != 2 or len(labels) != len(vectors):
        raise ValueError(
            f"{path}: 'vectors' must be 2-D with one row per label, got {vectors.shape} for {len(labels)} labels"
        )
    if not np.isfinite(vectors).all():
        rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        raise ValueError(f"{path}: 'vectors' rows {rows[:10].tolist()} contain NaN or infinity")
    return labels.astype(str), vectors.astype(np.float64), extras


def metrics_from_embeddings_file(
    path: str | Path,
    metric: str | None,
    out_dir: str | Path,
    command: Iterable[str] | None = None,
    groups: GroupRequest | None = None,
    engine: EngineOptions | None = None,
) -> dict[str, Any]:
    """``faceval metrics``: the same figures from embeddings made elsewhere; the model is named after the file.

    ``metric`` may be left out when the file says how its vectors compare (``faceval embed`` files do). The
    failures such a file lists (``failed_paths``, ``failed_reasons``) count in the FTE.
    """
    path = Path(path)
    prepare_out_dir(out_dir)
    labels, vectors, extras = load_embeddings_file(path)
    stored = str(extras["similarity"]) if "similarity" in extras else None
    if metric is None and stored is None:
        raise ValueError(f"{path}: the file does not say how its vectors compare; give --metric euclidean|cosine")
    if metric is not None and stored is not None and metric != stored:
        raise ValueError(f"{path}: its vectors are compared by {stored}, not {metric}; drop --metric")
    similarity = Similarity(metric or stored)
    paths = extras.get("paths", np.array([f"row {index}" for index in range(len(labels))]))
    failed_paths = extras.get("failed_paths", np.array([], dtype=str))
    failed_reasons = extras.get("failed_reasons", np.full(len(failed_paths), "failed", dtype=object))
    # Failed images have no identity in the file; they count as failures, never as pairs.
    records = [ImageRecord(path.parent / str(p), str(label)) for p, label in zip(paths, labels, strict=True)]
    records += [ImageRecord(path.parent / str(p), "") for p in failed_paths]
    results = [EmbeddingResult(vector) for vector in vectors]
    results += [EmbeddingResult(None, failure=str(reason)) for reason in failed_reasons]
    dataset = Dataset(path.parent, "embeddings", tuple(records))
    description = {"name": path.stem, "kind": "embeddings", "file": str(path), "similarity": similarity.value}
    embeddings = EmbeddingSet(path.stem, similarity, description, tuple(results))
    request = groups or GroupRequest()
    with open_engine(engine) as running:
        evaluation = evaluate_embeddings(
            dataset, [embeddings], None, group_options(request, {path.stem: similarity}), pair_feed=running.pair_feed
        )
    evaluation.dataset.update(root=str(path), n_identities=len(set(labels.tolist())))
    return write_report(out_dir, evaluation, command=command)
