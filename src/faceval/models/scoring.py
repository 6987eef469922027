"""Similarity conventions and the scores of all pairs of embeddings, chunked and vectorised.

Internally every pair has a score ``s`` where larger means more alike: a Euclidean distance ``d`` is stored as
``s = -d`` and a cosine similarity as itself. A pair is accepted (same person) when ``s >= tau``;
`Similarity.to_model_units` turns ``tau`` back into the model's own units (for dlib a distance, accepted when
``d <= threshold``, as ``face_recognition.compare_faces(tolerance=...)``).

Pairs are all unordered pairs ``i < j`` in row-major upper-triangle order: ``(0, 1), (0, 2), ..., (0, n-1),
(1, 2), ...``. Scores come from BLAS matrix products over row blocks, never from a Python loop over pairs.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

_T = TypeVar("_T", float, np.ndarray)

# A squared distance this small relative to the squared norms loses most of its digits to cancellation in
# |a|^2 + |b|^2 - 2ab (near-duplicate images), so those few pairs are recomputed directly from a - b.
_CANCELLATION_RATIO = 1e-4

# Scores are computed in tiles of about this many pairs (8 MB of float64), whatever the chunk size.
_TILE_ELEMENTS = 1 << 20
# Pairs scored row by row per block (`paired_scores`): two gathered blocks of rows, a few MB.
_PAIRS_PER_BLOCK = 1 << 13


class Similarity(enum.StrEnum):
    """How a model's vectors are compared, and how its thresholds read in its own units (a `str` enum)."""

    EUCLIDEAN = "euclidean"
    COSINE = "cosine"

    @property
    def model_units(self) -> str:
        """The name of the model's own unit: ``"distance"`` or ``"cosine similarity"``."""
        return "distance" if self is Similarity.EUCLIDEAN else "cosine similarity"

    @property
    def larger_is_more_similar_in_model_units(self) -> bool:
        """False for a distance (smaller = same person), True for a cosine similarity."""
        return self is Similarity.COSINE

    def to_model_units(self, score_threshold: _T) -> _T:
        """Turn a score threshold (accept ``s >= tau``) into the model's units (a distance for Euclidean).

        >>> Similarity.EUCLIDEAN.to_model_units(-0.6)
        0.6
        """
        return self._convert(score_threshold)

    def threshold_for_report(self, score_threshold: float | None) -> float | None:
        """A score threshold in the model's units, for JSON and CSV: None for no threshold or +-inf (nothing or
        everything accepted), and 0.0 rather than the -0.0 of a negated zero distance.

        >>> Similarity.EUCLIDEAN.threshold_for_report(-0.6), Similarity.COSINE.threshold_for_report(float("inf"))
        (0.6, None)
        """
        if score_threshold is None or not math.isfinite(score_threshold):
            return None
        return float(self.to_model_units(score_threshold)) + 0.0

    def from_model_units(self, model_threshold: _T) -> _T:
        """Turn a threshold in the model's units into a score threshold; the inverse of `to_model_units`.

        >>> Similarity.EUCLIDEAN.from_model_units(0.6)
        -0.6
        """
        return self._convert(model_threshold)

    def _convert(self, value: _T) -> _T:
        # Both directions are the same map: negation for distances, identity for cosine.
        sign = -1.0 if self is Similarity.EUCLIDEAN else 1.0
        if isinstance(value, np.ndarray):
            return sign * np.asarray(value, dtype=np.float64)
        return sign * float(value)


@dataclass(frozen=True)
class PairChunk:
    """Consecutive pairs ``(first[k], second[k])`` with ``first < second``, their scores and genuine flags."""

    first: np.ndarray
    second: np.ndarray
    scores: np.ndarray
    genuine: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass(frozen=True)
class ScoredPairs:
    """Consecutive pairs scored by every model of a pass: the pairs and their genuine flags once, one score array
    per model (in the order the models were given). `model` is one model's `PairChunk`, sharing the arrays."""

    first: np.ndarray
    second: np.ndarray
    genuine: np.ndarray
    scores: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return int(self.genuine.shape[0])

    def model(self, index: int) -> PairChunk:
        """The pairs as model ``index`` scored them (a view: no array is copied)."""
        return PairChunk(self.first, self.second, self.scores[index], self.genuine)

    @classmethod
    def of(cls, chunk: PairChunk) -> ScoredPairs:
        """One model's chunk as the pairs of a one-model pass."""
        return cls(chunk.first, chunk.second, chunk.genuine, (chunk.scores,))


def identity_codes(labels: Sequence[str]) -> np.ndarray:
    """Number identity labels: equal labels get equal codes (codes follow the sorted order of the labels).

    >>> identity_codes(["bob", "amy", "bob"])
    array([1, 0, 1])
    """
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64)
    _, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    return codes.astype(np.int64).reshape(-1)


def _as_vectors(vectors: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (one vector per row), got shape {array.shape}")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name} has non-finite values (NaN or inf), first in row {row}")
    return array


def prepare_rows(vectors: np.ndarray, similarity: Similarity, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows ready for one matrix product: unit rows for cosine; the squared norms for Euclidean."""
    squared_norms = np.einsum("ij,ij->i", vectors, vectors)
    if similarity is Similarity.EUCLIDEAN:
        return vectors, squared_norms
    zero = squared_norms == 0.0
    if zero.any():
        row = int(np.flatnonzero(zero)[0])
        raise ValueError(f"row {row} of {name} is a zero vector: its cosine similarity is undefined")
    return vectors / np.sqrt(squared_norms)[:, None], squared_norms


def block_scores(
    a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray, similarity: Similarity, xp: Any = np
) -> np.ndarray:
    """Score matrix of prepared row blocks (`prepare_rows`), built in place to keep one block-sized buffer.

    ``xp`` is the array module of the blocks: numpy, or CuPy for blocks on a GPU (`faceval.compute.gpu`).
    """
    product = a @ b.T
    if similarity is Similarity.COSINE:
        # Rounding can put the cosine of (nearly) parallel unit vectors just past +-1.
        return xp.clip(product, -1.0, 1.0, out=product)
    squared = product
    squared *= -2.0
    squared += a_sq[:, None]
    squared += b_sq[None, :]
    xp.maximum(squared, 0.0, out=squared)
    if a.shape[0] and b.shape[0]:
        cutoff = _CANCELLATION_RATIO * (a_sq.max() + b_sq.max())
        rows, cols = xp.nonzero(squared < cutoff)
        if rows.size:
            diff = a[rows] - b[cols]
            squared[rows, cols] = xp.einsum("ij,ij->i", diff, diff)
    distances = xp.sqrt(squared, out=squared)
    return xp.negative(distances, out=distances)


def pair_scores_block(a: np.ndarray, b: np.ndarray, similarity: Similarity) -> np.ndarray:
    """Scores (larger = more alike) of every row of ``a`` against every row of ``b``: ``(len(a), len(b))``.

    Euclidean: ``-sqrt(max(|a|^2 + |b|^2 - 2 a.b, 0))`` in float64, with near-duplicate pairs recomputed from
    ``a - b`` so that identical vectors score exactly 0. Cosine: the product of the L2-normalised rows; a zero
    row raises `ValueError`.

    >>> pair_scores_block(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]), Similarity.EUCLIDEAN)
    array([[-5.]])
    """
    similarity = Similarity(similarity)
    a = _as_vectors(a, "a")
    b = _as_vectors(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b have vectors of different lengths: {a.shape[1]} and {b.shape[1]}")
    prepared_a, a_sq = prepare_rows(a, similarity, "a")
    prepared_b, b_sq = prepare_rows(b, similarity, "b")
    return block_scores(prepared_a, a_sq, prepared_b, b_sq, similarity)


def paired_scores(vectors: np.ndarray, first: np.ndarray, second: np.ndarray, similarity: Similarity) -> np.ndarray:
    """The scores of the pairs ``(first[k], second[k])`` of rows of ``vectors``, one per pair (the listed pairs of a
    pair list, a sample of pairs), row by row: the cosine of the unit rows (`prepare_rows`), clipped to [-1, 1], or
    minus the Euclidean distance computed from ``a - b`` (identical vectors score exactly 0), as
    `pair_scores_block` defines them (equal to its scores up to rounding). Memory: two blocks of rows.

    >>> paired_scores(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([0, 1]), np.array([1, 1]), "euclidean")
    array([-5., -0.])
    """
    similarity = Similarity(similarity)
    rows, _ = prepare_rows(_as_vectors(vectors, "vectors"), similarity, "vectors")
    scores = np.empty(len(first))
    for lo in range(0, len(first), _PAIRS_PER_BLOCK):
        a, b = rows[first[lo : lo + _PAIRS_PER_BLOCK]], rows[second[lo : lo + _PAIRS_PER_BLOCK]]
        if similarity is Similarity.COSINE:
            np.clip(np.einsum("ij,ij->i", a, b), -1.0, 1.0, out=scores[lo : lo + a.shape[0]])
        else:
            a -= b  # a is a copy (gathered rows)
            np.negative(np.sqrt(np.einsum("ij,ij->i", a, a)), out=scores[lo : lo + a.shape[0]])
    return scores


@dataclass(frozen=True)
class PreparedVectors:
    """Rows ready for `prepared_scores` (unit rows for cosine, rows and squared norms for Euclidean), so that a
    gallery searched by many probe blocks is checked and normalised once."""

    rows: np.ndarray
    squared_norms: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def take(self, index: slice | np.ndarray) -> PreparedVectors:
        """The rows at ``index`` (a slice or integer indices)."""
        return PreparedVectors(self.rows[index], self.squared_norms[index])


def prepare_vectors(vectors: np.ndarray, similarity: Similarity, name: str = "vectors") -> PreparedVectors:
    """Check (2-D, finite; no zero row for cosine) and prepare ``vectors`` once for many `prepared_scores` calls."""
    similarity = Similarity(similarity)
    rows, squared_norms = prepare_rows(_as_vectors(vectors, name), similarity, name)
    return PreparedVectors(rows, squared_norms)


def prepared_scores(a: PreparedVectors, b: PreparedVectors, similarity: Similarity) -> np.ndarray:
    """`pair_scores_block` of prepared rows: the same scores, to the last bit, for the same blocks.

    >>> vectors = prepare_vectors(np.array([[0.0, 0.0], [3.0, 4.0]]), Similarity.EUCLIDEAN)
    >>> prepared_scores(vectors.take(slice(0, 1)), vectors, Similarity.EUCLIDEAN)
    array([[-0., -5.]])
    """
    if a.rows.shape[1] != b.rows.shape[1]:
        raise ValueError(f"vectors of different lengths: {a.rows.shape[1]} and {b.rows.shape[1]}")
    return block_scores(a.rows, a.squared_norms, b.rows, b.squared_norms, Similarity(similarity))


def iter_pair_chunks(
    vectors: np.ndarray,
    identities: np.ndarray,
    similarity: Similarity,
    max_pairs_per_chunk: int = 2_000_000,
    pair_range: tuple[int, int] | None = None,
) -> Iterator[PairChunk]:
    """Yield all pairs ``i < j`` of ``vectors`` in row-major upper-triangle order, in chunks: `iter_scored_pairs`
    of one model.

    >>> chunks = iter_pair_chunks(np.eye(3), np.array([0, 0, 1]), Similarity.COSINE, max_pairs_per_chunk=2)
    >>> [(c.first.tolist(), c.second.tolist(), c.genuine.tolist()) for c in chunks]
    [([0, 0], [1, 2], [True, False]), ([1], [2], [False])]
    """
    return (
        pairs.model(0)
        for pairs in iter_scored_pairs([(vectors, similarity)], identities, max_pairs_per_chunk, pair_range)
    )


def iter_scored_pairs(
    models: Sequence[tuple[np.ndarray, Similarity]],
    identities: np.ndarray,
    max_pairs_per_chunk: int = 2_000_000,
    pair_range: tuple[int, int] | None = None,
) -> Iterator[ScoredPairs]:
    """Yield all pairs ``i < j`` of the images in row-major upper-triangle order, in chunks, each scored by every
    model: ``models`` holds one ``(vectors, similarity)`` per model, the vectors of the same images in the same
    rows. The pairs and genuine flags of a chunk are worked out once for all models.

    ``pair_range=(start, stop)`` yields only the pairs of those positions in that order (a share of the work for
    one task of `faceval.compute.distributed`; `tile_ranges` gives shares that cost no repeated work).

    Every chunk but the last holds exactly ``max_pairs_per_chunk`` pairs; a chunk may start or end inside a
    row. ``identities`` holds one integer identity code per row (see `identity_codes`); a pair is genuine
    when its codes are equal. Memory: the chunk plus one tile of about a million scores per model. A pair's
    score does not depend on ``max_pairs_per_chunk`` nor on the other models.

    >>> pairs = next(iter_scored_pairs([(np.eye(2), "cosine"), (np.eye(2), "euclidean")], np.array([0, 1])))
    >>> pairs.first.tolist(), pairs.second.tolist(), [scores.tolist() for scores in pairs.scores]
    ([0], [1], [[0.0], [-1.4142135623730951]])
    """
    if not models:
        raise ValueError("iter_scored_pairs needs at least one model's vectors")
    prepared = []
    for index, (vectors, similarity) in enumerate(models):
        name = "vectors" if len(models) == 1 else f"vectors of model {index}"
        similarity = Similarity(similarity)
        vectors = _as_vectors(vectors, name)
        if prepared and vectors.shape[0] != prepared[0][0].shape[0]:
            raise ValueError(
                f"every model needs vectors of the same images: {prepared[0][0].shape[0]} and {vectors.shape[0]} rows"
            )
        rows, squared_norms = prepare_rows(vectors, similarity, name)
        prepared.append((rows, squared_norms, similarity))
    n = prepared[0][0].shape[0]
    identities = np.asarray(identities)
    if identities.ndim != 1 or identities.shape[0] != n:
        raise ValueError(
            f"identities must be 1-D with one code per vector: got shape {identities.shape} for {n} vectors"
        )
    if identities.size and not np.issubdtype(identities.dtype, np.integer):
        raise ValueError(f"identities must be integer codes (see identity_codes), got dtype {identities.dtype}")
    if int(max_pairs_per_chunk) < 1:
        raise ValueError(f"max_pairs_per_chunk must be at least 1, got {max_pairs_per_chunk}")
    total = n * (n - 1) // 2
    start, stop = (0, total) if pair_range is None else (int(pair_range[0]), int(pair_range[1]))
    if not 0 <= start <= stop <= total:
        raise ValueError(f"pair_range must lie within [0, {total}] with start <= stop, got {pair_range}")
    return _generate_chunks(prepared, identities, int(max_pairs_per_chunk), start, stop)


def tile_rows(n: int) -> int:
    """Rows per scoring tile for ``n`` vectors: tile ``t`` scores rows ``[t*T, t*T + T)`` against the rows after
    ``t*T``. The tiles depend on ``n`` only, so that a pair's score, to the last bit, does not depend on how the
    pairs are cut into chunks or tasks."""
    return max(1, _TILE_ELEMENTS // max(n - 1, 1))


def pair_offsets(n: int) -> np.ndarray:
    """``offsets[i]``: position of pair ``(i, i + 1)``, i.e. the number of pairs in the rows above row ``i``."""
    rows = np.arange(n, dtype=np.int64)
    return rows * (2 * n - rows - 1) // 2


def tile_ranges(n: int, pairs_per_range: int) -> list[tuple[int, int]]:
    """Consecutive pair ranges covering all pairs of ``n`` vectors, each of whole tiles and about
    ``pairs_per_range`` pairs (at least one tile): shares for `iter_pair_chunks`'s ``pair_range``.

    >>> tile_rows(3000), tile_ranges(3000, 1_500_000)[:2]
    (349, [(0, 1850049), (1850049, 3711615)])
    """
    total = n * (n - 1) // 2
    rows = tile_rows(n)
    boundaries = [int(offset) for offset in pair_offsets(n)[::rows]] + [total]
    ranges, start = [], 0
    for boundary in boundaries[1:]:
        if boundary - start >= pairs_per_range or boundary == total:
            if boundary > start:
                ranges.append((start, boundary))
            start = boundary
    return ranges


def _generate_chunks(
    prepared: list[tuple[np.ndarray, np.ndarray, Similarity]],
    identities: np.ndarray,
    chunk: int,
    first_pair: int,
    end_pair: int,
) -> Iterator[ScoredPairs]:
    # Kept apart from iter_scored_pairs so that bad arguments raise at the call, not at the first next().
    n = prepared[0][0].shape[0]
    rows = np.arange(n, dtype=np.int64)
    offsets = pair_offsets(n)
    # Scores come from fixed tiles (see tile_rows), never from chunk-shaped products; one tile per model is kept.
    n_tile_rows = tile_rows(n)
    cached_index, cached_tiles = -1, [np.zeros((0, 0))] * len(prepared)
    for start in range(first_pair, end_pair, chunk):
        stop = min(start + chunk, end_pair)
        row_lo = int(np.searchsorted(offsets, start, side="right")) - 1
        row_hi = int(np.searchsorted(offsets, stop - 1, side="right")) - 1
        chunk_rows = rows[row_lo : row_hi + 1]
        # Pairs of each spanned row that fall in [start, stop): the first and last rows may be cut.
        row_start = np.maximum(offsets[chunk_rows], start)
        row_stop = np.minimum(offsets[chunk_rows] + (n - 1 - chunk_rows), stop)
        first = np.repeat(chunk_rows, row_stop - row_start)
        second = np.arange(start, stop, dtype=np.int64) - offsets[first] + first + 1
        scores = tuple(np.empty(stop - start, dtype=np.float64) for _ in prepared)
        for tile_index in range(row_lo // n_tile_rows, row_hi // n_tile_rows + 1):
            tile_lo = tile_index * n_tile_rows
            if tile_index != cached_index:
                tile_hi = min(tile_lo + n_tile_rows, n)
                cached_tiles = [
                    block_scores(
                        vectors[tile_lo:tile_hi],
                        squared_norms[tile_lo:tile_hi],
                        vectors[tile_lo + 1 :],
                        squared_norms[tile_lo + 1 :],
                        similarity,
                    )
                    for vectors, squared_norms, similarity in prepared
                ]
                cached_index = tile_index
            lo, hi = np.searchsorted(first, [tile_lo, tile_lo + n_tile_rows])
            flat = (first[lo:hi] - tile_lo) * (n - tile_lo - 1) + (second[lo:hi] - tile_lo - 1)
            for model_scores, tile in zip(scores, cached_tiles, strict=True):
                model_scores[lo:hi] = tile.ravel()[flat]
        genuine = identities[first] == identities[second]
        yield ScoredPairs(first=first, second=second, genuine=genuine, scores=scores)


def all_pair_scores(vectors: np.ndarray, identities: np.ndarray, similarity: Similarity) -> PairChunk:
    """All pairs at once, for small sets: `iter_pair_chunks` concatenated into one `PairChunk`."""
    chunks = list(iter_pair_chunks(vectors, identities, similarity))
    if not chunks:
        empty = np.zeros(0, dtype=np.int64)
        return PairChunk(empty, empty.copy(), np.zeros(0), np.zeros(0, dtype=bool))
    return PairChunk(
        first=np.concatenate([c.first for c in chunks]),
        second=np.concatenate([c.second for c in chunks]),
        scores=np.concatenate([c.scores for c in chunks]),
        genuine=np.concatenate([c.genuine for c in chunks]),
    )
