"""Face or not: a linear classifier on HOG features of the 96 x 96 crop a new detection gives (Dalal & Triggs),
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


@dataclass
class FaceCheck:
    """Logistic regression on standardised HOG features."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    @classmethod
    def load(cls, path: str | None = None) -> FaceCheck:
        path = path or default_face_check_path()
        if not os.path.isfile(path):
            raise FileNotFoundError(f"face check weights {path} are missing")
        with np.load(path) as z:
            return cls(z["mean"], z["scale"], z["weights"], float(z["bias"]))

    def logits(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.weights + self.bias

    def probability(self, crops: np.ndarray) -> np.ndarray:
        """P(face) for each (96, 96) uint8 crop."""
        if not len(crops):
            return np.zeros(0)
        return 1.0 / (1.0 + np.exp(-self.logits(hog_features(crops))))
