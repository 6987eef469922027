"""Verification counts of fixed memory at any number of pairs: genuine and impostor counts on a lattice of thresholds.

`faceval.stats.metrics.ScoreCounts` keeps one entry per distinct score, so with float scores its memory grows with the
number of pairs. `LatticeCounts` counts each pair in the lattice cell that holds its score instead; its memory is
fixed by the score range and the resolution, never by the number of pairs (HdrHistogram's idea). Its ``compute``
yields an ordinary `faceval.stats.metrics.ScoreTable` (a `LatticeTable`), so every figure function works unchanged.

What is exact and what is bounded (``docs/metrics.md``):

- A cell is a half-open score interval; the table's thresholds are the cells' lowest accepted scores, so the
  genuine and impostor counts accepted at every lattice threshold, hence FMR, FNMR, precision, recall, accuracy
  and F1 there, are **exact**.
- TAR@FAR, EER and best-F1 thresholds are lattice thresholds (their resolution is the cell width).
- The AUC treats the pairs sharing a cell as tied; the true AUC lies within `LatticeTable.auc_bracket` of it.

Two lattices: `Lattice.absolute` (cosine similarities in [-1, 1]: cells of one width, 2^-21 by default) and
`Lattice.relative` (distances of any range: a float's exponent and its top 20 mantissa bits, so each cell is
2^-20 of its distance; only the octaves the scores occupy take memory).

>>> counts = LatticeCounts(Lattice.absolute(bits=2))
>>> counts.update([0.9, 0.3, 0.26, -0.2], [True, True, False, False])
>>> table = counts.compute()
>>> table.thresholds.tolist(), table.genuine.tolist(), table.impostor.tolist()
([0.75, 0.25, -0.25], [1, 1, 0], [0, 1, 1])
>>> table.auc_bracket
0.125
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from faceval.models.scoring import Similarity
from faceval.stats.metrics import ScoreCounts, ScoreTable, validated_scores

# Default resolutions: cosine cells of 2^-21 (4.8e-7); distance cells 2^-20 (9.5e-7) of the distance.
ABSOLUTE_BITS = 21
RELATIVE_BITS = 20
# Distances below this share the lowest cell [0, floor]: keeps memory bounded whatever near-duplicates occur.
RELATIVE_FLOOR = 2.0**-30

# Above this many pairs the exact per-distinct-score table gives way to the lattice (memory then stops growing).
EXACT_MAX_PAIRS = 5_000_000

# Counts are kept in blocks of this many cells, created on first use (1 MB each with both labels).
_BLOCK_BITS = 16
_BLOCK = 1 << _BLOCK_BITS
# One bincount spans at most this many cells; a chunk whose scores spread wider is split.
_MAX_SPAN = 1 << 24
_MANTISSA_BITS = 52


@dataclass(frozen=True)
class Lattice:
    """Where each score falls: integer cell indices, and the lowest score each cell accepts (its threshold).

    ``absolute``: cells ``[low + c h, low + (c + 1) h)`` with ``h = 2^-bits``, scores in ``[low, high]``.
    ``relative``: scores are negated distances ``s = -d``; cell ``c`` holds ``d`` in ``(e_c, e_{c+1}]`` where
    ``e_c`` is the float whose bits are ``c << (52 - bits)`` (cell width ``<= 2^-bits d``), distances up to
    ``RELATIVE_FLOOR`` in one cell.
    """

    kind: str
    bits: int
    low: float = -1.0
    high: float = 1.0

    @classmethod
    def absolute(cls, bits: int = ABSOLUTE_BITS, low: float = -1.0, high: float = 1.0) -> Lattice:
        """Cells of width ``2^-bits`` over ``[low, high]`` (cosine similarities: ``[-1, 1]``)."""
        if not -40 <= bits <= 40 or not low < high:
            raise ValueError(f"absolute lattice needs -40 <= bits <= 40 and low < high, got {bits}, [{low}, {high}]")
        return cls("absolute", bits, float(low), float(high))

    @classmethod
    def spanning(cls, low: float, high: float) -> Lattice:
        """An absolute lattice for scores of any units in ``[low, high]``: as many cells as the cosine default has
        over ``[-1, 1]`` (at most ``2^(ABSOLUTE_BITS + 1)``, one more at the edge), of a power-of-two width, the
        lowest edge on that width's grid (score files, whose range is only known from the scores).

        >>> lattice = Lattice.spanning(-3.5, 250.0)
        >>> lattice.bits, lattice.low, lattice.high
        (14, -3.5, 250.0)
        """
        width = max(float(high) - float(low), 2.0**-40)
        bits = min(40, ABSOLUTE_BITS + 1 - math.ceil(math.log2(width)))
        lowest_edge = math.floor(low * 2.0**bits) * 2.0**-bits
        return cls.absolute(bits, lowest_edge, max(float(high), lowest_edge + 2.0**-bits))

    @classmethod
    def relative(cls, bits: int = RELATIVE_BITS) -> Lattice:
        """Cells of width ``2^-bits`` relative to the distance (scores ``s = -d <= 0``)."""
        if not 1 <= bits <= 40:
            raise ValueError(f"relative lattice needs 1 <= bits <= 40, got {bits}")
        return cls("relative", bits)

    @classmethod
    def for_similarity(cls, similarity: Similarity) -> Lattice:
        """The default lattice of a similarity: absolute for cosine, relative for (negated) distances."""
        return cls.absolute() if Similarity(similarity) is Similarity.COSINE else cls.relative()

    @cached_property
    def _shift(self) -> int:
        return _MANTISSA_BITS - self.bits

    @cached_property
    def _floor_cell(self) -> int:
        return (int(np.float64(RELATIVE_FLOOR).view(np.int64)) >> self._shift) - 1

    def cells(self, scores: np.ndarray, xp: Any = np) -> np.ndarray:
        """The cell index of each score (int64); a score outside the lattice's range raises `ValueError`.

        ``xp`` is the array module of ``scores`` (numpy, or CuPy for scores on a GPU: `faceval.compute.gpu`).
        """
        scores = xp.asarray(scores, dtype=xp.float64)
        if self.kind == "absolute":
            if scores.size and (scores.min() < self.low or scores.max() > self.high):
                raise ValueError(
                    f"scores must lie in [{self.low}, {self.high}] for this lattice, got "
                    f"[{scores.min()}, {scores.max()}]"
                )
            scale = 2.0**self.bits
            cells = xp.floor((scores - self.low) * scale).astype(xp.int64)
            # The product can round across a cell edge: put each score back where its edges say it is.
            cells -= scores < self.edges(cells, xp)
            cells += scores >= self.edges(cells + 1, xp)
            return cells
        if scores.size and scores.max() > 0:
            raise ValueError(f"a relative lattice counts negated distances (scores <= 0), got {scores.max()}")
        distances = -scores + 0.0  # -0.0 becomes 0.0, whose bits are 0
        cells = (distances.view(xp.int64) - 1) >> self._shift
        return xp.maximum(cells, self._floor_cell)

    def edges(self, cells: np.ndarray, xp: Any = np) -> np.ndarray:
        """Absolute lattice: the lowest score of each cell (exact in float64)."""
        return self.low + xp.asarray(cells, dtype=xp.float64) * 2.0**-self.bits

    def thresholds(self, cells: np.ndarray) -> np.ndarray:
        """The lowest score each cell accepts: accepting ``s >= thresholds(c)`` accepts cells ``>= c`` (absolute)
        or ``<= c`` (relative) exactly."""
        cells = np.asarray(cells, dtype=np.int64)
        if self.kind == "absolute":
            return self.edges(cells)
        return -((cells + 1) << self._shift).view(np.float64)

    @property
    def ascending(self) -> bool:
        """True when higher cells hold higher scores (absolute), False when they hold larger distances."""
        return self.kind == "absolute"

    def describe(self) -> dict[str, Any]:
        """The resolution, for ``metrics.json``."""
        if self.kind == "absolute":
            return {
                "kind": "absolute lattice",
                "cell_width": 2.0**-self.bits,
                "range": [self.low, self.high],
                "exact": "FMR and FNMR at every lattice threshold; TAR@FAR, EER and best-F1 thresholds are lattice "
                "points; the AUC lies within auc_bracket of the value given",
            }
        return {
            "kind": "relative lattice",
            "relative_cell_width": 2.0**-self.bits,
            "floor": RELATIVE_FLOOR,
            "exact": "FMR and FNMR at every lattice threshold; TAR@FAR, EER and best-F1 thresholds are lattice "
            "points; the AUC lies within auc_bracket of the value given",
        }


@dataclass(frozen=True, eq=False)
class LatticeTable(ScoreTable):
    """A `ScoreTable` whose thresholds are lattice thresholds: each row counts the pairs of one lattice cell."""

    lattice: Lattice = field(default_factory=Lattice.absolute)

    @cached_property
    def auc_bracket(self) -> float:
        """Half-width of the AUC's bracket: pairs sharing a cell may be ordered either way, so the true AUC lies
        within ``sum_j g_j i_j / (2 N_G N_I)`` of `faceval.stats.metrics.roc_auc` of this table."""
        if self.n_genuine == 0 or self.n_impostor == 0:
            return 0.0
        shared = float(np.dot(self.genuine.astype(np.float64), self.impostor.astype(np.float64)))
        return shared / (2.0 * self.n_genuine * self.n_impostor)


class LatticeCounts:
    """Streaming state of fixed memory: genuine and impostor counts per lattice cell (update / merge / compute).

    >>> a, b = LatticeCounts(Lattice.relative()), LatticeCounts(Lattice.relative())
    >>> a.update([-0.5, -1.5], [True, False])
    >>> b.update([-0.5], [False])
    >>> a.merge(b)
    >>> table = a.compute()
    >>> table.thresholds.tolist(), table.genuine.tolist(), table.impostor.tolist()
    ([-0.5, -1.5], [1, 0], [1, 1])
    """

    def __init__(self, lattice: Lattice) -> None:
        self.lattice = lattice
        # Block number -> counts of shape (block size, 2): column 0 impostor, column 1 genuine.
        self._blocks: dict[int, np.ndarray] = {}
        self.n_genuine = 0
        self.n_impostor = 0

    @property
    def nbytes(self) -> int:
        """Memory held by the counts."""
        return sum(block.nbytes for block in self._blocks.values())

    def update(self, scores: Any, genuine: Any, xp: Any = np) -> None:
        """Add pairs: their scores and genuine labels (bool or 0/1).

        With ``xp`` CuPy (`faceval.compute.gpu`) the scores and bool labels are arrays on the GPU, placed and counted
        there; only the counts of the cells they occupy come to the host, where the state lives.
        """
        if xp is np:
            scores, genuine = validated_scores(scores, genuine)
        if not scores.size:
            return
        self.add_cells(self.lattice.cells(scores, xp), genuine, xp)

    def add_cells(self, cells: np.ndarray, genuine: np.ndarray, xp: Any = np) -> None:
        """Add pairs already placed in cells (`Lattice.cells`), with their genuine labels (arrays of ``xp``)."""
        if not cells.size:
            return
        n_genuine = int(xp.count_nonzero(genuine))
        self.n_genuine += n_genuine
        self.n_impostor += cells.size - n_genuine
        self._add(cells, genuine, xp)

    def _add(self, cells: np.ndarray, genuine: np.ndarray, xp: Any) -> None:
        low, high = int(cells.min()), int(cells.max())
        base = low >> _BLOCK_BITS
        n_blocks = (high >> _BLOCK_BITS) - base + 1
        if n_blocks * _BLOCK > _MAX_SPAN and low < high:
            middle = (low + high) // 2
            below = cells <= middle
            self._add(cells[below], genuine[below], xp)
            self._add(cells[~below], genuine[~below], xp)
            return
        codes = (cells - (base << _BLOCK_BITS)) * 2 + genuine
        counts = xp.bincount(codes, minlength=n_blocks * _BLOCK * 2).reshape(n_blocks, _BLOCK, 2)
        if xp is not np:
            counts = counts.get()  # CuPy: the chunk's counts to the host, where the blocks are
        for offset in np.flatnonzero(counts.reshape(n_blocks, -1).any(axis=1)).tolist():
            block = self._blocks.get(base + offset)
            if block is None:
                self._blocks[base + offset] = counts[offset].copy()
            else:
                block += counts[offset]

    def merge(self, other: LatticeCounts) -> None:
        """Add every pair counted by ``other`` (same lattice; ``other`` is left unchanged)."""
        if not isinstance(other, LatticeCounts) or other.lattice != self.lattice:
            raise TypeError("can only merge LatticeCounts on the same lattice")
        for key, block in other._blocks.items():
            if key in self._blocks:
                self._blocks[key] += block
            else:
                self._blocks[key] = block.copy()
        self.n_genuine += other.n_genuine
        self.n_impostor += other.n_impostor

    def cell_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The occupied cells (ascending) and their genuine and impostor counts."""
        if not self._blocks:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.copy(), empty.copy()
        keys = sorted(self._blocks)
        stacked = np.concatenate([self._blocks[key] for key in keys])
        cells = (np.repeat(np.array(keys, dtype=np.int64), _BLOCK) << _BLOCK_BITS) + np.tile(
            np.arange(_BLOCK, dtype=np.int64), len(keys)
        )
        used = stacked.any(axis=1)
        return cells[used], stacked[used, 1], stacked[used, 0]

    def compute(self) -> LatticeTable:
        """The `LatticeTable` of every pair seen so far: one row per occupied cell, thresholds descending."""
        cells, genuine, impostor = self.cell_counts()
        if self.lattice.ascending:
            cells, genuine, impostor = cells[::-1], genuine[::-1], impostor[::-1]
        return LatticeTable(self.lattice.thresholds(cells), genuine, impostor, lattice=self.lattice)


def lattice_for(similarity: Similarity, n_pairs: int, exact: bool | None = None) -> Lattice | None:
    """The lattice to count ``n_pairs`` pairs on: None (exact, one threshold per distinct score) up to
    `EXACT_MAX_PAIRS`, else the similarity's default lattice; ``exact`` True or False forces one."""
    if exact is None:
        exact = n_pairs <= EXACT_MAX_PAIRS
    return None if exact else Lattice.for_similarity(similarity)


def score_counts(similarity: Similarity, n_pairs: int, exact: bool | None = None) -> ScoreCounts | LatticeCounts:
    """The counting state for ``n_pairs`` pairs (`lattice_for`): `ScoreCounts`, or `LatticeCounts` on a lattice."""
    lattice = lattice_for(similarity, n_pairs, exact)
    return ScoreCounts() if lattice is None else LatticeCounts(lattice)


def resolution(table: ScoreTable) -> dict[str, Any]:
    """How exact a table's figures are, for ``metrics.json``: the lattice and the AUC bracket, or exact."""
    if isinstance(table, LatticeTable):
        return {**table.lattice.describe(), "auc_bracket": table.auc_bracket}
    return {
        "kind": "exact",
        "exact": "one threshold per distinct score: every figure exact up to float rounding",
        "auc_bracket": 0.0,
    }
