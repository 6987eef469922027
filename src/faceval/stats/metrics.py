"""Streaming verification metrics: the `ScoreCounts` state, ROC, AUC, EER, TAR@FAR and threshold sweeps.

Definitions follow ``docs/metrics.md``. Scores are similarities (larger = more alike; distances negated, see
`faceval.models.scoring.Similarity`) and a pair is accepted when ``s >= tau``. Every pair with the same score gets
the same decision, so all figures are computed from a `ScoreTable`: the distinct scores with the number of
genuine and impostor pairs at each. The table is exact (no binning), so every figure is exact up to float
rounding.

Usage follows a torchmetrics-like state: ``update`` chunk by chunk (or ``merge`` states built elsewhere), then
``compute`` the table once and derive each figure from it with one function per figure::

    counts = ScoreCounts()
    for chunk in iter_pair_chunks(vectors, identities, similarity):
        counts.update(chunk.scores, chunk.genuine)
    table = counts.compute()
    summary = verification_summary(table)

Thresholds are returned in score units; convert them with `Similarity.to_model_units`. Figures that need both
genuine and impostor pairs raise `ValueError` (naming both counts) when either is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

DEFAULT_FARS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)

# Raw scores are buffered and sorted into (distinct value, count) form only once the buffer is at least this
# large and at least as large as what is already compacted: each score is then sorted O(log) times overall.
_COMPACT_MIN = 1 << 22

# Ascending distinct scores and the number of pairs at each (one count column per label where both are kept).
_Counted = tuple[np.ndarray, ...]


def validated_scores(scores: Any, genuine: Any) -> tuple[np.ndarray, np.ndarray]:
    """Scores as finite float64 and labels as bool, both 1-D of one length, or a ValueError saying why not."""
    scores = np.asarray(scores)
    genuine = np.asarray(genuine)
    if scores.ndim != 1 or genuine.ndim != 1:
        raise ValueError(f"scores and genuine must be 1-D, got shapes {scores.shape} and {genuine.shape}")
    if scores.shape[0] != genuine.shape[0]:
        raise ValueError(f"scores and genuine have different lengths: {scores.shape[0]} and {genuine.shape[0]}")
    if scores.dtype.kind not in "iuf":
        raise ValueError(f"scores must be real numbers, got dtype {scores.dtype}")
    scores = scores.astype(np.float64, copy=False)
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(
            f"scores must be finite: {int(np.isnan(scores).sum())} NaN and {int(np.isinf(scores).sum())} "
            f"infinite values, the first at index {int(np.flatnonzero(bad)[0])}"
        )
    if genuine.dtype.kind in "iuf":
        not_binary = (genuine != 0) & (genuine != 1)
        if not_binary.any():
            index = int(np.flatnonzero(not_binary)[0])
            raise ValueError(f"genuine labels must be 0/1 or bool, got {genuine[index].item()!r} at index {index}")
        genuine = genuine.astype(bool)
    elif genuine.dtype.kind != "b":
        raise ValueError(f"genuine labels must be 0/1 or bool, got dtype {genuine.dtype}")
    return scores, genuine


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Index of the first element of each run of equal values in a sorted array."""
    change = np.empty(sorted_values.size, dtype=bool)
    change[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=change[1:])
    return np.flatnonzero(change)


def _distinct_counts(sorted_values: np.ndarray) -> _Counted:
    """Distinct values of an ascending array and how often each occurs."""
    starts = _run_starts(sorted_values)
    counts = np.diff(np.append(starts, sorted_values.size))
    return sorted_values[starts], counts.astype(np.int64)


def _merge_counted(parts: Sequence[_Counted]) -> _Counted:
    """Merge ``(ascending distinct values, *count columns)`` parts, adding up the counts of equal values."""
    if len(parts) == 1:
        return parts[0]
    values = np.concatenate([part[0] for part in parts])
    # A stable sort (timsort) of a few concatenated sorted runs is a linear merge.
    order = np.argsort(values, kind="stable")
    values = values[order]
    starts = _run_starts(values)
    ends = np.append(starts, values.size)[1:] - 1
    sums = []
    for column in range(1, len(parts[0])):
        # Sums over runs of equal values from one cumulative sum (much faster than np.add.reduceat).
        running = np.cumsum(np.concatenate([part[column] for part in parts])[order])[ends]
        sums.append(np.diff(running, prepend=0))
    return (values[starts], *sums)


class ScoreCounts:
    """Streaming state of verification scores: exact counts of genuine and impostor pairs per distinct score.

    ``update`` with chunks of scores, ``merge`` states filled elsewhere (other processes, other chunks), then
    ``compute`` a `ScoreTable`. Raw chunks are buffered and compacted lazily, so memory stays near one copy of
    the scores (less with many ties) and time near one sort of them.

    >>> counts = ScoreCounts()
    >>> counts.update([0.9, 0.2, 0.9], [True, False, False])
    >>> other = ScoreCounts()
    >>> other.update(np.array([0.5]), np.array([1]))
    >>> counts.merge(other)
    >>> table = counts.compute()
    >>> table.thresholds.tolist(), table.genuine.tolist(), table.impostor.tolist()
    ([0.9, 0.5, 0.2], [1, 1, 0], [1, 0, 1])
    """

    def __init__(self) -> None:
        # Per label: compacted (values, counts) parts, and raw score chunks not yet sorted.
        self._parts: dict[bool, list[_Counted]] = {True: [], False: []}
        self._raw: dict[bool, list[np.ndarray]] = {True: [], False: []}
        self._raw_size = 0
        self._compacted_size = 0
        self._n = {True: 0, False: 0}

    @property
    def n_genuine(self) -> int:
        """Number of genuine pairs seen so far."""
        return self._n[True]

    @property
    def n_impostor(self) -> int:
        """Number of impostor pairs seen so far."""
        return self._n[False]

    def update(self, scores: Any, genuine: Any) -> None:
        """Add pairs: their scores (finite, larger = more alike) and genuine labels (bool or 0/1)."""
        scores, genuine = validated_scores(scores, genuine)
        # Boolean indexing copies, so later changes to the caller's arrays cannot reach the state.
        for label, chunk in ((True, scores[genuine]), (False, scores[~genuine])):
            if chunk.size:
                self._raw[label].append(chunk)
                self._n[label] += chunk.size
        self._raw_size += scores.size
        if self._raw_size >= max(_COMPACT_MIN, self._compacted_size):
            self._compact()

    def merge(self, other: ScoreCounts) -> None:
        """Add every pair counted by ``other`` (which is left unchanged)."""
        if not isinstance(other, ScoreCounts):
            raise TypeError(f"can only merge another ScoreCounts, got {type(other).__name__}")
        for label in (True, False):
            self._parts[label].extend(other._parts[label])
            self._raw[label].extend(other._raw[label])
            self._n[label] += other._n[label]
        self._raw_size += other._raw_size
        self._compacted_size += other._compacted_size
        if self._raw_size >= max(_COMPACT_MIN, self._compacted_size):
            self._compact()

    def _compact(self) -> None:
        size = 0
        for label in (True, False):
            parts = self._parts[label]
            if self._raw[label]:
                parts.append(_distinct_counts(np.sort(np.concatenate(self._raw[label]))))
                self._raw[label] = []
            if len(parts) > 1:
                self._parts[label] = parts = [_merge_counted(parts)]
            size += sum(values.size for values, _ in parts)
        self._raw_size = 0
        self._compacted_size = size

    def _counted(self, label: bool) -> _Counted:
        parts = self._parts[label]
        return parts[0] if parts else (np.zeros(0), np.zeros(0, dtype=np.int64))

    def compute(self) -> ScoreTable:
        """The `ScoreTable` of every pair seen so far (the state stays usable for more updates)."""
        self._compact()
        genuine_values, genuine_counts = self._counted(True)
        impostor_values, impostor_counts = self._counted(False)
        values, genuine, impostor = _merge_counted(
            [
                (genuine_values, genuine_counts, np.zeros_like(genuine_counts)),
                (impostor_values, np.zeros_like(impostor_counts), impostor_counts),
            ]
        )
        return ScoreTable(values[::-1], genuine[::-1], impostor[::-1])


@dataclass(frozen=True, eq=False)
class ScoreTable:
    """Distinct scores in descending order with the number of genuine and impostor pairs at exactly each.

    Arrays are read-only. ``genuine_accepted[k]`` / ``impostor_accepted[k]`` count the pairs accepted at
    threshold ``thresholds[k]`` (score ``>= thresholds[k]``).

    >>> table = ScoreTable.from_scores([0.8, 0.3, 0.8, 0.1], [True, True, False, False])
    >>> table.thresholds.tolist(), table.genuine_accepted.tolist(), table.impostor_accepted.tolist()
    ([0.8, 0.3, 0.1], [1, 2, 2], [1, 1, 2])
    """

    thresholds: np.ndarray
    genuine: np.ndarray
    impostor: np.ndarray

    def __post_init__(self) -> None:
        thresholds = np.array(self.thresholds, dtype=np.float64)
        genuine = np.array(self.genuine)
        impostor = np.array(self.impostor)
        if not (thresholds.ndim == genuine.ndim == impostor.ndim == 1) or not (
            thresholds.size == genuine.size == impostor.size
        ):
            raise ValueError(
                "thresholds, genuine and impostor must be 1-D of one length, got shapes "
                f"{thresholds.shape}, {genuine.shape} and {impostor.shape}"
            )
        if thresholds.size and (genuine.dtype.kind not in "iu" or impostor.dtype.kind not in "iu"):
            raise ValueError(f"counts must be integers, got dtypes {genuine.dtype} and {impostor.dtype}")
        if not np.isfinite(thresholds).all():
            raise ValueError("thresholds must be finite")
        if np.any(thresholds[1:] >= thresholds[:-1]):
            raise ValueError("thresholds must be distinct and in descending order")
        genuine = genuine.astype(np.int64)
        impostor = impostor.astype(np.int64)
        if np.any(genuine < 0) or np.any(impostor < 0) or np.any(genuine + impostor == 0):
            raise ValueError("every threshold needs a non-negative count of pairs, at least one pair in all")
        for name, array in (("thresholds", thresholds), ("genuine", genuine), ("impostor", impostor)):
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    @classmethod
    def from_scores(cls, scores: Any, genuine: Any) -> ScoreTable:
        """The table of one set of scores and genuine labels (bool or 0/1)."""
        counts = ScoreCounts()
        counts.update(scores, genuine)
        return counts.compute()

    def __len__(self) -> int:
        return int(self.thresholds.size)

    @cached_property
    def n_genuine(self) -> int:
        """Number of genuine pairs."""
        return int(self.genuine.sum())

    @cached_property
    def n_impostor(self) -> int:
        """Number of impostor pairs."""
        return int(self.impostor.sum())

    @cached_property
    def genuine_accepted(self) -> np.ndarray:
        """Genuine pairs with score ``>= thresholds[k]`` (true matches)."""
        return _read_only(np.cumsum(self.genuine))

    @cached_property
    def impostor_accepted(self) -> np.ndarray:
        """Impostor pairs with score ``>= thresholds[k]`` (false matches)."""
        return _read_only(np.cumsum(self.impostor))


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _require_both(table: ScoreTable, figure: str) -> None:
    if not isinstance(table, ScoreTable):
        raise TypeError(f"{figure} needs a ScoreTable, got {type(table).__name__}")
    if table.n_genuine == 0 or table.n_impostor == 0:
        raise ValueError(
            f"{figure} needs genuine and impostor pairs, got {table.n_genuine} genuine and "
            f"{table.n_impostor} impostor pairs"
        )


@dataclass(frozen=True, eq=False)
class RocCurve:
    """ROC points: false match rate, true match rate and the threshold of each; first point (0, 0) at +inf."""

    fmr: np.ndarray
    tmr: np.ndarray
    thresholds: np.ndarray

    @property
    def fnmr(self) -> np.ndarray:
        """False non-match rate ``1 - tmr`` at each point."""
        return 1.0 - self.tmr


def roc_curve(table: ScoreTable) -> RocCurve:
    """ROC with one point per distinct score, after a first point (0, 0) at threshold +inf.

    The same points as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.

    >>> curve = roc_curve(ScoreTable.from_scores([0.9, 0.8, 0.8, 0.1], [1, 1, 0, 0]))
    >>> curve.fmr.tolist(), curve.tmr.tolist(), curve.thresholds.tolist()
    ([0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0], [inf, 0.9, 0.8, 0.1])
    """
    _require_both(table, "roc_curve")
    zero = np.zeros(1, dtype=np.int64)
    return RocCurve(
        fmr=np.concatenate((zero, table.impostor_accepted)) / table.n_impostor,
        tmr=np.concatenate((zero, table.genuine_accepted)) / table.n_genuine,
        thresholds=np.concatenate(([np.inf], table.thresholds)),
    )


def roc_auc(table: ScoreTable) -> float:
    """Area under the ROC, exactly: ``P(s_genuine > s_impostor) + 0.5 P(s_genuine == s_impostor)``.

    The Mann-Whitney statistic from the counts, in integers while they cannot overflow.

    >>> roc_auc(ScoreTable.from_scores([0.9, 0.8, 0.8, 0.1], [1, 1, 0, 0]))
    0.875
    """
    _require_both(table, "roc_auc")
    # Impostors strictly below each distinct score.
    impostor_below = table.n_impostor - table.impostor_accepted
    denominator = 2 * table.n_genuine * table.n_impostor
    if denominator < 2**63:
        # Each term is at most its share of the denominator, so the int64 sum is exact.
        numerator = int(np.dot(table.genuine, 2 * impostor_below + table.impostor))
        return numerator / denominator
    weights = table.genuine / table.n_genuine
    return float(np.dot(weights, (impostor_below + 0.5 * table.impostor) / table.n_impostor))


@dataclass(frozen=True)
class Eer:
    """Equal error rate: where FMR and FNMR cross, its threshold, and the bracket from the two neighbours.

    ``threshold_above`` / ``threshold_below`` are the neighbouring distinct thresholds (``threshold_above`` is
    +inf when the crossing lies before the first score); ``[low, high]`` is every value the crossing can take
    between them with FMR and FNMR monotone; ``fmr_above, fnmr_above, fmr_below, fnmr_below`` their rates.
    """

    value: float
    threshold: float
    low: float
    high: float
    threshold_above: float
    threshold_below: float
    fmr_above: float
    fnmr_above: float
    fmr_below: float
    fnmr_below: float


def equal_error_rate(table: ScoreTable) -> Eer:
    """EER: where FMR and FNMR cross, interpolated linearly between the two neighbouring distinct thresholds.

    Going down from +inf (FMR 0, FNMR 1), ``FMR - FNMR`` rises from -1 to +1. At the first threshold where it
    is ``>= 0`` (below) and the one before it (above) the rates are interpolated linearly to where they are
    equal; the threshold is interpolated the same way, except that the highest score is reported when the
    neighbour above is +inf. ``low = max(FMR_above, FNMR_below)``, ``high = min(FMR_below, FNMR_above)``. When
    ``FMR == FNMR`` exactly at a threshold, both neighbours are that threshold and ``low == high == value``.

    >>> eer = equal_error_rate(ScoreTable.from_scores([0.9, 0.7, 0.6, 0.2], [1, 0, 1, 0]))
    >>> eer.value, eer.threshold, eer.low, eer.high
    (0.5, 0.7, 0.5, 0.5)
    """
    _require_both(table, "equal_error_rate")
    zero = np.zeros(1, dtype=np.int64)
    fmr = np.concatenate((zero, table.impostor_accepted)) / table.n_impostor
    fnmr = (table.n_genuine - np.concatenate((zero, table.genuine_accepted))) / table.n_genuine
    thresholds = np.concatenate(([np.inf], table.thresholds))
    difference = fmr - fnmr
    # The last point has FMR 1 and FNMR 0, so there is always one; the first has -1, so below >= 1.
    below = int(np.argmax(difference >= 0))
    above = below if difference[below] == 0 else below - 1
    if above == below:
        value, threshold = float(fmr[below]), float(thresholds[below])
    else:
        share = -difference[above] / (difference[below] - difference[above])
        value = float(fmr[above] + share * (fmr[below] - fmr[above]))
        if np.isinf(thresholds[above]):
            threshold = float(thresholds[below])
        else:
            threshold = float(thresholds[above] + share * (thresholds[below] - thresholds[above]))
    return Eer(
        value=value,
        threshold=threshold,
        low=float(max(fmr[above], fnmr[below])),
        high=float(min(fmr[below], fnmr[above])),
        threshold_above=float(thresholds[above]),
        threshold_below=float(thresholds[below]),
        fmr_above=float(fmr[above]),
        fnmr_above=float(fnmr[above]),
        fmr_below=float(fmr[below]),
        fnmr_below=float(fnmr[below]),
    )


@dataclass(frozen=True)
class TarAtFar:
    """TAR at a target FAR (FMR): the threshold chosen, the FMR it actually reaches, and its support.

    ``supported`` is False when ``n_impostor < 3 / far`` (rule of three: too few impostors to measure it).
    ``threshold`` is +inf when no score is strict enough (nothing is accepted: TAR 0, FMR 0).
    """

    far: float
    tar: float
    fnmr: float
    threshold: float
    fmr: float
    n_impostor: int
    supported: bool


def tar_at_far(table: ScoreTable, far: float) -> TarAtFar:
    """TAR (``1 - FNMR``) at the lowest distinct threshold whose FMR is ``<= far``.

    ``tau = min{tau : FMR(tau) <= far}`` over the distinct scores, else +inf.

    >>> result = tar_at_far(ScoreTable.from_scores([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 0, 0]), far=0.34)
    >>> result.tar, result.threshold, result.fmr, result.supported
    (1.0, 0.7, 0.3333333333333333, False)
    """
    _require_both(table, "tar_at_far")
    far = float(far)
    if not 0.0 < far <= 1.0:
        raise ValueError(f"far must be in (0, 1], got {far}")
    fmr = table.impostor_accepted / table.n_impostor
    index = int(np.searchsorted(fmr, far, side="right")) - 1
    if index < 0:
        accepted, threshold, reached = 0, np.inf, 0.0
    else:
        accepted, threshold, reached = int(table.genuine_accepted[index]), table.thresholds[index], fmr[index]
    return TarAtFar(
        far=far,
        tar=accepted / table.n_genuine,
        fnmr=(table.n_genuine - accepted) / table.n_genuine,
        threshold=float(threshold),
        fmr=float(reached),
        n_impostor=table.n_impostor,
        supported=bool(table.n_impostor >= 3.0 / far),
    )


@dataclass(frozen=True, eq=False)
class Sweep:
    """Decision counts and rates at a list of thresholds (accept ``s >= threshold``).

    The rates are computed on first access. ``precision`` is 0.0 where no pair is accepted (scikit-learn's
    default ``zero_division``, and what the seed plotted); at the distinct scores of a table at least one pair
    is always accepted. Precision, accuracy and F1 depend on the genuine:impostor ratio: compare them across
    sets only at equal ratios.
    """

    threshold: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_genuine: int
    n_impostor: int

    def __post_init__(self) -> None:
        if not self.threshold.shape == self.tp.shape == self.fp.shape:
            raise ValueError(
                f"threshold, tp and fp differ in shape: {self.threshold.shape}, {self.tp.shape}, {self.fp.shape}"
            )
        if self.n_genuine <= 0 or self.n_impostor <= 0:
            raise ValueError(
                f"a sweep needs genuine and impostor pairs, got {self.n_genuine} genuine and "
                f"{self.n_impostor} impostor pairs"
            )

    @cached_property
    def fn(self) -> np.ndarray:
        """Genuine pairs rejected."""
        return self.n_genuine - self.tp

    @cached_property
    def tn(self) -> np.ndarray:
        """Impostor pairs rejected."""
        return self.n_impostor - self.fp

    @cached_property
    def accuracy(self) -> np.ndarray:
        """Share of all pairs decided correctly."""
        return (self.tp + self.tn) / (self.n_genuine + self.n_impostor)

    @cached_property
    def precision(self) -> np.ndarray:
        """Share of accepted pairs that are genuine (0.0 where none is accepted)."""
        accepted = self.tp + self.fp
        return np.divide(self.tp, accepted, out=np.zeros(accepted.shape), where=accepted > 0)

    @cached_property
    def recall(self) -> np.ndarray:
        """True match rate ``tp / n_genuine``."""
        return self.tp / self.n_genuine

    @cached_property
    def f1(self) -> np.ndarray:
        """Harmonic mean of precision and recall."""
        # 2 tp / (2 tp + fp + fn): defined (0) even where nothing is accepted, since n_genuine > 0.
        return 2 * self.tp / (self.n_genuine + self.tp + self.fp)

    @cached_property
    def fmr(self) -> np.ndarray:
        """False match rate ``fp / n_impostor``."""
        return self.fp / self.n_impostor

    @cached_property
    def fnmr(self) -> np.ndarray:
        """False non-match rate ``fn / n_genuine``."""
        return self.fn / self.n_genuine

    def __len__(self) -> int:
        return int(self.threshold.size)

    def at(self, index: int) -> Sweep:
        """The one-threshold sweep at position ``index``."""
        position = range(self.threshold.size)[index]
        part = slice(position, position + 1)
        return Sweep(self.threshold[part], self.tp[part], self.fp[part], self.n_genuine, self.n_impostor)

    def columns(self) -> dict[str, np.ndarray]:
        """Every array by name, in a fixed order (for CSV files)."""
        names = ("threshold", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "f1", "fmr", "fnmr")
        return {name: getattr(self, name) for name in names}


def threshold_sweep(table: ScoreTable) -> Sweep:
    """Counts and rates at every distinct score (descending): the exact optimum of any of them is in here.

    >>> sweep = threshold_sweep(ScoreTable.from_scores([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]))
    >>> sweep.threshold.tolist(), sweep.f1.tolist()
    ([0.9, 0.8, 0.7, 0.1], [0.6666666666666666, 0.5, 0.8, 0.6666666666666666])
    """
    _require_both(table, "threshold_sweep")
    return Sweep(table.thresholds, table.genuine_accepted, table.impostor_accepted, table.n_genuine, table.n_impostor)


# A rate change a reader can see in a table: 0.1 percentage point of FNMR, 1/100 of a decade of FMR.
VISIBLE_FNMR_STEP = 1e-3
VISIBLE_FMR_DECADE_STEP = 0.01


def readable_sweep(table: ScoreTable) -> Sweep:
    """The rows of `threshold_sweep` a person can read, at most a few thousand at any size: the strictest row,
    every row where FNMR moves into a new 0.1-point step or FMR into a new 1/100 of a decade, the threshold of
    every FMR decade (`tar_at_far` at 1e-1, 1e-2, ... down to one impostor), the best-F1 row and the loosest row.

    >>> sweep = readable_sweep(ScoreTable.from_scores(np.arange(10_000) / 10_000, np.arange(10_000) % 7 == 0))
    >>> len(sweep) < 1500, float(sweep.fmr[-1])
    (True, 1.0)
    """
    full = threshold_sweep(table)
    fnmr_step = np.floor(full.fnmr / VISIBLE_FNMR_STEP)
    # FMR 0 (no impostor accepted yet) is a step of its own, below every decade.
    logs = np.log10(full.fmr, out=np.full(len(full), -np.inf), where=full.fmr > 0)
    fmr_step = np.where(full.fmr > 0, np.floor(logs / VISIBLE_FMR_DECADE_STEP), -1e9)
    moved = np.flatnonzero((np.diff(fnmr_step) != 0) | (np.diff(fmr_step) != 0)) + 1
    decades = 10.0 ** -np.arange(1, int(np.log10(max(table.n_impostor, 10))) + 1)
    at_decades = np.searchsorted(full.fmr, decades, side="right") - 1
    f1 = full.f1
    best = np.flatnonzero(f1 == f1.max())[:1]
    rows = np.unique(np.concatenate(([0, len(full.threshold) - 1], moved, at_decades[at_decades >= 0], best)))
    return Sweep(full.threshold[rows], full.tp[rows], full.fp[rows], full.n_genuine, full.n_impostor)


def sweep_at(table: ScoreTable, thresholds: Any) -> Sweep:
    """Counts and rates at arbitrary score thresholds (any order; +-inf allowed), e.g. a fixed grid for plots.

    >>> table = ScoreTable.from_scores([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0])
    >>> sweep_at(table, [1.0, 0.75, 0.0]).tp.tolist()
    [0, 1, 2]
    """
    _require_both(table, "sweep_at")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 1:
        raise ValueError(f"thresholds must be 1-D, got shape {thresholds.shape}")
    if np.isnan(thresholds).any():
        raise ValueError("thresholds must not be NaN")
    # Number of distinct scores >= t: the negated scores ascend, so count those <= -t.
    levels = np.searchsorted(-table.thresholds, -thresholds, side="right")
    any_accepted = levels > 0
    last = np.maximum(levels - 1, 0)
    return Sweep(
        threshold=thresholds,
        tp=np.where(any_accepted, table.genuine_accepted[last], 0),
        fp=np.where(any_accepted, table.impostor_accepted[last], 0),
        n_genuine=table.n_genuine,
        n_impostor=table.n_impostor,
    )


@dataclass(frozen=True)
class BestF1:
    """The highest F1 of a sweep and the operating point where it is reached."""

    f1: float
    threshold: float
    precision: float
    recall: float
    accuracy: float
    fmr: float
    fnmr: float


def best_f1(sweep: Sweep) -> BestF1:
    """The maximum F1 of a sweep; among equal maxima, the highest (strictest) threshold.

    Over `threshold_sweep` this is the exact optimum over all thresholds.

    >>> best = best_f1(threshold_sweep(ScoreTable.from_scores([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0])))
    >>> best.f1, best.threshold
    (0.8, 0.7)
    """
    if sweep.threshold.size == 0:
        raise ValueError("best_f1 needs a sweep with at least one threshold")
    f1 = sweep.f1
    candidates = np.flatnonzero(f1 == f1.max())
    index = int(candidates[np.argmax(sweep.threshold[candidates])])
    # The other rates at that one threshold only, rather than over the whole sweep.
    point = sweep.at(index)
    return BestF1(
        f1=float(f1[index]),
        threshold=float(point.threshold[0]),
        precision=float(point.precision[0]),
        recall=float(point.recall[0]),
        accuracy=float(point.accuracy[0]),
        fmr=float(point.fmr[0]),
        fnmr=float(point.fnmr[0]),
    )


def failure_adjusted_rates(fnmr: float, fmr: float, fte: float) -> tuple[float, float]:
    """FNMR and FMR over pairs with failures counted against the system (ISO/IEC 19795-1 generalised rates).

    A pair is scored only when both of its images yielded a template, which happens with probability
    ``(1 - fte)^2``; every pair that was not scored is a non-match. So ``FNMR' = 1 - (1 - fte)^2 (1 - FNMR)`` and
    ``FMR' = (1 - fte)^2 FMR``, where ``fte`` is the share of images left out of the scored set.

    >>> fnmr, fmr = failure_adjusted_rates(fnmr=0.05, fmr=0.01, fte=0.1)
    >>> round(fnmr, 6), round(fmr, 6)
    (0.2305, 0.0081)
    """
    if not 0.0 <= fte <= 1.0:
        raise ValueError(f"fte must be a share in [0, 1], got {fte}")
    scored = (1.0 - fte) ** 2
    return 1.0 - scored * (1.0 - fnmr), scored * fmr


def excluded_share(n_scored: int, n_dataset: int | None) -> float | None:
    """Share of a population's images missing from the scored set: the ``fte`` of `failure_adjusted_rates`.

    For one model it is the model's FTE; for models compared on the images they all embedded, the share of
    images that any of them failed on. None for an empty population.

    >>> excluded_share(90, 100)
    0.1
    """
    return (n_dataset - n_scored) / n_dataset if n_dataset else None


def seed_grid() -> np.ndarray:
    """The seed's threshold grid ``np.arange(0.1, 1.1, 0.01)`` (100 values), in MODEL units.

    Convert with ``similarity.from_model_units(seed_grid())`` before `sweep_at`. For cosine the seed accepted
    ``s > t`` where faceval accepts ``s >= t``; they differ only for a score exactly on a grid value.
    """
    # Integers over 100: np.arange(0.1, 1.1, 0.01) itself gives 0.5999999999999998 for "0.60".
    return np.arange(10, 110) / 100


def far_key(far: float) -> str:
    """The short key of a FAR in summaries: ``1e-3``, ``2.5e-4``."""
    return np.format_float_scientific(far, trim="-", exp_digits=1)


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


def verification_summary(table: ScoreTable, fars: Sequence[float] = DEFAULT_FARS) -> dict[str, Any]:
    """AUC, EER, best F1 and TAR@FAR as plain Python values, ready for ``json.dumps`` (strict JSON).

    Thresholds stay in score units (convert with `Similarity.to_model_units`); a TAR@FAR threshold that no
    score reaches (+inf, nothing accepted) is ``None``.

    >>> summary = verification_summary(ScoreTable.from_scores([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]), fars=[0.5])
    >>> summary["auc"], summary["eer"]["value"], summary["tar_at_far"]["5e-1"]["tar"]
    (0.75, 0.5, 1.0)
    """
    _require_both(table, "verification_summary")
    eer = equal_error_rate(table)
    best = best_f1(threshold_sweep(table))
    tars = {}
    for far in fars:
        result = tar_at_far(table, far)
        tars[far_key(far)] = {
            "far": result.far,
            "tar": result.tar,
            "fnmr": result.fnmr,
            "threshold": _finite_or_none(result.threshold),
            "fmr": result.fmr,
            "n_impostor": result.n_impostor,
            "supported": result.supported,
        }
    return {
        "n_genuine": table.n_genuine,
        "n_impostor": table.n_impostor,
        "auc": roc_auc(table),
        "eer": {
            "value": eer.value,
            "threshold": eer.threshold,
            "low": eer.low,
            "high": eer.high,
            "threshold_above": _finite_or_none(eer.threshold_above),
            "threshold_below": eer.threshold_below,
        },
        "best_f1": {
            "f1": best.f1,
            "threshold": best.threshold,
            "precision": best.precision,
            "recall": best.recall,
            "accuracy": best.accuracy,
            "fmr": best.fmr,
            "fnmr": best.fnmr,
        },
        "tar_at_far": tars,
    }
