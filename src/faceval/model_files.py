"""Known model files: what they are, their sha256 and licence, where faceval finds them, a verified download.

Lookup order for `locate_model`: an explicit path, then ``$FACEVAL_MODELS_DIR``, then the user cache
(``platformdirs.user_cache_dir("faceval")/models``), then the ``face_recognition_models`` package (dlib
files). A public file that is still missing is downloaded from its official, pinned source into the cache,
verified against its sha256 first; set ``FACEVAL_OFFLINE=1`` to never try.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceval.errors import FacevalError
from faceval.hashing import sha256_file_cached

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_ZOO = "https://github.com/opencv/opencv_zoo/raw"
_DLIB_HOW = "installed with face_recognition_models (a faceval dependency): pip install face_recognition_models"


class ModelError(FacevalError):
    """A model file that is missing, unverifiable or unusable; the message names the model and the problem."""


@dataclass(frozen=True)
class ModelFile:
    """One known model file.

    ``sha256`` is None where no checksum is published (proprietary files); ``url`` is a pinned direct
    download, None where faceval may not or cannot download the file; ``package_attr`` names the
    ``face_recognition_models`` function that returns the file's installed location; ``other_names`` are
    names the same file also goes by.
    """

    name: str
    filename: str
    description: str
    sha256: str | None
    licence: str
    source: str
    how_to_get: str
    url: str | None = None
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
            source="https://github.com/opencv/opencv_zoo/tree/main/models/face_recognition_sface",
            how_to_get="downloaded automatically from opencv_zoo when online",
            url=f"{_ZOO}/966be4cb6eefc2a4f586ed0581bf4bbaa2533070/models/face_recognition_sface/"
            "face_recognition_sface_2021dec.onnx",
        ),
        ModelFile(
            name="yunet",
            filename="face_detection_yunet_2023mar.onnx",
            description="OpenCV Zoo YuNet face detector 2023mar, fp32 (boxes + 5 landmarks)",
            sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
            licence="MIT",
            source="https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet",
            how_to_get="downloaded automatically from opencv_zoo when online",
            url=f"{_ZOO}/f12e12798e8314f7c074a6656816c048dcc95b7a/models/face_detection_yunet/"
            "face_detection_yunet_2023mar.onnx",
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
        try:
            import face_recognition_models
        except ImportError:
            return None
        candidate = Path(getattr(face_recognition_models, entry.package_attr)())
        if candidate.is_file():
            return candidate
    return None


def verify_sha256(path: Path, expected: str, name: str) -> None:
    """Raise `ModelError` when the file's sha256 is not the expected one."""
    actual = sha256_file_cached(path)
    if actual != expected:
        raise ModelError(
            f"model {name!r}: {path} has sha256 {actual}, expected {expected}; "
            "the file is corrupt or a different version: delete it and get it again"
        )


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
    if entry.url is None or entry.sha256 is None or not download or offline:
        raise ModelError(f"model {name!r} not found; {_where_to_put(entry)}")
    destination = cache_dir() / entry.filename
    try:
        return download_file(entry.url, destination, entry.sha256, name=name)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise ModelError(
            f"model {name!r} not found and could not be downloaded from {entry.url} ({error}); {_where_to_put(entry)}"
        ) from error


def download_file(url: str, destination: Path, sha256: str, *, name: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``destination``, keeping it only when its sha256 matches.

    The bytes stream into a temporary file beside the destination and are hashed on the way; the file is
    renamed into place only after the checksum matches, so an interrupted or wrong download never looks
    like a model. A mismatch deletes the temporary file and raises `ModelError`.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading model %s from %s", name, url)
    # Per-process name: two processes fetching the same file never write into each other's bytes.
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.part")
    try:
        digest = hashlib.sha256()
        with open(temporary, "wb") as handle, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                handle.write(chunk)
        if digest.hexdigest() != sha256:
            raise ModelError(
                f"{name!r}: download from {url} has sha256 {digest.hexdigest()}, expected {sha256}; nothing was kept"
            )
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
    return destination


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
