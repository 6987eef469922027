"""What the pair engines feed: mergeable accumulators, and where the pairs come from (`PairFeed`).

Every figure is computed from states that are filled chunk by chunk and merged: `faceval.metrics.ScoreCounts`
(exact counts per distinct score), `LatticeCounts` (counts on a fixed lattice of thresholds: memory fixed by the
range and the resolution, whatever the number of pairs), the group state of `faceval.groups`. A `PairFeed` runs
the pairs through such a state and hands back one merged state: in this process (`ChunkFeed`), on a Dask
cluster (`faceval.distributed.DaskPairs`) or on a GPU (`faceval.gpu.DevicePairs`). Because counting is exact
and merging only adds counts, the result does not depend on how the pairs were split or in which order the
parts were merged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from faceval.metrics import ScoreCounts, ScoreTable
from faceval.scoring import PairChunk


class Accumulator(Protocol):
    """A mergeable state: ``merge`` adds another state of the same kind (left unchanged)."""

    def merge(self, other: Any) -> None: ...


A = TypeVar("A", bound=Accumulator)
# Adds one chunk of pairs to a state; must be picklable (a module-level function or a functools.partial of
# one) where the feed runs it on other machines.
Feed = Callable[[A, PairChunk], None]


@runtime_checkable
class PairFeed(Protocol):
    """A source of all pairs of a set of vectors that fills states made by ``new`` with ``feed``."""

    def accumulate(self, new: Callable[[], A], feed: Feed[A]) -> A: ...


class ChunkFeed:
    """Pairs that are already chunks in this process (e.g. `faceval.scoring.iter_pair_chunks`)."""

    def __init__(self, chunks: Iterable[PairChunk]) -> None:
        self._chunks = chunks

    def accumulate(self, new: Callable[[], A], feed: Feed[A]) -> A:
        state = new()
        for chunk in self._chunks:
            feed(state, chunk)
        return state


def update_counts(counts: ScoreCounts | LatticeCounts, chunk: PairChunk) -> None:
    """The `Feed` of a counts state: the chunk's scores and genuine flags."""
    counts.update(chunk.scores, chunk.genuine)


def merged(new: Callable[[], A], parts: Iterable[A]) -> A:
    """A new state holding every part (the parts are left unchanged, so a retried task can reuse them)."""
    state = new()
    for part in parts:
        state.merge(part)
    return state


class LatticeCounts:
    """Genuine and impostor counts per cell of a fixed lattice of thresholds ``low + k * resolution``.

    Memory is ``2 * ceil((high - low) / resolution + 1)`` integers whatever the number of pairs; the counts
    accepted (``score >= t``) at every lattice threshold ``t`` are exact. A score outside ``[low, high]`` raises
    `ValueError`. ``xp`` is the array module the counts live in (numpy, or CuPy on a GPU): ``update`` takes
    arrays of that module, so a GPU feed counts without copying scores to the host.

    >>> counts = LatticeCounts(-1.0, 1.0, resolution=0.25)
    >>> counts.update(np.array([0.3, 0.3, -0.9, 1.0]), np.array([True, False, False, True]))
    >>> table = counts.compute()
    >>> table.thresholds.tolist(), table.genuine.tolist(), table.impostor.tolist()
    ([1.0, 0.25, -1.0], [1, 1, 0], [0, 1, 1])
    """

    def __init__(self, low: float, high: float, resolution: float = 1e-6, xp: Any = np) -> None:
        if not (math.isfinite(low) and math.isfinite(high) and low < high and resolution > 0):
            raise ValueError(f"a lattice needs finite low < high and resolution > 0, got {low}, {high}, {resolution}")
        self.low, self.high, self.resolution = float(low), float(high), float(resolution)
        self.n_cells = math.ceil((self.high - self.low) / self.resolution) + 1
        self.array_module = xp
        # Row 0: impostor pairs, row 1: genuine pairs, one column per lattice cell.
        self._counts = xp.zeros(2 * self.n_cells, dtype=xp.int64)

    def _edge(self, cells: Any) -> Any:
        return self.low + cells * self.resolution

    def update(self, scores: Any, genuine: Any) -> None:
        """Add pairs: their scores (an array of this state's module) and genuine flags (bool)."""
        xp = self.array_module
        if scores.size == 0:
            return
        low, high = float(scores.min()), float(scores.max())
        if not (low >= self.low and high <= self.high):
            raise ValueError(f"scores from {low} to {high} fall outside the lattice [{self.low}, {self.high}]")
        cells = xp.floor((scores - self.low) / self.resolution).astype(xp.int64)
        xp.clip(cells, 0, self.n_cells - 1, out=cells)
        # The division rounds: move a score that landed one cell off back to the cell whose edges hold it, so that
        # "accepted at a lattice threshold" is exactly score >= that threshold.
        cells -= scores < self._edge(cells)
        cells += (cells + 1 < self.n_cells) & (scores >= self._edge(cells + 1))
        cells += self.n_cells * genuine.astype(xp.int64)
        self._counts += xp.bincount(cells, minlength=2 * self.n_cells)

    def merge(self, other: LatticeCounts) -> None:
        """Add every pair counted by ``other`` (same lattice; any array module)."""
        if not isinstance(other, LatticeCounts):
            raise TypeError(f"can only merge another LatticeCounts, got {type(other).__name__}")
        if (other.low, other.high, other.resolution) != (self.low, self.high, self.resolution):
            raise ValueError("cannot merge counts on different lattices")
        self._counts += self.array_module.asarray(other.host_counts())

    def host_counts(self) -> np.ndarray:
        """The counts as one numpy array: impostor cells, then genuine cells."""
        counts = self._counts
        return counts.get() if hasattr(counts, "get") else np.asarray(counts)

    def compute(self) -> ScoreTable:
        """A `ScoreTable` whose thresholds are the lower edges of the occupied cells (descending)."""
        counts = self.host_counts()
        impostor, genuine = counts[: self.n_cells], counts[self.n_cells :]
        occupied = np.flatnonzero((impostor + genuine) > 0)[::-1]
        return ScoreTable(self._edge(occupied.astype(np.float64)), genuine[occupied], impostor[occupied])
