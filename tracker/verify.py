"""Is it a face? The closer look at one region when the full-frame detector missed a tracked face (the combined
detector's own cascade passes on the region alone, at a looser setting), and the check of a new detection by
the keypoints the model puts in its crop (the tracker's own confidence, `tracker.tracking.candidate_confidence`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from engines.backend import Backend
from tracker.confidence import shape_score
from tracker.crop import CROP_SIZE, FaceBox, box_from_keypoints, crop_face, from_crop, to_gray
from tracker.haar import HaarDetector, HaarParams, cascade_path
from tracker.keypoints import KAGGLE15, KeypointSet, derivable, map_keypoints
from tracker.tracking import candidate_confidence


class FaceVerifier:
    """`holds_face(gray, box)`: is there a face of about the box's size around the box? Runs each cascade of
    `detector` (profile ones also mirrored) on the region alone, at `min_neighbors`."""

    def __init__(self, detector: HaarDetector | None = None, min_neighbors: int = 3, margin: float = 1.6,
                 work_size: int = 96) -> None:
        self.detector = detector or HaarDetector(HaarParams())
        self.min_neighbors = min_neighbors
        self.margin = margin  # the region searched, as a multiple of the box side
        self.work_size = work_size  # the box is searched at about this many pixels per side

    def holds_face(self, gray: np.ndarray, box: FaceBox) -> bool:
        x, y, w, h = box.scaled(self.margin).to_xywh()
        x0, y0 = max(0, int(math.floor(x))), max(0, int(math.floor(y)))
        x1, y1 = min(gray.shape[1], int(math.ceil(x + w))), min(gray.shape[0], int(math.ceil(y + h)))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return False
        k = min(1.0, self.work_size / box.size)
        roi = gray[y0:y1, x0:x1]
        if k < 1.0:
            roi = cv2.resize(roi, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        side = box.size * k
        lo, hi = max(12, int(side * 0.5)), max(13, int(side * 1.6))
        for name, cascade in self.detector.cascades:
            for mirror in (False, True) if "profile" in cascade_path(name) else (False,):
                if self.detector.search(roi, cascade, mirror=mirror, min_side=lo, max_side=hi,
                                        min_neighbors=self.min_neighbors):
                    return True
        return False


def candidate_scores(backend: Backend, image: np.ndarray, boxes: list[FaceBox], kps: KeypointSet) -> np.ndarray:
    """For each detected box, the confidence the tracker gives a new face there (keypoints predicted in the box's
    crop, one batch): a new track starts only at or above `TrackParams.new_face_min`. `kps` is the model's set."""
    if not boxes:
        return np.zeros(0)
    gray = to_gray(image)
    crops, mats = zip(*(crop_face(gray, b, CROP_SIZE) for b in boxes), strict=True)
    pred = backend.predict(np.stack(crops)).astype(np.float64)
    judged = None if kps.names == KAGGLE15.names else [KAGGLE15.index(n) for n in derivable(kps, KAGGLE15)]
    scores = []
    for p, m, det in zip(pred, mats, boxes, strict=True):
        kag = map_keypoints(from_crop(p, m), kps, KAGGLE15)
        face = box_from_keypoints(kag, KAGGLE15, upright=True)
        scores.append(0.0 if face is None else candidate_confidence(shape_score(kag, judged), face, det))
    return np.array(scores)
