"""Accuracy of a model on faces: masked RMSE (Kaggle metric), the paper's failure rate, inter-ocular NME, every
metric per MTFL head-pose class (NME with a bootstrap 95% interval: some classes hold a handful of faces),
detection rate, false detections on face-free regions, the worst faces, and attribute accuracies for models with
attribute heads.

Faces come from a dataset spec (every row, or its validation split) or a prepared file (its validation split);
any backend runs them. Truth follows the model's own keypoint set (copied or derived from the data's points).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from engines.backend import Backend, ModelInfo
from engines.output_files import atomic_path
from tracker.config import DEFAULT_TRACK
from tracker.crop import CROP_SIZE, FaceBox, box_from_keypoints, crop_face, from_crop, to_crop
from tracker.flip_average import FlipAveraged, deciding
from tracker.haar import HaarDetector
from tracker.keypoints import (
    KAGGLE15,
    KeypointSet,
    derivable,
    get_keypoint_set,
    keypoint_set_for,
    map_keypoints,
)
from tracker.tracking import first_crop
from train.datasets import ATTRIBUTE_CLASSES, ATTRIBUTES, FORMATS, DatasetError, FaceSet, is_validation, load_dataset
from train.plots import plot_ced, plot_predictions
from train.prepare import load_prepared, match_detection

CROP_MODES = ("landmarks", "detector", "prepared")
SPLITS = ("all", "validation")
POSE = ATTRIBUTES.index("pose")
WORST_FACES = 24
REGION_MIN_SIDE = 80  # a face-free region is at least this many pixels on each side (2x the smallest face)
REGION_CLEARANCE = 1.5  # ... and avoids every labelled face box grown by this factor
BOOTSTRAP_RESAMPLES = 2000  # for the 95% interval of a mean NME (fixed seed: the same data, the same interval)


@dataclass
class EvalFaces:
    """Face crops with their true keypoints in crop pixels, ready for a backend."""

    crops: np.ndarray  # (N, 96, 96) uint8
    truth: np.ndarray  # (N, K, 2), NaN where unlabelled
    n_total: int  # faces asked for (detector misses included)
    attributes: np.ndarray  # (N, 4) int8 in ATTRIBUTES order, -1 where unknown
    asked_attributes: np.ndarray | None = None  # (n_total, 4) of every face asked for; None: = attributes
    regions: int = 0  # face-free regions searched (detector crops only)
    region_hits: list = field(default_factory=list)  # (region image, [FaceBox]) where the detector fired


def model_keypoint_set(info: ModelInfo) -> KeypointSet:
    """The model's own keypoint set, from its metadata (see `tracker.keypoints.keypoint_set_for`)."""
    return keypoint_set_for(str(info.extra.get("keypoint_set") or "model"), info.keypoint_names, info.flip_pairs)


def face_free_regions(shape: tuple[int, ...], faces: list[FaceBox], min_side: int = REGION_MIN_SIDE,
                      clearance: float = REGION_CLEARANCE) -> list[tuple[int, int, int, int]]:
    """Up to four rectangles (x, y, w, h) of an image of `shape` that overlap none of the labelled `faces` grown by
    `clearance`: the strips left, right, above and below all of them, each at least `min_side` on both sides."""
    h, w = shape[:2]
    if not faces:
        return [(0, 0, w, h)] if min(w, h) >= min_side else []
    ext = np.array([b.scaled(clearance).to_xywh() for b in faces])
    x0 = max(0, int(math.floor(ext[:, 0].min())))
    y0 = max(0, int(math.floor(ext[:, 1].min())))
    x1 = min(w, int(math.ceil((ext[:, 0] + ext[:, 2]).max())))
    y1 = min(h, int(math.ceil((ext[:, 1] + ext[:, 3]).max())))
    strips = [(0, 0, x0, h), (x1, 0, w - x1, h), (0, 0, w, y0), (0, y1, w, h - y1)]
    return [r for r in strips if r[2] >= min_side and r[3] >= min_side]


def faces_from_set(fs: FaceSet, rows: np.ndarray, crop: str,
                   detector: HaarDetector | None = None, false_detections: bool = False,
                   look: Backend | None = None) -> EvalFaces:
    """Crop the given rows of a FaceSet by landmarks (calibrated box) or by the detector.

    Boxes come from the Kaggle-15 points the source gives (`FaceSet.box_points`), whatever `fs.kps` is. With
    `false_detections` (detector crops), the detector also searches each image's face-free regions. With a
    backend `look` (detector crops), each face is cropped where the tracker takes its second look at a new face
    (`tracker.tracking.first_crop`, from the points `look` gives in the detector's box), as the tracker writes it.
    """
    crops, truth, attrs = [], [], []
    regions, hits = 0, []
    if crop == "detector":
        detector = detector or HaarDetector()
    for i in rows:
        img, pts, box_pts = fs.load_image(int(i)), fs.keypoints[int(i)], fs.box_points[int(i)]
        landmark_box = box_from_keypoints(box_pts, KAGGLE15)
        if fs.precropped:
            box = FaceBox.whole_image(img.shape)
        elif crop == "detector":
            box = match_detection(detector.detect(img), box_pts, landmark_box)
            if false_detections and landmark_box is not None:
                for x, y, w, h in face_free_regions(img.shape, [landmark_box]):
                    region = img[y : y + h, x : x + w]
                    found = detector.detect(region)
                    regions += 1
                    if found:
                        hits.append((region, found))
        else:
            box = landmark_box
        if box is None:
            continue
        c, m = crop_face(img, box, CROP_SIZE)
        if look is not None and crop == "detector" and not fs.precropped:
            own = deciding(look).predict(c[None])[0].astype(np.float64)  # the points the tracker places by
            again = first_crop(from_crop(own, m), box, model_keypoint_set(look.info), DEFAULT_TRACK)
            if again is not None:
                c, m = crop_face(img, again, CROP_SIZE)
        crops.append(c)
        truth.append(to_crop(pts, m))
        attrs.append(fs.attributes[int(i)])
    k = len(fs.kps)
    return EvalFaces(np.array(crops, np.uint8).reshape(-1, CROP_SIZE, CROP_SIZE), np.array(truth).reshape(-1, k, 2),
                     len(rows), np.array(attrs, np.int8).reshape(-1, len(ATTRIBUTES)),
                     fs.attributes[np.asarray(rows, dtype=np.int64)], regions, hits)


def faces_from_prepared(path: str, crop: str, detector: HaarDetector | None = None,
                        false_detections: bool = False, look: Backend | None = None
                        ) -> tuple[EvalFaces, KeypointSet]:
    """The validation split of a prepared file: its stored crops, or re-cropped from the source images."""
    p = load_prepared(path)
    kps = get_keypoint_set(p.meta["keypoints"])
    val = np.flatnonzero(p.val)
    if crop == "prepared":
        m = int(p.margin)
        crops = np.ascontiguousarray(p.crops[val, m : m + CROP_SIZE, m : m + CROP_SIZE])
        truth = p.keypoints[val].astype(np.float64) - p.margin
        return EvalFaces(crops, truth, len(val), p.attributes[val]), kps
    parts = []
    for si, spec in enumerate(p.meta["specs"]):
        rows = p.source_index[val[p.source[val] == si]]
        if len(rows):
            try:
                fs = load_dataset(spec, skip_bad=True, keypoints=kps)
            except DatasetError as err:
                raise DatasetError(f"{path}: cannot re-read its source images for --crop {crop}: {err}") from None
            parts.append(faces_from_set(fs, rows, crop, detector, false_detections, look))
    return EvalFaces(
        np.concatenate([f.crops for f in parts]), np.concatenate([f.truth for f in parts]),
        sum(f.n_total for f in parts), np.concatenate([f.attributes for f in parts]),
        np.concatenate([f.asked_attributes for f in parts]), sum(f.regions for f in parts),
        [h for f in parts for h in f.region_hits],
    ), kps


def attribute_metrics(probs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, dict]:
    """Per attribute head: accuracy of the arg-max class over the faces with a known label, their count,
    and the majority-class share among them (the accuracy of always guessing the commonest class)."""
    out = {}
    for name, p in probs.items():
        lab = labels[:, ATTRIBUTES.index(name)].astype(np.int64)
        known = lab >= 0
        n = int(known.sum())
        if not n:
            out[name] = {"accuracy": None, "n": 0, "majority": None}
            continue
        acc = float((p[known].argmax(axis=1) == lab[known]).mean())
        out[name] = {"accuracy": acc, "n": n, "majority": float(np.bincount(lab[known]).max() / n)}
    return out


def keypoint_metrics(pred: np.ndarray, truth: np.ndarray, kps: KeypointSet, n_total: int | None = None) -> dict:
    """Metrics over labelled points, all in 96-px crop pixels.

    rmse_px: root mean square over labelled coordinates (the Kaggle metric); failure_rate: share of labelled
    points with Euclidean error > 10% of 96 px (the paper's); nme_interocular: mean point error over the true
    eye-centre distance (derived, e.g. from the eye rings of ibug68), per face, averaged over faces with both
    eye centres; failure_rate_nme10: share of
    those faces with NME > 0.1, and nme_ci95 the bootstrap 95% interval of that mean (`mean_interval`);
    detection_rate: faces cropped / faces asked for.
    """
    lab = np.isfinite(truth).all(axis=-1)
    diff = pred - np.where(np.isfinite(truth), truth, 0.0)
    sq = (diff**2).sum(-1)
    err = np.sqrt(sq)
    n_points = int(lab.sum())
    per_kp = {
        name: float(np.sqrt(sq[:, k][lab[:, k]].mean() / 2.0)) if lab[:, k].any() else None
        for k, name in enumerate(kps.names)
    }
    out = {
        "rmse_px": float(np.sqrt(sq[lab].sum() / max(2 * n_points, 1))),
        "failure_rate": float((err[lab] > 0.1 * CROP_SIZE).mean()) if n_points else float("nan"),
        "mean_error_px": float(err[lab].mean()) if n_points else float("nan"),
        "n_images": int(len(pred)),
        "n_points": n_points,
        "detection_rate": float(len(pred) / n_total) if n_total else 1.0,
        "per_keypoint_rmse_px": per_kp,
        "nme_interocular": None,
        "nme_ci95": None,
        "failure_rate_nme10": None,
    }
    nme = face_nme(pred, truth, kps)
    ok = np.isfinite(nme)
    if ok.any():
        out["nme_interocular"] = float(nme[ok].mean())
        out["nme_ci95"] = list(mean_interval(nme[ok]))
        out["failure_rate_nme10"] = float((nme[ok] > 0.1).mean())
        out["_nme_per_face"] = nme[ok]
    return out


def mean_interval(values: np.ndarray, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                  seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (faces drawn with replacement `resamples` times, a
    fixed seed): how far the mean could move with other faces of the same kind. One value: that value twice."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()), float(v.mean())
    rng, step = np.random.default_rng(seed), max(1, 2_000_000 // len(v))  # about 16 MB of indices at a time
    means = np.concatenate([v[rng.integers(0, len(v), size=(min(step, resamples - i), len(v)))].mean(axis=1)
                            for i in range(0, resamples, step)])
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def face_nme(pred: np.ndarray, truth: np.ndarray, kps: KeypointSet) -> np.ndarray:
    """Per face: mean Euclidean error over its labelled points / its true eye-centre distance (derived, e.g. from
    the eye rings of ibug68); NaN for a face without both eye centres (or a set that gives none)."""
    nme = np.full(len(pred), np.nan)
    if not {"left_eye_center", "right_eye_center"} <= set(derivable(kps, KAGGLE15)):
        return nme
    lab = np.isfinite(truth).all(axis=-1)
    err = np.sqrt(((pred - np.where(np.isfinite(truth), truth, 0.0)) ** 2).sum(-1))
    eyes = map_keypoints(truth, kps, KAGGLE15)
    iod = np.linalg.norm(eyes[:, KAGGLE15.index("left_eye_center")] - eyes[:, KAGGLE15.index("right_eye_center")],
                         axis=-1)
    for i in np.flatnonzero(np.isfinite(iod) & (iod > 1.0) & lab.any(axis=1)):
        nme[i] = err[i][lab[i]].mean() / iod[i]
    return nme


def per_pose_metrics(pred: np.ndarray, faces: EvalFaces, kps: KeypointSet) -> dict[str, dict] | None:
    """Every keypoint metric and the detection rate per MTFL head-pose class (None when no face has a pose)."""
    asked = faces.attributes if faces.asked_attributes is None else faces.asked_attributes
    if not (asked[:, POSE] >= 0).any():
        return None
    out = {}
    for c, name in enumerate(ATTRIBUTE_CLASSES["pose"]):
        n_asked = int((asked[:, POSE] == c).sum())
        sel = faces.attributes[:, POSE] == c
        if not n_asked:
            out[name] = {"n_asked": 0}
            continue
        m = keypoint_metrics(pred[sel], faces.truth[sel], kps, n_asked) if sel.any() else {
            "n_images": 0, "detection_rate": 0.0}
        m.pop("_nme_per_face", None)
        m.pop("per_keypoint_rmse_px", None)
        out[name] = {"n_asked": n_asked, **m}
    return out


def false_detection_metrics(faces: EvalFaces, backend: Backend, kps: KeypointSet) -> dict:
    """Detector boxes on the face-free regions per 100 regions, and those the tracker would also start a new
    face at (`tracker.verify.new_face_checks`: keypoint confidence and the face check)."""
    from tracker.verify import new_face_checks

    boxes = sum(len(found) for _, found in faces.region_hits)
    accepted = sum(int(new_face_checks(deciding(backend), region, found, kps).sum())
                   for region, found in faces.region_hits)
    per100 = 100.0 / faces.regions if faces.regions else float("nan")
    return {"regions": faces.regions, "regions_with_hits": len(faces.region_hits), "boxes": boxes,
            "boxes_per_100_regions": boxes * per100, "verified": accepted,
            "verified_per_100_regions": accepted * per100, "region_min_side": REGION_MIN_SIDE,
            "region_clearance": REGION_CLEARANCE, "new_face_min": DEFAULT_TRACK.new_face_min,
            "face_check_min": DEFAULT_TRACK.face_check_min}


def worst_faces(pred: np.ndarray, faces: EvalFaces, kps: KeypointSet, path: str, n: int = WORST_FACES) -> None:
    """A PNG of the `n` faces with the largest error (inter-ocular NME where the eyes are labelled, else the mean
    point error / 96 px), each with predicted and true points, its error and its pose class."""
    nme = face_nme(pred, faces.truth, kps)
    lab = np.isfinite(faces.truth).all(axis=-1)
    err = np.sqrt(((pred - np.where(lab[..., None], faces.truth, 0.0)) ** 2).sum(-1))
    mean_err = np.array([e[m].mean() / CROP_SIZE if m.any() else np.nan for e, m in zip(err, lab, strict=True)])
    score = np.where(np.isfinite(nme), nme, mean_err)
    order = np.argsort(-np.nan_to_num(score, nan=-1.0))[:n]
    poses = ATTRIBUTE_CLASSES["pose"]
    labels = [f"{'NME' if np.isfinite(nme[i]) else 'err/96'} {score[i]:.3f}"
              + (f" {poses[faces.attributes[i, POSE]]}" if faces.attributes[i, POSE] >= 0 else "") for i in order]
    with atomic_path(path) as tmp:
        plot_predictions(faces.crops[order], pred[order], faces.truth[order], str(tmp),
                         f"{len(order)} worst of {len(pred)} faces", labels=labels)


def evaluate(backend: Backend, data: str, crop: str = "landmarks", batch: int = 256,
             ced_png: str | None = None, json_out: str | None = None, worst_png: str | None = None,
             split: str = "all", detector: HaarDetector | None = None, skip_bad: bool = False) -> dict:
    """Evaluate a loaded backend on a spec (all rows, or its validation split) or a prepared file (validation
    split). With detector crops, false detections on the images' face-free regions are counted too.

    A malformed row of a spec is refused as `train prepare` refuses it, or skipped (and counted) with skip_bad."""
    if crop not in CROP_MODES:
        raise DatasetError(f"--crop must be one of {', '.join(CROP_MODES)}")
    if split not in SPLITS:
        raise DatasetError(f"--split must be one of {', '.join(SPLITS)}")
    kps = model_keypoint_set(backend.info)
    false_detections = crop == "detector"
    if crop == "detector":
        detector = detector or HaarDetector()
    if ":" in data and data.split(":", 1)[0] in FORMATS:
        if crop == "prepared":
            raise DatasetError("--crop prepared needs a prepared file, not a dataset spec")
        fs = load_dataset(data, skip_bad=skip_bad, keypoints=kps)
        rows = np.arange(len(fs)) if split == "all" else np.flatnonzero([is_validation(g) for g in fs.groups])
        faces = faces_from_set(fs, rows, crop, detector, false_detections, backend)
        n_skipped = len(fs.skipped)
    else:
        n_skipped = 0
        faces, data_kps = faces_from_prepared(data, crop, detector, false_detections, backend)
        if not derivable(data_kps, kps):
            raise DatasetError(f"{data} holds {data_kps.name} keypoints; none of the model's {kps.name} "
                               f"keypoints can be derived from them")
        faces.truth = map_keypoints(faces.truth, data_kps, kps)
    if len(faces.crops) == 0:
        raise DatasetError(f"{data}: no face could be cropped for evaluation")
    heads = list(backend.info.extra.get("attributes") or {})
    chunks = [faces.crops[i : i + batch] for i in range(0, len(faces.crops), batch)]
    if heads and callable(getattr(backend, "predict_all", None)):
        outs = [backend.predict_all(c) for c in chunks]
        pred = np.concatenate([o["keypoints"] for o in outs])
        probs = {a: np.concatenate([o[a] for o in outs]) for a in heads}
    else:
        pred, probs = np.concatenate([backend.predict(c) for c in chunks]), {}
    pred = pred.astype(np.float64)
    metrics = keypoint_metrics(pred, faces.truth, kps, faces.n_total)
    nme = metrics.pop("_nme_per_face", None)
    per_pose = per_pose_metrics(pred, faces, kps)
    if per_pose is not None:
        metrics["per_pose"] = per_pose
    if crop == "detector" and not faces.regions:
        metrics["false_detections"] = None  # pre-cropped faces: no region around them
    elif crop == "detector":
        metrics["false_detections"] = false_detection_metrics(faces, backend, kps)
    if crop == "detector":
        p = detector.params
        metrics["detector"] = {"cascades": list(p.cascades), "angles": list(p.angles), "scale_factor": p.scale_factor,
                               "min_neighbors": p.min_neighbors, "min_size": p.min_size, "max_side": p.max_side,
                               "second_look": True}  # crops where the tracker looks again (first_crop)
    if probs:
        metrics["attributes"] = attribute_metrics(probs, faces.attributes)
    metrics.update({"data": data, "split": split if ":" in data else "validation", "crop": crop,
                    "model": backend.info.path, "backend": backend.name,
                    "flip_average": isinstance(backend, FlipAveraged), "keypoint_set": kps.name,
                    "n_skipped_rows": n_skipped})
    if ced_png and nme is not None:
        with atomic_path(ced_png) as tmp:
            plot_ced({os.path.basename(backend.info.path): nme}, str(tmp))
    if worst_png:
        worst_faces(pred, faces, kps, worst_png)
    if json_out:
        with atomic_path(json_out) as tmp, open(tmp, "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics
