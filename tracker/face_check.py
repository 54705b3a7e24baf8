"""Face or not: a one-hidden-layer net on HOG features (Dalal & Triggs) of the 96 x 96 crop a new detection gives,
trained by `train.face_check` on crops of the shared faces and of image regions away from them.

`FaceCheck.probability(crops)` -> P(face) per crop; the weights ship as tracker/assets/face_check.npz.
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass

import cv2
import numpy as np

HOG_SIZE = 48  # crops are shrunk to this side before HOG


def default_face_check_path() -> str:
    return str(importlib.resources.files("tracker") / "assets" / "face_check.npz")


def hog_features(crops: np.ndarray) -> np.ndarray:
    """(N, 96, 96) uint8 crops -> (N, D) float32 HOG descriptors of the crops shrunk to HOG_SIZE."""
    hog = cv2.HOGDescriptor((HOG_SIZE, HOG_SIZE), (16, 16), (8, 8), (8, 8), 9)
    out = [hog.compute(cv2.resize(c, (HOG_SIZE, HOG_SIZE), interpolation=cv2.INTER_AREA)).ravel() for c in crops]
    return np.array(out, np.float32).reshape(len(crops), -1)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """P(face) from face logits (clipped, so no overflow warning for extreme ones)."""
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))


@dataclass
class FaceCheck:
    """A small neural net on standardised HOG features: `layers` are (weights, bias) pairs with a ReLU between
    them, the last one giving the face logit (one pair alone is logistic regression)."""

    mean: np.ndarray
    scale: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]

    @classmethod
    def load(cls, path: str | None = None) -> FaceCheck:
        path = path or default_face_check_path()
        if not os.path.isfile(path):
            raise FileNotFoundError(f"face check weights {path} are missing")
        with np.load(path) as z:
            if "weights" in z.files:  # a logistic regression file of releases before the hidden layer
                return cls(z["mean"], z["scale"], [(z["weights"][:, None], np.array([z["bias"]], np.float32))])
            depth = sum(1 for k in z.files if k.startswith("w"))
            if not depth or "mean" not in z.files:
                raise ValueError(f"{path} holds no face check weights (mean, scale, w0, b0, ...)")
            return cls(z["mean"], z["scale"], [(z[f"w{i}"], z[f"b{i}"]) for i in range(depth)])

    def save(self, path: str) -> None:
        """Write the weights as `load` reads them (np.savez: `path` should end in .npz)."""
        arrays = {"mean": self.mean, "scale": self.scale}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, np.asarray(b, np.float32).reshape(-1)
        np.savez(path, **arrays)

    def logits(self, features: np.ndarray) -> np.ndarray:
        h = (features - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h.reshape(len(features))

    def probability(self, crops: np.ndarray) -> np.ndarray:
        """P(face) for each (96, 96) uint8 crop."""
        if not len(crops):
            return np.zeros(0)
        return sigmoid(self.logits(hog_features(crops)))
