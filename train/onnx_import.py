"""A trainable torch model from an exported fkd-track ONNX file (the packaged model has no checkpoint beside it).

The exporter folds each BatchNorm into the conv before it; `load_onnx_model` puts identity BatchNorms back, and
`calibrate_batchnorm` gives them the statistics of real crops, so training mode starts from the same function.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from engines.backend import ModelError
from engines.checkpoint import CheckpointError
from engines.model_meta import attribute_classes, info_from_metadata
from engines.models import create_model
from engines.quantize import INT8_KEY

ONNX_PREFIX = "net."  # the exported graph wraps the network as PixelModel.net


def conv_batchnorm_pairs(model: nn.Module) -> list[tuple[str, str, nn.BatchNorm2d]]:
    """(conv name, BatchNorm name, BatchNorm) for every bias-free conv with a BatchNorm right after it in
    registration order."""
    mods = list(model.named_modules())
    return [(name, mods[k + 1][0], mods[k + 1][1]) for k, (name, m) in enumerate(mods[:-1])
            if isinstance(m, nn.Conv2d) and m.bias is None and isinstance(mods[k + 1][1], nn.BatchNorm2d)]


def load_onnx_model(path: str) -> tuple[nn.Module, dict]:
    """(the network in eval mode, checkpoint-style metadata) rebuilt from an fkd-track ONNX file, e.g. the
    packaged default model; CheckpointError when the file is not one or its weights do not fit its arch."""
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load(path)
    except Exception as err:  # noqa: BLE001 - onnx raises several kinds for a bad file
        raise CheckpointError(f"{path} is not a readable ONNX model ({type(err).__name__})") from None
    try:
        info = info_from_metadata(path, {p.key: p.value for p in proto.metadata_props})
    except ModelError as err:
        raise CheckpointError(str(err)) from None
    if "refine" in info.extra:
        raise CheckpointError(f"{path} is a cascade second stage; start from a first-stage model")
    if INT8_KEY in info.extra:
        raise CheckpointError(f"{path} is an INT8 (quantised) model; start from its float model (e.g. "
                              "default.onnx, not default.int8.onnx)")
    arch, arch_kwargs = info.arch, dict(info.extra.get("arch_kwargs") or {})
    heads = {a: len(c) for a, c in attribute_classes(info).items()}
    try:
        net = create_model(arch, info.num_keypoints, attributes=heads, **arch_kwargs)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    weights = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:  # weights stored in float16 (`export --half-weights`): Cast back to their names
        if node.op_type == "Cast" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    state = net.state_dict()
    pairs = conv_batchnorm_pairs(net)
    unfolded = {name for _, name, _ in pairs}
    for key in state:
        module = key.rpartition(".")[0]
        if module in unfolded or key.endswith("num_batches_tracked"):
            continue  # set from the conv before it
        if ONNX_PREFIX + key not in weights:
            raise CheckpointError(f"{path}: no weights for {key} of a {arch} model")
        state[key] = _tensor(weights[ONNX_PREFIX + key])
    for conv, name, bn in pairs:  # the BN after each folded conv: identity, plus the folded bias
        bias = weights.get(f"{ONNX_PREFIX}{conv}.weight_bias")
        if bias is None:
            raise CheckpointError(f"{path}: no folded bias for {conv} of a {arch} model")
        state[f"{name}.weight"] = torch.ones_like(state[f"{name}.weight"])
        state[f"{name}.bias"] = _tensor(bias)
        state[f"{name}.running_mean"] = torch.zeros_like(state[f"{name}.running_mean"])
        state[f"{name}.running_var"] = torch.full_like(state[f"{name}.running_var"], 1.0 - bn.eps)
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit architecture {arch!r} ({err})") from None
    meta = {"arch": arch, "arch_kwargs": arch_kwargs, "keypoint_names": list(info.keypoint_names),
            "flip_pairs": [list(p) for p in info.flip_pairs], "keypoint_set": info.extra.get("keypoint_set", "")}
    return net.eval(), meta


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, x: torch.Tensor) -> None:
    """Re-express every BatchNorm so its statistics are those of `x`'s activations while eval-mode outputs stay
    the same: training mode then starts from the eval-mode function (the unfolded BatchNorms of an ONNX import
    have statistics 0/1, which batch statistics would replace at the first step)."""
    stats: dict[nn.BatchNorm2d, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(module, inputs, _output):
        z = inputs[0].float()
        stats[module] = (z.mean(dim=(0, 2, 3)), z.var(dim=(0, 2, 3), unbiased=False))

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    handles = [m.register_forward_hook(hook) for m in bns]
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for bn in bns:
        if bn not in stats:
            continue
        mu, var = stats[bn]
        old = torch.sqrt(bn.running_var + bn.eps)
        new = torch.sqrt(var + bn.eps)
        bn.bias += bn.weight * (mu - bn.running_mean) / old
        bn.weight *= new / old
        bn.running_mean.copy_(mu)
        bn.running_var.copy_(var)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, np.float32).copy())
