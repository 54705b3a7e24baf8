"""OpenCV Haar frontal-face detection on a downscaled grey frame.

`HaarDetector.detect` returns upright `FaceBox`es in full-frame pixels, largest first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from tracker.crop import FaceBox, to_gray

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class HaarParams:
    """Detector settings; the CLI exposes each one."""

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 40  # smallest face side in full-frame pixels
    max_side: int = 640  # frames are downscaled so their longer side is at most this
    cascade: str = DEFAULT_CASCADE


class HaarDetector:
    """A Haar cascade from cv2.data.haarcascades (or a path) with its detection parameters."""

    def __init__(self, params: HaarParams | None = None) -> None:
        self.params = params or HaarParams()
        path = self.params.cascade
        if not os.path.isfile(path):
            path = os.path.join(cv2.data.haarcascades, path)
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise FileNotFoundError(f"cannot load Haar cascade {self.params.cascade!r} (looked at {path})")

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in a BGR or grey frame, as upright boxes in frame pixels, largest first."""
        gray = to_gray(image)
        p = self.params
        scale = min(1.0, p.max_side / max(gray.shape[:2]))
        small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        min_side = max(8, int(round(p.min_size * scale)))
        rects = self.cascade.detectMultiScale(
            small, scaleFactor=p.scale_factor, minNeighbors=p.min_neighbors, minSize=(min_side, min_side)
        )
        boxes = [FaceBox.from_xywh(x / scale, y / scale, w / scale, h / scale) for (x, y, w, h) in rects]
        return sorted(boxes, key=lambda b: -b.size)
