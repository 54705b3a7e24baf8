"""A small stand-in for the `tensorrt` module (10.x and 11.x APIs) so the builder and backend run on a CPU.

The "engine" it serialises is the parsed ONNX plus the build settings; executing it runs that ONNX with ONNX
Runtime on the CPU memory behind the bound tensor addresses. Like the real 11.x, the 11.x flavour has no
BuilderFlag.FP16, and like the real 10.x, a strongly typed network refuses that flag.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import types
from enum import IntEnum

import numpy as np

MAGIC = b"FAKE-TRT-ENGINE\n"
CACHE_MAGIC = b"FAKE-TRT-CACHE:"


class DataType(IntEnum):
    FLOAT = 0
    HALF = 1


class TensorIOMode(IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class MemoryPoolType(IntEnum):
    WORKSPACE = 0


class Logger:
    ERROR, WARNING, INFO = 1, 2, 3

    def __init__(self, level: int = 2) -> None:
        self.level = level


def make_tensorrt(version: str = "10.8.0.43", gpu: str = "Fake GPU") -> types.ModuleType:
    """A fresh fake `tensorrt` module of the given version (major 10 or 11); `gpu` names the timing caches."""
    major = int(version.split(".")[0])
    mod = types.ModuleType("tensorrt")
    mod.__spec__ = importlib.util.spec_from_loader("tensorrt", loader=None)
    mod.__version__ = version
    mod.calls = []  # every builder-side call, for the tests to inspect
    if major >= 11:
        mod.BuilderFlag = IntEnum("BuilderFlag", {"TF32": 0, "DEBUG": 1})
        mod.NetworkDefinitionCreationFlag = IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 0})
    else:
        mod.BuilderFlag = IntEnum("BuilderFlag", {"FP16": 0, "INT8": 1, "DEBUG": 2, "TF32": 7})
        mod.NetworkDefinitionCreationFlag = IntEnum("NetworkDefinitionCreationFlag",
                                                    {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
    mod.DataType, mod.TensorIOMode, mod.MemoryPoolType, mod.Logger = DataType, TensorIOMode, MemoryPoolType, Logger

    class Network:
        def __init__(self, flags: int) -> None:
            strong = 1 << int(mod.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            self.strongly_typed = major >= 11 or bool(flags & strong)
            self.onnx: bytes | None = None

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network, self.errors = network, []

        def parse(self, data: bytes, path: str | None = None) -> bool:
            import onnx

            mod.calls.append(("parse", len(data)))
            try:
                onnx.checker.check_model(onnx.load_from_string(bytes(data)), full_check=True)
            except Exception as err:
                self.errors.append(f"In node -1: {type(err).__name__}: {err}")
                return False
            self.network.onnx = bytes(data)
            return True

        def parse_from_file(self, path: str) -> bool:
            with open(path, "rb") as f:
                return self.parse(f.read(), path)

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> str:
            return self.errors[i]

    class TimingCache:
        def __init__(self, gpu_name: str) -> None:
            self.gpu = gpu_name

        def serialize(self) -> bytes:
            return CACHE_MAGIC + self.gpu.encode()

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, lo, opt, hi) -> None:
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Config:
        def __init__(self) -> None:
            self.flags: set = set()
            self.profiles: list[Profile] = []
            self.cache: TimingCache | None = None

        def set_flag(self, flag) -> None:
            mod.calls.append(("set_flag", flag.name))
            self.flags.add(flag)

        def set_memory_pool_limit(self, pool, size: int) -> None:
            mod.calls.append(("set_memory_pool_limit", pool.name, size))

        def add_optimization_profile(self, profile: Profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data: bytes) -> TimingCache | None:
            if not data:
                return TimingCache(gpu)
            if not bytes(data).startswith(CACHE_MAGIC):
                return None  # what the real one gives for a corrupt cache
            return TimingCache(bytes(data)[len(CACHE_MAGIC):].decode())

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            if cache is None:
                raise TypeError("set_timing_cache(): incompatible function arguments (cache is None)")
            mod.calls.append(("set_timing_cache", cache.gpu))
            if cache.gpu != gpu and not ignore_mismatch:
                return False
            self.cache = cache
            return True

        def get_timing_cache(self) -> TimingCache:
            return self.cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> Network:
            mod.calls.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            fp16_flag = getattr(mod.BuilderFlag, "FP16", None)
            if network.strongly_typed and fp16_flag is not None and fp16_flag in config.flags:
                return None  # 10.x: "BuilderFlag::kFP16 is not allowed for strongly typed networks"
            if network.onnx is None or len(config.profiles) != 1 or config.cache is None:
                return None
            header = {"version": version, "strongly_typed": network.strongly_typed,
                      "profile": {k: [list(s) for s in v] for k, v in config.profiles[0].shapes.items()}}
            return MAGIC + json.dumps(header).encode() + b"\n" + network.onnx

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine, self.addresses, self.shapes = engine, {}, {}

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = int(address)
            return True

        def set_input_shape(self, name: str, shape) -> bool:
            lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
            shape = tuple(shape)
            if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True)):
                return False
            self.shapes[name] = shape
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            names = self.engine.session_inputs
            if set(self.shapes) != set(names) or not set(self.addresses) >= {*names, *self.engine.outputs}:
                return False
            feeds = {n: _view(self.addresses[n], self.shapes[n], np.float32).copy() for n in names}
            outs = self.engine.session.run(self.engine.outputs, feeds)
            for name, value in zip(self.engine.outputs, outs, strict=True):
                _view(self.addresses[name], value.shape, np.float32)[...] = value
            return True

    class Engine:
        def __init__(self, header: dict, onnx_bytes: bytes) -> None:
            import onnx
            import onnxruntime as ort

            self.header, self.model = header, onnx.load_from_string(onnx_bytes)
            self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
            self.session_inputs = [i.name for i in self.session.get_inputs()]
            self.outputs = [o.name for o in self.session.get_outputs()]
            half = {i.name for i in self.model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
            self.fp16 = any(n.op_type == "Conv" and n.input[1] in half for n in self.model.graph.node)
            self.io = {v.name: v for v in (*self.model.graph.input, *self.model.graph.output)}

        @property
        def num_io_tensors(self) -> int:
            return len(self.session_inputs) + len(self.outputs)

        def get_tensor_name(self, i: int) -> str:
            return [*self.session_inputs, *self.outputs][i]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return TensorIOMode.INPUT if name in self.session_inputs else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> DataType:
            import onnx

            elem = self.io[name].type.tensor_type.elem_type
            return DataType.FLOAT if elem == onnx.TensorProto.FLOAT else DataType.HALF

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            dims = self.io[name].type.tensor_type.shape.dim
            return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)

        def get_tensor_profile_shape(self, name: str, profile: int):
            return [tuple(s) for s in self.header["profile"][name]]

        def create_execution_context(self) -> Context:
            return Context(self)

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            data = bytes(data)
            if not data.startswith(MAGIC):
                return None
            header, _, onnx_bytes = data[len(MAGIC):].partition(b"\n")
            try:
                return Engine(json.loads(header), onnx_bytes)
            except Exception:
                return None

    mod.Builder, mod.OnnxParser, mod.Runtime = Builder, OnnxParser, Runtime
    return mod


def _view(address: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A numpy view of CPU memory at `address` (the fake's stand-in for device memory)."""
    count = int(np.prod(shape))
    buf = (ctypes.c_char * (count * np.dtype(dtype).itemsize)).from_address(address)
    return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)


class FakeStream:
    """torch.cuda.Stream's surface the backend uses, for a CPU run; records wait_stream calls."""

    def __init__(self, device=None) -> None:
        self.cuda_stream = id(self)
        self.waited_on: list[FakeStream] = []
        self.synchronized = 0

    def wait_stream(self, other: FakeStream) -> None:
        self.waited_on.append(other)

    def synchronize(self) -> None:
        self.synchronized += 1
