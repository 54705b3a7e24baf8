"""The combined cascade detector (tracker.haar) and the check of new candidates (tracker.verify, tracker.tracking):
rotation geometry, suppression, more labelled faces found than by the frontal cascade alone at a bounded false
detection rate on face-free regions of real images, and candidates on face-free regions rejected by the keypoints."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from tests.conftest import MTFL_SPEC
from tracker.config import TrackParams
from tracker.crop import FaceBox, box_from_keypoints, crop_face
from tracker.haar import FRONTAL_ONLY, HaarDetector, HaarParams, parse_angles, parse_cascades, suppress
from tracker.keypoints import KAGGLE15
from tracker.mean_shape import MEAN_SHAPE
from tracker.tracking import Slot, Tracker, candidate_confidence

# Faces per MTFL pose class drawn for the recall test (every class, fixed seed).
PER_POSE = 16


def test_suppress_keeps_the_first_of_overlapping_boxes():
    a, b, c = FaceBox(100, 100, 50), FaceBox(104, 98, 56), FaceBox(300, 100, 50)
    tilted = FaceBox(101, 101, 50, angle=25.0)  # the same face found by the rotation search
    assert suppress([a, b, c, tilted], 0.3) == [a, c]
    assert suppress([b, a], 0.3) == [b]
    assert suppress([FaceBox(100, 100, 50), FaceBox(100, 100, 150)], 0.3) == [FaceBox(100, 100, 50),
                                                                              FaceBox(100, 100, 150)]


def test_cascade_and_angle_options_parse():
    assert parse_cascades("frontal, alt2,profile") == ("frontal", "alt2", "profile")
    assert parse_angles("-25,25") == (-25.0, 25.0)
    assert parse_angles("none") == ()
    for bad in ("", " , "):
        with pytest.raises(ValueError):
            parse_cascades(bad)
    with pytest.raises(ValueError):
        parse_angles("100")
    with pytest.raises(FileNotFoundError):
        HaarDetector(HaarParams(cascades=("no_such_cascade.xml",)))


def test_rotation_search_finds_a_tilted_face_and_its_box_crops_it_upright(ytf_faces):
    """A real face turned by 40 degrees, which the frontal cascade misses: the search at that angle finds it, and
    the box it returns (with its angle) crops the same upright face as the frontal box on the untouched image."""
    img = ytf_faces[0].image
    upright = HaarDetector(FRONTAL_ONLY).detect(img)
    assert len(upright) == 1
    h, w = img.shape[:2]
    turned = cv2.warpAffine(img, cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -40, 1.0), (w, h))
    assert HaarDetector(FRONTAL_ONLY).detect(turned) == []
    found = HaarDetector(HaarParams(cascades=("frontal",), angles=(-40.0, 40.0))).detect(turned)
    assert len(found) == 1 and found[0].angle == 40.0
    ref, _ = crop_face(img, upright[0])
    got, _ = crop_face(turned, found[0])
    wrong, _ = crop_face(turned, FaceBox(found[0].cx, found[0].cy, found[0].size, -40.0))
    assert np.abs(got.astype(float) - ref).mean() < 15 < np.abs(wrong.astype(float) - ref).mean()


@pytest.fixture(scope="module")
def pose_sample(shared_data):
    """PER_POSE MTFL faces of each head-pose class: (images, Kaggle box points, pose)."""
    from train.datasets import load_dataset

    fs = load_dataset(MTFL_SPEC)
    rng = np.random.default_rng(13)
    rows = np.concatenate([rng.choice(np.flatnonzero(fs.attributes[:, 3] == c), PER_POSE, replace=False)
                           for c in range(5)])
    return [fs.load_image(int(i)) for i in rows], fs.box_points[rows], fs.attributes[rows, 3]


def _found(detector: HaarDetector, images, box_points) -> np.ndarray:
    from train.prepare import match_detection

    return np.array([match_detection(detector.detect(img), pts, box_from_keypoints(pts, KAGGLE15)) is not None
                     for img, pts in zip(images, box_points, strict=True)])


def _regions(images, box_points):
    from train.evaluate import face_free_regions

    for img, pts in zip(images, box_points, strict=True):
        for x, y, w, h in face_free_regions(img.shape, [box_from_keypoints(pts, KAGGLE15)]):
            yield img[y : y + h, x : x + w]


def test_combined_detector_finds_more_labelled_faces_at_a_bounded_false_detection_rate(pose_sample):
    images, box_points, pose = pose_sample
    frontal = _found(HaarDetector(FRONTAL_ONLY), images, box_points)
    combined = _found(HaarDetector(), images, box_points)
    profiles = (pose == 0) | (pose == 4)
    assert combined.sum() > frontal.sum()
    assert combined[profiles].sum() > frontal[profiles].sum()
    assert combined[frontal].mean() >= 0.95  # what the frontal cascade finds, the combined one keeps finding
    regions = list(_regions(images, box_points))
    assert len(regions) >= 20
    boxes = sum(len(HaarDetector().detect(r)) for r in regions)
    assert boxes / len(regions) <= 0.25  # raw boxes per face-free region, before verification


def _windows(region: np.ndarray) -> list[FaceBox]:
    """Two face-sized windows of a face-free region (its two ends), as the detector's boxes would be placed."""
    s = min(region.shape)
    return [FaceBox(s / 2, s / 2, s), FaceBox(region.shape[1] - s / 2, region.shape[0] - s / 2, s)]


def test_verification_rejects_face_free_regions_and_accepts_real_faces(pose_sample, model_path):
    """Boxes on face-free regions (what the detector finds there at a loose setting, plus face-sized windows) mostly
    fail the checks the tracker applies to new faces; the boxes the detector puts on the labelled faces pass."""
    from engines.select import load_backend
    from tracker.verify import new_face_checks
    from train.prepare import match_detection

    images, box_points, pose = pose_sample
    backend = load_backend(model_path)
    loose = HaarDetector(HaarParams(min_neighbors=1, min_size=24))
    hits, windows = [], []
    for r in _regions(images, box_points):
        hits += list(new_face_checks(backend, r, loose.detect(r), KAGGLE15))
        windows += list(new_face_checks(backend, r, _windows(r), KAGGLE15))
    assert len(hits) >= 4 and len(windows) >= 40
    det = HaarDetector()
    true_ok = []
    for img, pts in zip(images, box_points, strict=True):
        box = match_detection(det.detect(img), pts, box_from_keypoints(pts, KAGGLE15))
        if box is not None:
            true_ok += list(new_face_checks(backend, img, [box], KAGGLE15))
    assert np.mean(hits + windows) <= 0.1
    assert np.mean(true_ok) >= 0.9


def test_face_check_tells_faces_from_regions_away_from_them(pose_sample):
    """The packaged face check on real crops: labelled faces (landmark boxes) against windows of face-free regions."""
    from tracker.face_check import FaceCheck

    images, box_points, _ = pose_sample
    check = FaceCheck.load()
    faces = np.stack([crop_face(img, box_from_keypoints(p, KAGGLE15))[0] for img, p in zip(images, box_points,
                                                                                         strict=True)])
    windows = [crop_face(r, b)[0] for r in _regions(images, box_points) for b in _windows(r)]
    assert len(windows) >= 40
    assert np.mean(check.probability(faces) >= TrackParams().face_check_min) >= 0.9
    assert np.mean(check.probability(np.stack(windows)) >= TrackParams().face_check_min) <= 0.1


def test_a_new_candidate_becomes_a_track_only_when_its_keypoints_look_like_a_face():
    tr = Tracker(TrackParams(), KAGGLE15)
    good = MEAN_SHAPE * 40.0 + [200, 200]
    det = box_from_keypoints(good, KAGGLE15)
    other = FaceBox(450, 200, det.size)
    rng = np.random.default_rng(0)
    scatter = rng.uniform(-1, 1, (15, 2)) * det.size / 2 + [other.cx, other.cy]
    slots = [Slot(det, None, det), Slot(other, None, other)]
    tracks = tr.update(0, slots, np.stack([good, scatter]), (480, 640))
    assert [t.face_id for t in tracks] == [1]
    assert math.isclose(tracks[0].face_box.cx, det.cx, abs_tol=1.0)
    # a face-shaped answer in a crop the face check calls no face is refused too
    tr2 = Tracker(TrackParams(), KAGGLE15)
    assert tr2.update(0, [Slot(det, None, det, face_prob=0.2)], good[None], (480, 640)) == []
    assert len(tr2.update(1, [Slot(det, None, det, face_prob=0.9)], good[None], (480, 640))) == 1
    # the keypoints' box must also agree with the detection: a face-shaped answer far off the box is refused
    assert candidate_confidence(1.0, det, FaceBox(det.cx + det.size, det.cy, det.size)) == 0.0
    assert candidate_confidence(1.0, det, FaceBox(det.cx, det.cy, det.size, angle=25.0)) == 1.0


def test_the_closer_look_runs_the_trackers_own_cascades():
    from tracker.verify import FaceVerifier

    det = HaarDetector()
    assert FaceVerifier(det).detector is det
