"""The SQLite embedding store: round trips, keys, batched commits, crashes, concurrent writers, bad files."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from faceval.models.embedders import Detection, EmbeddingResult
from faceval.models.store import SCHEMA_VERSION, EmbeddingStore, StoreError, default_store_path

FACE = EmbeddingResult(
    np.array([0.1, -2.5, 1e-300, np.pi]),
    Detection((1, 2, 30, 40), 2, ((1.5, 2.5), (3.0, 4.0)), 0.75),
    timings={"detect": 0.01, "embed": 0.02},
)
NO_FACE = EmbeddingResult(None, Detection(None, 0), failure="no face found", timings={"detect": 0.01})


def rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT image_sha256, fingerprint FROM embeddings ORDER BY 1, 2").fetchall()


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def test_outcomes_round_trip_exactly(tmp_path):
    with EmbeddingStore(tmp_path / "s.sqlite") as store:
        store.add("a" * 64, "fp", FACE)
        store.add("b" * 64, "fp", NO_FACE)
    with EmbeddingStore(tmp_path / "s.sqlite") as store:
        face, no_face = store.get("a" * 64, "fp"), store.get("b" * 64, "fp")
    assert face is not None and no_face is not None
    assert face.vector.dtype == np.float64 and np.array_equal(face.vector, FACE.vector)
    assert face.detection == FACE.detection and face.timings == FACE.timings and face.failure is None
    assert no_face.vector is None and no_face.failure == "no face found" and no_face.detection == Detection(None, 0)


def test_key_is_content_and_fingerprint(tmp_path):
    with EmbeddingStore(tmp_path / "s.sqlite") as store:
        store.add("a" * 64, "fp1", FACE)
        store.flush()
        assert store.get("a" * 64, "fp2") is None
        assert store.get("c" * 64, "fp1") is None
        assert store.get("a" * 64, "fp1") is not None
        assert (store.count(), store.count("fp1"), store.count("fp2")) == (1, 1, 0)


def test_the_first_outcome_stored_is_kept(tmp_path):
    other = EmbeddingResult(np.zeros(4), None)
    with EmbeddingStore(tmp_path / "s.sqlite") as store:
        store.add("a" * 64, "fp", FACE)
        store.flush()
        store.add("a" * 64, "fp", other)
        store.add("a" * 64, "fp", other)
        store.flush()
        assert store.count() == 1
        assert np.array_equal(store.get("a" * 64, "fp").vector, FACE.vector)


def test_commits_come_in_batches_and_on_close(tmp_path):
    path = tmp_path / "s.sqlite"
    store = EmbeddingStore(path, commit_every=3, commit_seconds=3600)
    for index in range(7):
        store.add(f"{index:064d}", "fp", FACE)
    assert len(rows(path)) == 6  # two full batches committed, one outcome still queued
    store.close()
    assert len(rows(path)) == 7


def test_commits_after_commit_seconds(tmp_path):
    path = tmp_path / "s.sqlite"
    with EmbeddingStore(path, commit_every=1000, commit_seconds=0.0) as store:
        store.add("a" * 64, "fp", FACE)
        assert len(rows(path)) == 1


def test_wal_mode_and_schema_version(tmp_path):
    path = tmp_path / "s.sqlite"
    EmbeddingStore(path).close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        connection.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="schema version"):
        EmbeddingStore(path)


def test_a_file_that_is_not_a_store_is_refused_with_the_way_out(tmp_path):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not an SQLite database, just some text " * 100)
    with pytest.raises(StoreError, match="--no-cache"):
        EmbeddingStore(path)


def test_default_path_follows_xdg_cache_home(tmp_path, monkeypatch):
    if sys.platform != "linux":
        pytest.skip("XDG applies on Linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_store_path() == tmp_path / "cache" / "faceval" / "embeddings.sqlite"


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from faceval.models.embedders import EmbeddingResult
    from faceval.models.store import EmbeddingStore

    path, first, last, commit_every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    store = EmbeddingStore(path, commit_every=commit_every, commit_seconds=3600)
    print("ready", flush=True)
    sys.stdin.readline()  # start together with the other writer
    for index in range(first, last):
        store.add(f"{index:064d}", "fp", EmbeddingResult(np.full(128, float(index)), None))
        if index == first + commit_every:
            print("committing", flush=True)
    store.close()
    """
)


def test_two_writers_at_once_leave_one_row_per_key(tmp_path):
    path = tmp_path / "s.sqlite"
    # Overlapping ranges, tiny batches: the two processes contend for the write lock all the time.
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(first), str(first + 5000), "5"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for first in (0, 2500)
    ]
    assert [writer.stdout.readline().strip() for writer in writers] == ["ready", "ready"]
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.flush()
    assert [writer.communicate(timeout=120)[0] for writer in writers] == ["committing\n"] * 2
    assert [writer.returncode for writer in writers] == [0, 0]
    assert integrity(path) == "ok"
    assert rows(path) == [(f"{index:064d}", "fp") for index in range(7500)]
    with EmbeddingStore(path) as store:
        for index in (0, 2500, 4999, 7499):
            assert np.array_equal(store.get(f"{index:064d}", "fp").vector, np.full(128, float(index)))


def test_a_killed_writer_leaves_whole_batches_only(tmp_path):
    path = tmp_path / "s.sqlite"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "0", "100000000", "7"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
        writer.stdin.write("go\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "committing"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    assert integrity(path) == "ok"
    stored = len(rows(path))
    assert stored > 0 and stored % 7 == 0
    with EmbeddingStore(path) as store:  # and the next run can write on
        store.add("f" * 64, "fp", FACE)
    assert len(rows(path)) == stored + 1


def test_many_runs_opening_a_new_store_at_once(tmp_path):
    # Switching a new file to WAL takes an exclusive lock that SQLite does not wait for by itself. The runs
    # start together at a set moment, after their imports, so that they really do collide.
    opener = (
        "import sys, time; from faceval.models.store import EmbeddingStore\n"
        "while time.time() < float(sys.argv[2]): pass\n"
        "EmbeddingStore(sys.argv[1]).close()"
    )
    for attempt in range(5):
        path, start = tmp_path / f"store{attempt}.sqlite", time.time() + 2.0
        runs = [
            subprocess.Popen([sys.executable, "-c", opener, str(path), str(start)], stderr=subprocess.PIPE)
            for _ in range(8)
        ]
        errors = [run.communicate(timeout=120)[1].decode() for run in runs]
        assert [run.returncode for run in runs] == [0] * 8, errors
