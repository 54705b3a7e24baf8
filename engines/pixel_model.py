"""The torch model as the engines see it: raw 0..255 crops in, crop-pixel keypoints out.

Wraps a train/ network so normalisation lives in one place, shared by the ONNX export and the torch backend.
"""

from __future__ import annotations

import torch
from torch import nn

from engines.backend import ModelError, ModelInfo
from engines.model_file import require_model_file
from engines.model_meta import info_from_checkpoint


class PixelModel(nn.Module):
    """float (N, 1, S, S) pixels 0..255 -> float (N, K, 2) crop pixels; the network sees pixel/255."""

    def __init__(self, net: nn.Module, num_keypoints: int, input_size: int = 96) -> None:
        super().__init__()
        self.net = net
        self.num_keypoints = num_keypoints
        self.half_size = input_size / 2.0  # not `half`: that would hide nn.Module.half()

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        targets = self.net(crops / 255.0)  # in the network's dtype (FP16 on the CUDA backend)
        return targets.float().reshape(-1, self.num_keypoints, 2) * self.half_size + self.half_size  # FP32 scaling


@torch.no_grad()
def flush_denormals(module: nn.Module) -> int:
    """Set denormal float weights (|w| < the dtype's smallest normal, as weight decay leaves them) to 0.

    Their products are below any output's precision, but x86 CPUs run denormal arithmetic ~10x slower.
    Returns how many values were zeroed.
    """
    n = 0
    for t in module.state_dict().values():
        if t.is_floating_point():
            tiny = (t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)
            n += int(tiny.sum())
            t[tiny] = 0
    return n


def load_pixel_model(checkpoint_path: str) -> tuple[PixelModel, ModelInfo]:
    """Load a checkpoint (engines.checkpoint; `train fit` writes them) as an eval-mode PixelModel plus its
    ModelInfo, denormal weights flushed to 0; ModelError on a bad file."""
    from engines.checkpoint import CheckpointError, load_checkpoint

    path = require_model_file(str(checkpoint_path))
    try:
        net, ckpt = load_checkpoint(path)
    except CheckpointError as err:  # torch's own load errors run over many lines: keep the first, capped
        first = str(err).strip().splitlines()[0]
        raise ModelError(first if len(first) <= 200 else f"{first[:197]}...") from None
    info = info_from_checkpoint(path, ckpt)
    flush_denormals(net)
    return PixelModel(net, info.num_keypoints, info.input_size).eval(), info
