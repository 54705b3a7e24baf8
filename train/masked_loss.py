"""The masked MSE loss of ML-ResNet: missing keypoint targets contribute no error and no gradient.

Prediction and target are both multiplied by a 0/1 mask; the sum is divided by the number of labelled values.
"""

from __future__ import annotations

import math

import torch


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the labelled entries only (mask 1), exactly zero gradient elsewhere.

    `target` may hold NaN where `mask` is 0; those entries are zeroed before use.
    """
    mask = mask.to(pred.dtype)
    target = torch.where(mask > 0, target, torch.zeros_like(target))
    diff = pred * mask - target * mask
    return (diff * diff).sum() / mask.sum().clamp_min(1.0)


def complete_only_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The conventional baseline: plain MSE over the rows whose targets are all present; exactly 0 (no
    gradient) when no row is complete. Row weights instead of boolean indexing: no host sync on a GPU."""
    full = mask.flatten(1).all(dim=1).to(pred.dtype).view(-1, *([1] * (pred.dim() - 1)))  # (N, 1, ...)
    target = torch.where(full > 0, target, torch.zeros_like(target))
    diff = (pred - target) * full
    per_row = math.prod(pred.shape[1:])
    return (diff * diff).sum() / (full.sum() * per_row).clamp_min(1.0)


LOSSES = {"masked": masked_mse, "complete-only": complete_only_mse}
