"""The masked losses of ML-ResNet: missing keypoint targets contribute no error and no gradient.

Masked MSE (the paper's), masked Wing, and the complete-only baseline; sums are divided by the labelled count.
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


WING_WIDTH_PX, WING_CURVATURE_PX = 10.0, 2.0  # Feng et al. (CVPR 2018), in 96-px crop pixels
TARGET_SCALE_PX = 48.0  # targets are (xy - 48) / 48


def masked_wing(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Wing loss (Feng et al., CVPR 2018) over the labelled entries only, in crop pixels: logarithmic below
    WING_WIDTH_PX (small errors keep a strong gradient, unlike MSE), L1 above it; zero gradient where unlabelled."""
    mask = mask.to(pred.dtype)
    target = torch.where(mask > 0, target, torch.zeros_like(target))
    x = (pred - target).abs() * mask * TARGET_SCALE_PX
    w, e = WING_WIDTH_PX, WING_CURVATURE_PX
    c = w - w * math.log1p(w / e)
    loss = torch.where(x < w, w * torch.log1p(x / e), x - c)
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


LOSSES = {"masked": masked_mse, "complete-only": complete_only_mse, "wing": masked_wing}
