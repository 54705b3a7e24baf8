"""The combined OpenCV cascade face detector: frontal cascades, the profile cascade on the frame and its mirror,
and an in-plane rotation search, run on a downscaled grey frame and merged by non-maximum suppression.

`HaarDetector.detect` returns `FaceBox`es in full-frame pixels (rotated where the rotation search found them),
most trusted first; `HaarDetector.search` is one cascade pass, reused by the tracker's closer look.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

from engines.errors import UserError
from tracker.crop import FaceBox, to_gray

# Short names for the cascades OpenCV ships in cv2.data.haarcascades; a path or a file name there also works.
CASCADE_FILES = {
    "frontal": "haarcascade_frontalface_default.xml",
    "alt2": "haarcascade_frontalface_alt2.xml",
    "alt": "haarcascade_frontalface_alt.xml",
    "profile": "haarcascade_profileface.xml",
}
DEFAULT_CASCADE = CASCADE_FILES["frontal"]
# Tuned on the shared faces for recall against cost per detection frame (README, "Face detection").
DEFAULT_CASCADES = ("frontal", "alt2", "profile")
DEFAULT_ANGLES = (-25.0, 25.0)


@dataclass(frozen=True)
class HaarParams:
    """Detector settings. `cascades` run in order on the frame (one whose file name holds "profile" also on
    the mirrored frame, for faces turned the other way); the first cascade also runs on the frame rotated by
    each of `angles` (degrees) to find tilted faces. Boxes overlapping an earlier one by more than `nms_iou`
    (or centred inside it at a similar size) are dropped."""

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 40  # smallest face side in full-frame pixels
    max_side: int = 640  # frames are downscaled so their longer side is at most this
    cascades: tuple[str, ...] = DEFAULT_CASCADES
    angles: tuple[float, ...] = DEFAULT_ANGLES
    nms_iou: float = 0.3
    extra_max_side: int = 320  # every pass but the first cascade's runs on the frame shrunk to this (cost)


FRONTAL_ONLY = HaarParams(cascades=("frontal",), angles=())


@dataclass(frozen=True)
class Pass:
    """One cascade pass of the combined detector: cascade `cascade` (index into HaarParams.cascades) on the
    frame, mirrored and/or turned by `angle` degrees. The first cascade's unturned passes run at `max_side`,
    every other pass at `extra_max_side`."""

    cascade: int
    mirror: bool = False
    angle: float = 0.0

    @property
    def first(self) -> bool:
        return self.cascade == 0 and not self.angle


def detector_passes(params: HaarParams) -> tuple[Pass, ...]:
    """The passes `HaarDetector.detect` runs, in trust order: each cascade (a profile one also mirrored), then
    the first cascade turned by each of `params.angles`."""
    out = []
    for k, name in enumerate(params.cascades):
        out.append(Pass(k))
        if "profile" in cascade_path(name):
            out.append(Pass(k, mirror=True))
    return tuple(out) + tuple(Pass(0, angle=a) for a in params.angles)


def round_passes(passes: tuple[Pass, ...], round_index: int, extra: int) -> tuple[Pass, ...]:
    """The passes of one detection round that runs `extra` of the detector's extra passes in rotation: the first
    pass every round, then `extra` of the others, the `round_index`-th group of them (wrapping round), in trust
    order. `extra` < 0 or at least the number of extra passes: all of them."""
    first, rest = passes[:1], passes[1:]
    if extra < 0 or extra >= len(rest):
        return passes
    if extra == 0:
        return first
    start = (round_index * extra) % len(rest)
    chosen = {(start + j) % len(rest) for j in range(extra)}
    return first + tuple(ps for j, ps in enumerate(rest) if j in chosen)


def cascade_path(name: str) -> str:
    """The file of a cascade given by short name (CASCADE_FILES), path, or file name in cv2.data.haarcascades."""
    name = CASCADE_FILES.get(name, name)
    return name if os.path.isfile(name) else os.path.join(cv2.data.haarcascades, name)


def load_cascade(name: str) -> cv2.CascadeClassifier:
    if not hasattr(cv2, "CascadeClassifier"):  # e.g. a machine's own OpenCV 5 shadowing the pinned 4.x
        raise UserError(f"OpenCV {cv2.__version__} has no cv2.CascadeClassifier (OpenCV 5 removed it and its Haar "
                        "files); fkd-track needs opencv-python>=4.8,<5")
    path = cascade_path(name)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FileNotFoundError(f"cannot load Haar cascade {name!r} (looked at {path})")
    return cascade


def parse_cascades(text: str) -> tuple[str, ...]:
    """'frontal,alt2,profile' -> a tuple of cascade names; ValueError for an empty list."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ValueError("name at least one cascade (e.g. frontal,alt2,profile)")
    return names


def parse_angles(text: str) -> tuple[float, ...]:
    """'-25,25' -> (-25.0, 25.0); '' or 'none' -> no rotation search; ValueError outside -90..90."""
    if text.strip().lower() in ("", "none"):
        return ()
    angles = tuple(float(a) for a in text.split(",") if a.strip())
    if any(not -90.0 <= a <= 90.0 for a in angles):
        raise ValueError("rotation angles must lie within -90..90 degrees")
    return angles


def rotation_matrix(shape: tuple[int, ...], angle: float) -> np.ndarray:
    """The 2x3 map from an image of `shape` to itself turned by `angle` degrees about its centre (same size).

    Its linear part equals `tracker.crop.crop_matrix`'s for a box of that angle, so an upright box found in the
    turned image is a box of that angle in the original."""
    h, w = shape[:2]
    return cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)


def box_from_rect(rect, angle: float = 0.0, inverse: np.ndarray | None = None, mirror_width: int | None = None,
                  scale: float = 1.0) -> FaceBox:
    """A cascade rectangle (x, y, w, h) found in a mirrored (width given) and/or turned image (`inverse` maps
    the turned image's pixel centres back) as a FaceBox of that angle, in the pixels before downscaling by `scale`."""
    x, y, w, h = (float(v) for v in rect)
    cx, cy = x + w / 2.0, y + h / 2.0
    if mirror_width is not None:
        cx = mirror_width - cx
    if inverse is not None:  # pixel centres sit at integer coordinates, edges at -0.5
        cx, cy = (float(v) + 0.5 for v in inverse @ np.array([cx - 0.5, cy - 0.5, 1.0]))
    return FaceBox(cx / scale, cy / scale, math.sqrt(w * h) / scale, angle)


def contains(outer: FaceBox, inner: FaceBox) -> bool:
    """`inner`'s centre lies within `outer` and their sizes differ by less than 2x."""
    half = outer.size / 2.0
    near = abs(inner.cx - outer.cx) < half and abs(inner.cy - outer.cy) < half
    return near and 0.5 < inner.size / outer.size < 2.0


def suppress(boxes: list[FaceBox], max_iou: float) -> list[FaceBox]:
    """Greedy non-maximum suppression in the given (trust) order: keep a box unless it overlaps a kept one by
    more than `max_iou` (upright extents compared) or the two are centred in each other at a similar size."""
    kept: list[FaceBox] = []
    for b in boxes:
        ub = FaceBox(b.cx, b.cy, b.size)
        if all(ub.iou(FaceBox(k.cx, k.cy, k.size)) <= max_iou and not contains(k, b) and not contains(b, k)
               for k in kept):
            kept.append(b)
    return kept


class HaarDetector:
    """The combined cascade detector (`HaarParams`); `search` is one pass of one cascade."""

    def __init__(self, params: HaarParams | None = None) -> None:
        self.params = params or HaarParams()
        if not self.params.cascades:
            raise ValueError("the detector needs at least one cascade")
        self.cascades = [(name, load_cascade(name)) for name in self.params.cascades]

    def twin(self) -> HaarDetector:
        """A detector with the same settings and cascade objects of its own, for another thread (one cascade
        object is never used by two threads at once)."""
        return type(self)(self.params)

    @property
    def cascade(self) -> cv2.CascadeClassifier:
        """The first (frontal) cascade."""
        return self.cascades[0][1]

    def search(self, gray: np.ndarray, cascade: cv2.CascadeClassifier, *, mirror: bool = False, angle: float = 0.0,
               min_side: int, max_side: int | None = None, min_neighbors: int | None = None,
               scale: float = 1.0) -> list[FaceBox]:
        """One cascade over `gray` (already downscaled by `scale`), mirrored and/or turned by `angle` first;
        boxes in the pixels of the image before downscaling. `min_neighbors` overrides the params' for this
        call."""
        p = self.params
        image, inverse = gray, None
        if angle:
            m = rotation_matrix(gray.shape, angle)
            image = cv2.warpAffine(gray, m, (gray.shape[1], gray.shape[0]), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
            inverse = cv2.invertAffineTransform(m)
        if mirror:
            image = cv2.flip(image, 1)
        kw = {} if max_side is None else {"maxSize": (max_side, max_side)}
        rects = cascade.detectMultiScale(
            image, scaleFactor=p.scale_factor,
            minNeighbors=p.min_neighbors if min_neighbors is None else min_neighbors,
            minSize=(min_side, min_side), **kw)
        width = image.shape[1] if mirror else None
        return [box_from_rect(r, angle, inverse, width, scale) for r in rects]

    @property
    def passes(self) -> tuple[Pass, ...]:
        """Every pass of `detect`, in its trust order (`detector_passes`)."""
        return detector_passes(self.params)

    def detect(self, image: np.ndarray, passes: tuple[Pass, ...] | None = None, *, min_size: float | None = None,
               extra_min_size: float | None = None) -> list[FaceBox]:
        """Faces in a BGR or grey frame, in frame pixels: the first cascade's (largest first), then the other
        cascades', the mirrored profile pass and the turned passes (these on the frame shrunk to extra_max_side),
        each kept only where no earlier box is. `passes` (a subset of `self.passes`, in that order; None: all)
        runs fewer of them, e.g. the tracker's search rounds (`round_passes`). The tracker's rounds also look for
        larger faces only, which is cheaper (a cascade's cost grows with the square of frame side over smallest
        face): `min_size` (pixels of `image`) makes every pass look only for faces at least that large as well as
        at least `params.min_size`, `extra_min_size` every pass but the first. None: `params.min_size` alone."""
        gray = to_gray(image)
        p = self.params
        passes = self.passes if passes is None else passes
        shrunk: dict[int, tuple[np.ndarray, float, int]] = {}  # the frame at each side, made once
        found: list[FaceBox] = []
        for _, group in itertools.groupby(passes, key=lambda ps: (ps.cascade, ps.angle)):
            boxes: list[FaceBox] = []  # a cascade's passes (a profile one and its mirror) together, largest first
            for ps in group:
                side = p.max_side if ps.first else min(p.max_side, p.extra_max_side)
                if side not in shrunk:
                    shrunk[side] = self._shrunk(gray, side)
                small, scale, min_side = shrunk[side]
                for least in (min_size, None if ps.first else extra_min_size):
                    if least is not None:
                        min_side = max(min_side, int(round(least * scale)))
                boxes += self.search(small, self.cascades[ps.cascade][1], mirror=ps.mirror, angle=ps.angle,
                                     min_side=min_side, scale=scale)
            found += sorted(boxes, key=lambda b: -b.size)
        return suppress(found, p.nms_iou)

    def _shrunk(self, gray: np.ndarray, max_side: int) -> tuple[np.ndarray, float, int]:
        """(the grey frame shrunk so its longer side is at most max_side, the scale, the smallest face side there)."""
        scale = min(1.0, max_side / max(gray.shape[:2]))
        small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return small, scale, max(8, int(round(self.params.min_size * scale)))
