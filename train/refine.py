"""The cascade's second stage (Sun et al.): training faces re-cropped around first-stage points, and the
cascade's accuracy and cost against the first stage alone.

`prepare_stage2` writes a prepared file whose crops sit where `tracker.cascade.refine_box` puts them at run time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import numpy as np

from engines.backend import Backend
from engines.model_file import sha256_file
from tracker.cascade import REFINE_ZOOM, refine_box, refine_points
from tracker.crop import ANCHORS, CROP_SIZE, FaceBox, crop_face, from_crop, to_crop
from tracker.keypoints import KAGGLE15, KeypointSet, derivable, get_keypoint_set
from train.datasets import DatasetError, load_dataset
from train.evaluate import keypoint_metrics
from train.fit import split_indices
from train.prepare import Prepared, encode_crop, load_prepared, read_prepared, write_prepared


def scale_shift(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray]:
    """Least-squares k, t with dst = k * src + t over the points (K, 2) finite in both; ValueError under 2."""
    ok = np.isfinite(src).all(axis=1) & np.isfinite(dst).all(axis=1)
    if ok.sum() < 2:
        raise ValueError("need at least two labelled points")
    s, d = src[ok], dst[ok]
    n = len(s)
    a = np.zeros((2 * n, 3))
    a[:n, 0], a[:n, 1] = s[:, 0], 1.0
    a[n:, 0], a[n:, 2] = s[:, 1], 1.0
    (k, tx, ty), *_ = np.linalg.lstsq(a, np.concatenate([d[:, 0], d[:, 1]]), rcond=None)
    return float(k), np.array([tx, ty])


def prepared_box(stored: np.ndarray, frame: np.ndarray, meta: dict) -> FaceBox:
    """The upright face box `train prepare` cropped a face with, from its points in the stored crop and in
    the frame (the stored crop is that box, widened by the margin, at store_size pixels)."""
    k, t = scale_shift(frame, stored)
    centre = ((meta["store_size"] / 2.0 - 0.5) - t) / k
    return FaceBox(float(centre[0]), float(centre[1]), meta["crop_size"] / k)


def check_refinable(kps: KeypointSet) -> None:
    """DatasetError unless the set gives the eye centres and mouth corners the stage-2 box is placed by."""
    if not set(ANCHORS) <= set(derivable(kps, KAGGLE15)):
        raise DatasetError(f"cascade refinement places its crop by the eye centres and mouth corners; "
                           f"the {kps.name} set does not give them")


def source_faces(p: Prepared, idx: np.ndarray) -> Iterator[tuple[int, np.ndarray, FaceBox, np.ndarray]]:
    """(face index, grey source image, the prepared face box, true frame points) for faces `idx` of a prepared
    file, re-read from its dataset specs; faces whose image cannot be read are left out."""
    kps = get_keypoint_set(p.meta["keypoints"])
    for si, spec in enumerate(p.meta["specs"]):
        mine = idx[p.source[idx] == si]
        if not len(mine):
            continue
        try:
            fs = load_dataset(spec, skip_bad=True, keypoints=kps)
        except DatasetError as err:
            raise DatasetError(f"cannot re-read the source images of the prepared faces: {err}") from None
        for i in mine:
            row = int(p.source_index[i])
            try:
                image = fs.load_image(row)
            except DatasetError:
                continue
            truth = fs.keypoints[row]
            box = prepared_box(p.keypoints[i].astype(np.float64), truth, p.meta)
            yield int(i), image, box, truth


def _stage1_points(stage1: Backend, image: np.ndarray, box: FaceBox) -> tuple[np.ndarray, np.ndarray]:
    """Stage-1 frame points (K, 2) for one face and its crop matrix."""
    crop, m = crop_face(image, box, CROP_SIZE)
    return from_crop(stage1.predict(crop[None])[0].astype(np.float64), m), m


def check_stage1(stage1: Backend, prepared_path: str) -> None:
    """DatasetError unless `prepared_path` is a prepared file of `stage1`'s keypoints, which place the stage-2
    crop (cheap: the crops are not decoded; run before the run folder is made)."""
    _, meta = read_prepared(prepared_path, ("meta",))
    kps = get_keypoint_set(meta["keypoints"])
    if tuple(stage1.info.keypoint_names) != kps.names:
        raise DatasetError(f"{stage1.info.path} predicts other keypoints than the {kps.name} set of {prepared_path}")
    check_refinable(kps)


def prepare_stage2(prepared_path: str, stage1: Backend, out_path: str, zoom: float = REFINE_ZOOM,
                   limit: int | None = None, seed: int = 0, progress=None) -> dict:
    """Write the second stage's training set: each face of `prepared_path` (the `limit`/`seed` pool of
    `train fit`) re-cropped from its source image around `stage1`'s points, as `tracker.cascade` will."""
    check_stage1(stage1, prepared_path)
    p = load_prepared(prepared_path)
    kps = get_keypoint_set(p.meta["keypoints"])
    train_idx, val_idx = split_indices(p.val, limit, seed)
    idx = np.sort(np.concatenate([train_idx, val_idx]))
    store = p.meta["store_size"]
    keep, blobs, points = [], [], []
    task = progress.add_task("re-crop", total=len(idx)) if progress else None
    for i, image, box, truth in source_faces(p, idx):
        pts1, _ = _stage1_points(stage1, image, box)
        box2 = refine_box(pts1, kps, box.size, zoom)
        if box2 is not None:
            crop, m = crop_face(image, box2.scaled(store / CROP_SIZE), store)
            keep.append(i)
            blobs.append(encode_crop(crop))
            points.append(to_crop(truth, m))
        if progress:
            progress.advance(task)
    if not keep:
        raise DatasetError(f"{prepared_path}: no face could be re-cropped for the second stage")
    k = np.array(keep)
    meta = {
        **p.meta,
        "n_faces": len(k), "n_val": int(p.val[k].sum()), "n_detector_boxes": int(p.detector[k].sum()),
        "refine": {"zoom": zoom, "stage1": os.path.basename(stage1.info.path),
                   "stage1_sha256": sha256_file(stage1.info.path)},
        "stage2_of": os.path.basename(prepared_path),
    }
    write_prepared(out_path, blobs, np.stack(points), p.attributes[k], p.val[k], p.detector[k], p.groups[k],
                   p.rows[k], p.source[k], p.source_index[k], meta)
    return meta


def evaluate_cascade(stage1: Backend, stage2: Backend, prepared_path: str, limit: int | None = None,
                     seed: int = 0, timed_faces: int = 50) -> dict:
    """Stage 1 alone vs stage 1 + stage 2 on the validation faces of a prepared file (the `limit`/`seed` pool),
    both in the stage-1 crop's 96-px pixels, plus the median milliseconds per face of each stage at batch 1
    (crop and inference; the first face is a warm-up)."""
    p = load_prepared(prepared_path)
    kps = get_keypoint_set(p.meta["keypoints"])
    _, val_idx = split_indices(p.val, limit, seed)
    s1, s2, truth96, ms1, ms2 = [], [], [], [], []
    for n, (_, image, box, truth) in enumerate(source_faces(p, val_idx)):
        t0 = time.perf_counter()
        pts1, m = _stage1_points(stage1, image, box)
        t1 = time.perf_counter()
        pts2 = refine_points(stage2, image, pts1[None], [box])[0]
        t2 = time.perf_counter()
        if 0 < n <= timed_faces:
            ms1.append(1000 * (t1 - t0))
            ms2.append(1000 * (t2 - t1))
        s1.append(to_crop(pts1, m))
        s2.append(to_crop(pts2, m))
        truth96.append(to_crop(truth, m))
    if not s1:
        raise DatasetError(f"{prepared_path}: no validation face to evaluate the cascade on")
    truth96 = np.array(truth96)
    m1 = keypoint_metrics(np.array(s1), truth96, kps)
    m2 = keypoint_metrics(np.array(s2), truth96, kps)
    for m in (m1, m2):
        m.pop("_nme_per_face", None)
    return {
        "stage1": m1, "cascade": m2, "n_images": len(s1),
        "rmse_gain_px": m1["rmse_px"] - m2["rmse_px"],
        "ms_per_face": {"stage1": float(np.median(ms1)) if ms1 else None,
                        "stage2": float(np.median(ms2)) if ms2 else None},
        "stage1_model": stage1.info.path, "stage2_model": stage2.info.path, "backend": stage2.name,
    }
