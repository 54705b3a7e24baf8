"""Is it a face? The closer look at one region when the full-frame detector missed a tracked face (the combined
detector's own cascade passes on the region alone, at a looser setting), and the check of a new detection by
the keypoints the model puts in its crop and the face check of that crop (`tracker.tracking.accepts_new_face`).
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from engines.backend import Backend
from tracker.confidence import shape_score
from tracker.config import DEFAULT_TRACK, TrackParams
from tracker.crop import CROP_SIZE, FaceBox, box_from_keypoints, crop_face, from_crop, to_gray
from tracker.face_check import FaceCheck
from tracker.haar import HaarDetector, HaarParams, Pass
from tracker.keypoints import KAGGLE15, KeypointSet, derivable, map_keypoints
from tracker.tracking import accepts_new_face


class FaceVerifier:
    """Looks for a face of about a tracked box's size around the box, on the region alone: `holds_face` (every
    cascade of `detector`, profile ones also mirrored, at the looser `min_neighbors`: is it still there?) and
    `faces_near` (the boxes themselves; the search rounds' look at each tracked face, `tracker.pipeline`)."""

    def __init__(self, detector: HaarDetector | None = None, min_neighbors: int = 3, margin: float = 1.6,
                 work_size: int = 96) -> None:
        self.detector = detector or HaarDetector(HaarParams())
        self.min_neighbors = min_neighbors
        self.margin = margin  # the region searched, as a multiple of the box side
        self.work_size = work_size  # the box is searched at about this many pixels per side

    def holds_face(self, gray: np.ndarray, box: FaceBox) -> bool:
        """Whether any cascade finds a face 0.5-1.6x the box's size around it (see `faces_near`)."""
        return any(self._found(gray, box, None, self.min_neighbors, self.work_size))

    def faces_near(self, gray: np.ndarray, box: FaceBox, passes: tuple[Pass, ...] | None = None,
                   min_neighbors: int | None = None, work_size: int | None = None) -> list[FaceBox]:
        """Faces 0.5-1.6x the box's size (at least 12 px at the working scale) in the region `margin` box sides
        wide around it, in frame pixels: the boxes of the first of the detector's `passes` that finds any (in
        trust order; None: every cascade upright, profile ones also mirrored), at `min_neighbors` (None: the
        detector's own), with the box searched at `work_size` pixels (None: this verifier's)."""
        return next((found for found in self._found(gray, box, passes, min_neighbors, work_size or self.work_size)
                     if found), [])

    def _found(self, gray: np.ndarray, box: FaceBox, passes: tuple[Pass, ...] | None, min_neighbors: int | None,
               work_size: int) -> Iterator[list[FaceBox]]:
        """Each pass's boxes in turn (lazily: `holds_face` stops at the first face)."""
        x0, y0, x1, y1 = box.scaled(self.margin).pixel_extent(gray.shape)
        if x1 - x0 < 16 or y1 - y0 < 16:
            return
        k = min(1.0, work_size / box.size)
        roi = gray[y0:y1, x0:x1]
        if k < 1.0:
            roi = cv2.resize(roi, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        side = box.size * k
        lo, hi = max(12, int(side * 0.5)), max(13, int(side * 1.6))
        if passes is None:  # every cascade upright (a profile one also mirrored)
            passes = tuple(ps for ps in self.detector.passes if not ps.angle)
        for ps in passes:
            found = self.detector.search(roi, self.detector.cascades[ps.cascade][1], mirror=ps.mirror,
                                         angle=ps.angle, min_side=lo, max_side=hi, min_neighbors=min_neighbors, scale=k)
            yield [FaceBox(b.cx + x0, b.cy + y0, b.size, b.angle) for b in found]


def new_face_checks(backend: Backend, image: np.ndarray, boxes: list[FaceBox], kps: KeypointSet,
                    check: FaceCheck | None = None, params: TrackParams = DEFAULT_TRACK) -> np.ndarray:
    """For each detected box, whether the tracker would start a new face there (`tracker.tracking.accepts_new_face`
    on the keypoints the model predicts in the box's crop, one batch, and the face check of that crop).
    `kps` is the model's set; `check` defaults to the packaged face check."""
    if not boxes:
        return np.zeros(0, bool)
    check = check or FaceCheck.load()
    gray = to_gray(image)
    crops, mats = zip(*(crop_face(gray, b, CROP_SIZE) for b in boxes), strict=True)
    crops = np.stack(crops)
    pred = backend.predict(crops).astype(np.float64)
    probs = check.probability(crops)
    judged = None if kps.names == KAGGLE15.names else [KAGGLE15.index(n) for n in derivable(kps, KAGGLE15)]
    out = []
    for p, m, det, prob in zip(pred, mats, boxes, probs, strict=True):
        kag = map_keypoints(from_crop(p, m), kps, KAGGLE15)
        face = box_from_keypoints(kag, KAGGLE15, upright=True)
        out.append(face is not None and accepts_new_face(shape_score(kag, judged), face, det, float(prob), params))
    return np.array(out, bool)
