"""The JSON sidecar `<engine>.json` written beside every TensorRT engine, and the checks it makes possible.

It names the source ONNX (sha256), the engine's own size and hash, TensorRT version, GPU, precision and
batch range, plus the model's metadata; an engine is refused when any of these do not fit this machine.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from engines.backend import ModelError
from engines.model_file import sha256_file
from engines.output_files import atomic_path
from engines.tensorrt_env import INSTALL_HINT, TensorRTMissing

REBUILD = "rebuild it here with `fkd-track export --model MODEL --engine OUT.engine`"


@dataclass(frozen=True)
class EngineSidecar:
    source: str  # the ONNX file the engine was built from
    source_sha256: str
    engine_bytes: int
    engine_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"
    precision: str  # "fp16" or "fp32"
    batch_range: tuple[int, int, int]  # min, opt, max of the optimisation profile
    metadata: dict[str, str] = field(default_factory=dict)  # the source ONNX's metadata_props


def sidecar_path(engine_path: str) -> str:
    return f"{engine_path}.json"


def write_sidecar(engine_path: str, sidecar: EngineSidecar) -> None:
    """Write the sidecar atomically next to the engine."""
    with atomic_path(sidecar_path(engine_path)) as tmp, open(tmp, "w") as f:
        json.dump(asdict(sidecar), f, indent=2)


def read_sidecar(engine_path: str) -> EngineSidecar:
    """The engine's sidecar; ModelError naming the engine when it is missing or malformed."""
    path = sidecar_path(engine_path)
    if not os.path.isfile(path):
        raise ModelError(f"{engine_path}: its sidecar {path} is missing, so it cannot be checked; {REBUILD}")
    try:
        with open(path) as f:
            raw = json.load(f)
        raw["batch_range"] = tuple(int(b) for b in raw["batch_range"])
        return EngineSidecar(**raw)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ModelError(f"{engine_path}: sidecar {path} is malformed ({err}); {REBUILD}") from None


def check_engine_file(engine_path: str, sidecar: EngineSidecar) -> None:
    """ModelError when the engine file is truncated or differs from the one the sidecar describes."""
    size = os.path.getsize(engine_path)
    if size < sidecar.engine_bytes:
        raise ModelError(f"{engine_path} is truncated: {size} of {sidecar.engine_bytes} bytes")
    if size != sidecar.engine_bytes or sha256_file(engine_path) != sidecar.engine_sha256:
        raise ModelError(f"{engine_path} does not match its sidecar (changed after it was built); {REBUILD}")


def check_compatible(engine_path: str, sidecar: EngineSidecar, trt_version: str | None,
                     gpu: tuple[str, str] | None) -> None:
    """ModelError when the engine was built for another TensorRT version or GPU than (trt_version, gpu)."""
    built = f"{sidecar.gpu_name} (compute capability {sidecar.compute_capability})"
    if trt_version is None:
        raise TensorRTMissing(f"{engine_path} was built with TensorRT {sidecar.tensorrt_version}, "
                              f"which is not installed here; {INSTALL_HINT}")
    if trt_version != sidecar.tensorrt_version:
        raise ModelError(f"{engine_path} was built with TensorRT {sidecar.tensorrt_version} but this machine "
                         f"has TensorRT {trt_version}; {REBUILD}")
    if gpu is None:
        raise ModelError(f"{engine_path} needs a CUDA GPU ({built}) and none is available here")
    name, capability = gpu
    if capability != sidecar.compute_capability or name != sidecar.gpu_name:
        raise ModelError(f"{engine_path} was built for {built} but this GPU is {name} "
                         f"(compute capability {capability}); {REBUILD}")


def built_from(engine_path: str, onnx_path: str) -> bool:
    """True when the engine's sidecar says it was built from exactly this ONNX file."""
    try:
        return read_sidecar(engine_path).source_sha256 == sha256_file(onnx_path)
    except (ModelError, OSError):
        return False
