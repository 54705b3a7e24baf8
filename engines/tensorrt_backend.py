"""The TensorRT backend: deserialises a checked engine and runs it on one CUDA stream with device buffers.

Device buffers and the stream come from torch.cuda; engines for another GPU or TensorRT are refused first.
"""

from __future__ import annotations

import numpy as np

from engines.backend import ModelError, ModelInfo, check_crops
from engines.engine_sidecar import REBUILD, check_compatible, check_engine_file, read_sidecar
from engines.model_file import require_model_file
from engines.model_meta import INPUT_NAME, OUTPUT_NAME, info_from_metadata
from engines.tensorrt_env import current_gpu, import_tensorrt, tensorrt_version


class TensorRTBackend:
    """Backend over a serialised TensorRT engine (.engine + .engine.json sidecar)."""

    name = "tensorrt"

    def __init__(self, engine_path: str, device: str = "cuda") -> None:
        """device: the CUDA device of the buffers; "cpu" only serves the tests' stand-in TensorRT."""
        path = require_model_file(str(engine_path))
        sidecar = read_sidecar(path)
        check_engine_file(path, sidecar)
        check_compatible(path, sidecar, tensorrt_version(), current_gpu())
        self.info: ModelInfo = info_from_metadata(path, sidecar.metadata)
        self.precision = sidecar.precision
        trt = import_tensorrt()
        import torch

        self._torch = torch
        self._logger = trt.Logger(trt.Logger.ERROR)
        with open(path, "rb") as f:
            self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise ModelError(f"{path}: TensorRT could not deserialise the engine (corrupt file?)")
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        if names != {INPUT_NAME, OUTPUT_NAME}:
            raise ModelError(f"{path}: engine tensors {sorted(names)}, not {INPUT_NAME!r}, {OUTPUT_NAME!r}")
        s, k = self.info.input_size, self.info.num_keypoints
        for name, mode, shape in ((INPUT_NAME, trt.TensorIOMode.INPUT, (1, s, s)),
                                  (OUTPUT_NAME, trt.TensorIOMode.OUTPUT, (k, 2))):
            dtype, got_mode = self.engine.get_tensor_dtype(name), self.engine.get_tensor_mode(name)
            dims = tuple(self.engine.get_tensor_shape(name))
            if got_mode != mode or dtype != trt.DataType.FLOAT or dims[1:] != shape:
                raise ModelError(f"{path}: engine tensor {name!r} is {got_mode} {dtype} {dims}, not {mode} float32 "
                                 f"(N, {', '.join(map(str, shape))}); {REBUILD}")
        lo, _, hi = self.engine.get_tensor_profile_shape(INPUT_NAME, 0)
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self.context = self.engine.create_execution_context()
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device)
        self.input = torch.zeros((self.max_batch, 1, s, s), dtype=torch.float32, device=self.device)
        self.output = torch.zeros((self.max_batch, k, 2), dtype=torch.float32, device=self.device)
        self.stream.wait_stream(torch.cuda.current_stream(self.device))  # the zero-fill ran on the default stream
        self.context.set_tensor_address(INPUT_NAME, self.input.data_ptr())
        self.context.set_tensor_address(OUTPUT_NAME, self.output.data_ptr())

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """crops: (N, S, S) uint8 -> float32 (N, K, 2); batches beyond the engine's max run in chunks."""
        crops = check_crops(crops, self.info.input_size)
        n = len(crops)
        if n == 0:
            return np.zeros((0, self.info.num_keypoints, 2), np.float32)
        return np.concatenate([self._run(crops[i:i + self.max_batch]) for i in range(0, n, self.max_batch)])

    def synchronize(self) -> None:
        """Wait for this backend's CUDA stream; the bench harness calls it around timings."""
        self.stream.synchronize()

    def _run(self, crops: np.ndarray) -> np.ndarray:
        torch, n = self._torch, len(crops)
        batch = max(n, self.min_batch)  # padded rows hold stale pixels; their outputs are dropped
        s = self.info.input_size
        with torch.cuda.stream(self.stream):
            pixels = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.uint8)).to(self.device)
            self.input[:n, 0].copy_(pixels)
            if not self.context.set_input_shape(INPUT_NAME, (batch, 1, s, s)):
                raise RuntimeError(f"TensorRT refused input shape {(batch, 1, s, s)} for {self.info.path} "
                                   f"(profile batches {self.min_batch}..{self.max_batch})")
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"TensorRT failed to run {self.info.path}")
            out = self.output[:n].to("cpu")
        self.stream.synchronize()
        return out.numpy()
