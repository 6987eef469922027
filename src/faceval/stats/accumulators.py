"""What the pair engines feed: mergeable accumulators, and where the pairs come from (`PairFeed`).

Every figure is computed from states that are filled chunk by chunk and merged: `faceval.stats.metrics.ScoreCounts`
(exact counts per distinct score), `faceval.stats.lattice.LatticeCounts` (fixed memory; it also counts scores that
lie on a GPU), the group state of `faceval.stats.groups` (with the per-identity
`faceval.stats.influence.IdentityStatistics`). A `PairFeed` runs the pairs through such a state and hands back one
merged state: in this process (`ChunkFeed`), on a Dask cluster (`faceval.compute.distributed.DaskPairs`) or on a GPU
(`faceval.compute.gpu.DevicePairs`). Because counting is exact, merging only adds counts and parts are merged in pair
order, the result does not depend on how the pairs were split. (The impostor bins of the per-identity states are
placed before the pass, from a sample of the pairs, and handed to every part.)

One pass serves every model: a chunk (`faceval.models.scoring.ScoredPairs`) carries the pairs and genuine flags once and
each model's scores of them; `States` holds each model's states (fed that model's `PairChunk` by `ModelFeed`) and
the shared ones (`HeldPairs`) side by side, so that the pairs are scored once for all figures of all models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from faceval.models.scoring import PairChunk, ScoredPairs


class Accumulator(Protocol):
    """A mergeable state: ``merge`` adds another state of the same kind (left unchanged)."""

    def merge(self, other: Any) -> None: ...


A = TypeVar("A", bound=Accumulator)
# Adds one chunk of the pass (every model's scores of the same pairs) to a state; must be picklable (a module-level
# function, a functools.partial of one, or a `ModelFeed`) where the feed runs it on other machines.
Feed = Callable[[A, ScoredPairs], None]


@runtime_checkable
class PairFeed(Protocol):
    """A source of all pairs of a set of images, scored by every model of the pass (`ScoredPairs`), that fills
    states made by ``new`` with ``feed``."""

    def accumulate(self, new: Callable[[], A], feed: Feed[A]) -> A: ...


class ChunkFeed:
    """Pairs that are already chunks in this process: `ScoredPairs` (`faceval.models.scoring.iter_scored_pairs`), or one
    model's `PairChunk` objects (`faceval.models.scoring.iter_pair_chunks`), read as a one-model pass."""

    def __init__(self, chunks: Iterable[ScoredPairs | PairChunk]) -> None:
        self._chunks = chunks

    def accumulate(self, new: Callable[[], A], feed: Feed[A]) -> A:
        state = new()
        for chunk in self._chunks:
            feed(state, chunk if isinstance(chunk, ScoredPairs) else ScoredPairs.of(chunk))
        return state


@dataclass(frozen=True)
class ModelFeed:
    """The `Feed` of a state of one model (``index`` in the pass): ``feed`` gets that model's `PairChunk`."""

    feed: Callable[[Any, PairChunk], None]
    index: int = 0

    def __call__(self, state: Any, pairs: ScoredPairs) -> None:
        self.feed(state, pairs.model(self.index))


@dataclass
class States:
    """The states of one pass side by side (each model's, and any shared one), merged part by part."""

    parts: list[Any]

    @classmethod
    def new(cls, news: Sequence[Callable[[], Any]]) -> States:
        return cls([new() for new in news])

    def merge(self, other: States) -> None:
        for part, other_part in zip(self.parts, other.parts, strict=True):
            part.merge(other_part)


@dataclass(frozen=True)
class FeedEach:
    """The `Feed` of `States`: each part's own feed, in turn, with every chunk."""

    feeds: tuple[Feed[Any], ...]

    def __call__(self, states: States, pairs: ScoredPairs) -> None:
        for state, feed in zip(states.parts, self.feeds, strict=True):
            feed(state, pairs)


def side_by_side(parts: Sequence[tuple[Callable[[], Any], Feed[Any]]]) -> tuple[Callable[[], States], FeedEach]:
    """The factory and feed of `States` holding one state per ``(new, feed)``: one pass fills them all."""
    return functools.partial(States.new, tuple(new for new, _ in parts)), FeedEach(tuple(feed for _, feed in parts))


@dataclass
class HeldPairs:
    """Every pair of a pass, held in pair order for the methods that need them all (the identity bootstrap, the
    paired model comparison): the image indices once (int32) and each model's scores (float64), 8 + 8 bytes per
    pair and model. Fed with `HeldPairs.add`."""

    first: list[np.ndarray] = field(default_factory=list)
    second: list[np.ndarray] = field(default_factory=list)
    scores: list[list[np.ndarray]] = field(default_factory=list)

    def add(self, pairs: ScoredPairs) -> None:
        self.first.append(pairs.first.astype(np.int32))
        self.second.append(pairs.second.astype(np.int32))
        if not self.scores:
            self.scores = [[] for _ in pairs.scores]
        for held, scores in zip(self.scores, pairs.scores, strict=True):
            held.append(scores)

    def merge(self, other: HeldPairs) -> None:
        """Add the pairs of ``other`` after these (as if fed after them)."""
        self.first += other.first
        self.second += other.second
        if not other.scores:
            return
        if not self.scores:
            self.scores = [[] for _ in other.scores]
        for held, more in zip(self.scores, other.scores, strict=True):
            held += more

    def take(self, n_models: int) -> list[HeldScores]:
        """Each of the ``n_models`` models' pairs, joined into single arrays (the index arrays shared by all); the
        chunks are let go as they are joined, so that the pairs are not held twice."""

        def joined(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            array = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
            parts.clear()
            return array

        first, second = joined(self.first, np.int32), joined(self.second, np.int32)
        scores = self.scores or [[] for _ in range(n_models)]
        return [HeldScores(first, second, joined(model_scores, np.float64)) for model_scores in scores]


@dataclass(frozen=True)
class HeldScores:
    """One model's scores of every pair of a pass, in pair order, with the pairs' image indices (`HeldPairs`)."""

    first: np.ndarray
    second: np.ndarray
    scores: np.ndarray


def update_counts(counts: Any, chunk: PairChunk) -> None:
    """The feed of one model's counts state (wrap it in `ModelFeed` for a pass): the chunk's scores and genuine
    flags."""
    counts.update(chunk.scores, chunk.genuine)


def merged(new: Callable[[], A], parts: Iterable[A]) -> A:
    """A new state holding every part (the parts are left unchanged, so a retried task can reuse them)."""
    state = new()
    for part in parts:
        state.merge(part)
    return state
