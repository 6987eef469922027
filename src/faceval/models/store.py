"""The embedding store: an SQLite cache of every image's outcome, keyed by image content and model fingerprint.

A row is found again whatever the image file is called or wherever it lies (the key is the sha256 of its bytes),
and never for a model whose files, settings or libraries changed (the key includes `Embedder.fingerprint`).
Outcomes are written in batched transactions, so a crash loses at most the last batch and never leaves a half
row; WAL mode lets a second run read while another writes, and ``ON CONFLICT DO NOTHING`` on the primary key
makes a duplicate impossible when two runs embed the same image.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import numpy as np
import platformdirs

from faceval.errors import FacevalError
from faceval.models.embedders import Detection, EmbeddingResult

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


class StoreError(FacevalError):
    """An embedding store that cannot be used; the message names the file and the way out."""


class StoreDamagedError(StoreError):
    """An embedding store whose file is damaged (or is no SQLite file at all): `set_aside_if_damaged` helps.

    ``reason`` is what SQLite found wrong.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# SQLite's codes for a damaged file, and for a write the disk refused: SQLITE_FULL (ENOSPC), or an I/O error while
# writing (EFBIG over a file-size limit, EDQUOT, EIO).
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_WRITE_REFUSED = (
    "SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC", "SQLITE_IOERR_TRUNCATE", "SQLITE_IOERR_SHMSIZE",
)  # fmt: skip


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
        # Set once a write fails: the error is raised once, later outcomes are dropped (the run is ending).
        self._write_failure: StoreError | None = None
        try:
            self._prepare()
        except StoreError:
            self._connection.close()
            raise
        except sqlite3.Error as error:
            self._connection.close()
            raise self._explain(error, "cannot be used as a faceval embedding store") from error

    def _explain(self, error: sqlite3.Error, what: str) -> StoreError:
        """A `StoreError` that says what went wrong with this store's file and what the user can do."""
        code = getattr(error, "sqlite_errorname", "")
        if code.startswith(_DAMAGED) or str(error).startswith("Could not decode to UTF-8"):
            return self._damaged(what, error)
        if code in _WRITE_REFUSED:
            try:
                free = f"{shutil.disk_usage(self.path.parent).free / 1e6:.1f} MB free on its disk"
            except OSError:
                free = "free space unknown"
            return StoreError(
                f"{self.path}: {what}: the disk refused the write ({error}; {free}, each image needs about "
                f"{self._bytes_per_image() / 1e3:.0f} kB); every embedding stored before is kept: free some space, "
                "or pass --cache PATH on another disk, or --no-cache, and run again"
            )
        if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return StoreError(
                f"{self.path}: {what}: another run has held it for over {self.timeout:g} s ({error}); run again "
                "when it is done, or pass another --cache PATH"
            )
        return StoreError(f"{self.path}: {what} ({error}); pass another --cache PATH or --no-cache")

    def _damaged(self, what: str, error: Exception) -> StoreDamagedError:
        # The first line only: a damaged row's text is noise.
        reason = str(error).split(" with text ")[0].splitlines()[0][:200]
        return StoreDamagedError(
            f"{self.path}: {what}: the file is damaged ({reason}); it is only a cache: run again with "
            "--rebuild-cache to move it aside and start a new one, or pass another --cache PATH or --no-cache",
            reason,
        )

    def _bytes_per_image(self) -> float:
        """About what one outcome takes in the store: its fields, plus keys and SQLite's page overhead."""
        if not self._buffer:
            return 1e3
        return 300 + sum(len(row[3] or b"") + len(row[4] or "") + len(row[6]) for row in self._buffer) / len(
            self._buffer
        )

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
            # SQLite rolls back by itself after some errors (a full disk): then there is nothing left to undo.
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    def get(self, image_sha256: str, fingerprint: str) -> EmbeddingResult | None:
        """The stored outcome of this image content with this model, or None."""
        try:
            row = self._connection.execute(_SELECT, (image_sha256, fingerprint)).fetchone()
            return None if row is None else _from_row(*row)
        except sqlite3.Error as error:
            raise self._explain(error, "cannot be read") from error
        except (ValueError, TypeError) as error:  # a row whose fields no longer decode
            raise self._damaged("cannot be read", error) from error

    def add(self, image_sha256: str, fingerprint: str, result: EmbeddingResult) -> None:
        """Queue one outcome; commits the queue when it is full or the last commit is ``commit_seconds`` old."""
        self._buffer.append(_to_row(image_sha256, fingerprint, result))
        if len(self._buffer) >= self.commit_every or time.monotonic() - self._last_commit >= self.commit_seconds:
            self.flush()

    def flush(self) -> None:
        """Commit every queued outcome in one transaction (an outcome stored by another run is kept as it is).

        When the write fails (a full disk), the queued outcomes are dropped, the `StoreError` says why, and the
        store takes no more outcomes: what was committed before stays usable.
        """
        if self._write_failure is not None:
            self._buffer.clear()
        elif self._buffer:
            try:
                with self._transaction():
                    self._connection.executemany(_INSERT, self._buffer)
            except sqlite3.Error as error:
                self._write_failure = self._explain(error, f"cannot store {len(self._buffer)} more embeddings")
                self._buffer.clear()
                raise self._write_failure from error
            self._buffer.clear()
        self._last_commit = time.monotonic()

    def check(self) -> None:
        """Read the whole file: SQLite's ``quick_check`` of its structure, then every row decoded as `get` does;
        `StoreDamagedError` when any of it is damaged. (A damaged vector's bytes cannot be told from a vector.)"""
        try:
            problems = [row[0] for row in self._connection.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise StoreDamagedError(f"{self.path}: the file is damaged ({problems[0]})", problems[0])
            for row in self._connection.execute("SELECT dim, vector, detection, failure, timings FROM embeddings"):
                _from_row(*row)
        except sqlite3.Error as error:
            raise self._explain(error, "cannot be checked") from error
        except (ValueError, TypeError) as error:
            raise self._damaged("cannot be checked", error) from error

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


def set_aside_if_damaged(path: str | Path | None = None) -> tuple[Path, str] | None:
    """Check the store at ``path`` (default: `default_store_path`) from end to end; when it is damaged, move it aside
    (with its write-ahead log) as ``<name>.damaged-<time>`` so that the next run starts a new one there.

    Returns where the damaged file went and why it was moved, or None for a sound (or absent) store. A store that
    is sound but unusable for another reason (a newer schema, no permission) raises its `StoreError`.
    """
    path = Path(path).expanduser() if path is not None else default_store_path()
    if not path.exists():
        return None
    try:
        with EmbeddingStore(path) as store:
            store.check()
        return None
    except StoreDamagedError as error:
        reason = error.reason
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        for suffix in ("", "-wal"):  # SQLite finds a database's log by name: they move together
            source = Path(f"{path}{suffix}")
            if source.exists():
                source.rename(f"{aside}{suffix}")
        Path(f"{path}-shm").unlink(missing_ok=True)  # shared-memory index, rebuilt from the log
    except OSError as error:
        raise StoreError(f"{path}: damaged, and cannot be moved aside ({error.strerror}); delete it") from error
    return aside, reason
