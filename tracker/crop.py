"""Face boxes and the one affine face crop shared by training, evaluation and tracking.

A `FaceBox` is a (possibly rotated) square in frame pixels; `crop_face` warps it to an N x N grey crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from tracker.keypoints import KeypointSet

CROP_SIZE = 96  # the network's input: 96 x 96 grey pixels, as in the Kaggle set


@dataclass(frozen=True)
class FaceBox:
    """A square face region: centre (cx, cy), side `size` in pixels, in-plane rotation `angle` in degrees."""

    cx: float
    cy: float
    size: float
    angle: float = 0.0

    @classmethod
    def from_xywh(cls, x: float, y: float, w: float, h: float) -> FaceBox:
        """An upright square with the centre of the (x, y, w, h) rectangle and side sqrt(w*h)."""
        return cls(x + w / 2.0, y + h / 2.0, math.sqrt(max(w, 0.0) * max(h, 0.0)))

    @classmethod
    def whole_image(cls, shape: tuple[int, ...]) -> FaceBox:
        """The box of an image that already is a face crop (e.g. Kaggle's 96x96): it crops pixel for pixel."""
        h, w = shape[:2]
        return cls(w / 2.0 - 0.5, h / 2.0 - 0.5, float(w))

    def to_xywh(self) -> tuple[float, float, float, float]:
        """Axis-aligned bounding rectangle (x, y, w, h) of the (rotated) square."""
        c = self.corners()
        x0, y0 = c.min(axis=0)
        x1, y1 = c.max(axis=0)
        return float(x0), float(y0), float(x1 - x0), float(y1 - y0)

    def pixel_extent(self, shape: tuple[int, ...], margin: int = 0) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the whole pixels of `to_xywh`'s rectangle, `margin` more each side, clipped to an
        image of `shape` (x1, y1 exclusive; empty when x1 <= x0 or y1 <= y0)."""
        x, y, w, h = self.to_xywh()
        return (max(int(math.floor(x)) - margin, 0), max(int(math.floor(y)) - margin, 0),
                min(int(math.ceil(x + w)) + margin, shape[1]), min(int(math.ceil(y + h)) + margin, shape[0]))

    def corners(self) -> np.ndarray:
        """The four corners (4, 2) in frame pixels: top-left, top-right, bottom-right, bottom-left."""
        h = self.size / 2.0
        local = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
        t = math.radians(self.angle)
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        return local @ rot.T + [self.cx, self.cy]

    def scaled(self, factor: float) -> FaceBox:
        return replace(self, size=self.size * factor)

    def iou(self, other: FaceBox) -> float:
        """Intersection over union of the two boxes' axis-aligned bounding rectangles."""
        ax, ay, aw, ah = self.to_xywh()
        bx, by, bw, bh = other.to_xywh()
        iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
        ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
        inter = iw * ih
        union = aw * ah + bw * bh - inter
        return inter / union if union > 0 else 0.0


def crop_matrix(box: FaceBox, size: int = CROP_SIZE) -> np.ndarray:
    """The 2x3 affine matrix taking frame pixels to crop pixels.

    Pixel centres sit at integer coordinates: the box's left edge maps to -0.5 and its right edge to
    size - 0.5, and the face is rotated by -angle so that it stands upright in the crop.
    """
    k = size / box.size
    t = math.radians(box.angle)
    c, s = math.cos(t), math.sin(t)
    lin = k * np.array([[c, s], [-s, c]])  # k * R(-angle)
    offset = np.array([size / 2.0 - 0.5, size / 2.0 - 0.5]) - lin @ np.array([box.cx, box.cy])
    return np.hstack([lin, offset[:, None]])


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    lin_inv = np.linalg.inv(m[:, :2])
    return np.hstack([lin_inv, (-lin_inv @ m[:, 2])[:, None]])


def apply_affine(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to points (..., 2); NaNs stay NaN."""
    p = np.asarray(points, dtype=np.float64)
    return p @ m[:, :2].T + m[:, 2]


def to_crop(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Frame pixels -> crop pixels, given the crop's matrix from `crop_matrix`/`crop_face`."""
    return apply_affine(points, m)


def from_crop(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Crop pixels -> frame pixels, the exact inverse of `to_crop`."""
    return apply_affine(points, invert_affine(m))


def to_gray(image: np.ndarray) -> np.ndarray:
    """A uint8 single-channel view of a BGR, BGRA or grey image."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    if image.shape[2] == 1:
        return image[:, :, 0]
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def crop_face(image: np.ndarray, box: FaceBox, size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Warp the face in `box` to a size x size uint8 grey crop; returns (crop, 2x3 frame->crop matrix).

    Parts of the box outside the frame are filled by replicating the border. When the crop shrinks
    the face by more than 2x, the region is first area-averaged (cv2.INTER_AREA) so that fine texture
    does not alias; the returned matrix is the exact geometric map either way.
    """
    gray = to_gray(image)
    m = crop_matrix(box, size)
    k = size / box.size
    warp_m, src = m, gray
    if k < 0.5:
        x0, y0, x1, y1 = box.pixel_extent(gray.shape, margin=2)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            sw, sh = max(1, round((x1 - x0) * k)), max(1, round((y1 - y0) * k))
            src = cv2.resize(gray[y0:y1, x0:x1], (sw, sh), interpolation=cv2.INTER_AREA)
            fx, fy = sw / (x1 - x0), sh / (y1 - y0)
            # frame -> small image: u = (x - x0 + 0.5) * fx - 0.5 ; we need small -> crop = m o small^-1
            small_to_frame = np.array([[1 / fx, 0, x0 + 0.5 / fx - 0.5], [0, 1 / fy, y0 + 0.5 / fy - 0.5]])
            warp_m = m[:, :2] @ small_to_frame[:, :2]
            warp_m = np.hstack([warp_m, (m[:, :2] @ small_to_frame[:, 2] + m[:, 2])[:, None]])
    crop = cv2.warpAffine(src, warp_m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, m


@dataclass(frozen=True)
class BoxCalibration:
    """Linear map from eye/mouth geometry to a Haar-like face box (see `box_from_keypoints`)."""

    along: float  # box centre = eye midpoint + along * (mouth mid - eye mid) + across * eye vector
    across: float
    size_eye: float  # box side = size_eye * inter-ocular distance + size_mouth * eye-to-mouth distance
    size_mouth: float


# Fitted by `fkd-track train prepare` on the shared YouTube-Faces + MTFL training faces where the
# Haar cascade found the face (its log prints the refit); the tracker uses these defaults.
HAAR_CALIBRATION = BoxCalibration(along=0.293, across=-0.004, size_eye=1.525, size_mouth=1.116)

ANCHORS = ("left_eye_center", "right_eye_center", "mouth_left_corner", "mouth_right_corner")


def anchor_geometry(points: np.ndarray, kps: KeypointSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(eye midpoint, mouth-minus-eye vector, left-minus-right eye vector) for points (..., K, 2)."""
    le, re, ml, mr = (points[..., kps.index(n), :] for n in ANCHORS)
    eye_mid = (le + re) / 2.0
    return eye_mid, (ml + mr) / 2.0 - eye_mid, le - re


def box_from_keypoints(
    points: np.ndarray,
    kps: KeypointSet,
    calib: BoxCalibration = HAAR_CALIBRATION,
    upright: bool = True,
) -> FaceBox | None:
    """The face box a Haar detector would give for these keypoints (eye centres and mouth corners).

    With upright=False the box also takes the face's roll from the eye line, for rotated crops.
    Returns None when the set lacks those keypoints or any of them is NaN.
    """
    if not kps.has(*ANCHORS):
        return None
    eye_mid, em, eye = anchor_geometry(np.asarray(points, dtype=np.float64), kps)
    if not (np.isfinite(eye_mid).all() and np.isfinite(em).all() and np.isfinite(eye).all()):
        return None
    centre = eye_mid + calib.along * em + calib.across * eye
    size = calib.size_eye * float(np.hypot(*eye)) + calib.size_mouth * float(np.hypot(*em))
    if size <= 1.0:
        return None
    angle = 0.0 if upright else math.degrees(math.atan2(eye[1], eye[0]))
    return FaceBox(float(centre[0]), float(centre[1]), size, angle)


def fit_box_calibration(points: np.ndarray, boxes: list[FaceBox], kps: KeypointSet) -> BoxCalibration:
    """Least-squares fit of a `BoxCalibration` from keypoints (N, K, 2) and matching detector boxes."""
    eye_mid, em, eye = anchor_geometry(np.asarray(points, dtype=np.float64), kps)
    centres = np.array([[b.cx, b.cy] for b in boxes])
    # centre - eye_mid = along * em + across * eye, for x and y rows
    a = np.concatenate([np.stack([em[:, 0], eye[:, 0]], 1), np.stack([em[:, 1], eye[:, 1]], 1)])
    d = np.concatenate([centres[:, 0] - eye_mid[:, 0], centres[:, 1] - eye_mid[:, 1]])
    (along, across), *_ = np.linalg.lstsq(a, d, rcond=None)
    sizes = np.array([b.size for b in boxes])
    s = np.stack([np.hypot(eye[:, 0], eye[:, 1]), np.hypot(em[:, 0], em[:, 1])], 1)
    (size_eye, size_mouth), *_ = np.linalg.lstsq(s, sizes, rcond=None)
    return BoxCalibration(float(along), float(across), float(size_eye), float(size_mouth))
