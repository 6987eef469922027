"""Any ONNX face-embedding model, run with ONNX Runtime, its preprocessing described by data (`OnnxSpec`).

A spec says how an image becomes the model's input: the crop (whole image, dlib face chip, ArcFace alignment)
and its landmark source, colour order, scale, mean/std, layout and resize filter. Built-in presets live in
``data/onnx_presets.toml``; a user's own model needs a small TOML or JSON file with the same keys.

Every model is checked when it is loaded (file, input shape against the spec, one dummy inference for the
output's size and finiteness), so a wrong file fails in a second, not after an hour of embedding.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from faceval.errors import InputError
from faceval.models.alignment import INTERPOLATIONS, DlibLandmarks, YuNetLandmarks, align_arcface, resize_whole
from faceval.models.embedders import DEVICES, Detection, EmbeddingResult, model_fingerprint
from faceval.models.model_files import ModelError, locate_model
from faceval.models.scoring import Similarity
from faceval.sources.hashing import sha256_file_cached

_CROPS = ("whole", "dlib_chip", "arcface")
# The landmark source each crop takes when the spec names none.
_DEFAULT_LANDMARKS = {"whole": "none", "dlib_chip": "dlib", "arcface": "yunet"}
_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
# Keys that only matter with one crop or landmark source; see `OnnxSpec.vector_settings`.
_KEYS_USED_ONLY_BY = {
    "interpolation": "whole",
    "chip_padding": "dlib_chip",
    "yunet_score_threshold": "yunet",
    "yunet_nms_threshold": "yunet",
    "yunet_top_k": "yunet",
    "dlib_upsample": "dlib",
}


def onnx_providers(device: str) -> list[str]:
    """ONNX Runtime execution providers for ``device``: CUDA first where asked for (``auto``: where there)."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise InputError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not cuda:
        raise InputError(
            f"--device cuda: this ONNX Runtime ({ort.__version__}) has no CUDA execution provider; install the "
            "GPU build: pip install 'faceval[gpu]' (onnxruntime-gpu, in place of onnxruntime)"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if device != "cpu" and cuda else ["CPUExecutionProvider"]


@dataclass(frozen=True)
class OnnxSpec:
    """How to feed and read one ONNX embedding model.

    - ``input_size``: (width, height) of the model's input.
    - ``crop``: ``whole`` (the image resized with ``interpolation``), ``dlib_chip`` (``dlib.get_face_chip``
      with ``chip_padding``, square input) or ``arcface`` (similarity alignment to the ArcFace template,
      square input, bilinear like OpenCV's ``alignCrop``).
    - ``landmarks``: ``none``, ``yunet`` or ``dlib``; default ``none`` for ``whole``, ``dlib`` for
      ``dlib_chip``, ``yunet`` for ``arcface``. The largest face is embedded.
    - ``colour``: channel order fed to the model, ``RGB`` or ``BGR``.
    - ``scale``, ``mean``, ``std``: input = (pixel * scale - mean) / std, mean and std per channel in
      ``colour`` order and in scaled units (torchvision: scale 1/255, ImageNet mean/std).
    - ``layout``: ``NCHW`` or ``NHWC``.
    - ``normalize``: L2-normalise the output vector.
    - ``embedding_size``: the output size the model must have (checked at load), None to accept any.
    - ``input_name``, ``output_name``: None for the model's first input / output.
    - ``sha256``: the model file's checksum, checked at load when given.
    - ``model``: the `faceval.models.model_files` name of the file to use when no path is given.
    """

    name: str
    input_size: tuple[int, int]
    crop: str = "whole"
    landmarks: str | None = None
    chip_padding: float = 0.1
    colour: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: str = "NCHW"
    interpolation: str = "pil_bilinear"
    normalize: bool = True
    similarity: Similarity = Similarity.COSINE
    embedding_size: int | None = None
    input_name: str | None = None
    output_name: str | None = None
    sha256: str | None = None
    model: str | None = None
    yunet_score_threshold: float = 0.9
    yunet_nms_threshold: float = 0.3
    yunet_top_k: int = 5000
    dlib_upsample: int = 1

    def __post_init__(self) -> None:
        # Specs come from TOML/JSON: normalise lists and strings to the declared types.
        coerce = object.__setattr__
        coerce(self, "input_size", tuple(int(v) for v in self.input_size))
        coerce(self, "mean", tuple(float(v) for v in self.mean))
        coerce(self, "std", tuple(float(v) for v in self.std))
        coerce(self, "scale", float(self.scale))
        coerce(self, "similarity", Similarity(self.similarity))
        coerce(self, "colour", self.colour.upper())
        coerce(self, "layout", self.layout.upper())
        if self.landmarks is None:
            coerce(self, "landmarks", _DEFAULT_LANDMARKS.get(self.crop, "none"))
        self._validate()

    def _validate(self) -> None:
        problems = []
        width, height = self.input_size if len(self.input_size) == 2 else (0, 0)
        if len(self.input_size) != 2 or width <= 0 or height <= 0:
            problems.append(f"input_size must be [width, height] > 0, not {list(self.input_size)}")
        if self.crop not in _CROPS:
            problems.append(f"crop must be one of {_CROPS}, not {self.crop!r}")
        allowed = {"whole": ("none",), "dlib_chip": ("dlib",), "arcface": ("yunet", "dlib")}.get(self.crop, ())
        if self.crop in _CROPS and self.landmarks not in allowed:
            problems.append(f"crop {self.crop!r} needs landmarks {' or '.join(allowed)}, not {self.landmarks!r}")
        if self.crop in ("dlib_chip", "arcface") and width != height:
            problems.append(f"crop {self.crop!r} needs a square input_size, not {width}x{height}")
        if self.crop == "arcface" and width % 112 and width % 128:
            problems.append(f"crop 'arcface' needs a size that is a multiple of 112 or 128, not {width}")
        if self.colour not in ("RGB", "BGR"):
            problems.append(f"colour must be RGB or BGR, not {self.colour!r}")
        if self.layout not in ("NCHW", "NHWC"):
            problems.append(f"layout must be NCHW or NHWC, not {self.layout!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or 0.0 in self.std:
            problems.append("mean and std need three values each, std non-zero")
        if self.interpolation not in INTERPOLATIONS:
            problems.append(f"interpolation must be one of {sorted(INTERPOLATIONS)}, not {self.interpolation!r}")
        if problems:
            raise InputError(f"ONNX spec {self.name!r}: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str | None = None) -> OnnxSpec:
        """Build a spec from a mapping (a TOML table or JSON object); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"ONNX spec {name or data.get('name')!r}: unknown keys {unknown}; known: {sorted(known)}")
        values = dict(data)
        if name is not None:
            values.setdefault("name", name)
        if "name" not in values or "input_size" not in values:
            raise InputError("an ONNX spec needs at least 'name' and 'input_size'")
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> OnnxSpec:
        """Read a spec from a ``.toml`` or ``.json`` file; the name defaults to the file's stem."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
            raise InputError(f"ONNX spec file {path}: {error}") from error
        return cls.from_dict(data, name=path.stem)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (lists for tuples, the similarity's value)."""
        data = asdict(self)
        data["similarity"] = self.similarity.value
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    def vector_settings(self) -> dict[str, Any]:
        """Fields that can change the vectors: not the names, nor settings of an unused crop or detector."""
        used = {self.crop, self.landmarks}
        return {
            key: value
            for key, value in self.to_dict().items()
            if key not in ("name", "model") and _KEYS_USED_ONLY_BY.get(key, self.crop) in used
        }


@functools.cache
def presets() -> dict[str, OnnxSpec]:
    """The built-in specs, by name."""
    text = resources.files("faceval").joinpath("data/onnx_presets.toml").read_text(encoding="utf-8")
    return {name: OnnxSpec.from_dict(table, name=name) for name, table in tomllib.loads(text).items()}


def resolve_spec(spec: OnnxSpec | str | Path) -> OnnxSpec:
    """A spec itself, a preset name, or the path of a spec file."""
    if isinstance(spec, OnnxSpec):
        return spec
    if isinstance(spec, str) and spec in presets():
        return presets()[spec]
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"{str(spec)!r} is neither a preset ({', '.join(presets())}) nor a spec file")
    return OnnxSpec.from_file(path)


class Preprocessed(NamedTuple):
    """One image ready for the model: its input tensor (no batch axis) or the reason there is none."""

    tensor: np.ndarray | None
    detection: Detection | None
    failure: str | None


def available_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _onnx_info(path: Path, name: str) -> dict[str, Any]:
    """Producer, opsets and metadata properties (the seed prints ``signature``) of an ONNX file."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:
        raise ModelError(f"model {name!r}: {path} is not a valid ONNX file ({error})") from error
    return {
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "ir_version": model.ir_version,
        "opsets": {entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
        "graph": model.graph.name,
        "metadata": {prop.key: prop.value for prop in model.metadata_props},
    }


class OnnxEmbedder:
    """An ONNX embedding model with the preprocessing its `OnnxSpec` describes.

    ``threads`` sets ONNX Runtime's intra-op threads (default: all cores this process may use);
    ``batch_size`` is the most images per inference where the model's batch axis is dynamic (a fixed batch
    axis sets it); ``detector_path`` overrides the landmark model file (YuNet or dlib's 5-point predictor);
    ``device`` ``"cuda"`` runs the model through ONNX Runtime's CUDA execution provider (`faceval.compute.gpu`).

    `preprocess` and `embed_preprocessed` split `embed_batch` so a caller can prepare the next images in
    another thread while the model runs (both ONNX Runtime and OpenCV release the GIL).

    >>> embedder = load_onnx_embedder(None, "sface")  # doctest: +SKIP
    >>> embedder.embed(load_rgb("face.jpg")).vector.shape  # doctest: +SKIP
    (128,)
    """

    def __init__(
        self,
        model_path: str | Path,
        spec: OnnxSpec,
        *,
        threads: int | None = None,
        batch_size: int = 16,
        detector_path: str | Path | None = None,
        device: str = "cpu",
    ) -> None:
        import onnxruntime as ort

        self.spec = spec
        self.name = spec.name
        self.similarity = spec.similarity
        self.model_path = Path(model_path)
        self.threads = threads or available_cores()
        self._detector_path = detector_path
        self._landmarks_file: Path | None = None
        if not self.model_path.is_file():
            raise ModelError(f"model {self.name!r}: file not found: {self.model_path}")
        self.model_sha256 = sha256_file_cached(self.model_path)
        if spec.sha256 is not None and self.model_sha256 != spec.sha256:
            raise ModelError(
                f"model {self.name!r}: {self.model_path} has sha256 {self.model_sha256}, but the spec pins "
                f"{spec.sha256}; this is not the file the spec was written for"
            )
        self.device = device
        self._providers = onnx_providers(device)
        self._info = _onnx_info(self.model_path, self.name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(self.model_path), options, providers=self._providers)
        except Exception as error:
            raise ModelError(f"model {self.name!r}: ONNX Runtime cannot load {self.model_path} ({error})") from error
        self._ort_version = ort.__version__
        self._bind_input_output()
        self._offset = np.array(spec.mean, dtype=np.float32)
        self._divisor = np.array(spec.std, dtype=np.float32)
        self.batch_size = self._fixed_batch or max(1, batch_size)
        self.embedding_size = self._probe()
        self._landmarks = self._landmark_source()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # ONNX Runtime sessions cannot be pickled: a process-pool worker rebuilds (and re-checks) the model.
        rebuild = functools.partial(
            OnnxEmbedder,
            threads=self.threads,
            batch_size=self.batch_size,
            detector_path=self._landmarks_file,
            device=self.device,
        )
        return rebuild, (self.model_path, self.spec)

    def _bind_input_output(self) -> None:
        """Pick the input and output, and check the input's rank, sizes and type against the spec."""
        spec, name = self.spec, self.name
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        chosen = [i for i in inputs if i.name == spec.input_name] if spec.input_name else inputs[:1]
        if not chosen or (spec.input_name is None and len(inputs) > 1):
            raise ModelError(
                f"model {name!r}: inputs {[i.name for i in inputs]}; faceval feeds one image tensor, "
                f"named {spec.input_name!r} in the spec" + (" (set input_name)" if not spec.input_name else "")
            )
        model_input = chosen[0]
        width, height = spec.input_size
        wanted = [3, height, width] if spec.layout == "NCHW" else [height, width, 3]
        shape = list(model_input.shape)
        if len(shape) != 4:
            raise ModelError(
                f"model {name!r}: input {model_input.name!r} has shape {shape} (rank {len(shape)}), "
                f"but the spec needs rank 4: {spec.layout} [N, {', '.join(map(str, wanted))}]"
            )
        if any(isinstance(dim, int) and dim > 0 and dim != want for dim, want in zip(shape[1:], wanted, strict=True)):
            raise ModelError(
                f"model {name!r}: input {model_input.name!r} has shape {shape}, but the spec needs "
                f"{spec.layout} [N, {', '.join(map(str, wanted))}] (input_size {width}x{height})"
            )
        if model_input.type not in _INPUT_TYPES:
            raise ModelError(f"model {name!r}: input type {model_input.type}; faceval feeds float or float16")
        chosen_output = [o for o in outputs if o.name == spec.output_name] if spec.output_name else outputs[:1]
        if not chosen_output:
            raise ModelError(f"model {name!r}: no output {spec.output_name!r}; outputs {[o.name for o in outputs]}")
        self._input_name = model_input.name
        self._input_dtype = _INPUT_TYPES[model_input.type]
        self._output_name = chosen_output[0].name
        batch = shape[0]
        self._fixed_batch = batch if isinstance(batch, int) and batch > 0 else None

    def _probe(self) -> int:
        """One dummy inference on a mid-grey image: the output must be finite with the expected size."""
        batch = self._fixed_batch or min(2, self.batch_size)
        grey = self._to_tensor(np.full((self.spec.input_size[1], self.spec.input_size[0], 3), 128, np.uint8))
        try:
            output = self._run(np.stack([grey] * batch))
        except Exception as error:
            raise ModelError(
                f"model {self.name!r}: a dummy inference with batch {batch} failed ({error}); a model that "
                "takes one image at a time despite a dynamic batch axis needs batch_size=1"
            ) from error
        size = output.shape[1]
        if self.spec.embedding_size is not None and size != self.spec.embedding_size:
            raise ModelError(
                f"model {self.name!r}: output {self._output_name!r} has {size} values per image, but the "
                f"spec expects {self.spec.embedding_size}"
            )
        if not np.isfinite(output).all():
            raise ModelError(f"model {self.name!r}: output {self._output_name!r} is not finite (NaN or inf)")
        return size

    def _landmark_source(self) -> YuNetLandmarks | DlibLandmarks | None:
        spec = self.spec
        if spec.landmarks == "none":
            return None
        path = locate_model("yunet" if spec.landmarks == "yunet" else "dlib-landmarks-5", self._detector_path)
        # A copy made by unpickling (a worker) loads this very file, whatever its environment would find.
        self._landmarks_file = path
        try:
            if spec.landmarks == "yunet":
                return YuNetLandmarks(path, spec.yunet_score_threshold, spec.yunet_nms_threshold, spec.yunet_top_k)
            return DlibLandmarks(path, spec.dlib_upsample)
        except Exception as error:
            raise ModelError(
                f"model {self.name!r}: cannot load the {spec.landmarks} landmarks model {path} ({error})"
            ) from error

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Model outputs as (images, values); inputs short of a fixed batch size are padded with zeros."""
        count = len(batch)
        if self._fixed_batch is not None and count < self._fixed_batch:
            batch = np.concatenate([batch, np.zeros((self._fixed_batch - count, *batch.shape[1:]), batch.dtype)])
        output = self._session.run([self._output_name], {self._input_name: batch})[0]
        return np.asarray(output)[:count].reshape(count, -1)

    def _to_tensor(self, crop: np.ndarray) -> np.ndarray:
        """A uint8 RGB crop as the model's input tensor, without the batch axis."""
        pixels = crop[:, :, ::-1] if self.spec.colour == "BGR" else crop
        values = (pixels.astype(np.float32) * np.float32(self.spec.scale) - self._offset) / self._divisor
        if self.spec.layout == "NCHW":
            values = values.transpose(2, 0, 1)
        return np.ascontiguousarray(values, dtype=self._input_dtype)

    def preprocess(self, image: np.ndarray) -> Preprocessed:
        """Detect, crop and normalise one ``(H, W, 3)`` uint8 RGB image; a per-image problem is a failure."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            return Preprocessed(None, None, f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        spec = self.spec
        if self._landmarks is None:
            return Preprocessed(self._to_tensor(resize_whole(image, spec.input_size, spec.interpolation)), None, None)
        face, count = self._landmarks.largest_face(image)
        if face is None:
            return Preprocessed(None, Detection(None, 0), f"no face found by the {self._landmarks_text()}")
        landmarks = tuple((float(x), float(y)) for x, y in face.landmarks)
        detection = Detection(face.box, count, landmarks, face.score)
        size = spec.input_size[0]
        if spec.crop == "dlib_chip":
            crop = self._landmarks.face_chip(image, face, size, spec.chip_padding)
        else:
            crop = align_arcface(image, face.landmarks, size, face.template)
        return Preprocessed(self._to_tensor(crop), detection, None)

    def embed_preprocessed(
        self, items: Sequence[Preprocessed], preprocess_seconds: Sequence[float] | None = None
    ) -> list[EmbeddingResult]:
        """Run the model on prepared images, ``batch_size`` at a time; one result per item, in order.

        ``timings`` of each result: ``preprocess`` (when given) and ``inference`` (its share of its batch).
        """
        seconds = list(preprocess_seconds) if preprocess_seconds is not None else [None] * len(items)
        timings = [{"preprocess": s} if s is not None else {} for s in seconds]
        results: list[EmbeddingResult | None] = [
            None if item.tensor is not None else EmbeddingResult(None, item.detection, item.failure, timings[i])
            for i, item in enumerate(items)
        ]
        ready = [i for i, item in enumerate(items) if item.tensor is not None]
        for start in range(0, len(ready), self.batch_size):
            chunk = ready[start : start + self.batch_size]
            began = time.perf_counter()
            output = self._run(np.stack([items[i].tensor for i in chunk]))
            share = (time.perf_counter() - began) / len(chunk)
            for index, row in zip(chunk, output, strict=True):
                timings[index]["inference"] = share
                results[index] = self._result(row, items[index].detection, timings[index])
        return results  # type: ignore[return-value]

    def _result(self, row: np.ndarray, detection: Detection | None, timings: dict[str, float]) -> EmbeddingResult:
        vector = row.astype(np.float64)
        if not np.isfinite(vector).all():
            return EmbeddingResult(None, detection, "the model returned NaN or inf for this image", timings)
        if self.spec.normalize:
            norm = float(np.linalg.norm(vector))
            if norm == 0.0:
                return EmbeddingResult(None, detection, "the model returned a zero vector for this image", timings)
            vector /= norm
        return EmbeddingResult(vector, detection, timings=timings)

    def preprocess_batch(self, images: Sequence[np.ndarray]) -> tuple[list[Preprocessed], list[float]]:
        """`preprocess` each image; also returns the seconds each took, for `embed_preprocessed`."""
        prepared, seconds = [], []
        for image in images:
            began = time.perf_counter()
            prepared.append(self.preprocess(image))
            seconds.append(time.perf_counter() - began)
        return prepared, seconds

    def embed_batch(self, images: Sequence[np.ndarray]) -> list[EmbeddingResult]:
        """Preprocess then embed several images (batched where the model allows)."""
        return self.embed_preprocessed(*self.preprocess_batch(images))

    def embed(self, image: np.ndarray) -> EmbeddingResult:
        """Embed one ``(H, W, 3)`` uint8 RGB image."""
        return self.embed_batch([image])[0]

    def _landmarks_text(self) -> str:
        source = self._landmarks
        if isinstance(source, YuNetLandmarks):
            return (
                f"YuNet detector ({source.model_path.name}, score >= {source.score_threshold}, "
                f"NMS {source.nms_threshold}), largest face"
            )
        if isinstance(source, DlibLandmarks):
            return f"dlib HOG detector (upsample {source.upsample}) + 5-point landmarks, largest face"
        return "none: the whole image is the face"

    def _files(self) -> dict[str, dict[str, Any]]:
        files = {"model": {"path": str(self.model_path), "sha256": self.model_sha256}}
        if self._landmarks is not None:
            path = self._landmarks.model_path
            files["landmarks"] = {"path": str(path), "sha256": sha256_file_cached(path)}
        return files

    def _versions(self) -> dict[str, str]:
        """Versions of the libraries whose arithmetic reaches the vectors."""
        spec = self.spec
        resized_by = spec.interpolation.split("_")[0] if spec.crop == "whole" else None
        used = {
            ("opencv", "cv2"): spec.crop == "arcface" or spec.landmarks == "yunet" or resized_by == "cv2",
            ("dlib", "dlib"): spec.landmarks == "dlib",
            ("pillow", "PIL"): resized_by == "pil",
        }
        versions = {"onnxruntime": self._ort_version}
        versions |= {name: importlib.import_module(module).__version__ for (name, module), on in used.items() if on}
        return versions

    def describe(self) -> dict[str, Any]:
        """Spec, landmark source, files and sha256, ONNX metadata and input/output, batching, versions."""
        session = self._session
        return {
            "name": self.name,
            "kind": "onnx",
            "similarity": self.similarity.value,
            "units": self.similarity.model_units,
            "spec": self.spec.to_dict(),
            "landmarks": self._landmarks_text(),
            "files": self._files(),
            "onnx": {
                **self._info,
                "inputs": [{"name": i.name, "shape": i.shape, "type": i.type} for i in session.get_inputs()],
                "outputs": [{"name": o.name, "shape": o.shape, "type": o.type} for o in session.get_outputs()],
                "input_used": self._input_name,
                "output_used": self._output_name,
            },
            "embedding_size": self.embedding_size,
            "batch": {"dynamic": self._fixed_batch is None, "size": self.batch_size},
            "threads": self.threads,
            "providers": self._session.get_providers(),
            "versions": self._versions(),
        }

    def fingerprint(self) -> str:
        """Hash of the model and detector sha256, the spec's vector settings, the library versions and the
        execution providers (CUDA and CPU kernels round differently, so their vectors are kept apart)."""
        files = self._files()
        return model_fingerprint(
            {
                "kind": "onnx",
                "model_sha256": files["model"]["sha256"],
                "landmarks_sha256": files.get("landmarks", {}).get("sha256"),
                "spec": self.spec.vector_settings(),
                "versions": self._versions(),
                "providers": self._session.get_providers(),
            }
        )


def load_onnx_embedder(
    path: str | Path | None,
    spec: OnnxSpec | str | Path,
    *,
    threads: int | None = None,
    batch_size: int = 16,
    detector_path: str | Path | None = None,
    device: str = "cpu",
) -> OnnxEmbedder:
    """Load a checked ONNX embedder: ``spec`` is an `OnnxSpec`, a preset name or a spec file.

    Without a ``path`` the spec's registered model file is located (and downloaded if public); raises
    `ModelError` for a missing or unusable model, `ValueError` for a bad spec.
    """
    resolved = resolve_spec(spec)
    if path is None:
        if resolved.model is None:
            raise ModelError(f"model {resolved.name!r}: the spec names no model file; give the model's path")
        path = locate_model(resolved.model)
    return OnnxEmbedder(
        path, resolved, threads=threads, batch_size=batch_size, detector_path=detector_path, device=device
    )
