"""Scene-cut detection from grey-level histograms of consecutive frames.

Each frame is reduced to 2x2 regional 32-bin histograms; the mean Bhattacharyya distance to the previous
frame's is large (0.43 and up) across a cut and small (0.14 at most) within a shot on the shared videos.
"""

from __future__ import annotations

import cv2
import numpy as np

THUMB = (64, 48)  # frames are compared at this size: cheap and blind to noise
BINS = 32


def frame_signature(gray: np.ndarray) -> np.ndarray:
    """Four normalised 32-bin histograms (2x2 regions) of a grey frame, shape (4, BINS) float32. A frame larger
    than the thumbnail is first cut, about its centre, to whole multiples of it (at most THUMB - 1 pixels
    less a side): the area shrink then averages equal blocks, 4-5x faster on 640x360 or 1080p frames."""
    h, w = gray.shape[:2]
    tw, th = THUMB
    if w >= tw and h >= th:
        x0, y0 = (w % tw) // 2, (h % th) // 2
        gray = gray[y0:y0 + h - h % th, x0:x0 + w - w % tw]
    small = cv2.resize(gray, THUMB, interpolation=cv2.INTER_AREA)
    h, w = small.shape
    out = []
    for y0, y1 in ((0, h // 2), (h // 2, h)):
        for x0, x1 in ((0, w // 2), (w // 2, w)):
            hist = cv2.calcHist([np.ascontiguousarray(small[y0:y1, x0:x1])], [0], None, [BINS], [0, 256])
            out.append(hist[:, 0] / max(float(hist.sum()), 1.0))
    return np.stack(out).astype(np.float32)


def signature_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Bhattacharyya distance between corresponding regional histograms (0 same, 1 disjoint)."""
    d = [cv2.compareHist(x, y, cv2.HISTCMP_BHATTACHARYYA) for x, y in zip(a, b, strict=True)]
    return float(np.mean(d))


class SceneCutDetector:
    """Says whether each new frame starts a new shot, given a distance threshold."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.previous: np.ndarray | None = None
        self.last_distance = 0.0

    def is_cut(self, gray: np.ndarray) -> bool:
        sig = frame_signature(gray)
        prev, self.previous = self.previous, sig
        if prev is None:
            self.last_distance = 0.0
            return False
        self.last_distance = signature_distance(prev, sig)
        return self.last_distance > self.threshold
