"""Shared fixtures: the real faces and videos in ../shared/data, read in place.

Under CI (CI=true) missing shared data fails loudly; elsewhere the tests that need it are skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FKD_SHARED_DATA", REPO.parent / "shared" / "data"))

YTF_SPEC = f"ytf:{SHARED / 'ytf' / 'training_frames_keypoints.csv'}"
MTFL_SPEC = f"mtfl:{SHARED / 'mtfl' / 'training.txt'}"


def count_denormals(values) -> int:
    """How many values, as float32, are non-zero but below float32's smallest normal number."""
    a = np.asarray(values, dtype=np.float32)
    return int(((a != 0) & (np.abs(a) < np.finfo(np.float32).tiny)).sum())
KAGGLE_LABELS = SHARED / "kaggle" / "facial_keypoints_labels.csv"
VIDEOS = SHARED / "videos"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; fails under CI when absent, skips elsewhere."""
    if not (SHARED / "README.md").is_file():
        msg = f"shared data not found at {SHARED} (set FKD_SHARED_DATA or put ../shared beside the repo)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return SHARED


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


def run_cli(*args: str, timeout: float = 600, cwd: Path | None = None) -> CliResult:
    """Run `fkd-track ARGS` in a fresh process, as a user would; returns exit code, stdout, stderr."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "from tracker.entry import main; main()", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def cli():
    """The `run_cli` function, as a fixture."""
    return run_cli
