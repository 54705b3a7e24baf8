"""FP32 ONNX -> an ONNX that computes in float16 with float32 inputs and outputs: what TensorRT's strongly
typed build (the only kind TensorRT 11 has) needs for an FP16 engine, since precision comes from the graph.

The convolutions and matrix products run in float16; the elementwise tail after the last of them (the
keypoint scaling 48 * t + 48) stays float32, so outputs are not quantised to float16's 1/16 px at 64..96 px.
"""

from __future__ import annotations

import numpy as np

from engines.backend import ModelError

HEAVY_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def fp16_compute_model(model):
    """A converted copy of an onnx ModelProto (see the module docstring); ModelError when it has no
    convolution or matrix product to run in float16."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    float_names = _float_tensors(model)
    nodes = list(graph.node)
    heavy = [i for i, n in enumerate(nodes) if n.op_type in HEAVY_OPS]
    if not heavy:
        raise ModelError(f"{graph.name or 'the model'} has no {'/'.join(HEAVY_OPS)} node to run in float16")
    head, tail = nodes[: heavy[-1] + 1], nodes[heavy[-1] + 1:]
    inputs = {i.name for i in graph.input}
    inits = {i.name: i for i in graph.initializer}
    head_in = {name for n in head for name in n.input if name}
    tail_in = {name for n in tail for name in n.input if name} | {o.name for o in graph.output}
    head_out = {name for n in head for name in n.output if name}

    rename: dict[str, str] = {}
    prologue, boundary = [], []
    for name in sorted(head_in & inputs):  # float32 graph inputs -> a float16 copy for the head
        if name in float_names:
            rename[name] = f"{name}__fp16"
            prologue.append(helper.make_node("Cast", [name], [rename[name]], to=TensorProto.FLOAT16,
                                             name=f"{name}__to_fp16"))
    for name in sorted(head_in & set(inits)):  # float32 weights -> float16 weights
        init = inits[name]
        if init.data_type == TensorProto.FLOAT:
            rename[name] = f"{name}__fp16"
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), rename[name])
            graph.initializer.append(half)
    for name in sorted(head_out & tail_in):  # float16 results the tail or an output needs -> float32
        if name in float_names:
            rename[name] = f"{name}__fp16"
            boundary.append(helper.make_node("Cast", [rename[name]], [name], to=TensorProto.FLOAT,
                                             name=f"{name}__to_fp32"))
    for node in head:
        node.input[:] = [rename.get(x, x) for x in node.input]
        node.output[:] = [rename.get(x, x) for x in node.output]
        _to_fp16_attributes(node)
    used = {name for n in tail for name in n.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used or i.name not in rename]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    del graph.node[:]
    graph.node.extend(prologue + head + boundary + tail)
    del graph.value_info[:]  # float32 types of the head's tensors no longer hold
    return model


def _float_tensors(model) -> set[str]:
    """Names of every float32 tensor in the graph (inputs, initializers, intermediate values, outputs)."""
    import onnx
    from onnx import TensorProto

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    values = list(g.input) + list(g.value_info) + list(g.output)
    names = {v.name for v in values if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    return names | {i.name for i in g.initializer if i.data_type == TensorProto.FLOAT}


def _to_fp16_attributes(node) -> None:
    """Float32 constants and casts inside the float16 part become float16."""
    from onnx import TensorProto, helper, numpy_helper

    if node.op_type == "Cast":
        for a in node.attribute:
            if a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.FLOAT16
    elif node.op_type == "Constant":
        for k, a in enumerate(node.attribute):
            if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
            elif a.name in ("value_float", "value_floats"):
                value = np.asarray(a.f if a.name == "value_float" else list(a.floats), np.float16)
                node.attribute[k].CopyFrom(helper.make_attribute("value", numpy_helper.from_array(value)))
