"""The evaluation pipeline: dataset -> embeddings -> all pairs -> metrics, for one or several models.

Models compared side by side are scored on the same pairs: the images that every model embedded. Each model's
own failures are reported beside its figures, never hidden by dropping pairs silently.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from queue import Full, Queue
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from faceval.accumulators import ChunkFeed, PairFeed, update_counts
from faceval.bootstrap import identity_strata
from faceval.comparison import ModelComparison, compare_influences, compare_model_vectors
from faceval.datasets import Dataset
from faceval.extraction import EmbeddingSet
from faceval.groups import ALL, ALL_PAIRS, GroupOptions, GroupReport, group_failures, group_report
from faceval.lattice import LatticeCounts, score_counts
from faceval.metrics import ScoreCounts, ScoreTable
from faceval.pair_lists import PairList, ResolvedPairs, listed_pair_chunks, resolve_for_models
from faceval.saved_scores import saving_scores, tee_to
from faceval.scoring import PairChunk, Similarity, identity_codes, iter_pair_chunks
from faceval.ten_fold import ten_fold_figures


@dataclass(frozen=True)
class ModelResult:
    """One model's scores on the evaluated pairs, kept as exact per-score counts."""

    name: str
    similarity: Similarity
    description: dict[str, Any]
    n_images: int
    n_failed: int
    table: ScoreTable


@dataclass
class Evaluation:
    """Everything a report needs: the dataset's shape, each model's result, and what the user should know."""

    dataset: dict[str, Any]
    models: dict[str, ModelResult]
    notes: list[str] = field(default_factory=list)
    groups: dict[str, GroupReport] = field(default_factory=dict)
    comparisons: list[ModelComparison] = field(default_factory=list)
    # Extra entries of models.<name> in metrics.json (a pair list's 10-fold accuracy, a score file's groups).
    model_extras: dict[str, dict[str, Any]] = field(default_factory=dict)


T = TypeVar("T")

# Below this many pairs scoring takes a few seconds at most: no progress bar.
PROGRESS_MIN_PAIRS = 5_000_000


def pair_chunks(
    vectors: np.ndarray, identities: np.ndarray, similarity: Similarity, progress: bool = False, label: str = ""
) -> Iterator[PairChunk]:
    """`iter_pair_chunks` with a progress bar when there are millions of pairs."""
    total = len(vectors) * (len(vectors) - 1) // 2
    with tqdm(
        total=total,
        desc=f"scoring pairs ({label})" if label else "scoring pairs",
        unit="pair",
        unit_scale=True,
        disable=not progress or total < PROGRESS_MIN_PAIRS,
    ) as bar:
        for chunk in prefetched(iter_pair_chunks(vectors, identities, similarity)):
            yield chunk
            bar.update(len(chunk))


_DONE = object()


def prefetched(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """The items of ``items``, produced by a background thread up to ``depth`` ahead: the next chunk is scored (BLAS
    and numpy release the GIL) while the caller accounts for this one, so both cores work. An exception in the
    producer is raised here; stopping early stops the producer.

    >>> list(prefetched(iter(range(5))))
    [0, 1, 2, 3, 4]
    """
    queue: Queue[Any] = Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # handed to the consumer, which raises it
            put(error)

    producer = threading.Thread(target=produce, name="faceval-scoring", daemon=True)
    producer.start()
    try:
        while (item := queue.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        producer.join()


def local_pairs(
    vectors: np.ndarray, identities: np.ndarray, similarity: Similarity, progress: bool = False, label: str = ""
) -> PairFeed:
    """The pairs scored in this process (`pair_chunks`), as a `PairFeed`."""
    return ChunkFeed(pair_chunks(vectors, identities, similarity, progress, label))


# Makes the PairFeed of one model's vectors: local_pairs, or a Dask cluster's or a GPU's (faceval.engine).
PairFeedFactory = Callable[[np.ndarray, np.ndarray, Similarity, bool, str], PairFeed]


def score_pairs(
    vectors: np.ndarray,
    identities: np.ndarray,
    similarity: Similarity,
    progress: bool = False,
    label: str = "",
    exact: bool | None = None,
    pair_feed: PairFeedFactory = local_pairs,
) -> ScoreTable:
    """Genuine/impostor counts over all pairs of ``vectors``, streamed in bounded chunks: exact per distinct score
    on small sets, on a lattice above `faceval.lattice.EXACT_MAX_PAIRS` (``exact`` forces one); ``pair_feed``
    scores and counts them (this process, a Dask cluster, a GPU: the same counts)."""
    n_pairs = len(vectors) * (len(vectors) - 1) // 2
    return count_scores(
        pair_feed(vectors, identities, similarity, progress, label),
        functools.partial(score_counts, similarity, n_pairs, exact),
    )


def count_scores(
    chunks: Iterable[PairChunk] | PairFeed, new_counts: Callable[[], ScoreCounts | LatticeCounts] = ScoreCounts
) -> ScoreTable:
    """The `ScoreTable` of a stream of pair chunks, or of the pairs of a `PairFeed` (a cluster's, a GPU's), counted
    in states made by ``new_counts`` (default: exact per distinct score; picklable where the feed runs elsewhere)."""
    feed = chunks if isinstance(chunks, PairFeed) else ChunkFeed(chunks)
    return feed.accumulate(new_counts, update_counts).compute()


def pair_counts(identities: np.ndarray) -> tuple[int, int]:
    """Numbers of genuine and impostor pairs among images with these identity codes (no scoring needed)."""
    per_identity = np.bincount(identities)
    genuine = int((per_identity * (per_identity - 1) // 2).sum())
    total = len(identities) * (len(identities) - 1) // 2
    return genuine, total - genuine


def describe_population(labels: Sequence[str]) -> dict[str, Any]:
    """Images and identities, and how many identities have a single image (they give no genuine pair)."""
    names, counts = np.unique(np.asarray(labels, dtype=object).astype(str), return_counts=True)
    genuine, impostor = pair_counts(np.repeat(np.arange(len(names)), counts))
    return {
        "n_images": len(labels),
        "n_identities": len(names),
        "n_identities_single_image": int((counts == 1).sum()),
        "n_genuine": genuine,
        "n_impostor": impostor,
    }


def population_problems(population: dict[str, Any], where: str) -> list[str]:
    """Plain-language warnings about pairs that cannot exist in this population."""
    notes = []
    if population["n_identities_single_image"]:
        notes.append(
            f"{where}: {population['n_identities_single_image']} of {population['n_identities']} identities have "
            "a single image, so they give no genuine pair (they still count as impostors); add a second image "
            "of each to use them fully"
        )
    if population["n_genuine"] == 0:
        notes.append(f"{where}: no genuine pairs (no identity has two images); metrics need at least one")
    if population["n_impostor"] == 0:
        notes.append(f"{where}: no impostor pairs (only one identity); metrics need at least two identities")
    return notes


def evaluate_embeddings(
    dataset: Dataset,
    embedding_sets: Sequence[EmbeddingSet],
    groups: np.ndarray | None = None,
    group_options: Mapping[str, GroupOptions] | None = None,
    group_by: Sequence[str] = (),
    progress: bool = False,
    pairs: PairList | None = None,
    save_scores: Path | None = None,
    pair_feed: PairFeedFactory = local_pairs,
) -> Evaluation:
    """Score every model on the pairs of images that all of them embedded.

    With ``pairs`` only the listed pairs are scored (those naming an image without a vector are reported as
    failed pairs), with their 10-fold accuracy when the list has folds. With ``save_scores`` (a folder) every
    scored pair is also written to ``<folder>/<model>/scores.parquet``. ``pair_feed`` says where all pairs are
    scored and counted (`local_pairs`: in this process; a Dask cluster or a GPU give the same counts); listed
    pairs, and pairs whose scores are saved, are scored in this process.

    With ``group_options`` (per model) each model also gets a `GroupReport`: per-group figures when ``groups``
    holds one label per dataset record (`faceval.groups.group_labels`), identity-bootstrap intervals in any case;
    several models are then compared pairwise (AUC difference, paired bootstrap, DeLong).
    """
    if not embedding_sets:
        raise ValueError("evaluate_embeddings needs at least one model's embeddings")
    names = [embeddings.model for embeddings in embedding_sets]
    if len(set(names)) != len(names):
        raise ValueError(f"two models share a name ({', '.join(names)}); give each a distinct name")
    everyone = np.logical_and.reduce([embeddings.embedded for embeddings in embedding_sets])
    indices = np.flatnonzero(everyone)
    labels = [dataset.records[index].identity for index in indices]
    population = describe_population(labels)
    listed = None if pairs is None else resolve_for_models(pairs, dataset, embedding_sets, indices)
    if listed is not None:
        # Only the listed pairs are scored: the population's pair counts are theirs.
        population.update(n_genuine=int(listed.genuine.sum()), n_impostor=int((~listed.genuine).sum()))
    evaluation = Evaluation(
        dataset={
            "root": str(dataset.root),
            "layout": dataset.layout,
            "n_images": dataset.n_images,
            "n_identities": dataset.n_identities,
            "n_skipped_files": len(dataset.skipped),
            "scored": population,
        },
        models={},
    )
    if len(embedding_sets) > 1:
        evaluation.notes.append(
            f"all models are scored on the {len(indices)} images that every model embedded "
            f"({dataset.n_images - len(indices)} images left out because at least one model failed on them)"
        )
    # With a pair list, single-image identities lose nothing: the list says which pairs there are.
    checked = population if listed is None else {**population, "n_identities_single_image": 0}
    evaluation.notes.extend(population_problems(checked, "scored images"))
    identities = identity_codes(labels)
    if listed is not None:
        evaluation.dataset["pairs"] = listed.summary()
        evaluation.notes.extend(listed.notes())
    # Without groups every record is in the one group, so its failures (FTE) are still counted.
    record_groups = groups if groups is not None else np.full(dataset.n_images, ALL, dtype=object)
    # The pairs each model is scored on: all pairs of the scored images, or the listed ones.
    n_pairs = len(indices) * (len(indices) - 1) // 2 if listed is None else int(listed.genuine.size)
    for embeddings in embedding_sets:
        options = (group_options or {}).get(embeddings.model)
        vectors = embeddings.vectors(indices) if len(indices) else np.zeros((0, 0))
        chunks = model_pair_chunks(
            dataset, indices, vectors, identities, embeddings, listed, save_scores, progress, pair_feed
        )
        if len(indices) < 2:
            table = ScoreCounts().compute()
        elif options is None:
            with chunks as pairs_of_model:
                table = count_scores(pairs_of_model, functools.partial(score_counts, embeddings.similarity, n_pairs))
        else:
            # One pass over the pairs serves both: the group report's overall table is the model's table.
            with chunks as pairs_of_model:
                report = group_report(
                    pairs_of_model,
                    None if groups is None else groups[indices],
                    identities,
                    embeddings.similarity,
                    options,
                    failures=group_failures(record_groups, embeddings.embedded),
                    group_by=group_by,
                    n_pairs=n_pairs,
                )
            evaluation.groups[embeddings.model] = report
            table = report.overall.table
        if listed is not None and len(indices) >= 2:
            figures = ten_fold_figures(listed, vectors, embeddings.similarity)
            if figures is not None:
                evaluation.model_extras[embeddings.model] = {"ten_fold": figures}
        evaluation.models[embeddings.model] = ModelResult(
            embeddings.model,
            embeddings.similarity,
            embeddings.description,
            len(indices),
            embeddings.n_failed,
            table,
        )
    if listed is not None and len(embedding_sets) > 1:
        # compare_model_vectors pairs every image with every other; it has no form for a list of pairs yet.
        evaluation.notes.append("models not compared pairwise (DeLong, paired bootstrap) on a pair list")
    elif group_options and len(embedding_sets) > 1 and len(indices) >= 2:
        options = next(iter(group_options.values()))
        influences = [
            (name, evaluation.groups[name].influences[ALL_PAIRS])
            for name in names
            if name in evaluation.groups and ALL_PAIRS in evaluation.groups[name].influences
        ]
        if len(influences) == len(names):
            # Streaming intervals: the comparison needs only each model's per-identity influences.
            codes = np.zeros(len(indices), dtype=np.int64) if groups is None else identity_codes(groups[indices])
            table = evaluation.models[names[0]].table
            evaluation.comparisons = compare_influences(
                influences,
                identity_strata(identities, codes),
                table.n_genuine,
                table.n_impostor,
                n_resamples=options.n_resamples,
                seed=options.seed,
            )
        else:
            evaluation.comparisons = compare_model_vectors(
                [
                    (embeddings.model, embeddings.vectors(indices), embeddings.similarity)
                    for embeddings in embedding_sets
                ],
                identities,
                None if groups is None else groups[indices],
                n_resamples=options.n_resamples,
                seed=options.seed,
                max_pairs=options.max_bootstrap_pairs,
            )
        if not evaluation.comparisons and options.n_resamples:
            evaluation.notes.append(
                f"models not compared pairwise: more than {options.max_bootstrap_pairs:,} pairs to hold in memory "
                "for the paired bootstrap; --intervals streaming compares them at any size"
            )
    return evaluation


@contextmanager
def model_pair_chunks(
    dataset: Dataset,
    indices: np.ndarray,
    vectors: np.ndarray,
    identities: np.ndarray,
    embeddings: EmbeddingSet,
    listed: ResolvedPairs | None,
    save_scores: Path | None,
    progress: bool,
    pair_feed: PairFeedFactory = local_pairs,
) -> Iterator[Iterator[PairChunk] | PairFeed]:
    """The pairs one model is scored on: all pairs of the scored images (from ``pair_feed``), or the listed ones;
    with ``save_scores`` each chunk is also appended to ``<save_scores>/<model>/scores.parquet``, which appears
    once all are written."""
    similarity = embeddings.similarity
    if listed is None and save_scores is None:
        yield pair_feed(vectors, identities, similarity, progress, embeddings.model)
        return
    if listed is not None:
        chunks = listed_pair_chunks(vectors, listed, similarity)
    else:
        chunks = pair_chunks(vectors, identities, similarity, progress, embeddings.model)
    if save_scores is None:
        yield chunks
        return
    paths = [dataset.relative_path(dataset.records[index]) for index in indices]
    labels = [dataset.records[index].identity for index in indices]
    with saving_scores(save_scores / embeddings.model / "scores.parquet", paths, labels, similarity) as write:
        yield tee_to(chunks, write)
