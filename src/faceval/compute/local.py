"""The pairs scored in this process: every model's chunks of all pairs, scored a chunk ahead on a background thread
while the caller accounts for the previous one, as a `PairFeed` (`local_pairs`). The engine's default; a Dask
cluster (`faceval.compute.distributed`) and a GPU (`faceval.compute.gpu`) make the same feed elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from queue import Full, Queue
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from faceval.models.scoring import ScoredPairs, Similarity, iter_scored_pairs
from faceval.stats.accumulators import ChunkFeed, PairFeed

T = TypeVar("T")

# Below this many pairs scoring takes a few seconds at most: no progress bar.
PROGRESS_MIN_PAIRS = 5_000_000


# One (vectors, similarity) per model of a pass, the vectors of the same images in the same rows.
Models = Sequence[tuple[np.ndarray, Similarity]]


def pair_chunks(
    models: Models, identities: np.ndarray, progress: bool = False, label: str = ""
) -> Iterator[ScoredPairs]:
    """`iter_scored_pairs` with a progress bar when there are millions of pairs (``label``: the models)."""
    total = len(identities) * (len(identities) - 1) // 2
    with tqdm(
        total=total,
        desc=f"scoring pairs ({label})" if label else "scoring pairs",
        unit="pair",
        unit_scale=True,
        disable=not progress or total < PROGRESS_MIN_PAIRS,
    ) as bar:
        for chunk in prefetched(iter_scored_pairs(models, identities)):
            yield chunk
            bar.update(len(chunk))


_DONE = object()


def prefetched(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """The items of ``items``, produced by a background thread up to ``depth`` ahead: the next chunk is scored (BLAS
    and numpy release the GIL) while the caller accounts for this one, so both cores work. An exception in the
    producer is raised here; stopping early stops the producer.

    >>> list(prefetched(iter(range(5))))
    [0, 1, 2, 3, 4]
    """
    queue: Queue[Any] = Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # handed to the consumer, which raises it
            put(error)

    producer = threading.Thread(target=produce, name="faceval-scoring", daemon=True)
    producer.start()
    try:
        while (item := queue.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        producer.join()


def local_pairs(models: Models, identities: np.ndarray, progress: bool = False, label: str = "") -> PairFeed:
    """The pairs scored by every model in this process (`pair_chunks`), as a `PairFeed`."""
    return ChunkFeed(pair_chunks(models, identities, progress, label))


# Makes the PairFeed of the models' vectors (one pass for all): local_pairs, or a Dask cluster's or a GPU's
# (faceval.compute.engine).
PairFeedFactory = Callable[[Models, np.ndarray, bool, str], PairFeed]
