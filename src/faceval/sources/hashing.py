"""Content hashes: how faceval identifies image files, model files and model settings."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks so large model files need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@functools.cache
def _sha256_of_version(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def sha256_file_cached(path: str | Path) -> str:
    """`sha256_file`, computed once per process for each version (size, mtime) of a file: model files are large
    and asked for often, and a file replaced in place is hashed again."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _sha256_of_version(resolved, stat.st_size, stat.st_mtime_ns)


def fingerprint(settings: dict[str, Any]) -> str:
    """Hex sha256 of a JSON-serialisable settings dict, independent of key order."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return sha256_bytes(canonical.encode("utf-8"))
