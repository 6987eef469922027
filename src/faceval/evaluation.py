"""The evaluation pipeline: dataset -> embeddings -> all pairs -> metrics, for one or several models.

Models compared side by side are scored on the same pairs: the images that every model embedded. Each model's
own failures are reported beside its figures, never hidden by dropping pairs silently. One pass over the pairs
serves every model and every figure: each chunk of pairs is scored by all models and fed to every model's states
(counts, group state, per-identity statistics) and, where the bootstrap needs them, to the held scores that the
group intervals and the paired model comparisons share; no pair is scored twice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from faceval.compute.local import Models, PairFeedFactory, local_pairs, pair_chunks
from faceval.models.extraction import EmbeddingSet
from faceval.models.scoring import PairChunk, ScoredPairs, Similarity, identity_codes
from faceval.output.results import Evaluation, ModelResult
from faceval.output.saved_scores import saving_scores, tee_to
from faceval.sources.datasets import Dataset
from faceval.stats.accumulators import (
    ChunkFeed,
    HeldPairs,
    HeldScores,
    ModelFeed,
    PairFeed,
    side_by_side,
    update_counts,
)
from faceval.stats.bootstrap import identity_strata
from faceval.stats.comparison import ModelComparison, compare_influences, compare_scores, unscorable_comparisons
from faceval.stats.groups import (
    ALL,
    ALL_PAIRS,
    GroupOptions,
    GroupPass,
    group_failures,
    prepare_groups,
)
from faceval.stats.lattice import LatticeCounts, score_counts
from faceval.stats.metrics import ScoreCounts, ScoreTable
from faceval.stats.pair_lists import PairList, ResolvedPairs, listed_scored_pairs, resolve_for_models
from faceval.stats.ten_fold import ten_fold_figures


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
    on small sets, on a lattice above `faceval.stats.lattice.EXACT_MAX_PAIRS` (``exact`` forces one); ``pair_feed``
    scores and counts them (this process, a Dask cluster, a GPU: the same counts)."""
    n_pairs = len(vectors) * (len(vectors) - 1) // 2
    return count_scores(
        pair_feed([(vectors, similarity)], identities, progress, label),
        functools.partial(score_counts, similarity, n_pairs, exact),
    )


def count_scores(
    chunks: Iterable[PairChunk] | PairFeed, new_counts: Callable[[], ScoreCounts | LatticeCounts] = ScoreCounts
) -> ScoreTable:
    """The `ScoreTable` of a stream of one model's pair chunks, or of the pairs of a one-model `PairFeed` (a
    cluster's, a GPU's), counted in states made by ``new_counts`` (default: exact per distinct score; picklable
    where the feed runs elsewhere)."""
    feed = chunks if isinstance(chunks, PairFeed) else ChunkFeed(chunks)
    return feed.accumulate(new_counts, ModelFeed(update_counts)).compute()


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
    holds one label per dataset record (`faceval.stats.groups.group_labels`), identity-bootstrap intervals in any case;
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
        if len(embedding_sets) > 1:
            # The listed pairs are not every pair of the images, which the identity resamples rebuild.
            evaluation.notes.append("models not compared pairwise (DeLong, paired bootstrap) on a pair list")
    # Without groups every record is in the one group, so its failures (FTE) are still counted.
    record_groups = groups if groups is not None else np.full(dataset.n_images, ALL, dtype=object)
    # The pairs every model is scored on: all pairs of the scored images, or the listed ones.
    n_pairs = len(indices) * (len(indices) - 1) // 2 if listed is None else int(listed.genuine.size)
    image_groups = None if groups is None else groups[indices]
    # Several models on all pairs are compared pairwise, with the first model's interval options.
    comparing = listed is None and group_options and len(embedding_sets) > 1
    compare_options = next(iter(group_options.values())) if group_options and comparing else None
    if len(indices) < 2:
        for embeddings in embedding_sets:
            evaluation.models[embeddings.model] = ModelResult(
                embeddings.model,
                embeddings.similarity,
                embeddings.description,
                len(indices),
                embeddings.n_failed,
                ScoreCounts().compute(),
            )
        return evaluation
    models = [(embeddings.vectors(indices), embeddings.similarity) for embeddings in embedding_sets]
    plans: dict[int, GroupPass] = {}
    for index, embeddings in enumerate(embedding_sets):
        options = (group_options or {}).get(embeddings.model)
        if options is not None:
            plans[index] = prepare_groups(
                image_groups,
                identities,
                embeddings.similarity,
                options,
                failures=group_failures(record_groups, embeddings.embedded),
                group_by=group_by,
                n_pairs=n_pairs,
                vectors=models[index][0],
                listed=None if listed is None else (listed.first, listed.second),
            )
    streaming = len(plans) == len(models) and all(plan.method == "streaming" for plan in plans.values())
    # The paired bootstrap compares the models on the scores the pass holds (as the group bootstrap does).
    compare_held = compare_options is not None and not streaming and n_pairs <= compare_options.max_bootstrap_pairs
    # A pair list's 10-fold accuracy needs its scores too: they are held beside the list itself.
    ten_fold = listed is not None and listed.fold is not None
    holding = compare_held or ten_fold or any(plan.holds_pairs for plan in plans.values())
    with pass_feed(dataset, indices, models, identities, names, listed, save_scores, progress, pair_feed) as feed:
        parts: list[tuple[Callable[[], Any], Callable[[Any, ScoredPairs], None]]] = [
            (plans[index].state_factory(), ModelFeed(plans[index].feed, index))
            if index in plans
            else (functools.partial(score_counts, similarity, n_pairs), ModelFeed(update_counts, index))
            for index, (_, similarity) in enumerate(models)
        ]
        if holding:
            parts.append((HeldPairs, HeldPairs.add))
        states = feed.accumulate(*side_by_side(parts)).parts
    held: list[HeldScores] | None = states[-1].take(len(models)) if holding else None
    for index, embeddings in enumerate(embedding_sets):
        if index in plans:
            plan = plans[index]
            report = plan.finish(states[index], held[index] if held is not None and plan.holds_pairs else None)
            evaluation.groups[embeddings.model] = report
            table = report.overall.table
        else:
            table = states[index].compute()
        if ten_fold:
            assert listed is not None and held is not None
            figures = ten_fold_figures(listed, models[index][0], embeddings.similarity, held[index].scores)
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
    if compare_options is not None:
        evaluation.comparisons = _comparisons(evaluation, names, identities, image_groups, held, compare_options)
        if not evaluation.comparisons and compare_options.n_resamples:
            evaluation.notes.append(
                f"models not compared pairwise: more than {compare_options.max_bootstrap_pairs:,} pairs to hold in "
                "memory for the paired bootstrap; --intervals streaming compares them at any size"
            )
    return evaluation


def _comparisons(
    evaluation: Evaluation,
    names: Sequence[str],
    identities: np.ndarray,
    image_groups: np.ndarray | None,
    held: Sequence[HeldScores] | None,
    options: GroupOptions,
) -> list[ModelComparison]:
    """Every pair of models: from their per-identity influences (streaming intervals), else by the paired identity
    bootstrap and DeLong's test on the scores the pass held; empty when neither is there (too many pairs)."""
    table = evaluation.models[names[0]].table
    influences = [
        (name, evaluation.groups[name].influences[ALL_PAIRS])
        for name in names
        if name in evaluation.groups and ALL_PAIRS in evaluation.groups[name].influences
    ]
    codes = np.zeros(len(identities), dtype=np.int64) if image_groups is None else identity_codes(image_groups)
    if len(influences) == len(names):
        # Streaming intervals: the comparison needs only each model's per-identity influences.
        return compare_influences(
            influences,
            identity_strata(identities, codes),
            table.n_genuine,
            table.n_impostor,
            n_resamples=options.n_resamples,
            seed=options.seed,
        )
    if held is None:
        if all(
            name in evaluation.groups and evaluation.groups[name].bootstrap["intervals"] == "streaming"
            for name in names
        ):
            # Influences exist wherever there are both kinds of pair: these models have no AUC to compare.
            return unscorable_comparisons(
                names, table.n_genuine, table.n_impostor, n_resamples=options.n_resamples, seed=options.seed
            )
        return []
    first_id, second_id = identities[held[0].first], identities[held[0].second]
    strata = None if image_groups is None else identity_strata(identities, identity_codes(image_groups))
    return compare_scores(
        [(name, pairs.scores) for name, pairs in zip(names, held, strict=True)],
        first_id == second_id,
        first_id,
        second_id,
        strata=strata,
        n_resamples=options.n_resamples,
        seed=options.seed,
    )


def _write_each(writers: Sequence[Callable[[PairChunk], None]], pairs: ScoredPairs) -> None:
    for index, write in enumerate(writers):
        write(pairs.model(index))


@contextmanager
def pass_feed(
    dataset: Dataset,
    indices: np.ndarray,
    models: Models,
    identities: np.ndarray,
    names: Sequence[str],
    listed: ResolvedPairs | None,
    save_scores: Path | None,
    progress: bool,
    pair_feed: PairFeedFactory = local_pairs,
) -> Iterator[PairFeed]:
    """The pairs every model is scored on, in one pass: all pairs of the scored images (from ``pair_feed``), or
    the listed ones (in this process); with ``save_scores`` each chunk is also appended to
    ``<save_scores>/<model>/scores.parquet`` for each model, which appear once all are written."""
    label = ", ".join(names)
    if listed is None and save_scores is None:
        yield pair_feed(models, identities, progress, label)
        return
    chunks = (
        listed_scored_pairs(models, listed) if listed is not None else pair_chunks(models, identities, progress, label)
    )
    if save_scores is None:
        yield ChunkFeed(chunks)
        return
    paths = [dataset.relative_path(dataset.records[index]) for index in indices]
    labels = [dataset.records[index].identity for index in indices]
    with ExitStack() as files:
        writers = [
            files.enter_context(saving_scores(save_scores / name / "scores.parquet", paths, labels, similarity))
            for name, (_, similarity) in zip(names, models, strict=True)
        ]
        yield ChunkFeed(tee_to(chunks, functools.partial(_write_each, writers)))
