"""ONNX -> TensorRT engine with the TensorRT 10 Python API: parser, optimisation profile, FP16, timing cache.

Writes `<engine>` and its sidecar `<engine>.json` atomically; the parser's errors are reported verbatim.
"""

from __future__ import annotations

import os

from engines.backend import ModelError
from engines.engine_sidecar import EngineSidecar, write_sidecar
from engines.model_file import require_model_file, sha256_file
from engines.model_meta import INPUT_NAME
from engines.output_files import atomic_path
from engines.tensorrt_env import current_gpu, import_tensorrt

WORKSPACE_BYTES = 1 << 30


def build_engine(
    onnx_path: str,
    engine_path: str,
    fp16: bool = True,
    batch_range: tuple[int, int, int] = (1, 8, 64),
    timing_cache: str | None = None,
) -> EngineSidecar:
    """Build and write a TensorRT engine for the exported ONNX at onnx_path; returns its sidecar.

    The timing cache (default `<engine>.timing`) is read when present and rewritten, so rebuilds are fast.
    """
    from engines.ort_backend import OrtBackend

    trt = import_tensorrt()
    gpu = current_gpu()
    if gpu is None:
        raise ModelError(f"building {engine_path} needs a CUDA GPU and none is available")
    lo, opt, hi = batch_range
    if not 1 <= lo <= opt <= hi:
        raise ModelError(f"batch range must satisfy 1 <= min <= opt <= max, got {batch_range}")
    onnx_path = require_model_file(onnx_path)
    reference = OrtBackend(onnx_path)  # checks the ONNX's shape and metadata before the long build
    size = reference.info.input_size
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10 networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"{onnx_path}: TensorRT's ONNX parser failed:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (lo, 1, size, size), (opt, 1, size, size), (hi, 1, size, size))
    config.add_optimization_profile(profile)
    cache_path = timing_cache or f"{engine_path}.timing"
    cached = open(cache_path, "rb").read() if os.path.isfile(cache_path) else b""
    if not config.set_timing_cache(config.create_timing_cache(cached), ignore_mismatch=False):
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)  # stale cache
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT could not build an engine from {onnx_path} (see the TensorRT log above)")
    _write_atomic(cache_path, config.get_timing_cache().serialize())
    _write_atomic(engine_path, serialized)
    sidecar = EngineSidecar(
        source=os.path.abspath(onnx_path), source_sha256=sha256_file(onnx_path),
        engine_bytes=os.path.getsize(engine_path), engine_sha256=sha256_file(engine_path),
        tensorrt_version=trt.__version__, gpu_name=gpu[0], compute_capability=gpu[1],
        precision="fp16" if fp16 else "fp32", batch_range=(lo, opt, hi),
        metadata=dict(reference.session.get_modelmeta().custom_metadata_map),
    )
    write_sidecar(engine_path, sidecar)
    return sidecar


def _write_atomic(path: str, data) -> None:
    """Write a bytes-like object (bytes, TensorRT IHostMemory) to path via a temp file and rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
