"""torch checkpoint -> self-describing ONNX: raw-pixel input "crops", crop-pixel output "keypoints".

Dynamic batch axis, opset 18 (TensorRT 10's ONNX parser reads it), BatchNorm folded, metadata as JSON strings.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings

import numpy as np
import torch

from engines.backend import ModelError
from engines.model_file import sha256_file
from engines.model_meta import INPUT_NAME, OUTPUT_NAME, attribute_classes, attribute_output_name, info_to_metadata
from engines.output_files import atomic_path
from engines.pixel_model import load_pixel_model
from engines.torch_backend import AttributePixelModel

OPSET = 18  # the dynamo exporter's native opset; TensorRT 10 parses opsets 9 and up to at least 20
PARITY_PX = 0.01  # max |ONNX Runtime - torch| allowed right after export, in crop pixels


def export_onnx(checkpoint_path: str, onnx_path: str, opset: int = OPSET, verify: bool = True) -> str:
    """Export a train/ checkpoint to ONNX at onnx_path (written atomically); returns onnx_path.

    With verify, ONNX Runtime runs the written file on a fixed batch and must match torch FP32 within
    PARITY_PX pixels. A model with attribute heads gets one more output per head, attr_NAME: its class
    probabilities (N, classes), named with their classes in the metadata ("attributes").
    """
    import onnx

    model, info = load_pixel_model(str(checkpoint_path))
    info.extra["source_sha256"] = sha256_file(str(checkpoint_path))
    heads = list(attribute_classes(info))
    if heads:
        model = AttributePixelModel(model, heads).eval()
    outputs = [OUTPUT_NAME] + [attribute_output_name(a) for a in heads]
    size = info.input_size
    example = torch.from_numpy(_probe_batch(4, size))
    proto = _to_onnx(model, example, opset, outputs)
    flush_denormal_initializers(proto)  # BatchNorm folding makes new ones from tiny conv weights
    for key, value in info_to_metadata(info).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"fkd-track keypoint model ({info.arch}, {info.num_keypoints} keypoints)" + (
        f", attributes {', '.join(heads)}" if heads else "")
    onnx.checker.check_model(proto, full_check=True)
    onnx_path = os.fspath(onnx_path)
    os.makedirs(os.path.dirname(os.path.abspath(onnx_path)), exist_ok=True)
    with atomic_path(onnx_path) as tmp:
        onnx.save_model(proto, str(tmp))
        if verify:
            _verify(model, str(tmp), onnx_path, size, outputs)
    return onnx_path


def flush_denormal_initializers(proto) -> int:
    """Zero the denormal values of float32 initializers in an ONNX model (see `flush_denormals`)."""
    from onnx import numpy_helper

    n = 0
    for k, init in enumerate(proto.graph.initializer):
        a = numpy_helper.to_array(init)
        if a.dtype != np.float32:
            continue
        tiny = (a != 0) & (np.abs(a) < np.finfo(np.float32).tiny)
        if tiny.any():
            n += int(tiny.sum())
            proto.graph.initializer[k].CopyFrom(numpy_helper.from_array(np.where(tiny, 0, a).astype(np.float32),
                                                                        init.name))
    return n


def _to_onnx(model: torch.nn.Module, example: torch.Tensor, opset: int, outputs: list[str]):
    """Trace with torch.export (the default exporter since torch 2.9), quietly; returns the ModelProto."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    quiet, log = io.StringIO(), logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)  # hides the "torchvision is not installed" notices
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.export's own deprecation notices
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=opset, optimize=True, verbose=False,
                input_names=[INPUT_NAME], output_names=outputs, dynamic_shapes={"crops": {0: batch}},
            )
    finally:
        log.setLevel(level)
    if program is None:  # pragma: no cover - only the legacy exporter returns None
        raise ModelError("torch.onnx.export returned no program")
    return program.model_proto


def _probe_batch(n: int, size: int) -> np.ndarray:
    """A fixed, face-like-contrast float32 batch of pixels 0..255 for export and parity checks."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 128 + 80 * np.sin(6 * xx) * np.cos(4 * yy)
    noise = rng.normal(0, 25, (n, 1, size, size))
    return np.clip(base + noise, 0, 255).astype(np.float32)


def _verify(model: torch.nn.Module, tmp_path: str, onnx_path: str, size: int, outputs: list[str]) -> None:
    """ONNX Runtime vs torch on a probe batch: keypoints within PARITY_PX, probabilities within 1e-4."""
    import onnxruntime as ort

    x = _probe_batch(3, size)
    sess = ort.InferenceSession(tmp_path, providers=["CPUExecutionProvider"])
    got = sess.run(outputs, {INPUT_NAME: x})
    with torch.no_grad():
        want = model(torch.from_numpy(x))
    want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
    diff = float(np.abs(got[0] - want[0]).max())
    if not diff < PARITY_PX:
        raise ModelError(f"{onnx_path}: exported graph differs from torch by {diff:.4f} px (> {PARITY_PX})")
    for name, g, w in zip(outputs[1:], got[1:], want[1:], strict=True):
        if not float(np.abs(g - w).max()) < 1e-4:
            raise ModelError(f"{onnx_path}: exported {name} differs from torch by {float(np.abs(g - w).max()):.2e}")
