"""Fault injection for `fkd-track train ...` and `fkd-track export`, through the installed script in a subprocess.

Bad numbers, missing/corrupt/empty inputs, outputs onto inputs or each other, unwritable folders, a full disk,
finished runs, Ctrl-C and SIGTERM mid-training. Every case checks the exit code, one `error:` line, no traceback,
every input unchanged (sha256) and no partial output (no temp file, no half-written file).
"""

from __future__ import annotations

import csv
import shutil
import signal
from pathlib import Path

import pytest

from tests.conftest import KAGGLE_LABELS, MTFL_SPEC, SHARED, YTF_SPEC, assert_user_error, file_hash, run_cli, start_cli

FIT = ["--arch", "mlp", "--batch", "16", "--lr", "1e-3"]  # the quickest trunk; 60 faces, a second an epoch


@pytest.fixture(scope="session")
def prep(tmp_path_factory, shared_data) -> Path:
    """60 real faces (30 YouTube-Faces, 30 MTFL), prepared once."""
    out = tmp_path_factory.mktemp("faults_prep") / "small.npz"
    r = run_cli("train", "prepare", "--data", YTF_SPEC, "--data", MTFL_SPEC, "--limit", "30", "--out", out)
    assert r.code == 0, r.err
    assert out.stat().st_mode & 0o044 == 0o044  # the umask's mode, not mkstemp's 0600
    return out


@pytest.fixture(scope="session")
def run(prep, tmp_path_factory) -> Path:
    """A finished one-epoch training run."""
    out = tmp_path_factory.mktemp("faults_run") / "run"
    r = run_cli("train", "fit", "--data", prep, "--out", out, "--epochs", "1", *FIT)
    assert r.code == 0, r.err
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "loss_curve.png", "metrics.csv"]
    return out


@pytest.fixture(scope="session")
def bad(run, tmp_path_factory) -> dict[str, Path]:
    """Broken and borrowed inputs, made once: corrupt files, malformed tables, small copies of shared data."""
    d = tmp_path_factory.mktemp("faults_bad")
    paths: dict[str, Path] = {}

    def put(name: str, data: bytes | str) -> Path:
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        paths[name.replace("/", "_").replace(".", "_")] = p
        return p

    put("junk.npz", b"\x00" * 100)
    put("empty.npz", b"")
    put("trunc.pt", (run / "best.pt").read_bytes()[:5000])
    put("garbage.onnx", b"not an onnx model at all\n" * 40)
    put("file.txt", "a regular file: paths under it cannot be folders\n")
    put("runs_malformed/metrics.csv", "a,b\n1,2\n")
    put("runs_empty/metrics.csv", "")
    put("runs_text/metrics.csv", "epoch,train_loss,val_loss\n1,abc,0.5\n")
    put("runs_none/readme.txt", "no run here\n")
    labels = KAGGLE_LABELS.read_text().splitlines(keepends=True)
    put("kaggle_labels.csv", "".join(labels[:40]))
    lines = (SHARED / "mtfl" / "training.txt").read_text().splitlines()[:4]
    absolute = [f"{SHARED / 'mtfl' / ln.split()[0].replace(chr(92), '/')} {' '.join(ln.split()[1:])}" for ln in lines]
    absolute.insert(2, absolute[2].rsplit(" ", 1)[0])  # line 3: 14 fields
    put("mtfl_bad.txt", "\n".join(absolute) + "\n")
    ytf_rows = (SHARED / "ytf" / "training_frames_keypoints.csv").read_text().splitlines()[:6]
    put("ytf/training_frames_keypoints.csv", "\n".join(ytf_rows) + "\n")
    (d / "ytf" / "training").mkdir()
    for row in ytf_rows[1:]:
        name = row.split(",")[0]
        shutil.copy(SHARED / "ytf" / "training" / name, d / "ytf" / "training" / name)
    return paths


def _no_temp_files(*folders: Path) -> None:
    for folder in folders:
        left = [p for p in Path(folder).rglob("*") if ".tmp" in p.name or p.name.startswith(".fkd-probe")]
        assert not left, left


def _inputs_in(args: list[str]) -> list[Path]:
    """Every existing file or folder named in `args` (spec prefixes removed)."""
    out = []
    for a in args:
        p = Path(a.split(":", 1)[1] if a.split(":", 1)[0] in ("ytf", "mtfl", "kaggle") else a)
        if a.startswith("/") or ":" in a:
            if p.exists():
                out.append(p)
    return out


# ---- bad numbers and usage: one `error:` line naming the option, exit 2, before any work ---------------------

USAGE = [
    (["train", "fit", "--data", "p.npz", "--out", "r", "--batch", "-5"], "--batch"),
    (["train", "fit", "--data", "p.npz", "--out", "r", "--batch", "0"], "--batch"),
    (["train", "fit", "--data", "p.npz", "--out", "r", "--epochs", "0"], "--epochs"),
    (["train", "fit", "--data", "p.npz", "--out", "r", "--lr", "0"], "--lr"),
    (["train", "fit", "--data", "p.npz", "--out", "r", "--lr", "-1e-3"], "--lr"),
    (["train", "fit", "--data", "p.npz", "--out", "r", "--weight-decay", "-1"], "--weight-decay"),
    (["train", "fit", "--data", "p.npz", "--out", "r", "--limit", "0"], "--limit"),
    (["train", "fit", "--data", "p.npz", "--out", "r", "--seed", "-1"], "--seed"),
    (["train", "fit", "--data", "p.npz", "--out", "r", "--stop-k", "0"], "--stop-k"),
    (["train", "fit", "--data", "p.npz", "--out", "r", "--augment", "-1"], "--augment"),
    (["train", "fit", "--data", "p.npz", "--out", "r", "--epochs", "many"], "--epochs"),
    (["train", "fit", "--out", "r"], "--data"),
    (["train", "fit", "--data", "p.npz", "--out", "r", "--bogus"], "--bogus"),
    (["train", "compare", "--data", "p.npz", "--out", "r", "--batch", "-1"], "--batch"),
    (["train", "compare", "--data", "p.npz", "--out", "r", "--epochs", "0"], "--epochs"),
    (["train", "compare", "--data", "p.npz", "--out", "r", "--lr", "0"], "--lr"),
    (["train", "refine", "--stage1", "a.pt", "--data", "p.npz", "--out", "r", "--zoom", "0"], "--zoom"),
    (["train", "refine", "--stage1", "a.pt", "--data", "p.npz", "--out", "r", "--zoom", "1e9"], "--zoom"),  # 0.5..3
    (["train", "refine", "--stage1", "a.pt", "--data", "p.npz", "--out", "r", "--zoom", "0.1"], "--zoom"),
    (["train", "refine", "--stage1", "a.pt", "--data", "p.npz", "--out", "r", "--batch", "0"], "--batch"),
    (["train", "refine", "--stage1", "a.pt", "--data", "p.npz", "--out", "r", "--epochs", "0"], "--epochs"),
    (["train", "prepare", "--data", "mtfl:x.txt", "--out", "p.npz", "--val-fraction", "2"], "--val-fraction"),
    (["train", "prepare", "--data", "mtfl:x.txt", "--out", "p.npz", "--val-fraction", "1"], "--val-fraction"),
    (["train", "prepare", "--data", "mtfl:x.txt", "--out", "p.npz", "--val-fraction", "-0.1"], "--val-fraction"),
    (["train", "prepare", "--data", "mtfl:x.txt", "--out", "p.npz", "--limit", "-5"], "--limit"),
    (["train", "prepare", "--data", "mtfl:x.txt", "--out", "p.npz", "--limit", "0"], "--limit"),
    (["export", "--model", "m.pt", "--min-batch", "0"], "--min-batch"),
    (["export", "--model", "m.pt", "--max-batch", "-1"], "--max-batch"),
    (["train", "nonsense"], "nonsense"),
]


@pytest.mark.parametrize("args, option", USAGE, ids=[" ".join(a[1:]) if a[0] == "train" else " ".join(a)
                                                       for a, _ in USAGE])
def test_bad_numbers_and_usage_are_refused_naming_the_option(args, option, tmp_path):
    r = run_cli(*args, cwd=tmp_path)
    assert r.code == 2, (r.code, r.err)
    assert "Traceback" not in r.err + r.out
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0], r.err
    assert "Invalid value" in r.err or "No such" in r.err or "Missing" in r.err, r.err
    assert list(tmp_path.iterdir()) == []  # refused before anything was made


def test_the_train_group_alone_shows_its_commands(tmp_path):
    """`fkd-track train` with no command lists its commands and exits 0, as `fkd-track` alone does (no `error:`)."""
    r = run_cli("train", cwd=tmp_path)
    assert r.code == 0, (r.code, r.err)
    assert "error" not in r.err.lower() and "Traceback" not in r.err
    assert all(name in r.out for name in ("prepare", "fit", "evaluate", "compare"))


# ---- bad inputs, outputs onto inputs, unwritable outputs: one `error:` line, exit 2, inputs unchanged ------------

CASES = {
    # corrupt, empty, missing, foreign inputs
    "fit corrupt npz": (["train", "fit", "--data", "{junk_npz}", "--out", "{tmp}/r"], "not a prepared dataset"),
    "fit empty npz": (["train", "fit", "--data", "{empty_npz}", "--out", "{tmp}/r"], "not a prepared dataset"),
    "fit missing npz": (["train", "fit", "--data", "{tmp}/nope.npz", "--out", "{tmp}/r"], "not found"),
    "fit truncated --init": (["train", "fit", "--data", "{prep}", "--out", "{tmp}/r", "--init", "{trunc_pt}", *FIT],
                             "trunc.pt"),
    "evaluate truncated pt": (["train", "evaluate", "--model", "{trunc_pt}", "--data", "{prep}"], "trunc.pt"),
    "evaluate garbage onnx": (["train", "evaluate", "--model", "{garbage_onnx}", "--data", "{prep}"],
                              "garbage.onnx"),
    "export truncated pt": (["export", "--model", "{trunc_pt}", "--onnx", "{tmp}/m.onnx"], "trunc.pt"),
    "refine truncated stage1": (["train", "refine", "--stage1", "{trunc_pt}", "--data", "{prep}",
                                 "--out", "{tmp}/r"], "trunc.pt"),
    "report malformed metrics": (["train", "report", "{runs_malformed_metrics_csv}/.."], "metrics.csv"),
    "report empty metrics": (["train", "report", "{runs_empty_metrics_csv}/.."], "metrics.csv"),
    "report non-numeric metrics": (["train", "report", "{runs_text_metrics_csv}/.."], "metrics.csv"),
    "report no run": (["train", "report", "{runs_none_readme_txt}/.."], "no training run"),
    "evaluate kaggle labels without images": (
        ["train", "evaluate", "--model", "{run}/best.pt", "--data", "kaggle:{kaggle_labels_csv}"], "no images"),
    "prepare kaggle labels without images": (
        ["train", "prepare", "--data", "kaggle:{kaggle_labels_csv}", "--out", "{tmp}/p.npz"], "no images"),
    "prepare malformed mtfl line": (
        ["train", "prepare", "--data", "mtfl:{mtfl_bad_txt}", "--out", "{tmp}/p.npz"], "mtfl_bad.txt:3"),
    "evaluate malformed mtfl line": (  # the same rule as prepare (one parser), not a silent drop
        ["train", "evaluate", "--model", "{run}/best.pt", "--data", "mtfl:{mtfl_bad_txt}"], "mtfl_bad.txt:3"),
    # outputs onto inputs or each other
    "export onnx onto the model": (["export", "--model", "{run}/best.pt", "--onnx", "{run}/best.pt"], "is an input"),
    "prepare out onto its data": (
        ["train", "prepare", "--data", "kaggle:{kaggle_labels_csv}", "--out", "{kaggle_labels_csv}"], "is an input"),
    "prepare out into the image folder": (
        ["train", "prepare", "--data", "ytf:{ytf_training_frames_keypoints_csv}", "--out",
         "{ytf_training_frames_keypoints_csv}/../training/p.npz"], "inside the input folder"),
    "evaluate json onto the model": (
        ["train", "evaluate", "--model", "{run}/best.pt", "--data", "{prep}", "--json", "{run}/best.pt"],
        "is an input"),
    "evaluate json onto the data": (
        ["train", "evaluate", "--model", "{run}/best.pt", "--data", "{prep}", "--json", "{prep}"], "is an input"),
    "evaluate ced onto the data spec": (
        ["train", "evaluate", "--model", "{run}/best.pt", "--data", "mtfl:{mtfl_bad_txt}", "--ced", "{mtfl_bad_txt}"],
        "is an input"),
    "evaluate json and ced on one path": (
        ["train", "evaluate", "--model", "{run}/best.pt", "--data", "{prep}", "--json", "{tmp}/m.out",
         "--ced", "{tmp}/m.out"], "both name"),
    "fit init inside its own out": (
        ["train", "fit", "--data", "{prep}", "--out", "{run}", "--init", "{run}/best.pt", "--force", *FIT],
        "is an input"),
    # output folders that cannot be made or written
    "prepare out under a file": (
        ["train", "prepare", "--data", MTFL_SPEC, "--out", "{file_txt}/p.npz"], "file.txt"),
    "evaluate json under a file": (
        ["train", "evaluate", "--model", "{run}/best.pt", "--data", "{prep}", "--json", "{file_txt}/m.json"],
        "file.txt"),
    "evaluate ced under a file": (
        ["train", "evaluate", "--model", "{run}/best.pt", "--data", "{prep}", "--ced", "{file_txt}/c.png"],
        "file.txt"),
    "report out under a file": (["train", "report", "{run}", "--out", "{file_txt}/rep"], "file.txt"),
    "export onnx under a file": (["export", "--model", "{run}/best.pt", "--onnx", "{file_txt}/m.onnx"], "file.txt"),
    "fit out is a file": (["train", "fit", "--data", "{prep}", "--out", "{file_txt}", *FIT], "file.txt"),
    "fit out under a file": (["train", "fit", "--data", "{prep}", "--out", "{file_txt}/run", *FIT], "file.txt"),
    # finished runs are never overwritten
    "fit into a finished run": (["train", "fit", "--data", "{prep}", "--out", "{run}", "--epochs", "2", *FIT],
                                "--resume"),
    "fit resume and force": (["train", "fit", "--data", "{prep}", "--out", "{run}", "--resume", "--force", *FIT],
                             "exclude"),
    "fit resume without a run": (["train", "fit", "--data", "{prep}", "--out", "{tmp}/r", "--resume", *FIT],
                                 "no checkpoint"),
    "refine into a finished run": (["train", "refine", "--stage1", "{run}/best.pt", "--data", "{prep}",
                                    "--out", "{run}"], "--force"),
    "export bad batch order": (["export", "--model", "{run}/best.pt", "--onnx", "{tmp}/m.onnx", "--min-batch", "8",
                                "--opt-batch", "4"], "--min-batch"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fault_is_one_line_and_changes_nothing(name, prep, run, bad, tmp_path):
    template, word = CASES[name]
    values = {"tmp": str(tmp_path), "prep": str(prep), "run": str(run), **{k: str(v) for k, v in bad.items()}}
    args = [a.format(**values) for a in template]
    watched = {p: file_hash(p) for p in {*_inputs_in(args), prep, run, *bad.values()}}
    r = run_cli(*args, cwd=tmp_path)
    assert_user_error(r, word)
    for p, h in watched.items():
        assert file_hash(p) == h, f"{p} changed"
    _no_temp_files(tmp_path, run, prep.parent, bad["file_txt"].parent)
    made = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert made == [], made  # nothing written for a refused command (folders at most)


def test_compare_refuses_existing_runs_before_training_any(prep, run, tmp_path):
    """compare into a folder whose second run exists: refused up front, the first run not even started."""
    out = tmp_path / "cmp"
    shutil.copytree(run, out / "mlp+masked")
    before = file_hash(out)
    r = run_cli("train", "compare", "--data", prep, "--out", out, "--archs", "cnn,mlp", "--epochs", "1")
    assert_user_error(r, "mlp+masked", "--resume", "--force")
    assert file_hash(out) == before  # hashes files only: the cnn run was not started
    assert not any(p.is_file() for p in out.rglob("*") if "cnn" in str(p))


# ---- a full disk: one line, no partial file -----------------------------------------------------------------------

def _fill(folder: Path) -> None:
    """Fill the filesystem of `folder` to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as f:  # unbuffered: ENOSPC comes from write, not close
        try:
            while True:
                f.write(b"\x00" * 65536)
                f.flush()
        except OSError:
            pass
        try:
            while True:
                f.write(b"\x00")
                f.flush()
        except OSError:
            pass


@pytest.mark.parametrize("command", ["prepare", "evaluate-json"])
def test_disk_full_is_one_line_and_leaves_no_partial_file(command, small_tmpfs, prep, run):
    _fill(small_tmpfs)
    if command == "prepare":
        args = ["train", "prepare", "--data", MTFL_SPEC, "--limit", "10", "--out", small_tmpfs / "p.npz"]
    else:
        args = ["train", "evaluate", "--model", run / "best.pt", "--data", prep, "--crop", "prepared",
                "--json", small_tmpfs / "m.json"]
    r = run_cli(*args)
    assert_user_error(r, "No space left")
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["filler"]


# ---- run folders: --force, --resume keeps the better best.pt, signals mid-training --------------------------------

def _epochs(folder: Path) -> list[int]:
    with open(folder / "metrics.csv") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def test_force_starts_over_and_resume_continues(prep, run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    r = run_cli("train", "fit", "--data", prep, "--out", out, "--epochs", "2", "--resume", *FIT)
    assert r.code == 0, r.err
    assert "resumed" in r.out and _epochs(out) == [1, 2]
    r = run_cli("train", "fit", "--data", prep, "--out", out, "--epochs", "1", "--force", *FIT)
    assert r.code == 0, r.err
    assert _epochs(out) == [1]
    _no_temp_files(out)


def test_resume_never_replaces_a_better_best_checkpoint(prep, run, tmp_path):
    """best.pt records a better RMSE than last.pt knows of (an interrupted save leaves best.pt an epoch ahead):
    resuming must keep it."""
    import torch

    out = tmp_path / "run"
    shutil.copytree(run, out)
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    best["best_val_rmse"] = 0.01  # a best.pt no further epoch of this tiny run can beat
    torch.save(best, out / "best.pt")
    last = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    last["best_val_rmse"] = 1e9  # last.pt thinks nothing is saved yet
    last["history"] = [{**h, "val_rmse_px": 1e9} for h in last["history"]]
    torch.save(last, out / "last.pt")
    kept = file_hash(out / "best.pt")
    r = run_cli("train", "fit", "--data", prep, "--out", out, "--epochs", "3", "--resume", *FIT)
    assert r.code == 0, r.err
    assert file_hash(out / "best.pt") == kept
    assert torch.load(out / "last.pt", map_location="cpu", weights_only=True)["epoch"] == 3
    assert "best validation RMSE 0.010" in r.out


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_after_an_epoch_keeps_valid_checkpoints_and_names_the_epoch(sig, code, prep, tmp_path):
    import torch

    out = tmp_path / "run"
    proc = start_cli("train", "fit", "--data", prep, "--out", out, "--epochs", "500", *FIT)
    for line in proc.stdout:
        if line.startswith("epoch 1/"):
            break
    proc.send_signal(sig)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err and "interrupted" in err
    done = _epochs(out)[-1]  # --save-every 1: last.pt, best.pt and metrics.csv are written together
    assert done >= 1 and f"last saved epoch ({done})" in rest
    assert torch.load(out / "last.pt", map_location="cpu", weights_only=True)["epoch"] == done
    assert torch.load(out / "best.pt", map_location="cpu", weights_only=True)["epoch"] <= done
    _no_temp_files(out)


def test_ctrl_c_before_the_first_epoch_says_none_finished(prep, tmp_path):
    out = tmp_path / "run"
    proc = start_cli("train", "fit", "--data", prep, "--out", out, "--epochs", "5", "--batch", "8")  # ML-ResNet
    for line in proc.stdout:
        if line.startswith("training"):
            break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err
    assert "no epoch finished" in rest and "epoch (0)" not in rest
    assert [p.name for p in out.iterdir()] == []  # no checkpoint, no temp file


def test_export_writes_a_complete_onnx_and_nothing_else(run, tmp_path):
    import onnx

    r = run_cli("export", "--model", run / "best.pt", "--onnx", tmp_path / "sub" / "m.onnx")
    assert r.code == 0, r.err
    onnx.checker.check_model(onnx.load(str(tmp_path / "sub" / "m.onnx")))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.onnx"]


def test_held_interrupts_deliver_ctrl_c_only_after_the_block():
    import os

    from train.run_folder import held_interrupts

    done = []
    with pytest.raises(KeyboardInterrupt):
        with held_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("all files written")
    assert done == ["all files written"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---- the audit's cases: each refused up front, one clear line, nothing made ----------------------------------------

@pytest.fixture(scope="session")
def mtfl_prep(tmp_path_factory, shared_data) -> Path:
    """20 MTFL faces only: 5 of the 15 keypoints each, so no face is complete."""
    out = tmp_path_factory.mktemp("faults_mtfl") / "mtfl.npz"
    r = run_cli("train", "prepare", "--data", MTFL_SPEC, "--limit", "20", "--out", out)
    assert r.code == 0, r.err
    return out


@pytest.fixture(scope="session")
def binary_file(tmp_path_factory, shared_data) -> Path:
    """The first 20 kB of a real video: what a user gives by mistake as a label file or a prepared set."""
    p = tmp_path_factory.mktemp("faults_binary") / "clip.avi"
    p.write_bytes(next((SHARED / "videos").glob("*.avi")).read_bytes()[:20000])
    return p


def _nothing_made(folder: Path) -> None:
    assert list(folder.iterdir()) == [], list(folder.rglob("*"))  # no file and no empty folder either


@pytest.mark.parametrize("command", ["fit", "compare"])
def test_complete_only_without_complete_faces_is_refused_before_any_folder(command, mtfl_prep, tmp_path):
    """MTFL gives 5 of the 15 keypoints: the complete-only loss has no face to train on. Refused before any run
    folder is made (compare used to leave three empty ones after an `unexpected ValueError`)."""
    if command == "fit":
        args = ["train", "fit", "--data", mtfl_prep, "--out", tmp_path / "r", "--loss", "complete-only", *FIT]
    else:
        args = ["train", "compare", "--data", mtfl_prep, "--out", tmp_path / "cmp", "--epochs", "1"]
    r = run_cli(*args, cwd=tmp_path)
    assert_user_error(r, "mtfl.npz", "no training face has all 15 keypoints", "complete-only",
                      "--loss masked" if command == "fit" else "--archs")
    _nothing_made(tmp_path)


DEVICE_AND_NAMES = {
    "fit --device": (["train", "fit", "--data", "{prep}", "--out", "{tmp}/r", "--device", "foo"], "--device foo"),
    "fit --device cuda:x": (["train", "fit", "--data", "{prep}", "--out", "{tmp}/r", "--device", "cuda:x"],
                            "--device cuda:x"),
    "compare --device": (["train", "compare", "--data", "{prep}", "--out", "{tmp}/c", "--device", "foo"],
                         "--device foo"),
    "refine --device": (["train", "refine", "--stage1", "{run}/best.pt", "--data", "{prep}", "--out", "{tmp}/r",
                         "--device", "foo"], "--device foo"),
    "fit --arch": (["train", "fit", "--data", "{prep}", "--out", "{tmp}/r", "--arch", "foo"], "--arch"),
    "fit --loss": (["train", "fit", "--data", "{prep}", "--out", "{tmp}/r", "--loss", "foo"], "--loss"),
    "fit --schedule": (["train", "fit", "--data", "{prep}", "--out", "{tmp}/r", "--schedule", "foo"], "--schedule"),
    "fit --arch-option": (["train", "fit", "--data", "{prep}", "--out", "{tmp}/r", "--arch-option", "foo=1"],
                          "foo"),
}


@pytest.mark.parametrize("name", list(DEVICE_AND_NAMES))
def test_bad_device_and_names_are_refused_before_the_run_folder(name, prep, run, tmp_path):
    template, word = DEVICE_AND_NAMES[name]
    args = [a.format(tmp=tmp_path, prep=prep, run=run) for a in template]
    r = run_cli(*args, cwd=tmp_path)
    assert_user_error(r, word)
    if "--device" in word:
        assert "use auto, cpu, cuda, cuda:N or mps" in r.err and "Expected one of" not in r.err
    _nothing_made(tmp_path)  # refine: not even stage2.npz


def test_unknown_arch_option_names_the_options_the_architecture_takes(prep, tmp_path):
    r = run_cli("train", "fit", "--data", prep, "--out", tmp_path / "r", "--arch", "mlp", "--arch-option", "foo=1",
                cwd=tmp_path)
    assert_user_error(r, "--arch-option", "mlp", "foo", "its options: hidden (default 100)")
    assert "__init__" not in r.err
    _nothing_made(tmp_path)


@pytest.mark.parametrize("fmt", ["mtfl", "kaggle"])
def test_a_binary_file_as_label_file_is_named(fmt, binary_file, tmp_path):
    r = run_cli("train", "prepare", "--data", f"{fmt}:{binary_file}", "--out", tmp_path / "sub" / "x.npz",
                cwd=tmp_path)
    assert_user_error(r, f"{binary_file} is not a text label file")
    assert "UnicodeDecodeError" not in r.err
    _nothing_made(tmp_path)


def test_refine_into_a_finished_run_offers_only_force(prep, run, tmp_path):
    before = file_hash(run)
    r = run_cli("train", "refine", "--stage1", run / "best.pt", "--data", prep, "--out", run, cwd=tmp_path)
    assert_user_error(r, "already holds a training run", "--force")
    assert "--resume" not in r.err  # refine has no --resume
    assert file_hash(run) == before


def test_a_missing_label_file_is_named_before_the_output_placement(tmp_path):
    """--out pv.npz would lie in the folder of mtfl:nope.txt, but the more basic problem is the missing file."""
    r = run_cli("train", "prepare", "--data", "mtfl:nope.txt", "--out", "pv.npz", cwd=tmp_path)
    assert_user_error(r, "dataset file not found: nope.txt")
    _nothing_made(tmp_path)


def test_truncated_checkpoint_says_truncated_or_corrupt(bad, prep, tmp_path):
    r = run_cli("train", "evaluate", "--model", bad["trunc_pt"], "--data", prep, cwd=tmp_path)
    assert_user_error(r, "trunc.pt", "truncated or corrupt")
    assert "Invalid argument" not in r.err


@pytest.mark.parametrize("command", ["fit", "evaluate", "report", "report-missing", "refine"])
def test_a_file_that_is_no_prepared_set_is_named_and_nothing_is_made(command, binary_file, run, tmp_path):
    data = tmp_path.parent / "nope.npz" if command == "report-missing" else binary_file
    args = {
        "fit": ["train", "fit", "--data", data, "--out", tmp_path / "r", *FIT],
        "evaluate": ["train", "evaluate", "--model", run / "best.pt", "--data", data, "--crop", "prepared"],
        "report": ["train", "report", run, "--data", data, "--out", tmp_path / "rep"],
        "report-missing": ["train", "report", run, "--data", data, "--out", tmp_path / "rep"],
        "refine": ["train", "refine", "--stage1", run / "best.pt", "--data", data, "--out", tmp_path / "r"],
    }[command]
    r = run_cli(*args, cwd=tmp_path)
    if command == "report-missing":
        assert_user_error(r, "prepared dataset not found", "nope.npz")
    else:
        assert_user_error(r, f"{binary_file} is not a prepared dataset (.npz written by `fkd-track train prepare`)")
        assert "allow_pickle" not in r.err
    _nothing_made(tmp_path)


def test_evaluate_bad_angles_says_what_to_give(prep, run, tmp_path):
    r = run_cli("train", "evaluate", "--model", run / "best.pt", "--data", prep, "--crop", "detector",
                "--angles", "abc", cwd=tmp_path)
    assert_user_error(r, "--angles abc: give degrees", "e.g. -25,25, or none")
    assert "convert string to float" not in r.err


@pytest.mark.parametrize("args, shown", [
    (["train", "--help"], ["the [train] extra"]),
    (["train", "evaluate", "--help"], ["[default: (the packaged model)]", "[default: (the tracker's)]"]),
    (["train", "compare", "--help"], ["--device", "cuda:N"]),
], ids=["train", "evaluate", "compare"])
def test_help_keeps_its_square_brackets_and_describes_device(args, shown, tmp_path):
    r = run_cli(*args, cwd=tmp_path)
    assert r.code == 0, r.err
    text = " ".join(r.out.replace("│", " ").split())  # the rich panel's borders and wrapping away
    for s in shown:
        assert s in text, (s, r.out)
    if "compare" in args:
        line = next(ln for ln in r.out.splitlines() if "--device" in ln)
        assert "cuda:N" in line, line


@pytest.mark.slow
def test_fit_ends_with_one_summary_line(prep, tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", "fit", "--data", prep, "--out", out, "--epochs", "2", *FIT)
    assert r.code == 0, r.err
    last = r.out.strip().splitlines()[-1]
    assert last.startswith("done: 2 epochs in "), r.out
    assert "best validation RMSE" in last and f"-> {out / 'best.pt'}; last -> {out / 'last.pt'}" in last, last
    best_epoch = int(last.split(" at epoch ")[1].split()[0])
    assert best_epoch in (1, 2) and "epoch 2/2" in r.out
