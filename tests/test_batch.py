"""`fkd-track batch` as a user runs it: the same CSV bytes as one-by-one `video` runs (process pool and Ray),
a second run skips finished inputs, list files, failing inputs reported beside finished ones, name clashes,
output safety and Ctrl-C."""

from __future__ import annotations

import csv
import shutil
import signal
import time
from pathlib import Path

import cv2
import pytest

from tests.conftest import assert_user_error, run_cli, start_cli

SUMMARY_COLUMNS = ["input", "status", "frames", "frames_with_face", "faces", "seconds", "error", "output"]


def summary(out_dir: Path) -> dict[str, dict]:
    """DIR/summary.csv by input, after checking its header."""
    with open(out_dir / "summary.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == SUMMARY_COLUMNS
        return {row["input"]: row for row in reader}


def temp_files(out_dir: Path) -> list[str]:
    return sorted(p.name for p in out_dir.iterdir() if ".tmp" in p.name)


@pytest.fixture(scope="module")
def reference(all_video_paths, tmp_path_factory) -> dict[str, bytes]:
    """`fkd-track video INPUT --csv` for each shared video alone: the bytes batch must reproduce."""
    assert len(all_video_paths) == 3
    folder = tmp_path_factory.mktemp("reference")
    refs = {}
    for video in all_video_paths:
        out = folder / f"{video.stem}.csv"
        res = run_cli("video", video, "--csv", out, "--headless")
        assert res.code == 0, res.err
        refs[video.stem] = out.read_bytes()
    return refs


@pytest.fixture(scope="module")
def pool_run(all_video_paths, tmp_path_factory):
    """One `batch --jobs 2` over the three shared videos."""
    out_dir = tmp_path_factory.mktemp("pool") / "out"
    res = run_cli("batch", *all_video_paths, "--out-dir", out_dir, "--jobs", "2")
    return res, out_dir


@pytest.mark.slow
def test_pool_gives_the_bytes_of_one_by_one_video_runs(pool_run, reference, all_video_paths):
    res, out_dir = pool_run
    assert res.code == 0, res.err
    assert "3 inputs: 3 done, 0 skipped (finished before), 0 failed" in res.err
    for stem, data in reference.items():
        assert (out_dir / f"{stem}.csv").read_bytes() == data, stem
    rows = summary(out_dir)
    assert list(rows) == [str(p) for p in all_video_paths]
    for path in all_video_paths:
        row = rows[str(path)]
        rows_in_csv = reference[path.stem].count(b"\n") - 1  # one per face per frame, or one for a frame without
        assert row["status"] == "ok" and row["error"] == "" and row["output"] == f"{path.stem}.csv"
        assert 0 < int(row["frames_with_face"]) <= int(row["frames"]) <= rows_in_csv
        assert int(row["faces"]) >= 1
    assert temp_files(out_dir) == []
    assert {p.name for p in out_dir.iterdir()} == {f"{p.stem}.csv" for p in all_video_paths} | {"summary.csv",
                                                                                                "batch.json"}


@pytest.mark.slow
def test_second_run_skips_finished_inputs_and_redoes_a_missing_one(pool_run, reference, all_video_paths):
    _, out_dir = pool_run
    first = {p.stem: (out_dir / f"{p.stem}.csv").stat().st_mtime_ns for p in all_video_paths}
    before = summary(out_dir)
    again = run_cli("batch", *all_video_paths, "--out-dir", out_dir, "--jobs", "2")
    assert again.code == 0, again.err
    assert "3 inputs: 0 done, 3 skipped (finished before), 0 failed" in again.err
    rows = summary(out_dir)
    for p in all_video_paths:
        assert (out_dir / f"{p.stem}.csv").stat().st_mtime_ns == first[p.stem]
        assert rows[str(p)]["status"] == "skipped"
        assert rows[str(p)]["frames"] == before[str(p)]["frames"]  # numbers carried from the run that did it
    gone = all_video_paths[1]
    (out_dir / f"{gone.stem}.csv").unlink()
    third = run_cli("batch", *all_video_paths, "--out-dir", out_dir, "--jobs", "2")
    assert third.code == 0, third.err
    assert "3 inputs: 1 done, 2 skipped (finished before), 0 failed" in third.err
    assert (out_dir / f"{gone.stem}.csv").read_bytes() == reference[gone.stem]
    assert summary(out_dir)[str(gone)]["status"] == "ok"


@pytest.mark.slow
def test_ray_local_from_a_list_file_gives_the_same_bytes(tmp_path, reference, all_video_paths):
    pytest.importorskip("ray", reason="the [cluster] extra (make install-dev installs it)")
    (tmp_path / "videos").symlink_to(all_video_paths[0].parent, target_is_directory=True)
    listing = tmp_path / "lists" / "archive.txt"
    listing.parent.mkdir()
    # paths relative to the list's own folder, an absolute one, a comment, a blank line, one input twice
    lines = ["# the shared videos", ""] + [f"../videos/{p.name}" for p in all_video_paths[:2]]
    lines += [f"  {all_video_paths[2]}  ", "", f"../videos/{all_video_paths[0].name}"]
    listing.write_text("\n".join(lines) + "\n")
    out_dir = tmp_path / "out"
    res = run_cli("batch", listing, "--out-dir", out_dir, "--ray", "local", "--jobs", "2")
    assert res.code == 0, res.err
    assert "3 inputs: 3 done" in res.err
    for stem, data in reference.items():
        assert (out_dir / f"{stem}.csv").read_bytes() == data, stem
    assert [r["status"] for r in summary(out_dir).values()] == ["ok"] * 3
    assert temp_files(out_dir) == []


def cut_frames(video: Path, folder: Path, count: int) -> Path:
    """The first `count` frames of a shared video as PNGs in a tmp folder (an image-folder input)."""
    folder.mkdir(parents=True)
    cap = cv2.VideoCapture(str(video))
    for i in range(count):
        ok, image = cap.read()
        assert ok
        cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    cap.release()
    return folder


@pytest.mark.slow
def test_failing_inputs_are_reported_and_the_others_finish(tmp_path, video_path, all_video_paths):
    junk = tmp_path / "junk.avi"
    junk.write_bytes(bytes(range(256)) * 40)
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(all_video_paths[2].read_bytes()[:300_000])
    a = cut_frames(video_path, tmp_path / "a" / "frames", 12)
    b = cut_frames(all_video_paths[1], tmp_path / "b" / "frames", 12)  # same name: distinct outputs
    missing = tmp_path / "missing.avi"
    out_dir = tmp_path / "out"
    inputs = [junk, a, truncated, missing, b]
    res = run_cli("batch", *inputs, "--out-dir", out_dir, "--jobs", "2", "--out-video")
    assert_user_error(res, "3 of 5 inputs failed", "summary.csv")
    assert "5 inputs: 2 done, 0 skipped (finished before), 3 failed" in res.err
    rows = summary(out_dir)
    assert [rows[str(p)]["status"] for p in inputs] == ["failed", "ok", "failed", "failed", "ok"]
    assert "cannot read video" in rows[str(junk)]["error"]
    assert "truncated or corrupt" in rows[str(truncated)]["error"]
    assert "no output written" in rows[str(truncated)]["error"]
    assert "not found" in rows[str(missing)]["error"]
    outputs = [rows[str(p)]["output"].split() for p in (a, b)]  # "NAME.csv NAME.mp4"
    names = [csv_name for csv_name, _ in outputs]
    assert names[0] != names[1] and all(n.startswith("frames-") and n.endswith(".csv") for n in names)
    assert [v for _, v in outputs] == [n.replace(".csv", ".mp4") for n in names]
    expected = [*names, *(v for _, v in outputs), "summary.csv", "batch.json"]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(expected)
    for _, annotated in outputs:
        cap = cv2.VideoCapture(str(out_dir / annotated))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
        cap.release()
    for folder, name in zip((a, b), names, strict=True):
        ref = tmp_path / f"ref-{name}"
        assert run_cli("video", folder, "--csv", ref, "--headless").code == 0
        assert (out_dir / name).read_bytes() == ref.read_bytes()
        assert rows[str(folder)]["frames"] == "12"
    # the same inputs in another order keep their names (the suffix comes from the path, not the order)
    again = run_cli("batch", b, a, "--out-dir", out_dir, "--jobs", "1", "--out-video")
    assert again.code == 0, again.err
    assert "2 inputs: 0 done, 2 skipped" in again.err


def test_wrong_out_dir_or_list_file_is_one_error_line_before_any_work(tmp_path, video_path):
    folder = cut_frames(video_path, tmp_path / "frames", 2)
    before = sorted(p.name for p in folder.iterdir())
    res = run_cli("batch", folder, "--out-dir", folder / "out")
    assert_user_error(res, "inside the input folder")
    assert sorted(p.name for p in folder.iterdir()) == before
    res = run_cli("batch", tmp_path / "archive.txt", "--out-dir", tmp_path / "out")
    assert_user_error(res, "list file not found", "archive.txt")
    assert not (tmp_path / "out").exists()
    res = run_cli("batch", video_path, "--out-dir", tmp_path / "o", "--jobs", "0")
    assert res.code == 2 and "Traceback" not in res.err


@pytest.mark.slow
def test_ctrl_c_keeps_finished_outputs_and_leaves_no_temp_files(tmp_path, all_video_paths, reference):
    # each shared clip three times under other names (copies: `batch` takes links to one file as one input): enough
    # work that Ctrl-C after the first finished input always finds some unfinished, however fast the machine
    inputs = tmp_path / "in"
    inputs.mkdir()
    for copy in "abc":
        for video in all_video_paths:
            shutil.copyfile(video, inputs / f"{copy}-{video.name}")
    out_dir = tmp_path / "out"
    proc = start_cli("batch", *sorted(inputs.iterdir()), "--out-dir", out_dir, "--jobs", "2")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(p.suffix == ".csv" and not p.name.startswith(".")
                                                  for p in out_dir.glob("*.csv") if p.name != "summary.csv"):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    finished = [p for p in out_dir.glob("*.csv") if p.name != "summary.csv"]
    assert 1 <= len(finished) < 9
    for p in finished:
        assert p.read_bytes() == reference[p.stem[2:]]
    assert temp_files(out_dir) == []
    statuses = sorted(r["status"] for r in summary(out_dir).values())
    assert statuses.count("ok") == len(finished) and "interrupted" in statuses


def test_ray_without_the_cluster_extra_is_one_error_line(tmp_path, video_path):
    shadow = tmp_path / "no-ray" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    res = run_cli("batch", video_path, "--out-dir", tmp_path / "out", "--ray", "local",
                  env={"PYTHONPATH": str(shadow.parent)})
    assert_user_error(res, "--ray needs Ray", "fkd-track[cluster]")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_resuming_with_other_settings_is_refused_and_redo_starts_over(tmp_path, video_path):
    out_dir = tmp_path / "out"
    csv_path = out_dir / f"{video_path.stem}.csv"
    first = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1")
    assert first.code == 0, first.err
    smoothed = csv_path.read_bytes()
    res = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1", "--no-smooth")
    assert_user_error(res, "holds outputs made with other settings (smooth.enabled true -> false)", "--redo")
    assert csv_path.read_bytes() == smoothed
    res = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1", "--no-smooth", "--redo")
    assert res.code == 0 and "1 done, 0 skipped" in res.err, res.err
    redone = csv_path.read_bytes()
    assert redone != smoothed
    res = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1", "--no-smooth",  # its own settings
                  "--labels", "name")  # (the overlay's only count where videos are written)
    assert res.code == 0 and "0 done, 1 skipped" in res.err, res.err
    assert csv_path.read_bytes() == redone
    (out_dir / "batch.json").unlink()  # as an older fkd-track left the folder: trusted, with a note
    res = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1")
    assert res.code == 0 and "0 done, 1 skipped" in res.err and "note: " in res.err, res.err


def test_a_file_at_an_outputs_name_that_is_no_keypoint_table_is_not_taken_as_finished(tmp_path, video_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    mine = out_dir / f"{video_path.stem}.csv"
    mine.write_text("garbage\n")
    res = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1")
    assert_user_error(res, f"{video_path.stem}.csv is not a keypoint table fkd-track wrote", "move it away")
    res = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1", "--redo")  # not even to redo
    assert_user_error(res, f"{video_path.stem}.csv is not a keypoint table fkd-track wrote", "never replaces")
    assert mine.read_text() == "garbage\n"


def test_redo_without_videos_removes_the_earlier_videos(tmp_path, video_path):
    """Videos made before would otherwise sit beside tables of other settings and count as finished later."""
    out_dir = tmp_path / "out"
    res = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1", "--out-video")
    assert res.code == 0, res.err
    video = out_dir / f"{video_path.stem}.mp4"
    assert video.is_file()
    res = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1", "--redo", "--detect-every", "5")
    assert res.code == 0, res.err
    assert not video.exists() and (out_dir / f"{video_path.stem}.csv").is_file()


def test_a_ray_address_that_does_not_parse_writes_no_summary(tmp_path, video_path):
    res = run_cli("batch", video_path, "--out-dir", tmp_path / "out", "--ray", "not-an-address")
    assert_user_error(res, "--ray not-an-address", "cannot start or join ray")
    assert not (tmp_path / "out" / "summary.csv").exists()  # no input ran: nothing to list as interrupted


def test_workers_get_one_onnx_runtime_thread_by_default(model_path):
    """What each batch worker opens (EngineSpec's default threads=1) runs ONNX Runtime on one thread."""
    from tracker.batch_task import EngineSpec, ModelFile, TrackSettings, open_engines
    from tracker.flip_average import FlipAveraged

    engines = open_engines(EngineSpec(ModelFile(model_path)), TrackSettings())
    assert engines.backend.name == "onnxruntime" and isinstance(engines.backend, FlipAveraged)  # the default
    assert engines.backend.backend.session.get_session_options().intra_op_num_threads == 1
    plain = open_engines(EngineSpec(ModelFile(model_path)), TrackSettings(flip_average=False))
    assert plain.backend.session.get_session_options().intra_op_num_threads == 1
    shipped = open_engines(EngineSpec(ModelFile.shipped(model_path), threads=2), TrackSettings())  # Ray's way
    assert shipped.backend.backend.session.get_session_options().intra_op_num_threads == 2
    assert shipped.backend.info.keypoint_names == engines.backend.info.keypoint_names
