"""The torch CUDA backend's code run on a CPU where torch allows: the FP16 cast and an FP16 eager forward,
the CUDA-graph wrapper's padding and slicing (with an eager stand-in for the capture), and the TensorRT
extra's version bound. The real CUDA runs are in test_export.py (skipped without a GPU, with the reason).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from engines.models import create_model
from engines.pixel_model import PixelModel
from engines.torch_backend import GRAPH_BATCHES, StaticBatch, padded_batch, run_padded
from tracker.crop import box_from_keypoints, crop_face
from tracker.keypoints import KAGGLE15

REPO = Path(__file__).resolve().parent.parent
# float16 keeps 11 significant bits (relative step 2^-11 ~ 5e-4 per rounding). Through ten layers and the
# 18432-term FC sums, at the 48 px output scale, FP16 moves keypoints by about 0.1 px on average (0.12 px
# measured here on the CPU, which accumulates in float16; ~0.1 px on CUDA per the review), so FP16 vs FP32
# is bounded at 0.25 px mean and 1 px max: what float16 can represent, still far below labelling noise.
FP16_MEAN_PX = 0.25
FP16_MAX_PX = 1.0


@pytest.fixture(scope="module")
def real_crops(ytf_faces) -> np.ndarray:
    return np.stack([crop_face(f.image, box_from_keypoints(f.keypoints, KAGGLE15))[0] for f in ytf_faces])


@pytest.fixture(scope="module")
def pixel_model(real_crops) -> PixelModel:
    """An ML-ResNet with BN statistics from the real crops and random BN scales, in eval mode."""
    torch.manual_seed(0)
    net = create_model("mlresnet")
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = None
    with torch.no_grad():
        net.train()(torch.from_numpy(real_crops[:, None].astype(np.float32) / 255.0))
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return PixelModel(net.eval(), 15).eval()


def _fp16_copy(model: PixelModel) -> PixelModel:
    import copy

    return copy.deepcopy(model).to(memory_format=torch.channels_last).half()


def test_pixel_model_casts_to_fp16_and_runs_fp16_on_cpu(pixel_model, real_crops):
    half = _fp16_copy(pixel_model)  # was TypeError: 'float' object is not callable (self.half hid .half())
    assert all(p.dtype == torch.float16 for p in half.parameters())
    assert half.half_size == 48.0
    x = torch.from_numpy(real_crops[:, None].astype(np.float32))
    with torch.inference_mode():
        want = pixel_model(x)
        got = half(x.half().contiguous(memory_format=torch.channels_last))
    assert got.dtype == torch.float32 and got.shape == (6, 15, 2)  # the output scaling stays float32
    diff = (got - want).abs()
    assert float(diff.mean()) < FP16_MEAN_PX and float(diff.max()) < FP16_MAX_PX, (diff.mean(), diff.max())
    assert float(want.std(dim=0).max()) > 0.5  # not a constant network


def test_padded_batch_sizes():
    assert [padded_batch(n) for n in (1, 2, 3, 5, 8, 9, 200, 256)] == [1, 2, 4, 8, 8, 16, 256, 256]
    with pytest.raises(StopIteration):
        padded_batch(257)


def test_static_batches_pad_slice_and_chunk_on_cpu(pixel_model, real_crops):
    """The CUDA-graph path with an eager stand-in for the capture: same buffers, padding and slicing."""
    half = _fp16_copy(pixel_model)
    made: list[int] = []

    def make(size: int) -> StaticBatch:
        made.append(size)
        return StaticBatch(half, size, 96, torch.device("cpu"), torch.half, capture=False)

    rng = np.random.default_rng(0)
    pixels = torch.from_numpy(real_crops[rng.integers(0, 6, 300)])  # 300 crops: a chunk of 256, then 44 -> 64
    batches: dict[int, StaticBatch] = {}
    with torch.inference_mode():
        out = run_padded(pixels, batches, make)
        assert out.shape == (300, 15, 2) and out.dtype == torch.float32
        assert made == [256, 64] and set(batches) == {256, 64}
        # the same rows through eager FP16 at the same padded batch: identical
        x = pixels[:, None].half().contiguous(memory_format=torch.channels_last)
        assert torch.equal(out[:256], half(x[:256]))
        padded = torch.cat([x[256:], torch.zeros((20, 1, 96, 96), dtype=torch.half)])
        assert torch.equal(out[256:], half(padded.contiguous(memory_format=torch.channels_last))[:44])
        # a smaller call reuses the 64 batch with stale rows behind it; its outputs are only its own rows
        again = run_padded(pixels[:40], batches, make)
        assert made == [256, 64] and torch.equal(again, out[:40])
    with pytest.raises(ValueError, match="do not fit"):
        batches[64].run(pixels[:65])
    assert GRAPH_BATCHES[-1] == 256


def test_tensorrt_extra_is_bounded_to_the_supported_majors():
    from engines.tensorrt_build import SUPPORTED_MAJORS

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["tensorrt"]
    spec = next(r for r in extra if r.startswith("tensorrt"))
    assert spec == f"tensorrt>={min(SUPPORTED_MAJORS)},<{max(SUPPORTED_MAJORS) + 1}"
