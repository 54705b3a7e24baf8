"""Fault injection on the tracker commands (`--camera`, `video`, `cameras`, `bench`) through the installed fkd-track:
usage errors, bad inputs and models, outputs onto inputs or each other, unwritable folders, a full disk, signals
mid-video and --debug. Every case checks the exit code, one error line, no traceback, the inputs' hashes and that
every output left behind is whole (a CSV of complete rows, a video that plays).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import pandas as pd
import pytest

from tests.conftest import CliResult, assert_user_error, file_hash, run_cli, start_cli
from tracker.video_out import AnnotatedVideoWriter, playable_frames

CLIP_FRAMES = 30


@dataclass
class Inputs:
    """What the cases read: a short clip and an image folder cut from a shared video (in a temp folder, never
    committed), a copy of the packaged model, and the shared video itself."""

    clip: Path
    folder: Path
    model: Path
    video: Path

    def hashes(self) -> dict[str, str]:
        return {p.name: file_hash(p) for p in (self.clip, self.folder, self.model, self.video)}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, video_path, model_path) -> Inputs:
    root = tmp_path_factory.mktemp("fault-inputs")
    clip, folder = root / "clip.avi", root / "frames"
    folder.mkdir()
    writer = AnnotatedVideoWriter(clip, 25.0)
    cap = cv2.VideoCapture(str(video_path))
    for i in range(CLIP_FRAMES):
        ok, image = cap.read()
        assert ok
        writer.write(image)
        if i % 6 == 0:
            cv2.imwrite(str(folder / f"{i:04d}.jpg"), image)
    cap.release()
    assert writer.verify() == CLIP_FRAMES
    model = root / "model.onnx"
    shutil.copyfile(model_path, model)
    return Inputs(clip, folder, model, video_path)


def make_fixtures(tmp: Path) -> set[Path]:
    """Bad inputs and obstacles in the case's own folder; returns what exists before the run."""
    (tmp / "afile").write_text("a regular file, not a folder\n")
    (tmp / "garbage.onnx").write_bytes(bytes(range(256)) * 40)
    (tmp / "notes.txt").write_text("not a model\n")
    (tmp / "text.avi").write_text("hello, not a video\n")
    (tmp / "empty.avi").write_bytes(b"")
    (tmp / "empty-folder").mkdir()
    (tmp / "dir.onnx").mkdir()
    return set(tmp.rglob("*"))


def fill(args: list[str], inputs: Inputs, tmp: Path) -> list[str]:
    names = {"clip": inputs.clip, "folder": inputs.folder, "model": inputs.model, "video": inputs.video, "tmp": tmp}
    return [a.format(**names) for a in args]


def run_case(inputs: Inputs, args: list[str], env: dict | None = None) -> CliResult:
    """Run fkd-track ARGS; the inputs must hash the same afterwards."""
    before = inputs.hashes()
    result = run_cli(*args, env=env, timeout=300)
    assert inputs.hashes() == before, "an input file changed"
    return result


def check_csv(path: Path) -> pd.DataFrame:
    """A keypoint CSV left behind is whole: ends with a newline, every row has the header's field count,
    frames run 0, 1, 2, ... (one or more rows each)."""
    text = path.read_text()
    assert text.endswith("\n"), "the CSV ends inside a row"
    lines = text.splitlines()
    width = lines[0].count(",")
    assert all(line.count(",") == width for line in lines), "a row is cut short"
    table = pd.read_csv(path)
    frames = table["frame"].drop_duplicates().tolist()
    assert frames == list(range(len(frames)))
    return table


def check_new_outputs(tmp: Path, before: set[Path]) -> list[Path]:
    """Every file the run left in `tmp` is a whole output; returns them."""
    new = sorted(p for p in set(tmp.rglob("*")) - before if p.is_file())
    for p in new:
        if p.suffix == ".csv":
            check_csv(p)
        elif p.suffix in (".mp4", ".avi"):
            assert playable_frames(p) > 0, f"{p} does not play"
        elif p.suffix == ".json":
            json.loads(p.read_text())
        else:
            pytest.fail(f"unexpected file left behind: {p}")
    return new


# --- usage errors: one `error:` line naming the option and the command's --help, exit 2 --------------------------

VIDEO = ["video", "{clip}", "--headless", "--model", "{model}"]
USAGE = [
    ("unknown-command", ["nosuch"], "No such command"),
    ("unknown-option", [*VIDEO, "--bogus"], "--bogus"),
    ("missing-argument", ["video"], "Missing argument"),
    ("detect-every-0", [*VIDEO, "--detect-every", "0"], "--detect-every"),
    ("detect-every-text", [*VIDEO, "--detect-every", "often"], "--detect-every"),
    ("camera-negative", ["--camera", "-3"], "--camera"),
    ("width-0", ["--camera", "0", "--width", "0"], "--width"),
    ("height-huge", ["--camera", "0", "--height", "100000"], "--height"),
    ("fps-0", ["--camera", "0", "--fps", "0"], "--fps"),
    ("buffer-0", ["--camera", "0", "--buffer", "0"], "--buffer"),
    ("folder-fps-0", ["video", "{folder}", "--headless", "--folder-fps", "0"], "--folder-fps"),
    ("folder-fps-inf", ["video", "{folder}", "--headless", "--folder-fps", "inf"], "--folder-fps"),
    ("min-cutoff-0", [*VIDEO, "--min-cutoff", "0"], "--min-cutoff"),
    ("beta-negative", [*VIDEO, "--beta", "-1"], "--beta"),
    ("d-cutoff-nan", [*VIDEO, "--d-cutoff", "nan"], "--d-cutoff"),
    ("scale-factor-1", [*VIDEO, "--scale-factor", "1"], "--scale-factor"),
    ("min-neighbors-negative", [*VIDEO, "--min-neighbors", "-1"], "--min-neighbors"),
    ("min-face-4", [*VIDEO, "--min-face", "4"], "--min-face"),
    ("max-side-10", [*VIDEO, "--max-side", "10"], "--max-side"),
    ("max-index-0", ["cameras", "--max-index", "0"], "--max-index"),
    ("bench-seconds-0", ["bench", "--seconds", "0"], "--seconds"),
    ("bench-seconds-inf", ["bench", "--seconds", "inf"], "--seconds"),
    ("bench-passes-0", ["bench", "--passes", "0"], "--passes"),
    ("bench-detect-every-0", ["bench", "--detect-every", "0"], "--detect-every"),
]


@pytest.mark.parametrize("args, option", [c[1:] for c in USAGE], ids=[c[0] for c in USAGE])
def test_usage_error(inputs, tmp_path, args, option):
    before = make_fixtures(tmp_path)
    r = run_case(inputs, fill(args, inputs, tmp_path))
    assert r.code == 2, (r.code, r.err)
    assert "Traceback" not in r.err + r.out
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0], r.err
    assert "--help'" in lines[0] and "Usage:" not in r.err, r.err
    assert check_new_outputs(tmp_path, before) == []


# --- user errors: one `error:` line, exit 2, nothing written ------------------------------------------------------

O_CSV = ["--csv", "{tmp}/o.csv"]
USER = [
    ("video-missing", ["video", "{tmp}/missing.avi", "--headless", *O_CSV], ["video not found"]),
    ("video-not-a-video", ["video", "{tmp}/text.avi", "--headless", *O_CSV], ["cannot read video"]),
    ("video-empty-file", ["video", "{tmp}/empty.avi", "--headless", *O_CSV], ["cannot read video"]),
    ("folder-without-images", ["video", "{tmp}/empty-folder", "--headless", *O_CSV], ["no images"]),
    ("model-garbage", [*VIDEO, "--model", "{tmp}/garbage.onnx", *O_CSV], ["garbage.onnx"]),
    ("model-txt", [*VIDEO, "--model", "{tmp}/notes.txt", *O_CSV], ["notes.txt"]),
    ("model-missing", [*VIDEO, "--model", "{tmp}/none.onnx", *O_CSV], ["none.onnx"]),
    ("model-is-a-folder", [*VIDEO, "--model", "{tmp}/dir.onnx", *O_CSV], ["dir.onnx"]),
    ("refine-missing", [*VIDEO, "--refine", "{tmp}/none.onnx", *O_CSV], ["none.onnx"]),
    ("out-onto-the-input", [*VIDEO, "--out", "{clip}"], ["--out", "is an input"]),
    ("csv-onto-the-input", [*VIDEO, "--csv", "{clip}"], ["--csv", "is an input"]),
    ("csv-onto-an-input-image", ["video", "{folder}", "--headless", "--csv", "{folder}/0006.jpg"],
     ["--csv", "inside the input folder"]),
    ("csv-into-the-input-folder", ["video", "{folder}", "--headless", "--csv", "{folder}/keypoints.csv"],
     ["--csv", "inside the input folder"]),
    ("csv-onto-the-model", [*VIDEO, "--csv", "{model}"], ["--csv", "is an input"]),
    ("out-onto-the-refine-model", [*VIDEO, "--refine", "{tmp}/r.onnx", "--out", "{tmp}/r.onnx"], ["is an input"]),
    ("csv-and-out-one-file", [*VIDEO, "--csv", "{tmp}/o.mp4", "--out", "{tmp}/o.mp4"], ["both name"]),
    ("csv-is-a-folder", [*VIDEO, "--csv", "{tmp}/empty-folder"], ["is a folder"]),
    ("csv-dash", [*VIDEO, "--csv", "-"], ["--csv -", "/dev/stdout"]),
    ("csv-under-a-file", [*VIDEO, "--csv", "{tmp}/afile/o.csv"], ["--csv", "not a folder"]),
    ("out-under-a-file", [*VIDEO, "--out", "{tmp}/afile/sub/o.mp4"], ["--out", "cannot write"]),
    ("out-bad-extension", [*VIDEO, "--out", "{tmp}/o.txt"], ["use one of"]),
    ("live-csv-onto-the-model", ["--camera", "0", "--headless", "--model", "{model}", "--csv", "{model}"],
     ["is an input"]),
    ("labels-unknown", [*VIDEO, "--labels", "bogus", *O_CSV], ["--labels"]),
    ("backend-unknown", [*VIDEO, "--backend", "bogus", *O_CSV], ["unknown backend"]),
    ("bench-backend-unknown", ["bench", "--batch", "1", "--backend", "bogus"], ["unknown backend", "all, auto"]),
    ("bench-json-under-a-file", ["bench", "--batch", "1", "--json", "{tmp}/afile/b.json"], ["--json", "not a folder"]),
    ("bench-json-onto-the-model", ["bench", "--model", "{model}", "--json", "{model}"], ["--json", "is an input"]),
    ("bench-json-onto-the-video", ["bench", "--video", "{clip}", "--json", "{clip}"], ["--json", "is an input"]),
    ("bench-batch-100000", ["bench", "--batch", "100000"], ["--batch", "1024"]),
    ("bench-batch-text", ["bench", "--batch", "1,x"], ["--batch"]),
    ("bench-refine-without-video", ["bench", "--refine", "{model}"], ["--video"]),
    ("bench-video-missing", ["bench", "--batch", "1", "--video", "{tmp}/none.avi"], ["none.avi"]),
]


@pytest.mark.parametrize("args, words", [c[1:] for c in USER], ids=[c[0] for c in USER])
def test_user_error_is_one_line_and_writes_nothing(inputs, tmp_path, args, words):
    before = make_fixtures(tmp_path)
    r = run_case(inputs, fill(args, inputs, tmp_path))
    assert_user_error(r, *words)
    assert check_new_outputs(tmp_path, before) == []


def test_missing_output_folders_are_created_up_front(inputs, tmp_path):
    before = make_fixtures(tmp_path)
    csv, out = tmp_path / "new" / "k.csv", tmp_path / "other" / "deeper" / "o.avi"
    r = run_case(inputs, [*fill(VIDEO, inputs, tmp_path), "--csv", str(csv), "--out", str(out)])
    assert r.code == 0 and "Traceback" not in r.err and "error:" not in r.err, r.err
    assert check_new_outputs(tmp_path, before) == sorted([csv, out])
    assert f"wrote {out} ({CLIP_FRAMES} frames)" in r.err and playable_frames(out) == CLIP_FRAMES
    assert check_csv(csv)["frame"].nunique() == CLIP_FRAMES


def test_truncated_video_keeps_the_rows_it_read(inputs, tmp_path):
    before = make_fixtures(tmp_path)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(inputs.video.read_bytes()[: inputs.video.stat().st_size // 3])
    before.add(cut)
    csv = tmp_path / "c.csv"
    r = run_case(inputs, ["video", str(cut), "--headless", "--model", str(inputs.model), "--csv", str(csv)])
    assert_user_error(r, "cut.avi", "truncated or corrupt")
    [csv] = check_new_outputs(tmp_path, before)
    read = int(r.err.split("ends after ")[1].split()[0])
    assert check_csv(csv)["frame"].nunique() == read > 10


@pytest.mark.parametrize("pipelined", ["--pipelined", "--sequential"])
def test_a_video_that_fails_before_its_first_frame_leaves_an_old_csv_as_it_was(inputs, tmp_path, pipelined):
    frames = tmp_path / "frames"
    shutil.copytree(inputs.folder, frames)
    first = sorted(frames.iterdir())[0]
    first.write_text("not an image\n")  # the folder opens; its first frame does not decode
    csv = tmp_path / "keep.csv"
    r = run_case(inputs, ["video", str(inputs.clip), "--headless", "--model", str(inputs.model), "--csv", str(csv)])
    assert r.code == 0, r.err
    kept = file_hash(csv)
    r = run_case(inputs, ["video", str(frames), "--headless", "--model", str(inputs.model), "--csv", str(csv),
                          pipelined])
    assert_user_error(r, first.name)
    assert file_hash(csv) == kept  # the earlier run's rows are not replaced by an empty table
    assert "wrote" not in r.err


def _read_fifo(path: Path) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []

    def read() -> None:
        with open(path, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, got


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_pipe_as_output_is_written_in_place(inputs, tmp_path):
    """`--csv /dev/stdout | ...` or a named pipe: the rows go through it and it stays a pipe; a whole-file
    output (bench --json) is written through it too, never renamed over it."""
    plain = tmp_path / "plain.csv"
    r = run_case(inputs, ["video", str(inputs.clip), "--headless", "--model", str(inputs.model), "--csv", str(plain)])
    assert r.code == 0, r.err
    fifo = tmp_path / "rows"
    os.mkfifo(fifo)
    reader, got = _read_fifo(fifo)
    r = run_case(inputs, ["video", str(inputs.clip), "--headless", "--model", str(inputs.model), "--csv", str(fifo)])
    reader.join(timeout=60)
    assert r.code == 0, r.err
    assert got == [plain.read_bytes()] and fifo.is_fifo()
    reader, got = _read_fifo(fifo)
    r = run_case(inputs, ["bench", "--model", str(inputs.model), "--batch", "1", "--seconds", "0.1",
                          "--json", str(fifo)])
    reader.join(timeout=60)
    assert r.code == 0, r.err
    assert json.loads(got[0])["engines"] and fifo.is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.csv", "rows"]  # no temp file left beside it


def test_dev_stdout_is_written_through_the_inherited_descriptor(inputs, tmp_path):
    """`--csv /dev/stdout >> log.csv` appends (the file behind stdout is never reopened, cut or replaced), and
    `--json` through a link to /dev/stdout leaves the link a link."""
    import subprocess

    from tests.conftest import fkd_command

    log = tmp_path / "log.csv"
    log.write_text("an earlier line\n")
    with open(log, "a") as out:
        run = subprocess.run([*fkd_command(), "video", str(inputs.clip), "--headless", "--model", str(inputs.model),
                              "--csv", "/dev/stdout"], stdout=out, stderr=subprocess.PIPE, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "an earlier line" and lines[1].startswith("frame,") and len(lines) == 2 + CLIP_FRAMES
    proc = subprocess.Popen([*fkd_command(), "video", str(inputs.video), "--headless", "--model", str(inputs.model),
                             "--csv", "/dev/stdout"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"frame,") and proc.stdout.readline()  # `| head -2`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 1  # the reader stopped: a quiet end, as click ends a closed pipe
    assert "error:" not in err and "Traceback" not in err, err
    link = tmp_path / "bench.json"
    link.symlink_to("/dev/stdout")
    with open(tmp_path / "printed.txt", "w") as out:
        run = subprocess.run([*fkd_command(), "bench", "--model", str(inputs.model), "--batch", "1", "--seconds",
                              "0.1", "--json", str(link)], stdout=out, stderr=subprocess.PIPE, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert link.is_symlink() and '"engines"' in (tmp_path / "printed.txt").read_text()


def test_cut_short_jpeg_in_a_folder_is_named_once(inputs, tmp_path):
    folder = tmp_path / "frames"
    shutil.copytree(inputs.folder, folder)
    victim = sorted(folder.glob("*.jpg"))[2]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size * 2 // 3])
    csv = tmp_path / "k.csv"
    r = run_case(inputs, ["video", str(folder), "--headless", "--model", str(inputs.model), "--csv", str(csv)])
    assert r.code == 0 and "Traceback" not in r.err, r.err
    warnings = [ln for ln in r.err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and victim.name in warnings[0] and "cut short" in warnings[0], r.err
    assert "Premature end" not in r.err  # the decoder never sees it, so it does not complain in its own words
    table = pd.read_csv(csv)
    assert table["frame"].drop_duplicates().tolist() == [0, 1, 3, 4]  # frame N is still the N-th image
    assert (table["success"] == 1).all()


# --- a full disk: the complete rows stay, the video is not claimed -----------------------------------------------

def leave_free(folder: Path, free: int) -> None:
    """Fill the file system of `folder` until `free` bytes are left."""
    st = os.statvfs(folder)
    (folder / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - free))


def test_disk_full_during_the_csv_keeps_whole_rows(inputs, small_tmpfs):
    leave_free(small_tmpfs, 4096)
    csv = small_tmpfs / "k.csv"
    r = run_case(inputs, [*fill(VIDEO, inputs, small_tmpfs), "--csv", str(csv)])
    assert_user_error(r, "k.csv", "no space left", "complete rows")
    kept = int(r.err.split("kept its ")[1].split()[0])
    table = check_csv(csv)
    assert len(table) == kept and 0 < table["frame"].nunique() < CLIP_FRAMES
    assert "wrote" not in r.err


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="no /dev/full here")
def test_csv_onto_dev_full_is_one_line_and_the_device_stays(inputs, tmp_path):
    r = run_case(inputs, [*fill(VIDEO, inputs, tmp_path), "--csv", "/dev/full"])
    assert_user_error(r, "/dev/full", "no space left")
    assert Path("/dev/full").is_char_device()  # a CSV whose header did not fit is removed only if a plain file


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_disk_full_during_the_video_is_not_called_written(inputs, small_tmpfs, tmp_path, suffix):
    leave_free(small_tmpfs, 40960)
    out, csv = small_tmpfs / f"o{suffix}", tmp_path / "k.csv"
    r = run_case(inputs, [*fill(VIDEO, inputs, tmp_path), "--out", str(out), "--csv", str(csv)])
    assert_user_error(r, out.name, "full")
    assert f"wrote {out}" not in r.err and f"wrote {csv} (" in r.err  # the CSV on another disk is whole
    assert check_csv(csv)["frame"].nunique() == CLIP_FRAMES
    assert playable_frames(out) < CLIP_FRAMES


# --- signals mid-video: `interrupted`, whole rows, a video that plays -------------------------------------------

@pytest.mark.parametrize("sig, code, suffix", [
    (signal.SIGINT, 130, ".mp4"), (signal.SIGTERM, 143, ".mp4"), (signal.SIGTERM, 143, ".avi"),
], ids=["sigint-mp4", "sigterm-mp4", "sigterm-avi"])
def test_signal_mid_video_finalises_the_outputs(inputs, tmp_path, sig, code, suffix):
    csv, out = tmp_path / "k.csv", tmp_path / f"o{suffix}"
    before = inputs.hashes()
    proc = start_cli("video", inputs.video, inputs.video, "--headless", "--model", inputs.model,
                     "--csv", csv, "--out", out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and (
            not csv.exists() or csv.read_text().count("\n") < 21):
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the signal"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and not [ln for ln in err.splitlines() if ln.startswith("error:")], err
    assert err.strip().splitlines()[-1].startswith("interrupted"), err
    frames = check_csv(csv)["frame"].nunique()
    assert 20 <= frames < 2 * 202
    assert playable_frames(out) in (frames - 1, frames)  # a signal between the CSV row and the video frame
    assert inputs.hashes() == before


# --- anything unexpected: one line (exit 1); --debug / FKD_DEBUG=1 show the traceback --------------------------

@pytest.fixture(scope="module")
def failing_model(inputs) -> Path:
    """The packaged model with a final Reshape that declares (N, 15, 2) but cannot run on 14 points: the file
    loads and passes every check, and ONNX Runtime fails inside the first inference (not a user error)."""
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import helper, numpy_helper

    m = onnx.load(str(inputs.model))
    g = m.graph
    name = g.output[0].name
    for node in g.node:
        node.output[:] = [f"{name}_full" if o == name else o for o in node.output]
    g.initializer.extend([
        numpy_helper.from_array(np.array([0], np.int64), "cut_start"),
        numpy_helper.from_array(np.array([14], np.int64), "cut_end"),
        numpy_helper.from_array(np.array([1], np.int64), "cut_axis"),
        numpy_helper.from_array(np.array([-1, 15, 2], np.int64), "cut_shape"),
    ])
    g.node.append(helper.make_node("Slice", [f"{name}_full", "cut_start", "cut_end", "cut_axis"], [f"{name}_14"]))
    g.node.append(helper.make_node("Reshape", [f"{name}_14", "cut_shape"], [name]))
    path = inputs.model.parent / "fails-at-run-time.onnx"
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("how", ["plain", "--debug", "FKD_DEBUG=1"])
def test_unexpected_error_is_one_line_unless_debug(inputs, tmp_path, failing_model, how):
    args = ["video", str(inputs.clip), "--headless", "--model", str(failing_model)]
    env = {"FKD_DEBUG": "1"} if how == "FKD_DEBUG=1" else {"FKD_DEBUG": ""}
    r = run_case(inputs, args + (["--debug"] if how == "--debug" else []), env=env)
    assert r.code == 1, r.err
    if how == "plain":
        assert_user_error(r, "unexpected", "reshape", "--debug", code=1)
    else:
        tail = r.err.split("Traceback (most recent call last)")[-1]
        assert tail != r.err and "onnxruntime" in tail and "Reshape" in tail, r.err
