"""Dask (dask.distributed) as the engine past one machine: embedding and pair scoring as tasks on a cluster.

``--scheduler ADDRESS`` connects to a running ``dask scheduler``; ``--scheduler local:N`` starts a
`distributed.LocalCluster` of N single-threaded worker processes on this machine (loopback only).

- Embedding (`DaskWorkers`): one task per batch of images. Each worker process builds each model once and keeps
  it (`_embed_on_worker`). Tasks take paths and return vectors: images never travel, so **every worker must
  read the images at the same path as the client** (a shared or identically mounted file system); a worker that
  cannot read a file the client can read stops the run with a `SharedPathError` naming the worker and the file.
  The client alone writes the embedding store, as batches come back, so an interrupted cluster run resumes
  exactly as a local one: only the images missing from the store are embedded again.
- Scoring (`DaskPairs`): one task per share of whole scoring tiles (`faceval.models.scoring.tile_ranges`); each scores
  its pairs with every model of the pass and fills a fresh state (`faceval.stats.accumulators`) with them, and the
  states are merged in a binary tree, in pair order. A pair's score does not depend on the share it falls in,
  and merging only adds exact counts, so the counts equal the single-process run's bit for bit.
- Faults: Dask reruns the tasks of a worker that dies (they are pure functions of their inputs; the client
  records each batch once, so nothing is stored twice). A lost scheduler ends the run with a `ClusterError`;
  every batch received before is already in the store.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from faceval.errors import InputError
from faceval.models.embedders import Embedder, ModelSpec
from faceval.models.extraction import WorkerError, embed_files
from faceval.models.scoring import Similarity, iter_scored_pairs, tile_ranges
from faceval.stats.accumulators import A, ChunkFeed, Feed, merged

if TYPE_CHECKING:
    from distributed import Client

LOCAL_PREFIX = "local:"
# Seconds to wait for a scheduler before saying it cannot be reached.
CONNECT_TIMEOUT_S = 20
# Scoring tasks per worker thread: small enough that a lost worker costs little, large enough to keep the
# per-task overhead (a few ms) and the states' transfer small beside the scoring.
_TASKS_PER_THREAD = 4


class ClusterError(WorkerError):
    """The Dask cluster failed the run (scheduler lost, workers dying); what was embedded is kept in the store."""


class SharedPathError(OSError):
    """A worker cannot read an image that the client can: the workers do not share the client's paths."""


def _dask() -> Any:
    try:
        import distributed
    except ImportError as error:
        raise ClusterError("--scheduler needs Dask: pip install 'faceval[dask]'") from error
    return distributed


@contextlib.contextmanager
def connect(scheduler: str) -> Iterator[Client]:
    """A Dask client of the scheduler at ``scheduler`` (``tcp://host:8786``), or of a new `LocalCluster` of N
    single-threaded worker processes on 127.0.0.1 (``local:N``), closed on exit."""
    distributed = _dask()
    if scheduler.startswith(LOCAL_PREFIX):
        count = scheduler[len(LOCAL_PREFIX) :]
        if not count.isdigit() or int(count) < 1:
            raise InputError(f"--scheduler local:N needs a number of workers N >= 1, got {scheduler!r}")
        with (
            distributed.LocalCluster(
                n_workers=int(count),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=":0",  # a free port: never collide with a cluster already here
                silence_logs=logging.ERROR,
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as error:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {scheduler} ({error}); start one with 'dask scheduler' and "
            f"workers with 'dask worker {scheduler}', or use --scheduler local:N for workers on this machine"
        ) from error
    try:
        yield client
    finally:
        # A client whose scheduler is gone would wait for it; closing must not hide the run's own error.
        with contextlib.suppress(Exception):
            client.close(timeout=5)


def explain(error: BaseException, client: Client, then: str) -> str | None:
    """What a failed task or lost connection means, in the user's terms, followed by ``then`` (what to do); None
    when the error is not the cluster's doing (it then propagates as it is)."""
    distributed = _dask()
    address = client.scheduler.address if client.scheduler is not None else "?"
    if isinstance(error, SharedPathError):
        return str(error)
    if isinstance(error, distributed.KilledWorker):
        return (
            f"the Dask workers running one task died several times in a row ({error}): out of memory, or a model "
            f"that crashes its process? {then}"
        )
    lost = isinstance(error, concurrent.futures.CancelledError | distributed.comm.CommClosedError)
    if lost or client.status not in ("running", "newly-created"):
        detail = " ".join(str(error).split())  # Dask's messages span lines
        return f"lost the Dask scheduler at {address} ({type(error).__name__}: {detail}); {then}"
    return None


_built: dict[str, Embedder] = {}
_build_lock = threading.Lock()


def _embed_on_worker(recipe: ModelSpec | Embedder, key: str, files: Sequence[tuple[Path, bool]]) -> list[Any]:
    """A worker's task: embed a batch with the worker's one copy of the model (built at its first batch).

    ``files`` are ``(path, the client could read it)``; a path the client read but this worker cannot is the
    shared-path assumption broken, which no per-image failure should hide.
    """
    with _build_lock:
        embedder = _built.get(key)
        if embedder is None:
            embedder = _built[key] = recipe.build() if isinstance(recipe, ModelSpec) else recipe
    for path, client_read_it in files:
        if client_read_it and not os.access(path, os.R_OK):
            from distributed import get_worker

            raise SharedPathError(
                f"the Dask worker {get_worker().address} cannot read {path}, which this machine can: workers read "
                "the images themselves, so mount the dataset at the same path on every worker machine (or "
                "copy it there) and run again"
            )
    return embed_files(embedder, [path for path, _ in files])


class DaskWorkers:
    """A Dask cluster's workers as `faceval.models.extraction.RemoteWorkers`: batches of paths in, outcomes back."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.slots = max(1, sum(client.nthreads().values()))
        self._executor: Any = None

    def start(self, recipe: ModelSpec | Embedder) -> Callable[[list[Any]], concurrent.futures.Future[Any]]:
        # The recipe travels with each task (a few hundred bytes for a ModelSpec): a worker that joins or
        # replaces a dead one needs nothing else. Workers cache the model by the recipe's fingerprint.
        key = recipe.name + ":" + repr(recipe)
        self._executor = executor = self.client.get_executor(pure=False)

        def submit(batch: list[Any]) -> concurrent.futures.Future[Any]:
            files = [(path, sha is not None) for _, sha, path in batch]
            return executor.submit(_embed_on_worker, recipe, key, files)

        return submit

    def stop(self) -> None:
        if self._executor is not None:
            with contextlib.suppress(Exception):
                self._executor.shutdown(wait=False)

    def explain(self, error: Exception) -> str | None:
        return explain(
            error,
            self.client,
            "every image embedded so far is kept in the store: run the same command again once the scheduler and "
            "workers are back (only the missing images are embedded)",
        )


def _accumulate_share(
    identities: np.ndarray,
    similarities: Sequence[Similarity],
    pair_range: tuple[int, int],
    new: Callable[[], A],
    feed: Feed[A],
    *vectors: np.ndarray,
) -> A:
    """A worker's task: one state filled with the pairs of one share of whole tiles, scored by every model (the
    models' vectors come last, one argument each, so that Dask hands over the scattered arrays)."""
    chunks = iter_scored_pairs(list(zip(vectors, similarities, strict=True)), identities, pair_range=pair_range)
    return ChunkFeed(chunks).accumulate(new, feed)


class DaskPairs:
    """All pairs of the images, scored by every model (``models``: one ``(vectors, similarity)`` each) and counted
    on a Dask cluster (a `faceval.stats.accumulators.PairFeed`).

    The vectors go once to every worker; each task scores one share of whole tiles into a fresh state; the
    states are merged pairwise in a tree on the workers, in pair order, and only the final state comes back.
    """

    def __init__(
        self,
        client: Client,
        models: Sequence[tuple[np.ndarray, Similarity]],
        identities: np.ndarray,
        progress: bool = False,
        label: str = "",
        pairs_per_task: int | None = None,
    ) -> None:
        self.client = client
        self.models = [
            (np.ascontiguousarray(vectors, dtype=np.float64), Similarity(similarity)) for vectors, similarity in models
        ]
        self.identities = np.asarray(identities)
        self.progress = progress
        self.label = label
        self.pairs_per_task = pairs_per_task

    def accumulate(self, new: Callable[[], A], feed: Feed[A]) -> A:
        n = len(self.identities)
        total = n * (n - 1) // 2
        if total == 0:
            return new()
        try:
            return self._run(new, feed, n, total)
        except Exception as error:
            explained = explain(error, self.client, "run the same command again once the cluster is back")
            if explained is None:
                raise
            raise ClusterError(explained) from error

    def _run(self, new: Callable[[], A], feed: Feed[A], n: int, total: int) -> A:
        from distributed import as_completed

        client = self.client
        threads = max(1, sum(client.nthreads().values()))
        ranges = tile_ranges(n, self.pairs_per_task or max(1, total // (_TASKS_PER_THREAD * threads)))
        # On every worker, so that losing one loses no input (scattered data cannot be recomputed).
        identities, *vectors = client.scatter(
            [self.identities, *(vectors for vectors, _ in self.models)], broadcast=True, hash=False
        )
        similarities = [similarity for _, similarity in self.models]
        leaves = [
            client.submit(_accumulate_share, identities, similarities, pair_range, new, feed, *vectors, pure=False)
            for pair_range in ranges
        ]
        sizes = {leaf.key: stop - start for leaf, (start, stop) in zip(leaves, ranges, strict=True)}
        level = leaves
        while len(level) > 1:
            pairs = [level[index : index + 2] for index in range(0, len(level), 2)]
            level = [client.submit(merged, new, pair, pure=False) if len(pair) == 2 else pair[0] for pair in pairs]
        description = f"scoring pairs on Dask ({self.label})" if self.label else "scoring pairs on Dask"
        with tqdm(total=total, desc=description, unit="pair", unit_scale=True, disable=not self.progress) as bar:
            for leaf in as_completed(leaves):
                bar.update(sizes[leaf.key])
        return level[0].result()


def dask_pairs(client: Client) -> Callable[..., DaskPairs]:
    """A `faceval.compute.local.PairFeedFactory` scoring on ``client``'s cluster."""

    def factory(
        models: Sequence[tuple[np.ndarray, Similarity]], identities: np.ndarray, progress: bool = False, label: str = ""
    ) -> DaskPairs:
        return DaskPairs(client, models, identities, progress, label)

    return factory
