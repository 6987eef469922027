"""Parallel extraction through the store on real faces: order, cache keys, kill -9, Ctrl-C, concurrent runs.

The oracle is an uninterrupted in-process run without a store (``jobs=1``), and the store file itself read
with plain sqlite3.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from faceval.models.dlib_embedder import DlibEmbedder, DlibSettings
from faceval.models.embedders import Embedder, EmbeddingResult, ModelSpec
from faceval.models.extraction import EmbeddingSet, embed_record, extract_embeddings, save_embeddings_npz
from faceval.models.onnx_embedder import load_onnx_embedder
from faceval.models.store import EmbeddingStore
from faceval.pipeline import load_embeddings_file
from faceval.sources.datasets import Dataset, ImageRecord, load_dataset
from faceval.sources.hashing import sha256_file
from faceval.sources.thermal import ThermalGuard

from onnx_fixtures import write_pooled_matmul_model
from shared_data import shared_file

DLIB = ModelSpec("dlib", "dlib")
PER_IDENTITY = 3  # 3 images of each of JAFFE's 10 women: 30 images, ~4 s of dlib on one core


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """30 JAFFE images in identity folders, copied so runs may rename them."""
    source = shared_file("faces/jaffe")
    folder = tmp_path_factory.mktemp("jaffe30")
    for identity in sorted(path for path in source.iterdir() if path.is_dir()):
        (folder / identity.name).mkdir()
        for image in sorted(identity.iterdir())[:PER_IDENTITY]:
            shutil.copy2(image, folder / identity.name / image.name)
    return folder


@pytest.fixture(scope="module")
def reference(faces) -> EmbeddingSet:
    return extract_embeddings(load_dataset(faces), DLIB, jobs=1, progress=False)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return DLIB.build()


class Counting:
    """An embedder that counts the images it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.similarity, self.calls = inner, inner.name, inner.similarity, 0

    def describe(self) -> dict:
        return self.inner.describe()

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def embed(self, image: np.ndarray) -> EmbeddingResult:
        self.calls += 1
        return self.inner.embed(image)

    def embed_batch(self, images):
        return [self.embed(image) for image in images]


def assert_same_outcomes(actual: EmbeddingSet, expected: EmbeddingSet, count: int = 30) -> None:
    assert len(actual.results) == count
    for index, (got, want) in enumerate(zip(actual.results, expected.results[:count], strict=True)):
        assert (got.vector is None) == (want.vector is None), index
        assert want.vector is None or np.array_equal(got.vector, want.vector), index
        assert got.failure == want.failure and got.detection == want.detection, index


def store_rows(path: Path) -> list[tuple]:
    """(image_sha256, fingerprint, created) of every committed row, read without faceval."""
    try:
        with sqlite3.connect(path, timeout=30) as connection:
            return connection.execute("SELECT image_sha256, fingerprint, created FROM embeddings").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def assert_consistent(path: Path, expected_rows: int) -> None:
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        keys = connection.execute("SELECT image_sha256, fingerprint FROM embeddings").fetchall()
    assert len(keys) == len(set(keys)) == expected_rows


def test_reference_finds_every_face(reference):
    # Guards the tests below: they compare vectors, so there must be 30 distinct ones.
    assert reference.n_failed == 0 and len(reference.results) == 30
    vectors = reference.vectors(range(30))
    assert len({row.tobytes() for row in vectors}) == 30


def test_two_workers_give_the_in_process_vectors_in_dataset_order(tmp_path, faces, reference, embedder):
    # A large first image keeps one worker busy while the other finishes many: outcomes arrive out of order.
    large = tmp_path / "large.png"
    with Image.open(sorted((faces / "KA").iterdir())[0]) as image:
        image.resize((1024, 1024)).save(large)
    dataset = load_dataset(faces)
    records = (ImageRecord(large, "KA"), *dataset.records)
    parallel = extract_embeddings(Dataset(dataset.root, dataset.layout, records), DLIB, jobs=2, progress=False)
    assert np.array_equal(parallel.results[0].vector, embed_record(embedder, records[0]).vector)
    assert_same_outcomes(EmbeddingSet("dlib", reference.similarity, {}, parallel.results[1:]), reference)
    assert parallel.model == "dlib" and parallel.description == reference.description


def test_store_hits_follow_content_not_names_and_misses_follow_settings(tmp_path, faces, embedder):
    folder = tmp_path / "set"
    (folder / "KA").mkdir(parents=True)
    images = sorted((faces / "KA").iterdir())
    for image in images:
        shutil.copy2(image, folder / "KA" / image.name)
    shutil.copy2(images[-1], folder / "KA" / "same_photo_again.tiff")  # one content under two names
    noise = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "KA" / "noise.png")  # decodable, no face: a model outcome, stored
    (folder / "KA" / "broken.png").write_bytes(b"not an image")  # unreadable: not the model's outcome
    store_path = tmp_path / "store.sqlite"

    counting = Counting(embedder)
    with EmbeddingStore(store_path) as store:
        first = extract_embeddings(load_dataset(folder), counting, jobs=1, store=store, progress=False)
    assert counting.calls == 4  # 3 faces + noise; the duplicate is reused, the broken file never decodes
    assert first.n_failed == 2 and first.n_cached == 1
    assert len(store_rows(store_path)) == 4

    (folder / "KA" / "KA.AN1.39.tiff").rename(folder / "KA" / "renamed.tiff")
    (folder / "KB").mkdir()
    (folder / "KA" / "noise.png").rename(folder / "KB" / "moved.png")
    counting = Counting(embedder)
    with EmbeddingStore(store_path) as store:
        second = extract_embeddings(load_dataset(folder), counting, jobs=1, store=store, progress=False)
    assert counting.calls == 0 and second.n_cached == 5
    dataset = load_dataset(folder)
    by_name = {record.path.name: result for record, result in zip(dataset.records, second.results, strict=True)}
    assert np.array_equal(by_name["renamed.tiff"].vector, first.results[0].vector)
    assert by_name["moved.png"].failure.startswith("no face found")
    assert by_name["broken.png"].failure.startswith("unreadable:") and "broken.png" in by_name["broken.png"].failure

    counting = Counting(DlibEmbedder(DlibSettings(upsample=0)))
    with EmbeddingStore(store_path) as store:
        changed = extract_embeddings(load_dataset(folder), counting, jobs=1, store=store, progress=False)
    assert counting.calls == 4 and changed.n_cached == 1
    assert len(store_rows(store_path)) == 8


def test_a_replaced_model_file_is_a_miss(tmp_path, faces):
    model = tmp_path / "model.onnx"
    write_pooled_matmul_model(model, seed=0)
    dataset = load_dataset(faces)
    store_path = tmp_path / "store.sqlite"
    with EmbeddingStore(store_path) as store:
        first = load_onnx_embedder(model, "japanese-face")
        before = extract_embeddings(dataset, first, jobs=1, store=store, progress=False)
        write_pooled_matmul_model(model, seed=1)
        later = time.time() + 10  # the user replaces the file later than it was first read
        os.utime(model, (later, later))
        counting = Counting(load_onnx_embedder(model, "japanese-face"))
        after = extract_embeddings(dataset, counting, jobs=1, store=store, progress=False)
    assert counting.calls == 30 and after.n_cached == 0 and len(store_rows(store_path)) == 60
    assert not np.array_equal(before.vectors([0]), after.vectors([0]))


def test_onnx_models_run_in_workers_too(tmp_path, faces):
    model = tmp_path / "model.onnx"
    write_pooled_matmul_model(model)
    spec = ModelSpec("onnx", "japanese-face", path=str(model), options=(("threads", 1),))
    dataset = load_dataset(faces)
    dataset = Dataset(dataset.root, dataset.layout, dataset.records[:8])
    in_process = extract_embeddings(dataset, spec, jobs=1, progress=False)
    assert in_process.n_failed == 0
    assert_same_outcomes(extract_embeddings(dataset, spec, jobs=2, progress=False), in_process, count=8)


RUNNER = textwrap.dedent(
    """
    import os
    import sys
    import time

    from faceval.sources.datasets import load_dataset
    from faceval.models.embedders import ModelSpec
    from faceval.models.extraction import extract_embeddings
    from faceval.models.scoring import Similarity
    from faceval.models.store import EmbeddingStore


    class Reporting(EmbeddingStore):
        def add(self, *args):
            super().add(*args)
            print("added", flush=True)


    class Stuck:  # a model that never finishes an image
        name, similarity = "stuck", Similarity.EUCLIDEAN

        def describe(self):
            return {"name": self.name}

        def fingerprint(self):
            return self.name

        def embed_batch(self, images):
            print("working", flush=True)
            time.sleep(3600)


    if __name__ == "__main__":
        folder, store_path, jobs, commit_every, model = sys.argv[1:]
        store = Reporting(store_path, commit_every=int(commit_every), commit_seconds=3600)
        try:
            result = extract_embeddings(
                load_dataset(folder),
                Stuck() if model == "stuck" else ModelSpec("dlib", "dlib"),
                jobs=int(jobs),
                store=store,
                progress=False,
            )
        except KeyboardInterrupt:
            os._exit(130)  # no store.close(): what is committed now is what extract_embeddings committed
        print("done", result.n_cached, flush=True)
    """
)


def start_runner(
    tmp_path: Path, faces: Path, store: Path, jobs: int, commit_every: int, model: str = "dlib"
) -> subprocess.Popen:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    return subprocess.Popen(
        [sys.executable, str(script), str(faces), str(store), str(jobs), str(commit_every), model],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the test can signal or kill it with its workers
    )


def kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def test_kill_9_loses_nothing_committed_and_the_rerun_embeds_only_the_rest(tmp_path, faces, reference):
    store_path = tmp_path / "store.sqlite"
    runner = start_runner(tmp_path, faces, store_path, jobs=2, commit_every=2)
    try:
        deadline = time.monotonic() + 120
        while len(store_rows(store_path)) < 6:
            assert runner.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.05)
    finally:
        kill_group(runner)  # parent and workers at once, like a power cut
        runner.wait(timeout=30)
        runner.stdout.close()
    killed_at = time.time()
    kept = len(store_rows(store_path))
    assert 6 <= kept < 30
    assert_consistent(store_path, kept)

    with EmbeddingStore(store_path) as store:
        resumed = extract_embeddings(load_dataset(faces), DLIB, jobs=2, store=store, progress=False)
    assert resumed.n_cached == kept
    assert_same_outcomes(resumed, reference)
    assert_consistent(store_path, 30)
    assert sum(created > killed_at for _, _, created in store_rows(store_path)) == 30 - kept


def test_ctrl_c_commits_what_was_received_and_stops_the_workers(tmp_path, faces, reference, embedder):
    store_path = tmp_path / "store.sqlite"
    # Nothing is committed on the way (huge batches): only the interrupt handling can put rows in the store.
    runner = start_runner(tmp_path, faces, store_path, jobs=2, commit_every=10**6)
    try:
        received = 0
        while received < 4:
            line = runner.stdout.readline()
            assert line, "the run ended before it could be interrupted"
            received += line.strip() == "added"
        workers = psutil.Process(runner.pid).children(recursive=True)
        assert len(workers) >= 2
        interrupted_at = time.monotonic()
        os.killpg(runner.pid, signal.SIGINT)  # Ctrl-C in a terminal signals the whole foreground group
        received += runner.stdout.read().count("added")
        assert runner.wait(timeout=60) == 130
        assert time.monotonic() - interrupted_at < 15
        _, alive = psutil.wait_procs(workers, timeout=15)
        assert [process for process in alive if process.status() != psutil.STATUS_ZOMBIE] == []
    finally:
        kill_group(runner)
        runner.stdout.close()
    assert received < 30
    assert_consistent(store_path, received)
    with EmbeddingStore(store_path) as store:
        stored = [store.get(sha256_file(record.path), embedder.fingerprint()) for record in load_dataset(faces).records]
    assert sum(result is not None for result in stored) == received
    for result, expected in zip(stored, reference.results, strict=True):
        assert result is None or np.array_equal(result.vector, expected.vector)


def test_ctrl_c_does_not_wait_for_images_in_progress(tmp_path, faces):
    runner = start_runner(tmp_path, faces, tmp_path / "store.sqlite", jobs=2, commit_every=1, model="stuck")
    try:
        # Both workers print into one pipe, so their lines may interleave: count the words, not the lines.
        seen = ""
        while seen.count("working") < 2:
            line = runner.stdout.readline()
            assert line, "a worker stopped before starting its image"
            seen += line
        workers = psutil.Process(runner.pid).children(recursive=True)
        os.killpg(runner.pid, signal.SIGINT)
        assert runner.wait(timeout=30) == 130  # not the hour the images would take
        _, alive = psutil.wait_procs(workers, timeout=15)
        assert [process for process in alive if process.status() != psutil.STATUS_ZOMBIE] == []
    finally:
        kill_group(runner)
        runner.stdout.close()


def test_two_runs_on_one_store_at_once(tmp_path, faces, reference):
    store_path = tmp_path / "store.sqlite"
    runners = [start_runner(tmp_path, faces, store_path, jobs=1, commit_every=1) for _ in range(2)]
    try:
        outputs = [runner.communicate(timeout=180)[0] for runner in runners]
    finally:
        for runner in runners:
            kill_group(runner)
    assert [runner.returncode for runner in runners] == [0, 0]
    assert all(output.splitlines()[-1].startswith("done") for output in outputs)
    assert_consistent(store_path, 30)
    with EmbeddingStore(store_path) as store:
        assert_same_outcomes(extract_embeddings(load_dataset(faces), DLIB, jobs=1, store=store), reference)


def test_thermal_pause_holds_new_work_back(faces, reference, embedder, capsys):
    dataset = load_dataset(faces)
    dataset = Dataset(dataset.root, dataset.layout, dataset.records[:6])
    counting = Counting(embedder)
    readings = iter([60, 60, 90, 84, 78, 76])  # hot before the third image, cool again at 77 = 80 - 3

    calls_while_sleeping = []
    guard = ThermalGuard(
        80,
        hysteresis=3,
        poll_seconds=0,
        read_temperature=lambda: next(readings, 60),
        sleep=lambda seconds: calls_while_sleeping.append(counting.calls),
    )
    result = extract_embeddings(dataset, counting, jobs=1, max_temp=guard)
    assert calls_while_sleeping == [2, 2, 2]
    assert counting.calls == 6
    assert_same_outcomes(result, reference, count=6)
    assert "paused: CPU 90 °C > 80 °C" in capsys.readouterr().err


def test_thermal_pause_with_workers(faces, reference):
    dataset = load_dataset(faces)
    readings = iter([60, 95, 70])
    sleeps = []
    guard = ThermalGuard(80, poll_seconds=0, read_temperature=lambda: next(readings, 60), sleep=sleeps.append)
    dataset = Dataset(dataset.root, dataset.layout, dataset.records[:6])
    result = extract_embeddings(dataset, DLIB, jobs=2, max_temp=guard, progress=False)
    assert len(sleeps) == 1
    assert_same_outcomes(result, reference, count=6)


def test_embed_record_and_the_npz_file(tmp_path, faces, reference, embedder):
    dataset = load_dataset(faces)
    assert np.array_equal(embed_record(embedder, dataset.records[4]).vector, reference.results[4].vector)
    failed = EmbeddingResult(None, None, failure="no face found")
    results = (*reference.results[:3], failed, *reference.results[4:])
    embedding_set = EmbeddingSet(reference.model, reference.similarity, reference.description, results)
    path = tmp_path / "out" / "emb.npz"
    path.parent.mkdir()
    path.write_bytes(b"an older file")
    assert save_embeddings_npz(path, dataset, embedding_set) == path
    labels, vectors, _ = load_embeddings_file(path)
    kept = [index for index in range(30) if index != 3]
    assert labels.tolist() == [dataset.records[index].identity for index in kept]
    assert np.array_equal(vectors, reference.vectors(kept))
    with np.load(path) as archive:
        assert archive["paths"].tolist() == [dataset.relative_path(dataset.records[index]) for index in kept]
        assert archive["failed_paths"].tolist() == [dataset.relative_path(dataset.records[3])]
        assert archive["failed_reasons"].tolist() == ["no face found"]
        assert (str(archive["model"]), str(archive["similarity"])) == ("dlib", "euclidean")
    assert sorted(p.name for p in path.parent.iterdir()) == ["emb.npz"]  # no temporary file left behind
    with pytest.raises(ValueError):
        save_embeddings_npz(path, Dataset(dataset.root, dataset.layout, dataset.records[:5]), embedding_set)


def test_an_embedder_that_cannot_reach_workers(faces, embedder):
    unpicklable = Counting(embedder)
    unpicklable.hook = lambda: None
    dataset = load_dataset(faces)
    with pytest.raises(TypeError, match="ModelSpec"):
        extract_embeddings(dataset, unpicklable, jobs=2)
    assert unpicklable.calls == 0
    few = Dataset(dataset.root, dataset.layout, dataset.records[:2])
    assert extract_embeddings(few, unpicklable, progress=False).n_failed == 0  # the default runs it here
    assert unpicklable.calls == 2


ENVIRONMENT_RUNNER = textwrap.dedent(
    """
    import multiprocessing.forkserver, os, sys
    import numpy as np
    from faceval.sources.datasets import load_dataset
    from faceval.models.embedders import EmbeddingResult
    from faceval.models.extraction import extract_embeddings
    from faceval.models.scoring import Similarity


    class Marked:
        \"\"\"Embeds every image as the number in $FACEVAL_TEST_MARK when it was built: rebuilt as a worker
        unpickles it, as embedders find their model files.\"\"\"

        name, similarity = "marked", Similarity.EUCLIDEAN

        def __init__(self):
            self.mark = float(os.environ["FACEVAL_TEST_MARK"])

        def __reduce__(self):
            return Marked, ()

        def describe(self):
            return {"name": self.name}

        def fingerprint(self):
            return self.name

        def embed_batch(self, images):
            return [EmbeddingResult(np.array([self.mark, float(os.environ["FACEVAL_TEST_MARK"])])) for _ in images]


    if __name__ == "__main__":
        os.environ["FACEVAL_TEST_MARK"] = "1"
        multiprocessing.forkserver.ensure_running()  # as an earlier run in this process (a notebook, a test) left it
        os.environ["FACEVAL_TEST_MARK"] = "2"  # e.g. FACEVAL_MODELS_DIR set after that run
        result = extract_embeddings(load_dataset(sys.argv[1]), Marked(), jobs=2, progress=False)
        print(sorted({tuple(outcome.vector.tolist()) for outcome in result.results}))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the fork server is POSIX only")
def test_workers_see_the_environment_of_now_not_the_fork_servers(tmp_path):
    """The fork server keeps the environment it started with; workers must see the parent's at the time of the
    run, as model files are found through it ($FACEVAL_MODELS_DIR)."""
    for identity in ("a", "b"):
        (tmp_path / "faces" / identity).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (8, 8), (40 * k, 0, 0)).save(tmp_path / "faces" / identity / f"{k}.png")
    script = tmp_path / "environment_runner.py"
    script.write_text(ENVIRONMENT_RUNNER)
    output = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "faces")], capture_output=True, text=True, timeout=120
    )
    assert output.returncode == 0, output.stderr
    assert output.stdout.strip() == "[(2.0, 2.0)]"  # as built (unpickled) and as embedding
