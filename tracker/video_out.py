"""The annotated-video writer: frames go to an .mp4 (MPEG-4 Part 2), .avi (MJPEG) or .mkv file.

Opened on the first frame (when the size is known; odd sides get one black row/column, as the codecs need
even ones); `close()` finalises the file, also after Ctrl-C.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from engines.errors import UserError

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


class AnnotatedVideoWriter:
    """Writes BGR frames of one size at a fixed frame rate."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = os.fspath(path)
        ext = os.path.splitext(self.path)[1].lower()
        if ext not in FOURCC:
            raise UserError(f"cannot write video {self.path}: use one of {', '.join(FOURCC)}")
        self.fourcc = FOURCC[ext]
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
            self._writer.release()
            self._writer = None
