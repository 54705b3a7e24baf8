"""The mean Kaggle face shape and its per-coordinate spread, after similarity (Procrustes) alignment.

The numbers below were computed once by `fit_mean_shape(load_kaggle_shapes(...))` from the 2140 complete rows
of ../shared/data/kaggle/facial_keypoints_labels.csv; tests/test_tracker_mean_shape.py recomputes them.
"""

from __future__ import annotations

import numpy as np

from tracker.keypoints import KAGGLE15

# Normalised shape: centroid at 0, root-mean-square distance from the centroid 1, x right and y down,
# in KAGGLE15 order (subject's left eye first, so it lies at positive x).
MEAN_SHAPE = np.array([
    [0.69742, -0.39585],
    [-0.69748, -0.38743],
    [0.43311, -0.35788],
    [0.97091, -0.36534],
    [-0.43266, -0.35473],
    [-0.97432, -0.35106],
    [0.31483, -0.68713],
    [1.20785, -0.67024],
    [-0.33079, -0.68012],
    [-1.22620, -0.64025],
    [0.00195, 0.38093],
    [0.59045, 1.09214],
    [-0.57009, 1.10034],
    [0.00542, 0.96814],
    [0.00960, 1.34848],
])

# Standard deviation of each aligned coordinate around MEAN_SHAPE (same units, same order).
SHAPE_STD = np.array([
    [0.04491, 0.04209],
    [0.04924, 0.04398],
    [0.05283, 0.03711],
    [0.05949, 0.04797],
    [0.05577, 0.03804],
    [0.06016, 0.05163],
    [0.08185, 0.06492],
    [0.07412, 0.06898],
    [0.07822, 0.06581],
    [0.07138, 0.06999],
    [0.10234, 0.13374],
    [0.08190, 0.06874],
    [0.08659, 0.07054],
    [0.03250, 0.11317],
    [0.02907, 0.11008],
])

# Quantiles (0, 5, 10, ..., 100 %) of `shape_distance` over the same 2140 aligned Kaggle shapes.
DISTANCE_QUANTILES = np.array([
    0.16342, 0.33395, 0.38355, 0.43267, 0.47671, 0.51758, 0.57411,
    0.63035, 0.68000, 0.73512, 0.78623, 0.84780, 0.91948, 0.98956,
    1.08903, 1.19836, 1.32497, 1.51532, 1.80036, 2.43490, 15.25734,
])


def normalise_shape(points: np.ndarray) -> np.ndarray:
    """Points (..., K, 2) moved to centroid 0 and scaled to root-mean-square radius 1."""
    p = np.asarray(points, dtype=np.float64)
    p = p - p.mean(axis=-2, keepdims=True)
    rms = np.sqrt((p**2).sum(axis=-1).mean(axis=-1))[..., None, None]
    return p / np.where(rms > 0, rms, 1.0)


def align_shape(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Similarity transform (scale, rotation, shift; never a mirror) of points (K, 2) onto a normalised
    reference (K, 2), by least squares. Returns the aligned points in the reference's units."""
    p = normalise_shape(points)
    # best rotation of p onto the reference: 2-D Procrustes in complex form
    z = p[:, 0] + 1j * p[:, 1]
    r = reference[:, 0] + 1j * reference[:, 1]
    a = np.vdot(z, r) / max(np.vdot(z, z).real, 1e-12)  # complex scale*rotation minimising |a z - r|
    w = a * z
    return np.stack([w.real, w.imag], axis=-1)


def shape_distance(points: np.ndarray, mean: np.ndarray = MEAN_SHAPE, std: np.ndarray = SHAPE_STD) -> float:
    """Mean squared z-score of the aligned shape's coordinates against the mean shape (about 1 for a
    typical labelled face, large for a collapsed or scrambled one); inf when any point is not finite."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape != mean.shape or not np.isfinite(p).all():
        return float("inf")
    z = (align_shape(p, mean) - mean) / std
    return float((z**2).mean())


def subset_shape(indices: list[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) for some of the 15 points (KAGGLE15 indices), renormalised as `normalise_shape` would
    normalise those points alone; for models that predict a subset (e.g. the five MTFL points)."""
    idx = np.asarray(indices)
    sub = MEAN_SHAPE[idx] - MEAN_SHAPE[idx].mean(axis=0)
    rms = float(np.sqrt((sub**2).sum(axis=1).mean()))
    return sub / rms, SHAPE_STD[idx] / rms


def load_kaggle_shapes(path: str) -> np.ndarray:
    """The complete rows of the Kaggle label table as (N, 15, 2) pixel coordinates."""
    import pandas as pd

    table = pd.read_csv(path)
    values = table[KAGGLE15.columns].to_numpy(dtype=np.float64)
    values = values[np.isfinite(values).all(axis=1)]
    return values.reshape(len(values), len(KAGGLE15), 2)


def fit_mean_shape(shapes: np.ndarray, iterations: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generalised Procrustes analysis: (mean shape, per-coordinate std, distance quantiles 0..100 % by 5)."""
    shapes = np.asarray(shapes, dtype=np.float64)
    mean = normalise_shape(shapes.mean(axis=0))
    for _ in range(iterations):
        aligned = np.stack([align_shape(s, mean) for s in shapes])
        mean = normalise_shape(aligned.mean(axis=0))
    aligned = np.stack([align_shape(s, mean) for s in shapes])
    std = aligned.std(axis=0)
    dist = np.array([shape_distance(s, mean, std) for s in shapes])
    return mean, std, np.quantile(dist, np.linspace(0.0, 1.0, 21))
