"""Which detector passes a tracker round runs (tracker.haar.round_passes, HaarDetector.detect(passes=)), that the
tracker with passes spread over its search rounds still finds the faces of a shared video with turned faces,
how often whole-frame rounds run while nothing is tracked and while every track is confident (tracker.cadence),
and the live view's detection thread at a lower OS priority with OpenCV on one thread (tracker.live)."""

from __future__ import annotations

import os
import sys
import threading

import cv2
import numpy as np
import pytest

from tracker.cadence import idle_gap, quiet_gap
from tracker.config import DEFAULT_SMOOTH, DEFAULT_TRACK, TrackParams
from tracker.haar import FRONTAL_ONLY, HaarDetector, HaarParams, Pass, detector_passes, round_passes
from tracker.live import live_opencv_threads
from tracker.pipeline import Pipeline
from tracker.sources import Frame, VideoSource
from tracker.stream import run_stream
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


def test_extra_min_size_bounds_the_passes_after_the_first_on_real_faces(ytf_faces):
    """`extra_min_size` (the tracker's search rounds): the first (frontal) pass still finds faces of every size,
    the other passes only faces at least that large: a face turned by 40 degrees, which only the turned pass
    finds, is found with a bound below its size and not with one above."""
    both = HaarDetector(HaarParams(cascades=("frontal",), angles=(-40.0, 40.0)))
    img = ytf_faces[0].image
    h, w = img.shape[:2]
    (upright,) = both.detect(img)
    assert both.detect(img, extra_min_size=4 * upright.size) == [upright]
    turned = cv2.warpAffine(img, cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -40, 1.0), (w, h))
    (found,) = both.detect(turned)
    assert found.angle == 40.0
    (again,) = both.detect(turned, extra_min_size=0.8 * found.size)  # (the pyramid starts elsewhere: near)
    assert again.angle == 40.0 and again.iou(found) > 0.8
    assert both.detect(turned, extra_min_size=1.3 * found.size) == []


def test_min_size_bounds_every_pass_and_a_look_around_a_real_face(video_path):
    """`min_size` (the tracker's looks around a face, `TrackParams.around_min`): every pass, the first too, looks
    only for faces at least that large; a look around a real face finds it with a bound below its size (the
    tracker's 0.6 of it) and not with one above."""
    from tracker.pipeline import detect_in_region

    with VideoSource(video_path) as src:
        gray = cv2.cvtColor(next(iter(src)).image, cv2.COLOR_BGR2GRAY)
    detector = HaarDetector()
    face = detector.detect(gray)[0]
    assert detector.detect(gray, min_size=1.3 * face.size) == []
    assert detector.detect(gray, min_size=0.6 * face.size)[0].iou(face) > 0.8
    scale = min(1.0, 2.0 * 40 / face.size)  # the face at 2x the smallest face, as the tracker looks
    region = face.scaled(2.0)
    near = detect_in_region(detector, gray, region, scale, min_size=0.6 * face.size * scale)
    assert near and max(b.iou(face) for b in near) > 0.6
    assert detect_in_region(detector, gray, region, scale, min_size=1.3 * face.size * scale) == []


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
    """orlando_bloom (a turning face and smaller ones beside and behind it that only the extra passes find):
    with the default schedule (the frontal pass and 3 others per search round) the tracker finds the same
    people as with every pass in every round, in about as many frames in all, and runs fewer passes."""
    path = shared_data / "videos" / "orlando_bloom.avi"
    detector = HaarDetector()
    every = Pipeline(detector, backend, TrackParams(search_passes=-1), DEFAULT_SMOOTH)
    spread = Pipeline(detector, backend, DEFAULT_TRACK, DEFAULT_SMOOTH)
    ran: list[int] = []
    whole = spread._whole
    spread._whole = lambda gray, kind, passes=None, **kw: (ran.append(len(passes or PASSES)) if kind == SEARCH
                                                           else None) or whole(gray, kind, passes, **kw)
    all_ids, spread_ids = _faces_per_id(every, path), _faces_per_id(spread, path)
    people = [n for n in all_ids.values() if n >= 10]
    assert len(people) >= 3  # the turning face and the people beside and behind it
    # (with 1 extra pass per search, or none, a background face is never found)
    assert len([n for n in spread_ids.values() if n >= 10]) == len(people)
    # in about as many frames in all (a face that leaves the frame can be dropped a few frames earlier or later:
    # its first box, from a round's other passes, differs, and so does where it crosses the edge)
    assert sum(spread_ids.values()) >= 0.9 * sum(all_ids.values())
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
        cut = files.prepare(Frame(0, 0.0, np.zeros((120, 160, 3), np.uint8)))
        cut.cut = True
        files._start_ahead([cut])  # a cut's round starts on the files' look-ahead thread
        assert cut.ahead is not None and files._ahead.submit(niceness).result() == here
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


def test_idle_gap_every_frame_at_first_then_backing_off_to_the_cap():
    assert [idle_gap(n, 3, 10) for n in range(9)] == [1, 1, 1, 2, 4, 8, 10, 10, 10]
    assert [idle_gap(n, 0, 4) for n in range(4)] == [2, 4, 4, 4]
    assert {idle_gap(n, 3, 1) for n in range(9)} == {1}  # idle_every 1: every frame


def test_quiet_gap_stretches_only_after_quiet_searches_up_to_the_factor():
    assert [quiet_gap(20, n, 2) for n in range(5)] == [20, 20, 40, 40, 40]
    assert [quiet_gap(20, n, 4) for n in range(5)] == [20, 20, 40, 80, 80]
    assert {quiet_gap(20, n, 1) for n in range(5)} == {20}


def blurred_then_sharp(video_path, blurred: int, sharp: int) -> list[Frame]:
    """A real scene with no face the detector can find (frames of Bill Gates blurred away), then the same
    video sharp: a face appears (through a scene cut: the grey histogram changes)."""
    with VideoSource(video_path) as src:
        images = [f.image for f in src][:blurred + sharp]
    images = [cv2.GaussianBlur(im, (0, 0), 15) for im in images[:blurred]] + images[blurred:]
    return [Frame(i, i * 40.0, im) for i, im in enumerate(images)]


@pytest.mark.parametrize("cuts", [True, False])
def test_nothing_tracked_backs_off_and_a_face_that_appears_is_found(backend, video_path, cuts):
    """While nothing is tracked the whole-frame rounds run on the first frames, then every 2, 4, 8 and 10
    frames (idle_gap); a face that comes with a scene cut is searched at once, one that comes without (cut test
    off) at the next round. Pipelined and sequential runs make the same rounds and find the same faces."""
    frames = blurred_then_sharp(video_path, 40, 25)
    params = DEFAULT_TRACK if cuts else TrackParams(scene_cut=2.0)
    runs = {}
    for pipelined in (False, True):
        pipe = Pipeline(HaarDetector(), backend, params, DEFAULT_SMOOTH)
        seen = []
        run_stream(frames, pipe, draw=False, pipelined=pipelined,
                   on_frame=lambda r, _im, seen=seen: seen.append(r) is None)
        runs[pipelined] = [(r.detected, r.scene_cut, [(f.face_id, f.success) for f in r.faces]) for r in seen]
    assert runs[True] == runs[False]
    results = runs[False]
    assert [i for i, (det, _, _) in enumerate(results[:40]) if det] == [0, 1, 2, 4, 8, 16, 26, 36]
    assert not any(faces for _, _, faces in results[:40])
    first = next(i for i, (_, _, faces) in enumerate(results) if faces)
    assert first == (40 if cuts else 46) and results[40][1] == cuts
    assert all(faces and faces[0][1] for _, _, faces in results[first:])  # then tracked on every frame
    every = Pipeline(HaarDetector(), backend, TrackParams(detect_every=1), DEFAULT_SMOOTH)
    assert all(every.process(f).detected for f in frames[:6])  # --detect-every 1: every frame, never backed off


def test_search_rounds_stretch_while_the_searches_find_nothing_new(backend, video_path):
    """Bill Gates (one face, confident throughout): with quiet_stretch 2 the search interval doubles after the
    second quiet search, for the same face in every frame."""
    counts = {}
    for stretch in (1, 2):
        pipe = Pipeline(HaarDetector(), backend, TrackParams(quiet_stretch=stretch), DEFAULT_SMOOTH)
        kinds: list[str | None] = []

        def due(index, kinds=kinds, plain=pipe.due):
            kinds.append(plain(index))
            return kinds[-1]

        pipe.due = due
        faces = _faces_per_id(pipe, video_path)
        counts[stretch] = ([i for i, k in enumerate(kinds) if k], faces)
    (plain, plain_faces), (stretched, stretched_faces) = counts[1], counts[2]
    assert plain == list(range(0, 202, 20)) and stretched == [0, 20, 40, 80, 120, 160, 200]
    assert plain_faces == stretched_faces == {1: 202}
