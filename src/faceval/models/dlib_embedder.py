"""dlib's face pipeline, as the seed runs it: HOG (or CNN) detector, 5-point landmarks, ResNet descriptor.

The descriptor is the 128-d vector of ``dlib_face_recognition_resnet_model_v1.dat`` (the model inside the
``face_recognition`` library), compared by Euclidean distance. Model files come from ``face_recognition_models``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

from faceval.models.alignment import DlibLandmarks
from faceval.models.embedders import Detection, EmbeddingResult, model_fingerprint
from faceval.models.model_files import locate_model
from faceval.models.scoring import Similarity
from faceval.sources.hashing import sha256_file_cached

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


_MODEL_FILES = {"descriptor": "dlib-resnet", "landmarks": "dlib-landmarks-5", "cnn_detector": "dlib-cnn-detector"}


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
        roles = ["descriptor", "landmarks"] + (["cnn_detector"] if self.settings.detector == "cnn" else [])
        # Checksums verified: a corrupt or swapped model file fails here, before any long work.
        self._files = {role: locate_model(_MODEL_FILES[role], download=False) for role in roles}

    @cached_property
    def _descriptor(self) -> Any:
        # Built on the first image to embed: a re-run whose images are all in the store never pays for it.
        return self._dlib.face_recognition_model_v1(str(self._files["descriptor"]))

    @cached_property
    def _faces(self) -> DlibLandmarks:
        return DlibLandmarks(
            self._files["landmarks"], self.settings.upsample, self.settings.detector, self._files.get("cnn_detector")
        )

    def __reduce__(self) -> tuple[type[DlibEmbedder], tuple[DlibSettings]]:
        # dlib's objects cannot be pickled: a worker process rebuilds the embedder from its settings.
        return DlibEmbedder, (self.settings,)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "dlib",
            "similarity": self.similarity.value,
            "units": self.similarity.model_units,
            "settings": asdict(self.settings),
            "files": {
                role: {"path": str(path), "sha256": sha256_file_cached(path)} for role, path in self._files.items()
            },
            "versions": {"dlib": self._dlib.__version__},
        }

    def fingerprint(self) -> str:
        description = self.describe()
        return model_fingerprint(
            {
                "settings": description["settings"],
                "files": {role: item["sha256"] for role, item in description["files"].items()},
                "versions": description["versions"],
            }
        )

    def embed(self, image: np.ndarray) -> EmbeddingResult:
        started = time.perf_counter()
        face, faces_found = self._faces.largest_face(image)
        detected = time.perf_counter()
        if face is None:
            detector = f"dlib {self.settings.detector.upper()} detector (upsample {self.settings.upsample})"
            return EmbeddingResult(
                None,
                Detection(None, 0),
                failure=f"no face found by the {detector}; try --dlib-upsample 2, --dlib-detector cnn, "
                "or --dlib-detector none for pre-cropped faces",
                timings={"detect": detected - started},
            )
        vector = np.asarray(
            self._descriptor.compute_face_descriptor(
                np.ascontiguousarray(image), face.dlib_shape, self.settings.jitters, self.settings.padding
            ),
            dtype=np.float64,
        )
        finished = time.perf_counter()
        landmarks = tuple((float(x), float(y)) for x, y in face.landmarks)
        return EmbeddingResult(
            vector,
            Detection(face.box, faces_found, landmarks, face.score),
            timings={"detect": detected - started, "embed": finished - detected},
        )

    def embed_batch(self, images: Sequence[np.ndarray]) -> list[EmbeddingResult]:
        return [self.embed(image) for image in images]
