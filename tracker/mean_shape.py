"""Mean face shapes per head pose (frontal, turned, profile) and their per-coordinate spread, after similarity
(Procrustes) alignment, and the distance of a shape from the nearest of them.

The numbers below were computed once: the frontal shape by `fit_mean_shape(load_kaggle_shapes(...))` from the 2140
complete rows of ../shared/data/kaggle/facial_keypoints_labels.csv, the turned and profile ones by `fit_pose_shapes`
from the YouTube-Faces labels; tests/test_tracker_mean_shape.py recomputes them.
"""

from __future__ import annotations

from dataclasses import dataclass

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

# Fitted once by `fit_pose_shapes` from the 3531 YouTube-Faces frames (their 15 Kaggle points, from the 68 labelled)
# and their mirror images, binned by `yaw_proxy` at the bounds `pose_edges` takes from the 10000 MTFL faces' pose
# labels; tests/test_tracker_mean_shape.py recomputes them. Both are seen turned to the subject's left.
POSE_EDGES = (0.17519, 0.38733)  # |yaw_proxy|: frontal below the first, turned, profile from the second

TURNED_SHAPE = np.array([
    [0.59314, -0.36669],
    [-0.67548, -0.34348],
    [0.34515, -0.34769],
    [0.77625, -0.38355],
    [-0.42661, -0.33761],
    [-0.96825, -0.34845],
    [0.45387, -0.79567],
    [0.99712, -0.72064],
    [-0.27410, -0.78205],
    [-1.30001, -0.67923],
    [0.29479, 0.44361],
    [0.49283, 1.12683],
    [-0.55884, 1.14527],
    [0.14478, 0.97407],
    [0.10535, 1.41526],
])
TURNED_STD = np.array([
    [0.04235, 0.05341],
    [0.04309, 0.03926],
    [0.04363, 0.04935],
    [0.07002, 0.08024],
    [0.04067, 0.04081],
    [0.05886, 0.04675],
    [0.05270, 0.06738],
    [0.09553, 0.10477],
    [0.06548, 0.08463],
    [0.07493, 0.06051],
    [0.05579, 0.12534],
    [0.07267, 0.08375],
    [0.08759, 0.06564],
    [0.04949, 0.08251],
    [0.05235, 0.09331],
])
TURNED_QUANTILES = np.array([
    0.16267, 0.33370, 0.42534, 0.47529, 0.50878, 0.56047, 0.59897,
    0.66437, 0.72027, 0.77400, 0.83373, 0.89535, 0.95988, 1.03167,
    1.12479, 1.23459, 1.37502, 1.52690, 1.76936, 2.33713, 6.75219,
])

PROFILE_SHAPE = np.array([
    [0.50049, -0.37773],
    [-0.62208, -0.38279],
    [0.27624, -0.36279],
    [0.61442, -0.38764],
    [-0.40209, -0.36671],
    [-0.91889, -0.39126],
    [0.50164, -0.82783],
    [0.77015, -0.72594],
    [-0.14044, -0.82515],
    [-1.24921, -0.74109],
    [0.49800, 0.46923],
    [0.38486, 1.19702],
    [-0.57567, 1.19574],
    [0.21955, 1.03451],
    [0.14305, 1.49244],
])
PROFILE_STD = np.array([
    [0.05743, 0.05739],
    [0.05252, 0.05178],
    [0.05188, 0.05556],
    [0.08918, 0.08645],
    [0.04385, 0.04936],
    [0.06995, 0.06409],
    [0.05870, 0.07085],
    [0.12830, 0.11811],
    [0.07895, 0.08280],
    [0.08934, 0.07548],
    [0.07485, 0.11160],
    [0.12671, 0.13644],
    [0.10954, 0.06351],
    [0.05402, 0.08363],
    [0.05068, 0.09252],
])
PROFILE_QUANTILES = np.array([
    0.17340, 0.30030, 0.37089, 0.44583, 0.49206, 0.52978, 0.56692,
    0.61157, 0.64639, 0.70338, 0.76317, 0.82833, 0.88110, 0.98874,
    1.03301, 1.17062, 1.28899, 1.38243, 1.52707, 2.01982, 17.78142,
])


def normalise_shape(points: np.ndarray) -> np.ndarray:
    """Points (..., K, 2) moved to centroid 0 and scaled to root-mean-square radius 1."""
    p = np.asarray(points, dtype=np.float64)
    p = p - p.mean(axis=-2, keepdims=True)
    rms = np.sqrt((p**2).sum(axis=-1).mean(axis=-1))[..., None, None]
    return p / np.where(rms > 0, rms, 1.0)


def align_shape(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Similarity transform (scale, rotation, shift; never a mirror) of points (K, 2) onto a normalised
    reference (K, 2), by least squares. Returns the aligned points in the reference's units. Several references
    (P, K, 2) at once: one alignment onto each, (P, K, 2)."""
    p = normalise_shape(points)
    # the complex scale*rotation a minimising |a z - r| onto each reference: 2-D Procrustes in complex form
    z = p[:, 0] + 1j * p[:, 1]
    r = reference[..., 0] + 1j * reference[..., 1]
    a = (np.conj(z) * r).sum(axis=-1) / max(float((z.real**2 + z.imag**2).sum()), 1e-12)  # vdot(z, r) / |z|^2
    w = np.asarray(a)[..., None] * z
    return np.stack([w.real, w.imag], axis=-1)


def shape_distance(points: np.ndarray, mean: np.ndarray = MEAN_SHAPE, std: np.ndarray = SHAPE_STD) -> float:
    """Mean squared z-score of the aligned shape's coordinates against the mean shape (about 1 for a
    typical labelled face, large for a collapsed or scrambled one); inf when any point is not finite."""
    return float(shape_distances(points, mean[None], std[None])[0])


def shape_distances(points: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """`shape_distance` of points (K, 2) to several mean shapes at once: means and stds (P, K, 2) -> (P,),
    each reference aligned to separately (`align_shape` onto all of them in one vectorised step)."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape != means.shape[1:] or not np.isfinite(p).all():
        return np.full(len(means), np.inf)
    return (((align_shape(p, means) - means) / stds) ** 2).mean(axis=(-2, -1))


def subset_shape(indices: list[int] | np.ndarray, mean: np.ndarray = MEAN_SHAPE, std: np.ndarray = SHAPE_STD
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) for some of the 15 points (KAGGLE15 indices), renormalised as `normalise_shape` would
    normalise those points alone; for models that predict a subset (e.g. the five MTFL points)."""
    idx = np.asarray(indices)
    sub = mean[idx] - mean[idx].mean(axis=0)
    rms = float(np.sqrt((sub**2).sum(axis=1).mean()))
    return sub / rms, std[idx] / rms


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


# -- head pose: the shape of a turned face ----------------------------------------------------------------------

YAW_POINTS = ("left_eye_center", "right_eye_center", "nose_tip", "mouth_left_corner", "mouth_right_corner")


def yaw_proxy(points: np.ndarray) -> np.ndarray:
    """How far a face is turned, from its five MTFL points (..., 15, 2): the nose tip's offset along the eye line
    from the midpoint of the eye and mouth centres, in inter-ocular distances (0 frontal; positive when the nose
    points to the subject's left, i.e. the image's right; NaN where a point is missing)."""
    p = np.asarray(points, dtype=np.float64)
    le, re, nose, ml, mr = (p[..., KAGGLE15.index(n), :] for n in YAW_POINTS)
    eye = le - re
    d = np.hypot(eye[..., 0], eye[..., 1])
    mid = (le + re + ml + mr) / 4.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((nose - mid) * eye).sum(axis=-1) / (d * d)


def mirror_shapes(points: np.ndarray) -> np.ndarray:
    """The same faces seen in a mirror (..., 15, 2): x negated and left/right points swapped (a face turned to
    its left becomes one turned to its right)."""
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] *= -1.0
    return out[..., KAGGLE15.flip_permutation, :]


def pose_edges(mtfl_points: np.ndarray, mtfl_poses: np.ndarray) -> tuple[float, float]:
    """The |yaw_proxy| bounds between frontal, turned and profile faces: midway between the medians of the MTFL
    classes (frontal; left and right; left and right profile), from MTFL faces' (N, 15, 2) Kaggle points (the five
    it labels) and pose labels 0..4 (left profile, left, frontal, right, right profile)."""
    a = np.abs(yaw_proxy(mtfl_points))
    frontal, turned, profile = (float(np.median(a[np.isin(mtfl_poses, c)])) for c in ((2,), (1, 3), (0, 4)))
    return (frontal + turned) / 2.0, (turned + profile) / 2.0


def fit_pose_shapes(shapes: np.ndarray, edges: tuple[float, float]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`fit_mean_shape` of the turned and of the profile faces among `shapes` (|yaw_proxy| within `edges`, and
    beyond the second), each face and its mirror image counted, seen turned to the subject's left."""
    both = np.concatenate([shapes, mirror_shapes(shapes)])
    yaw = yaw_proxy(both)
    bins = ((yaw >= edges[0]) & (yaw < edges[1]), yaw >= edges[1])
    return [fit_mean_shape(both[b]) for b in bins]


@dataclass(frozen=True)
class PoseShape:
    """One head pose's mean shape, its per-coordinate spread and the `shape_distance` 95 % of its real faces stay
    within (`typical`)."""

    name: str
    mean: np.ndarray
    std: np.ndarray
    typical: float

    def mirrored(self, name: str) -> PoseShape:
        """The same pose turned the other way."""
        return PoseShape(name, mirror_shapes(self.mean), self.std[KAGGLE15.flip_permutation], self.typical)


def _pose_shapes() -> tuple[PoseShape, ...]:
    turned = PoseShape("turned to its left", TURNED_SHAPE, TURNED_STD, float(TURNED_QUANTILES[19]))
    profile = PoseShape("profile to its left", PROFILE_SHAPE, PROFILE_STD, float(PROFILE_QUANTILES[19]))
    return (PoseShape("frontal", MEAN_SHAPE, SHAPE_STD, float(DISTANCE_QUANTILES[19])),
            turned, turned.mirrored("turned to its right"), profile, profile.mirrored("profile to its right"))


# frontal (Kaggle), then turned and profile to each side (YouTube-Faces)
POSE_SHAPES = _pose_shapes()


def pose_distances(points: np.ndarray, indices: list[int] | None = None) -> np.ndarray:
    """`shape_distance` of points (15, 2) to each of POSE_SHAPES, in units of that pose's `typical` distance (1:
    as far as the 95th percentile of its real faces); with `indices`, only those Kaggle points are judged."""
    p = np.asarray(points, dtype=np.float64)
    if indices is None:
        means, stds = _POSE_MEANS, _POSE_STDS
    else:
        subsets = [subset_shape(indices, pose.mean, pose.std) for pose in POSE_SHAPES]
        p = p[list(indices)]
        means, stds = np.stack([m for m, _ in subsets]), np.stack([s for _, s in subsets])
    return shape_distances(p, means, stds) / _POSE_TYPICAL


_POSE_MEANS = np.stack([pose.mean for pose in POSE_SHAPES])
_POSE_STDS = np.stack([pose.std for pose in POSE_SHAPES])
_POSE_TYPICAL = np.array([pose.typical for pose in POSE_SHAPES])
