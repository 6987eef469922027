"""Identity-level bootstrap: percentile intervals for verification figures when pairs share subjects.

Pairs built from the same people are not independent, so a resample draws *identities* with replacement
(within each stratum, e.g. each demographic group, as many as the stratum has) and rebuilds their pairs
(``docs/metrics.md``, "Uncertainty"). A resample is represented by the multiplicity ``m_k`` of every identity
(multinomial counts, `identity_multiplicities`) rather than by copies of images, and every figure is a weighted
figure over the original pairs:

- a genuine pair of identity ``k`` has weight ``m_k``;
- an impostor pair of identities ``k`` and ``l`` has weight ``m_k * m_l``.

That is exactly "rebuild the pairs" under this convention: every drawn copy of an identity brings all of its
images, all pairs between images of *different* copies are formed, and the pairs between two copies of the
same identity are not (they would pair an image with itself, or repeat that identity's genuine pairs, which
no real data set contains). So a copy contributes its own genuine pairs once, and each copy of ``k`` meets each
copy of ``l`` once.

Figures are weighted versions of `faceval.stats.metrics` with its exact conventions (ties count half in the AUC, a
pair is accepted when ``s >= tau``, the EER interpolated between neighbouring distinct scores, TAR at the lowest
threshold whose FMR is ``<= far``). With unit multiplicities they equal the `faceval.stats.metrics` figures; with the
multiplicities of a resample, the figures of the literally rebuilt pairs.

Speed: the pairs are sorted once (`SortedPairs`); a block of resamples is a matrix of weights (resamples x
pairs, about ``_BLOCK_ELEMENTS`` at a time to bound memory) whose cumulative sums give every figure, with
binary searches for the EER and TAR@FAR. With few identities (``n^2`` identity pairs no more than the
impostor pairs) each impostor pair's weight ``m_k m_l`` is one gather from the block's table of identity-pair
products, and each row's total impostor weight that table times the number of impostor pairs per identity pair,
instead of two gathers, a product and a sum over the stream. Blocks run on a few threads (numpy releases the GIL).
1,000 resamples of 355,000 pairs of 85 identities take about 0.3 s on two threads.

>>> import numpy as np
>>> pairs = SortedPairs([0.9, 0.4, 0.3], [True, False, True], [0, 0, 1], [0, 1, 1])
>>> figures = pairs.resampled_figures(np.array([[1, 1], [2, 0]]))
>>> figures.auc.tolist()
[0.5, nan]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceval.stats.metrics import validated_scores

DEFAULT_RESAMPLES = 1000
CONFIDENCE = 0.95
# Above this many pairs intervals are not computed. A group analysis with 1,000 resamples peaks near 200 bytes
# per pair, exact score tables included (measured: 1.1 GB at 5 M pairs, 3.8 GB at 20 M), and its time grows as
# resamples x pairs (23 s at 5 M pairs on 2 idle cores).
MAX_BOOTSTRAP_PAIRS = 20_000_000
# Weights held per block of resamples (int32): 16 MB, so a few blocks in flight stay in the hundreds of MB.
_BLOCK_ELEMENTS = 1 << 22
# Beyond 2**53 an integer count is no longer exact in float64, so the AUC falls back to float sums.
_EXACT_FLOAT = 2**53


@dataclass(frozen=True)
class Interval:
    """A percentile interval, and how many resamples had the figure defined (``n_valid`` of ``n_resamples``)."""

    low: float
    high: float
    n_valid: int
    n_resamples: int

    def to_list(self) -> list[float]:
        """``[low, high]`` for JSON."""
        return [self.low, self.high]


def percentile_interval(values: Any, confidence: float = CONFIDENCE) -> Interval | None:
    """The central percentile interval of the finite values (NaN marks a resample where the figure is undefined).

    None when no resample has the figure defined.

    >>> interval = percentile_interval(np.append(np.arange(1001.0), np.nan))
    >>> round(interval.low, 6), round(interval.high, 6), interval.n_valid, interval.n_resamples
    (25.0, 975.0, 1001, 1002)
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return Interval(float(low), float(high), int(finite.size), int(values.size))


def identity_strata(identities: Any, image_strata: Any) -> np.ndarray:
    """One stratum code per identity from per-image stratum codes (e.g. groups): the stratum of most of its images.

    An identity whose images span several strata (a per-image attribute such as an age band or glasses) is
    resampled with the stratum holding most of its images (on a tie, the lowest code), so every identity is drawn
    in exactly one stratum and the strata keep the size of the groups. Giving each combination of strata a stratum
    of its own instead would leave many strata of one identity, always drawn exactly once: their figures would not
    vary at all and the intervals would shrink to a point. Identity codes without images get ``-1``.

    >>> identity_strata([0, 0, 1, 2, 2, 2], [5, 5, 7, 5, 7, 7]).tolist()
    [5, 7, 7]
    """
    identities = np.asarray(identities, dtype=np.int64)
    image_strata = np.asarray(image_strata, dtype=np.int64)
    if identities.shape != image_strata.shape or identities.ndim != 1:
        raise ValueError(
            f"identities and image_strata must be 1-D of one length: {identities.shape}, {image_strata.shape}"
        )
    if identities.size and int(identities.min()) < 0:
        raise ValueError("identity codes must be >= 0")
    n_identities = int(identities.max()) + 1 if identities.size else 0
    strata = np.full(n_identities, -1, dtype=np.int64)
    if not identities.size:
        return strata
    # Images per (identity, stratum), ordered by identity, then by count descending, then by stratum ascending:
    # the first row of each identity is its stratum.
    pairs, counts = np.unique(np.stack((identities, image_strata), axis=1), axis=0, return_counts=True)
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
    pairs = pairs[order]
    first = np.concatenate(([True], pairs[1:, 0] != pairs[:-1, 0]))
    strata[pairs[first, 0]] = pairs[first, 1]
    return strata


def stratum_sizes(strata: Any) -> dict[int, int]:
    """Identities per stratum code (`identity_strata`), leaving out ``-1`` (identity codes without images).

    A stratum of one identity draws it exactly once in every resample, so it adds no sampling variation.

    >>> stratum_sizes([5, 7, 7, -1])
    {5: 1, 7: 2}
    """
    codes, counts = np.unique(np.asarray(strata, dtype=np.int64), return_counts=True)
    return {int(code): int(count) for code, count in zip(codes, counts, strict=True) if code >= 0}


def identity_multiplicities(strata: Any, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """How often each identity is drawn in each resample: ``(n_resamples, n_identities)`` int32.

    Within each stratum (one code per identity, ascending order of codes) as many identities are drawn with
    replacement as the stratum has: multinomial counts from ``numpy.random.default_rng(seed)``.

    >>> m = identity_multiplicities([0, 0, 0, 1, 1], n_resamples=4, seed=1)
    >>> m.shape, m[:, :3].sum(axis=1).tolist(), m[:, 3:].sum(axis=1).tolist()
    ((4, 5), [3, 3, 3, 3], [2, 2, 2, 2])
    """
    strata = np.asarray(strata, dtype=np.int64)
    if strata.ndim != 1:
        raise ValueError(f"strata must be 1-D (one code per identity), got shape {strata.shape}")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    multiplicities = np.zeros((int(n_resamples), strata.size), dtype=np.int32)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        size = members.size
        multiplicities[:, members] = rng.multinomial(size, np.full(size, 1.0 / size), size=int(n_resamples))
    return multiplicities


@dataclass(frozen=True, eq=False)
class ResampledFigures:
    """One value per resample (row): NaN where a resample leaves the figure undefined (no genuine or impostor weight).

    ``tar[:, i]`` is TAR at ``fars[i]``; ``fmr[:, j]`` / ``fnmr[:, j]`` the rates at ``thresholds[j]``.
    """

    auc: np.ndarray
    eer: np.ndarray
    tar: np.ndarray
    fmr: np.ndarray
    fnmr: np.ndarray
    fars: tuple[float, ...]
    thresholds: tuple[float, ...]


def _undefined_figures(rows: int, fars: Sequence[float], thresholds: Sequence[float]) -> ResampledFigures:
    """All-NaN figures for ``rows`` resamples, after checking the FARs and thresholds asked for."""
    fars = tuple(float(far) for far in fars)
    for far in fars:
        if not 0.0 < far <= 1.0:
            raise ValueError(f"far must be in (0, 1], got {far}")
    thresholds = tuple(float(threshold) for threshold in thresholds)
    if any(np.isnan(thresholds)):
        raise ValueError("thresholds must not be NaN")
    return ResampledFigures(
        auc=np.full(rows, np.nan),
        eer=np.full(rows, np.nan),
        tar=np.full((rows, len(fars)), np.nan),
        fmr=np.full((rows, len(thresholds)), np.nan),
        fnmr=np.full((rows, len(thresholds)), np.nan),
        fars=fars,
        thresholds=thresholds,
    )


def _descending(scores: np.ndarray) -> np.ndarray:
    # Stable, so equal scores keep their input order and the result does not depend on the sort algorithm.
    return np.argsort(-scores, kind="stable")


def _count_at_least(descending: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many of the descending scores are ``>= value``, for each value."""
    return np.searchsorted(-descending, -values, side="right")


def _count_above(descending: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many of the descending scores are ``> value``, for each value."""
    return np.searchsorted(-descending, -values, side="left")


def _first_true(predicate: Callable[[np.ndarray], np.ndarray], rows: int, size: int) -> np.ndarray:
    """Per row, the smallest index in ``[0, size)`` where a predicate monotone in the index holds (it must hold
    at ``size - 1``): a binary search run on all rows at once."""
    low = np.zeros(rows, dtype=np.intp)
    high = np.full(rows, size - 1, dtype=np.intp)
    while np.any(low < high):
        middle = (low + high) // 2
        holds = predicate(middle)
        high = np.where(holds, middle, high)
        low = np.where(holds, low, middle + 1)
    return low


class SortedPairs:
    """Pairs sorted once by score (descending), split into genuine and impostor streams, for weighted figures.

    ``first_identity`` / ``second_identity`` are identity codes ``0..K-1`` of each pair's two images; a pair is
    genuine exactly when they are equal (checked).

    >>> pairs = SortedPairs([0.9, 0.8, 0.8, 0.1], [True, True, False, False], [0, 1, 0, 0], [0, 1, 1, 2])
    >>> unit = pairs.resampled_figures(np.ones((1, 3), dtype=np.int32))
    >>> float(unit.auc[0])
    0.875
    """

    def __init__(self, scores: Any, genuine: Any, first_identity: Any, second_identity: Any) -> None:
        scores, genuine = validated_scores(scores, genuine)
        first = np.asarray(first_identity)
        second = np.asarray(second_identity)
        if first.shape != scores.shape or second.shape != scores.shape:
            raise ValueError(
                f"first_identity and second_identity need one code per pair: got shapes {first.shape} and "
                f"{second.shape} for {scores.size} pairs"
            )
        if scores.size and (first.dtype.kind not in "iu" or second.dtype.kind not in "iu"):
            raise ValueError("identity codes must be integers (see faceval.models.scoring.identity_codes)")
        first, second = first.astype(np.intp), second.astype(np.intp)
        if scores.size and min(int(first.min()), int(second.min())) < 0:
            raise ValueError("identity codes must be >= 0")
        mismatch = genuine != (first == second)
        if mismatch.any():
            index = int(np.flatnonzero(mismatch)[0])
            raise ValueError(
                f"pair {index} is labelled {'genuine' if genuine[index] else 'impostor'} but its identity codes are "
                f"{int(first[index])} and {int(second[index])}"
            )
        self.n_identities = int(max(first.max(), second.max())) + 1 if scores.size else 0
        # Positions fit int32 below 2**31 pairs; identity codes stay intp, the index type np.take wants, since
        # they are gathered once per block of resamples.
        position = np.int32 if scores.size < 2**31 else np.int64
        genuine_index = np.flatnonzero(genuine)
        genuine_index = genuine_index[_descending(scores[genuine_index])]
        impostor_index = np.flatnonzero(~genuine)
        impostor_index = impostor_index[_descending(scores[impostor_index])]
        self.genuine_scores = scores[genuine_index]
        self.genuine_identity = first[genuine_index]
        self.impostor_scores = scores[impostor_index]
        self.impostor_first = first[impostor_index]
        self.impostor_second = second[impostor_index]
        # With few identities (the table of identity-pair products no larger than the impostor stream), each
        # impostor pair's weight is one gather from that table, at its cell: many times faster than two gathers
        # and a product, and the same integers.
        n_cells = self.n_identities * self.n_identities
        self._impostor_cell = (
            self.impostor_first * self.n_identities + self.impostor_second
            if 0 < n_cells <= self.impostor_first.size
            else None
        )
        self._impostors_per_cell = (
            None if self._impostor_cell is None else np.bincount(self._impostor_cell, minlength=n_cells)
        )
        del first, second, genuine_index, impostor_index
        # Levels: +inf (nothing accepted), then every distinct score; pairs accepted at each level.
        levels = np.unique(scores)[::-1]
        self._level_impostors = np.concatenate(([0], _count_at_least(self.impostor_scores, levels))).astype(position)
        self._level_genuines = np.concatenate(([0], _count_at_least(self.genuine_scores, levels))).astype(position)
        del levels
        # AUC: impostors at least as high and strictly higher than each genuine pair.
        self._impostors_at_least = _count_at_least(self.impostor_scores, self.genuine_scores)
        self._impostors_above = _count_above(self.impostor_scores, self.genuine_scores)
        # TAR@FAR: if impostor p is the first one rejected, the genuine pairs scoring strictly above it are accepted.
        self._genuines_above_impostor = np.append(
            _count_above(self.genuine_scores, self.impostor_scores), self.genuine_scores.size
        ).astype(position)

    @property
    def n_genuine(self) -> int:
        return int(self.genuine_scores.size)

    @property
    def n_impostor(self) -> int:
        return int(self.impostor_scores.size)

    def __len__(self) -> int:
        return self.n_genuine + self.n_impostor

    def _check_multiplicities(self, multiplicities: Any) -> np.ndarray:
        multiplicities = np.asarray(multiplicities)
        if multiplicities.ndim != 2 or multiplicities.shape[1] < self.n_identities:
            raise ValueError(
                f"multiplicities must be (resamples, identities) with at least {self.n_identities} columns, "
                f"got shape {multiplicities.shape}"
            )
        if multiplicities.dtype.kind not in "iu" or (multiplicities.size and multiplicities.min() < 0):
            raise ValueError("multiplicities must be non-negative integers")
        return multiplicities.astype(np.int32, copy=False)

    def resampled_figures(
        self,
        multiplicities: Any,
        fars: Sequence[float] = (),
        thresholds: Sequence[float] = (),
        workers: int | None = None,
    ) -> ResampledFigures:
        """Figures of every resample given by identity ``multiplicities`` (resamples x identities).

        ``thresholds`` are in score units (accept ``s >= tau``; +-inf allowed). ``workers`` threads share the
        blocks (default: the CPU count, at most 4).
        """
        multiplicities = self._check_multiplicities(multiplicities)
        rows = multiplicities.shape[0]
        result = _undefined_figures(rows, fars, thresholds)
        block = max(1, _BLOCK_ELEMENTS // max(len(self), 1))

        def run(start: int) -> None:
            part = multiplicities[start : start + block]
            genuine_weights = np.take(part, self.genuine_identity, axis=1)
            if self._impostor_cell is not None:
                own = part[:, : self.n_identities]
                products = (own[:, :, None] * own[:, None, :]).reshape(part.shape[0], -1)
                impostor_weights = np.take(products, self._impostor_cell, axis=1)
                # Each cell's product times its number of impostor pairs: the total without a pass over them.
                impostor_total = products.astype(np.int64) @ self._impostors_per_cell
            else:
                impostor_weights = np.take(part, self.impostor_first, axis=1)
                impostor_weights *= np.take(part, self.impostor_second, axis=1)
                impostor_total = impostor_weights.sum(axis=1, dtype=np.int64)
            rows = slice(start, start + part.shape[0])
            self._fill(result, rows, genuine_weights, impostor_weights, impostor_total)

        starts = range(0, rows, block)
        workers = workers or min(4, os.cpu_count() or 1)
        if workers == 1 or len(starts) == 1:
            for start in starts:
                run(start)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(run, starts))
        return result

    def _fill(
        self,
        result: ResampledFigures,
        rows: slice,
        genuine_weights: np.ndarray,
        impostor_weights: np.ndarray,
        impostor_total: np.ndarray,
    ) -> None:
        """Every figure of one block of weight rows (``impostor_total``: each row's impostor weight summed),
        written into ``result[rows]``."""
        count = genuine_weights.shape[0]
        # Cumulative weights with a leading 0: column p is the weight of the first p pairs of the stream.
        genuine_cum = np.zeros((count, self.n_genuine + 1), dtype=np.int64)
        np.cumsum(genuine_weights, axis=1, out=genuine_cum[:, 1:])
        cum_dtype = np.int32 if impostor_total.max(initial=0) < 2**31 else np.int64
        impostor_cum = np.zeros((count, self.n_impostor + 1), dtype=cum_dtype)
        np.cumsum(impostor_weights, axis=1, out=impostor_cum[:, 1:])
        genuine_total = genuine_cum[:, -1]
        has_genuine, has_impostor = genuine_total > 0, impostor_total > 0
        both = has_genuine & has_impostor

        for column, threshold in enumerate(result.thresholds):
            impostors = _count_at_least(self.impostor_scores, np.array([threshold]))[0]
            genuines = _count_at_least(self.genuine_scores, np.array([threshold]))[0]
            with np.errstate(divide="ignore", invalid="ignore"):
                fmr = impostor_cum[:, impostors] / impostor_total
                fnmr = (genuine_total - genuine_cum[:, genuines]) / genuine_total
            result.fmr[rows, column] = np.where(has_impostor, fmr, np.nan)
            result.fnmr[rows, column] = np.where(has_genuine, fnmr, np.nan)
        if not both.any():
            return
        # The block's rows with both kinds of weight; the others keep NaN.
        live = np.flatnonzero(both)
        if live.size < count:  # a copy of the cumulative weights, only when some rows must go
            genuine_cum, impostor_cum = genuine_cum[live], impostor_cum[live]
            genuine_total, impostor_total = genuine_total[live], impostor_total[live]
        every = np.arange(live.size)
        target = np.arange(rows.start, rows.start + count)[live]

        # AUC: sum over genuine pairs of w_g * (2 * impostor weight below + impostor weight tied), exact in integers.
        at_least = impostor_cum[:, self._impostors_at_least].astype(np.int64)
        above = impostor_cum[:, self._impostors_above].astype(np.int64)
        per_genuine = 2 * impostor_total[:, None] - at_least - above
        denominator = 2 * genuine_total * impostor_total
        if denominator.max() < _EXACT_FLOAT:
            numerator = np.einsum("ij,ij->i", genuine_weights[live].astype(np.int64), per_genuine)
            result.auc[target] = numerator / denominator
        else:
            numerator = np.einsum("ij,ij->i", genuine_weights[live].astype(np.float64), per_genuine.astype(np.float64))
            result.auc[target] = numerator / denominator.astype(np.float64)

        # EER as faceval.stats.metrics.equal_error_rate, on the levels (+inf first): FMR - FNMR is non-decreasing, so
        # the first level where it is >= 0 is found by binary search. A level without weight in this resample
        # repeats the rates of the level above it, so "the level before" has the rates of the previous real one.
        def rates(level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            fmr = impostor_cum[every, self._level_impostors[level]] / impostor_total
            fnmr = (genuine_total - genuine_cum[every, self._level_genuines[level]]) / genuine_total
            return fmr, fnmr

        def crossed(level: np.ndarray) -> np.ndarray:
            fmr, fnmr = rates(level)
            return fmr - fnmr >= 0

        below = _first_true(crossed, live.size, self._level_impostors.size)
        fmr_below, fnmr_below = rates(below)
        fmr_above, fnmr_above = rates(np.maximum(below - 1, 0))
        difference_below = fmr_below - fnmr_below
        difference_above = fmr_above - fnmr_above
        with np.errstate(divide="ignore", invalid="ignore"):
            share = -difference_above / (difference_below - difference_above)
            interpolated = fmr_above + share * (fmr_below - fmr_above)
        result.eer[target] = np.where(difference_below == 0, fmr_below, interpolated)

        # TAR@FAR as faceval.stats.metrics.tar_at_far: the first impostor whose inclusion lifts FMR above far is
        # rejected with every pair tied with it, and the genuine pairs strictly above it are accepted.
        for column, far in enumerate(result.fars):
            rejected = _first_true(
                lambda p, far=far: (
                    (p > self.n_impostor) | (impostor_cum[every, np.minimum(p, self.n_impostor)] / impostor_total > far)
                ),
                live.size,
                self.n_impostor + 2,
            )
            first_rejected = rejected - 1
            accepted = genuine_cum[every, self._genuines_above_impostor[first_rejected]]
            result.tar[target, column] = accepted / genuine_total
