"""Per-face confidence: how plausible the keypoint shape is, times how well the detector agrees.

Pure functions of numbers in, numbers out; the tracker combines them and thresholds the result.
"""

from __future__ import annotations

import math

import numpy as np

from tracker.mean_shape import DISTANCE_QUANTILES, shape_distance, subset_shape

# The 95th percentile of real labelled Kaggle shapes: distances up to here count as fully plausible.
TYPICAL_DISTANCE = float(DISTANCE_QUANTILES[19])
MISS_FACTOR = 0.7  # share of its agreement a face keeps while the full-frame detector does not find it


def shape_score(points: np.ndarray, indices: list[int] | None = None) -> float:
    """1 for a shape as close to the mean Kaggle face as 95 % of real faces, falling towards 0 as the shape
    departs further (halved every TYPICAL_DISTANCE beyond it); 0 for non-finite points.

    `points` are in KAGGLE15 order; with `indices`, only those points are judged (a model that predicts
    fewer, e.g. five); fewer than three points carry no shape, and score 1.
    """
    pts = np.asarray(points, dtype=np.float64)
    if indices is None:
        d = shape_distance(pts)
    elif len(indices) < 3:
        return 1.0
    else:
        d = shape_distance(pts[list(indices)], *subset_shape(indices))
    if not math.isfinite(d):
        return 0.0
    return float(0.5 ** (max(0.0, d - TYPICAL_DISTANCE) / TYPICAL_DISTANCE))


def detector_agreement(iou: float, missed: bool = False) -> float:
    """Overlap between the keypoints' face box and the detector's box, mapped to 0..1 (IoU 0.2 -> 0,
    0.6 or more -> 1); scaled by MISS_FACTOR when the latest detection round missed the face (even if a
    closer look then found it)."""
    a = min(1.0, max(0.0, (iou - 0.2) / 0.4))
    return a * (MISS_FACTOR if missed else 1.0)


def combine(shape: float, agreement: float) -> float:
    """The face's confidence in 0..1."""
    return float(shape * agreement)
