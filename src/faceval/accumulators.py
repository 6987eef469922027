"""What the pair engines feed: mergeable accumulators, and where the pairs come from (`PairFeed`).

Every figure is computed from states that are filled chunk by chunk and merged: `faceval.metrics.ScoreCounts`
(exact counts per distinct score), lattice counts of fixed memory (`faceval.gpu.DenseLatticeCounts`, which
also counts on a GPU), the group state of `faceval.groups`. A `PairFeed` runs
the pairs through such a state and hands back one merged state: in this process (`ChunkFeed`), on a Dask
cluster (`faceval.distributed.DaskPairs`) or on a GPU (`faceval.gpu.DevicePairs`). Because counting is exact
and merging only adds counts, the result does not depend on how the pairs were split or in which order the
parts were merged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


class ChunkFeed:
    """Pairs that are already chunks in this process (e.g. `faceval.scoring.iter_pair_chunks`)."""

    def __init__(self, chunks: Iterable[PairChunk]) -> None:
        self._chunks = chunks

    def accumulate(self, new: Callable[[], A], feed: Feed[A]) -> A:
        state = new()
        for chunk in self._chunks:
            feed(state, chunk)
        return state


def update_counts(counts: Any, chunk: PairChunk) -> None:
    """The `Feed` of a counts state: the chunk's scores and genuine flags."""
    counts.update(chunk.scores, chunk.genuine)


def merged(new: Callable[[], A], parts: Iterable[A]) -> A:
    """A new state holding every part (the parts are left unchanged, so a retried task can reuse them)."""
    state = new()
    for part in parts:
        state.merge(part)
    return state
