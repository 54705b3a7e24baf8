"""Bad model files and engines for another machine: each is refused with one line naming the file.

Small hand-built ONNX graphs stand in for exported models here; test_export.py covers real exports.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from engines.backend import ModelError, ModelInfo
from engines.engine_sidecar import EngineSidecar, check_compatible, sidecar_path, write_sidecar
from engines.errors import UserError
from engines.model_meta import info_to_metadata
from engines.select import default_model_path, load_backend
from tracker.keypoints import KAGGLE15


def tiny_onnx(path: Path, side: int = 96, k: int = 15, names: tuple[str, ...] = KAGGLE15.names,
              metadata: bool = True) -> Path:
    """A valid linear graph crops (N, 1, side, side) -> keypoints (N, k, 2), with fkd-track metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array((rng.normal(size=(side * side, 2 * k)) * 1e-3).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, k, 2], np.int64), "shape")
    nodes = [
        helper.make_node("Flatten", ["crops"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["t"]),
        helper.make_node("Reshape", ["t", "shape"], ["keypoints"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("crops", TensorProto.FLOAT, ["batch", 1, side, side])],
        [helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, ["batch", k, 2])], [weights, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    if metadata:
        info = ModelInfo(str(path), names, KAGGLE15.flip_pairs, 96, "tiny")
        helper.set_model_props(model, info_to_metadata(info))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def refused(path: Path, backend: str = "auto") -> str:
    """load_backend's ModelError message for path; it must be one line and name the file."""
    with pytest.raises(ModelError) as err:
        load_backend(path, backend)
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg, msg
    return msg


def test_a_good_tiny_model_loads(tmp_path):
    """The positive control for the refusals below: the same graph with the right shapes works."""
    backend = load_backend(tiny_onnx(tmp_path / "good.onnx"))
    assert backend.name == "onnxruntime" and backend.info.keypoint_names == KAGGLE15.names
    assert backend.predict(np.full((3, 96, 96), 128, np.uint8)).shape == (3, 15, 2)


def test_missing_and_empty_files(tmp_path):
    assert "not found" in refused(tmp_path / "nope.onnx")
    for suffix in (".onnx", ".pt", ".engine"):
        empty = tmp_path / f"empty{suffix}"
        empty.touch()
        assert "empty" in refused(empty)
    assert "unknown model type" in refused(_write(tmp_path / "model.bin", b"x"))


def test_truncated_and_garbage_onnx(tmp_path):
    good = tiny_onnx(tmp_path / "good.onnx").read_bytes()
    refused(_write(tmp_path / "truncated.onnx", good[: len(good) // 2]))
    refused(_write(tmp_path / "garbage.onnx", np.random.default_rng(1).bytes(5000)))


def test_wrong_input_shape(tmp_path):
    assert "expected float (N, 1, 96, 96)" in refused(tiny_onnx(tmp_path / "side64.onnx", side=64))


def test_wrong_keypoint_count(tmp_path):
    ten = KAGGLE15.names[:10]
    assert "(N, 10, 2)" in refused(tiny_onnx(tmp_path / "k15_named10.onnx", names=ten))
    assert "(N, 15, 2)" in refused(tiny_onnx(tmp_path / "k5_named15.onnx", k=5))


def test_onnx_without_fkd_metadata(tmp_path):
    assert "metadata" in refused(tiny_onnx(tmp_path / "plain.onnx", metadata=False))


def test_bad_checkpoints(tmp_path):
    import torch

    from engines.checkpoint import model_meta, save_checkpoint
    from engines.models import create_model

    good = tmp_path / "mlp.pt"
    save_checkpoint(str(good), create_model("mlp"), model_meta("mlp", {}, KAGGLE15))
    assert load_backend(good, "torch").predict(np.zeros((2, 96, 96), np.uint8)).shape == (2, 15, 2)
    data = good.read_bytes()
    refused(_write(tmp_path / "truncated.pt", data[: len(data) // 2]))
    refused(_write(tmp_path / "garbage.pt", np.random.default_rng(2).bytes(4000)))
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    assert "not an fkd-track checkpoint" in refused(tmp_path / "foreign.pt")


def test_backend_and_file_kind_must_agree(tmp_path):
    model = tiny_onnx(tmp_path / "good.onnx")
    assert "torch backend runs .pt" in refused(model, "torch")
    assert "tensorrt backend runs .engine" in refused(model, "tensorrt")
    with pytest.raises(UserError, match="unknown backend"):
        load_backend(model, "cuda-magic")


def fake_engine(tmp_path: Path, tensorrt_version: str = "8.6.1",
                size: int = 4096) -> tuple[Path, EngineSidecar]:
    """Engine bytes plus a sidecar describing them exactly, as if built elsewhere with another TensorRT."""
    engine = _write(tmp_path / "model.engine", np.random.default_rng(3).bytes(size))
    sidecar = EngineSidecar(
        source=str(tmp_path / "model.onnx"), source_sha256="0" * 64, engine_bytes=size,
        engine_sha256=hashlib.sha256(engine.read_bytes()).hexdigest(), tensorrt_version=tensorrt_version,
        gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0", precision="fp16", batch_range=(1, 8, 64),
        metadata=info_to_metadata(ModelInfo("model.onnx", KAGGLE15.names, KAGGLE15.flip_pairs)),
    )
    write_sidecar(str(engine), sidecar)
    return engine, sidecar


def test_engine_from_another_tensorrt(tmp_path):
    engine, _ = fake_engine(tmp_path, tensorrt_version="8.6.1")
    assert "built with TensorRT 8.6.1" in refused(engine)


def test_truncated_engine_and_missing_sidecar(tmp_path):
    engine, sidecar = fake_engine(tmp_path)
    engine.write_bytes(engine.read_bytes()[:1000])
    assert f"truncated: 1000 of {sidecar.engine_bytes} bytes" in refused(engine)
    Path(sidecar_path(str(engine))).unlink()
    assert "sidecar" in refused(engine)
    Path(sidecar_path(str(engine))).write_text("{not json")
    assert "malformed" in refused(engine)


def test_engine_changed_after_build(tmp_path):
    engine, sidecar = fake_engine(tmp_path)
    engine.write_bytes(np.random.default_rng(9).bytes(sidecar.engine_bytes))
    assert "does not match its sidecar" in refused(engine)


def test_compatibility_rules():
    sidecar = EngineSidecar("m.onnx", "0" * 64, 1, "0" * 64, "10.3.0", "NVIDIA H100 80GB HBM3", "9.0", "fp16",
                            (1, 8, 64))
    h100 = ("NVIDIA H100 80GB HBM3", "9.0")
    check_compatible("m.engine", sidecar, "10.3.0", h100)  # the machine it was built on: accepted
    cases = {
        "TensorRT 10.3.0 but this machine has TensorRT 10.8.0": ("10.8.0", h100),
        "not installed here": (None, h100),
        "needs a CUDA GPU": ("10.3.0", None),
        "this GPU is NVIDIA L4 (compute capability 8.9)": ("10.3.0", ("NVIDIA L4", "8.9")),
    }
    for expected, (version, gpu) in cases.items():
        with pytest.raises(ModelError, match=expected.replace("(", r"\(").replace(")", r"\)")) as err:
            check_compatible("m.engine", sidecar, version, gpu)
        assert "m.engine" in str(err.value) and "\n" not in str(err.value)


def test_sidecar_round_trip(tmp_path):
    engine, sidecar = fake_engine(tmp_path)
    from engines.engine_sidecar import read_sidecar

    assert read_sidecar(str(engine)) == sidecar
    raw = json.loads(Path(sidecar_path(str(engine))).read_text())
    assert set(raw) == set(asdict(sidecar)) and raw["batch_range"] == [1, 8, 64]
    assert read_sidecar(str(engine)) != replace(sidecar, precision="fp32")


def test_default_model_path():
    path = Path(default_model_path())
    assert path.parts[-3:] == ("tracker", "assets", "default.onnx")
    if path.is_file():
        assert load_backend(None).info.num_keypoints == 15
    else:
        with pytest.raises(ModelError, match="default model"):
            load_backend(None)
