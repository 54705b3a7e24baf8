"""Half-precision storage of an ONNX model's large weights: a smaller file that still computes in float32.

Large float32 initializers become float16 initializers followed by a Cast; the result must match the
float32 file within the export parity bound, or nothing is written.
"""

from __future__ import annotations

import os

import numpy as np

from engines.backend import ModelError
from engines.export import PARITY_PX, _probe_batch

# Only tensors this large are stored in half precision: in ML-ResNet that is the 18432 x 500 FC weight,
# which holds 90% of the bytes; keeping the convolutions in float32 keeps the outputs within the bound.
MIN_ELEMENTS = 1_000_000


def store_weights_fp16(
    src: str, dst: str, min_elements: int = MIN_ELEMENTS, check: np.ndarray | None = None,
    tolerance: float = PARITY_PX,
) -> float:
    """Write src to dst with each float32 initializer of >= `min_elements` values stored as float16.

    Both files run on `check` (float32 pixels (N, 1, S, S); default: the export probe batch); returns the
    max keypoint difference in crop pixels, and raises ModelError (writing nothing) if it reaches `tolerance`
    (default: the export parity bound, 0.01 px).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(src)
    graph = model.graph
    casts, keep = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            keep.append(init)
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{init.name}__fp16")
        keep.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=f"{init.name}__cast"))
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model, full_check=True)
    tmp = f"{dst}.tmp"
    try:
        onnx.save_model(model, tmp)
        diff = _max_difference(src, tmp, check)
        if not diff < tolerance:
            raise ModelError(f"{dst}: half-precision weights move keypoints by {diff:.4f} px "
                             f"(>= {tolerance}); keep float32 weights")
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return diff


def _max_difference(a: str, b: str, x: np.ndarray | None) -> float:
    import onnxruntime as ort

    sessions = [ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (a, b)]
    if x is None:
        size = sessions[0].get_inputs()[0].shape[-1]
        x = _probe_batch(8, int(size))
    name = sessions[0].get_inputs()[0].name
    out = [s.run(None, {name: x})[0] for s in sessions]
    return float(np.abs(out[0] - out[1]).max())
