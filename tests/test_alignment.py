"""Face crops: the similarity fit, the ArcFace warp, dlib's landmark conversion, the whole-image resize."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from faceval.models.alignment import (
    ARCFACE_TEMPLATE,
    DLIB_ARCFACE_TEMPLATE,
    DlibLandmarks,
    YuNetLandmarks,
    align_arcface,
    arcface_template,
    dlib_eye_centres_and_nose,
    resize_whole,
    similarity_transform,
)
from faceval.models.model_files import locate_model

from shared_data import sample_faces, shared_file


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def rotation_scale(angle_degrees: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    angle = np.deg2rad(angle_degrees)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.hstack([rotation, np.array(shift)[:, None]])


def test_template_maps_onto_itself():
    np.testing.assert_allclose(similarity_transform(ARCFACE_TEMPLATE, ARCFACE_TEMPLATE), np.eye(2, 3), atol=1e-12)


@pytest.mark.parametrize(("angle", "scale", "shift"), [(17.0, 2.5, (130.0, -40.0)), (-75.0, 0.4, (3.0, 9.0))])
def test_known_rotation_scale_and_shift_are_recovered(angle, scale, shift):
    truth = rotation_scale(angle, scale, shift)
    moved = apply(truth, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(similarity_transform(ARCFACE_TEMPLATE, moved), truth, atol=1e-10)
    # And back: the fit from the moved points to the template is the inverse.
    back = similarity_transform(moved, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(apply(back, moved), ARCFACE_TEMPLATE, atol=1e-10)


def test_fit_is_the_linear_least_squares_solution_and_never_a_reflection():
    # Independent oracle: x' = a x - b y + tx, y' = b x + a y + ty is linear in (a, b, tx, ty).
    rng = np.random.default_rng(3)
    noisy = apply(rotation_scale(8.0, 1.3, (5.0, 7.0)), ARCFACE_TEMPLATE) + rng.normal(0, 0.5, (5, 2))
    x, y = ARCFACE_TEMPLATE.T
    design = np.concatenate(
        [np.stack([x, -y, np.ones(5), np.zeros(5)], 1), np.stack([y, x, np.zeros(5), np.ones(5)], 1)]
    )
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, np.concatenate([noisy[:, 0], noisy[:, 1]]), rcond=None)
    expected = np.array([[a, -b, tx], [b, a, ty]])
    np.testing.assert_allclose(similarity_transform(ARCFACE_TEMPLATE, noisy), expected, atol=1e-9)
    mirrored = ARCFACE_TEMPLATE * [-1, 1]
    assert np.linalg.det(similarity_transform(ARCFACE_TEMPLATE, mirrored)[:, :2]) > 0


def test_fit_refuses_degenerate_points():
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE)
    with pytest.raises(ValueError, match="matching"):
        similarity_transform(ARCFACE_TEMPLATE[:3], ARCFACE_TEMPLATE)


def test_template_scaling_follows_insightface():
    np.testing.assert_allclose(arcface_template(224), ARCFACE_TEMPLATE * 2)
    np.testing.assert_allclose(arcface_template(128), ARCFACE_TEMPLATE + np.array([8.0, 0.0]))
    with pytest.raises(ValueError, match="multiple of 112 or 128"):
        arcface_template(100)


def test_alignment_undoes_a_known_warp():
    # A smooth 112x112 face-sized pattern, warped into a larger photo by a known similarity transform:
    # aligning on the warped template points must give the pattern back.
    y, x = np.mgrid[0:112, 0:112]
    pattern = np.stack([x * 2, y * 2, 128 + 100 * np.sin(x / 9.0) * np.cos(y / 7.0)], axis=-1).astype(np.uint8)
    truth = rotation_scale(-23.0, 1.8, (90.0, 60.0))
    photo = cv2.warpAffine(pattern, truth, (400, 360), flags=cv2.INTER_LINEAR)
    aligned = align_arcface(photo, apply(truth, ARCFACE_TEMPLATE))
    inner = (slice(8, 104), slice(8, 104))  # the borders resample outside the warped pattern
    assert np.abs(aligned[inner].astype(int) - pattern[inner]).mean() < 2.0


def test_dlib_points_become_eye_centres_and_nose():
    # dlib order: corners of the eye on the image's right (outer, inner), of the left one (outer, inner), nose.
    points = np.array([[80.0, 40.0], [64.0, 42.0], [20.0, 41.0], [36.0, 43.0], [50.0, 70.0]])
    np.testing.assert_allclose(dlib_eye_centres_and_nose(points), [[28.0, 42.0], [72.0, 41.0], [50.0, 70.0]])
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        dlib_eye_centres_and_nose(points[:4])


def test_dlib_template_keeps_the_crop_of_yunet_on_real_faces():
    yunet = YuNetLandmarks(shared_file("models/yunet_2023mar/face_detection_yunet_2023mar.onnx"))
    dlib_source = DlibLandmarks(locate_model("dlib-landmarks-5"))
    shifts, naive_shifts = [], []
    for image in sample_faces():
        (yunet_face, _), (dlib_face, _) = yunet.largest_face(image), dlib_source.largest_face(image)
        assert dlib_face.template is DLIB_ARCFACE_TEMPLATE and len(dlib_face.landmarks) == 3
        # Where the face's five features land in the crop, aligned on YuNet's points or on dlib's.
        in_yunet_crop = apply(similarity_transform(yunet_face.landmarks, ARCFACE_TEMPLATE), yunet_face.landmarks)
        for template, found in ((DLIB_ARCFACE_TEMPLATE, shifts), (ARCFACE_TEMPLATE[:3], naive_shifts)):
            in_dlib_crop = apply(similarity_transform(dlib_face.landmarks, template), yunet_face.landmarks)
            found.append(np.linalg.norm(in_dlib_crop - in_yunet_crop, axis=1).mean())
    # Measured: 2.5 px on average; the template's own eye and nose-tip targets (dlib marks the base of the
    # nose, not its tip) give 6.3 px.
    assert np.mean(shifts) < 3.5 and np.mean(naive_shifts) > 5.0


def test_whole_image_resize_is_pillow_or_opencv_as_named():
    image = np.random.default_rng(1).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(image).resize((224, 224), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(resize_whole(image, (224, 224), "pil_bilinear"), pil)
    opencv = cv2.resize(image, (50, 40), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(resize_whole(image, (50, 40), "cv2_area"), opencv)
    with pytest.raises(ValueError, match="unknown interpolation"):
        resize_whole(image, (50, 40), "bilinear")
