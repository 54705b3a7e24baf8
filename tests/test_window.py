"""The window path as a person sees it: `fkd-track video X` on an X display (Xvfb) opens a window that shows the
frames with the keypoint overlay drawn on them; screenshots of the screen (xwd) while it runs prove it."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import start_cli
from tracker.overlay import POINT_COLOUR
from tracker.sources import VideoSource

XVFB, XWD = shutil.which("Xvfb"), shutil.which("xwd")
pytestmark = pytest.mark.skipif(
    not (XVFB and XWD), reason="needs Xvfb and xwd on PATH (Debian: apt-get install xvfb x11-apps)"
)


@pytest.fixture
def display():
    """A fresh virtual X display (1024x768, 24 bit) for one test; its name, e.g. ':3'."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [XVFB, "-displayfd", str(write_end), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    os.close(write_end)
    with os.fdopen(read_end) as f:
        number = f.readline().strip()  # Xvfb writes its display number here once it accepts clients
    if not number:
        proc.kill()
        pytest.fail(f"Xvfb did not start: {proc.communicate()[1].decode(errors='replace')[-500:]}")
    try:
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def read_xwd(data: bytes) -> np.ndarray:
    """A BGR image from an X window dump (xwd's format: a header of 25 big-endian words, a colour map, pixels)."""
    h = struct.unpack(">25I", data[:100])
    header_size, width, height, byte_order, bits_per_pixel, bytes_per_line, colours = (
        h[0], h[4], h[5], h[7], h[11], h[12], h[19])
    n = bits_per_pixel // 8
    assert n in (3, 4), f"unexpected {bits_per_pixel} bits per pixel"
    pixels = np.frombuffer(data, np.uint8, count=height * bytes_per_line, offset=header_size + 12 * colours)
    pixels = pixels.reshape(height, bytes_per_line)[:, : width * n].reshape(height, width, n)
    return pixels[:, :, :3] if byte_order == 0 else pixels[:, :, ::-1][:, :, n - 3:]  # LSB first: B, G, R


def screenshot(display: str) -> np.ndarray:
    dump = subprocess.run([XWD, "-root", "-silent", "-display", display], capture_output=True, check=True)
    return read_xwd(dump.stdout)


def point_pixels(image: np.ndarray) -> int:
    """Pixels of the overlay's keypoint colour, allowing for the smoothing of the circles' edges."""
    return int((np.abs(image.astype(int) - np.array(POINT_COLOUR)).max(axis=2) <= 80).sum())


def watch_for_overlay(proc, display: str, enough: int = 60) -> tuple[int, int]:
    """Screenshots while `proc` runs, until one shows `enough` keypoint-coloured pixels: (best count, shots)."""
    best, shots = 0, 0
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and best < enough:
        time.sleep(0.2)
        best = max(best, point_pixels(screenshot(display)))
        shots += 1
    return best, shots


@pytest.fixture(scope="module")
def background(video_path) -> int:
    """The most overlay-green pixels in any frame of the video itself."""
    with VideoSource(video_path) as src:
        return max(point_pixels(f.image) for f in src)


def test_video_with_a_display_shows_the_overlay_in_a_window(display, background, video_path, model_path, tmp_path):
    assert background < 5  # the video itself has (almost) no pixel of the overlay's green
    csv = tmp_path / "k.csv"
    proc = start_cli("video", video_path, "--model", model_path, "--csv", csv, env={"DISPLAY": display})
    best, shots = watch_for_overlay(proc, display)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "running headless" not in err and "Traceback" not in err
    assert f"wrote {csv} (202 rows)" in err
    assert best >= 60, f"no keypoint overlay on screen in {shots} screenshots (best {best} green pixels)"


LIVE = """
import sys
from engines.select import load_backend
from tracker.config import SmoothParams, TrackParams
from tracker.haar import HaarDetector
from tracker.live import run_live
from tracker.pipeline import Pipeline
from tracker.sources import VideoSource

pipeline = Pipeline(HaarDetector(), load_backend(sys.argv[2]), TrackParams(), SmoothParams())
stats, dropped = run_live(VideoSource(sys.argv[1]), pipeline, headless=False, echo=print, pace=True)
print("frames", stats.frames, "dropped", dropped)
"""


def test_live_view_with_a_display_shows_the_overlay_in_a_window(display, background, video_path, model_path):
    """The live view's window path (`fkd-track --camera N` without --headless: run_live, its capture thread and
    window) on the video replayed at its frame rate as a camera would deliver it (no camera here)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LIVE, str(video_path), str(model_path)], env={**os.environ, "DISPLAY": display},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    best, shots = watch_for_overlay(proc, display)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Traceback" not in err, err
    frames, dropped = int(out.split()[1]), int(out.split()[3])
    assert frames + dropped == 202 and frames > 100
    assert best >= 60, f"no keypoint overlay on screen in {shots} screenshots (best {best} green pixels)"
