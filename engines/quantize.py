"""INT8 ONNX by static QDQ quantisation (ONNX Runtime), calibrated on real face crops, with a measured bound.

`quantize_int8` writes the INT8 file only when its keypoint RMSE on held-out labelled faces stays within
`bound_px` of the float model's; the measurement (and the speed of both files here) goes into its metadata
as `int8`, which `engines.select` reads to let `auto` pick it. Needs `onnx` (the [train] extra); no torch.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from engines.backend import ModelError, crops_to_input
from engines.model_file import require_model_file, sha256_file

BOUND_PX = 0.1  # validation RMSE of the INT8 file may exceed the float file's by at most this (crop pixels)
INT8_KEY = "int8"  # the metadata entry holding the IntBound record


@dataclass(frozen=True)
class HeldOut:
    """Labelled face crops the bound is measured on: (N, S, S) uint8 and their true (N, K, 2) crop points
    (NaN where unlabelled), one set per crop mode (e.g. "landmarks", "detector")."""

    name: str
    crops: np.ndarray
    truth: np.ndarray


@dataclass(frozen=True)
class IntBound:
    """What the INT8 file's metadata records about it."""

    source_sha256: str  # the float .onnx it was quantised from
    bound_px: float
    rmse_float: dict[str, float]  # per held-out set, crop pixels
    rmse_int8: dict[str, float]
    delta_px: float  # the largest rmse_int8 - rmse_float over the sets
    faces: dict[str, int]
    calibration_faces: int
    faces_per_s_float: float  # batch 2 (a tracker frame's typical batch), one thread per core, here
    faces_per_s_int8: float
    method: str = "ONNX Runtime quantize_static, QDQ, per-channel int8 weights, uint8 activations, MinMax"

    @property
    def meets_bound(self) -> bool:
        return self.delta_px <= self.bound_px

    @property
    def faster(self) -> bool:
        return self.faces_per_s_int8 > self.faces_per_s_float


def masked_rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """RMSE over the labelled coordinates (the Kaggle metric, as `train evaluate`'s rmse_px)."""
    err = (np.asarray(pred, np.float64) - truth)[~np.isnan(truth)]
    return float(np.sqrt(np.mean(err ** 2))) if err.size else float("nan")


def float32_graph(src: str, dst: str) -> None:
    """`src` with weights stored as float16 + Cast (`export --half-weights`) turned back into float32
    initializers: quantisation wants plain float weights."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(src)
    graph = model.graph
    halves = {i.name: i for i in graph.initializer if i.data_type == TensorProto.FLOAT16}
    for node in list(graph.node):
        if node.op_type == "Cast" and node.input[0] in halves:
            init = halves.pop(node.input[0])
            graph.initializer.remove(init)
            weight = numpy_helper.to_array(init).astype(np.float32)
            graph.initializer.append(numpy_helper.from_array(weight, node.output[0]))
            graph.node.remove(node)
    onnx.save_model(model, dst)


def require_float_onnx(src: str) -> None:
    """ModelError unless `src` is a readable ONNX model that is not quantised already (QDQ or QLinear nodes)."""
    import onnx

    require_model_file(src)
    try:
        model = onnx.load(src, load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends: the file is not an ONNX model
        raise ModelError(f"{src} is not a loadable ONNX model (corrupt or truncated): "
                         f"{' '.join(str(err).split()) or type(err).__name__}") from None
    quantised = {n.op_type for n in model.graph.node} & {"QuantizeLinear", "DequantizeLinear", "QLinearConv",
                                                          "QLinearMatMul", "ConvInteger", "MatMulInteger"}
    if quantised:
        raise ModelError(f"{src} is quantised already ({', '.join(sorted(quantised))} nodes); quantize its float "
                         "source instead")


def _session(path: str, threads: int | None = None):
    import onnxruntime as ort

    from engines.ort_backend import CPU, session_options

    return ort.InferenceSession(path, session_options(threads), providers=CPU)


def predict(session, crops: np.ndarray, batch: int = 64) -> np.ndarray:
    """Keypoints (N, K, 2) of an ORT session for (N, S, S) uint8 crops, in chunks."""
    name = session.get_inputs()[0].name
    size = crops.shape[-1]
    outs = [session.run(None, {name: crops_to_input(crops[i:i + batch], size)})[0]
            for i in range(0, len(crops), batch)]
    return np.concatenate(outs) if outs else np.zeros((0, 0, 2), np.float32)


def faces_per_s(sessions: Sequence, crops: np.ndarray, batch: int = 2, seconds: float = 1.0,
                rounds: int = 3) -> list[float]:
    """Median faces/s of each session at `batch`, timed in alternating rounds (so both meet the same load)."""
    x = crops_to_input(crops[np.arange(batch) % len(crops)], crops.shape[-1])
    rates: list[list[float]] = [[] for _ in sessions]
    for s in sessions:  # warm-up
        s.run(None, {s.get_inputs()[0].name: x})
    for r in range(rounds):
        order = list(enumerate(sessions))[:: 1 if r % 2 == 0 else -1]
        for i, s in order:
            name, n, start = s.get_inputs()[0].name, 0, time.perf_counter()
            while time.perf_counter() - start < seconds / rounds or n < 3:
                s.run(None, {name: x})
                n += 1
            rates[i].append(n * batch / (time.perf_counter() - start))
    return [float(np.median(r)) for r in rates]


def quantize_int8(
    src: str, dst: str, calibration: np.ndarray, held_out: Sequence[HeldOut], bound_px: float = BOUND_PX,
    speed_seconds: float = 3.0,
) -> IntBound:
    """Quantise the float .onnx `src` to `dst` (QDQ, calibrated on `calibration` (N, S, S) uint8 face crops),
    measure both on every held-out set, and write `dst` (atomically, metadata carried over plus the `int8`
    record) only when the INT8 RMSE exceeds the float RMSE by at most `bound_px` on each set; ModelError
    (nothing written) otherwise."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from engines.output_files import atomic_path

    require_float_onnx(src)
    if len(calibration) == 0 or not held_out:
        raise ModelError("INT8 quantisation needs calibration crops and held-out labelled faces")
    size = calibration.shape[-1]

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(crops_to_input(c[None], size) for c in calibration)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {input_name: x}

    with tempfile.TemporaryDirectory(prefix="fkd-int8-") as tmp:
        plain, pre, quant = (os.path.join(tmp, n) for n in ("float.onnx", "pre.onnx", "int8.onnx"))
        float32_graph(src, plain)
        input_name = onnx.load(plain, load_external_data=False).graph.input[0].name
        quant_pre_process(plain, pre, skip_symbolic_shape=True)
        quantize_static(pre, quant, Crops(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        s_float, s_int8 = _session(src), _session(quant)
        rmse_f, rmse_q, faces = {}, {}, {}
        for h in held_out:
            rmse_f[h.name] = masked_rmse(predict(s_float, h.crops), h.truth)
            rmse_q[h.name] = masked_rmse(predict(s_int8, h.crops), h.truth)
            faces[h.name] = int(len(h.crops))
        delta = max(rmse_q[k] - rmse_f[k] for k in rmse_f)
        speed_f, speed_q = faces_per_s([s_float, s_int8], calibration, seconds=speed_seconds)
        record = IntBound(sha256_file(src), bound_px, _round(rmse_f), _round(rmse_q), round(delta, 4), faces,
                          int(len(calibration)), round(speed_f, 1), round(speed_q, 1))
        if not record.meets_bound:
            raise ModelError(f"{dst}: INT8 keypoints are {delta:.3f} px RMSE worse than float on held-out faces "
                             f"(bound {bound_px} px); not written")
        model = onnx.load(quant)
        meta = {p.key: p.value for p in onnx.load(src, load_external_data=False).metadata_props}
        meta[INT8_KEY] = json.dumps(asdict(record))
        del model.metadata_props[:]
        for k, v in meta.items():
            model.metadata_props.add(key=k, value=v)
        with atomic_path(dst) as out:
            onnx.save_model(model, str(out))
    return record


def _round(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in values.items()}


def int8_record(extra: dict) -> IntBound | None:
    """The `int8` record of a model's metadata (ModelInfo.extra), or None for a float model."""
    raw = extra.get(INT8_KEY)
    if not isinstance(raw, dict):
        return None
    try:
        return IntBound(**raw)
    except TypeError:
        return None
