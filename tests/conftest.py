"""Shared fixtures: the real faces and videos in ../shared/data, read in place.

Under CI (CI=true) missing shared data fails loudly; elsewhere the tests that need it are skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from train.datasets import shared_data_dir

REPO = Path(__file__).resolve().parent.parent
SHARED = shared_data_dir()

YTF_SPEC = f"ytf:{SHARED / 'ytf' / 'training_frames_keypoints.csv'}"
MTFL_SPEC = f"mtfl:{SHARED / 'mtfl' / 'training.txt'}"


def count_denormals(values) -> int:
    """How many values, as float32, are non-zero but below float32's smallest normal number."""
    a = np.asarray(values, dtype=np.float32)
    return int(((a != 0) & (np.abs(a) < np.finfo(np.float32).tiny)).sum())
KAGGLE_LABELS = SHARED / "kaggle" / "facial_keypoints_labels.csv"
VIDEOS = SHARED / "videos"


def missing(msg: str) -> None:
    """Something the tests need is not on this machine: a failure under CI (CI=true), a skip elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; fails under CI when absent, skips elsewhere."""
    if not (SHARED / "README.md").is_file():
        missing(f"shared data not found at {SHARED} (set FKD_SHARED_DATA or put ../shared beside the repo)")
    return SHARED


@pytest.fixture(scope="session")
def haar_detection() -> None:
    """OpenCV's cascade detector is there (OpenCV 5 dropped it: the GPU image ships 5.0, the project pins < 5);
    fails under CI when absent, skips elsewhere."""
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        missing(f"OpenCV {cv2.__version__} has no CascadeClassifier (removed in 5.0; the project pins opencv-python<5)")


@dataclass
class Face:
    """One real face: grey image, its 15 Kaggle keypoints (NaN where missing) and its source row."""

    image: np.ndarray
    keypoints: np.ndarray
    row: str


def _faces(spec: str, indices: list[int]) -> list[Face]:
    from train.datasets import load_dataset

    fs = load_dataset(spec)
    return [Face(fs.load_image(i), fs.keypoints[i], fs.rows[i]) for i in indices]


@pytest.fixture(scope="session")
def ytf_faces(shared_data) -> list[Face]:
    """Six YouTube-Faces frames with all 15 keypoints (different people)."""
    return _faces(YTF_SPEC, [0, 500, 1000, 1500, 2000, 3000])


@pytest.fixture(scope="session")
def mtfl_faces(shared_data) -> list[Face]:
    """Six MTFL faces with their 5 keypoints (the other 10 NaN), from both MTFL folders."""
    return _faces(MTFL_SPEC, [0, 1, 2, 6000, 7000, 9000])


@pytest.fixture(scope="session")
def video_path(shared_data) -> Path:
    """A real face video: 202 frames, 320x239, 25 fps; Haar finds a face in 200 of them."""
    return shared_data / "videos" / "0492_03_009_bill_gates.avi"


@pytest.fixture(scope="session")
def model_path() -> str:
    """The packaged default model (FKD_TEST_MODEL may point at another model file); it must exist."""
    from engines.select import default_model_path

    path = os.environ.get("FKD_TEST_MODEL") or default_model_path()
    if not os.path.isfile(path):
        pytest.fail(f"model {path} is missing")
    return path


@pytest.fixture(scope="session")
def all_video_paths(shared_data) -> list[Path]:
    return sorted((shared_data / "videos").glob("*.avi"))


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def fkd_command() -> list[str]:
    """The installed `fkd-track` console script beside this interpreter (as a user runs it)."""
    import shutil
    import sys

    script = Path(sys.executable).parent / "fkd-track"
    if not script.is_file():
        found = shutil.which("fkd-track")
        if found is None:
            pytest.fail("fkd-track is not installed in this environment (pip install -e .)")
        script = Path(found)
    return [str(script)]


def _cli_env(extra: dict | None = None) -> dict:
    return {**os.environ, "COLUMNS": "200", **(extra or {})}


def run_cli(*args: str, timeout: float = 600, cwd: Path | None = None, env: dict | None = None) -> CliResult:
    """Run the installed `fkd-track ARGS` in a fresh process, as a user would; returns code, stdout, stderr."""
    import subprocess

    proc = subprocess.run(
        [*fkd_command(), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO, env=_cli_env(env), stdin=subprocess.DEVNULL,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def start_cli(*args: str, cwd: Path | None = None, env: dict | None = None):
    """Start the installed `fkd-track ARGS` (for signals); stdout/stderr are pipes of text."""
    import subprocess

    return subprocess.Popen(
        [*fkd_command(), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=cwd or REPO, env=_cli_env(env), stdin=subprocess.DEVNULL,
    )


def file_hash(path: Path) -> str:
    """sha256 of a file, or of every file under a folder (names included)."""
    import hashlib

    h = hashlib.sha256()
    path = Path(path)
    for p in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if p.is_file():
            h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def assert_user_error(result: CliResult, *words: str, code: int = 2) -> None:
    """The error contract: exit `code`, exactly one `error:` line on stderr naming `words`, no traceback."""
    assert "Traceback" not in result.err + result.out, result.err
    lines = [ln for ln in result.err.splitlines() if ln.startswith("error:")]
    assert result.code == code, (result.code, result.err)
    assert len(lines) == 1, result.err
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MiB tmpfs mounted under tmp_path, to fill the disk; skipped (with the reason) where mount is denied."""
    import subprocess

    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("disk-full cases need root to mount a small tmpfs")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture(scope="session")
def cli():
    """The `run_cli` function, as a fixture."""
    return run_cli
