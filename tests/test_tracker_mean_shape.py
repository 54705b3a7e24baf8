"""The mean-shape constants match the Kaggle label table (frontal) and the YouTube-Faces and MTFL labels (turned
and profile), and the shape score separates real faces of every head pose from broken shapes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import MTFL_SPEC, YTF_SPEC
from tracker.confidence import shape_score
from tracker.keypoints import KAGGLE15
from tracker.mean_shape import (
    DISTANCE_QUANTILES,
    MEAN_SHAPE,
    POSE_EDGES,
    POSE_SHAPES,
    PROFILE_QUANTILES,
    PROFILE_SHAPE,
    PROFILE_STD,
    SHAPE_STD,
    TURNED_QUANTILES,
    TURNED_SHAPE,
    TURNED_STD,
    YAW_POINTS,
    align_shape,
    fit_mean_shape,
    fit_pose_shapes,
    load_kaggle_shapes,
    mirror_shapes,
    pose_distances,
    pose_edges,
    shape_distance,
    yaw_proxy,
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


@pytest.fixture(scope="module")
def mtfl_poses(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """The MTFL faces' Kaggle points (the five labelled, NaN elsewhere) and pose labels 0..4."""
    from train.datasets import load_dataset

    fs = load_dataset(MTFL_SPEC)
    return fs.box_points, fs.attributes[:, 3].astype(int)


def test_pose_constants_are_recomputed_from_the_youtube_faces_and_mtfl_labels(mtfl_poses):
    from train.datasets import load_dataset

    edges = pose_edges(*mtfl_poses)
    np.testing.assert_allclose(POSE_EDGES, edges, atol=1e-4)
    ytf = load_dataset(YTF_SPEC).box_points
    assert ytf.shape == (3531, 15, 2) and np.isfinite(ytf).all()
    (turned, turned_std, turned_q), (profile, profile_std, profile_q) = fit_pose_shapes(ytf, edges)
    for got, want in ((TURNED_SHAPE, turned), (TURNED_STD, turned_std), (TURNED_QUANTILES, turned_q),
                      (PROFILE_SHAPE, profile), (PROFILE_STD, profile_std), (PROFILE_QUANTILES, profile_q)):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_the_yaw_proxy_orders_the_mtfl_pose_classes_and_a_mirror_turns_it(mtfl_poses):
    points, poses = mtfl_poses
    yaw = yaw_proxy(points)
    medians = [np.median(yaw[poses == c]) for c in range(5)]  # left profile, left, frontal, right, right profile
    assert all(np.diff(medians) > 0)
    assert abs(medians[2]) < 0.05 < POSE_EDGES[0] < abs(medians[1]) < POSE_EDGES[1] < abs(medians[0])
    np.testing.assert_allclose(yaw_proxy(mirror_shapes(points)), -yaw, atol=1e-12)
    assert abs(yaw_proxy(MEAN_SHAPE)) < 0.01 and POSE_EDGES[0] < yaw_proxy(TURNED_SHAPE) < POSE_EDGES[1]
    assert yaw_proxy(PROFILE_SHAPE) > POSE_EDGES[1]


def test_turned_and_profile_faces_are_plausible_and_frontal_ones_still_are(mtfl_poses, kaggle_shapes):
    """The MTFL faces (their five points; not the faces the pose shapes were fitted on): the frontal shape alone
    judged half of the profile faces implausible (below the tracker's new-face mark); the nearest pose's shape
    judges nearly all of them plausible, and frontal Kaggle faces score as before."""
    points, poses = mtfl_poses
    idx = [KAGGLE15.index(n) for n in YAW_POINTS]
    for c in (0, 4):  # left and right profile
        r = np.array([pose_distances(p, idx) for p in points[poses == c]])
        frontal_only, nearest = 0.5 ** np.maximum(0.0, r[:, 0] - 1.0), 0.5 ** np.maximum(0.0, r.min(axis=1) - 1.0)
        assert np.mean(frontal_only < 0.25) > 0.4
        assert np.mean(nearest >= 0.5) > 0.95 and np.mean(nearest == 1.0) > 0.75
        assert np.mean([shape_score(p, idx) for p in points[poses == c]]) == pytest.approx(nearest.mean())
    for p in kaggle_shapes[::50]:  # the frontal pose is the Kaggle shape as before: its score did not change
        assert shape_score(p) == pytest.approx(0.5 ** max(0.0, shape_distance(p) / DISTANCE_QUANTILES[19] - 1.0))


def test_broken_shapes_fit_no_pose(kaggle_shapes):
    rng = np.random.default_rng(3)
    assert len(POSE_SHAPES) == 5
    for s in kaggle_shapes[:100:10]:
        assert shape_score(s[rng.permutation(15)]) < 0.05  # points in the wrong places
        assert shape_score(s * [-1, 1]) < 0.05  # mirrored without swapping left and right
        assert shape_score(mirror_shapes(s)) > 0.5  # mirrored and swapped: a face
    assert max(shape_score(p) for p in rng.uniform(-1.0, 1.0, (200, 15, 2))) < 0.05  # scattered points
