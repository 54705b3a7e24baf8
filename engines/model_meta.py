"""How a model describes itself: ModelInfo <-> ONNX metadata_props (JSON strings) and <- checkpoint dicts.

Torch-free, so the ONNX Runtime backend can read exported models without importing torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from engines.backend import ModelError, ModelInfo

ONNX_FORMAT = "fkd-track-onnx"
INPUT_NAME = "crops"
OUTPUT_NAME = "keypoints"

# What the exported graph does with its input and output; recorded in every exported model.
NORMALISATION = {
    "input": "float32 (N, 1, S, S) grey pixels 0..255; the graph divides by 255",
    "input_scale": 1.0 / 255.0,
    "output": "float32 (N, K, 2) crop pixels; the graph maps network targets t to t * S/2 + S/2",
    "output_scale": "S/2",
    "output_offset": "S/2",
}


def info_from_checkpoint(path: str, ckpt: Mapping) -> ModelInfo:
    """A ModelInfo from a train/ checkpoint dict (see train.checkpoint.model_meta)."""
    try:
        names = tuple(ckpt["keypoint_names"])
        pairs = tuple(tuple(p) for p in ckpt.get("flip_pairs", ()))
        extra = {
            "format": ckpt.get("format", ""),
            "keypoint_set": ckpt.get("keypoint_set", ""),
            "arch_kwargs": dict(ckpt.get("arch_kwargs", {})),
            "data": ckpt.get("data", {}),
            "normalisation": NORMALISATION,
        }
        size, arch = int(ckpt.get("input_size", 96)), str(ckpt.get("arch", "unknown"))
        return ModelInfo(path, names, pairs, size, arch, extra)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{path}: checkpoint lacks model metadata ({err})") from None


def info_to_metadata(info: ModelInfo) -> dict[str, str]:
    """ONNX metadata_props for a model: every value a JSON string."""
    props = {
        "format": ONNX_FORMAT,
        "keypoint_names": list(info.keypoint_names),
        "flip_pairs": [list(p) for p in info.flip_pairs],
        "input_size": info.input_size,
        "arch": info.arch,
        "normalisation": info.extra.get("normalisation", NORMALISATION),
    }
    for key in ("keypoint_set", "arch_kwargs", "data", "source_sha256"):
        if key in info.extra:
            props[key] = info.extra[key]
    return {k: json.dumps(v) for k, v in props.items()}


def info_from_metadata(path: str, props: Mapping[str, str]) -> ModelInfo:
    """A ModelInfo from ONNX metadata_props; ModelError naming the file when they are absent or malformed."""
    if "keypoint_names" not in props:
        raise ModelError(f"{path} has no fkd-track metadata (keypoint_names); see `fkd-track export`")
    try:
        values = {k: json.loads(v) for k, v in props.items() if k in _KNOWN}
        names = tuple(str(n) for n in values["keypoint_names"])
        pairs = tuple((str(a), str(b)) for a, b in values.get("flip_pairs", []))
        size = int(values.get("input_size", 96))
    except (ValueError, TypeError) as err:
        raise ModelError(f"{path}: malformed fkd-track metadata ({err})") from None
    if not names:
        raise ModelError(f"{path}: metadata lists no keypoints")
    core = ("keypoint_names", "flip_pairs", "input_size", "arch")
    extra = {k: v for k, v in values.items() if k not in core}
    return ModelInfo(path, names, pairs, size, str(values.get("arch", "unknown")), extra)


_KNOWN = ("format", "keypoint_names", "flip_pairs", "input_size", "arch", "normalisation", "keypoint_set",
          "arch_kwargs", "data", "source_sha256")
