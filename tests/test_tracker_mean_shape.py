"""The mean-shape constants match the Kaggle label table, and the shape distance separates real faces from
broken shapes."""

from __future__ import annotations

import numpy as np
import pytest

from tracker.confidence import shape_score
from tracker.keypoints import KAGGLE15
from tracker.mean_shape import (
    DISTANCE_QUANTILES,
    MEAN_SHAPE,
    SHAPE_STD,
    align_shape,
    fit_mean_shape,
    load_kaggle_shapes,
    shape_distance,
)


@pytest.fixture(scope="module")
def kaggle_shapes(shared_data) -> np.ndarray:
    return load_kaggle_shapes(str(shared_data / "kaggle" / "facial_keypoints_labels.csv"))


def test_constants_are_recomputed_from_the_kaggle_table(kaggle_shapes):
    assert kaggle_shapes.shape == (2140, 15, 2)  # the complete rows, as the shared README says
    mean, std, quantiles = fit_mean_shape(kaggle_shapes)
    np.testing.assert_allclose(MEAN_SHAPE, mean, atol=1e-4)
    np.testing.assert_allclose(SHAPE_STD, std, atol=1e-4)
    np.testing.assert_allclose(DISTANCE_QUANTILES, quantiles, atol=1e-4)


def test_mean_shape_is_normalised_and_subject_left_is_image_right():
    np.testing.assert_allclose(MEAN_SHAPE.mean(axis=0), 0.0, atol=1e-4)
    assert abs(np.sqrt((MEAN_SHAPE**2).sum(axis=1).mean()) - 1.0) < 1e-4
    le, re = MEAN_SHAPE[KAGGLE15.index("left_eye_center")], MEAN_SHAPE[KAGGLE15.index("right_eye_center")]
    nose, lip = MEAN_SHAPE[KAGGLE15.index("nose_tip")], MEAN_SHAPE[KAGGLE15.index("mouth_center_bottom_lip")]
    assert le[0] > 0 > re[0] and le[1] < nose[1] < lip[1]


def test_alignment_removes_position_scale_and_roll(kaggle_shapes):
    s = kaggle_shapes[7]
    t = np.radians(25.0)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    moved = s @ rot.T * 3.7 + [400.0, -50.0]
    np.testing.assert_allclose(align_shape(moved, MEAN_SHAPE), align_shape(s, MEAN_SHAPE), atol=1e-9)
    assert abs(shape_distance(moved) - shape_distance(s)) < 1e-9


def test_real_faces_score_high_and_broken_shapes_low(kaggle_shapes, ytf_faces):
    real = [shape_score(s) for s in kaggle_shapes[::10]]
    assert np.mean(np.array(real) == 1.0) > 0.9
    # YouTube-Faces labels (another markup mapped to Kaggle's points) are plausible too
    assert all(shape_score(f.keypoints) > 0.5 for f in ytf_faces)
    mirrored = kaggle_shapes[0] * [-1, 1]  # mirrored without swapping left/right: not a face
    assert shape_score(mirrored) < 0.05
    collapsed = kaggle_shapes[0].copy()
    collapsed[11:] = collapsed[0]  # mouth on the eye
    assert shape_score(collapsed) < 0.05
