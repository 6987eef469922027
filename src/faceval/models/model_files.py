"""Known model files: what they are, their sha256 and licence, where faceval finds them, a verified download.

Lookup order for `locate_model`: an explicit path, then ``$FACEVAL_MODELS_DIR``, then the user cache
(``platformdirs.user_cache_dir("faceval")/models``), then the ``face_recognition_models`` package (dlib
files). A public file that is still missing is downloaded into the cache with ``pooch`` from the first of its
sources that serves it (Hugging Face first: opencv_zoo's GitHub copy is Git LFS, whose bandwidth ran out in 2025),
kept only when its sha256 matches; set ``FACEVAL_OFFLINE=1`` to never try.
"""

from __future__ import annotations

import http.client
import importlib.util
import logging
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceval.errors import FacevalError
from faceval.sources.hashing import sha256_file_cached

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_HUGGING_FACE = "https://huggingface.co/opencv"
_ZOO = "https://github.com/opencv/opencv_zoo/raw"
# The first line of a Git LFS pointer: the small text file a repository holds in place of a large file, served
# instead of the model when the LFS objects were not fetched (a clone without git-lfs, or LFS quota exhausted).
LFS_POINTER_START = b"version https://git-lfs.github.com/spec/v1"
_DLIB_HOW = "installed with face_recognition_models (a faceval dependency): pip install face_recognition_models"


class ModelError(FacevalError):
    """A model file that is missing, unverifiable or unusable; the message names the model and the problem."""


class DownloadError(ModelError):
    """No source gave the file; ``offline`` is True when no source's host name could be resolved (no network)."""

    def __init__(self, message: str, *, offline: bool) -> None:
        super().__init__(message)
        self.offline = offline


@dataclass(frozen=True)
class ModelFile:
    """One known model file.

    ``sha256`` is None where no checksum is published (proprietary files); ``urls`` are direct downloads of
    those exact bytes, first choice first, empty where faceval may not or cannot download the file;
    ``package_attr`` names the ``face_recognition_models`` function that returns the file's installed location;
    ``other_names`` are names the same file also goes by.
    """

    name: str
    filename: str
    description: str
    sha256: str | None
    licence: str
    source: str
    how_to_get: str
    urls: tuple[str, ...] = ()
    package_attr: str | None = None
    other_names: tuple[str, ...] = ()


REGISTRY: dict[str, ModelFile] = {
    entry.name: entry
    for entry in (
        ModelFile(
            name="dlib-resnet",
            filename="dlib_face_recognition_resnet_model_v1.dat",
            description="dlib ResNet face descriptor (128-d)",
            sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            licence="public domain (Davis King, dlib-models)",
            source="https://github.com/davisking/dlib-models",
            how_to_get=_DLIB_HOW,
            package_attr="face_recognition_model_location",
        ),
        ModelFile(
            name="dlib-landmarks-5",
            filename="shape_predictor_5_face_landmarks.dat",
            description="dlib 5-point face landmarks (eye corners, base of the nose)",
            sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            licence="public domain (Davis King, dlib-models)",
            source="https://github.com/davisking/dlib-models",
            how_to_get=_DLIB_HOW,
            package_attr="pose_predictor_five_point_model_location",
        ),
        ModelFile(
            name="dlib-cnn-detector",
            filename="mmod_human_face_detector.dat",
            description="dlib MMOD CNN face detector",
            sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
            licence="public domain (Davis King, dlib-models)",
            source="https://github.com/davisking/dlib-models",
            how_to_get=_DLIB_HOW,
            package_attr="cnn_face_detector_model_location",
        ),
        ModelFile(
            name="sface",
            filename="face_recognition_sface_2021dec.onnx",
            description="OpenCV Zoo SFace face recognizer, fp32 (128-d, input 1x3x112x112)",
            sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
            licence="Apache-2.0",
            source="https://huggingface.co/opencv/face_recognition_sface",
            how_to_get="downloaded automatically when online (Hugging Face, else opencv_zoo on GitHub)",
            urls=(
                f"{_HUGGING_FACE}/face_recognition_sface/resolve/main/face_recognition_sface_2021dec.onnx",
                f"{_ZOO}/966be4cb6eefc2a4f586ed0581bf4bbaa2533070/models/face_recognition_sface/"
                "face_recognition_sface_2021dec.onnx",
            ),
        ),
        ModelFile(
            name="yunet",
            filename="face_detection_yunet_2023mar.onnx",
            description="OpenCV Zoo YuNet face detector 2023mar, fp32 (boxes + 5 landmarks)",
            sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
            licence="MIT",
            source="https://huggingface.co/opencv/face_detection_yunet",
            how_to_get="downloaded automatically when online (Hugging Face, else opencv_zoo on GitHub)",
            urls=(
                f"{_HUGGING_FACE}/face_detection_yunet/resolve/main/face_detection_yunet_2023mar.onnx",
                f"{_ZOO}/f12e12798e8314f7c074a6656816c048dcc95b7a/models/face_detection_yunet/"
                "face_detection_yunet_2023mar.onnx",
            ),
        ),
        ModelFile(
            name="japanese-face",
            filename="JAPANESE_FACE_v1.onnx",
            description="the seed's JAPANESE FACE (EfficientNetV2 + ArcFace, 512-d, input Nx3x224x224)",
            sha256=None,
            licence="proprietary (its author's terms)",
            source="https://github.com/yKesamaru/FACE01_DEV",
            how_to_get="obtain the file from its author under their terms and pass its path",
            # The seed's name for it, and the spelling in the author's later library.
            other_names=("efficientnetv2_arcface.onnx", "JAPANESE_FACE_V1.onnx"),
        ),
    )
}


def cache_dir() -> Path:
    """The per-user folder downloads go to."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("faceval")) / "models"


def _search_dirs() -> list[Path]:
    env = os.environ.get("FACEVAL_MODELS_DIR")
    return ([Path(env)] if env else []) + [cache_dir()]


def _entry(name: str) -> ModelFile:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(REGISTRY)}") from None


def find_model(name: str) -> Path | None:
    """Where a known model file already is (no download, no checksum), or None."""
    entry = _entry(name)
    for folder in _search_dirs():
        for filename in (entry.filename, *entry.other_names):
            # One level of subfolders too, so a folder of per-model folders (as opencv_zoo lays them out) works.
            for candidate in (folder / filename, *sorted(folder.glob(f"*/{filename}"))):
                if candidate.is_file():
                    return candidate
    if entry.package_attr is not None:
        # The file ``entry.package_attr()`` returns, found without importing the package: its import loads
        # pkg_resources (about 0.4 s, most of a cached re-run).
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or spec.origin is None:
            return None
        candidate = Path(spec.origin).parent / "models" / entry.filename
        if candidate.is_file():
            return candidate
    return None


def verify_sha256(path: Path, expected: str, name: str) -> None:
    """Raise `ModelError` when the file's sha256 is not the expected one."""
    actual = sha256_file_cached(path)
    if actual != expected:
        if is_lfs_pointer(path):
            raise ModelError(
                f"model {name!r}: {path} is a Git LFS pointer (a small text file that stands for the model), not "
                "the model: it comes from a clone made without git-lfs. Delete it; faceval downloads the model, "
                "or run 'git lfs pull' in that clone"
            )
        raise ModelError(
            f"model {name!r}: {path} has sha256 {actual}, expected {expected}; "
            "the file is corrupt or a different version: delete it and get it again"
        )


def is_lfs_pointer(path: str | Path) -> bool:
    """Whether the file is a Git LFS pointer rather than the content it stands for."""
    with open(path, "rb") as handle:
        return handle.read(len(LFS_POINTER_START)) == LFS_POINTER_START


def _where_to_put(entry: ModelFile) -> str:
    folders = " or ".join(str(folder) for folder in _search_dirs())
    return (
        f"put {entry.filename} into {folders} (or set FACEVAL_MODELS_DIR to its folder, or pass its path); "
        f"source: {entry.source}; licence: {entry.licence}; {entry.how_to_get}"
    )


def locate_model(name: str, explicit_path: str | Path | None = None, *, download: bool = True) -> Path:
    """The path of a known model file: found locally (checksum verified) or downloaded and verified.

    An explicit path is used as given (the caller names the file; its spec may still pin a sha256).
    Raises `ModelError` saying where to put the file when it cannot be found or fetched.
    """
    entry = _entry(name)
    if explicit_path is not None:
        path = Path(explicit_path).expanduser()
        if not path.is_file():
            raise ModelError(f"model {name!r}: file not found: {path}")
        return path
    found = find_model(name)
    if found is not None:
        if entry.sha256 is not None:
            verify_sha256(found, entry.sha256, name)
        return found
    offline = os.environ.get("FACEVAL_OFFLINE", "") not in ("", "0")
    if not entry.urls or entry.sha256 is None or not download or offline:
        raise ModelError(f"model {name!r} not found; {_where_to_put(entry)}")
    try:
        return download_file(
            entry.urls, cache_dir() / entry.filename, entry.sha256, name=name, progress=sys.stderr.isatty()
        )
    except DownloadError as error:
        raise ModelError(
            f"model {name!r} not found and could not be downloaded: {error}; {_where_to_put(entry)}"
        ) from None


def download_file(
    urls: Sequence[str], destination: Path, sha256: str, *, name: str, timeout: float = 60.0, progress: bool = False
) -> Path:
    """Download the file from the first of ``urls`` that serves the bytes whose sha256 is ``sha256``.

    ``pooch`` streams each download into a temporary file beside ``destination`` and renames it into place only
    when the checksum matches, so an interrupted or wrong download never looks like the file. Each source that
    fails (no connection, a connection dropped mid-download, an HTTP error, other bytes, a Git LFS pointer) is
    noted and the next one tried; when none gives the file, `DownloadError` says what each one did.
    """
    import pooch

    # pooch announces each download on stderr; faceval logs it instead (a demo fetches hundreds of files).
    pooch.get_logger().setLevel(logging.WARNING)
    downloader = _RefusingLfsPointers(progressbar=progress, chunk_size=_CHUNK, timeout=timeout)
    problems, unresolved = [], 0
    for url in urls:
        log.info("downloading %s from %s", name, url)
        try:
            pooch.retrieve(
                url, f"sha256:{sha256}", fname=destination.name, path=destination.parent, downloader=downloader
            )
            return destination
        except _LfsPointerError:
            problems.append(f"{url} served a Git LFS pointer, not the file (its LFS storage is unavailable)")
        except ValueError as error:  # pooch: the bytes' sha256 is not the pinned one; they were deleted
            problems.append(f"{url}: {error}")
        except (OSError, http.client.HTTPException) as error:  # requests' errors are OSErrors
            unresolved += _is_name_resolution_failure(error)
            problems.append(f"{url}: {_reason(error)}")
    offline = bool(urls) and unresolved == len(urls)
    summary = "no network (host name not resolved)" if offline else "no source gave the file"
    raise DownloadError(f"{summary}: {'; '.join(problems)}; nothing was kept", offline=offline)


class _LfsPointerError(Exception):
    pass


class _RefusingLfsPointers:
    """pooch's HTTP downloader, refusing a Git LFS pointer served in place of the file (a clearer error than
    a checksum mismatch)."""

    def __init__(self, **options: Any) -> None:
        import pooch

        self._download = pooch.HTTPDownloader(**options)

    def __call__(self, url: str, output_file: str, pooch_instance: Any) -> None:
        self._download(url, output_file, pooch_instance)
        if is_lfs_pointer(output_file):
            raise _LfsPointerError(url)


def _causes(error: BaseException) -> list[BaseException]:
    """The error and every error inside it: causes, contexts, urllib3's ``reason`` and exception arguments."""
    found, pending = [], [error]
    while pending:
        current = pending.pop()
        if any(current is seen for seen in found):
            continue
        found.append(current)
        inner = (current.__cause__, current.__context__, getattr(current, "reason", None), *current.args)
        pending += [item for item in inner if isinstance(item, BaseException)]
    return found


def _is_name_resolution_failure(error: BaseException) -> bool:
    """Whether a host name could not be resolved: the usual sign of no network (or no DNS)."""
    return any(isinstance(cause, socket.gaierror) for cause in _causes(error))


def _reason(error: BaseException) -> str:
    """The innermost useful description of a download error (requests nests urllib3's inside its own)."""
    for cause in _causes(error):
        if isinstance(cause, socket.gaierror):
            return f"host name not resolved ({cause.strerror or cause})"
        if isinstance(cause, http.client.IncompleteRead):  # urllib3's subclasses it too
            return f"the connection dropped mid-download ({cause!r})"
    for cause in _causes(error):
        if isinstance(cause, OSError) and cause.errno is not None and cause.strerror:  # refused, reset, disk full
            return cause.strerror
    return f"{type(error).__name__}: {error}"


def list_models() -> list[dict[str, Any]]:
    """Every known model: sha256, licence, where it is or how to get it (for ``faceval models``)."""
    rows = []
    for entry in REGISTRY.values():
        found = find_model(entry.name)
        rows.append(
            {
                "name": entry.name,
                "file": entry.filename,
                "description": entry.description,
                "sha256": entry.sha256,
                "licence": entry.licence,
                "source": entry.source,
                "found_at": str(found) if found is not None else None,
                "how_to_get": entry.how_to_get,
            }
        )
    return rows
