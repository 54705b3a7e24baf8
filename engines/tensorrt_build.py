"""ONNX -> TensorRT engine (TensorRT 10.x and 11.x): strongly typed network, optimisation profile, timing cache.

FP16 comes from the graph (engines/onnx_fp16.py), never from BuilderFlag.FP16, which TensorRT 11 removed.
Writes `<engine>` and its sidecar `<engine>.json` atomically; the parser's errors are reported verbatim.
"""

from __future__ import annotations

import os

from engines.backend import ModelError
from engines.engine_sidecar import EngineSidecar, write_sidecar
from engines.model_file import require_model_file, sha256_file
from engines.model_meta import INPUT_NAME, OUTPUT_NAME
from engines.output_files import atomic_path
from engines.tensorrt_env import current_gpu, import_tensorrt

WORKSPACE_BYTES = 1 << 30
SUPPORTED_MAJORS = (10, 11)  # pyproject's tensorrt extra is bounded to match


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
    check_tensorrt_version(trt.__version__)
    onnx_path = require_model_file(onnx_path)
    reference = OrtBackend(onnx_path)  # checks the ONNX's shape and metadata before the long build
    outputs = [o.name for o in reference.session.get_outputs()]
    if outputs != [OUTPUT_NAME]:  # refused here, not after a long build by the backend
        raise ModelError(f"{onnx_path} has outputs {outputs}; a TensorRT engine here carries {OUTPUT_NAME!r} only "
                         "(attribute heads run with --backend onnxruntime or torch); export a model without them")
    size = reference.info.input_size
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes(onnx_path, fp16)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"{onnx_path}: TensorRT's ONNX parser failed:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (lo, 1, size, size), (opt, 1, size, size), (hi, 1, size, size))
    config.add_optimization_profile(profile)
    cache_path = timing_cache or f"{engine_path}.timing"
    use_timing_cache(config, cache_path)
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


def check_tensorrt_version(version: str) -> None:
    """ModelError unless `version` is a TensorRT major this builder supports (SUPPORTED_MAJORS)."""
    major = version.split(".")[0]
    if not (major.isdigit() and int(major) in SUPPORTED_MAJORS):
        raise ModelError(f"TensorRT {version} is not supported: fkd-track builds engines with TensorRT "
                         f"{' and '.join(f'{m}.x' for m in SUPPORTED_MAJORS)} (`pip install fkd-track[tensorrt]`)")


def network_flags(trt) -> int:
    """A strongly typed network: its tensor types come from the ONNX, on TensorRT 10 and 11 alike (in 11 the
    flag is deprecated and strong typing always on; a TensorRT without the flag gets 0)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def onnx_bytes(onnx_path: str, fp16: bool) -> bytes:
    """The ONNX to parse: the file as it is for FP32, its float16-compute version for FP16."""
    if not fp16:
        with open(onnx_path, "rb") as f:
            return f.read()
    import onnx

    from engines.onnx_fp16 import fp16_compute_model

    try:
        model = onnx.load(onnx_path)
    except Exception as err:  # protobuf's DecodeError and friends: ONNX Runtime read it, so this is rare
        raise ModelError(f"{onnx_path}: cannot read it as ONNX ({err})") from None
    return fp16_compute_model(model).SerializeToString()


def use_timing_cache(config, cache_path: str) -> None:
    """Start from the timing cache at cache_path when it is readable and matches this TensorRT and GPU;
    a corrupt or stale cache (create_timing_cache gives None, set_timing_cache False) is replaced by a fresh one."""
    cached = b""
    if os.path.isfile(cache_path):
        with open(cache_path, "rb") as f:
            cached = f.read()
    cache = config.create_timing_cache(cached) if cached else None
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        if not config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False):
            raise ModelError("TensorRT refused a fresh timing cache")


def _write_atomic(path: str, data) -> None:
    """Write a bytes-like object (bytes, TensorRT IHostMemory) to path via a sibling temp file and rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
