"""Identity-level intervals at any scale: per-identity state accumulated with the pairs, never the pairs themselves.

The exact identity bootstrap (`faceval.stats.bootstrap`) reweights every pair in every resample, so it must hold every
pair. Its first-order expansion needs only per-identity sums (``docs/metrics.md``, "Streaming intervals"): with
``m_k = 1 + d_k`` the multiplicity of identity ``k``, a figure that is a ratio of pair sums moves by
``sum_k d_k c_k``, where the influence ``c_k`` of identity ``k`` comes from the pairs that involve it (Hoeffding's
projection of the U-statistic, clustered by identity as in Obuchowski 1997). `IdentityStatistics` keeps, per
identity, its genuine pairs' scores (``O(images per identity^2)``) and a histogram of its impostor scores on a
few dozen bins placed at impostor-score quantiles (``O(identities x bins)``); `IdentityStatistics.influences`
turns them, with the score table of the same pairs, into the influences of the AUC, the EER, TAR@FAR and the
rates at fixed thresholds, and `IdentityInfluences.resampled` into bootstrap replicates with the very
multiplicities of the exact bootstrap, so every interval, FDR and comparison downstream works unchanged.

Not every replicate needs the expansion. FNMR at a fixed threshold is a ratio of per-identity genuine counts, so
its replicate ``sum_k m_k e_k / sum_k m_k g_k`` is the bootstrap's exactly. With few identities
(`PAIR_TABLE_ENTRIES`) the impostors are also counted per identity pair and bin (`BinnedImpostors`), and FMR,
TAR@FAR and the EER (thresholds re-chosen per resample) and the AUC are recomputed under each resample's weights
``m_k m_l``.

Exact: genuine pairs (per identity scores). Approximated within one bin: an identity's (or identity pair's)
impostor pairs between two bin edges are assumed spread like all impostor pairs there (edges are lattice
thresholds, so the global counts at them are exact). First order, without the identity-pair table: all but FNMR;
these want enough identities (coverage is tested at 100 identities).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceval.stats.bootstrap import ResampledFigures
from faceval.stats.lattice import Lattice
from faceval.stats.metrics import ScoreTable, equal_error_rate, roc_auc, sweep_at, tar_at_far

# Impostor-score bins: edges at these false match rates (8 a decade down to 1e-8, and every 5 % in the bulk).
EDGE_FMRS = np.unique(np.concatenate((np.logspace(0, -8, 65), np.arange(0.05, 1.0, 0.05))))
# The largest cell lookup (int16 bins): 32 MB.
_MAX_LOOKUP = 1 << 24
# Resamples are formed this many at a time, to bound the memory of the (resamples x identities) multipliers.
_RESAMPLE_BLOCK = 100
# The identity-pair table (impostors per pair of identities and bin) is kept while it has at most this many
# entries (int64: 32 MB a state; about 300 identities at 90 bins): with it, FMR, TAR@FAR, EER and AUC of a
# resample are computed from the resample's weights m_k m_l themselves, not linearised (`BinnedImpostors`).
PAIR_TABLE_ENTRIES = 1 << 22


@dataclass(frozen=True, eq=False)
class IdentityInfluences:
    """Point figures and, per identity (rows), how much each moves per unit of that identity's extra weight.

    ``tar[:, i]`` belongs to ``fars[i]``; ``fmr[:, j]`` and ``fnmr[:, j]`` to ``thresholds[j]``.
    """

    point_auc: float
    point_eer: float
    point_tar: np.ndarray
    point_fmr: np.ndarray
    point_fnmr: np.ndarray
    auc: np.ndarray
    eer: np.ndarray
    tar: np.ndarray
    fmr: np.ndarray
    fnmr: np.ndarray
    fars: tuple[float, ...]
    thresholds: tuple[float, ...]
    # Genuine pairs per identity, and those rejected at each threshold (identities x thresholds): a resample's
    # FNMR at a fixed threshold is their ratio under the weights m_k, exactly.
    genuine_count: np.ndarray
    genuine_rejected: np.ndarray
    # With few identities, the impostors per identity pair and bin: FMR, TAR@FAR, EER and AUC of each resample.
    impostors: BinnedImpostors | None = None

    def resampled(self, multiplicities: np.ndarray) -> ResampledFigures:
        """Bootstrap replicates for each row of identity multiplicities
        (`faceval.stats.bootstrap.identity_multiplicities`): FNMR at fixed thresholds as the exact ratio of weighted
        per-identity counts; FMR, TAR@FAR, EER and AUC from the identity-pair table where it is kept, else linearised,
        figure + (m - 1) . influence."""
        rows = []
        for start in range(0, multiplicities.shape[0], _RESAMPLE_BLOCK):
            m = multiplicities[start : start + _RESAMPLE_BLOCK, : self.auc.size].astype(np.float64)
            d = m - 1.0
            with np.errstate(divide="ignore", invalid="ignore"):
                fnmr = (m @ self.genuine_rejected) / (m @ self.genuine_count)[:, None]
            linear = (
                self.point_auc + d @ self.auc,
                self.point_eer + d @ self.eer,
                self.point_tar + d @ self.tar,
                self.point_fmr + d @ self.fmr,
            )
            # A linear step can leave [0, 1] where a figure sits near its bound; every figure here is a rate.
            auc, eer, tar, fmr = (np.clip(value, 0.0, 1.0) for value in linear)
            if self.impostors is not None:
                auc, eer, tar, fmr = self.impostors.figures(m)
            rows.append((auc, eer, tar, fmr, fnmr))
        auc, eer, tar, fmr, fnmr = (np.concatenate(column) for column in zip(*rows, strict=True))
        return ResampledFigures(auc, eer, tar, fmr, fnmr, self.fars, self.thresholds)


@dataclass(frozen=True, eq=False)
class BinnedImpostors:
    """The impostor pairs of each pair of identities (cells ``first < second``) counted in the impostor bins, with
    what is needed to recompute FMR, TAR@FAR, the EER and the AUC under any resample's weights ``m_k m_l``.

    Exact at the bin edges (fixed thresholds are edges); inside a bin the impostors of every identity pair are
    taken to be spread like all impostors of that bin (``docs/metrics.md``, "Streaming intervals").
    """

    first: np.ndarray  # identity of each cell (the lower code) ...
    second: np.ndarray  # ... and the higher code
    counts: np.ndarray  # (cells, bins) impostor pairs; bins ascend in score
    accepted: np.ndarray  # (cells, thresholds) impostor pairs accepted at each fixed threshold
    genuine_count: np.ndarray  # (identities,) genuine pairs
    genuine_below: np.ndarray  # (identities, bins) genuine pairs' AUC placements among each bin's impostors
    genuine_keys: np.ndarray  # identity x (table rows + 1) + table row of each genuine pair, ascending
    in_bin: np.ndarray  # (bins,) impostors of each bin over all cells
    accepted_to: np.ndarray  # (bins,) impostors at or above each bin's upper edge
    table_thresholds: np.ndarray  # the score table's thresholds (descending) ...
    table_accepted: np.ndarray  # ... and the impostors accepted at each
    edges: np.ndarray  # the bins' edges (ascending)
    fars: tuple[float, ...]

    def figures(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """AUC, EER, TAR at each FAR and FMR at each fixed threshold of the resamples with multiplicities ``m``
        (resamples x identities, float); NaN where a resample has no genuine or no impostor weight."""
        weights = m[:, self.first] * m[:, self.second]
        mass = weights @ self.counts  # (resamples, bins): the resample's impostor weight in each bin
        total = mass.sum(axis=1)
        genuine_total = m @ self.genuine_count
        live = (total > 0) & (genuine_total > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            fmr = (weights @ self.accepted) / total[:, None]
            auc = np.einsum("rb,rb->r", mass, m @ self.genuine_below) / (total * genuine_total)
            tar = np.stack([self._tar(m, mass, total, genuine_total, far) for far in self.fars], axis=1)
            eer = self._eer(m, mass, total, genuine_total)
        tar = np.where(live[:, None], tar.reshape(m.shape[0], len(self.fars)), np.nan)
        return np.where(live, auc, np.nan), np.where(live, eer, np.nan), tar, fmr

    def _genuine_accepted(self, m: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Each resample's genuine weight accepted at the table threshold of its own ``row`` (-1: none),
        ``sum_k m_k G_k``: a genuine pair is accepted at every row from its own on (thresholds descend)."""
        identities = np.flatnonzero(self.genuine_count)
        span = self.table_thresholds.size + 1
        start = np.searchsorted(self.genuine_keys, identities * span)
        through = np.searchsorted(self.genuine_keys, identities[None, :] * span + row[:, None], side="right")
        return np.einsum("ri,ri->r", m[:, identities], through - start)

    def _impostor_accepted(self, mass: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Each resample's impostor weight at or above the table threshold of its own ``row``: the bins above it in
        full, its own bin by the share the global spread puts at or above it."""
        threshold = self.table_thresholds[row]
        bins = np.searchsorted(self.edges, threshold, side="right")
        share = np.divide(
            self.table_accepted[row] - self.accepted_to[bins],
            self.in_bin[bins],
            out=np.zeros(row.size),
            where=self.in_bin[bins] > 0,
        )
        resamples = np.arange(mass.shape[0])
        above = np.cumsum(mass[:, ::-1], axis=1)[:, ::-1] - mass
        return above[resamples, bins] + share * mass[resamples, bins]

    def _tar(
        self, m: np.ndarray, mass: np.ndarray, total: np.ndarray, genuine_total: np.ndarray, far: float
    ) -> np.ndarray:
        """TAR at the lowest threshold whose resampled FMR is ``<= far``: the bin where the impostor weight from the
        top reaches ``far``, the share of it taken by the global spread in that bin, its threshold in the table."""
        from_top = np.cumsum(mass[:, ::-1], axis=1)[:, ::-1]  # weight at or above each bin's lower edge
        above = from_top - mass  # weight at or above each bin's upper edge
        allowed = far * total
        # The highest bin whose lower edge lets more than far through (bin 0's lower edge is -inf: FMR 1 there).
        crossing = np.where(from_top > allowed[:, None] * (1 + 1e-12), np.arange(mass.shape[1]), -1).max(axis=1)
        crossing = np.maximum(crossing, 0)
        rows = np.arange(m.shape[0])
        share = np.clip((allowed - above[rows, crossing]) / mass[rows, crossing], 0.0, 1.0)
        share = np.nan_to_num(share)
        reachable = self.accepted_to[crossing] + share * self.in_bin[crossing]
        # Rows of the table (accepted counts ascend) accepting no more than that: the last one's threshold.
        index = np.searchsorted(self.table_accepted, reachable * (1 + 1e-12), side="right") - 1
        return self._genuine_accepted(m, index) / genuine_total

    def _eer(self, m: np.ndarray, mass: np.ndarray, total: np.ndarray, genuine_total: np.ndarray) -> np.ndarray:
        """The EER as `faceval.stats.metrics.equal_error_rate` on the table's thresholds (level 0: +inf), with each
        resample's FMR and FNMR: the first level where FMR - FNMR >= 0 by binary search (it never decreases),
        interpolated linearly with the level above."""

        def rates(level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            fmr = np.where(level > 0, self._impostor_accepted(mass, np.maximum(level - 1, 0)) / total, 0.0)
            return fmr, 1.0 - self._genuine_accepted(m, level - 1) / genuine_total

        low = np.ones(m.shape[0], dtype=np.int64)
        high = np.full(m.shape[0], self.table_thresholds.size, dtype=np.int64)
        while np.any(low < high):
            middle = (low + high) // 2
            fmr, fnmr = rates(middle)
            crossed = fmr - fnmr >= 0
            # Only rows still searching move: where the lowest bin holds impostors (edges from a sample), the last
            # level's FMR, 1 by its bin's share, may round below it, and a found row must not step past the table.
            searching = low < high
            high = np.where(searching & crossed, middle, high)
            low = np.where(searching & ~crossed, middle + 1, low)
        fmr_below, fnmr_below = rates(low)
        fmr_above, fnmr_above = rates(low - 1)
        difference_below, difference_above = fmr_below - fnmr_below, fmr_above - fnmr_above
        share = -difference_above / (difference_below - difference_above)
        return np.where(difference_below == 0, fmr_below, fmr_above + share * (fmr_below - fmr_above))


def impostor_bin_edges(
    impostor_scores: np.ndarray, fixed_thresholds: Sequence[float] | np.ndarray = (), lattice: Lattice | None = None
) -> np.ndarray:
    """The impostor bins' edges (ascending) from impostor scores (all of a set's, or a uniform sample of them):
    their quantiles at `EDGE_FMRS` down to one impostor, and the fixed thresholds; on a lattice, moved to lattice
    thresholds. ``impostor_scores`` may be reordered.

    >>> edges = impostor_bin_edges(np.arange(100.0), fixed_thresholds=[50.5])
    >>> float(edges[-1]), 50.5 in edges
    (98.01, True)
    """
    fmrs = EDGE_FMRS[EDGE_FMRS * impostor_scores.size >= 1]
    edges = np.quantile(impostor_scores, 1.0 - fmrs, overwrite_input=True) if impostor_scores.size else np.zeros(0)
    edges = np.concatenate((edges, np.asarray(fixed_thresholds, dtype=np.float64)))
    if lattice is not None and edges.size:
        # On a lattice the edges are lattice thresholds, so the table's counts at them are exact.
        edges = lattice.thresholds(lattice.cells(edges))
    return np.unique(edges)


class IdentityStatistics:
    """Per-identity state of one set of pairs: genuine scores by identity, impostor histograms by identity.

    ``update`` chunk by chunk with each pair's score, label and two identity codes; ``merge`` another state with the
    same edges; ``influences`` at the end, with the score table of the same pairs. Without ``edges`` every impostor
    pair is held until the end and the edges are placed from all of them (for sets up to
    `faceval.stats.groups.SAMPLE_IMPOSTORS` pairs); a larger set is given ``edges`` from a sample of its pairs
    (`impostor_bin_edges`), and counts as it goes.
    """

    def __init__(
        self,
        n_identities: int,
        lattice: Lattice | None = None,
        fixed_thresholds: Sequence[float] = (),
        edges: np.ndarray | None = None,
    ):
        self.n_identities = int(n_identities)
        self.lattice = lattice
        self._fixed = np.asarray(fixed_thresholds, dtype=np.float64)
        self._genuine_scores: list[np.ndarray] = []
        self._genuine_identity: list[np.ndarray] = []
        # Impostor pairs (scores or cells, identities) held until the edges are placed.
        self._held: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.edges: np.ndarray | None = None
        self._histogram: np.ndarray | None = None
        # Impostors per identity pair (k < l, cells in the order of numpy.triu_indices) and bin, while few
        # identities keep it small.
        self._pair_histogram: np.ndarray | None = None
        # On a lattice: the bin of every cell from the lowest to the highest edge's (one gather, no search).
        self._lookup: tuple[int, np.ndarray] | None = None
        if edges is not None:
            # Edges placed beforehand (`impostor_bin_edges` of a sample of the pairs): parts of the pairs counted
            # apart (a Dask task, a GPU) share them, so that their states merge into those of one pass.
            self._use_edges(np.asarray(edges, dtype=np.float64))

    def update(
        self,
        scores: np.ndarray,
        genuine: np.ndarray,
        first: np.ndarray,
        second: np.ndarray,
        cells: np.ndarray | None = None,
    ) -> None:
        """Add pairs: scores, genuine flags, the identity codes of their two images, and (on a lattice, optional)
        their cells (`faceval.stats.lattice.Lattice.cells`), which place them in bins without a search."""
        self._genuine_scores.append(scores[genuine])
        self._genuine_identity.append(first[genuine].astype(np.int32))
        impostor = ~genuine
        if not impostor.any():
            return
        located = scores[impostor] if cells is None or self._lookup is None else cells[impostor]
        part = (located, first[impostor].astype(np.int32), second[impostor].astype(np.int32))
        if self.edges is None:
            self._held.append(part)
            return
        self._count(*part)

    def place_edges(self) -> np.ndarray:
        """The impostor bins' edges: placed from every impostor score held when not given (as `influences` does at
        the end)."""
        if self.edges is None:
            self._start_histograms()
        assert self.edges is not None
        return self.edges

    def _start_histograms(self) -> None:
        # The concatenation is a copy: the quantiles may reorder it.
        held = np.concatenate([part[0] for part in self._held]) if self._held else np.zeros(0)
        self._use_edges(impostor_bin_edges(held, self._fixed, self.lattice))

    def _use_edges(self, edges: np.ndarray) -> None:
        self.edges = edges
        self._histogram = np.zeros((self.n_identities, self.edges.size + 1), dtype=np.int64)
        cells = self.n_identities * (self.n_identities - 1) // 2
        if cells * (self.edges.size + 1) <= PAIR_TABLE_ENTRIES:
            self._pair_histogram = np.zeros((cells, self.edges.size + 1), dtype=np.int64)
        held, self._held = self._held, []
        while held:  # each held part freed once counted
            self._count(*held.pop())
        self._lookup = self._cell_lookup()

    def _cell_lookup(self) -> tuple[int, np.ndarray] | None:
        if self.lattice is None or not self.edges.size:
            return None
        edge_cells = np.sort(self.lattice.cells(self.edges))
        low, high = int(edge_cells[0]), int(edge_cells[-1])
        if high - low > _MAX_LOOKUP:
            return None
        cells = np.arange(low - 1, high + 2)
        # A score is >= an edge when its cell is at or past the edge's cell in the lattice's order of scores.
        if self.lattice.ascending:
            bins = np.searchsorted(edge_cells, cells, side="right")
        else:
            bins = edge_cells.size - np.searchsorted(edge_cells, cells, side="left")
        return low - 1, bins.astype(np.int16)

    def _bins(self, located: np.ndarray) -> np.ndarray:
        """Bins of scores, or of cells when a lookup exists (values beyond it take the end bins)."""
        if self._lookup is None or located.dtype.kind == "f":
            return np.searchsorted(self.edges, located, side="right")
        start, bins = self._lookup
        return bins[np.clip(located - start, 0, bins.size - 1)]

    def _count(self, scores: np.ndarray, first: np.ndarray, second: np.ndarray) -> None:
        assert self.edges is not None and self._histogram is not None
        width = self.edges.size + 1
        bins = self._bins(scores)
        codes = np.concatenate((first * width + bins, second * width + bins))
        self._histogram += np.bincount(codes, minlength=self._histogram.size).reshape(self._histogram.shape)
        if self._pair_histogram is not None:
            low, high = np.minimum(first, second).astype(np.int64), np.maximum(first, second).astype(np.int64)
            cell = low * (2 * self.n_identities - low - 1) // 2 + high - low - 1  # numpy.triu_indices' order
            codes = cell * width + bins
            self._pair_histogram += np.bincount(codes, minlength=self._pair_histogram.size).reshape(
                self._pair_histogram.shape
            )

    def merge(self, other: IdentityStatistics) -> None:
        """Add the pairs of ``other`` (same identities; its edges placed from its own sample are replayed here)."""
        self._genuine_scores.extend(other._genuine_scores)
        self._genuine_identity.extend(other._genuine_identity)
        if other.edges is None:
            for part in other._held:
                self.update(part[0], np.zeros(part[0].size, dtype=bool), part[1], part[2])
            return
        if self.edges is None:
            self._start_histograms()
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("can only merge IdentityStatistics whose impostor bins have the same edges")
        self._histogram += other._histogram
        if self._pair_histogram is not None:
            self._pair_histogram += other._pair_histogram

    def influences(
        self, table: ScoreTable, fars: Sequence[float] = (), thresholds: Sequence[float] = ()
    ) -> IdentityInfluences:
        """Influence of each identity on every figure of ``table`` (the score table of the same pairs)."""
        if self.edges is None:
            self._start_histograms()
        assert self.edges is not None and self._histogram is not None
        n_genuine, n_impostor = table.n_genuine, table.n_impostor
        genuine_scores = np.concatenate(self._genuine_scores) if self._genuine_scores else np.zeros(0)
        genuine_identity = (
            np.concatenate(self._genuine_identity) if self._genuine_identity else np.zeros(0, dtype=np.int32)
        )
        genuine_per_identity = np.bincount(genuine_identity, minlength=self.n_identities)
        impostor_per_identity = self._histogram.sum(axis=1)

        def genuine_rejected(threshold: float) -> np.ndarray:
            return np.bincount(genuine_identity[genuine_scores < threshold], minlength=self.n_identities)

        def fnmr_influence(threshold: float) -> tuple[float, np.ndarray]:
            below = genuine_rejected(threshold)
            rate = float(below.sum()) / n_genuine
            return rate, (below - rate * genuine_per_identity) / n_genuine

        accepted_at_edges = sweep_at(table, self.edges).fp
        # Impostors at or above each bin's lower edge: bin b holds [edge b-1, edge b).
        accepted_from = np.concatenate(([n_impostor], accepted_at_edges))
        accepted_to = np.concatenate((accepted_at_edges, [0]))

        def accepted_by_row(histogram: np.ndarray, threshold: float) -> tuple[int, np.ndarray]:
            """Impostors accepted at a threshold: in all, and in each row of a (rows x bins) histogram."""
            accepted = int(sweep_at(table, [threshold]).fp[0])
            bin_of = int(np.searchsorted(self.edges, threshold, side="right"))
            in_bin = accepted_from[bin_of] - accepted_to[bin_of]
            share = (accepted - accepted_to[bin_of]) / in_bin if in_bin else 0.0
            return accepted, histogram[:, bin_of + 1 :].sum(axis=1) + share * histogram[:, bin_of]

        def fmr_influence(threshold: float) -> tuple[float, np.ndarray]:
            accepted, above = accepted_by_row(self._histogram, threshold)
            rate = accepted / n_impostor
            return rate, (above - rate * impostor_per_identity) / n_impostor

        def slope(far: float) -> float:
            # ROC slope -dFNMR/dFMR around this FMR, over a factor of 2 each side.
            low, high = tar_at_far(table, far / 2), tar_at_far(table, min(2 * far, 1.0))
            span = high.fmr - low.fmr
            return (low.fnmr - high.fnmr) / span if span > 0 else 0.0

        def operating_influence(threshold: float, ratio: float) -> np.ndarray:
            # FNMR at a threshold chosen by FMR: the threshold moves with the FMR (delta method through the ROC).
            return fnmr_influence(threshold)[1] + ratio * fmr_influence(threshold)[1]

        auc = roc_auc(table)
        # Placements: a genuine pair's share of impostors below it, an impostor's share of genuine pairs above it,
        # pairs of one table row (one cell) counted as ties, as in the AUC itself.
        rows = np.searchsorted(-table.thresholds, -genuine_scores, side="left")
        impostor_below = n_impostor - table.impostor_accepted + table.impostor / 2.0
        genuine_placement = impostor_below[rows] / n_impostor
        genuine_part = np.bincount(
            genuine_identity, weights=genuine_placement - auc, minlength=self.n_identities
        ) / max(n_genuine, 1)
        genuine_above = (table.genuine_accepted - table.genuine / 2.0) / max(n_genuine, 1)
        row_bins = np.searchsorted(self.edges, table.thresholds, side="right")
        width = self.edges.size + 1
        weight = np.bincount(row_bins, weights=table.impostor, minlength=width)
        placed = np.bincount(row_bins, weights=table.impostor * genuine_above, minlength=width)
        mean_placement = np.divide(placed, weight, out=np.zeros(width), where=weight > 0)
        impostor_part = (self._histogram @ mean_placement - auc * impostor_per_identity) / max(n_impostor, 1)

        eer = equal_error_rate(table)
        eer_ratio = slope(max(eer.value, 1.0 / n_impostor))
        eer_influence = operating_influence(eer.threshold_below, eer_ratio) / (1.0 + eer_ratio)
        tars = [tar_at_far(table, far) for far in fars]
        tar_influence = [
            -operating_influence(result.threshold, slope(result.far))
            if np.isfinite(result.threshold)
            else np.zeros(self.n_identities)
            for result in tars
        ]
        rates = [(fmr_influence(t), fnmr_influence(t)) for t in thresholds]
        impostors = None
        if self._pair_histogram is not None:
            cells = np.flatnonzero(self._pair_histogram.any(axis=1))
            counts = self._pair_histogram[cells].astype(np.float64)
            first, second = (side[cells] for side in np.triu_indices(self.n_identities, k=1))
            # Genuine pairs' placements among each bin's impostors (ties half), the bin containing the score in
            # part, every bin wholly below it in full: per identity, by bin.
            genuine_bin = np.searchsorted(self.edges, genuine_scores, side="right")
            in_bin = accepted_from - accepted_to
            below_in_bin = np.clip(
                impostor_below[rows] - (n_impostor - accepted_from[genuine_bin]), 0.0, in_bin[genuine_bin]
            )
            partial = np.divide(
                below_in_bin, in_bin[genuine_bin], out=np.zeros(rows.size), where=in_bin[genuine_bin] > 0
            )
            at = genuine_identity * width + genuine_bin
            full = np.bincount(at, minlength=self.n_identities * width).reshape(self.n_identities, width)
            # Bins wholly below a genuine pair's bin place it in full: counts of genuine pairs in higher bins.
            genuine_below = np.cumsum(full[:, ::-1], axis=1)[:, ::-1] - full
            genuine_below = genuine_below + np.bincount(
                at, weights=partial, minlength=self.n_identities * width
            ).reshape(self.n_identities, width)
            impostors = BinnedImpostors(
                first=first,
                second=second,
                counts=counts,
                accepted=_columns([accepted_by_row(counts, t)[1] for t in thresholds], cells.size),
                genuine_count=genuine_per_identity.astype(np.float64),
                genuine_below=genuine_below,
                genuine_keys=np.sort(genuine_identity.astype(np.int64) * (table.thresholds.size + 1) + rows),
                in_bin=in_bin.astype(np.float64),
                accepted_to=accepted_to.astype(np.float64),
                table_thresholds=table.thresholds,
                table_accepted=table.impostor_accepted,
                edges=self.edges,
                fars=tuple(float(far) for far in fars),
            )
        return IdentityInfluences(
            point_auc=auc,
            point_eer=eer.value,
            point_tar=np.array([result.tar for result in tars]),
            point_fmr=np.array([fmr[0] for fmr, _ in rates]),
            point_fnmr=np.array([fnmr[0] for _, fnmr in rates]),
            auc=genuine_part + impostor_part,
            eer=eer_influence,
            tar=_columns(tar_influence, self.n_identities),
            fmr=_columns([fmr[1] for fmr, _ in rates], self.n_identities),
            fnmr=_columns([fnmr[1] for _, fnmr in rates], self.n_identities),
            fars=tuple(float(far) for far in fars),
            thresholds=tuple(float(t) for t in thresholds),
            genuine_count=genuine_per_identity.astype(np.float64),
            genuine_rejected=_columns([genuine_rejected(t) for t in thresholds], self.n_identities).astype(np.float64),
            impostors=impostors,
        )


def _columns(vectors: list[np.ndarray], rows: int) -> np.ndarray:
    return np.stack(vectors, axis=1) if vectors else np.zeros((rows, 0))
