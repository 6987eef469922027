"""Fault injection: full disks, kill -9, SIGTERM and SIGHUP, two runs into one --out, a damaged store, a model that
raises, a figure that fails.

Faults that a user meets run ``faceval`` as a user does (a subprocess in its own process group) on 24 real faces
(JAFFE, 3 of each of 8 women), with dlib where a run must last long enough to be hit mid-way and a tiny ONNX model
(tests/onnx_fixtures.py) elsewhere. The oracle is always an uninterrupted run; the store file is read with plain
sqlite3. No fault may print a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import psutil
import pytest
from click.testing import CliRunner
from PIL import Image

from faceval import cli, pipeline
from faceval.atomic import output_folder, write_json
from faceval.models.embedders import ModelSpec
from faceval.models.extraction import EmbeddingSet, extract_embeddings
from faceval.models.scoring import Similarity
from faceval.models.store import EmbeddingStore, set_aside_if_damaged
from faceval.output import plots
from faceval.sources.datasets import load_dataset
from faceval.sources.hashing import sha256_file
from faceval.sources.images import load_rgb

from onnx_fixtures import write_pooled_matmul_model
from shared_data import shared_file

IDENTITIES, PER_IDENTITY = 8, 3
DLIB = ModelSpec("dlib", "dlib")


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """24 JAFFE faces in identity folders."""
    source = shared_file("faces/jaffe")
    folder = tmp_path_factory.mktemp("faces")
    for identity in sorted(path for path in source.iterdir() if path.is_dir())[:IDENTITIES]:
        (folder / identity.name).mkdir()
        for image in sorted(identity.iterdir())[:PER_IDENTITY]:
            shutil.copy2(image, folder / identity.name / image.name)
    return folder


@pytest.fixture(scope="module")
def half_of_the_faces(tmp_path_factory, faces) -> Path:
    """The first half of the identities of `faces`, the same files."""
    folder = tmp_path_factory.mktemp("half")
    for identity in sorted(faces.iterdir())[: IDENTITIES // 2]:
        shutil.copytree(identity, folder / identity.name)
    return folder


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    write_pooled_matmul_model(path)
    return path


@pytest.fixture(scope="module")
def onnx_args(onnx_model) -> list[str]:
    return ["--model", f"japanese-face:{onnx_model}", "--jobs", "1", "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def matplotlib_cache(tmp_path_factory):
    """One font cache for every run (built by the first): a run under a file-size limit must not build it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPLCONFIGDIR", str(tmp_path_factory.mktemp("matplotlib")))
        subprocess.run([sys.executable, "-c", "import faceval.output.plots"], check=True)
        yield


def faceval_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "faceval", *map(str, args)]


def start(*args: object, file_size_limit: int | None = None) -> subprocess.Popen:
    """``faceval ARGS`` in its own process group (the test can signal it with its workers), output captured."""

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.Popen(
        faceval_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=limit_file_size if file_size_limit else None,
    )


def finish(process: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    """Wait for a run; its exit status, stdout and stderr. Fails on any traceback."""
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert "Traceback" not in out + err, err
    return process.returncode, out, err


def run(*args: object, file_size_limit: int | None = None) -> tuple[int, str, str]:
    return finish(start(*args, file_size_limit=file_size_limit))


def wait_until(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 120) -> bool:
    """Poll ``condition`` until it holds (True) or the process has ended (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the run neither got there nor ended"
        time.sleep(0.02)
    return True


def has_open(process: subprocess.Popen, path: Path) -> Callable[[], bool]:
    """True once the run has ``path`` open (its store: embedding is about to start)."""

    def opened() -> bool:
        with contextlib.suppress(psutil.Error):
            return any(Path(file.path) == path for file in psutil.Process(process.pid).open_files())
        return False

    return opened


def workers_started(process: subprocess.Popen) -> Callable[[], bool]:
    """True once the run has its fork server and two workers: embedding is under way."""

    def started() -> bool:
        with contextlib.suppress(psutil.Error):
            return len(psutil.Process(process.pid).children(recursive=True)) >= 3
        return False

    return started


def stored_vectors(path: Path) -> dict[str, np.ndarray | None]:
    """Every committed row (one model), image sha256 -> vector (None for a failure), read without faceval."""
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = connection.execute("SELECT image_sha256, fingerprint, dim, vector FROM embeddings").fetchall()
    assert len({fingerprint for _, fingerprint, _, _ in rows}) <= 1
    keys = [sha for sha, *_ in rows]
    assert len(keys) == len(set(keys)), "an image stored twice"
    return {sha: None if vector is None else np.frombuffer(vector, "<f8", dim) for sha, _, dim, vector in rows}


def assert_store_holds_reference(path: Path, reference: dict[str, np.ndarray], count: int | None = None) -> int:
    """Every stored vector equals the uninterrupted run's, exactly; returns how many there are."""
    stored = stored_vectors(path)
    assert set(stored) <= set(reference)
    for sha, vector in stored.items():
        assert vector is not None and np.array_equal(vector, reference[sha]), sha
    if count is not None:
        assert len(stored) == count
    return len(stored)


@pytest.fixture(scope="module")
def dlib_reference(faces) -> dict[str, np.ndarray]:
    """dlib's vectors of `faces` from an uninterrupted in-process run, by image sha256."""
    dataset = load_dataset(faces)
    result = extract_embeddings(dataset, DLIB, jobs=1, progress=False)
    assert result.n_failed == 0
    return {sha256_file(record.path): result.vectors([index])[0] for index, record in enumerate(dataset.records)}


def embed_like_the_cli(folder: Path, onnx_model: Path, store: Path | None = None) -> EmbeddingSet:
    """What ``faceval embed FOLDER --model japanese-face:MODEL --jobs 1 [--cache STORE]`` computes, in-process."""
    specs = pipeline.model_specs([f"japanese-face:{onnx_model}"], jobs=1)
    options = pipeline.EmbeddingOptions(store, use_cache=store is not None, jobs=1, progress=False)
    (embeddings,) = pipeline.embed_dataset(pipeline.load_sources([folder]), specs, options)
    return embeddings


@pytest.fixture(scope="module")
def onnx_reference(faces, onnx_model) -> dict[str, np.ndarray]:
    """The tiny model's vectors of `faces` from an uninterrupted run without a store, by image sha256."""
    dataset = load_dataset(faces)
    result = embed_like_the_cli(faces, onnx_model)
    assert result.n_failed == 0
    return {sha256_file(record.path): result.vectors([index])[0] for index, record in enumerate(dataset.records)}


# --- item 6 of issue 8: result files ----------------------------------------------------------------------------


def test_result_files_get_the_mode_a_plain_write_gives(tmp_path):
    previous = os.umask(0o022)
    try:
        write_json(tmp_path / "shared.json", {})
        plots.plot_roc([plots.Curve("a", np.array([0.0, 1.0]), np.array([0.0, 1.0]))], tmp_path / "roc.png")
        os.umask(0o027)
        write_json(tmp_path / "group.json", {})
        (tmp_path / "private.json").touch(mode=0o600)
        write_json(tmp_path / "private.json", {})
    finally:
        os.umask(previous)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in tmp_path.iterdir()}
    assert modes == {"shared.json": 0o644, "roc.png": 0o644, "group.json": 0o640, "private.json": 0o600}


def test_metrics_json_survives_a_failing_figure(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6).astype(str), 4)
    vectors = rng.standard_normal((24, 8)) + 3 * rng.standard_normal((6, 8)).repeat(4, axis=0)
    np.savez(tmp_path / "emb.npz", labels=labels, vectors=vectors)

    def failing_figure(*args, **kwargs):
        raise RuntimeError("a plotting bug")

    monkeypatch.setattr(plots, "plot_det", failing_figure)
    with pytest.raises(RuntimeError, match="a plotting bug"):
        pipeline.metrics_from_embeddings_file(tmp_path / "emb.npz", "euclidean", tmp_path / "out")
    document = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert 0.5 < document["models"]["emb"]["auc"] <= 1.0
    assert (tmp_path / "out" / "models.csv").exists()


# --- item 5 of issue 8: a model that raises on one image -------------------------------------------------------


class RaisesOnOddImages:
    """The tiny ONNX model, except that a very small image goes through OpenCV wrongly and a non-square one reaches
    ONNX Runtime unresized: real exceptions of real libraries, on particular images."""

    name, similarity = "odd-images", Similarity.COSINE

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path
        self.inner = ModelSpec("onnx", "japanese-face", path=str(model_path), options=(("threads", 1),)).build()

    def __getstate__(self) -> dict:
        return {"model_path": self.model_path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model_path"])

    def describe(self) -> dict:
        return {"name": self.name}

    def fingerprint(self) -> str:
        return self.name

    def embed_batch(self, images):
        for image in images:
            if image.shape[0] < 32:
                cv2.resize(image, (0, 0))  # no size and no factors: OpenCV's assertion fails
            elif image.shape[0] != image.shape[1]:
                session = onnxruntime.InferenceSession(str(self.model_path), providers=["CPUExecutionProvider"])
                session.run(None, {"input": image[None].astype(np.float32)})  # NHWC, not 224 x 224: rejected
        return self.inner.embed_batch(images)


@pytest.mark.parametrize(("jobs", "batch_size"), [(1, 1), (1, 4), (2, 3)])
def test_an_exception_from_a_model_is_that_images_failure(tmp_path, faces, onnx_model, jobs, batch_size):
    folder = tmp_path / "faces"
    for identity in sorted(faces.iterdir())[:3]:
        shutil.copytree(identity, folder / identity.name)
    first = sorted((folder / "KA").iterdir())[0]
    with Image.open(first) as image:
        image.convert("RGB").resize((20, 20)).save(folder / "KA" / "KA.tiny.png")
        image.convert("RGB").crop((0, 0, 256, 128)).save(folder / "KL" / "KL.wide.png")
    dataset = load_dataset(folder)
    embedder = RaisesOnOddImages(onnx_model)
    with EmbeddingStore(tmp_path / "store.sqlite") as store:
        result = extract_embeddings(dataset, embedder, jobs=jobs, batch_size=batch_size, store=store, progress=False)
        stored = store.count()
    failures = {record.path.name: r.failure for record, r in zip(dataset.records, result.results, strict=True)}
    assert failures.pop("KA.tiny.png").startswith("model error: cv2.error: OpenCV")
    assert failures.pop("KL.wide.png").startswith(
        "model error: onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument: [ONNXRuntimeError]"
    )
    assert set(failures.values()) == {None}
    # Every other image has exactly the model's own vector; the failures are not cached (the next run retries).
    for record, outcome in zip(dataset.records, result.results, strict=True):
        if outcome.ok:
            (expected,) = embedder.inner.embed_batch([load_rgb(record.path)])
            assert np.array_equal(outcome.vector, expected.vector)
    assert stored == len(dataset.records) - 2


# --- the command line: the user's mistakes in one line, faceval's bugs with a traceback -------------------------


def test_user_mistakes_are_one_line_and_faceval_bugs_show_a_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.npz").write_bytes(b"not a zip file")
    mistake = CliRunner().invoke(cli.main, ["metrics", str(tmp_path / "broken.npz"), "--out", str(tmp_path / "o")])
    assert mistake.exit_code == 1
    assert mistake.output.startswith(f"Error: {tmp_path / 'broken.npz'}: not a readable .npz file")
    assert "Traceback" not in mistake.output and mistake.output.count("\n") == 1

    np.savez(tmp_path / "emb.npz", labels=np.array(["a", "a", "b", "b"]), vectors=np.eye(4))

    def internal_bug(*args, **kwargs):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    monkeypatch.setattr(pipeline, "evaluate_vectors", internal_bug)
    bug = CliRunner().invoke(cli.main, ["metrics", str(tmp_path / "emb.npz"), "--metric", "euclidean", "--out", "o"])
    assert bug.exit_code == 70
    assert "Traceback (most recent call last)" in bug.output and "in internal_bug" in bug.output
    assert "this is a bug in faceval" in bug.output and "please report it" in bug.output

    def anonymous_os_error(*args, **kwargs):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(pipeline, "evaluate_vectors", anonymous_os_error)
    bug = CliRunner().invoke(cli.main, ["metrics", str(tmp_path / "emb.npz"), "--metric", "euclidean", "--out", "o"])
    assert bug.exit_code == 70 and "this is a bug in faceval" in bug.output


def test_contradicting_options_found_while_running_are_one_line_not_a_bug(tmp_path):
    (tmp_path / "faces").mkdir()
    for command in ("embed", "evaluate"):
        result = CliRunner().invoke(
            cli.main, [command, str(tmp_path / "faces"), "--rebuild-cache", "--no-cache", "--out", str(tmp_path / "o")]
        )
        assert result.exit_code == 1, result.output
        assert "contradict each other" in result.output and "Traceback" not in result.output


# --- full disks ---------------------------------------------------------------------------------------------------


PAGE = 4096
# Run a command with $2 a private tmpfs of $1 bytes (a mount namespace of its own) that starts as a copy of the
# folder $3 and is copied back into it afterwards; exit 99 where no tmpfs can be mounted.
SMALL_DISK = """
size=$1 disk=$2 copy=$3; shift 3
mount -t tmpfs -o size="$size" faceval-test "$disk" || exit 99
cp -a "$copy"/. "$disk"/
"$@"; status=$?
cp -a "$disk"/. "$copy"/
exit $status
"""


def run_on_a_full_disk(disk: str, size: int, tmp_path: Path, *args: object) -> tuple[Path, tuple[int, str, str]]:
    """``faceval ARGS`` where the folder it gets (the return value) is on a disk that fills after ``size`` bytes:
    a real small filesystem (ENOSPC), or a file-size limit (EFBIG) of ``size`` on the run.

    ``args`` name the folder ``{disk}``; it starts as, and ends copied into, ``tmp_path / "disk"``.
    """
    folder = tmp_path / "disk"
    folder.mkdir(exist_ok=True)
    if disk == "file-size limit":
        return folder, run(*(str(arg).format(disk=folder) for arg in args), file_size_limit=size)
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("no private mount namespace here to make a small filesystem in")
    mount_point = tmp_path / "mounted"
    mount_point.mkdir()
    arguments = [str(arg).format(disk=mount_point) for arg in args]
    on_a_small_disk = ["unshare", "-rm", "sh", "-c", SMALL_DISK, "sh", str(size), str(mount_point), str(folder)]
    runner = subprocess.Popen(
        [*on_a_small_disk, *faceval_command(*arguments)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    status, out, err = finish(runner)
    assert status != 99, err
    return mount_point, (status, out, err)


DISKS = ["file-size limit", "full filesystem"]


@pytest.mark.parametrize("disk", DISKS)
def test_a_full_disk_under_the_store_keeps_every_committed_vector(tmp_path, faces, half_of_the_faces, onnx_model,
                                                                  onnx_args, onnx_reference, disk):  # fmt: skip
    copy = tmp_path / "disk" / "store.sqlite"
    embed_like_the_cli(half_of_the_faces, onnx_model, copy.parent.mkdir() or copy)
    assert_store_holds_reference(copy, onnx_reference, count=12)
    # The second half's commit needs ~60 kB of write-ahead log: a 40 kB file-size limit refuses it (EFBIG), and
    # so does a filesystem with room for the store, its 32 kB shared-memory index and 12 kB more (ENOSPC).
    size = 40_000 if disk == "file-size limit" else copy.stat().st_size + 11 * PAGE
    folder, (status, _, err) = run_on_a_full_disk(disk, size, tmp_path, "embed", faces, *onnx_args, "--cache",
                                                  "{disk}/store.sqlite")  # fmt: skip
    assert status == 1 and err.count("\n") == 1
    reason = "disk I/O error" if disk == "file-size limit" else "database or disk is full"
    assert err.startswith(f"Error: {folder}/store.sqlite: cannot store 12 more embeddings: the disk refused the write "
                          f"({reason}; ")  # fmt: skip
    assert "MB free on its disk" in err and "every embedding stored before is kept" in err
    assert_store_holds_reference(copy, onnx_reference, count=12)
    status, out, _ = run("embed", faces, *onnx_args, "--cache", copy)
    assert status == 0 and "12 processed now, 12 from the store" in out
    assert_store_holds_reference(copy, onnx_reference, count=24)


@pytest.fixture(scope="module")
def evaluate_arguments(faces, onnx_args) -> tuple:
    return ("evaluate", faces, *onnx_args, "--no-cache", "--resamples", "20")


@pytest.fixture(scope="module")
def reference_results(tmp_path_factory, evaluate_arguments) -> Path:
    """The output folder of an uninterrupted ``faceval evaluate`` with `evaluate_arguments`."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert run(*evaluate_arguments, "--out", out)[0] == 0
    return out


@pytest.mark.parametrize("disk", DISKS)
def test_a_full_disk_under_out_names_the_file_and_keeps_whole_files(tmp_path, evaluate_arguments, reference_results,
                                                                    disk):  # fmt: skip
    reference = {path.relative_to(reference_results): path for path in reference_results.rglob("*.*")}
    sizes = {name: path.stat().st_size for name, path in reference.items()}
    if disk == "file-size limit":  # every table fits, and so does metrics.json listing its files; a figure does not
        size = max(size for name, size in sizes.items() if name.suffix in (".json", ".csv")) + 2_000
        assert max(size for name, size in sizes.items() if name.suffix == ".png") > size
    else:  # room for the lock file, metrics.json and the two tables written next, and a page more
        first = [Path("metrics.json"), Path("models.csv"), Path("images.csv")]
        size = sum(-(-sizes[name] // PAGE) * PAGE for name in first) + 2 * PAGE
        assert sum(sizes.values()) > size

    folder, (status, _, err) = run_on_a_full_disk(disk, size, tmp_path, *evaluate_arguments, "--out", "{disk}/out")
    assert status == 1 and err.count("\n") == 1
    reason = "File too large" if disk == "file-size limit" else "No space left on device; 0.0 MB free there"
    assert err.startswith(f"Error: {folder}/out/") and f": cannot be written ({reason})" in err
    out = tmp_path / "disk" / "out"
    written = {path.relative_to(out): path for path in out.rglob("*") if path.is_file()}
    assert not [name for name in written if name.name.startswith(".")], "a temporary or lock file was left"
    metrics = json.loads(written.pop(Path("metrics.json")).read_text())
    expected = json.loads((reference_results / "metrics.json").read_text())
    assert metrics["models"]["japanese-face"]["auc"] == expected["models"]["japanese-face"]["auc"]
    assert Path("images.csv") in written and Path("models.csv") in written
    for name, path in written.items():  # every file there is whole: the same bytes as the uninterrupted run's
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
        else:
            assert path.read_bytes() == reference[name].read_bytes(), name


# --- kill -9, SIGTERM, SIGHUP -----------------------------------------------------------------------------------


def test_kill_9_at_ten_random_instants_then_the_run_completes(tmp_path, faces, dlib_reference):
    store, vectors = tmp_path / "store.sqlite", tmp_path / "dlib.npz"
    arguments = ("embed", faces, "--model", "dlib", "--jobs", "1", "--cache", store, "--quiet")
    instants = random.Random(14).sample(range(0, 2000, 50), 10)  # ms after the run opens its store
    kept = []
    for instant in instants:
        runner = start(*arguments)
        if wait_until(has_open(runner, store), runner):
            time.sleep(instant / 1000)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGKILL)  # the run and its workers at once, like a power cut
        finish(runner)
        kept.append(assert_store_holds_reference(store, dlib_reference))
    assert any(0 < count < IDENTITIES * PER_IDENTITY for count in kept), "no kill came in the middle of the work"
    assert run(*arguments, "--out", vectors)[0] == 0
    assert_store_holds_reference(store, dlib_reference, count=IDENTITIES * PER_IDENTITY)
    with np.load(vectors) as archive:
        for path, vector in zip(archive["paths"], archive["vectors"], strict=True):
            assert np.array_equal(vector, dlib_reference[sha256_file(faces / path)])


@pytest.mark.parametrize(
    ("signal_number", "whole_group"),
    [
        (signal.SIGTERM, False),  # docker stop: the main process only
        (signal.SIGTERM, True),  # a batch scheduler: every process of the job
        (signal.SIGHUP, True),  # a closed terminal: its foreground process group
    ],
)
def test_sigterm_and_sighup_commit_what_was_received_and_say_so(tmp_path, faces, dlib_reference, signal_number,
                                                                 whole_group):  # fmt: skip
    store = tmp_path / "store.sqlite"
    runner = start("embed", faces, "--model", "dlib", "--jobs", "2", "--cache", store, "--quiet")
    assert wait_until(workers_started(runner), runner)
    workers = psutil.Process(runner.pid).children(recursive=True)
    time.sleep(random.Random(signal_number * 2 + whole_group).uniform(0.0, 1.5))
    (os.killpg if whole_group else os.kill)(runner.pid, signal_number)
    status, _, err = finish(runner, timeout=60)
    name = signal.Signals(signal_number).name
    assert status == 128 + signal_number
    assert f"terminated by {name}: every image embedded so far is kept in the embedding store" in err
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert [process for process in alive if process.status() != psutil.STATUS_ZOMBIE] == []
    assert assert_store_holds_reference(store, dlib_reference) < IDENTITIES * PER_IDENTITY


# --- two runs into one --out ------------------------------------------------------------------------------------


def test_a_second_run_into_the_same_out_is_refused_and_a_dead_run_leaves_no_lock(tmp_path, evaluate_arguments):
    out = tmp_path / "out"
    arguments = (*evaluate_arguments, "--out", out)
    lock = out / ".faceval.lock"

    def holds_the_folder() -> bool:
        return lock.exists() and lock.read_text().startswith("pid")

    first = start(*arguments)
    assert wait_until(holds_the_folder, first)
    os.killpg(first.pid, signal.SIGSTOP)  # the first run stays in the middle of its work
    try:
        status, _, err = run(*arguments)
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    assert status == 1 and err.count("\n") == 1
    assert err.startswith(f"Error: {out}: another faceval run (pid {first.pid}, started ")
    assert "choose another --out" in err
    assert finish(first)[0] == 0
    assert json.loads((out / "metrics.json").read_text())["models"]["japanese-face"]["auc"] > 0.5
    assert not lock.exists()

    killed = start(*arguments)
    assert wait_until(holds_the_folder, killed)
    os.killpg(killed.pid, signal.SIGKILL)
    finish(killed)
    assert lock.exists()  # left behind by the dead run, but not locked any more: the next run may write here
    with output_folder(out):
        assert lock.read_text().startswith(f"pid {os.getpid()}, started ")
    assert not lock.exists()


# --- a damaged store --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["header", "row payload"])
def test_a_damaged_store_is_explained_and_rebuilt_on_request(tmp_path, faces, onnx_model, onnx_args, onnx_reference,
                                                             damage):  # fmt: skip
    store = tmp_path / "store.sqlite"
    embed_like_the_cli(faces, onnx_model, store)
    with open(store, "r+b") as handle:  # as a crashed disk might leave it
        handle.seek(0 if damage == "header" else 4096 * 3)
        handle.write(random.Random(0).randbytes(4096))
    damaged = store.read_bytes()
    status, _, err = run("embed", faces, *onnx_args, "--cache", store)
    assert status == 1 and err.count("\n") == 1
    assert err.startswith(f"Error: {store}: ") and "the file is damaged" in err and "--rebuild-cache" in err

    status, out, err = run("embed", faces, *onnx_args, "--cache", store, "--rebuild-cache")
    assert status == 0
    (aside,) = tmp_path.glob("store.sqlite.damaged-*")
    assert f"embedding store {store} was damaged (" in err and f"moved to {aside}" in err
    assert aside.read_bytes() == damaged
    assert "24 processed now, 0 from the store" in out
    assert_store_holds_reference(store, onnx_reference, count=24)

    assert set_aside_if_damaged(store) is None  # sound now: left where it is
    assert len(list(tmp_path.glob("store.sqlite.damaged-*"))) == 1
