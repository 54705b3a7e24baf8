"""Faces/s of ONNX model files on this CPU: ONNX Runtime, one thread, alternating rounds, medians
(`engines.quantize.faces_per_s`), at batch 1, 2 and 4.

    .venv/bin/python benchmarks/model_speed.py tracker/assets/default.onnx tracker/assets/default.int8.onnx OLD.onnx
"""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort

from engines.quantize import faces_per_s


def main(files: list[str]) -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = [ort.InferenceSession(f, options, providers=["CPUExecutionProvider"]) for f in files]
    crops = np.random.default_rng(0).integers(0, 255, (8, 96, 96)).astype(np.uint8)
    for batch in (1, 2, 4):
        rates = faces_per_s(sessions, crops, batch=batch, seconds=6.0, rounds=4)
        print(f"batch {batch}: " + ", ".join(f"{f} {r:.1f}" for f, r in zip(files, rates, strict=True)))


if __name__ == "__main__":
    main(sys.argv[1:])
