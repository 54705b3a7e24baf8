"""The live view: frames captured on their own thread (newest only), tracked, shown in a window with
q/Esc to quit, or headless with FPS lines on the terminal.

`run_live` takes any `FrameSource`, so a video file replayed at its frame rate exercises the camera path.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import cv2

from engines.errors import UserError
from tracker.config import OverlayParams
from tracker.csv_out import KeypointCsvWriter
from tracker.pipeline import Pipeline
from tracker.results import STAGES, FrameResult, stage_names
from tracker.sources import FrameSource, LatestFrameSource
from tracker.stream import StreamStats, run_stream
from tracker.video_out import AnnotatedVideoWriter

QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q or Esc


@contextmanager
def live_opencv_threads(threads: int = 1) -> Iterator[None]:
    """OpenCV's own thread pool at `threads` while the live loop runs (restored after). A detection round on
    the (lower-priority) worker thread then stays on one core instead of spreading its cascade passes over all
    of them, and the frame loop keeps a core for itself (live p99 latency, README "`fkd-track bench`")."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def display_available() -> bool:
    """False on a Linux machine with no X11 or Wayland display (where a window would abort the process)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def require_display() -> None:
    """UserError when no window can be shown here."""
    if not display_available():
        raise UserError("no display to open a window on; add --headless (and --csv/--out to keep results)")


class Window:
    """An OpenCV window; `show` returns False once the user pressed q/Esc or closed the window."""

    def __init__(self, title: str) -> None:
        require_display()
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise UserError("this OpenCV build cannot open windows; add --headless") from None

    def show(self, image) -> bool:
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if key in QUIT_KEYS:
            return False
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


class TerminalReport:
    """Headless feedback: one line per `every_s` seconds with FPS, faces and the mean ms per stage."""

    def __init__(self, echo: Callable[[str], None], every_s: float = 1.0) -> None:
        self.echo = echo
        self.every_s = every_s
        self.window_start = time.perf_counter()
        self.frames = 0
        self.faces = 0
        self.totals = dict.fromkeys(STAGES, 0.0)

    def __call__(self, result: FrameResult, image) -> bool:
        self.frames += 1
        self.faces += len(result.faces)
        for s, v in result.timings_ms.items():
            self.totals[s] = self.totals.get(s, 0.0) + v
        now = time.perf_counter()
        if now - self.window_start >= self.every_s:
            fps = self.frames / (now - self.window_start)
            stages = " ".join(f"{s} {self.totals[s] / self.frames:.1f}" for s in stage_names(self.totals))
            faces = self.faces / self.frames
            self.echo(f"frame {result.index}: {fps:.1f} fps, {faces:.1f} faces/frame, ms: {stages}")
            self.window_start, self.frames, self.faces = now, 0, 0
            self.totals = dict.fromkeys(STAGES, 0.0)
        return True


def run_live(
    source: FrameSource,
    pipeline: Pipeline,
    headless: bool,
    echo: Callable[[str], None],
    csv: KeypointCsvWriter | None = None,
    video: AnnotatedVideoWriter | None = None,
    overlay: OverlayParams | None = None,
    pace: bool = False,
    max_frames: int | None = None,
) -> tuple[StreamStats, int]:
    """Track the newest frame of `source` until it ends, q/Esc, or Ctrl-C; returns (stats, frames dropped).

    `pace=True` replays a file source at its own frame rate, as a camera would deliver it. Detection runs
    asynchronously (the pipeline's worker thread, at a lower priority, OpenCV on one thread), so it never
    holds up a frame.
    """
    pipeline.async_detect = True
    latest = LatestFrameSource(source, pace=pace)
    window = None if headless else Window(f"fkd-track: {source.name} (q or Esc to quit)")
    report = TerminalReport(echo) if headless else None

    def on_frame(result: FrameResult, image) -> bool:
        if window is not None:
            return window.show(image)
        return report(result, image)

    try:
        with live_opencv_threads():
            stats = run_stream(
                latest, pipeline, csv=csv, video=video, overlay=overlay,
                draw=window is not None or video is not None, on_frame=on_frame, max_frames=max_frames,
            )
    finally:
        latest.close()
        pipeline.close()
        if window is not None:
            window.close()
    return stats, latest.dropped
