"""Result files: written atomically (an interrupted run leaves the old file or none, never half of one), with the
mode a plain write would give them, and one run at a time per output folder."""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from faceval.errors import FacevalError, InputError, ResultWriteError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: output folders are not locked
    fcntl = None  # type: ignore[assignment]

LOCK_FILE_NAME = ".faceval.lock"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class FolderInUseError(FacevalError):
    """Another faceval run is writing its results into the same output folder."""


def _mode_of_new_file(path: Path) -> int:
    """The mode ``open(path, "w")`` would leave: the existing file's, else 0666 less the umask (0644 under 022)."""
    with contextlib.suppress(FileNotFoundError):
        return stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0o022)  # the only way to read the umask is to set it; put it back at once
    os.umask(umask)
    return 0o666 & ~umask


def _write_error(path: Path, error: OSError) -> ResultWriteError:
    reason = error.strerror or str(error)
    if error.errno in _NO_SPACE:
        with contextlib.suppress(OSError):
            reason += f"; {shutil.disk_usage(path.parent).free / 1e6:.1f} MB free there"
    return ResultWriteError(
        f"{path}: cannot be written ({reason}); the files written before it are complete: free some space, or "
        "write the results elsewhere"
    )


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it is synced and renamed over ``path``.

    The file gets the mode a plain write would give it; an `OSError` (a full disk, no permission) becomes a
    `ResultWriteError` that names ``path``.

    >>> with atomic_write("results/notes.txt") as handle:  # doctest: +SKIP
    ...     handle.write("done")
    """
    path = Path(path)
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        # mkstemp creates the file 0600, private to its owner; results are meant to be shared like any file.
        os.fchmod(descriptor, _mode_of_new_file(path))
        with os.fdopen(descriptor, mode, **text) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, ResultWriteError):
            raise _write_error(path, error) from error
        raise


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A UTF-8 CSV file with a header row, written atomically."""
    with atomic_write(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_json(path: str | Path, document: Any) -> None:
    """Strict JSON (no NaN), indented, non-ASCII kept readable, written atomically."""
    with atomic_write(path) as handle:
        json.dump(document, handle, indent=2, ensure_ascii=False, allow_nan=False)
        handle.write("\n")


def _locked_lock_file(lock_path: Path) -> int:
    """An open descriptor of ``lock_path`` holding its exclusive lock, or `FolderInUseError` naming the holder."""
    while True:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 200).decode(errors="replace").strip() or "starting"
            os.close(descriptor)
            raise FolderInUseError(
                f"{lock_path.parent}: another faceval run ({holder}) is writing its results into this folder; "
                "wait for it to finish, or choose another --out"
            ) from None
        except OSError:
            os.close(descriptor)
            raise
        # A run that finished between our open and our lock has removed the file we locked: lock the new one.
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(descriptor), os.stat(lock_path)):
                return descriptor
        os.close(descriptor)


def prepare_output_folder(out_dir: str | Path) -> Path:
    """Create the output folder now, so that an unusable one fails before the embedding, not after it."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(
            f"{out}: cannot be used as the output folder ({error.strerror}); choose another --out"
        ) from None
    return out


@contextlib.contextmanager
def output_folder(out_dir: str | Path) -> Iterator[Path]:
    """Create ``out_dir`` and hold it for this run, so that two runs never mix their files in one folder.

    A second run into the same folder is refused at once with `FolderInUseError`. The lock is an ``flock`` on
    ``.faceval.lock``, which the kernel releases when its run ends, however it ends: a killed run never leaves the
    folder locked.
    """
    out = prepare_output_folder(out_dir)
    if fcntl is None:  # pragma: no cover
        yield out
        return
    lock_path = out / LOCK_FILE_NAME
    try:
        descriptor = _locked_lock_file(lock_path)
    except OSError as error:
        if error.errno not in _NO_LOCKS:
            raise _write_error(lock_path, error) from error
        Path(lock_path).unlink(missing_ok=True)  # a filesystem without locks: the folder cannot be held
        yield out
        return
    try:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        os.ftruncate(descriptor, 0)  # a killed run's text may still be there
        os.write(descriptor, f"pid {os.getpid()}, started {started}".encode())
        yield out
    finally:
        # Removed while still locked: a run that opened it a moment ago sees it gone and takes a new one.
        Path(lock_path).unlink(missing_ok=True)
        os.close(descriptor)
