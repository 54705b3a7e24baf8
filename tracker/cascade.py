"""Cascade refinement (Sun et al.'s cascaded CNN): a second-stage model re-crops each face around the points
of the first stage and predicts them again in that tighter, upright crop.

As in Sun et al., the first stage's points place the second crop and the face box gives its scale: the stage-2
box is centred where `tracker.crop.box_from_keypoints` puts the points' face box, turned upright by their eye
line, with the stage-1 box's side divided by the model's zoom. Its points map back through the one crop function.
Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engines.backend import Backend, ModelError, ModelInfo
from tracker.crop import FaceBox, box_from_keypoints, crop_face, from_crop
from tracker.keypoints import KAGGLE15, KeypointSet, keypoint_set_for, map_keypoints

REFINE_ZOOM = 1.2  # stage-2 box side = stage-1 box side / zoom


def refine_box(points: np.ndarray, kps: KeypointSet, size: float, zoom: float = REFINE_ZOOM) -> FaceBox | None:
    """The stage-2 box for stage-1 frame points (K, 2) of set `kps` found in a face box of side `size`: centred
    and rotated as the landmark box of the eye centres and mouth corners they give, side size / zoom.
    None without those points. (The scale comes from the face box: a first stage's point spread is less sure.)"""
    box = box_from_keypoints(map_keypoints(points, kps, KAGGLE15), KAGGLE15, upright=False)
    return None if box is None else FaceBox(box.cx, box.cy, size / zoom, box.angle)


def stage2_zoom(stage2: ModelInfo, stage1: ModelInfo | None = None) -> float:
    """The zoom a second-stage model was trained with; ModelError when it is not one, or when its
    keypoints differ from the first stage's."""
    refine = stage2.extra.get("refine")
    if not isinstance(refine, dict) or "zoom" not in refine:
        raise ModelError(f"{stage2.path} is not a cascade second stage (train one with `fkd-track train refine`)")
    if stage1 is not None and tuple(stage1.keypoint_names) != tuple(stage2.keypoint_names):
        raise ModelError(f"{stage2.path} refines {len(stage2.keypoint_names)} keypoints, but the first stage "
                         f"{stage1.path} predicts {len(stage1.keypoint_names)} others")
    return float(refine["zoom"])


def refine_points(stage2: Backend, image: np.ndarray, points: np.ndarray, boxes: Sequence[FaceBox]) -> np.ndarray:
    """Refine the stage-1 frame points (F, K, 2) of F faces in `image`, found in the face boxes `boxes`, with one
    batched stage-2 call. Faces whose points give no box (a NaN eye or mouth corner) keep their stage-1 points.
    """
    info = stage2.info
    zoom = stage2_zoom(info)
    kps = keypoint_set_for(str(info.extra.get("keypoint_set") or "model"), info.keypoint_names, info.flip_pairs)
    points = np.asarray(points, dtype=np.float64)
    out = points.copy()
    crops, mats, faces = [], [], []
    for f, (pts, face) in enumerate(zip(points, boxes, strict=True)):
        box = refine_box(pts, kps, face.size, zoom)
        if box is None:
            continue
        crop, m = crop_face(image, box, info.input_size)
        crops.append(crop)
        mats.append(m)
        faces.append(f)
    if crops:
        pred = stage2.predict(np.stack(crops))
        for f, m, p in zip(faces, mats, pred, strict=True):
            out[f] = from_crop(p.astype(np.float64), m)
    return out


def refine(stage1: Backend, stage2: Backend, image: np.ndarray, boxes: list[FaceBox]) -> np.ndarray:
    """Both stages on the faces in `boxes`: (F, K, 2) refined frame points."""
    stage2_zoom(stage2.info, stage1.info)
    if not boxes:
        return np.zeros((0, stage2.info.num_keypoints, 2))
    crops, mats = zip(*(crop_face(image, b, stage1.info.input_size) for b in boxes), strict=True)
    pred = stage1.predict(np.stack(crops))
    points = np.stack([from_crop(p.astype(np.float64), m) for p, m in zip(pred, mats, strict=True)])
    return refine_points(stage2, image, points, boxes)
