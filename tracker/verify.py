"""A closer look at one face region when the full-frame detector missed a tracked face: frontal and
profile (both sides) Haar cascades on the region alone, at a looser setting.

Keeps a face that turned away for a moment; lets the tracker drop a track whose crop holds no face.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from tracker.crop import FaceBox
from tracker.haar import HaarDetector, HaarParams

PROFILE_CASCADE = "haarcascade_profileface.xml"


class FaceVerifier:
    """`holds_face(gray, box)`: is there a face of about the box's size around the box?"""

    def __init__(self, min_neighbors: int = 3, margin: float = 1.6, work_size: int = 96) -> None:
        self.frontal = HaarDetector(HaarParams()).cascade
        self.profile = HaarDetector(HaarParams(cascade=PROFILE_CASCADE)).cascade
        self.min_neighbors = min_neighbors
        self.margin = margin  # the region searched, as a multiple of the box side
        self.work_size = work_size  # the box is searched at about this many pixels per side

    def holds_face(self, gray: np.ndarray, box: FaceBox) -> bool:
        x, y, w, h = box.scaled(self.margin).to_xywh()
        x0, y0 = max(0, int(math.floor(x))), max(0, int(math.floor(y)))
        x1, y1 = min(gray.shape[1], int(math.ceil(x + w))), min(gray.shape[0], int(math.ceil(y + h)))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return False
        k = min(1.0, self.work_size / box.size)
        roi = gray[y0:y1, x0:x1]
        if k < 1.0:
            roi = cv2.resize(roi, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        side = box.size * k
        lo, hi = max(12, int(side * 0.5)), max(13, int(side * 1.6))
        for cascade, image in ((self.frontal, roi), (self.profile, roi), (self.profile, cv2.flip(roi, 1))):
            found = cascade.detectMultiScale(
                image, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(lo, lo), maxSize=(hi, hi)
            )
            if len(found):
                return True
        return False
