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

# The five MTFL / TCDCN points, in Kaggle naming and order (subject's left = image right).
MTFL5 = KeypointSet(
    name="mtfl5",
    names=("left_eye_center", "right_eye_center", "nose_tip", "mouth_left_corner", "mouth_right_corner"),
    flip_pairs=(("left_eye_center", "right_eye_center"), ("mouth_left_corner", "mouth_right_corner")),
)

# The nose tip alone: the smallest set, e.g. for a pointer driven by head motion.
NOSE = KeypointSet(name="nose", names=("nose_tip",), flip_pairs=())


def _ibug_name(i: int) -> str:
    return f"ibug_{i:02d}"


def _ibug_flip_pairs() -> tuple[tuple[str, str], ...]:
    """iBUG 300-W mirror pairs (0-based): jaw, brows, nostrils, eyes, outer and inner lips."""
    pairs = [(i, 16 - i) for i in range(8)]  # jaw 0..16, 8 is the chin
    pairs += [(17 + i, 26 - i) for i in range(5)]  # eyebrows
    pairs += [(31, 35), (32, 34)]  # nostrils; 27..30 (bridge) and 33 sit on the midline
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lip; 51, 57 on the midline
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lip; 62, 66 on the midline
    return tuple((_ibug_name(a), _ibug_name(b)) for a, b in pairs)


# The 68 iBUG 300-W points (YouTube-Faces markup), named by their 0-based iBUG index.
IBUG68 = KeypointSet(name="ibug68", names=tuple(_ibug_name(i) for i in range(68)), flip_pairs=_ibug_flip_pairs())

KEYPOINT_SETS: dict[str, KeypointSet] = {s.name: s for s in (KAGGLE15, MTFL5, NOSE, IBUG68)}

# Points of other sets that a source set can derive (source set name -> {point name: source points averaged}).
# iBUG-68 -> Kaggle names as in ../shared/data/README.md; every other point is copied by name.
DERIVED_POINTS: dict[str, dict[str, tuple[str, ...]]] = {
    "ibug68": {
        name: tuple(_ibug_name(i) for i in idx)
        for name, idx in {
            "left_eye_center": range(42, 48),
            "right_eye_center": range(36, 42),
            "left_eye_inner_corner": (42,),
            "left_eye_outer_corner": (45,),
            "right_eye_inner_corner": (39,),
            "right_eye_outer_corner": (36,),
            "left_eyebrow_inner_end": (22,),
            "left_eyebrow_outer_end": (26,),
            "right_eyebrow_inner_end": (21,),
            "right_eyebrow_outer_end": (17,),
            "nose_tip": (30,),
            "mouth_left_corner": (54,),
            "mouth_right_corner": (48,),
            "mouth_center_top_lip": (51,),
            "mouth_center_bottom_lip": (57,),
        }.items()
    }
}


def get_keypoint_set(name: str) -> KeypointSet:
    """Look a keypoint set up by name; raises ValueError naming the known sets."""
    try:
        return KEYPOINT_SETS[name]
    except KeyError:
        raise ValueError(f"unknown keypoint set {name!r}; known: {', '.join(KEYPOINT_SETS)}") from None


def keypoint_set_for(name: str, names: tuple[str, ...], flip_pairs: tuple[tuple[str, str], ...] = ()) -> KeypointSet:
    """The registered set `name` when its point names are `names`, else a set built from names and flip pairs
    (a model file's own description of its keypoints)."""
    known = KEYPOINT_SETS.get(name)
    if known is not None and known.names == tuple(names):
        return known
    return KeypointSet(name, tuple(names), tuple((str(a), str(b)) for a, b in flip_pairs))


def flip_keypoints(points: np.ndarray, width: float, kps: KeypointSet) -> np.ndarray:
    """Mirror keypoints (..., K, 2) horizontally in an image `width` pixels wide and swap left/right.

    Pixel centres are at integer coordinates, so x maps to (width - 1) - x, matching cv2.flip.
    """
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] = (width - 1) - out[..., 0]
    return out[..., kps.flip_permutation, :]


def derivable(src: KeypointSet, dst: KeypointSet) -> tuple[str, ...]:
    """The names of `dst` that points of `src` give: shared names, plus those in DERIVED_POINTS[src]."""
    derived = DERIVED_POINTS.get(src.name, {})
    return tuple(n for n in dst.names if n in src.names or n in derived)


def map_keypoints(points: np.ndarray, src: KeypointSet, dst: KeypointSet) -> np.ndarray:
    """Points (..., len(src), 2) of set `src` -> (..., len(dst), 2) of set `dst`, NaN where `src` lacks one.

    A point is copied by name, or averaged from the source points DERIVED_POINTS lists for it
    (a NaN among those gives NaN).
    """
    pts = np.asarray(points, dtype=np.float64)
    if src.names == dst.names:
        return pts.copy()
    derived = DERIVED_POINTS.get(src.name, {})
    out = np.full(pts.shape[:-2] + (len(dst), 2), np.nan)
    for j, name in enumerate(dst.names):
        if name in src.names:
            out[..., j, :] = pts[..., src.index(name), :]
        elif name in derived:
            out[..., j, :] = pts[..., [src.index(n) for n in derived[name]], :].mean(axis=-2)
    return out
