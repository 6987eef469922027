"""Exact 1:N search: every probe against every gallery image, by chunked matrix products, in bounded memory.

Scores are `faceval.models.scoring`'s (larger = more alike; a distance is negated), computed for a block of probes
against a block of gallery rows at a time (about ``_TILE_ELEMENTS`` scores, 32 MB), so memory holds the
vectors and one tile whatever the gallery's size. No approximate index: an approximate search misses some
true top candidates, which biases the CMC and FNIR it would be used to measure.

An identity's score for a probe is the maximum over its gallery images (fusion ``max``), or the score of the
mean of its gallery vectors (fusion ``mean-embedding``; unit vectors are averaged for cosine). For every
probe the search keeps, exactly:

- the score of its mate (the gallery identity of the same person) and the mate's rank: one plus the number
  of other identities scoring at least as high, so a mate tied with a non-mate counts at the worse rank;
  ranks beyond ``max_rank`` are recorded as ``max_rank + 1`` ("not within max_rank");
- its best score over the whole gallery and over random sub-galleries of growing size (`gallery_sizes`):
  gallery identities are stored in a seeded random order, so the first N of them are a random sub-gallery
  of N identities, and one pass gives the best score within each;
- its top candidates (identity and score), the mate after any non-mate it ties with.

The running top ``max_rank`` of each probe's non-mate scores is updated per block from the scores above its
current ``max_rank``-th best only (after the first blocks a handful), so selection costs little beside the
matrix products.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from faceval.models.scoring import PreparedVectors, Similarity, prepare_vectors, prepared_scores

FUSIONS = ("max", "mean-embedding")
DEFAULT_MAX_RANK = 50
DEFAULT_CANDIDATES = 10
# Scores per tile (probes x gallery rows): 4 M float64 = 32 MB.
_TILE_ELEMENTS = 1 << 22
_PROBES_PER_TILE = 512
# Below this many scores a search takes seconds: no progress bar.
_PROGRESS_MIN_SCORES = 200_000_000


@dataclass(frozen=True, eq=False)
class Gallery:
    """Gallery templates grouped by identity: identity ``k``'s rows are ``starts[k]:starts[k + 1]``.

    ``names`` are the identities in the gallery's (seeded random) order; ``fusion`` how rows become one score.
    """

    templates: PreparedVectors
    starts: np.ndarray
    names: tuple[str, ...]
    fusion: str

    @property
    def n_identities(self) -> int:
        return len(self.names)

    @property
    def n_images(self) -> int:
        return len(self.templates)

    def index(self) -> dict[str, int]:
        """Position of each identity name in the gallery order."""
        return {name: position for position, name in enumerate(self.names)}


def build_gallery(
    vectors: np.ndarray, identities: Sequence[str], similarity: Similarity, fusion: str = "max", seed: int = 0
) -> Gallery:
    """The searchable gallery of ``vectors`` (one identity name per row).

    Identities are put in a random order from ``numpy.random.default_rng(seed)``, so that the first N form a
    random sub-gallery (see `SearchResult.top_score_by_size`).

    >>> gallery = build_gallery(np.eye(3), ["b", "a", "b"], Similarity.COSINE, "mean-embedding")
    >>> sorted(gallery.names), gallery.n_images
    (['a', 'b'], 2)
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    similarity = Similarity(similarity)
    labels = np.asarray(identities, dtype=str)
    vectors = np.asarray(vectors, dtype=np.float64)
    if labels.ndim != 1 or vectors.ndim != 2 or labels.shape[0] != vectors.shape[0]:
        raise ValueError(f"one identity per gallery vector: {labels.shape} identities for {vectors.shape} vectors")
    if labels.size == 0:
        raise ValueError("the gallery is empty")
    names, codes = np.unique(labels, return_inverse=True)
    order = np.random.default_rng(seed).permutation(names.size)
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    codes = position[codes.reshape(-1)]  # each row's identity position in the random order
    rows = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=names.size)
    starts = np.concatenate(([0], np.cumsum(counts)))
    # Rebinding drops this function's hold on the unsorted vectors: with a temporary argument (faceval identify's)
    # one copy of the gallery fewer is alive while it is prepared.
    vectors = vectors[rows]
    prepared = prepare_vectors(vectors, similarity, "gallery vectors")
    if fusion == "mean-embedding":
        # For cosine the prepared rows are unit vectors: the template is their mean direction.
        means = np.add.reduceat(prepared.rows, starts[:-1], axis=0) / counts[:, None]
        prepared = prepare_vectors(means, similarity, "gallery mean embeddings")
        starts = np.arange(names.size + 1)
    return Gallery(prepared, starts, tuple(names[order].tolist()), fusion)


def gallery_sizes(n_identities: int) -> np.ndarray:
    """Sub-gallery sizes for FPIR against gallery size: the whole gallery, then halving down to one identity.

    >>> gallery_sizes(24).tolist()
    [1, 3, 6, 12, 24]
    """
    return np.unique([n_identities >> shift for shift in range(max(1, n_identities.bit_length()))])


@dataclass(frozen=True, eq=False)
class SearchResult:
    """What the figures need from each search (one row per probe, in the probes' order).

    ``mate_rank``: 1 = the mate is the top candidate; ``max_rank + 1``: not within ``max_rank``; 0: no mate in
    the gallery (a non-mated search). ``mate_score``: NaN for non-mated searches. ``top_score``: the best
    identity score in the whole gallery. ``top_score_by_size[:, j]``: the best in the first ``sizes[j]``
    gallery identities. ``candidates``: the best gallery identity positions, best first (as many as asked
    for, at most the gallery's identities), with their ``candidate_scores``.
    """

    max_rank: int
    mate_rank: np.ndarray
    mate_score: np.ndarray
    top_score: np.ndarray
    candidates: np.ndarray
    candidate_scores: np.ndarray
    sizes: np.ndarray
    top_score_by_size: np.ndarray

    @property
    def mated(self) -> np.ndarray:
        """Boolean mask: searches whose identity is in the gallery."""
        return self.mate_rank > 0


def _gallery_blocks(starts: np.ndarray, rows_per_block: int) -> list[tuple[int, int]]:
    """Identity ranges ``[i0, i1)`` of about ``rows_per_block`` gallery rows each (an identity is never split)."""
    blocks, first, n_identities = [], 0, starts.size - 1
    while first < n_identities:
        last = int(np.searchsorted(starts, starts[first] + rows_per_block, side="right")) - 1
        last = min(max(last, first + 1), n_identities)
        blocks.append((first, last))
        first = last
    return blocks


def _keep_best(values: np.ndarray, ids: np.ndarray, scores: np.ndarray, offset: int) -> None:
    """Merge a block of scores (identities ``offset...``) into each row's running best ``values``/``ids``.

    Only scores above a row's current worst kept value can enter (an equal one would change no count), and
    after the first blocks few do: rows whose block maximum cannot enter are skipped before any scan.
    """
    keep = values.shape[1]
    floor = values.min(axis=1)
    rows = np.flatnonzero(scores.max(axis=1) > floor)
    if rows.size == 0:
        return
    candidates = scores if rows.size == scores.shape[0] else scores[rows]
    above = candidates > floor[rows, None]
    per_row = np.count_nonzero(above, axis=1)
    total = int(per_row.sum())
    if 4 * total > candidates.size:
        # Most of the block can enter (the first blocks): select among all of it.
        new_values = candidates
        new_ids = np.broadcast_to(np.arange(offset, offset + scores.shape[1]), candidates.shape)
    else:
        hit_rows, hit_columns = np.nonzero(above)  # row-major: grouped by row
        place = np.arange(total) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        new_values = np.full((rows.size, int(per_row.max())), -np.inf)
        new_ids = np.full(new_values.shape, -1, dtype=np.int64)
        new_values[hit_rows, place] = candidates[hit_rows, hit_columns]
        new_ids[hit_rows, place] = hit_columns + offset
    merged_values = np.concatenate((values[rows], new_values), axis=1)
    merged_ids = np.concatenate((ids[rows], new_ids), axis=1)
    best = np.argpartition(-merged_values, keep - 1, axis=1)[:, :keep]
    values[rows] = np.take_along_axis(merged_values, best, axis=1)
    ids[rows] = np.take_along_axis(merged_ids, best, axis=1)


def search(
    probes: np.ndarray,
    mates: Sequence[int] | np.ndarray,
    gallery: Gallery,
    similarity: Similarity,
    max_rank: int = DEFAULT_MAX_RANK,
    n_candidates: int = DEFAULT_CANDIDATES,
    progress: bool = False,
    label: str = "",
) -> SearchResult:
    """Search every probe against the whole gallery, exactly. ``mates[i]`` is the gallery position
    (`Gallery.index`) of probe ``i``'s identity, or -1 when it is not enrolled.

    >>> gallery = build_gallery(np.array([[1.0, 0.0], [0.0, 1.0]]), ["a", "b"], Similarity.COSINE)
    >>> result = search(np.array([[1.0, 0.2]]), [gallery.index()["a"]], gallery, Similarity.COSINE)
    >>> result.mate_rank.tolist(), [gallery.names[i] for i in result.candidates[0]]
    ([1], ['a', 'b'])
    """
    similarity = Similarity(similarity)
    if max_rank < 1 or n_candidates < 0:
        raise ValueError(f"max_rank must be >= 1 and n_candidates >= 0, got {max_rank} and {n_candidates}")
    prepared = prepare_vectors(probes, similarity, "probe vectors")
    mates = np.asarray(mates, dtype=np.int64).reshape(-1)
    n_probes, n_identities = len(prepared), gallery.n_identities
    if mates.size != n_probes or (mates.size and (mates.min() < -1 or mates.max() >= n_identities)):
        raise ValueError(f"mates must give one gallery position in [-1, {n_identities}) per probe")
    if n_probes and prepared.rows.shape[1] != gallery.templates.rows.shape[1]:
        raise ValueError(
            f"probe vectors have {prepared.rows.shape[1]} values, gallery vectors {gallery.templates.rows.shape[1]}"
        )
    n_candidates = min(n_candidates, n_identities)
    keep = min(max(max_rank, n_candidates), n_identities)
    sizes = gallery_sizes(n_identities)
    probes_per_tile = max(1, min(n_probes, _PROBES_PER_TILE))
    blocks = _gallery_blocks(gallery.starts, max(1, _TILE_ELEMENTS // probes_per_tile))
    one_row_each = gallery.n_images == n_identities
    result = SearchResult(
        max_rank=max_rank,
        mate_rank=np.zeros(n_probes, dtype=np.int64),
        mate_score=np.full(n_probes, np.nan),
        top_score=np.empty(n_probes),
        candidates=np.empty((n_probes, n_candidates), dtype=np.int64),
        candidate_scores=np.empty((n_probes, n_candidates)),
        sizes=sizes,
        top_score_by_size=np.empty((n_probes, sizes.size)),
    )
    with tqdm(
        total=n_probes * gallery.n_images,
        desc=f"searching ({label})" if label else "searching",
        unit="score",
        unit_scale=True,
        disable=not progress or n_probes * gallery.n_images < _PROGRESS_MIN_SCORES,
    ) as bar:
        for start in range(0, n_probes, probes_per_tile):
            stop = min(start + probes_per_tile, n_probes)
            _search_tile(
                prepared.take(slice(start, stop)),
                mates[start:stop],
                gallery,
                similarity,
                blocks,
                one_row_each,
                keep,
                result,
                slice(start, stop),
                bar,
            )
    return result


def _search_tile(
    probes: PreparedVectors,
    mates: np.ndarray,
    gallery: Gallery,
    similarity: Similarity,
    blocks: list[tuple[int, int]],
    one_row_each: bool,
    keep: int,
    result: SearchResult,
    out: slice,
    bar: tqdm,
) -> None:
    """One block of probes against every gallery block; writes the probes' rows of ``result``."""
    count, sizes = len(probes), result.sizes
    best_values = np.full((count, keep), -np.inf)
    best_ids = np.full((count, keep), -1, dtype=np.int64)
    mate_score = np.full(count, np.nan)
    # Best score per sub-gallery increment: bucket b holds identities [sizes[b - 1], sizes[b]).
    bucket_best = np.full((count, sizes.size), -np.inf)
    for first, last in blocks:
        row_lo, row_hi = int(gallery.starts[first]), int(gallery.starts[last])
        scores = prepared_scores(probes, gallery.templates.take(slice(row_lo, row_hi)), similarity)
        if not one_row_each:
            scores = np.maximum.reduceat(scores, gallery.starts[first:last] - row_lo, axis=1)
        segment_starts = np.concatenate(([first], sizes[(sizes > first) & (sizes < last)]))
        buckets = np.searchsorted(sizes, segment_starts, side="right")
        segment_best = np.maximum.reduceat(scores, segment_starts - first, axis=1)
        bucket_best[:, buckets] = np.maximum(bucket_best[:, buckets], segment_best)
        local = mates - first
        here = np.flatnonzero((local >= 0) & (local < last - first))
        mate_score[here] = scores[here, local[here]]
        scores[here, local[here]] = -np.inf  # the mate is ranked apart from the non-mates
        _keep_best(best_values, best_ids, scores, first)
        bar.update(count * (row_hi - row_lo))

    mated = mates >= 0
    n_identities = gallery.n_identities
    # Non-mates at least as good as the mate (NaN for non-mated searches compares False).
    ahead = (best_values >= mate_score[:, None]).sum(axis=1)
    rank = ahead + 1
    # All kept non-mates ahead while more exist: the rank is beyond what was kept.
    unknown = (ahead == keep) & (keep < n_identities - 1)
    rank = np.where(unknown | (rank > result.max_rank), result.max_rank + 1, rank)
    result.mate_rank[out] = np.where(mated, rank, 0)
    result.mate_score[out] = mate_score
    by_size = np.maximum.accumulate(bucket_best, axis=1)
    result.top_score_by_size[out] = by_size
    result.top_score[out] = by_size[:, -1]

    n_candidates = result.candidates.shape[1]
    if n_candidates:
        # The mate joins the kept non-mates; sorted by score, the mate after non-mates it ties with.
        values = np.concatenate((best_values, np.where(mated, mate_score, -np.inf)[:, None]), axis=1)
        ids = np.concatenate((best_ids, np.where(mated, mates, -1)[:, None]), axis=1)
        is_mate = np.zeros(values.shape, dtype=np.int8)
        is_mate[:, -1] = 1
        order = np.lexsort((ids, is_mate, -values), axis=1)[:, :n_candidates]
        result.candidates[out] = np.take_along_axis(ids, order, axis=1)
        result.candidate_scores[out] = np.take_along_axis(values, order, axis=1)
