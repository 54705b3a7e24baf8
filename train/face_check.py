"""Train the face/non-face check (tracker.face_check) on the shared faces: face crops with the box jitter and roll
the combined detector gives, against crops of face-free image regions and of boxes beside or inside the face.

`python -m train.face_check --out tracker/assets/face_check.npz` (training split only; prints validation scores).
"""

from __future__ import annotations

import math

import numpy as np

from engines.output_files import atomic_path, check_outputs
from tracker.crop import CROP_SIZE, FaceBox, box_from_keypoints, crop_face
from tracker.face_check import FaceCheck, hog_features
from tracker.haar import HaarDetector, HaarParams
from tracker.keypoints import KAGGLE15
from train.datasets import is_validation, load_dataset

# The detector at a loose setting: its boxes on face-free regions are the hard negatives.
HARD_NEGATIVES = HaarParams(min_neighbors=1, min_size=24)
SOURCES = ("ytf:{root}/ytf/training_frames_keypoints.csv", "mtfl:{root}/mtfl/training.txt")


def jittered(box: FaceBox, rng: np.random.Generator, shift: float = 0.15, angle: float = 30.0) -> FaceBox:
    return FaceBox(box.cx + rng.uniform(-shift, shift) * box.size, box.cy + rng.uniform(-shift, shift) * box.size,
                   box.size * rng.uniform(0.85, 1.2), rng.uniform(-angle, angle))


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


def collect(root: str, per_source: int, validation: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(HOG features, labels 1 face / 0 not) from up to `per_source` images of each shared source's split."""
    rng = np.random.default_rng(seed)
    hard = HaarDetector(HARD_NEGATIVES)
    crops, labels = [], []
    for spec in SOURCES:
        fs = load_dataset(spec.format(root=root))
        rows = np.flatnonzero([is_validation(g) == validation for g in fs.groups])
        for i in rng.choice(rows, min(per_source, len(rows)), replace=False):
            face = box_from_keypoints(fs.box_points[i], KAGGLE15)
            if face is None:
                continue
            img = fs.load_image(int(i))
            for b in [jittered(face, rng), jittered(face, rng)]:
                crops.append(crop_face(img, b, CROP_SIZE)[0])
                labels.append(1)
            for b in negatives(img, face, rng, hard):
                crops.append(crop_face(img, b, CROP_SIZE)[0])
                labels.append(0)
    return hog_features(np.array(crops)), np.array(labels)


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 600, lr: float = 0.5) -> FaceCheck:
    """Class-balanced L2 logistic regression on standardised features, full-batch gradient descent with momentum."""
    mean, scale = x.mean(0), x.std(0) + 1e-3
    z = (x - mean) / scale
    sw = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    w, b = np.zeros(z.shape[1]), 0.0
    vw, vb = np.zeros_like(w), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        g = sw * (p - y) / len(y)
        gw, gb = z.T @ g + l2 * w, g.sum()
        vw, vb = 0.9 * vw - lr * gw, 0.9 * vb - lr * gb
        w, b = w + vw, b + vb
    return FaceCheck(mean.astype(np.float32), scale.astype(np.float32), w.astype(np.float32), float(b))


def scores(check: FaceCheck, x: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict:
    p = 1.0 / (1.0 + np.exp(-check.logits(x)))
    return {"faces": int(y.sum()), "non_faces": int((1 - y).sum()),
            "faces_accepted": float((p[y == 1] >= threshold).mean()),
            "non_faces_accepted": float((p[y == 0] >= threshold).mean())}


def main(root: str = "../shared/data", out: str = "tracker/assets/face_check.npz", per_source: int = 2500) -> None:
    check_outputs([root], {"--out": out})
    x, y = collect(root, per_source, validation=False)
    check = fit(x, y)
    print("training split", scores(check, x, y))
    xv, yv = collect(root, per_source, validation=True, seed=1)
    print("validation split", scores(check, xv, yv))
    with atomic_path(out) as tmp:
        np.savez(tmp, mean=check.mean, scale=check.scale, weights=check.weights, bias=np.float32(check.bias))
    print(f"wrote {out}")


if __name__ == "__main__":
    import typer

    typer.run(main)
