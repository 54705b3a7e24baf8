"""Accuracy of a model on faces: masked RMSE (Kaggle metric), the paper's failure rate, inter-ocular NME,
and attribute accuracies for models with attribute heads.

Faces come from a dataset spec (every row) or a prepared file (its validation split); any backend runs them.
Truth follows the model's own keypoint set (copied or derived from the data's points).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from engines.backend import Backend, ModelInfo
from tracker.crop import CROP_SIZE, FaceBox, box_from_keypoints, crop_face, to_crop
from tracker.haar import HaarDetector
from tracker.keypoints import (
    KAGGLE15,
    KeypointSet,
    derivable,
    get_keypoint_set,
    keypoint_set_for,
    map_keypoints,
)
from train.datasets import ATTRIBUTES, FORMATS, DatasetError, FaceSet, load_dataset
from train.plots import plot_ced
from train.prepare import load_prepared, match_detection

CROP_MODES = ("landmarks", "detector", "prepared")


@dataclass
class EvalFaces:
    """Face crops with their true keypoints in crop pixels, ready for a backend."""

    crops: np.ndarray  # (N, 96, 96) uint8
    truth: np.ndarray  # (N, K, 2), NaN where unlabelled
    n_total: int  # faces asked for (detector misses included)
    attributes: np.ndarray  # (N, 4) int8 in ATTRIBUTES order, -1 where unknown


def model_keypoint_set(info: ModelInfo) -> KeypointSet:
    """The model's own keypoint set, from its metadata (see `tracker.keypoints.keypoint_set_for`)."""
    return keypoint_set_for(str(info.extra.get("keypoint_set") or "model"), info.keypoint_names, info.flip_pairs)


def faces_from_set(fs: FaceSet, rows: np.ndarray, crop: str,
                   detector: HaarDetector | None = None) -> EvalFaces:
    """Crop the given rows of a FaceSet by landmarks (calibrated box) or by the Haar detector.

    Boxes come from the Kaggle-15 points the source gives (`FaceSet.box_points`), whatever `fs.kps` is.
    """
    crops, truth, attrs = [], [], []
    for i in rows:
        img, pts, box_pts = fs.load_image(int(i)), fs.keypoints[int(i)], fs.box_points[int(i)]
        if fs.precropped:
            box = FaceBox.whole_image(img.shape)
        elif crop == "detector":
            detector = detector or HaarDetector()
            box = match_detection(detector.detect(img), box_pts, box_from_keypoints(box_pts, KAGGLE15))
        else:
            box = box_from_keypoints(box_pts, KAGGLE15)
        if box is None:
            continue
        c, m = crop_face(img, box, CROP_SIZE)
        crops.append(c)
        truth.append(to_crop(pts, m))
        attrs.append(fs.attributes[int(i)])
    k = len(fs.kps)
    return EvalFaces(np.array(crops, np.uint8).reshape(-1, CROP_SIZE, CROP_SIZE), np.array(truth).reshape(-1, k, 2),
                     len(rows), np.array(attrs, np.int8).reshape(-1, len(ATTRIBUTES)))


def faces_from_prepared(path: str, crop: str) -> tuple[EvalFaces, KeypointSet]:
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
            parts.append(faces_from_set(fs, rows, crop))
    return EvalFaces(
        np.concatenate([f.crops for f in parts]), np.concatenate([f.truth for f in parts]),
        sum(f.n_total for f in parts), np.concatenate([f.attributes for f in parts]),
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
    those faces with NME > 0.1; detection_rate: faces cropped / faces asked for.
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
        "failure_rate_nme10": None,
    }
    if {"left_eye_center", "right_eye_center"} <= set(derivable(kps, KAGGLE15)):  # e.g. ibug68: eye-ring means
        eyes = map_keypoints(truth, kps, KAGGLE15)
        le, re = eyes[:, KAGGLE15.index("left_eye_center")], eyes[:, KAGGLE15.index("right_eye_center")]
        iod = np.linalg.norm(le - re, axis=-1)
        ok = np.isfinite(iod) & (iod > 1.0)
        if ok.any():
            nme = np.array([err[i][lab[i]].mean() / iod[i] for i in np.flatnonzero(ok)])
            out["nme_interocular"] = float(nme.mean())
            out["failure_rate_nme10"] = float((nme > 0.1).mean())
            out["_nme_per_face"] = nme
    return out


def evaluate(backend: Backend, data: str, crop: str = "landmarks", batch: int = 256,
             ced_png: str | None = None, json_out: str | None = None, skip_bad: bool = False) -> dict:
    """Evaluate a loaded backend on a spec (all rows) or a prepared file (validation split).

    A malformed row of a spec is refused as `train prepare` refuses it, or skipped (and counted) with skip_bad."""
    if crop not in CROP_MODES:
        raise DatasetError(f"--crop must be one of {', '.join(CROP_MODES)}")
    kps = model_keypoint_set(backend.info)
    if ":" in data and data.split(":", 1)[0] in FORMATS:
        if crop == "prepared":
            raise DatasetError("--crop prepared needs a prepared file, not a dataset spec")
        fs = load_dataset(data, skip_bad=skip_bad, keypoints=kps)
        faces = faces_from_set(fs, np.arange(len(fs)), crop)
        n_skipped = len(fs.skipped)
    else:
        n_skipped = 0
        faces, data_kps = faces_from_prepared(data, crop)
        if not derivable(data_kps, kps):
            raise DatasetError(f"{data} holds {data_kps.name} keypoints; none of the model's {kps.name} "
                               f"keypoints can be derived from them")
        faces.truth = map_keypoints(faces.truth, data_kps, kps)
    if len(faces.crops) == 0:
        raise DatasetError(f"{data}: no face could be cropped for evaluation")
    heads = list(backend.info.extra.get("attributes") or {})
    chunks = [faces.crops[i : i + batch] for i in range(0, len(faces.crops), batch)]
    if heads and hasattr(backend, "predict_all"):
        outs = [backend.predict_all(c) for c in chunks]
        pred = np.concatenate([o["keypoints"] for o in outs])
        probs = {a: np.concatenate([o[a] for o in outs]) for a in heads}
    else:
        pred, probs = np.concatenate([backend.predict(c) for c in chunks]), {}
    metrics = keypoint_metrics(pred.astype(np.float64), faces.truth, kps, faces.n_total)
    nme = metrics.pop("_nme_per_face", None)
    if probs:
        metrics["attributes"] = attribute_metrics(probs, faces.attributes)
    metrics.update({"data": data, "crop": crop, "model": backend.info.path, "backend": backend.name,
                    "keypoint_set": kps.name, "n_skipped_rows": n_skipped})
    if ced_png and nme is not None:
        plot_ced({os.path.basename(backend.info.path): nme}, ced_png)
    if json_out:
        from engines.output_files import atomic_path

        with atomic_path(json_out) as tmp, open(tmp, "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics
