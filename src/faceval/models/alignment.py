"""Face crops for embedding models, and the landmark detectors the crops need.

Three crops: the whole image resized (the seed, for sets of already-cropped faces), dlib's face chip
(``dlib.get_face_chip``, as the seed author's later library does), and a similarity alignment to the standard
ArcFace 112x112 template (what SFace and insightface models are trained on).

YuNet's five landmarks are in the ArcFace template's order: eye on the image's left, eye on the image's right,
nose tip, mouth corner on the image's left, on the image's right. dlib's 5-point model marks eye corners and
the base of the nose instead; they become two eye centres and the nose base, with targets of their own.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# insightface's arcface_dst, the template OpenCV's FaceRecognizerSF.alignCrop uses too.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)

# Where dlib's eye centres (mean of each eye's two corners) and base of the nose fall, on average, in crops
# aligned on YuNet's five points: measured on 538 faces of six public sets (per-set means within 2 px). The
# template's own eye and nose-tip points would shrink the face by 15 % and shift it 6 px down.
DLIB_ARCFACE_TEMPLATE = np.array([[37.35, 53.31], [74.63, 53.09], [56.18, 81.08]])


@functools.cache
def _cv2() -> Any:
    """OpenCV, imported on first use (a run of dlib or of pre-aligned crops never needs it)."""
    import cv2

    # OpenCV 5 warns at every YuNet load that its new graph engine ignores the (default) target: noise to a user.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2


_PIL_FILTERS = {
    "pil_bilinear": Image.Resampling.BILINEAR,
    "pil_bicubic": Image.Resampling.BICUBIC,
    "pil_lanczos": Image.Resampling.LANCZOS,
    "pil_nearest": Image.Resampling.NEAREST,
}
# OpenCV's interpolation flags by name: OpenCV is imported only when one is used.
_CV2_FLAGS = {"cv2_linear": "INTER_LINEAR", "cv2_area": "INTER_AREA", "cv2_cubic": "INTER_CUBIC"}
INTERPOLATIONS = frozenset(_PIL_FILTERS) | frozenset(_CV2_FLAGS)


def resize_whole(image: np.ndarray, size: tuple[int, int], interpolation: str = "pil_bilinear") -> np.ndarray:
    """The whole image resized to ``size`` = (width, height).

    ``pil_*`` filters are what torchvision's ``Resize`` uses on a PIL image (Pillow antialiases when
    shrinking); ``cv2_*`` are OpenCV's, which do not, except ``cv2_area``.
    """
    if interpolation in _PIL_FILTERS:
        return np.asarray(Image.fromarray(image).resize(size, _PIL_FILTERS[interpolation]))
    if interpolation in _CV2_FLAGS:
        cv2 = _cv2()
        return cv2.resize(image, size, interpolation=getattr(cv2, _CV2_FLAGS[interpolation]))
    raise ValueError(f"unknown interpolation {interpolation!r}; choose from {sorted(INTERPOLATIONS)}")


def arcface_template(size: int, points: np.ndarray = ARCFACE_TEMPLATE) -> np.ndarray:
    """Template ``points`` (112x112 frame) for a ``size`` x ``size`` crop, scaled as insightface's
    ``estimate_norm`` scales them."""
    if size % 112 == 0:
        ratio, shift = size / 112.0, 0.0
    elif size % 128 == 0:
        # insightface centres the 112 template in a 128 crop: 8 more pixels on the left.
        ratio, shift = size / 128.0, 8.0 * size / 128.0
    else:
        raise ValueError(f"an ArcFace crop must be a multiple of 112 or 128 pixels wide, not {size}")
    template = np.asarray(points, dtype=np.float64) * ratio
    template[:, 0] += shift
    return template


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of the rotation + uniform scale + shift that best maps ``source`` onto ``target``.

    Least squares over the point pairs (Umeyama 1991), never a reflection: the estimate OpenCV's
    ``FaceRecognizerSF.alignCrop`` and insightface's ``SimilarityTransform`` make.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError(f"need two matching (k, 2) point arrays with k >= 2, got {source.shape} and {target.shape}")
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    source_variance = (source_centred**2).sum() / len(source)
    if source_variance <= 0:
        raise ValueError("the source points all coincide")
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    signs = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(signs) @ vt
    scale = (singular * signs).sum() / source_variance
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]])


def align_arcface(
    image: np.ndarray, landmarks: np.ndarray, size: int = 112, template: np.ndarray = ARCFACE_TEMPLATE
) -> np.ndarray:
    """The ``size`` x ``size`` crop that puts ``landmarks`` on ``template`` (their targets in the 112 frame).

    Bilinear ``warpAffine`` with black borders, as OpenCV's ``alignCrop``.
    """
    matrix = similarity_transform(landmarks, arcface_template(size, template))
    cv2 = _cv2()
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def dlib_eye_centres_and_nose(points: np.ndarray) -> np.ndarray:
    """dlib's five points (0-1: corners of the eye on the image's right, 2-3: of the eye on the image's left,
    4: base of the nose) as eye on the image's left, eye on the image's right (each the mean of its corners),
    base of the nose: the order of `DLIB_ARCFACE_TEMPLATE`."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"dlib's 5-point model gives (5, 2) points, got {points.shape}")
    return np.stack([points[2:4].mean(axis=0), points[0:2].mean(axis=0), points[4]])


@dataclass(frozen=True)
class Face:
    """The largest face a landmark detector found.

    ``box`` is (left, top, right, bottom); ``template`` holds the landmarks' targets in the ArcFace 112 frame;
    ``dlib_shape`` is dlib's ``full_object_detection``, which ``get_face_chip`` needs.
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    template: np.ndarray
    score: float | None
    dlib_shape: Any = None


class YuNetLandmarks:
    """OpenCV's YuNet detector (``cv2.FaceDetectorYN``): boxes and five landmarks.

    YuNet's defaults in OpenCV and opencv_zoo: score threshold 0.9, NMS 0.3, top 5000.
    """

    def __init__(
        self, model_path: Path, score_threshold: float = 0.9, nms_threshold: float = 0.3, top_k: int = 5000
    ) -> None:
        self.model_path = Path(model_path)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self._detector = _cv2().FaceDetectorYN.create(
            str(self.model_path), "", (320, 320), score_threshold, nms_threshold, top_k
        )
        # The detector keeps the input size as state between calls.
        self._lock = threading.Lock()

    def largest_face(self, image: np.ndarray) -> tuple[Face | None, int]:
        """The largest face (by box area) and how many faces were found."""
        height, width = image.shape[:2]
        # YuNet was trained on OpenCV's BGR order.
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        with self._lock:
            self._detector.setInputSize((width, height))
            _, rows = self._detector.detect(bgr)
        if rows is None or len(rows) == 0:
            return None, 0
        row = max(rows, key=lambda r: float(r[2]) * float(r[3]))
        x, y, w, h = (float(v) for v in row[:4])
        box = (round(x), round(y), round(x + w), round(y + h))
        landmarks = row[4:14].astype(np.float64).reshape(5, 2)
        return Face(box, landmarks, ARCFACE_TEMPLATE, float(row[14])), len(rows)


class DlibLandmarks:
    """dlib's face detector and 5-point landmarks: the largest face, its box, score and shape.

    ``detector`` is ``"hog"`` (the seed's, image doubled ``upsample`` times first), ``"cnn"`` (dlib's MMOD
    detector, ``cnn_model_path``) or ``"none"`` (the whole image is the face: pre-cropped sets).
    """

    def __init__(
        self, model_path: Path, upsample: int = 1, detector: str = "hog", cnn_model_path: Path | None = None
    ) -> None:
        import dlib

        if detector not in ("hog", "cnn", "none"):
            raise ValueError(f"dlib detector must be 'hog', 'cnn' or 'none', not {detector!r}")
        if detector == "cnn" and cnn_model_path is None:
            raise ValueError("the dlib CNN detector needs its model file (mmod_human_face_detector.dat)")
        self.model_path = Path(model_path)
        self.upsample = upsample
        self.detector = detector
        self._dlib = dlib
        if detector == "hog":
            self._detector = dlib.get_frontal_face_detector()
        elif detector == "cnn":
            self._detector = dlib.cnn_face_detection_model_v1(str(cnn_model_path))
        self._predictor = dlib.shape_predictor(str(self.model_path))
        self._lock = threading.Lock()

    def _candidates(self, image: np.ndarray) -> list[tuple[Any, float | None]]:
        """Every face rectangle with its detector score."""
        if self.detector == "none":
            height, width = image.shape[:2]
            return [(self._dlib.rectangle(0, 0, width - 1, height - 1), None)]
        if self.detector == "cnn":
            return [(found.rect, float(found.confidence)) for found in self._detector(image, self.upsample)]
        rectangles, scores, _ = self._detector.run(image, self.upsample, 0.0)
        return list(zip(rectangles, map(float, scores), strict=True))

    def largest_face(self, image: np.ndarray) -> tuple[Face | None, int]:
        """The largest face (by box area) and how many faces were found."""
        image = np.ascontiguousarray(image)
        with self._lock:
            candidates = self._candidates(image)
            if not candidates:
                return None, 0
            rectangle, score = max(candidates, key=lambda item: item[0].area())
            shape = self._predictor(image, rectangle)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        box = (rectangle.left(), rectangle.top(), rectangle.right(), rectangle.bottom())
        landmarks = dlib_eye_centres_and_nose(points)
        return Face(box, landmarks, DLIB_ARCFACE_TEMPLATE, score, shape), len(candidates)

    def face_chip(self, image: np.ndarray, face: Face, size: int, padding: float) -> np.ndarray:
        """dlib's own aligned chip around the face's 5-point shape."""
        return self._dlib.get_face_chip(np.ascontiguousarray(image), face.dlib_shape, size=size, padding=padding)
