"""Batched on-device augmentation: random flip (with left/right swap), rotation, scale, shift, brightness.

Each stored crop (S x S, the face box in its central 96 px) is resampled to a 96 x 96 network input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentParams:
    """Augmentation strengths; `none()` gives the plain centre crop used for validation."""

    flip: float = 0.5  # probability of a horizontal mirror
    rotate: float = 12.0  # degrees, uniform +-
    scale: float = 0.08  # relative, uniform +-
    shift: float = 4.0  # pixels of the 96 px crop, uniform +-
    brightness: float = 0.15  # relative gain and offset, uniform +-

    @classmethod
    def none(cls) -> AugmentParams:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0)

    @classmethod
    def scaled(cls, strength: float) -> AugmentParams:
        """The default rotation, scale, shift and brightness ranges times `strength`; flips stay on unless 0."""
        if strength < 0:
            raise ValueError(f"augmentation strength must be >= 0, got {strength:g}")
        d = cls()
        return cls(d.flip if strength > 0 else 0.0, d.rotate * strength, d.scale * strength, d.shift * strength,
                   d.brightness * strength)


def augment_batch(
    crops: torch.Tensor,
    points: torch.Tensor,
    flip_perm: torch.Tensor,
    params: AugmentParams,
    out_size: int = 96,
    generator: torch.Generator | None = None,
    return_flip: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Resample uint8 crops (N, S, S) to float inputs (N, 1, out, out) in [0, 1] with keypoints (N, K, 2).

    Keypoints are in stored-crop pixels in and network-crop pixels out (NaN stays NaN). A mirrored
    sample has its keypoints mirrored and left/right slots swapped with `flip_perm`. With return_flip,
    also returns the (N,) bool mask of mirrored samples (their attribute labels may need mirroring too).
    """
    n, s = crops.shape[0], crops.shape[-1]
    dev = crops.device
    u = lambda: torch.rand(n, device=dev, generator=generator) * 2 - 1  # noqa: E731 uniform(-1, 1)
    ang = u() * math.radians(params.rotate)
    scl = 1 + u() * params.scale
    tx, ty = u() * params.shift, u() * params.shift
    flip = torch.rand(n, device=dev, generator=generator) < params.flip
    sx = torch.where(flip, -scl, scl)

    # output pixel q (centred coords) -> input pixel p (centred): p = A q + t, A = R(ang) diag(sx, scl)
    cos, sin = torch.cos(ang), torch.sin(ang)
    a = torch.stack([torch.stack([cos * sx, -sin * scl], -1), torch.stack([sin * sx, cos * scl], -1)], -2)
    t = torch.stack([tx, ty], -1)
    # affine_grid works in normalised coords (align_corners=False): x_n = (2x + 1)/W - 1 = x_c * 2/W
    theta = torch.cat([a * (out_size / s), (t * 2 / s).unsqueeze(-1)], -1)
    grid = F.affine_grid(theta, (n, 1, out_size, out_size), align_corners=False)
    x = F.grid_sample(crops.unsqueeze(1).float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = x / 255.0
    if params.brightness > 0:
        gain = 1 + u() * params.brightness
        offset = u() * params.brightness * 0.5
        x = (x * gain.view(n, 1, 1, 1) + offset.view(n, 1, 1, 1)).clamp(0, 1)

    # keypoints: q = A^-1 (p - t), in centred coords of each image; the closed-form 2x2 inverse, since
    # torch.linalg.solve checks for singular matrices on the host (a GPU sync every step); det = sx * scl != 0
    pc = points.to(x.dtype) - (s - 1) / 2.0
    q = apply_2x2(inverse_2x2(a), pc - t.unsqueeze(1)) + (out_size - 1) / 2.0
    q = torch.where(flip.view(n, 1, 1), q[:, flip_perm], q)
    return (x, q, flip) if return_flip else (x, q)


def inverse_2x2(a: torch.Tensor) -> torch.Tensor:
    """Inverses of a batch of 2x2 matrices (..., 2, 2) in closed form (no host sync; caller ensures det != 0)."""
    a00, a01, a10, a11 = a[..., 0, 0], a[..., 0, 1], a[..., 1, 0], a[..., 1, 1]
    det = a00 * a11 - a01 * a10
    return torch.stack([torch.stack([a11, -a01], -1), torch.stack([-a10, a00], -1)], -2) / det[..., None, None]


def apply_2x2(m: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """m (N, 2, 2) applied to points (N, K, 2): (N, K, 2), each q = m p."""
    return torch.einsum("nij,nkj->nki", m, points)
