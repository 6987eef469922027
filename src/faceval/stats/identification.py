"""1:N identification figures from exact searches (ISO/IEC 19795-1, NIST FRTE 1:N; ``docs/metrics.md``).

A *mated* search is a probe whose identity is in the gallery, a *non-mated* one a probe whose identity is not.
Scores are in score units (larger = more alike, accept ``s >= T``); reports convert thresholds with
`Similarity.to_model_units`.

- CMC(r): share of mated searches whose mate is within the top r (ties at the worse rank, see `faceval.stats.search`).
- FPIR(T): share of non-mated searches whose top candidate scores ``>= T``.
- FNIR(T, R): share of mated searches whose mate is not within the top R or scores ``< T``.
- FNIR at FPIR a: at ``T_a`` = the lowest distinct score (of the non-mated top scores and the mated scores)
  whose FPIR is ``<= a`` (+inf when there is none: nothing is returned); unsupported when fewer than
  ``3 / a`` non-mated searches (rule of three).
- Per group of probes: rank-1 rate, FNIR(T, R) and FPIR(T) at one global threshold, with 95 % intervals from
  resampling the probes' identities within their group (the gallery is the enrolled system and stays fixed).
- FPIR(T) against gallery size: the same non-mated searches against random sub-galleries of growing size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceval.stats.bootstrap import Interval, identity_multiplicities, identity_strata, percentile_interval
from faceval.stats.metrics import far_key
from faceval.stats.search import SearchResult

FPIR_TARGETS = (1e-1, 1e-2, 1e-3)
CMC_RANKS = (1, 5, 10, 20, 50)
DEFAULT_TARGET_FPIR = 1e-2
ALL_SEARCHES = "all"


@dataclass(frozen=True, eq=False)
class TradeOff:
    """FPIR and FNIR(T, R) at every distinct score ``T`` (descending), after a first point at ``T = +inf``."""

    rank: int
    thresholds: np.ndarray
    fpir: np.ndarray
    fnir: np.ndarray


@dataclass(frozen=True)
class FnirAtFpir:
    """FNIR(T, R) at the threshold chosen for a target FPIR, the FPIR it reaches, and its support."""

    target: float
    fnir: float
    fpir: float
    threshold: float
    n_nonmated: int
    supported: bool


@dataclass(frozen=True)
class GroupFigures:
    """One group of probes at the global threshold: rates (None when the group has no such search) and intervals."""

    name: str
    n_mated: int
    n_nonmated: int
    n_identities: int
    rank1: float | None
    fnir: float | None
    fpir: float | None
    intervals: dict[str, Interval | None]


@dataclass(frozen=True, eq=False)
class GallerySizeCurve:
    """FPIR at one threshold against the number of gallery identities, per group of probes (and all)."""

    threshold: float
    sizes: np.ndarray
    fpir: dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class Identification:
    """Every identification figure of one model; thresholds in score units."""

    n_mated: int
    n_nonmated: int
    max_rank: int
    cmc: np.ndarray
    trade_off: TradeOff | None
    fnir_at_fpir: dict[str, FnirAtFpir | None]
    global_threshold: float | None
    global_threshold_source: str
    groups: dict[str, GroupFigures]
    by_gallery_size: GallerySizeCurve | None
    n_resamples: int

    def cmc_at(self, rank: int) -> float | None:
        """CMC at ``rank`` (None without mated searches, or beyond the ranks kept)."""
        return float(self.cmc[rank - 1]) if 1 <= rank <= self.cmc.size else None


def cmc_curve(result: SearchResult) -> np.ndarray:
    """Identification rate at ranks ``1..max_rank`` over the mated searches (empty without any).

    >>> from faceval.stats.search import SearchResult
    >>> r = SearchResult(3, np.array([1, 4, 2, 0]), *(np.zeros(4),) * 2, *(np.zeros((4, 0)),) * 2,
    ...                  np.array([1]), np.zeros((4, 1)))
    >>> cmc_curve(r).tolist()
    [0.3333333333333333, 0.6666666666666666, 0.6666666666666666]
    """
    ranks = result.mate_rank[result.mated]
    if ranks.size == 0:
        return np.zeros(0)
    counts = np.bincount(ranks, minlength=result.max_rank + 2)[1 : result.max_rank + 1]
    return np.cumsum(counts) / ranks.size


def _hits(result: SearchResult, rank: int) -> np.ndarray:
    """Mate scores of the mated searches whose mate is within ``rank``, -inf for the others."""
    mated = result.mated
    within = result.mate_rank[mated] <= rank
    return np.where(within, result.mate_score[mated], -np.inf)


def trade_off(result: SearchResult, rank: int = 1) -> TradeOff | None:
    """FNIR(T, rank) and FPIR(T) at every distinct score; None without mated or without non-mated searches."""
    nonmated = np.sort(result.top_score[~result.mated])
    hits = np.sort(_hits(result, rank))
    if nonmated.size == 0 or hits.size == 0:
        return None
    levels = np.unique(np.concatenate((nonmated, hits[np.isfinite(hits)])))[::-1]
    thresholds = np.concatenate(([np.inf], levels))
    fpir = (nonmated.size - np.searchsorted(nonmated, thresholds, side="left")) / nonmated.size
    fnir = np.searchsorted(hits, thresholds, side="left") / hits.size
    return TradeOff(rank, thresholds, fpir, fnir)


def fnir_at_fpir(curve: TradeOff, target: float, n_nonmated: int) -> FnirAtFpir:
    """FNIR at the lowest threshold of the curve whose FPIR is ``<= target`` (+inf, FNIR 1, when none is)."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target FPIR must be in (0, 1], got {target}")
    index = int(np.searchsorted(curve.fpir, target, side="right")) - 1
    return FnirAtFpir(
        target=float(target),
        fnir=float(curve.fnir[index]),
        fpir=float(curve.fpir[index]),
        threshold=float(curve.thresholds[index]),
        n_nonmated=n_nonmated,
        supported=bool(n_nonmated >= 3.0 / target),
    )


def _figure_counts(result: SearchResult, threshold: float, rank: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per search, (counts towards the numerator, counts towards the denominator) of each figure."""
    mated = result.mated
    with np.errstate(invalid="ignore"):
        found = mated & (result.mate_rank <= rank) & (result.mate_score >= threshold)
    return {
        "rank1": (mated & (result.mate_rank == 1), mated),
        "fnir": (mated & ~found, mated),
        "fpir": (~mated & (result.top_score >= threshold), ~mated),
    }


def _rate(numerator: np.ndarray, denominator: np.ndarray) -> float | None:
    total = int(denominator.sum())
    return int(numerator.sum()) / total if total else None


def group_figures(
    result: SearchResult,
    identities: np.ndarray,
    groups: np.ndarray | None,
    threshold: float,
    rank: int = 1,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, GroupFigures]:
    """Rank-1, FNIR(T, rank) and FPIR(T) per group of probes (``groups``: one label per probe, None: one group),
    and over all searches, with percentile intervals from ``n_resamples`` identity resamples (0: none).

    ``identities`` are the probes' identity codes ``0..K-1``; identities are drawn with replacement within their
    group (`faceval.stats.bootstrap.identity_strata`), and a drawn identity brings all its searches.
    """
    identities = np.asarray(identities, dtype=np.int64)
    labels = np.full(identities.size, ALL_SEARCHES, dtype=object) if groups is None else np.asarray(groups, object)
    names = sorted(set(labels.tolist()))
    codes = np.searchsorted(np.array(names, dtype=object), labels)
    n_identities = int(identities.max()) + 1 if identities.size else 0
    counts = _figure_counts(result, threshold, rank)
    multiplicities = None
    if n_resamples and identities.size:
        multiplicities = identity_multiplicities(identity_strata(identities, codes), n_resamples, seed)
    members = {name: labels == name for name in names}
    if groups is not None:
        members[ALL_SEARCHES] = np.ones(identities.size, dtype=bool)
    figures = {}
    for name, member in members.items():
        rates: dict[str, float | None] = {}
        intervals: dict[str, Interval | None] = {}
        for figure, (numerator, denominator) in counts.items():
            rates[figure] = _rate(numerator[member], denominator[member])
            intervals[figure] = None
            if multiplicities is not None and rates[figure] is not None:
                top = multiplicities @ np.bincount(identities[member & numerator], minlength=n_identities)
                bottom = multiplicities @ np.bincount(identities[member & denominator], minlength=n_identities)
                with np.errstate(divide="ignore", invalid="ignore"):
                    intervals[figure] = percentile_interval(np.where(bottom > 0, top / bottom, np.nan))
        figures[name] = GroupFigures(
            name=name,
            n_mated=int((member & result.mated).sum()),
            n_nonmated=int((member & ~result.mated).sum()),
            n_identities=int(np.unique(identities[member]).size),
            rank1=rates["rank1"],
            fnir=rates["fnir"],
            fpir=rates["fpir"],
            intervals=intervals,
        )
    return figures


def fpir_by_gallery_size(result: SearchResult, threshold: float, groups: np.ndarray | None) -> GallerySizeCurve:
    """FPIR(T) of the non-mated searches against the sub-galleries of `SearchResult.sizes` identities."""
    nonmated = ~result.mated
    labels = np.full(nonmated.size, ALL_SEARCHES, dtype=object) if groups is None else np.asarray(groups, object)
    members = {name: labels == name for name in sorted(set(labels[nonmated].tolist()))}
    if groups is not None:
        members[ALL_SEARCHES] = np.ones(nonmated.size, dtype=bool)
    fpir = {}
    for name, member in members.items():
        chosen = member & nonmated
        if chosen.any():
            fpir[name] = (result.top_score_by_size[chosen] >= threshold).mean(axis=0)
    return GallerySizeCurve(float(threshold), result.sizes, fpir)


def identify_figures(
    result: SearchResult,
    identities: np.ndarray,
    groups: np.ndarray | None = None,
    rank: int = 1,
    target_fpir: float = DEFAULT_TARGET_FPIR,
    threshold: float | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    fpir_targets: Sequence[float] = FPIR_TARGETS,
) -> Identification:
    """Every figure of one model's searches. The global threshold for the groups and the gallery-size curve is
    ``threshold`` (score units) when given, else the one reaching ``target_fpir`` over all non-mated searches."""
    if not 1 <= rank <= result.max_rank:
        raise ValueError(f"rank R must be in [1, {result.max_rank}] (the ranks the search keeps), got {rank}")
    n_mated = int(result.mated.sum())
    n_nonmated = int(result.mate_rank.size - n_mated)
    curve = trade_off(result, rank)
    at_fpir = {
        far_key(target): None if curve is None else fnir_at_fpir(curve, target, n_nonmated) for target in fpir_targets
    }
    if threshold is not None:
        chosen, source = float(threshold), "given"
    elif curve is not None:
        chosen, source = fnir_at_fpir(curve, target_fpir, n_nonmated).threshold, f"FPIR {target_fpir:g}"
    else:
        chosen, source = None, "none: needs mated and non-mated searches"
    figures = {} if chosen is None else group_figures(result, identities, groups, chosen, rank, n_resamples, seed)
    by_size = None if chosen is None or n_nonmated == 0 else fpir_by_gallery_size(result, chosen, groups)
    return Identification(
        n_mated=n_mated,
        n_nonmated=n_nonmated,
        max_rank=result.max_rank,
        cmc=cmc_curve(result),
        trade_off=curve,
        fnir_at_fpir=at_fpir,
        global_threshold=chosen,
        global_threshold_source=source,
        groups=figures,
        by_gallery_size=by_size,
        n_resamples=n_resamples,
    )
