"""The face/non-face check's training (tracker.face_check): crops of the shared faces against non-face crops, their
HOG and a one-hidden-layer net; run as `fkd-track train face-check --out FILE.npz` (prints validation scores).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from engines.output_files import atomic_path, check_outputs
from tracker.config import DEFAULT_TRACK
from tracker.crop import CROP_SIZE, FaceBox, box_from_keypoints, crop_face
from tracker.face_check import FaceCheck, hog_features, sigmoid
from tracker.haar import HaarDetector, HaarParams
from tracker.keypoints import KAGGLE15
from train.datasets import is_validation, load_dataset, shared_data_dir, spec_inputs
from train.prepare import match_detection

# The detector at a loose setting: its boxes on face-free regions are the hard negatives.
HARD_NEGATIVES = HaarParams(min_neighbors=1, min_size=24)
LOW_RES_SIDES = (20, 56)  # crops shrunk to a side in this range and blown up again, as small faces' are
SOURCES = ("ytf:{root}/ytf/training_frames_keypoints.csv", "mtfl:{root}/mtfl/training.txt")


def source_specs(root: str | Path) -> list[str]:
    """The dataset specs (FORMAT:PATH) of the sources the check is trained on, in the shared data folder `root`."""
    return [spec.format(root=root) for spec in SOURCES]


def jittered(box: FaceBox, rng: np.random.Generator, shift: float = 0.15, angle: float = 30.0) -> FaceBox:
    """`box` moved by up to `shift` of its side, scaled by 0.85-1.2 and turned by up to `angle` degrees more."""
    return FaceBox(box.cx + rng.uniform(-shift, shift) * box.size, box.cy + rng.uniform(-shift, shift) * box.size,
                   box.size * rng.uniform(0.85, 1.2), box.angle + rng.uniform(-angle, angle))


def negatives(img: np.ndarray, face: FaceBox, rng: np.random.Generator, hard: HaarDetector,
              n: int = 4) -> list[FaceBox]:
    """Boxes that hold no face: beside the face (overlap < 0.1), parts of it (an eye, the mouth: <= 0.45 of its
    side), windows in the face-free regions and what the `hard` detector finds there."""
    from train.evaluate import face_free_regions

    h, w = img.shape[:2]
    out: list[FaceBox] = []
    for _ in range(20):
        if len(out) >= n:
            break
        a = rng.uniform(0, 2 * math.pi)
        d = rng.uniform(0.9, 1.6) * face.size
        b = FaceBox(face.cx + d * math.cos(a), face.cy + d * math.sin(a), face.size * rng.uniform(0.7, 1.3),
                    rng.choice([0.0, -25.0, 25.0]))
        if b.iou(face) < 0.1 and 0 <= b.cx < w and 0 <= b.cy < h:
            out.append(b)
    part = face.size * rng.uniform(0.25, 0.45)
    out.append(FaceBox(face.cx + rng.uniform(-0.3, 0.3) * face.size, face.cy + rng.uniform(-0.3, 0.3) * face.size,
                       part))
    for x, y, rw, rh in face_free_regions(img.shape, [face]):
        for _ in range(3):
            s = rng.uniform(40, min(rw, rh))
            out.append(FaceBox(x + rng.uniform(s / 2, rw - s / 2), y + rng.uniform(s / 2, rh - s / 2), s,
                               rng.choice([0.0, -25.0, 25.0])))
        for b in hard.detect(img[y : y + rh, x : x + rw]):  # what the cascades take for a face there
            out.append(FaceBox(b.cx + x, b.cy + y, b.size, b.angle))
    return out


def low_resolution(crops: np.ndarray, rng: np.random.Generator, share: float = 0.5,
                   sides: tuple[int, int] = LOW_RES_SIDES) -> np.ndarray:
    """A copy of the (N, 96, 96) crops with about `share` of them shrunk to a random side in `sides` and blown up
    again: how the crop of a small face looks (the detector's smallest, 40 px, is enlarged 2.4x to fill 96)."""
    out = crops.copy()
    for k in range(len(out)):
        if rng.random() < share:
            side = int(rng.uniform(*sides))
            small = cv2.resize(out[k], (side, side), interpolation=cv2.INTER_AREA)
            out[k] = cv2.resize(small, out[k].shape[::-1], interpolation=cv2.INTER_LINEAR)
    return out


def collect(root: str, per_source: int, validation: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(HOG features, labels 1 face / 0 not) from up to `per_source` images of each shared source's split: each
    face twice with random box jitter and, where the combined detector finds it, in its box and a near copy (so
    the check knows the detector's own placement, e.g. the profile cascade's shift toward the back of the head);
    half of all crops, faces and not, at a low resolution (`low_resolution`), as small faces' crops are."""
    rng = np.random.default_rng(seed)
    hard, detector = HaarDetector(HARD_NEGATIVES), HaarDetector()
    crops, labels = [], []
    for spec in source_specs(root):
        fs = load_dataset(spec)
        rows = np.flatnonzero([is_validation(g) == validation for g in fs.groups])
        for i in rng.choice(rows, min(per_source, len(rows)), replace=False):
            face = box_from_keypoints(fs.box_points[i], KAGGLE15)
            if face is None:
                continue
            img = fs.load_image(int(i))
            found = match_detection(detector.detect(img), fs.box_points[i], face)  # with the detector's own bias
            detected = [] if found is None else [found, jittered(found, rng, shift=0.05, angle=10.0)]
            for b in [jittered(face, rng), jittered(face, rng), *detected]:
                crops.append(crop_face(img, b, CROP_SIZE)[0])
                labels.append(1)
            for b in negatives(img, face, rng, hard):
                crops.append(crop_face(img, b, CROP_SIZE)[0])
                labels.append(0)
    return hog_features(low_resolution(np.array(crops), np.random.default_rng(seed + 11))), np.array(labels)


def fit(x: np.ndarray, y: np.ndarray, hidden: int = 128, epochs: int = 30, lr: float = 1e-3, l2: float = 1e-4,
        batch: int = 256, seed: int = 0) -> FaceCheck:
    """A one-hidden-layer ReLU net (`hidden` units; 0: logistic regression) on standardised features: class-balanced
    logistic loss with L2, Adam on shuffled mini-batches, `epochs` passes; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    mean, scale = x.mean(0), x.std(0) + 1e-3
    z = ((x - mean) / scale).astype(np.float32)
    sizes = [z.shape[1], hidden, 1] if hidden > 0 else [z.shape[1], 1]
    params = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True):  # He initialisation
        params += [rng.normal(0.0, np.sqrt(2.0 / d_in), (d_in, d_out)).astype(np.float32),
                   np.zeros(d_out, np.float32)]
    moments = [(np.zeros_like(q), np.zeros_like(q)) for q in params]
    weight = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean())).astype(np.float32)
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch):
            i = order[start : start + batch]
            acts = [z[i]]  # the input of each layer
            for k in range(0, len(params) - 2, 2):
                acts.append(np.maximum(acts[-1] @ params[k] + params[k + 1], 0.0))
            logit = (acts[-1] @ params[-2] + params[-1])[:, 0]
            g = (weight[i] * (sigmoid(logit) - y[i]) / len(i))[:, None]
            grads = [None] * len(params)
            for k in range(len(params) - 2, -1, -2):  # back through the layers
                grads[k], grads[k + 1] = acts[k // 2].T @ g + l2 * params[k], g.sum(0)
                if k:
                    g = (g @ params[k].T) * (acts[k // 2] > 0)
            step += 1
            for q, grad, (m, v) in zip(params, grads, moments, strict=True):
                m += 0.1 * (grad - m)
                v += 0.001 * (grad * grad - v)
                q -= lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    layers = [(params[k], params[k + 1]) for k in range(0, len(params), 2)]
    return FaceCheck(mean.astype(np.float32), scale.astype(np.float32), layers)


def scores(check: FaceCheck, x: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict:
    p = sigmoid(check.logits(x))
    return {"faces": int(y.sum()), "non_faces": int((1 - y).sum()),
            "faces_accepted": float((p[y == 1] >= threshold).mean()),
            "non_faces_accepted": float((p[y == 0] >= threshold).mean())}


def train_face_check(root: str | Path | None, out: str | Path, per_source: int = 4000, hidden: int = 128,
                     epochs: int = 30, log: Callable[[str], object] = print) -> dict[str, dict]:
    """Fit the check on up to `per_source` training-split images of each source in `root` (the shared data folder;
    None or "": train.datasets.shared_data_dir), `log` its scores on both splits and write it to `out` (.npz,
    atomically; refused before any work where it would overwrite an input). Returns the scores (`scores`):
    {"training": ..., "validation": {threshold: ...}} at P(face) >= 0.5 and the tracker's `face_check_min`."""
    root = str(root or shared_data_dir())
    inputs = [path for spec in source_specs(root) for path in spec_inputs(spec)]  # label files first: "is an input"
    check_outputs([*inputs, root], {"--out": out})
    x, y = collect(root, per_source, validation=False)
    check = fit(x, y, hidden, epochs)
    result: dict[str, dict] = {"training": scores(check, x, y), "validation": {}}
    log(f"training split {result['training']}")
    xv, yv = collect(root, per_source, validation=True, seed=1)
    for threshold in (0.5, DEFAULT_TRACK.face_check_min):
        result["validation"][threshold] = scores(check, xv, yv, threshold)
        log(f"validation split, P(face) >= {threshold} {result['validation'][threshold]}")
    with atomic_path(out) as tmp:
        check.save(str(tmp))
    return result


if __name__ == "__main__":  # the old way to run it, pointed at the command that replaced it
    raise SystemExit("error: run `fkd-track train face-check --out FILE.npz` (python -m train.face_check is retired)")
