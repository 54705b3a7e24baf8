"""Per-face confidence: how plausible the keypoint shape is, times how well the detector agrees.

Pure functions of numbers in, numbers out; the tracker combines them and thresholds the result.
"""

from __future__ import annotations

import math

import numpy as np

from tracker.mean_shape import pose_distances

MISS_FACTOR = 0.7  # share of its agreement a face keeps while the full-frame detector does not find it


def shape_score(points: np.ndarray, indices: list[int] | None = None) -> float:
    """1 for a shape as close to the mean face of one head pose (frontal, turned or profile to either side:
    `tracker.mean_shape.POSE_SHAPES`) as 95 % of that pose's real faces, falling towards 0 as the shape departs
    further from the nearest (halved every such distance beyond it); 0 for non-finite points.

    `points` are in KAGGLE15 order; with `indices`, only those points are judged (a model that predicts
    fewer, e.g. five); fewer than three points carry no shape, and score 1.
    """
    if indices is not None and len(indices) < 3:
        return 1.0
    r = float(np.min(pose_distances(points, indices)))
    if not math.isfinite(r):
        return 0.0
    return float(0.5 ** max(0.0, r - 1.0))


def detector_agreement(iou: float, missed: bool = False) -> float:
    """Overlap between the keypoints' face box and the detector's box, mapped to 0..1 (IoU 0.2 -> 0,
    0.6 or more -> 1); scaled by MISS_FACTOR when the latest detection round missed the face (even if a
    closer look then found it)."""
    a = min(1.0, max(0.0, (iou - 0.2) / 0.4))
    return a * (MISS_FACTOR if missed else 1.0)


def combine(shape: float, agreement: float) -> float:
    """The face's confidence in 0..1."""
    return float(shape * agreement)
