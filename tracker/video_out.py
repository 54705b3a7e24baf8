"""The annotated-video writer: frames go to an .mp4 (MPEG-4 Part 2), .avi (MJPEG) or .mkv file.

Opened on the first frame (when the size is known; odd sides get one black row/column, as the codecs need
even ones); `close()` finalises the file (callers do it in a `finally`: Ctrl-C, SIGTERM, errors), and
`verify()` reopens it and counts its frames before anyone may say it was written.
"""

from __future__ import annotations

import os
import shutil

import cv2
import numpy as np

from engines.errors import UserError

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


FULL_BELOW = 1 << 20  # free bytes under which a folder's disk counts as full when a written video is broken


def video_fourcc(path: str | os.PathLike) -> str:
    """The codec for a video file name, by its extension; UserError for one we cannot write."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FOURCC:
        raise UserError(f"cannot write video {os.fspath(path)}: use one of {', '.join(FOURCC)}")
    return FOURCC[ext]


def playable_frames(path: str | os.PathLike) -> int:
    """Frames in a video file as a player sees it: 0 when it does not open or its first frame does not decode."""
    cap = cv2.VideoCapture(os.fspath(path))
    try:
        if not cap.isOpened() or not cap.read()[0]:
            return 0
        return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        cap.release()


class AnnotatedVideoWriter:
    """Writes BGR frames of one size at a fixed frame rate."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = os.fspath(path)
        self.fourcc = video_fourcc(self.path)
        self.fps = fps if fps and fps > 0 else 25.0
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if h % 2 or w % 2:
            image = cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            h, w = image.shape[:2]
        if self._writer is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self._writer.isOpened():
                raise UserError(
                    f"cannot write video {self.path} (codec {self.fourcc} unavailable or folder not writable)"
                )
            self._size = (w, h)
        if (w, h) != self._size:  # frames of a chained input may differ in size
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.release()

    def verify(self) -> int:
        """Close, then reopen the file and count its frames: the number written, or UserError saying that the
        file does not play (or holds fewer frames) and why, when known (a full disk)."""
        self.close()
        if self.frames == 0:
            raise UserError(f"no frame reached {self.path}; nothing was written")
        found = playable_frames(self.path)
        if found == self.frames:
            return found
        folder = os.path.dirname(os.path.abspath(self.path))
        why = ""
        try:
            if shutil.disk_usage(folder).free < FULL_BELOW:
                why = f" (the disk holding {folder} is full)"
        except OSError:
            pass
        what = "does not play" if found == 0 else f"plays only {found} of the {self.frames} frames written"
        raise UserError(f"video {self.path} {what}{why}")
