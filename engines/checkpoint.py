"""Checkpoint files (.pt): weights plus everything needed to rebuild and describe the model.

Saved atomically (temp file + rename), so an interrupted save never leaves a broken checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn

from engines.errors import UserError
from engines.models import create_model
from engines.output_files import atomic_path

FORMAT = "fkd-track-checkpoint"


class KeypointSchema(Protocol):
    """What a checkpoint records of its keypoint set (a tracker.keypoints.KeypointSet)."""

    @property
    def name(self) -> str: ...

    @property
    def names(self) -> Sequence[str]: ...

    @property
    def flip_pairs(self) -> Sequence[tuple[str, str]]: ...


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated or not from fkd-track."""


def model_meta(arch: str, arch_kwargs: dict, kps: KeypointSchema, data: dict | None = None,
               attributes: dict[str, list[str]] | None = None, refine: dict | None = None) -> dict[str, Any]:
    """The self-description carried by checkpoints and exported models.

    `attributes` ({name: class names}) records the model's attribute heads; `refine` marks a cascade
    second stage (its re-crop zoom, see tracker.cascade). Both are left out when absent.
    """
    extra: dict[str, Any] = {}
    if attributes:
        extra["attributes"] = {k: list(v) for k, v in attributes.items()}
    if refine:
        extra["refine"] = dict(refine)
    return {
        "format": FORMAT,
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "keypoint_set": kps.name,
        "keypoint_names": list(kps.names),
        "flip_pairs": [list(p) for p in kps.flip_pairs],
        "input_size": 96,
        "input": "grey uint8 pixels as float, (N, 1, 96, 96); the model divides by 255",
        "output": "keypoints (N, K, 2) in 96-px crop pixels; network targets were (xy - 48) / 48",
        "data": data or {},
        **extra,
    }


def save_checkpoint(path: str, model: nn.Module, meta: dict, **state: Any) -> None:
    """Write {meta, weights, extra state} to path atomically (nothing is left behind when interrupted)."""
    with atomic_path(path) as tmp:
        torch.save({**meta, "state_dict": model.state_dict(), **state}, tmp)


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model (eval mode) from a checkpoint; returns (model, the whole checkpoint dict)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:  # e.g. no permission to read it
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from None
    try:  # a truncated file raises OSError(EINVAL) inside torch: it too is a corrupt file, not a reading problem
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # torch's own text (a paragraph on weights_only, a miniz code) would not help a user
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt, or not a file of "
                              "weights as `train fit` writes them)") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an fkd-track checkpoint")
    try:
        heads = {name: len(classes) for name, classes in ckpt.get("attributes", {}).items()}
        model = create_model(ckpt["arch"], len(ckpt["keypoint_names"]), attributes=heads, **ckpt.get("arch_kwargs", {}))
        model.load_state_dict(ckpt["state_dict"])
    except Exception as err:
        raise CheckpointError(f"{path}: weights do not fit architecture {ckpt.get('arch')!r} ({err})") from None
    return model.eval(), ckpt
