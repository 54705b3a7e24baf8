"""Which detector passes a tracker round runs (tracker.haar.round_passes, HaarDetector.detect(passes=)), that the
tracker with passes spread over its search rounds still finds the faces of a shared video with turned faces,
and the live view's detection thread at a lower OS priority with OpenCV on one thread (tracker.live)."""

from __future__ import annotations

import os
import sys
import threading

import cv2
import numpy as np
import pytest

from tracker.config import DEFAULT_SMOOTH, DEFAULT_TRACK, TrackParams
from tracker.haar import FRONTAL_ONLY, HaarDetector, HaarParams, Pass, detector_passes, round_passes
from tracker.live import live_opencv_threads
from tracker.pipeline import Pipeline
from tracker.sources import VideoSource
from tracker.tracking import SEARCH

PASSES = detector_passes(HaarParams())


def test_the_default_detector_passes_in_trust_order():
    assert PASSES == (Pass(0), Pass(1), Pass(2), Pass(2, mirror=True), Pass(0, angle=-25.0), Pass(0, angle=25.0))
    assert [p.first for p in PASSES] == [True, False, False, False, False, False]
    assert detector_passes(FRONTAL_ONLY) == (Pass(0),)


@pytest.mark.parametrize("extra", [1, 2, 3])
def test_round_passes_run_the_first_pass_always_and_every_other_pass_within_a_few_rounds(extra):
    rest = len(PASSES) - 1
    rounds = [round_passes(PASSES, r, extra) for r in range(rest)]
    for chosen in rounds:
        assert chosen[0] == PASSES[0] and len(chosen) == 1 + extra
        assert list(chosen) == sorted(chosen, key=PASSES.index)  # trust order kept (suppression order)
    # every extra pass within ceil(rest / extra) rounds, and the rotation repeats after `rest` rounds
    need = -(-rest // extra)
    assert set().union(*rounds[:need]) == set(PASSES)
    assert round_passes(PASSES, rest, extra) == rounds[0]


def test_round_passes_all_or_only_the_first():
    assert round_passes(PASSES, 7, -1) == PASSES
    assert round_passes(PASSES, 7, len(PASSES) - 1) == PASSES
    assert round_passes(PASSES, 7, 99) == PASSES
    assert round_passes(PASSES, 7, 0) == PASSES[:1]


def test_detect_with_a_subset_of_passes_on_real_faces(ytf_faces):
    """The first pass alone is the frontal cascade alone; all passes are the default detect; a face turned by
    40 degrees is found by exactly the rounds that run the turned pass."""
    both = HaarDetector(HaarParams(cascades=("frontal",), angles=(-40.0, 40.0)))
    frontal = HaarDetector(FRONTAL_ONLY)
    combined = HaarDetector()
    for face in ytf_faces[:4]:
        assert combined.detect(face.image, combined.passes[:1]) == frontal.detect(face.image)
        assert combined.detect(face.image, combined.passes) == combined.detect(face.image)
    img = ytf_faces[0].image
    h, w = img.shape[:2]
    turned = cv2.warpAffine(img, cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -40, 1.0), (w, h))
    for r in range(2):
        chosen = round_passes(both.passes, r, 1)
        found = both.detect(turned, chosen)
        assert [b.angle for b in found] == ([40.0] if Pass(0, angle=40.0) in chosen else [])


def _faces_per_id(pipeline: Pipeline, path) -> dict[int, int]:
    """{face id: frames it was written with success} over the video, one frame after another."""
    frames: dict[int, int] = {}
    with VideoSource(path) as src:
        for frame in src:
            for f in pipeline.process(frame).faces:
                if f.success:
                    frames[f.face_id] = frames.get(f.face_id, 0) + 1
    return frames


@pytest.fixture(scope="module")
def backend(model_path):
    from engines.select import load_backend

    return load_backend(model_path, "onnxruntime")


def test_tracker_with_passes_spread_over_rounds_still_finds_the_turned_faces_of_a_shared_video(
        shared_data, backend):
    """orlando_bloom (a turning face and two smaller ones in the background that only the extra passes find):
    with the default schedule (the frontal pass and 3 others per search round) the tracker finds the same
    people as with every pass in every round, in about as many frames, and runs fewer passes."""
    path = shared_data / "videos" / "orlando_bloom.avi"
    detector = HaarDetector()
    every = Pipeline(detector, backend, TrackParams(search_passes=-1), DEFAULT_SMOOTH)
    spread = Pipeline(detector, backend, DEFAULT_TRACK, DEFAULT_SMOOTH)
    ran: list[int] = []
    whole = spread._whole
    spread._whole = lambda gray, kind, passes=None: (ran.append(len(passes or PASSES)) if kind == SEARCH
                                                     else None) or whole(gray, kind, passes)
    all_ids, spread_ids = _faces_per_id(every, path), _faces_per_id(spread, path)
    people = sorted(n for n in all_ids.values() if n >= 10)
    assert len(people) == 3  # the turning face and two in the background
    found = sorted(n for n in spread_ids.values() if n >= 10)
    assert len(found) == len(people)  # (with 1 extra pass per search, or none, one background face is never found)
    # each in about as many frames: within 10%, or 3 frames (a background face that leaves can be dropped one round
    # earlier when the round's passes miss it: 24 of 27 frames once the turned main face counts as plausible)
    assert all(n >= min(0.9 * m, m - 3) for n, m in zip(found, people, strict=True))
    assert sum(spread_ids.values()) >= 0.95 * sum(all_ids.values())
    assert ran and max(ran) == 4 < len(PASSES)  # searches ran 4 of the 6 passes


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_live_detection_thread_runs_at_a_lower_priority_and_file_rounds_do_not(backend):
    detector = HaarDetector(FRONTAL_ONLY)

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    here = niceness()
    live = Pipeline(detector, backend, DEFAULT_TRACK, DEFAULT_SMOOTH, async_detect=True)
    files = Pipeline(detector, backend, DEFAULT_TRACK, DEFAULT_SMOOTH)
    try:
        assert live.worker().submit(niceness).result() == min(19, here + 10)
        assert files.worker().submit(niceness).result() == here
        assert niceness() == here  # the calling thread keeps its own
    finally:
        live.close()
        files.close()


def test_live_opencv_threads_are_restored():
    before = cv2.getNumThreads()
    with live_opencv_threads():
        assert cv2.getNumThreads() == 1
        cv2.resize(np.zeros((64, 64), np.uint8), (32, 32))
    assert cv2.getNumThreads() == before
