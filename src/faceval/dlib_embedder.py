"""dlib's face pipeline, as the seed runs it: HOG (or CNN) detector, 5-point landmarks, ResNet descriptor.

The descriptor is the 128-d vector of ``dlib_face_recognition_resnet_model_v1.dat`` (the model inside the
``face_recognition`` library), compared by Euclidean distance. Model files come from ``face_recognition_models``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from faceval.embedders import Detection, EmbeddingResult
from faceval.hashing import fingerprint, sha256_file
from faceval.scoring import Similarity

DetectorKind = Literal["hog", "cnn", "none"]


@dataclass(frozen=True)
class DlibSettings:
    """Everything that changes dlib's vectors.

    ``detector="none"`` is for pre-cropped sets: the whole image is the face box. ``upsample`` is how many times
    the detector doubles the image first (the seed uses 1). ``jitters`` and ``padding`` are passed to
    ``compute_face_descriptor`` (dlib's defaults: 0 and 0.25).
    """

    detector: DetectorKind = "hog"
    upsample: int = 1
    jitters: int = 0
    padding: float = 0.25

    def __post_init__(self) -> None:
        if self.detector not in ("hog", "cnn", "none"):
            raise ValueError(f"dlib detector must be 'hog', 'cnn' or 'none', not {self.detector!r}")
        if self.upsample < 0 or self.jitters < 0:
            raise ValueError("dlib upsample and jitters must be >= 0")


def dlib_model_paths() -> dict[str, Path]:
    """The dlib model files shipped by ``face_recognition_models``."""
    import face_recognition_models as models

    return {
        "descriptor": Path(models.face_recognition_model_location()),
        "landmarks": Path(models.pose_predictor_five_point_model_location()),
        "cnn_detector": Path(models.cnn_face_detector_model_location()),
    }


@cache
def _file_identity(path: Path) -> dict[str, str]:
    return {"path": str(path), "sha256": sha256_file(path)}


class DlibEmbedder:
    """dlib ResNet face descriptor with its detector and 5-point landmarks.

    >>> embedder = DlibEmbedder()  # doctest: +SKIP
    >>> embedder.embed(load_rgb("face.png")).vector.shape  # doctest: +SKIP
    (128,)
    """

    name = "dlib"
    similarity = Similarity.EUCLIDEAN

    def __init__(self, settings: DlibSettings | None = None) -> None:
        import dlib

        self.settings = settings or DlibSettings()
        self._dlib = dlib
        paths = dlib_model_paths()
        used = ["descriptor", "landmarks"] + (["cnn_detector"] if self.settings.detector == "cnn" else [])
        self._files = {role: paths[role] for role in used}
        for role, path in self._files.items():
            if not path.is_file():
                raise FileNotFoundError(
                    f"dlib {role} model {path} is missing; reinstall it with: pip install --force-reinstall "
                    "face_recognition_models"
                )
        self._descriptor = dlib.face_recognition_model_v1(str(self._files["descriptor"]))
        self._landmarks = dlib.shape_predictor(str(self._files["landmarks"]))
        if self.settings.detector == "hog":
            self._detector = dlib.get_frontal_face_detector()
        elif self.settings.detector == "cnn":
            self._detector = dlib.cnn_face_detection_model_v1(str(self._files["cnn_detector"]))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "dlib",
            "similarity": self.similarity.value,
            "units": self.similarity.model_units,
            "settings": asdict(self.settings),
            "files": {role: _file_identity(path) for role, path in self._files.items()},
            "versions": {"dlib": self._dlib.__version__},
        }

    def fingerprint(self) -> str:
        description = self.describe()
        return fingerprint(
            {
                "settings": description["settings"],
                "files": {role: item["sha256"] for role, item in description["files"].items()},
                "versions": description["versions"],
            }
        )

    def _detect(self, image: np.ndarray) -> tuple[Any, int, float | None]:
        """The largest face rectangle, how many faces were found, and the detector's score for it."""
        dlib = self._dlib
        height, width = image.shape[:2]
        if self.settings.detector == "none":
            return dlib.rectangle(0, 0, width - 1, height - 1), 1, None
        if self.settings.detector == "cnn":
            found = self._detector(image, self.settings.upsample)
            candidates = [(face.rect, float(face.confidence)) for face in found]
        else:
            rectangles, scores, _ = self._detector.run(image, self.settings.upsample, 0.0)
            candidates = list(zip(rectangles, map(float, scores), strict=True))
        if not candidates:
            return None, 0, None
        rectangle, score = max(candidates, key=lambda item: item[0].area())
        return rectangle, len(candidates), score

    def embed(self, image: np.ndarray) -> EmbeddingResult:
        started = time.perf_counter()
        rectangle, faces_found, score = self._detect(image)
        detected = time.perf_counter()
        if rectangle is None:
            detector = f"dlib {self.settings.detector.upper()} detector (upsample {self.settings.upsample})"
            return EmbeddingResult(
                None,
                Detection(None, 0),
                failure=f"no face found by the {detector}; try --dlib-upsample 2, --dlib-detector cnn, "
                "or --dlib-detector none for pre-cropped faces",
                timings={"detect": detected - started},
            )
        shape = self._landmarks(image, rectangle)
        landmarked = time.perf_counter()
        vector = np.asarray(
            self._descriptor.compute_face_descriptor(image, shape, self.settings.jitters, self.settings.padding),
            dtype=np.float64,
        )
        finished = time.perf_counter()
        box = (rectangle.left(), rectangle.top(), rectangle.right(), rectangle.bottom())
        landmarks = tuple((float(point.x), float(point.y)) for point in shape.parts())
        return EmbeddingResult(
            vector,
            Detection(box, faces_found, landmarks, score),
            timings={
                "detect": detected - started,
                "landmarks": landmarked - detected,
                "embed": finished - landmarked,
            },
        )

    def embed_batch(self, images: Sequence[np.ndarray]) -> list[EmbeddingResult]:
        return [self.embed(image) for image in images]
