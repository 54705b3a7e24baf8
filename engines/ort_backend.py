"""The ONNX Runtime CPU backend: runs an exported, self-describing .onnx model without torch.

Session options are tuned for small-batch latency: full graph optimisation, all cores, sequential execution.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

from engines.backend import ModelError, ModelInfo, crops_to_input
from engines.model_file import require_model_file
from engines.model_meta import OUTPUT_NAME, attribute_classes, attribute_output_name, info_from_metadata

CPU = ["CPUExecutionProvider"]


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """CPU session options: ORT_ENABLE_ALL, intra-op threads = cores (or `threads`), sequential graph."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    # worker threads sleep between calls instead of spinning: the tracker's decode and Haar stages
    # share the same cores, and spinning took their CPU (end-to-end 42 -> 85 frames/s measured)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class OrtBackend:
    """Backend over an onnxruntime.InferenceSession on the CPU."""

    name = "onnxruntime"

    def __init__(self, model_path: str, threads: int | None = None) -> None:
        path = require_model_file(str(model_path))
        try:
            self.session = ort.InferenceSession(path, session_options(threads), providers=CPU)
        except Exception as err:  # ORT raises its own Fail/InvalidGraph/... types for bad files
            text = str(err).strip() or type(err).__name__
            detail = text.splitlines()[0].split("failed:", 1)[-1].strip()  # drop ORT's code and path prefix
            msg = f"{path} is not a loadable ONNX model (corrupt or truncated): {detail}"
            raise ModelError(msg) from None
        self.info: ModelInfo = info_from_metadata(path, self.session.get_modelmeta().custom_metadata_map)
        self.input_name, self.output_name = _check_io(self.session, self.info)
        self.attributes = attribute_classes(self.info)

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """crops: (N, S, S) uint8 -> float32 (N, K, 2) keypoints in crop pixels."""
        x = crops_to_input(crops, self.info.input_size)
        if len(x) == 0:
            return np.zeros((0, self.info.num_keypoints, 2), np.float32)
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def predict_all(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """{"keypoints": (N, K, 2), attribute: (N, classes) probabilities for each head} in one run."""
        x = crops_to_input(crops, self.info.input_size)
        if len(x) == 0:
            out = {OUTPUT_NAME: np.zeros((0, self.info.num_keypoints, 2), np.float32)}
            return out | {a: np.zeros((0, len(c)), np.float32) for a, c in self.attributes.items()}
        names = [self.output_name] + [attribute_output_name(a) for a in self.attributes]
        values = self.session.run(names, {self.input_name: x})
        return {OUTPUT_NAME: values[0]} | dict(zip(self.attributes, values[1:], strict=True))


def _check_io(session: ort.InferenceSession, info: ModelInfo) -> tuple[str, str]:
    """The one input must be (N, 1, S, S) float and the first output (N, K, 2) with K from the metadata;
    a model with attribute heads has one more output attr_NAME (N, classes) per head its metadata names."""
    ins, outs = session.get_inputs(), session.get_outputs()
    path, s, k = info.path, info.input_size, info.num_keypoints
    heads = attribute_classes(info)
    if len(ins) != 1 or len(outs) != 1 + len(heads):
        raise ModelError(f"{path}: expected 1 input and {1 + len(heads)} output{'s' if heads else ''}, "
                         f"found {len(ins)} and {len(outs)}")
    for out, (name, classes) in zip(outs[1:], heads.items(), strict=True):
        if out.name != attribute_output_name(name) or list(out.shape)[1:] != [len(classes)]:
            raise ModelError(f"{path}: output {out.name!r} {list(out.shape)} does not match the {name!r} head "
                             f"({len(classes)} classes) its metadata names")
    in_shape, out_shape = list(ins[0].shape), list(outs[0].shape)
    if ins[0].type != "tensor(float)" or len(in_shape) != 4 or in_shape[1:] != [1, s, s]:
        raise ModelError(f"{path}: input {ins[0].name!r} is {ins[0].type} {in_shape}, "
                         f"expected float (N, 1, {s}, {s})")
    if len(out_shape) != 3 or out_shape[1:] != [k, 2]:
        raise ModelError(f"{path}: output {outs[0].name!r} has shape {out_shape}, expected (N, {k}, 2) "
                         f"for the {k} keypoints its metadata names")
    return ins[0].name, outs[0].name
