"""Turned faces in the tracker, on the shared videos with the packaged model: a face that turns keeps its track and
stays plausible, and a turned partial hit of the detector does not take over a tracked face."""

from __future__ import annotations

from dataclasses import replace

import cv2
import pytest

from tracker.config import DEFAULT_SMOOTH, DEFAULT_TRACK
from tracker.crop import CROP_SIZE, box_from_keypoints, crop_face, from_crop, to_gray
from tracker.haar import HaarDetector
from tracker.keypoints import KAGGLE15
from tracker.pipeline import Pipeline
from tracker.sources import VideoSource
from tracker.tracking import Track, Tracker, upright_of


@pytest.fixture(scope="module")
def backend(model_path):
    from engines.select import load_backend

    return load_backend(model_path, "onnxruntime")


def _frame(path, index: int):
    cap = cv2.VideoCapture(str(path))
    for _ in range(index + 1):
        ok, image = cap.read()
        assert ok
    cap.release()
    return to_gray(image)


def test_a_turning_face_keeps_one_track_with_success_from_the_first_frame(shared_data, backend):
    """orlando_bloom.avi: the main face turns between three-quarter and profile (frames 5 and 40 to one side, 130 to
    the other). With the frontal shape alone its profile frames scored below the success mark (confidence
    0.19-0.23 at frames 128-134); judged against the nearest head pose's shape it is written with success on every
    frame, under one id, and the clip's three other ids (the man at the right edge for the first 20 frames, the
    face behind and the small face under the logo from frame 100 on) are each found once."""
    pipeline = Pipeline(HaarDetector(), backend, DEFAULT_TRACK, DEFAULT_SMOOTH)
    rows: dict[int, list] = {}
    with VideoSource(shared_data / "videos" / "orlando_bloom.avi") as src:
        for frame in src:
            for f in pipeline.process(frame).faces:
                rows.setdefault(f.face_id, []).append((frame.index, f.success))
    main = rows[min(rows)]
    assert [i for i, _ in main] == list(range(139))  # tracked from frame 0 to the end, one id
    assert all(ok for _, ok in main)
    assert len(rows) <= 4  # new ids: the main face and the three others, no churn


def test_a_turned_partial_hit_inside_a_tracked_face_does_not_take_the_track(shared_data, backend):
    """0492_03_009_bill_gates.avi, frame 158 (the face turned to three-quarter): the combined detector gives the
    frontal cascade's wide box and the -25 degree pass's half-size box on the mouth and cheek. Matched on bounding
    rectangles, the turned box won the track (its rectangle is 1.33x its side), the track was re-cropped from it,
    shrank onto part of the face and was dropped a few frames later (a new id, with the fine-tuned model). The
    track, placed by the model's keypoints on the face, is matched to the face-sized box."""
    gray = _frame(shared_data / "videos" / "0492_03_009_bill_gates.avi", 158)
    detector = HaarDetector()
    boxes = detector.detect(gray)
    turned = [b for b in boxes if b.angle != 0.0]
    assert len(boxes) == 2 and len(turned) == 1  # as found by the detector on this frame
    face = next(p for p in detector.passes if p.cascade == 1)  # the alt2 cascade's box sits on the face
    (on_face,) = detector.detect(gray, passes=(face,))
    crop, m = crop_face(gray, on_face, CROP_SIZE)
    points = from_crop(backend.predict(crop[None])[0].astype(float), m)
    face_box = box_from_keypoints(points, KAGGLE15, upright=True)
    tracker = Tracker(DEFAULT_TRACK, KAGGLE15)
    tracker.tracks = [Track(1, face_box, face_box, born=150, last_confirmed=150)]
    tracker.last_search = tracker.last_detection = 150
    # the trap: by bounding rectangles the turned box overlaps the track more than the face-sized one does
    wide = next(b for b in boxes if b.angle == 0.0)
    assert face_box.iou(turned[0]) > face_box.iou(wide) > face_box.iou(upright_of(turned[0]))
    (slot,) = tracker.plan(158, boxes)
    assert slot.track is tracker.tracks[0] and slot.detection == wide
    assert slot.box.size > 0.9 * face_box.size and replace(slot.box, angle=0.0).iou(face_box) > 0.3
