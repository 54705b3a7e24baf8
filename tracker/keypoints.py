"""The keypoint schema: names, order and left/right flip pairs of each keypoint set.

Every module that names, orders, flips or writes keypoints takes a `KeypointSet` from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KeypointSet:
    """An ordered set of named 2-D keypoints and its horizontal-flip permutation."""

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[str, str], ...]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    @property
    def columns(self) -> list[str]:
        """Flat coordinate column names in Kaggle style: name_x, name_y, ..."""
        return [f"{n}_{axis}" for n in self.names for axis in ("x", "y")]

    @property
    def flip_permutation(self) -> np.ndarray:
        """perm[i] = index of the keypoint that lands on slot i after a horizontal mirror."""
        perm = np.arange(len(self.names))
        for a, b in self.flip_pairs:
            ia, ib = self.index(a), self.index(b)
            perm[ia], perm[ib] = ib, ia
        return perm

    def has(self, *names: str) -> bool:
        return all(n in self.names for n in names)


KAGGLE15 = KeypointSet(
    name="kaggle15",
    names=(
        "left_eye_center",
        "right_eye_center",
        "left_eye_inner_corner",
        "left_eye_outer_corner",
        "right_eye_inner_corner",
        "right_eye_outer_corner",
        "left_eyebrow_inner_end",
        "left_eyebrow_outer_end",
        "right_eyebrow_inner_end",
        "right_eyebrow_outer_end",
        "nose_tip",
        "mouth_left_corner",
        "mouth_right_corner",
        "mouth_center_top_lip",
        "mouth_center_bottom_lip",
    ),
    flip_pairs=(
        ("left_eye_center", "right_eye_center"),
        ("left_eye_inner_corner", "right_eye_inner_corner"),
        ("left_eye_outer_corner", "right_eye_outer_corner"),
        ("left_eyebrow_inner_end", "right_eyebrow_inner_end"),
        ("left_eyebrow_outer_end", "right_eyebrow_outer_end"),
        ("mouth_left_corner", "mouth_right_corner"),
    ),
)

KEYPOINT_SETS: dict[str, KeypointSet] = {KAGGLE15.name: KAGGLE15}


def get_keypoint_set(name: str) -> KeypointSet:
    """Look a keypoint set up by name; raises ValueError naming the known sets."""
    try:
        return KEYPOINT_SETS[name]
    except KeyError:
        raise ValueError(f"unknown keypoint set {name!r}; known: {', '.join(KEYPOINT_SETS)}") from None


def flip_keypoints(points: np.ndarray, width: float, kps: KeypointSet) -> np.ndarray:
    """Mirror keypoints (..., K, 2) horizontally in an image `width` pixels wide and swap left/right.

    Pixel centres are at integer coordinates, so x maps to (width - 1) - x, matching cv2.flip.
    """
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] = (width - 1) - out[..., 0]
    return out[..., kps.flip_permutation, :]
