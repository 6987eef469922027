"""The embedding store: an SQLite cache of every image's outcome, keyed by image content and model fingerprint.

A row is found again whatever the image file is called or wherever it lies (the key is the sha256 of its bytes),
and never for a model whose files, settings or libraries changed (the key includes `Embedder.fingerprint`).
Outcomes are written in batched transactions, so a crash loses at most the last batch and never leaves a half
row; WAL mode lets a second run read while another writes, and ``ON CONFLICT DO NOTHING`` on the primary key
makes a duplicate impossible when two runs embed the same image.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import numpy as np
import platformdirs

from faceval.embedders import Detection, EmbeddingResult

SCHEMA_VERSION = 1
STORE_FILE_NAME = "embeddings.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings (
    image_sha256 TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    dim INTEGER,
    vector BLOB,
    detection TEXT,
    failure TEXT,
    timings TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (image_sha256, fingerprint),
    CHECK ((vector IS NULL) <> (failure IS NULL)),
    CHECK (vector IS NULL OR length(vector) = 8 * dim)
) WITHOUT ROWID;
"""
_INSERT = (
    "INSERT INTO embeddings (image_sha256, fingerprint, dim, vector, detection, failure, timings, created) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (image_sha256, fingerprint) DO NOTHING"
)
_SELECT = "SELECT dim, vector, detection, failure, timings FROM embeddings WHERE image_sha256 = ? AND fingerprint = ?"
_Row = tuple[str, str, int | None, bytes | None, str | None, str | None, str, float]


class StoreError(Exception):
    """An embedding store that cannot be used; the message names the file and the way out."""


def default_store_path() -> Path:
    """``embeddings.sqlite`` in the user's cache folder (``~/.cache/faceval`` on Linux, XDG_CACHE_HOME honoured)."""
    return Path(platformdirs.user_cache_dir("faceval")) / STORE_FILE_NAME


def _to_row(image_sha256: str, fingerprint: str, result: EmbeddingResult) -> _Row:
    vector = None if result.vector is None else np.asarray(result.vector, dtype="<f8").ravel()
    return (
        image_sha256,
        fingerprint,
        None if vector is None else vector.size,
        None if vector is None else vector.tobytes(),
        None if result.detection is None else json.dumps(result.detection.to_dict()),
        result.failure,
        json.dumps(result.timings),
        time.time(),
    )


def _from_row(
    dim: int | None, vector: bytes | None, detection: str | None, failure: str | None, timings: str
) -> EmbeddingResult:
    return EmbeddingResult(
        None if vector is None else np.frombuffer(vector, dtype="<f8", count=dim).astype(np.float64),
        None if detection is None else Detection.from_dict(json.loads(detection)),
        failure,
        json.loads(timings),
    )


class EmbeddingStore:
    """An open embedding store; use it as a context manager so the last batch is committed.

    ``add`` buffers outcomes and commits them together once ``commit_every`` are waiting or ``commit_seconds``
    have passed since the last commit; ``timeout`` is how long a writer waits for another run's transaction.

    >>> with EmbeddingStore() as store:  # doctest: +SKIP
    ...     store.add(image_sha256, embedder.fingerprint(), result)
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        commit_every: int = 64,
        commit_seconds: float = 1.0,
        timeout: float = 60.0,
    ) -> None:
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self.commit_every = commit_every
        self.commit_seconds = commit_seconds
        self.timeout = timeout
        self._buffer: list[_Row] = []
        self._last_commit = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE, so that a writer takes
            # the write lock (waiting up to ``timeout`` for another run) before it reads anything.
            self._connection = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            raise StoreError(
                f"{self.path}: cannot open the embedding store ({error}); pass another --cache PATH or --no-cache"
            ) from error
        try:
            self._prepare()
        except StoreError:
            self._connection.close()
            raise
        except sqlite3.DatabaseError as error:
            self._connection.close()
            raise StoreError(
                f"{self.path}: cannot be used as a faceval embedding store ({error}); it is only a cache: delete "
                "it if it is damaged, or pass another --cache PATH or --no-cache"
            ) from error

    def _prepare(self) -> None:
        connection = self._connection
        # Switching a new file to WAL needs an exclusive lock and SQLite does not wait for it through the busy
        # timeout: when two runs open a new store at once, the second retries until the first is done.
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        # In WAL mode NORMAL never corrupts the file; a power cut may only lose the last commits.
        connection.execute("PRAGMA synchronous=NORMAL")
        with self._transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                connection.execute(statement)
            found = connection.execute("SELECT version FROM schema_version").fetchall()
            if not found:
                connection.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif found != [(SCHEMA_VERSION,)]:
                raise StoreError(
                    f"{self.path}: embedding store schema version {found[0][0]}, this faceval reads version "
                    f"{SCHEMA_VERSION}; update faceval, or pass another --cache PATH"
                )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` when the block raises."""
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    def get(self, image_sha256: str, fingerprint: str) -> EmbeddingResult | None:
        """The stored outcome of this image content with this model, or None."""
        row = self._connection.execute(_SELECT, (image_sha256, fingerprint)).fetchone()
        return None if row is None else _from_row(*row)

    def add(self, image_sha256: str, fingerprint: str, result: EmbeddingResult) -> None:
        """Queue one outcome; commits the queue when it is full or the last commit is ``commit_seconds`` old."""
        self._buffer.append(_to_row(image_sha256, fingerprint, result))
        if len(self._buffer) >= self.commit_every or time.monotonic() - self._last_commit >= self.commit_seconds:
            self.flush()

    def flush(self) -> None:
        """Commit every queued outcome in one transaction (an outcome stored by another run is kept as it is)."""
        if self._buffer:
            with self._transaction():
                self._connection.executemany(_INSERT, self._buffer)
            self._buffer.clear()
        self._last_commit = time.monotonic()

    def count(self, fingerprint: str | None = None) -> int:
        """Committed rows, for one model fingerprint or all."""
        if fingerprint is None:
            return self._connection.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        return self._connection.execute(
            "SELECT COUNT(*) FROM embeddings WHERE fingerprint = ?", (fingerprint,)
        ).fetchone()[0]

    def close(self) -> None:
        """Commit what is queued and close the file."""
        try:
            self.flush()
        finally:
            self._connection.close()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
