"""Pick and open a backend for a model file: `load_backend(model_path, backend)` is what the tracker calls.

auto: TensorRT where an engine and a GPU exist, then torch on CUDA, then ONNX Runtime (faster on CPU) on the
fastest file that meets the accuracy bound: the model's INT8 sibling (engines/quantize.py) where one fits.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os

from engines.backend import Backend, ModelError
from engines.errors import UserError
from engines.extras import require
from engines.model_file import model_kind, require_model_file

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")
KIND_OF_BACKEND = {"onnxruntime": "onnx", "torch": "pt", "tensorrt": "engine"}


def default_model_path() -> str:
    """The packaged default model, tracker/assets/default.onnx."""
    return str(importlib.resources.files("tracker") / "assets" / "default.onnx")


def load_backend(
    model_path: str | os.PathLike | None = None, backend: str = "auto", threads: int | None = None
) -> Backend:
    """Open `model_path` (None: the packaged default) with the named backend, or the best one for `auto`.

    `threads`: ONNX Runtime intra-op threads (None: one per core); other backends ignore it.

    Model errors (missing, empty, truncated, wrong shape, built for another machine) raise ModelError
    naming the file; torch is imported only for .pt files, the torch backend or a CUDA check beside a .pt.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if model_path is None:
        path = default_model_path()
        if not os.path.isfile(path):
            raise ModelError(f"the default model {path} is missing; pass --model (.onnx, .pt or .engine)")
    else:
        path = os.fspath(model_path)
    require_model_file(path)
    kind = model_kind(path)
    if backend == "auto":
        return _auto(path, kind, threads)
    if KIND_OF_BACKEND[backend] != kind:
        raise ModelError(f"{path}: the {backend} backend runs .{KIND_OF_BACKEND[backend]} files, not .{kind}")
    return _open(backend, path, threads=threads)


def _open(backend: str, path: str, device: str | None = None, threads: int | None = None) -> Backend:
    if backend == "onnxruntime":
        from engines.ort_backend import OrtBackend

        return OrtBackend(path, threads)
    if backend == "torch":
        require("torch", f"{path} (a .pt checkpoint)",
                tip="or pass its ONNX export: `fkd-track export --model FILE.pt` where torch is installed")
        from engines.torch_backend import TorchBackend

        return TorchBackend(path, device=device)
    from engines.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path)


def _auto(path: str, kind: str, threads: int | None = None) -> Backend:
    """.engine -> TensorRT; .pt -> torch (CUDA when present); .onnx -> a matching sibling engine on a GPU,
    else a matching sibling .pt on CUDA, else ONNX Runtime."""
    if kind == "engine":
        return _open("tensorrt", path)
    if kind == "pt":
        return _open("torch", path)
    ort_backend = _open("onnxruntime", path, threads=threads)
    stem = os.path.splitext(path)[0]
    engine = stem + ".engine"
    if os.path.isfile(engine) and importlib.util.find_spec("tensorrt") is not None:
        from engines.engine_sidecar import built_from

        if built_from(engine, path):
            try:
                return _open("tensorrt", engine)
            except UserError:
                pass  # engine for another GPU / TensorRT, or no GPU: fall through
    checkpoint = stem + ".pt"
    source = ort_backend.info.extra.get("source_sha256")
    if source and os.path.isfile(checkpoint) and importlib.util.find_spec("torch") is not None:
        from engines.model_file import sha256_file
        from engines.tensorrt_env import current_gpu

        if current_gpu() is not None and sha256_file(checkpoint) == source:
            return _open("torch", checkpoint, device="cuda")
    return _fastest_cpu(path, ort_backend, threads)


def int8_sibling(path: str) -> str:
    """Where `fkd-track quantize` puts a model's INT8 file: MODEL.int8.onnx beside MODEL.onnx."""
    return os.path.splitext(path)[0] + ".int8.onnx"


def _fastest_cpu(path: str, float_backend: Backend, threads: int | None = None) -> Backend:
    """The INT8 sibling when it was quantised from this very file, met its accuracy bound (validation RMSE
    within `bound_px` of float) and ran faster than the float file when measured; else the float file."""
    from engines.quantize import int8_record

    sibling = int8_sibling(path)
    if not os.path.isfile(sibling) or int8_record(float_backend.info.extra) is not None:
        return float_backend
    try:
        quantized = _open("onnxruntime", sibling, threads=threads)
    except UserError:
        return float_backend  # unreadable: the float file serves
    from engines.model_file import sha256_file

    record = int8_record(quantized.info.extra)
    fits = record is not None and record.meets_bound and record.faster
    return quantized if fits and record.source_sha256 == sha256_file(path) else float_backend
