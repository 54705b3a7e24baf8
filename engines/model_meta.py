"""How a model describes itself: ModelInfo <-> ONNX metadata_props (JSON strings) and <- checkpoint dicts.

Torch-free, so the ONNX Runtime backend can read exported models without importing torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from engines.backend import ModelError, ModelInfo

ONNX_FORMAT = "fkd-track-onnx"
INPUT_NAME = "crops"
OUTPUT_NAME = "keypoints"
ATTRIBUTE_PREFIX = "attr_"  # a model with attribute heads has one more output per head: attr_NAME (N, classes)

# What the exported graph does with its input and output; recorded in every exported model.
NORMALISATION = {
    "input": "float32 (N, 1, S, S) grey pixels 0..255; the graph divides by 255",
    "input_scale": 1.0 / 255.0,
    "output": "float32 (N, K, 2) crop pixels; the graph maps network targets t to t * S/2 + S/2",
    "output_scale": "S/2",
    "output_offset": "S/2",
}


def attribute_output_name(attribute: str) -> str:
    """The graph output holding an attribute head's class probabilities (N, classes), e.g. attr_gender."""
    return ATTRIBUTE_PREFIX + attribute


def attribute_classes(info: ModelInfo) -> dict[str, list[str]]:
    """{attribute: class names} of a model's attribute heads, in output order; {} for a keypoints-only model."""
    return {str(k): [str(c) for c in v] for k, v in (info.extra.get("attributes") or {}).items()}


def attribute_labels(outputs: Mapping[str, Sequence], classes: Mapping[str, Sequence[str]]) -> list[dict]:
    """Per face, {attribute: (most probable class name, its probability)} from a backend's `predict_all`
    outputs and the model's `attribute_classes`, e.g. [{"gender": ("female", 0.93), "pose": ("frontal", 0.71)}]."""
    names = [a for a in classes if a in outputs]
    n = len(outputs[names[0]]) if names else 0
    faces: list[dict] = [{} for _ in range(n)]
    for a in names:
        for face, probs in zip(faces, outputs[a], strict=True):
            best = max(range(len(probs)), key=lambda c: probs[c])
            face[a] = (str(classes[a][best]), float(probs[best]))
    return faces


def info_from_checkpoint(path: str, ckpt: Mapping) -> ModelInfo:
    """A ModelInfo from a train/ checkpoint dict (see engines.checkpoint.model_meta)."""
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
        for key in ("attributes", "refine"):  # attribute heads; cascade second stage (tracker.cascade)
            if ckpt.get(key):
                extra[key] = ckpt[key]
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
    for key in ("keypoint_set", "arch_kwargs", "data", "source_sha256", "attributes", "refine"):
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
          "arch_kwargs", "data", "source_sha256", "attributes", "refine", "int8")
