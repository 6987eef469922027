"""The interface every face model implements, and the factory that builds one from a name.

An embedder turns one RGB image into one vector (or a recorded failure). It owns its detector and crop, so
that two models can be compared on exactly the same files while each sees the face the way it was trained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from faceval.errors import InputError
from faceval.models.scoring import Similarity
from faceval.sources.hashing import fingerprint

# Where models run and pairs are scored (--device): ``auto`` uses a GPU where one is there.
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Detection:
    """Where the face used for the embedding was found.

    ``box`` is ``(left, top, right, bottom)`` in pixels of the loaded image; ``landmarks`` are five ``(x, y)``
    points (eyes, nose, mouth corners) when the detector gives them; ``faces_found`` counts every face the
    detector saw (the largest one is embedded).
    """

    box: tuple[int, int, int, int] | None
    faces_found: int
    landmarks: tuple[tuple[float, float], ...] | None = None
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": list(self.box) if self.box is not None else None,
            "faces_found": self.faces_found,
            "landmarks": [list(p) for p in self.landmarks] if self.landmarks is not None else None,
            "score": self.score,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Detection:
        return cls(
            box=tuple(data["box"]) if data.get("box") is not None else None,
            faces_found=int(data["faces_found"]),
            landmarks=tuple(tuple(p) for p in data["landmarks"]) if data.get("landmarks") else None,
            score=data.get("score"),
        )


@dataclass(frozen=True)
class EmbeddingResult:
    """One image's outcome: a vector, or the reason there is none."""

    vector: np.ndarray | None
    detection: Detection | None = None
    failure: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.vector is None) == (self.failure is None):
            raise ValueError("an EmbeddingResult has exactly one of a vector and a failure reason")

    @property
    def ok(self) -> bool:
        return self.vector is not None


def model_fingerprint(settings: dict[str, Any]) -> str:
    """The fingerprint an embedder reports: its own settings, files and versions, plus how pixels are decoded
    (a Pillow upgrade or a change in `faceval.sources.images` must never reuse vectors of differently decoded
    images)."""
    from faceval.sources.images import loader_identity

    return fingerprint({**settings, "image_loader": loader_identity()})


@runtime_checkable
class Embedder(Protocol):
    """A face model: detector + crop + network, comparable with one `Similarity`."""

    name: str
    similarity: Similarity

    def describe(self) -> dict[str, Any]:
        """Settings, model files (path, sha256, metadata) and library versions, for ``metrics.json``."""
        ...

    def fingerprint(self) -> str:
        """A hash of everything that changes the vectors: model file sha256, settings, library versions."""
        ...

    def embed(self, image: np.ndarray) -> EmbeddingResult:
        """Embed one ``(H, W, 3)`` uint8 RGB image."""
        ...

    def embed_batch(self, images: Sequence[np.ndarray]) -> list[EmbeddingResult]:
        """Embed several images; the default is one at a time, models with a batch axis do better."""
        ...


@dataclass(frozen=True)
class ModelSpec:
    """A picklable recipe for an embedder, so that worker processes can each build their own copy.

    ``kind`` is ``"dlib"`` or ``"onnx"``; ``name`` is the model's name in the results; ``path`` the model file
    (ONNX only); ``spec_file`` a user's preprocessing spec; ``options`` the remaining settings.
    """

    kind: str
    name: str
    path: str | None = None
    spec_file: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def build(self) -> Embedder:
        """Load the model files and return a ready embedder (raises before any long work if they are bad)."""
        options = dict(self.options)
        if self.kind == "dlib":
            from faceval.models.dlib_embedder import DlibEmbedder, DlibSettings

            return DlibEmbedder(DlibSettings(**options))
        if self.kind == "onnx":
            from faceval.models.onnx_embedder import load_onnx_embedder

            return load_onnx_embedder(self.path, self.spec_file or self.name, **options)
        raise ValueError(f"unknown model kind {self.kind!r}")


def parse_model_argument(
    text: str,
    dlib_options: Mapping[str, Any] | None = None,
    spec_file: str | Path | None = None,
    onnx_options: Mapping[str, Any] | None = None,
) -> ModelSpec:
    """Turn a ``--model`` value into a `ModelSpec`.

    ``dlib``; a built-in ONNX preset as ``NAME`` (its file found in FACEVAL_MODELS_DIR or the cache, or
    downloaded when public) or ``NAME:PATH``; or ``onnx:PATH`` with a spec file describing the preprocessing.

    >>> parse_model_argument("japanese-face:./JAPANESE_FACE_v1.onnx").name
    'japanese-face'
    """
    from faceval.models.onnx_embedder import presets, resolve_spec

    kind, _, path = text.partition(":")
    kind = kind.strip().lower()
    onnx = tuple(sorted((onnx_options or {}).items()))
    if kind == "dlib":
        if path:
            raise InputError("dlib takes no path: its model files come from face_recognition_models")
        return ModelSpec("dlib", "dlib", options=tuple(sorted((dlib_options or {}).items())))
    if kind == "onnx":
        if not path or spec_file is None:
            raise InputError(
                "an ONNX model of your own needs its file and a spec: --model onnx:PATH --spec SPEC.toml "
                f"(see the presets {', '.join(presets())} for the keys)"
            )
        name = resolve_spec(Path(spec_file)).name
        return ModelSpec("onnx", name, path=str(Path(path).expanduser()), spec_file=str(spec_file), options=onnx)
    if kind in presets():
        return ModelSpec("onnx", kind, path=str(Path(path).expanduser()) if path else None, options=onnx)
    raise InputError(f"unknown model {text!r}; known: dlib, {', '.join(presets())}, or onnx:PATH --spec SPEC")
