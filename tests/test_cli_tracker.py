"""The tracker commands as a user runs them (fresh processes): help, the missing camera, `video` to CSV and
annotated video, bad and truncated input, Ctrl-C, `cameras` and `bench`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pandas as pd
import pytest

from tracker.csv_out import BASE_COLUMNS
from tracker.keypoints import KAGGLE15
from tracker.sources import VideoSource, camera_device_missing

REPO = Path(__file__).resolve().parent.parent
HEADER = (
    "frame,timestamp_ms,face_id,success,confidence,box_x,box_y,box_w,box_h,"
    "left_eye_center_x,left_eye_center_y,right_eye_center_x,right_eye_center_y,"
    "left_eye_inner_corner_x,left_eye_inner_corner_y,left_eye_outer_corner_x,left_eye_outer_corner_y,"
    "right_eye_inner_corner_x,right_eye_inner_corner_y,right_eye_outer_corner_x,right_eye_outer_corner_y,"
    "left_eyebrow_inner_end_x,left_eyebrow_inner_end_y,left_eyebrow_outer_end_x,left_eyebrow_outer_end_y,"
    "right_eyebrow_inner_end_x,right_eyebrow_inner_end_y,right_eyebrow_outer_end_x,right_eyebrow_outer_end_y,"
    "nose_tip_x,nose_tip_y,mouth_left_corner_x,mouth_left_corner_y,mouth_right_corner_x,mouth_right_corner_y,"
    "mouth_center_top_lip_x,mouth_center_top_lip_y,mouth_center_bottom_lip_x,mouth_center_bottom_lip_y"
).split(",")


@pytest.fixture(scope="module")
def model_args(model_path) -> list[str]:
    """`--model` for the default model."""
    return ["--model", model_path]


def check_table(path, n_frames: int) -> pd.DataFrame:
    """The CSV contract: exact header, every frame once or once per face, empty fields on face-less rows."""
    with open(path) as f:
        assert f.readline().rstrip("\n").split(",") == HEADER
    table = pd.read_csv(path, dtype={"face_id": "Int64"})
    assert sorted(table["frame"].unique()) == list(range(n_frames))
    faceless = table["face_id"].isna()
    assert (table.loc[faceless, "success"] == 0).all()
    assert table.loc[faceless, HEADER[4:]].isna().all().all()
    assert not table.loc[~faceless, HEADER[5:]].isna().any().any()
    counts = table.groupby("frame").size()
    faces = table[~faceless].groupby("frame").size().reindex(counts.index, fill_value=0)
    assert (counts == faces.clip(lower=1)).all()  # one row per face, or one row for a frame without any
    assert not table.duplicated(["frame", "face_id"]).any()
    return table


def test_header_is_the_nine_base_columns_then_kaggle_coordinates():
    assert HEADER == [*BASE_COLUMNS, *KAGGLE15.columns]


def test_no_arguments_prints_help_listing_the_commands(cli):
    r = cli()
    assert r.code == 0
    for command in ("video", "cameras", "bench", "train", "export", "--camera"):
        assert command in r.out


@pytest.mark.skipif(not camera_device_missing(0), reason="this machine has a camera 0")
def test_missing_camera_says_so_in_one_line_without_hanging(cli):
    r = cli("--camera", "0", timeout=30)  # a hang would raise TimeoutExpired
    assert r.code == 2
    assert r.err.strip() == "error: no camera found at index 0; try `fkd-track video FILE`"


@pytest.mark.skipif(not camera_device_missing(0), reason="this machine has a camera 0")
def test_cameras_with_none_attached(cli):
    r = cli("cameras", "--max-index", "3")
    assert r.code == 2 and "no working camera" in r.err and "Traceback" not in r.err


def test_video_to_csv_and_annotated_video(cli, model_args, video_path, tmp_path):
    csv, out = tmp_path / "gates.csv", tmp_path / "gates.mp4"
    r = cli("video", video_path, "--csv", csv, "--out", out, "--headless", *model_args)
    assert r.code == 0, r.err
    table = check_table(csv, 202)
    np_ts = table.drop_duplicates("frame")["timestamp_ms"].to_numpy()
    assert (np_ts == [i * 40.0 for i in range(202)]).all()
    hit = table[table["success"] == 1]
    assert hit["frame"].nunique() >= 190
    # the keypoints lie inside the 320 x 239 frame and inside their face box
    assert hit["nose_tip_x"].between(0, 320).all() and hit["nose_tip_y"].between(0, 239).all()
    assert (hit["nose_tip_x"] - hit["box_x"]).between(0, hit["box_w"]).all()
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 202
    ok, frame = cap.read()
    assert ok and frame.shape == (240, 320, 3)  # 320 x 239 padded to even sides for the codec
    assert f"wrote {csv} (" in r.err and f"wrote {out} (202 frames)" in r.err  # counted on reopening


def test_no_smooth_and_detect_every_options(cli, model_args, all_video_paths, tmp_path):
    path = min(all_video_paths, key=lambda p: VideoSource(p).frame_count)
    n = VideoSource(path).frame_count
    csv = tmp_path / "raw.csv"
    r = cli("video", path, "--csv", csv, "--headless", "--no-smooth", "--detect-every", "3", *model_args)
    assert r.code == 0, r.err
    check_table(csv, n)
    ran = int(r.err.split("detector ran on ")[1].split()[0])
    # a whole-frame search every 3 frames, every 6 while every face is confident (TrackParams.confident_stretch)
    assert n / 6 <= ran < n / 2


def test_truncated_video_keeps_the_rows_written(cli, model_args, video_path, tmp_path):
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video_path.read_bytes()[: video_path.stat().st_size // 2])
    csv = tmp_path / "cut.csv"
    r = cli("video", cut, "--csv", csv, "--headless", *model_args)
    assert r.code == 2
    assert r.err.strip().splitlines()[-1].startswith("error: ")
    assert "of 202 frames (truncated or corrupt)" in r.err and "Traceback" not in r.err
    n = int(r.err.split("ends after ")[1].split()[0])
    check_table(csv, n)


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.avi", "video not found"),
    (lambda d: (d / "text.avi").write_text("hello") and d / "text.avi", "cannot read video"),
])
def test_bad_video_is_one_line(cli, model_args, tmp_path, make, message):
    r = cli("video", make(tmp_path), "--csv", tmp_path / "x.csv", "--headless", *model_args)
    assert r.code == 2 and message in r.err and len(r.err.strip().splitlines()) == 1


def test_bad_model_is_one_line(cli, video_path, tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x00" * 100)
    r = cli("video", video_path, "--headless", "--model", bad)
    assert r.code == 2 and r.err.startswith("error: ") and "Traceback" not in r.err


def test_ctrl_c_leaves_a_valid_csv(model_args, all_video_paths, tmp_path):
    csv = tmp_path / "int.csv"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tracker.entry import main; main()", "video", *map(str, all_video_paths),
         "--csv", str(csv), "--headless", "--detect-every", "1", *model_args],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not csv.exists() or csv.read_text().count("\n") < 30):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted"
    table = pd.read_csv(csv)
    n = table["frame"].max() + 1
    assert 10 <= n < sum(VideoSource(p).frame_count for p in all_video_paths)
    check_table(csv, n)


def test_bench_engine_table_and_end_to_end(cli, model_args, all_video_paths, tmp_path):
    path = min(all_video_paths, key=lambda p: VideoSource(p).frame_count)
    report = tmp_path / "bench.json"
    r = cli("bench", "--video", path, "--batch", "1,8", "--seconds", "0.2", "--passes", "1", "--json", report,
            *model_args)
    assert r.code == 0, r.err
    assert "faces/s" in r.out and "tracking" in r.out and "detect every frame" in r.out
    data = json.loads(report.read_text())
    assert [row["batch"] for row in data["engines"]] == [1, 8]
    assert all(row["faces_per_s"] > 0 for row in data["engines"])
    runs = {run["mode"]: run for run in data["end_to_end"]["runs"]}
    n = VideoSource(path).frame_count
    assert runs["detect every frame"]["detections"] == n and runs["tracking"]["detections"] < n / 2
    assert runs["tracking"]["frames"] == n and set(runs["tracking"]["stage_ms"]) == {
        "decode", "detect", "crop", "infer", "post", "smooth", "draw"}
    ratio = runs["tracking"]["fps"] / runs["detect every frame"]["fps"]
    assert data["end_to_end"]["speedup"] == pytest.approx(ratio)


def test_bench_rejects_bad_batches(cli, model_args):
    r = cli("bench", "--batch", "1,x", *model_args)
    assert r.code == 2 and "--batch" in r.err


def test_image_folder_with_no_face_gives_one_empty_row_per_frame(cli, model_args, video_path, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    with VideoSource(video_path) as src:
        for f in src:
            if f.index % 50 == 0:  # the studio screen beside the speaker: real pixels, no face
                cv2.imwrite(str(folder / f"{f.index:04d}.png"), cv2.resize(f.image[:110, :110], (220, 220)))
    csv = tmp_path / "none.csv"
    r = cli("video", folder, "--csv", csv, "--headless", "--folder-fps", "2", *model_args)
    assert r.code == 0, r.err
    table = check_table(csv, 5)
    assert len(table) == 5 and (table["success"] == 0).all() and table["face_id"].isna().all()
    assert table["timestamp_ms"].tolist() == [0.0, 500.0, 1000.0, 1500.0, 2000.0]


def test_the_tracker_runs_its_engine_on_one_onnx_runtime_thread():
    """`video`, the live view and bench's end-to-end runs open the engine on ENGINE_THREADS (1) ONNX Runtime
    threads: a frame's few faces gain nothing from a second core that decodes and detects meanwhile; bench's
    engine table keeps timing the engine alone on every core."""
    from engines.select import load_backend
    from tracker.cli import _pipeline, _tracking_engine
    from tracker.config import DEFAULT_SMOOTH, DEFAULT_TRACK, ENGINE_THREADS
    from tracker.flip_average import FlipAveraged
    from tracker.haar import HaarDetector

    def threads(backend) -> int:
        return backend.session.get_session_options().intra_op_num_threads

    pipeline = _pipeline(None, "auto", HaarDetector(), DEFAULT_TRACK, DEFAULT_SMOOTH)
    assert isinstance(pipeline.backend, FlipAveraged)  # flip averaging by default, around the engine
    assert ENGINE_THREADS == 1 and threads(pipeline.backend.backend) == 1
    table = load_backend(None, "auto", threads=2)  # the engine table's, on every core of a 2-core machine
    for name in ("auto", "all"):
        engine = _tracking_engine(None, name, [table])
        assert threads(engine) == 1 and engine.info.path == table.info.path  # the file `auto` runs
