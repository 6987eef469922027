"""The ONNX embedder against independent oracles: the seed's torchvision preprocessing recomputed with Pillow +
numpy, OpenCV's own SFace pipeline, dlib's own face chip; and every kind of bad model file."""

from __future__ import annotations

import dataclasses
import json
import pickle

import cv2
import numpy as np
import pytest
from PIL import Image

from faceval.models.embedders import Embedder
from faceval.models.model_files import ModelError
from faceval.models.onnx_embedder import OnnxEmbedder, OnnxSpec, load_onnx_embedder, presets
from faceval.models.scoring import Similarity

from onnx_fixtures import SIGNATURE, pooled_matmul, write_pooled_matmul_model, write_rank3_model
from shared_data import sample_faces, shared_file

# The seed's torchvision pipeline, written out independently of faceval's preset file.
SEED_SIZE = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

SFACE = "models/sface_2021dec_fp32/face_recognition_sface_2021dec.onnx"
YUNET = "models/yunet_2023mar/face_detection_yunet_2023mar.onnx"


def seed_preprocess(image: np.ndarray) -> np.ndarray:
    """torchvision Resize((224, 224)) on a PIL image, ToTensor, Normalize: as the seed runs it, CHW float32."""
    resized = Image.fromarray(image).resize((SEED_SIZE, SEED_SIZE), Image.Resampling.BILINEAR)
    tensor = np.asarray(resized, dtype=np.float32) / np.float32(255)
    return ((tensor - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def synthetic_images() -> list[np.ndarray]:
    """Images to shrink, enlarge and keep: smooth gradients plus noise, so resampling errors show."""
    rng = np.random.default_rng(7)
    images = []
    for height, width in [(300, 260), (97, 131), (224, 224)]:
        y, x = np.mgrid[0:height, 0:width]
        smooth = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
        images.append(np.clip(smooth + rng.normal(0, 30, smooth.shape), 0, 255).astype(np.uint8))
    return images


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny_japanese_face.onnx"
    return path, write_pooled_matmul_model(path)


@pytest.fixture(scope="module")
def tiny_embedder(tiny_model):
    return load_onnx_embedder(tiny_model[0], "japanese-face", threads=1)


# --- JAPANESE FACE interface: the seed's preprocessing --------------------------------------------------------


def test_japanese_face_preset_reproduces_the_seed_preprocessing(tiny_model, tiny_embedder):
    _, weights = tiny_model
    images = synthetic_images()
    expected = unit(pooled_matmul(np.stack([seed_preprocess(image) for image in images]), weights))
    singles = np.stack([tiny_embedder.embed(image).vector for image in images])
    np.testing.assert_allclose(singles, expected, atol=2e-6)
    batched = tiny_embedder.embed_batch(images)
    np.testing.assert_allclose(np.stack([r.vector for r in batched]), singles, atol=1e-7)
    assert all(r.detection is None and r.ok for r in batched)
    assert {"preprocess", "inference"} <= set(batched[0].timings)


def test_preprocessing_differs_measurably_from_a_wrong_resize(tiny_model, tiny_embedder):
    # Guards the test above: OpenCV's bilinear (no antialiasing) must be told apart from Pillow's.
    _, weights = tiny_model
    image = synthetic_images()[0]
    resized = cv2.resize(image, (SEED_SIZE, SEED_SIZE), interpolation=cv2.INTER_LINEAR)
    wrong = unit(pooled_matmul(seed_preprocess(resized)[None], weights))[0]
    assert np.abs(tiny_embedder.embed(image).vector - wrong).max() > 1e-4


def test_describe_and_protocol(tiny_model, tiny_embedder):
    description = tiny_embedder.describe()
    assert isinstance(tiny_embedder, Embedder)
    assert tiny_embedder.name == "japanese-face" and tiny_embedder.similarity is Similarity.COSINE
    assert description["onnx"]["metadata"]["signature"] == SIGNATURE
    assert description["onnx"]["opsets"] == {"ai.onnx": 17}
    assert description["onnx"]["producer"] == "faceval-tests"
    assert description["onnx"]["inputs"] == [{"name": "input", "shape": ["N", 3, 224, 224], "type": "tensor(float)"}]
    assert description["onnx"]["outputs"][0]["shape"] == ["N", 512]
    assert description["batch"] == {"dynamic": True, "size": 16}
    assert description["threads"] == 1
    assert description["files"]["model"]["sha256"] == tiny_embedder.model_sha256
    assert "whole image" in description["landmarks"]
    assert set(description["versions"]) == {"onnxruntime", "pillow"}
    json.dumps(description)


def test_fingerprint_follows_model_bytes_and_vector_settings(tmp_path, tiny_model, tiny_embedder):
    path, _ = tiny_model
    spec = presets()["japanese-face"]
    assert load_onnx_embedder(path, spec, threads=2).fingerprint() == tiny_embedder.fingerprint()
    renamed = dataclasses.replace(spec, name="my-copy")
    assert OnnxEmbedder(path, renamed).fingerprint() == tiny_embedder.fingerprint()
    other_mean = dataclasses.replace(spec, mean=(0.5, 0.5, 0.5))
    assert OnnxEmbedder(path, other_mean).fingerprint() != tiny_embedder.fingerprint()
    other_weights = tmp_path / "other.onnx"
    write_pooled_matmul_model(other_weights, seed=1)
    assert OnnxEmbedder(other_weights, spec).fingerprint() != tiny_embedder.fingerprint()


def test_layout_colour_and_scale_come_from_the_spec(tmp_path, tiny_model):
    _, weights = tiny_model
    path = tmp_path / "nhwc.onnx"
    write_pooled_matmul_model(path, layout="NHWC")
    spec = OnnxSpec(
        name="nhwc-bgr", input_size=(224, 224), colour="BGR", layout="NHWC", scale=1.0, mean=(1, 2, 3), std=(2, 4, 8)
    )
    image = synthetic_images()[2]  # already 224x224: no resize involved
    bgr = image[:, :, ::-1].astype(np.float64)
    expected = ((bgr - [1, 2, 3]) / [2, 4, 8]).transpose(2, 0, 1)
    vector = OnnxEmbedder(path, spec).embed(image).vector
    np.testing.assert_allclose(vector, unit(pooled_matmul(expected[None], weights))[0], atol=2e-6)


def test_float16_input_is_fed_float16(tmp_path, tiny_model, tiny_embedder):
    path = tmp_path / "half.onnx"
    write_pooled_matmul_model(path, float16_input=True)
    half = load_onnx_embedder(path, "japanese-face")
    image = synthetic_images()[0]
    # float16 keeps about 3 significant digits of each input value.
    np.testing.assert_allclose(half.embed(image).vector, tiny_embedder.embed(image).vector, atol=2e-3)


def test_fixed_batch_axis_is_padded_and_matches_single_images(tmp_path):
    path = tmp_path / "batch4.onnx"
    write_pooled_matmul_model(path, batch=4)
    embedder = OnnxEmbedder(path, presets()["japanese-face"])
    assert embedder.batch_size == 4 and embedder.describe()["batch"]["dynamic"] is False
    images = synthetic_images() * 2  # 6 images: a full batch of 4 and a padded one of 2
    batched = np.stack([r.vector for r in embedder.embed_batch(images)])
    singles = np.stack([embedder.embed(image).vector for image in images])
    np.testing.assert_allclose(batched, singles, atol=1e-7)


def test_per_image_problems_are_failures_not_exceptions(tiny_embedder):
    results = tiny_embedder.embed_batch([np.zeros((10, 10), np.uint8), synthetic_images()[1]])
    assert not results[0].ok and "uint8 RGB" in results[0].failure
    assert results[1].ok


def test_embedder_pickles_for_process_pools(tiny_embedder):
    image = synthetic_images()[1]
    clone = pickle.loads(pickle.dumps(tiny_embedder))
    np.testing.assert_array_equal(clone.embed(image).vector, tiny_embedder.embed(image).vector)
    assert clone.fingerprint() == tiny_embedder.fingerprint()


# --- specs ----------------------------------------------------------------------------------------------------


def test_presets_hold_the_documented_settings():
    japanese = presets()["japanese-face"]
    assert (japanese.crop, japanese.landmarks, japanese.interpolation) == ("whole", "none", "pil_bilinear")
    np.testing.assert_allclose(japanese.scale, 1 / 255)
    np.testing.assert_allclose(japanese.mean, IMAGENET_MEAN)
    np.testing.assert_allclose(japanese.std, IMAGENET_STD)
    assert japanese.input_size == (224, 224) and japanese.embedding_size == 512 and japanese.input_name is None
    sface = presets()["sface"]
    assert (sface.crop, sface.landmarks, sface.colour, sface.scale, sface.mean, sface.std) == (
        "arcface",
        "yunet",
        "RGB",
        1.0,
        (0.0, 0.0, 0.0),
        (1.0, 1.0, 1.0),
    )
    assert sface.sha256 == "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79"
    arcface = presets()["arcface"]
    assert (arcface.input_size, arcface.mean, arcface.std) == ((112, 112), (127.5,) * 3, (127.5,) * 3)
    assert presets()["japanese-face-dlib-chip"].chip_padding == 0.1


def test_spec_files_toml_and_json(tmp_path, tiny_model, tiny_embedder):
    toml_file = tmp_path / "mine.toml"
    toml_file.write_text(
        "input_size = [224, 224]\nscale = 0.00392156862745098\nmean = [0.485, 0.456, 0.406]\n"
        "std = [0.229, 0.224, 0.225]\nembedding_size = 512\n"
    )
    spec = OnnxSpec.from_file(toml_file)
    assert spec.name == "mine" and spec.crop == "whole"
    json_file = tmp_path / "mine.json"
    json_file.write_text(json.dumps(spec.to_dict()))
    assert OnnxSpec.from_file(json_file) == spec
    image = synthetic_images()[0]
    vector = load_onnx_embedder(tiny_model[0], toml_file).embed(image).vector
    np.testing.assert_allclose(vector, tiny_embedder.embed(image).vector, atol=1e-6)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"input_size": [224, 224], "colour": "RGB", "colr": "BGR"}, "unknown keys \\['colr'\\]"),
        ({"input_size": [224, 224], "crop": "face"}, "crop must be one of"),
        ({"input_size": [224, 224], "crop": "whole", "landmarks": "yunet"}, "needs landmarks none"),
        ({"input_size": [224, 200], "crop": "arcface"}, "square"),
        ({"input_size": [100, 100], "crop": "arcface"}, "multiple of 112 or 128"),
        ({"input_size": [224, 224], "std": [1, 0, 1]}, "std non-zero"),
        ({"input_size": [224, 224], "interpolation": "bilinear"}, "interpolation must be one of"),
        ({"input_size": [224, 224], "similarity": "dot"}, "dot"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(fields, message):
    with pytest.raises(ValueError, match=message):
        OnnxSpec.from_dict(fields, name="bad")


# --- bad model files: clear errors at load time ---------------------------------------------------------------


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match=r"'japanese-face'.*file not found"):
        load_onnx_embedder(tmp_path / "absent.onnx", "japanese-face")


def test_random_bytes_are_not_a_model(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelError, match=r"'japanese-face'.*(not a valid ONNX|cannot load)"):
        load_onnx_embedder(path, "japanese-face")


def test_wrong_input_rank(tmp_path):
    path = tmp_path / "rank3.onnx"
    write_rank3_model(path)
    with pytest.raises(ModelError, match=r"'japanese-face'.*rank 3.*needs rank 4"):
        load_onnx_embedder(path, "japanese-face")


def test_wrong_input_size(tmp_path):
    path = tmp_path / "small.onnx"
    write_pooled_matmul_model(path, size=112)
    with pytest.raises(ModelError, match=r"\['N', 3, 112, 112\].*\[N, 3, 224, 224\]"):
        load_onnx_embedder(path, "japanese-face")


def test_wrong_output_size(tmp_path):
    path = tmp_path / "out256.onnx"
    write_pooled_matmul_model(path, output_size=256)
    with pytest.raises(ModelError, match="256 values per image, but the spec expects 512"):
        load_onnx_embedder(path, "japanese-face")


def test_nan_output(tmp_path):
    path = tmp_path / "nan.onnx"
    write_pooled_matmul_model(path, nan_output=True)
    with pytest.raises(ModelError, match="not finite"):
        load_onnx_embedder(path, "japanese-face")


def test_pinned_sha256_mismatch(tiny_model):
    spec = dataclasses.replace(presets()["japanese-face"], sha256="0" * 64)
    with pytest.raises(ModelError, match="spec pins 0000"):
        OnnxEmbedder(tiny_model[0], spec)


def test_preset_without_a_path_says_how_to_get_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEVAL_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(ModelError, match=r"JAPANESE_FACE_v1\.onnx.*proprietary"):
        load_onnx_embedder(None, "japanese-face")


# --- SFace against OpenCV's own pipeline (real faces) ---------------------------------------------------------


@pytest.fixture(scope="module")
def sface():
    return load_onnx_embedder(shared_file(SFACE), "sface", detector_path=shared_file(YUNET), threads=1)


def opencv_sface(image: np.ndarray) -> tuple[np.ndarray, int]:
    """OpenCV's documented SFace pipeline on a BGR image: YuNet, largest face, alignCrop, feature."""
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    detector = cv2.FaceDetectorYN.create(str(shared_file(YUNET)), "", (bgr.shape[1], bgr.shape[0]), 0.9, 0.3, 5000)
    recognizer = cv2.FaceRecognizerSF.create(str(shared_file(SFACE)), "")
    _, faces = detector.detect(bgr)
    largest = max(faces, key=lambda face: face[2] * face[3])
    return recognizer.feature(recognizer.alignCrop(bgr, largest)).ravel(), len(faces)


def test_sface_matches_opencv_pipeline_on_sample_faces(sface):
    images = sample_faces()
    results = sface.embed_batch(images)
    for image, result in zip(images, results, strict=True):
        reference, faces = opencv_sface(image)
        assert result.ok and result.detection.faces_found == faces
        assert float(result.vector @ unit(reference.astype(np.float64))) > 0.99999
    description = sface.describe()
    assert "yunet" in description["landmarks"].lower()
    assert description["batch"] == {"dynamic": False, "size": 1}
    assert description["files"]["landmarks"]["sha256"].startswith("8f2383e4")
    assert set(description["versions"]) == {"onnxruntime", "opencv"}


def test_sface_records_no_face_as_a_failure(sface):
    result = sface.embed(np.full((200, 200, 3), 128, np.uint8))
    assert not result.ok and "no face found by the YuNet" in result.failure
    assert result.detection.faces_found == 0


def test_largest_of_several_faces_is_embedded_and_counted(sface):
    face = sample_faces(1)[0]
    small = cv2.resize(face, (face.shape[1] // 2, face.shape[0] // 2), interpolation=cv2.INTER_AREA)
    canvas = np.full((face.shape[0], face.shape[1] + small.shape[1] + 20, 3), 255, np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small
    canvas[:, small.shape[1] + 20 :] = face
    result = sface.embed(canvas)
    assert result.ok and result.detection.faces_found == 2
    assert min(x for x, _ in result.detection.landmarks) > small.shape[1] + 20


def test_dlib_landmarks_give_nearly_the_yunet_crop(sface):
    dlib_spec = dataclasses.replace(presets()["sface"], name="sface-dlib", landmarks="dlib")
    dlib_sface = OnnxEmbedder(sface.model_path, dlib_spec, threads=1)
    assert "dlib" in dlib_sface.describe()["landmarks"]
    images = sample_faces()
    pairs = zip(sface.embed_batch(images), dlib_sface.embed_batch(images), strict=True)
    agreement = np.array([float(a.vector @ b.vector) for a, b in pairs])
    # Same face, two landmark detectors. Measured: 0.91-0.99, mean 0.95; dlib's points put on the template's
    # own eye and nose-tip targets instead give 0.75-0.87, mean 0.81.
    assert agreement.mean() > 0.9 and agreement.min() > 0.85


def test_dlib_chip_matches_dlib_get_face_chip(tiny_model):
    import dlib
    import face_recognition_models

    path, weights = tiny_model
    embedder = load_onnx_embedder(path, "japanese-face-dlib-chip", threads=1)
    image = sample_faces(1)[0]
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    rectangle = max(detector(image, 1), key=lambda r: r.area())
    chip = dlib.get_face_chip(image, predictor(image, rectangle), size=224, padding=0.1)
    expected = unit(pooled_matmul(seed_preprocess(chip)[None], weights))[0]
    result = embedder.embed(image)
    np.testing.assert_allclose(result.vector, expected, atol=2e-6)
    assert result.detection.faces_found >= 1 and len(result.detection.landmarks) == 3
