"""Embedding every image of a dataset with one model: in worker processes, through the store, interruptible.

The parent hashes each file and looks it up in the `EmbeddingStore`; only the misses go to the workers, a few
at a time (memory stays flat on huge folders, and a thermal pause or Ctrl-C has little in flight). Each worker
builds its embedder once, from a picklable `ModelSpec` or embedder. Outcomes come back in any order and are put
in the dataset's order. An exception the model raises on one image becomes that image's failure. Ctrl-C (or any
exception, such as the CLI's SIGTERM) commits what was received, kills the workers and re-raises; after a hard kill
the next run embeds only what the store lacks.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import itertools
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from faceval.atomic import atomic_write
from faceval.errors import FacevalError
from faceval.models.embedders import Embedder, EmbeddingResult, ModelSpec
from faceval.models.onnx_embedder import available_cores
from faceval.models.scoring import Similarity
from faceval.models.store import EmbeddingStore
from faceval.sources.datasets import Dataset, ImageRecord
from faceval.sources.hashing import sha256_file
from faceval.sources.images import ImageLoadError, load_rgb
from faceval.sources.thermal import ThermalGuard

# Workers are forked from a small single-threaded server (or spawned), never from this process: ONNX Runtime's
# thread pools and tqdm's monitor thread do not survive a fork, and Python 3.12+ warns against forking threads.
_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
# Batches in flight per worker: one running, one queued so it never waits for the parent.
_BATCHES_PER_WORKER = 2

# (record index, sha256 of the file or None when it cannot be read, path)
_Task = tuple[int, str | None, Path]
# An outcome, and whether it is the model's (a load failure is not, and it names the file: never stored).
_Outcome = tuple[EmbeddingResult, bool]


@dataclass(frozen=True)
class EmbeddingSet:
    """One model's outcome for every record of a dataset, in the dataset's order.

    ``n_cached`` counts the outcomes found in the store (or earlier in the same run, for a duplicate file).
    """

    model: str
    similarity: Similarity
    description: dict[str, Any]
    results: tuple[EmbeddingResult, ...]
    n_cached: int = field(default=0, compare=False)

    @property
    def embedded(self) -> np.ndarray:
        """Boolean mask over the dataset's records: True where the model produced a vector."""
        return np.fromiter((result.ok for result in self.results), dtype=bool, count=len(self.results))

    @property
    def n_failed(self) -> int:
        return int((~self.embedded).sum())

    def vectors(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The vectors of the given record indices, stacked (every index must be embedded)."""
        return np.stack([self.results[index].vector for index in indices]).astype(np.float64, copy=False)


class WorkerError(FacevalError, RuntimeError):
    """A worker process died; what was embedded before is kept in the store."""


class RemoteWorkers(Protocol):
    """Workers on other machines (a Dask cluster, `faceval.compute.distributed.DaskWorkers`) that embed batches.

    ``start(recipe)`` gets them ready to build ``recipe`` and returns ``submit``: a batch of tasks ``(record index,
    sha256 or None, path)`` to a `concurrent.futures.Future` of its outcomes. ``slots`` is how many batches
    run at once; ``stop()`` cancels what is still queued. Their errors reach the caller as `WorkerError`.
    """

    slots: int

    def start(self, recipe: ModelSpec | Embedder) -> Callable[[list[_Task]], Future[list[_Outcome]]]: ...

    def stop(self) -> None: ...

    def explain(self, error: Exception) -> str | None:
        """What a failure of the cluster means for the user (None: not the cluster's)."""
        ...


def _described(error: Exception) -> str:
    """``module.Type: message`` on one line, e.g. ``cv2.error: OpenCV(4.10) ... (-215:Assertion failed) ...``."""
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"{name}: {' '.join(str(error).split()) or 'no message'}"


def _model_failure(error: Exception) -> _Outcome:
    # Not stored: the cause may pass (memory, a library update), so the next run tries the image again.
    return EmbeddingResult(None, None, failure=f"model error: {_described(error)}"), False


def _embed_images(embedder: Embedder, images: Sequence[np.ndarray]) -> list[_Outcome]:
    """One `embed_batch` call; when the model raises, each image again alone, so that only the images that make it
    raise become failures (with the exception's type and message), never the end of the run."""
    try:
        return [(result, True) for result in embedder.embed_batch(images)]
    except Exception as error:
        if len(images) == 1:
            return [_model_failure(error)]
    outcomes = []
    for image in images:
        try:
            outcomes.extend((result, True) for result in embedder.embed_batch([image]))
        except Exception as error:
            outcomes.append(_model_failure(error))
    return outcomes


def embed_files(embedder: Embedder, paths: Sequence[Path]) -> list[_Outcome]:
    """Load and embed images; an unreadable file, or one the model fails on, becomes a failure, never an exception."""
    outcomes: list[_Outcome | None] = [None] * len(paths)
    images, slots = [], []
    for slot, path in enumerate(paths):
        try:
            images.append(load_rgb(path))
            slots.append(slot)
        except ImageLoadError as error:
            outcomes[slot] = (EmbeddingResult(None, None, failure=f"unreadable: {error}"), False)
        except Exception as error:  # a decoder's own bug on a strange file: still only this image's failure
            outcomes[slot] = (EmbeddingResult(None, None, failure=f"unreadable: {path}: {_described(error)}"), False)
    if images:
        for slot, outcome in zip(slots, _embed_images(embedder, images), strict=True):
            outcomes[slot] = outcome
    return outcomes  # type: ignore[return-value]


def embed_record(embedder: Embedder, record: ImageRecord) -> EmbeddingResult:
    """Load and embed one image; an unreadable file becomes a failure, never an exception."""
    return embed_files(embedder, [record.path])[0][0]


_worker_embedder: Embedder | None = None


def _start_worker(pickled_recipe: bytes, environment: dict[str, str]) -> None:
    # A worker is forked from the fork server, which keeps the environment of its start (an earlier run in this
    # process): take the parent's of now, as a spawned worker would, so that what the parent set since (such as
    # FACEVAL_MODELS_DIR, where model files are found) holds here too. Only then is the recipe unpickled, since
    # an embedder rebuilds itself, finding its model files, as it is unpickled.
    os.environ.clear()
    os.environ.update(environment)
    recipe: ModelSpec | Embedder = pickle.loads(pickled_recipe)
    # Ctrl-C, a closed terminal (SIGHUP) and a scheduler's SIGTERM reach every process of the group: the parent
    # alone decides what happens, and stops the workers itself (with SIGKILL).
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # SIGHUP is POSIX only
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    global _worker_embedder
    _worker_embedder = recipe.build() if isinstance(recipe, ModelSpec) else recipe


def _embed_in_worker(paths: Sequence[Path]) -> list[_Outcome]:
    assert _worker_embedder is not None, "worker started without _start_worker"
    return embed_files(_worker_embedder, paths)


def _stop_workers(executor: ProcessPoolExecutor) -> None:
    """Kill the workers now rather than wait for their current images, which would be lost anyway (SIGKILL: they
    ignore SIGTERM)."""
    kill = getattr(executor, "kill_workers", None)  # Python >= 3.14
    if kill is not None:
        kill()
        return
    # Before 3.14 the same processes are only reachable here; kill_workers() stops exactly these.
    processes = list((executor._processes or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()


def _start_fork_server() -> None:
    """Start multiprocessing's fork server and resource tracker with SIGTERM and SIGHUP blocked, which they keep.

    A scheduler's SIGTERM or a closed terminal's SIGHUP reaches the whole process group; this process alone
    decides what it means. A helper killed by it would break the pool, or be restarted at the end of the run and
    print a traceback about resources its predecessor knew. They still end with this process (their pipes close).
    """
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP})
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        # A signal that came meanwhile was held, not lost: it is delivered here.
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _batches(tasks: Iterable[_Task], size: int) -> Iterator[list[_Task]]:
    iterator = iter(tasks)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class _Run:
    """One extraction's state: the outcome of each record so far, the store, the guard and the progress bar."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        embedder: Embedder,
        store: EmbeddingStore | None,
        guard: ThermalGuard | None,
        progress: bool,
    ) -> None:
        self.records = records
        self.results: list[EmbeddingResult | None] = [None] * len(records)
        self.store = store
        self.fingerprint = embedder.fingerprint() if store is not None else ""
        self.guard = guard
        self.n_cached = 0
        self._n_failed = 0
        # Outcomes of this run by image content: a file present twice is embedded once.
        self._known: dict[str, EmbeddingResult] = {}
        self._description = f"embedding ({embedder.name})"
        self.bar = tqdm(total=len(records), desc=self._description, unit="img", disable=not progress)

    def _lookup(self, sha: str) -> EmbeddingResult | None:
        known = self._known.get(sha)
        if known is None and self.store is not None:
            known = self.store.get(sha, self.fingerprint)
            if known is not None:
                self._known[sha] = known
        return known

    def _record(self, index: int, result: EmbeddingResult) -> None:
        self.results[index] = result
        self._n_failed += not result.ok
        self.bar.set_postfix(cached=self.n_cached, failed=self._n_failed, refresh=False)
        self.bar.update()

    def misses(self) -> Iterator[_Task]:
        """The records this run has to embed, hashing each file on the way and recording every hit."""
        for index, record in enumerate(self.records):
            try:
                sha = sha256_file(record.path)
            except OSError:
                sha = None  # loading it will say why it cannot be read
            known = None if sha is None else self._lookup(sha)
            if known is None:
                yield index, sha, record.path
            else:
                self.n_cached += 1
                self._record(index, known)

    def finish(self, batch: Sequence[_Task], outcomes: Sequence[_Outcome]) -> None:
        for (index, sha, _), (result, storable) in zip(batch, outcomes, strict=True):
            if storable and sha is not None:
                self._known[sha] = result
                if self.store is not None:
                    self.store.add(sha, self.fingerprint, result)
            self._record(index, result)

    def cool_down(self, pending: dict[Future[list[_Outcome]], list[_Task]] | None = None) -> None:
        """While the CPU is too hot, wait with the workers idle and everything received committed."""
        if self.guard is None:
            return

        def pause(guard: ThermalGuard) -> None:
            if pending:
                self._collect(pending, ALL_COMPLETED)
            if self.store is not None:
                self.store.flush()
            self.bar.set_description(
                f"{self._description} paused: CPU {guard.temperature:.0f} °C > {guard.max_temp:g} °C"
            )

        if self.guard.wait_until_cool(pause):
            self.bar.set_description(self._description)

    def embed_here(self, embedder: Embedder, batch_size: int) -> None:
        for batch in _batches(self.misses(), batch_size):
            self.cool_down()
            self.finish(batch, embed_files(embedder, [path for _, _, path in batch]))

    def embed_in_pool(self, recipe: ModelSpec | Embedder, jobs: int, batch_size: int) -> None:
        batches = _batches(self.misses(), batch_size)
        first = next(batches, None)
        if first is None:
            return  # everything was in the store: no worker to start
        # An embedder class defined in the user's script needs that script in the workers (and its guard).
        hide_main = _main_module_not_imported_by_workers() if _importable(recipe) else contextlib.nullcontext()
        with hide_main:
            self._embed_batches(recipe, jobs, itertools.chain([first], batches))

    def _embed_batches(self, recipe: ModelSpec | Embedder, jobs: int, batches: Iterable[list[_Task]]) -> None:
        executor = ProcessPoolExecutor(
            jobs,
            mp_context=multiprocessing.get_context(_START_METHOD),
            initializer=_start_worker,
            initargs=(pickle.dumps(recipe), dict(os.environ)),
        )
        try:
            self.embed_with(
                lambda batch: executor.submit(_embed_in_worker, [path for _, _, path in batch]),
                jobs,
                batches,
                lambda: _stop_workers(executor),
            )
        except BrokenProcessPool as error:
            raise WorkerError(
                "a worker process died (killed, or out of memory?); every image embedded so far is kept in "
                "the store: run again, with fewer jobs if memory is short"
            ) from error
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    def embed_remotely(self, workers: RemoteWorkers, recipe: ModelSpec | Embedder, batch_size: int) -> None:
        """Embed the misses on other machines' workers (`faceval.compute.distributed`); this process alone writes the
        store."""
        submit = workers.start(recipe)
        try:
            self.embed_with(submit, workers.slots, _batches(self.misses(), batch_size), workers.stop)
        except Exception as error:
            explained = workers.explain(error)
            if explained is None:
                raise
            raise WorkerError(explained) from error

    def embed_with(
        self,
        submit: Callable[[list[_Task]], Future[list[_Outcome]]],
        slots: int,
        batches: Iterable[list[_Task]],
        stop: Callable[[], None],
    ) -> None:
        """Keep ``slots`` workers busy with batches (two each), recording outcomes as they come back."""
        pending: dict[Future[list[_Outcome]], list[_Task]] = {}
        try:
            for batch in batches:
                while len(pending) >= slots * _BATCHES_PER_WORKER:
                    self._collect(pending, FIRST_COMPLETED)
                self.cool_down(pending)
                pending[submit(batch)] = batch
            while pending:
                self._collect(pending, FIRST_COMPLETED)
        except BaseException:
            # Ctrl-C, or a worker's error: keep what already came back, then stop at once.
            for future, batch in list(pending.items()):
                if future.done() and not future.cancelled() and future.exception() is None:
                    self.finish(batch, future.result())
            stop()
            raise

    def _collect(self, pending: dict[Future[list[_Outcome]], list[_Task]], return_when: str) -> None:
        done, _ = wait(pending, return_when=return_when)
        for future in done:
            self.finish(pending.pop(future), future.result())

    def close(self) -> None:
        # The store first: after a closed terminal (SIGHUP) even the progress bar's last line may fail.
        try:
            if self.store is not None:
                self.store.flush()
        finally:
            self.bar.close()


@contextlib.contextmanager
def _main_module_not_imported_by_workers() -> Iterator[None]:
    """Start worker processes without re-running the user's script in them.

    A new worker (forkserver or spawn) imports the parent's ``__main__`` file before its first task, so a plain
    script that calls faceval without an ``if __name__ == "__main__":`` guard would run again in every worker
    and fail there. The workers need only faceval's own modules (a `ModelSpec`, or an embedder whose class is
    importable: see `_importable`), so while they start, ``__main__`` is presented as a module that multiprocessing
    never re-imports (a spec named ``__main__``, as under ``python -m``). Jupyter and the REPL have no main file
    and are left alone.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None or not getattr(main, "__file__", None):
        yield
        return
    main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    try:
        yield
    finally:
        main.__spec__ = None


def _importable(model: ModelSpec | Embedder) -> bool:
    """Whether a worker can rebuild ``model`` from faceval's modules alone (not a class defined in ``__main__``)."""
    return isinstance(model, ModelSpec) or type(model).__module__ != "__main__"


def extract_embeddings(
    dataset: Dataset,
    model: ModelSpec | Embedder,
    *,
    jobs: int | None = None,
    store: EmbeddingStore | None = None,
    progress: bool = True,
    max_temp: float | ThermalGuard | None = None,
    batch_size: int = 1,
    workers: RemoteWorkers | None = None,
) -> EmbeddingSet:
    """Embed every image of ``dataset`` with ``model``, reusing and filling ``store``.

    ``jobs`` worker processes (default: one per core) each build the model once, from a `ModelSpec` or a
    picklable `Embedder`; ``jobs=1``, and the default for an embedder that cannot be pickled, embed in this
    process. ``max_temp`` (°C, or a
    ready `ThermalGuard`) pauses new work while the CPU is hotter. ``batch_size`` images go to each
    `Embedder.embed_batch` call (models with a batch axis do better with 8-32). An exception from the model on an
    image is that image's failure (``model error: <type>: <message>``, not cached). On Ctrl-C everything received
    is committed to the store before `KeyboardInterrupt` propagates. With ``workers`` (a Dask cluster) the
    images are embedded there instead of in ``jobs`` local processes; the store is still written here alone.
    """
    if (jobs is not None and jobs < 1) or batch_size < 1:
        raise ValueError("jobs and batch_size must be >= 1")
    if jobs is None and not _importable(model):
        jobs = 1  # its class lives in the user's script, which workers do not import
    if jobs != 1 and not isinstance(model, ModelSpec):
        try:
            pickle.dumps(model)
        except (TypeError, AttributeError, pickle.PicklingError) as error:
            if jobs is not None:
                raise TypeError(
                    f"model {model.name!r} cannot be sent to worker processes ({error}); pass its ModelSpec, or jobs=1"
                ) from error
            jobs = 1
    jobs = max(1, min(available_cores() if jobs is None else jobs, dataset.n_images))
    if jobs > 1 and workers is None and _START_METHOD == "forkserver":
        # The fork server imports the main module (for the CLI: all of faceval) before its first fork; let it
        # do so while this process builds its own model and hashes the files.
        _start_fork_server()
    embedder = model.build() if isinstance(model, ModelSpec) else model
    guard = ThermalGuard(max_temp) if isinstance(max_temp, int | float) else max_temp
    run = _Run(dataset.records, embedder, store, guard, progress)
    try:
        if workers is not None:
            run.embed_remotely(workers, model, batch_size)
        elif jobs == 1:
            run.embed_here(embedder, batch_size)
        else:
            run.embed_in_pool(model, jobs, batch_size)
    finally:
        run.close()
    return EmbeddingSet(
        embedder.name, embedder.similarity, embedder.describe(), tuple(run.results), n_cached=run.n_cached
    )


def save_embeddings_npz(path: str | Path, dataset: Dataset, embedding_set: EmbeddingSet) -> Path:
    """Write an embedding set as the ``.npz`` file ``faceval metrics`` reads, atomically.

    Arrays: ``labels``, ``paths`` (relative to the dataset root) and ``vectors`` of the embedded images,
    ``failed_paths`` and ``failed_reasons`` of the others, and the ``model`` name and its ``similarity``.
    """
    if len(embedding_set.results) != dataset.n_images:
        raise ValueError(f"{len(embedding_set.results)} outcomes for a dataset of {dataset.n_images} images")
    path = Path(path)
    embedded = embedding_set.embedded
    kept, failed = np.flatnonzero(embedded), np.flatnonzero(~embedded)
    records = dataset.records
    arrays = {
        "labels": np.array([records[i].identity for i in kept], dtype=str),
        "paths": np.array([dataset.relative_path(records[i]) for i in kept], dtype=str),
        "vectors": embedding_set.vectors(kept) if kept.size else np.empty((0, 0)),
        "failed_paths": np.array([dataset.relative_path(records[i]) for i in failed], dtype=str),
        "failed_reasons": np.array([embedding_set.results[i].failure for i in failed], dtype=str),
        "model": np.array(embedding_set.model),
        "similarity": np.array(embedding_set.similarity.value),
    }
    with atomic_write(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path
