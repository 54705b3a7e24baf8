"""Search rounds that look past the tracked faces (TrackParams.mask_tracked): the tracked faces are blanked out
of the whole-frame search (tracker.pipeline.blank_out) and looked at one by one (FaceVerifier.faces_near), so
the cascades skip their costliest windows while new faces are found as before. Pure geometry, then real faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.select import load_backend
from tracker.config import DEFAULT_SMOOTH, TrackParams
from tracker.crop import FaceBox, to_gray
from tracker.haar import HaarDetector
from tracker.pipeline import Pipeline, blank_out, looks_near
from tracker.sources import VideoSource
from tracker.tracking import SEARCH, crowds
from tracker.verify import FaceVerifier


@pytest.fixture(scope="module")
def backend(model_path):
    return load_backend(model_path, "onnxruntime")


def test_blank_out_fills_each_box_with_its_mean_and_leaves_the_rest():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (60, 80), dtype=np.uint8)
    assert blank_out(gray, []) is gray
    before = gray.copy()
    box = FaceBox(20.0, 30.0, 10.0)  # upright extent x 15..25, y 25..35
    out = blank_out(gray, [box, FaceBox(78.0, 2.0, 10.0)])  # the second one reaches over the corner
    assert out is not gray and np.array_equal(gray, before)  # a copy: the frame itself is never changed
    inside = out[25:35, 15:25]
    assert (inside == round(float(gray[25:35, 15:25].mean()))).all()
    assert (out[0:7, 73:80] == round(float(gray[0:7, 73:80].mean()))).all()
    untouched = np.ones(gray.shape, bool)
    untouched[25:35, 15:25] = untouched[0:7, 73:80] = False
    assert np.array_equal(out[untouched], gray[untouched])
    turned = blank_out(gray, [FaceBox(40.0, 30.0, 10.0, 45.0)])  # a turned box: its upright extent, 14.1 wide
    extent = (slice(22, 38), slice(32, 48))  # x 32.9..47.1, y 22.9..37.1: whole pixels 32..47, 22..37
    assert (turned[extent] == round(float(gray[extent].mean()))).all()
    changed = turned != gray
    changed[extent] = False
    assert not changed.any()


def test_where_a_masked_search_looks_one_by_one():
    mask_a, mask_b = FaceBox(50.0, 50.0, 40.0), FaceBox(200.0, 50.0, 40.0)
    moved = FaceBox(60.0, 55.0, 42.0)  # the face of mask_a, moved on since the last whole-frame round
    born = FaceBox(400.0, 50.0, 40.0)  # a face tracked since (not blanked out: the search sees it)
    # the tracked face where it is now, and the mask no tracked face overlaps any more (where one was)
    assert looks_near([moved, born], [mask_a, mask_b]) == [moved, mask_b]
    assert looks_near([moved], []) == []


@pytest.fixture(scope="module")
def two_faces(shared_data) -> tuple[np.ndarray, FaceBox, FaceBox]:
    """Gates | Trump side by side (frame 20 of each shared clip) and the combined detector's box of each."""
    frames = []
    for name in ("0492_03_009_bill_gates.avi", "0553_01_006_donald_trump.avi"):
        with VideoSource(shared_data / "videos" / name) as src:
            frames.append(cv2.resize(next(f for f in src if f.index == 20).image, (320, 240)))
    gray = to_gray(np.hstack(frames))
    boxes = HaarDetector().detect(gray)
    left = [b for b in boxes if b.cx < 320]
    right = [b for b in boxes if b.cx >= 320]
    assert left and right
    return gray, left[0], right[0]


def test_a_search_past_a_tracked_face_still_finds_the_other_and_the_look_near_finds_the_tracked_one(
        two_faces, backend):
    gray, gates, trump = two_faces
    pipeline = Pipeline(HaarDetector(), backend, TrackParams(), DEFAULT_SMOOTH)
    passes = pipeline.detector.passes[:4]  # a search round's: the frontal pass and three others
    plain = pipeline._whole(gray, SEARCH, passes)
    assert [b for b in plain if crowds(b, [gates], 0.9)]  # the search of the whole frame finds Gates ...
    found = pipeline._whole(gray, SEARCH, passes, masks=(gates,))
    assert not [b for b in found if crowds(b, [gates], 0.9)]  # ... the one past him finds nothing there
    assert max(b.iou(trump) for b in found) > 0.6  # and Trump as before
    near = pipeline._near(gray, [gates], passes)
    assert near and max(b.iou(gates) for b in near) > 0.6  # Gates, found on his own at about his size
    verifier = FaceVerifier(pipeline.detector)
    assert not verifier.faces_near(blank_out(gray, [gates.scaled(1.6)]), gates, passes, work_size=48)


def _run(pipeline: Pipeline, path) -> tuple[dict[int, int], list[tuple], int]:
    """({face id: frames written with success}, the masks of each search round, how many tracked faces the
    search rounds found (matched to a detection, not only kept by the closer look)) over the video."""
    frames: dict[int, int] = {}
    searches: list[tuple] = []
    matched = 0
    whole, plan = pipeline._whole, pipeline.tracker.plan
    tracked: set = set()  # every tracked face's box after a frame

    def spy(gray, kind, passes=None, detector=None, masks=()):
        if kind == SEARCH:
            assert all(m in tracked for m in masks)  # what a search blanks out are tracked faces (as they were)
            searches.append(masks)
        return whole(gray, kind, passes, detector, masks)

    def plan_spy(index, detections, judged=None):
        nonlocal matched
        slots = plan(index, detections, judged)
        if detections is not None and judged is None and index != 0:
            matched += sum(s.track is not None and s.detection is not None for s in slots)
        return slots

    pipeline._whole, pipeline.tracker.plan = spy, plan_spy
    with VideoSource(path) as src:
        for frame in src:
            for f in pipeline.process(frame).faces:
                frames[f.face_id] = frames.get(f.face_id, 0) + int(f.success)
            tracked.update(t.face_box for t in pipeline.tracker.tracks)
    return frames, searches, matched


def test_searches_past_the_tracked_faces_find_the_same_people_in_a_shared_video(shared_data, backend):
    """orlando_bloom: a turning face and smaller ones beside and behind it that come into view mid-shot. Searches
    that blank out the tracked faces find the same people, in about as many frames, as searches of the whole
    frame, and every search blanked out the tracked faces."""
    path = shared_data / "videos" / "orlando_bloom.avi"
    plain, plain_masks, plain_matched = _run(
        Pipeline(HaarDetector(), backend, TrackParams(mask_tracked=False), DEFAULT_SMOOTH), path)
    masked, masked_masks, masked_matched = _run(Pipeline(HaarDetector(), backend, TrackParams(), DEFAULT_SMOOTH),
                                                path)
    assert not any(plain_masks) and masked_masks and all(masked_masks)
    # the tracked faces are found by the look at each (blanked out of the search, they would be kept only by
    # the closer look otherwise), about as often as the whole-frame search found them
    assert plain_matched >= 5 and masked_matched >= 0.9 * plain_matched
    people = sorted(n for n in plain.values() if n >= 10)
    assert len(people) >= 3
    assert sorted(n for n in masked.values() if n >= 10) == pytest.approx(people, abs=10)
    assert sum(masked.values()) >= 0.95 * sum(plain.values())


def _beside(big: np.ndarray, small: np.ndarray, scale: float, spacing: float) -> tuple[np.ndarray, FaceBox, FaceBox]:
    """A 640x480 grey canvas with `big`'s face at (300, 240) and `small`'s face, scaled to `scale` x the big
    one's side, to its right at `spacing` x the closest spacing a new face may have beside a tracked one
    (`crowds` at the default new_face_gap 0.9): (canvas, the big face's box, the small face's box)."""
    detector = HaarDetector()
    b, s = detector.detect(big)[0], detector.detect(small)[0]
    canvas = np.zeros((480, 640), np.uint8)
    ox, oy = 300 - round(b.cx), 240 - round(b.cy)
    canvas[oy:oy + big.shape[0], ox:ox + big.shape[1]] = big
    k = scale * b.size / s.size
    small = cv2.resize(small, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    side = s.size * k
    cx = 300 + spacing * 0.9 * (side + b.size) / 2.0
    r = round(side)  # the small face's box at twice its side, pasted centred there
    x0, y0 = round(s.cx * k) - r, round(s.cy * k) - r
    patch = small[max(0, y0):y0 + 2 * r, max(0, x0):x0 + 2 * r]
    px, py = round(cx) - r + max(0, -x0), 240 - r + max(0, -y0)
    canvas[py:py + patch.shape[0], px:px + patch.shape[1]] = patch
    return canvas, FaceBox(300.0 + b.cx - round(b.cx), 240.0 + b.cy - round(b.cy), b.size), FaceBox(cx, 240.0, side)


def test_a_smaller_face_right_beside_a_tracked_one_is_found_past_it_as_in_the_whole_frame(shared_data, backend):
    """Two faces as close as the tracker lets a new face be to a tracked one (and 10% further): blanking the
    tracked face out does not hide the new one from the search, at half and three quarters of its size."""
    faces = []
    for name in ("0492_03_009_bill_gates.avi", "0553_01_006_donald_trump.avi"):
        with VideoSource(shared_data / "videos" / name) as src:
            faces.append([to_gray(f.image) for f in src if f.index in (40, 100, 160)])
    pipeline = Pipeline(HaarDetector(), backend, TrackParams(), DEFAULT_SMOOTH)
    passes = pipeline.detector.passes[:4]
    cases = []  # (the whole-frame search, the search past the tracked face) would start the new face
    for big, small in zip(*faces, strict=True):
        for scale in (0.5, 0.75):
            for spacing in (1.0, 1.1):
                canvas, tracked, new = _beside(big, small, scale, spacing)
                cases.append(tuple(
                    # a box on the new face that does not crowd the tracked one: what a new face starts from
                    any(b.iou(new) > 0.4 and not crowds(b, [tracked], 0.9)
                        for b in pipeline._whole(canvas, SEARCH, passes, masks=masks))
                    for masks in ((), (tracked,))))
    assert sum(whole for whole, _ in cases) >= 6  # of 12: at the closest spacing the boxes often crowd
    assert all(past for whole, past in cases if whole)  # every one the whole frame gives, the masked search too
