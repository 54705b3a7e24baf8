"""Pure geometry: keypoint flips, face boxes, the affine crop and its exact inverse."""

from __future__ import annotations

import numpy as np
import pytest

from tracker.crop import (
    FaceBox,
    box_from_keypoints,
    crop_face,
    crop_matrix,
    fit_box_calibration,
    from_crop,
    to_crop,
)
from tracker.keypoints import KAGGLE15, flip_keypoints, get_keypoint_set


def test_flip_permutation_swaps_left_and_right_and_is_an_involution():
    perm = KAGGLE15.flip_permutation
    assert perm[KAGGLE15.index("left_eye_center")] == KAGGLE15.index("right_eye_center")
    assert perm[KAGGLE15.index("mouth_left_corner")] == KAGGLE15.index("mouth_right_corner")
    for self_mapped in ("nose_tip", "mouth_center_top_lip", "mouth_center_bottom_lip"):
        assert perm[KAGGLE15.index(self_mapped)] == KAGGLE15.index(self_mapped)
    assert (perm[perm] == np.arange(15)).all()


def test_flip_keypoints_mirrors_x_and_keeps_subject_left_on_image_right(ytf_faces):
    face = ytf_faces[0]
    w = face.image.shape[1]
    flipped = flip_keypoints(face.keypoints, w, KAGGLE15)
    le, re = KAGGLE15.index("left_eye_center"), KAGGLE15.index("right_eye_center")
    # subject's left eye is on the image's right before and after a mirror-and-swap
    assert face.keypoints[le, 0] > face.keypoints[re, 0]
    assert flipped[le, 0] > flipped[re, 0]
    np.testing.assert_allclose(flipped[le], [w - 1 - face.keypoints[re, 0], face.keypoints[re, 1]])
    np.testing.assert_allclose(flip_keypoints(flipped, w, KAGGLE15), face.keypoints)


def test_columns_are_kaggle_names():
    assert KAGGLE15.columns[:4] == [
        "left_eye_center_x", "left_eye_center_y", "right_eye_center_x", "right_eye_center_y"
    ]
    assert len(KAGGLE15.columns) == 30
    with pytest.raises(ValueError, match="unknown keypoint set"):
        get_keypoint_set("nope")


@pytest.mark.parametrize("box", [FaceBox(120.3, 88.1, 100.0), FaceBox(50, 60, 400.0, 23.0), FaceBox(10, 10, 30, -40)])
def test_crop_round_trip_is_exact(box, ytf_faces):
    pts = ytf_faces[1].keypoints
    m = crop_matrix(box)
    back = from_crop(to_crop(pts, m), m)
    assert np.abs(back - pts).max() < 0.01


def test_crop_matrix_maps_box_edges_to_crop_edges():
    box = FaceBox(100.0, 50.0, 48.0)
    m = crop_matrix(box, 96)
    # left edge of the box -> -0.5, right edge -> 95.5, centre -> 47.5
    np.testing.assert_allclose(to_crop(np.array([[76.0, 26.0], [124.0, 74.0], [100.0, 50.0]]), m),
                               [[-0.5, -0.5], [95.5, 95.5], [47.5, 47.5]])


@pytest.mark.parametrize("size", [60.0, 300.0])  # upscaling and the area-averaged downscaling path
@pytest.mark.parametrize("angle", [0.0, 20.0])
def test_crop_face_puts_image_content_where_the_matrix_says(size, angle):
    img = np.zeros((480, 640), np.uint8)
    dot = np.array([330.0, 215.0])
    r = max(2, int(size / 40))
    img[int(dot[1]) - r : int(dot[1]) + r + 1, int(dot[0]) - r : int(dot[0]) + r + 1] = 255
    box = FaceBox(320.0, 240.0, size, angle)
    crop, m = crop_face(img, box, 96)
    expected = to_crop(dot, m)
    ys, xs = np.nonzero(crop > 60)
    weights = crop[ys, xs].astype(float)
    centroid = np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()
    assert np.abs(centroid - expected).max() < 0.6


def test_face_box_xywh_round_trip_and_iou():
    b = FaceBox.from_xywh(10, 20, 80, 80)
    assert b.to_xywh() == pytest.approx((10, 20, 80, 80))
    assert b.iou(b) == pytest.approx(1.0)
    assert b.iou(FaceBox.from_xywh(50, 20, 80, 80)) == pytest.approx(40 * 80 / (2 * 6400 - 40 * 80))
    assert FaceBox(0, 0, 10, 90).to_xywh() == pytest.approx((-5, -5, 10, 10))


def test_box_from_keypoints_matches_haar_boxes_on_real_faces(ytf_faces):
    from tracker.haar import HaarDetector

    det = HaarDetector()
    ious = []
    for face in ytf_faces:
        boxes = det.detect(face.image)
        guess = box_from_keypoints(face.keypoints, KAGGLE15)
        assert guess is not None
        if boxes:
            ious.append(max(b.iou(guess) for b in boxes))
    assert len(ious) >= 4
    assert np.median(ious) > 0.7


def test_box_from_keypoints_needs_eyes_and_mouth(mtfl_faces):
    pts = mtfl_faces[0].keypoints.copy()
    assert box_from_keypoints(pts, KAGGLE15) is not None  # MTFL's 5 points suffice
    pts[KAGGLE15.index("mouth_left_corner")] = np.nan
    assert box_from_keypoints(pts, KAGGLE15) is None


def test_rotated_box_takes_the_roll_from_the_eye_line(ytf_faces):
    pts = ytf_faces[2].keypoints
    c = pts.mean(axis=0)
    t = np.radians(25.0)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    rolled = (pts - c) @ rot.T + c
    b0 = box_from_keypoints(pts, KAGGLE15, upright=False)
    b1 = box_from_keypoints(rolled, KAGGLE15, upright=False)
    assert b1.angle - b0.angle == pytest.approx(25.0, abs=1e-6)
    # cropping the rolled face with its rolled box gives the same crop coordinates as the original
    np.testing.assert_allclose(to_crop(rolled, crop_matrix(b1)), to_crop(pts, crop_matrix(b0)), atol=1e-6)


def test_calibration_fit_recovers_a_known_map(ytf_faces):
    from tracker.crop import BoxCalibration

    truth = BoxCalibration(0.3, 0.05, 1.4, 1.2)
    pts = np.array([f.keypoints for f in ytf_faces])
    boxes = [box_from_keypoints(p, KAGGLE15, truth) for p in pts]
    fit = fit_box_calibration(pts, boxes, KAGGLE15)
    assert fit.along == pytest.approx(0.3, abs=1e-6) and fit.across == pytest.approx(0.05, abs=1e-6)
    assert fit.size_eye == pytest.approx(1.4, abs=1e-6) and fit.size_mouth == pytest.approx(1.2, abs=1e-6)


def test_whole_image_box_crops_a_96_image_pixel_for_pixel():
    img = np.random.default_rng(0).integers(0, 256, (96, 96)).astype(np.uint8)
    crop, m = crop_face(img, FaceBox.whole_image(img.shape), 96)
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    assert (crop == img).all()


def test_pixel_extent_is_the_whole_pixels_of_the_bounding_rectangle_clipped_to_the_image():
    box = FaceBox(20.0, 30.0, 10.0)  # x 15..25, y 25..35
    assert box.pixel_extent((60, 80)) == (15, 25, 25, 35)
    assert box.pixel_extent((60, 80), margin=2) == (13, 23, 27, 37)
    assert FaceBox(20.3, 30.6, 10.0).pixel_extent((60, 80)) == (15, 25, 26, 36)  # partial pixels count whole
    assert FaceBox(78.0, 2.0, 10.0).pixel_extent((60, 80)) == (73, 0, 80, 7)  # clipped at the corner
    x0, y0, x1, y1 = FaceBox(200.0, 30.0, 10.0).pixel_extent((60, 80))  # outside: empty
    assert x1 <= x0
    assert FaceBox(40.0, 30.0, 10.0, 45.0).pixel_extent((60, 80)) == (32, 22, 48, 38)  # a turned box's extent
