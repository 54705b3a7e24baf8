"""The one backend interface: a model file in, (N, K, 2) crop-pixel keypoints out for (N, 96, 96) uint8 crops.

Concrete backends (onnxruntime, torch, tensorrt) live in their own modules; `load_backend` picks one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from engines.errors import UserError


class ModelError(UserError):
    """A model file that is missing, truncated, of the wrong shape, or built for another machine."""


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself (ONNX metadata, checkpoint fields or engine sidecar)."""

    path: str
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[str, str], ...] = ()
    input_size: int = 96
    arch: str = "unknown"
    extra: dict = field(default_factory=dict)  # training-data summary, mean shape, attributes, ...

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)


class Backend(Protocol):
    """Predicts keypoints for a batch of face crops."""

    name: str
    info: ModelInfo

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """crops: (N, 96, 96) uint8 -> float32 (N, K, 2) keypoints in crop pixels. N may be 0."""
        ...


def check_crops(crops: np.ndarray, input_size: int = 96) -> np.ndarray:
    """`crops` as an array, after checking it is (N, S, S); no copy. ValueError for any other shape (a
    programming error, not a user one)."""
    crops = np.asarray(crops)
    if crops.ndim != 3 or crops.shape[1:] != (input_size, input_size):
        raise ValueError(f"crops must be (N, {input_size}, {input_size}), got {crops.shape}")
    return crops


def crops_to_input(crops: np.ndarray, input_size: int = 96) -> np.ndarray:
    """(N, S, S) uint8 crops -> contiguous float32 (N, 1, S, S) pixels 0..255: every backend's graph input.

    ValueError for any other shape (see check_crops).
    """
    return np.ascontiguousarray(check_crops(crops, input_size)[:, None], dtype=np.float32)
