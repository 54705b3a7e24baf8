"""The concurrent paths on real clips: the pipelined file loop writes the same CSV bytes as the sequential one,
drains every stage on Ctrl-C (in process and through the installed CLI), and the live view's asynchronous
detection finds faces without ever running the detector on the frame's own turn."""

from __future__ import annotations

import signal
import threading
import time

import pandas as pd
import pytest

from engines.errors import UserError
from tests.conftest import start_cli
from tracker.config import DEFAULT_SMOOTH, TrackParams
from tracker.csv_out import KeypointCsvWriter
from tracker.haar import HaarDetector
from tracker.pipeline import Pipeline
from tracker.sources import ChainSource, Frame, VideoSource
from tracker.stream import run_stream
from tracker.tracking import FULL, SEARCH


@pytest.fixture(scope="module")
def backend(model_path):
    from engines.select import load_backend

    return load_backend(model_path, "onnxruntime")


def clips(all_video_paths) -> ChainSource:
    """Orlando Bloom (turning faces, frames without one) then Bill Gates: one scene cut between them."""
    names = {p.name: p for p in all_video_paths}
    return ChainSource([VideoSource(names["orlando_bloom.avi"]), VideoSource(names["0492_03_009_bill_gates.avi"])])


def track_to_csv(backend, source, path, pipelined: bool, on_frame=None, pipe: Pipeline | None = None):
    pipe = pipe or Pipeline(HaarDetector(), backend, TrackParams(), DEFAULT_SMOOTH)
    writer = KeypointCsvWriter(path, pipe.kps.columns)
    try:
        with source:
            return run_stream(source, pipe, csv=writer, draw=True, pipelined=pipelined, on_frame=on_frame)
    finally:
        writer.close()


def watch_lead(pipe: Pipeline) -> list[int]:
    """For each round the pipeline starts ahead from now on: how many frames before its own frame it started
    (filled in as the pipeline runs)."""
    leads: list[int] = []
    run, start = pipe.run, pipe._start_ahead
    now = [0]

    def tracked(prep, upcoming=()):
        now[0] = prep.frame.index
        return run(prep, upcoming)

    def starting(upcoming):
        before = {id(p) for p in upcoming if p.ahead is not None}
        start(upcoming)
        leads.extend(p.frame.index - now[0] for p in upcoming if p.ahead is not None and id(p) not in before)

    pipe.run, pipe._start_ahead = tracked, starting
    return leads


def stage_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("fkd-read", "fkd-write", "fkd-detect"))]


def test_pipelined_csv_is_byte_identical_to_sequential(backend, all_video_paths, tmp_path):
    seq = track_to_csv(backend, clips(all_video_paths), tmp_path / "seq.csv", pipelined=False)
    pipe = Pipeline(HaarDetector(), backend, TrackParams(), DEFAULT_SMOOTH)
    leads = watch_lead(pipe)
    kinds: list[str | None] = []
    count_round = pipe._count_round
    pipe._count_round = lambda kind, born: (kinds.append(kind), count_round(kind, born))[1]
    pip = track_to_csv(backend, clips(all_video_paths), tmp_path / "pip.csv", pipelined=True, pipe=pipe)
    assert pip.frames == seq.frames == 139 + 202 and pip.scene_cuts == seq.scene_cuts == 1
    assert pip.detections == seq.detections and pip.faces == seq.faces
    # nearly every whole-frame round but the first frame's ran ahead on the look-ahead thread (looks around a
    # doubtful or lost face run on their own frame), most of them many frames before their own (the window
    # reaches the next search as soon as one is done)
    whole = sum(k in (FULL, SEARCH) for k in kinds)
    assert whole >= 10 and pipe.ahead_used >= 0.85 * whole
    assert len(leads) >= pipe.ahead_used and sorted(leads)[len(leads) // 2] >= 10
    assert (tmp_path / "pip.csv").read_bytes() == (tmp_path / "seq.csv").read_bytes()
    assert stage_threads() == []  # every stage ended


def test_frames_read_ahead_stay_within_the_memory_bound(backend, video_path, monkeypatch):
    """With room for five frames only (large frames), rounds start at most six frames ahead, and the rows stay."""
    with VideoSource(video_path) as src:
        first = next(iter(src)).image
    frame_bytes = first.nbytes + first.shape[0] * first.shape[1]  # colour + grey
    monkeypatch.setattr("tracker.stream.LOOKAHEAD_BYTES", 5 * frame_bytes)
    pipe = Pipeline(HaarDetector(), backend, TrackParams(), DEFAULT_SMOOTH)
    leads = watch_lead(pipe)
    with VideoSource(video_path) as src:
        stats = run_stream(src, pipe, draw=False, pipelined=True)
    assert stats.frames == 202 and leads and max(leads) <= 6 and pipe.ahead_used >= 8


def test_a_look_ahead_detector_that_cannot_load_fails_the_run_with_its_own_error(backend, video_path):
    class Failing(HaarDetector):
        def twin(self):
            raise UserError("cannot load the cascades a second time")

    pipe = Pipeline(Failing(), backend, TrackParams(), DEFAULT_SMOOTH)
    with VideoSource(video_path) as src, pytest.raises(UserError, match="second time"):
        run_stream(src, pipe, draw=False, pipelined=True)
    assert stage_threads() == []


def test_the_next_round_starts_ahead_on_the_frame_the_schedule_names(backend, video_path):
    """Bill Gates, one confident face after the first frame's FULL round: with 24 frames read ahead the next
    whole-frame round (the SEARCH 20 frames after the last) starts at once on frame 20 and on no frame before
    it, and frame 20 uses it; a cut in the window is started first instead (a cut always gets a FULL round);
    a round whose frame, at its turn, asks for other passes than it ran is not used (the frame runs its own)."""
    with VideoSource(video_path) as src:
        frames = [f for f, _ in zip(src, range(30), strict=False)]
    for case in ("search", "cut", "stale"):
        pipe = Pipeline(HaarDetector(), backend, TrackParams(), DEFAULT_SMOOTH)
        try:
            preps = [pipe.prepare(f) for f in frames]
            assert not any(p.cut for p in preps)
            if case == "cut":
                preps[7].cut = True
            pipe.run(preps[0])
            assert pipe.tracker.all_confident() and pipe.due(20) == SEARCH
            pipe.run(preps[1], preps[2:26])
            started = {p.frame.index: p.ahead_kind[0] for p in preps if p.ahead is not None}
            assert started == ({7: FULL} if case == "cut" else {20: SEARCH})
            if case == "stale":  # another search in between would move frame 20's search on to other passes
                pipe._searches += 1
            if case != "cut":
                results = [pipe.run(preps[i], preps[i + 1:i + 25]) for i in range(2, 21)]
                assert [r.index for r in results if r.detected] == [20]
                assert pipe.ahead_used == (0 if case == "stale" else 1)
        finally:
            pipe.close()
    assert stage_threads() == []


def test_pipelined_interrupt_drains_every_stage(backend, all_video_paths, tmp_path):
    seen = []

    def interrupt(result, _image) -> bool:
        seen.append(result.index)
        if result.index == 40:
            raise KeyboardInterrupt
        return True

    with pytest.raises(KeyboardInterrupt):
        track_to_csv(backend, clips(all_video_paths), tmp_path / "int.csv", pipelined=True, on_frame=interrupt)
    assert seen == list(range(41))  # in order, on this thread
    assert stage_threads() == []
    table = pd.read_csv(tmp_path / "int.csv")
    frames = sorted(table["frame"].unique())
    # what was tracked before the interrupt was written, whole frames only, no gap
    assert frames == list(range(len(frames))) and 41 <= len(frames) < 139 + 202


def test_ctrl_c_through_the_cli_mid_video_exits_130_with_a_valid_csv(all_video_paths, model_path, tmp_path):
    csv = tmp_path / "cli.csv"
    proc = start_cli("video", *all_video_paths, "--csv", csv, "--headless", "--model", model_path,
                     "--detect-every", "1", "--pipelined")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not csv.exists() or csv.read_text().count("\n") < 30):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted"
    table = pd.read_csv(csv)
    frames = sorted(table["frame"].unique())
    total = sum(VideoSource(p).frame_count for p in all_video_paths)
    assert frames == list(range(len(frames))) and 20 <= len(frames) < total
    faceless = table["face_id"].isna()
    assert not table.loc[~faceless, "left_eye_center_x":].isna().any().any()  # no half-written row


def test_live_detection_is_asynchronous_and_finds_the_face(backend, video_path):
    pipe = Pipeline(HaarDetector(), backend, TrackParams(), DEFAULT_SMOOTH, async_detect=True)
    results = []
    try:
        with VideoSource(video_path) as src:
            for frame in src:
                results.append(pipe.process(frame))
                if frame.index < 10:
                    time.sleep(0.05)  # a camera's frame interval: the first round has time to finish
                if frame.index == 80:
                    break
    finally:
        pipe.close()
    assert not results[0].faces and not results[0].detected  # the first frame only starts a round
    first = next(r.index for r in results if r.faces)
    assert results[first].detected and first <= 10  # faces arrive with the round's boxes, a frame or so later
    tracked = [r for r in results[first:] if r.faces]
    assert len(tracked) >= 0.95 * len(results[first:])
    assert len({f.face_id for r in tracked for f in r.faces}) <= 2
    assert sum(r.detected for r in results) < 20  # tracking in between, not detecting every frame
    assert stage_threads() == []


def test_live_round_from_before_a_cut_is_dropped(backend, all_video_paths):
    """Boxes of a round started on the last shot never seed tracks in the new one."""
    names = {p.name: p for p in all_video_paths}
    with VideoSource(names["0492_03_009_bill_gates.avi"]) as a, VideoSource(names["orlando_bloom.avi"]) as b:
        first, second = next(iter(a)), next(iter(b))
    pipe = Pipeline(HaarDetector(), backend, TrackParams(), DEFAULT_SMOOTH, async_detect=True)
    try:
        pipe.process(Frame(0, 0.0, first.image))  # starts a round on shot 1
        pipe._job.future.result()  # let it finish: it is now stale once the cut comes
        cut = pipe.process(Frame(1, 40.0, second.image))
        assert cut.scene_cut and not cut.faces and not cut.detected
        pipe._job.future.result()
        after = pipe.process(Frame(2, 80.0, second.image))
        assert after.detected and after.faces  # the new shot's own round
    finally:
        pipe.close()


def test_bench_reports_pipelined_fps_cpu_per_stage_and_live_latency(video_path, model_path, tmp_path):
    from tests.conftest import run_cli

    report = tmp_path / "bench.json"
    r = run_cli("bench", "--video", video_path, "--model", model_path, "--batch", "1", "--seconds", "0.1",
                "--passes", "1", "--live-sim", "30", "--live-seconds", "2", "--json", report)
    assert r.code == 0, r.err
    assert "tracking, pipelined" in r.out and "CPU ms per frame" in r.out and "latency capture" in r.out
    import json

    data = json.loads(report.read_text())
    runs = {run["mode"]: run for run in data["end_to_end"]["runs"]}
    pipelined, single = runs["tracking, pipelined"], runs["tracking"]
    assert pipelined["frames"] == single["frames"] == 202 and pipelined["detections"] == single["detections"]
    for run in runs.values():
        assert run["fps"] > 0 and set(run["cpu_ms"]) == set(run["stage_ms"]) | {"total"}
        assert run["cpu_ms"]["total"] > 0 and run["cpu_ms"]["infer"] > 0
    # detecting every frame costs the detector's CPU on every frame
    assert runs["detect every frame"]["cpu_ms"]["detect"] > 2 * single["cpu_ms"]["detect"]
    live = data["live"]
    assert live["size"] == [640, 480] and live["delivered"] == 60 and 0 < live["processed"] <= 60
    assert 0 < live["latency_ms"]["p50"] <= live["latency_ms"]["p99"] <= live["latency_ms"]["max"]
    assert live["frames_with_face"] > 0.5 * live["processed"]
