"""The tracker end to end on the real videos: tracking keeps faces the detector alone finds, ids are stable
within a shot and never survive a scene cut, the live path runs headless on a video replayed as a camera,
and Ctrl-C mid-stream leaves a valid CSV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tracker.config import DEFAULT_SMOOTH, DEFAULT_TRACK, OverlayParams, SmoothParams, TrackParams
from tracker.csv_out import KeypointCsvWriter, csv_header
from tracker.haar import HaarDetector
from tracker.live import run_live
from tracker.pipeline import Pipeline
from tracker.sources import ChainSource, VideoSource
from tracker.stream import run_stream


@pytest.fixture(scope="module")
def backend(model_path):
    """The packaged default model on ONNX Runtime."""
    from engines.select import load_backend

    return load_backend(model_path, "onnxruntime")


@pytest.fixture(scope="module")
def detector():
    return HaarDetector()


def pipeline(detector, backend, **track) -> Pipeline:
    return Pipeline(detector, backend, TrackParams(**track), DEFAULT_SMOOTH)


def run(detector, backend, source, **track) -> list:
    results = []
    with source:
        run_stream(source, pipeline(detector, backend, **track), draw=False,
                   on_frame=lambda r, _: results.append(r) or True)
    return results


@pytest.fixture(scope="module")
def gates(detector, backend, video_path) -> tuple[list, list]:
    """(the detector's boxes on every frame, the tracker's results with default settings) for one video."""
    with VideoSource(video_path) as src:
        boxes = [detector.detect(f.image) for f in src]
    return boxes, run(detector, backend, VideoSource(video_path))


def test_tracking_finds_the_face_in_at_least_as_many_frames_as_the_detector(gates):
    boxes, results = gates
    tracked = sum(any(f.success for f in r.faces) for r in results)
    assert len(results) == 202
    assert tracked >= sum(bool(b) for b in boxes)
    # tracking, not detection: the detector ran on a small share of the frames
    assert sum(r.detected for r in results) <= 202 / DEFAULT_TRACK.detect_every * 2
    # one person on screen: one id for nearly the whole clip, never two faces at once
    ids = [f.face_id for r in results for f in r.faces]
    main_id = max(set(ids), key=ids.count)
    assert ids.count(main_id) >= 0.9 * tracked
    assert max(len(r.faces) for r in results) == 1


def test_keypoints_sit_on_the_detected_face(gates):
    boxes, results = gates
    overlaps = [max(face.box.iou(b) for b in bs) for r, bs in zip(results, boxes, strict=True) if bs
                for face in r.faces]
    assert len(overlaps) >= 190
    # the box implied by the keypoints agrees with the detector's, also on frames it did not run on
    assert np.median(overlaps) > 0.6 and np.percentile(overlaps, 10) > 0.4
    for r in results:
        for f in r.faces:  # every point inside its face's box, give or take a tenth of it
            x, y, w, h = f.box_xywh
            assert (f.points[:, 0] > x - 0.1 * w).all() and (f.points[:, 0] < x + 1.1 * w).all()
            assert (f.points[:, 1] > y - 0.1 * h).all() and (f.points[:, 1] < y + 1.1 * h).all()


def test_no_face_id_survives_a_scene_cut(detector, backend, all_video_paths):
    names = {p.name: p for p in all_video_paths}
    first, second = names["0492_03_009_bill_gates.avi"], names["0553_01_006_donald_trump.avi"]
    n_first = VideoSource(first).frame_count
    results = run(detector, backend, ChainSource([VideoSource(first), VideoSource(second)]))
    cuts = [r.index for r in results if r.scene_cut]
    assert cuts == [n_first]
    before = {f.face_id for r in results[:n_first] for f in r.faces}
    after = {f.face_id for r in results[n_first:] for f in r.faces}
    assert before and after and not before & after
    assert results[n_first].detected  # the cut frame itself is searched afresh


def test_smoothing_reduces_jitter_without_moving_the_face(gates):
    _, results = gates
    single = [r.faces[0] for r in results if len(r.faces) == 1]

    def jitter(key: str) -> float:
        """Median frame-to-frame motion of the points relative to their own centre (pose, not position)."""
        rel = np.array([getattr(f, key) - getattr(f, key).mean(axis=0) for f in single])
        return float(np.median(np.abs(np.diff(rel, axis=0))))

    assert jitter("points") < 0.8 * jitter("raw_points")
    offsets = np.array([f.points - f.raw_points for f in single])
    assert np.median(np.abs(offsets)) < 3.0  # smoothing, not displacement


def test_live_path_headless_on_a_video_replayed_as_a_camera(detector, backend, all_video_paths, tmp_path):
    path = min(all_video_paths, key=lambda p: VideoSource(p).frame_count)
    total = VideoSource(path).frame_count
    lines: list[str] = []
    csv_path = tmp_path / "live.csv"
    pipe = pipeline(detector, backend)
    with KeypointCsvWriter(csv_path, pipe.kps.columns) as writer:
        stats, dropped = run_live(VideoSource(path), pipe, headless=True, echo=lines.append, csv=writer,
                                  overlay=OverlayParams(), pace=True)
    assert stats.frames + dropped == total  # each camera frame was either processed or skipped as stale
    assert stats.frames >= 10 and stats.frames_with_face > 0.5 * stats.frames
    assert lines and "fps" in lines[0]  # headless: progress on the terminal
    table = pd.read_csv(csv_path)
    assert list(table.columns) == csv_header(pipe.kps.columns)
    assert table["frame"].is_monotonic_increasing and table["frame"].nunique() == stats.frames


def test_ctrl_c_mid_stream_keeps_a_valid_csv(detector, backend, video_path, tmp_path):
    csv_path = tmp_path / "cut.csv"
    pipe = pipeline(detector, backend)

    def interrupt(result, _image) -> bool:
        if result.index == 40:
            raise KeyboardInterrupt
        return True

    writer = KeypointCsvWriter(csv_path, pipe.kps.columns)
    with pytest.raises(KeyboardInterrupt), VideoSource(video_path) as src:
        try:
            run_stream(src, pipe, csv=writer, draw=False, on_frame=interrupt)
        finally:
            writer.close()
    table = pd.read_csv(csv_path)
    assert sorted(table["frame"].unique()) == list(range(41))
    assert table.notna().any(axis=1).all()


def test_no_smoothing_returns_the_engine_points(detector, backend, video_path):
    src = VideoSource(video_path)
    pipe = Pipeline(detector, backend, TrackParams(), SmoothParams(enabled=False))
    with src:
        for frame in src:
            result = pipe.process(frame)
            for face in result.faces:
                np.testing.assert_array_equal(face.points, face.raw_points)
            if frame.index == 20:
                break
