"""The torch backend for .pt checkpoints: FP32 eager on the CPU; FP16 and CUDA graphs on a GPU; channels-last.

On CUDA each padded batch size (1, 2, 4, ... 256) is captured once as a CUDA graph and replayed after.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from engines.backend import ModelInfo, check_crops, crops_to_input
from engines.model_meta import OUTPUT_NAME, attribute_classes
from engines.pixel_model import PixelModel, load_pixel_model

GRAPH_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # batches are padded up to one of these on CUDA


class AttributePixelModel(nn.Module):
    """A PixelModel whose network has attribute heads: pixels in; keypoints, then each head's class
    probabilities (N, classes) out, from one pass over the trunk (the graph `fkd-track export` writes)."""

    def __init__(self, pixel: PixelModel, attributes: list[str]) -> None:
        super().__init__()
        self.pixel = pixel
        self.attributes = list(attributes)

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
        targets, logits = self.pixel.net.forward_all(crops / 255.0)
        p = self.pixel  # the same output scaling as PixelModel.forward
        keypoints = targets.float().reshape(-1, p.num_keypoints, 2) * p.half_size + p.half_size
        return (keypoints, *(torch.softmax(logits[a].float(), dim=-1) for a in self.attributes))


class TorchBackend:
    """Backend over a train/ checkpoint; device 'cpu', 'cuda' or None (CUDA when available)."""

    def __init__(self, model_path: str, device: str | None = None, cuda_graphs: bool = True) -> None:
        model, self.info = load_pixel_model(str(model_path))
        self.info: ModelInfo
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.cuda = self.device.type == "cuda"
        self.name = "torch-cuda-fp16" if self.cuda else "torch-cpu"
        model = model.to(self.device, memory_format=torch.channels_last)  # faster convs on CPU and GPU
        if self.cuda:
            model = model.half()
        self.model: PixelModel = model
        self.graphs: dict[int, StaticBatch] | None = {} if (self.cuda and cuda_graphs) else None
        self.attributes = attribute_classes(self.info)

    @torch.inference_mode()
    def predict_all(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """{"keypoints": (N, K, 2), attribute: (N, classes) probabilities for each head}; eager, no CUDA graphs."""
        x = torch.from_numpy(crops_to_input(crops, self.info.input_size)).to(self.device)
        if self.cuda:
            x = x.half()
        outs = AttributePixelModel(self.model, list(self.attributes))(x.contiguous(memory_format=torch.channels_last))
        return {OUTPUT_NAME: outs[0].cpu().numpy()} | {
            a: o.float().cpu().numpy() for a, o in zip(self.attributes, outs[1:], strict=True)}

    @torch.inference_mode()
    def predict(self, crops: np.ndarray) -> np.ndarray:
        """crops: (N, S, S) uint8 -> float32 (N, K, 2) keypoints in crop pixels."""
        if not self.cuda:
            x = torch.from_numpy(crops_to_input(crops, self.info.input_size))
            return self.model(x.contiguous(memory_format=torch.channels_last)).numpy()
        check_crops(crops, self.info.input_size)
        if len(crops) == 0:
            return np.zeros((0, self.info.num_keypoints, 2), np.float32)
        pixels = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.uint8)).to(self.device)
        if self.graphs is None:
            x = pixels[:, None].half().contiguous(memory_format=torch.channels_last)
            return self.model(x).cpu().numpy()
        return run_padded(pixels, self.graphs, self._capture).cpu().numpy()

    def synchronize(self) -> None:
        """Wait for queued GPU work (a no-op on the CPU); the bench harness calls it around timings."""
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def _capture(self, batch: int) -> StaticBatch:
        return StaticBatch(self.model, batch, self.info.input_size, self.device, torch.half, capture=True)


def padded_batch(n: int, sizes: tuple[int, ...] = GRAPH_BATCHES) -> int:
    """The smallest of `sizes` that holds n rows (n <= sizes[-1])."""
    return next(b for b in sizes if b >= n)


def run_padded(pixels: torch.Tensor, batches: dict[int, StaticBatch], make: Callable[[int], StaticBatch],
               sizes: tuple[int, ...] = GRAPH_BATCHES) -> torch.Tensor:
    """(N, S, S) uint8 -> (N, K, 2) float32: chunks of at most sizes[-1] rows, each run by the StaticBatch of
    its padded size (made once by `make(size)` and kept in `batches`)."""
    outs = []
    for i in range(0, len(pixels), sizes[-1]):
        chunk = pixels[i:i + sizes[-1]]
        size = padded_batch(len(chunk), sizes)
        if size not in batches:
            batches[size] = make(size)
        outs.append(batches[size].run(chunk))
    return torch.cat(outs)


class StaticBatch:
    """One forward pass at a fixed batch size over static input and output buffers: a captured CUDA graph
    (capture=True), or an eager stand-in with the same buffers, padding and slicing (capture=False, any device)."""

    def __init__(self, model: nn.Module, batch: int, size: int, device: torch.device, dtype: torch.dtype,
                 capture: bool) -> None:
        self.model = model
        self.input = torch.zeros((batch, 1, size, size), dtype=dtype, device=device)
        self.input = self.input.contiguous(memory_format=torch.channels_last)
        self.graph = None
        if not capture:
            self.output = model(self.input)
            return
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up outside the capture, as CUDA-graph capture requires
                model(self.input)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = model(self.input)

    @property
    def batch(self) -> int:
        return len(self.input)

    def run(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, S, S) uint8, n <= batch -> (n, K, 2): rows n.. of the input keep stale pixels, their outputs
        are dropped."""
        n = len(pixels)
        if not 0 < n <= self.batch:
            raise ValueError(f"{n} crops do not fit a static batch of {self.batch}")
        self.input[:n, 0].copy_(pixels)
        if self.graph is not None:
            self.graph.replay()
        else:
            self.output.copy_(self.model(self.input))
        return self.output[:n].clone()
