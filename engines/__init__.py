"""Inference engines for fkd-track: ONNX export, TensorRT engine building, and backends behind one interface.

`engines.select.load_backend(model_path, backend="auto")` is the only entry point the tracker uses.
"""
