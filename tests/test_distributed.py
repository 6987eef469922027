"""Dask as the engine: a real LocalCluster and real `dask scheduler` + `dask worker` processes, on 127.0.0.1 only.

Oracles: the single-process run (`faceval.evaluation.score_pairs` exact and on the lattice, `group_report` over
`iter_pair_chunks` with the bootstrap and with the streaming intervals, an in-process `extract_embeddings` without a
store), and the store file read with plain sqlite3.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("distributed")

from faceval.cli import main
from faceval.compute import distributed as faceval_distributed
from faceval.compute.distributed import (
    ClusterError,
    DaskPairs,
    DaskWorkers,
    SharedPathError,
    _embed_on_worker,
    connect,
    dask_pairs,
)
from faceval.evaluation import evaluate_embeddings, score_pairs
from faceval.models import extraction
from faceval.models.embedders import EmbeddingResult, ModelSpec
from faceval.models.extraction import EmbeddingSet, WorkerError, extract_embeddings
from faceval.models.scoring import Similarity, iter_pair_chunks
from faceval.models.store import EmbeddingStore
from faceval.output.group_presentation import group_report_dict
from faceval.output.results import Result
from faceval.sources.datasets import Dataset, ImageRecord, load_dataset
from faceval.stats.accumulators import ModelFeed, update_counts
from faceval.stats.groups import GroupOptions, group_report
from faceval.stats.lattice import Lattice, LatticeCounts
from faceval.stats.metrics import ScoreCounts

from onnx_fixtures import write_pooled_matmul_model
from shared_data import shared_file

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
DASK = Path(sys.executable).with_name("dask")


class Slow:
    """An embedder that takes ``delay`` seconds per image, so that a run can be cut in the middle."""

    def __init__(self, inner, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.name, self.similarity = inner.name, inner.similarity

    def describe(self) -> dict:
        return self.inner.describe()

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def embed_batch(self, images) -> list[EmbeddingResult]:
        time.sleep(self.delay * len(images))
        return self.inner.embed_batch(images)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Dataset:
    """24 JAFFE images (8 women x 3) copied to a private folder."""
    source = shared_file("faces/jaffe")
    folder = tmp_path_factory.mktemp("jaffe24")
    for identity in sorted(path for path in source.iterdir() if path.is_dir())[:8]:
        (folder / identity.name).mkdir()
        for image in sorted(identity.iterdir())[:3]:
            shutil.copy2(image, folder / identity.name / image.name)
    return load_dataset(folder)


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> ModelSpec:
    model = tmp_path_factory.mktemp("model") / "model.onnx"
    write_pooled_matmul_model(model)
    return ModelSpec("onnx", "japanese-face", path=str(model), options=(("threads", 1),))


@pytest.fixture(scope="module")
def reference(faces, spec) -> EmbeddingSet:
    return extract_embeddings(faces, spec, jobs=1, progress=False)


@pytest.fixture(scope="module")
def worker_environment():
    """Workers import faceval and this test module (for `Slow`) from the checkout."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), *([previous] if previous else [])])
    yield dict(os.environ)
    if previous is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = previous


@pytest.fixture(scope="module")
def local_client(worker_environment):
    with connect("local:2") as client:
        yield client


def synthetic(n_identities: int = 120, per_identity: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    identities = np.repeat(np.arange(n_identities), per_identity)
    vectors = rng.normal(size=(n_identities, 24))[identities] + rng.normal(scale=0.8, size=(identities.size, 24))
    return vectors, identities


def assert_same_table(actual, expected) -> None:
    assert np.array_equal(actual.thresholds, expected.thresholds)
    assert np.array_equal(actual.genuine, expected.genuine)
    assert np.array_equal(actual.impostor, expected.impostor)


def assert_same_outcomes(actual: EmbeddingSet, expected: EmbeddingSet) -> None:
    assert len(actual.results) == len(expected.results)
    for index, (got, want) in enumerate(zip(actual.results, expected.results, strict=True)):
        assert (got.vector is None) == (want.vector is None), index
        assert want.vector is None or np.array_equal(got.vector, want.vector), index
        assert got.failure == want.failure, index


def store_keys(path: Path) -> list[tuple[str, str]]:
    import sqlite3

    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return connection.execute("SELECT image_sha256, fingerprint FROM embeddings").fetchall()


@pytest.mark.parametrize("similarity", list(Similarity))
def test_cluster_counts_equal_the_single_process_counts_bit_for_bit(local_client, similarity):
    vectors, identities = synthetic()
    # Small tasks: many shares and a deep merge tree, tiles cut at their edges.
    feed = DaskPairs(local_client, [(vectors, similarity)], identities, pairs_per_task=20_000)
    assert_same_table(
        feed.accumulate(ScoreCounts, ModelFeed(update_counts)).compute(), score_pairs(vectors, identities, similarity)
    )

    # The scale engine's lattice counts, as the one-process run counts above EXACT_MAX_PAIRS.
    lattice = functools.partial(LatticeCounts, Lattice.for_similarity(similarity))
    assert_same_table(
        feed.accumulate(lattice, ModelFeed(update_counts)).compute(),
        score_pairs(vectors, identities, similarity, exact=False),
    )


@pytest.mark.parametrize(("intervals", "sample"), [("bootstrap", None), ("streaming", None), ("streaming", 4096)])
def test_group_figures_and_kept_pairs_equal_the_single_process_run(local_client, monkeypatch, intervals, sample):
    vectors, identities = synthetic(60, 4)
    labels = np.where(identities < 30, "A", "B")
    if sample is not None:
        # Every state over the sample's size (28,680 pairs, 7,140 in each group): bins placed from a sample of its
        # pairs before the pass, shared by every task; without it, each task holds its impostors until the merge.
        monkeypatch.setattr("faceval.stats.groups.SAMPLE_IMPOSTORS", sample)
    # Streaming: the scale engine's states at scale (lattice counts, per-identity statistics by group), merged.
    options = GroupOptions(
        target_fmr=0.01, n_resamples=30, seed=3, intervals=intervals, exact=None if intervals == "bootstrap" else False
    )
    local = group_report(
        iter_pair_chunks(vectors, identities, "cosine"), labels, identities, "cosine", options, vectors=vectors
    )
    remote = group_report(
        DaskPairs(local_client, [(vectors, "cosine")], identities, pairs_per_task=5_000),
        labels,
        identities,
        "cosine",
        options,
        vectors=vectors,
    )
    assert_same_table(remote.overall.table, local.overall.table)
    for name in ("A", "B"):
        assert_same_table(remote.groups[name].table, local.groups[name].table)
    # The bootstrap reads the kept pairs, the streaming intervals the per-identity statistics: merged in pair order,
    # the intervals are the same to the last bit.
    assert json.dumps(group_report_dict(remote), sort_keys=True) == json.dumps(group_report_dict(local), sort_keys=True)
    assert sorted(remote.influences) == sorted(local.influences) and bool(local.influences) == (
        intervals == "streaming"
    )
    for name, influences in local.influences.items():
        for figure in ("auc", "eer", "tar", "fmr", "fnmr"):
            assert np.array_equal(getattr(remote.influences[name], figure), getattr(influences, figure)), figure


def test_embedding_on_a_local_cluster_fills_the_store_from_the_client(tmp_path, local_client, faces, spec, reference):
    with EmbeddingStore(tmp_path / "store.sqlite") as store:
        remote = extract_embeddings(faces, spec, store=store, progress=False, workers=DaskWorkers(local_client))
    assert_same_outcomes(remote, reference)
    keys = store_keys(tmp_path / "store.sqlite")
    assert len(keys) == len(set(keys)) == faces.n_images


def test_a_worker_that_cannot_read_a_shared_image_names_itself_and_the_file(tmp_path, local_client, spec):
    missing = tmp_path / "not-on-the-workers.png"
    future = local_client.submit(_embed_on_worker, spec, "key", [(missing, True)], pure=False)
    with pytest.raises(SharedPathError) as caught:
        future.result()
    message = DaskWorkers(local_client).explain(caught.value)
    assert str(missing) in message and "tcp://127.0.0.1:" in message and "same path on every worker" in message
    # A file the client could not read either is the image's own failure, recorded, not the cluster's.
    ((outcome, storable),) = local_client.submit(_embed_on_worker, spec, "key", [(missing, False)]).result()
    assert outcome.vector is None and "unreadable" in outcome.failure and not storable


def test_metrics_command_on_a_local_cluster_writes_the_same_figures(tmp_path, worker_environment):
    vectors, identities = synthetic(80, 4)
    embeddings = tmp_path / "emb.npz"
    np.savez(embeddings, labels=identities.astype(str), vectors=vectors, similarity=np.array("cosine"))
    documents = []
    for name, extra in (("here", []), ("cluster", ["--scheduler", "local:2"])):
        result = CliRunner().invoke(
            main, ["metrics", str(embeddings), "--out", str(tmp_path / name), "--resamples", "20", *extra]
        )
        assert result.exit_code == 0, result.output
        document = json.loads((tmp_path / name / "metrics.json").read_text())
        documents.append(document["models"])
    assert documents[0] == documents[1]


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(faceval_distributed, "CONNECT_TIMEOUT_S", 1)
    unreachable = r"cannot reach the Dask scheduler at tcp://127.0.0.1:9.*dask scheduler"
    with pytest.raises(ClusterError, match=unreachable), connect("tcp://127.0.0.1:9"):
        pass
    with pytest.raises(ValueError, match="local:N"), connect("local:zero"):
        pass


class Processes:
    """A `dask scheduler` and `dask worker` processes on 127.0.0.1, each killable on its own."""

    def __init__(self, folder: Path, environment: dict[str, str]) -> None:
        self.folder, self.environment = folder, environment
        self.scheduler_file = folder / "scheduler.json"
        self.scheduler = self._start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard")
        deadline = time.monotonic() + 30
        while not self.scheduler_file.exists():
            assert time.monotonic() < deadline, (folder / "scheduler.log").read_text()
            time.sleep(0.1)
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        # No nanny: a killed worker stays dead, as when its machine goes.
        self.workers = [
            self._start("worker", "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1", "--no-dashboard")
            for _ in range(2)
        ]

    def _start(self, role: str, *arguments: str) -> subprocess.Popen:
        log = open(self.folder / f"{role}.log", "ab")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            [str(DASK), role, *arguments, "--scheduler-file", str(self.scheduler_file)],
            env=self.environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.kill()
            process.wait(10)


@pytest.fixture
def processes(tmp_path, worker_environment):
    cluster = Processes(tmp_path, worker_environment)
    yield cluster
    cluster.stop()


def kill_after(process: subprocess.Popen, condition, timeout: float = 30) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def received(monkeypatch) -> list[int]:
    """Sizes of the batches the client has recorded so far in this test."""
    sizes: list[int] = []
    original = extraction._Run.finish

    def finish(run, batch, outcomes):
        original(run, batch, outcomes)
        sizes.append(len(batch))

    monkeypatch.setattr(extraction._Run, "finish", finish)
    return sizes


def test_a_worker_killed_mid_run_costs_only_its_tasks(tmp_path, processes, faces, spec, reference, received):
    slow = Slow(spec.build(), delay=0.15)
    store_path = tmp_path / "store.sqlite"
    with connect(processes.address) as client, EmbeddingStore(store_path) as store:
        client.wait_for_workers(2, timeout=30)
        killer = kill_after(processes.workers[0], lambda: len(received) >= 4)
        remote = extract_embeddings(faces, slow, store=store, progress=False, workers=DaskWorkers(client))
        killer.join()
        assert processes.workers[0].poll() is not None and len(received) == faces.n_images
        assert_same_outcomes(remote, reference)
        # The pairs are still scored, on the one worker left, with the single-process counts.
        vectors = remote.vectors(range(faces.n_images))
        identities = np.repeat(np.arange(8), 3)
        feed = DaskPairs(client, [(vectors, Similarity.COSINE)], identities, pairs_per_task=10)
        assert_same_table(
            feed.accumulate(ScoreCounts, ModelFeed(update_counts)).compute(), score_pairs(vectors, identities, "cosine")
        )
    keys = store_keys(store_path)
    assert len(keys) == len(set(keys)) == faces.n_images


def test_a_dead_scheduler_is_a_clear_error_and_the_store_stays_consistent(
    tmp_path, processes, faces, spec, reference, received
):
    slow = Slow(spec.build(), delay=0.2)
    store_path = tmp_path / "store.sqlite"
    with connect(processes.address) as client, EmbeddingStore(store_path) as store:
        client.wait_for_workers(2, timeout=30)
        killer = kill_after(processes.scheduler, lambda: len(received) >= 4)
        with pytest.raises(WorkerError, match=f"lost the Dask scheduler at {processes.address}.*kept in the store"):
            extract_embeddings(faces, slow, store=store, progress=False, workers=DaskWorkers(client))
        killer.join()
    kept = store_keys(store_path)
    assert len(kept) == len(set(kept)) == sum(received) and 4 <= len(kept) < faces.n_images
    # The rerun, here, embeds only what the store lacks and ends with the reference outcomes.
    with EmbeddingStore(store_path) as store:
        rerun = extract_embeddings(faces, spec, store=store, jobs=1, progress=False)
    assert rerun.n_cached == len(kept)
    assert_same_outcomes(rerun, reference)


def slow_update(counts: ScoreCounts, chunk, delay: float) -> None:
    time.sleep(delay)
    counts.update(chunk.scores, chunk.genuine)


@pytest.mark.parametrize("intervals", ["bootstrap", "streaming"])
def test_a_two_model_pass_on_the_cluster_gives_the_local_evaluation(local_client, intervals):
    vectors, identities = synthetic(40, 4)
    noisy = vectors + np.random.default_rng(5).normal(scale=1.5, size=vectors.shape)
    records = tuple(ImageRecord(Path(f"{k}.png"), f"id{identity}") for k, identity in enumerate(identities))
    dataset = Dataset(Path("."), "folders", records)
    sets = [
        EmbeddingSet(name, similarity, {}, tuple(EmbeddingResult(vector) for vector in model_vectors))
        for name, model_vectors, similarity in (
            ("sharp", vectors, Similarity.COSINE),
            ("noisy", noisy, Similarity.EUCLIDEAN),
        )
    ]
    labels = np.where(identities < 20, "A", "B").astype(object)
    options = {
        embeddings.model: GroupOptions(target_fmr=0.01, n_resamples=20, intervals=intervals, exact=False)
        for embeddings in sets
    }
    local = evaluate_embeddings(dataset, sets, groups=labels, group_options=options)
    remote = evaluate_embeddings(
        dataset, sets, groups=labels, group_options=options, pair_feed=dask_pairs(local_client)
    )
    # The documents are made at two instants: all but their creation time must agree.
    assert {**Result(remote).to_dict(), "created": None} == {**Result(local).to_dict(), "created": None}
    assert len(local.comparisons) == 1 and local.comparisons[0].interval is not None


def test_a_dead_scheduler_during_scoring_is_a_clear_error(processes):
    vectors, identities = synthetic(40, 5)
    with connect(processes.address) as client:
        client.wait_for_workers(2, timeout=30)
        feed = DaskPairs(client, [(vectors, Similarity.COSINE)], identities, pairs_per_task=500)
        killer = threading.Timer(2.0, processes.scheduler.kill)
        killer.start()
        with pytest.raises(ClusterError, match=f"lost the Dask scheduler at {processes.address}.*cluster is back"):
            # Every chunk takes longer than the scheduler lives (workers that start fast must not finish first).
            feed.accumulate(ScoreCounts, ModelFeed(functools.partial(slow_update, delay=6.0)))
        killer.join()


def test_the_evaluate_api_on_a_local_cluster_gives_the_local_figures(faces, worker_environment):
    import faceval

    common = {"models": ["dlib"], "dlib_detector": "none", "use_cache": False, "progress": False, "resamples": 20}
    here = faceval.evaluate(faces.root, **common)
    there = faceval.evaluate(faces.root, scheduler="local:2", **common)
    assert there.models["dlib"].to_dict() == here.models["dlib"].to_dict()
    assert group_report_dict(there.groups["dlib"]) == group_report_dict(here.groups["dlib"])
