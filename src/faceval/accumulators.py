"""What the pair engines feed: mergeable accumulators, and where the pairs come from (`PairFeed`).

Every figure is computed from states that are filled chunk by chunk and merged: `faceval.metrics.ScoreCounts`
(exact counts per distinct score), `faceval.lattice.LatticeCounts` (fixed memory; it also counts scores that
lie on a GPU), the group state of `faceval.groups` (with the per-identity `faceval.influence.IdentityStatistics`).
A `PairFeed` runs the pairs through such a state and hands back one merged state: in this process (`ChunkFeed`), on
a Dask cluster (`faceval.distributed.DaskPairs`) or on a GPU (`faceval.gpu.DevicePairs`). Because counting is exact,
merging only adds counts and parts are merged in pair order, the result does not depend on how the pairs were
split. (What one pass derives from the leading pairs, the impostor bins, is derived first from `PairFeed.in_order`
and handed to every part.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar, runtime_checkable

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

    def in_order(self) -> Iterator[PairChunk] | None:
        """The same pairs scored in this process, lazily, in the chunks of `faceval.scoring.iter_pair_chunks`, for
        a state that must first see the leading pairs in order (the impostor bins of
        `faceval.influence.IdentityStatistics`); None when ``accumulate`` feeds one state in that order itself."""
        ...


class ChunkFeed:
    """Pairs that are already chunks in this process (e.g. `faceval.scoring.iter_pair_chunks`)."""

    def __init__(self, chunks: Iterable[PairChunk]) -> None:
        self._chunks = chunks

    def accumulate(self, new: Callable[[], A], feed: Feed[A]) -> A:
        state = new()
        for chunk in self._chunks:
            feed(state, chunk)
        return state

    def in_order(self) -> None:
        return None  # accumulate feeds the one state in order


def update_counts(counts: Any, chunk: PairChunk) -> None:
    """The `Feed` of a counts state: the chunk's scores and genuine flags."""
    counts.update(chunk.scores, chunk.genuine)


def merged(new: Callable[[], A], parts: Iterable[A]) -> A:
    """A new state holding every part (the parts are left unchanged, so a retried task can reuse them)."""
    state = new()
    for part in parts:
        state.merge(part)
    return state
