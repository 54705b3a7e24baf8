"""The TensorRT builder and backend on a CPU, against a stand-in `tensorrt` of the 10.x and 11.x APIs
(tests/fake_tensorrt.py): flags, strong typing, FP16 from the graph, timing cache, I/O checks, streams.

The real build and run on a GPU stay in test_export.py (skipped, with the reason, where TensorRT is absent).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.backend import ModelError
from engines.model_meta import OUTPUT_NAME
from engines.select import default_model_path
from tests.fake_tensorrt import FakeStream, make_tensorrt
from tests.test_gpu_paths_cpu import FP16_MEAN_PX
from tracker.crop import box_from_keypoints, crop_face
from tracker.keypoints import KAGGLE15

GPU = ("Fake GPU", "9.0")


@pytest.fixture(params=["10.8.0.43", "11.1.0.1"])
def trt(request, monkeypatch):
    """A fake tensorrt of each major version in sys.modules, a fake GPU, and torch.cuda streams stood in."""
    mod = make_tensorrt(request.param, gpu=GPU[0])
    monkeypatch.setitem(sys.modules, "tensorrt", mod)
    for name in ("engines.tensorrt_build", "engines.tensorrt_backend"):
        monkeypatch.setattr(f"{name}.current_gpu", lambda: GPU)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: _Nothing())
    return mod


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture(scope="module")
def real_crops(ytf_faces) -> np.ndarray:
    return np.stack([crop_face(f.image, box_from_keypoints(f.keypoints, KAGGLE15))[0] for f in ytf_faces])


@pytest.fixture
def onnx_model(tmp_path) -> Path:
    """The packaged default model (real ML-ResNet weights), copied so engines are built beside it."""
    path = tmp_path / "model.onnx"
    path.write_bytes(Path(default_model_path()).read_bytes())
    return path


def _backend(engine: Path):
    from engines.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(str(engine), device="cpu")


@pytest.mark.parametrize("fp16", [True, False])
def test_build_and_run_on_both_majors(trt, onnx_model, real_crops, tmp_path, fp16):
    from engines.ort_backend import OrtBackend
    from engines.tensorrt_build import build_engine

    engine = tmp_path / "model.engine"
    sidecar = build_engine(str(onnx_model), str(engine), fp16=fp16, batch_range=(1, 4, 8))
    assert sidecar.precision == ("fp16" if fp16 else "fp32") and sidecar.tensorrt_version == trt.__version__
    # a strongly typed network on every version; precision comes from the graph, never BuilderFlag.FP16
    flags = [c[1] for c in trt.calls if c[0] == "create_network"]
    assert flags == [1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)]
    assert not [c for c in trt.calls if c[0] == "set_flag"]
    backend = _backend(engine)
    assert backend.engine.fp16 == fp16 and backend.engine.header["strongly_typed"]
    want = OrtBackend(str(onnx_model)).predict(real_crops)
    got = backend.predict(real_crops)  # 6 crops with a max batch of 8; then 10 -> chunks of 8 and 2
    assert got.shape == (6, 15, 2) and got.dtype == np.float32
    diff = np.abs(got - want)
    assert diff.mean() < (FP16_MEAN_PX if fp16 else 1e-4), diff.mean()
    assert np.ptp(want, axis=0).max() > 1.0
    ten = backend.predict(np.concatenate([real_crops, real_crops[:4]]))
    assert np.array_equal(ten[6:], got[:4])
    assert backend.predict(real_crops[:0]).shape == (0, 15, 2)
    # the zero-filled buffers were made on the default stream: the backend's stream waits for it
    assert backend.stream.waited_on
    assert Path(f"{engine}.timing").read_bytes().endswith(GPU[0].encode())


def test_the_old_fp16_flag_fails_on_both_majors(trt, onnx_model, tmp_path):
    """What the old builder did (weakly typed network + BuilderFlag.FP16): 11.x has no such flag at all."""
    config = trt.Builder(trt.Logger()).create_builder_config()
    if trt.__version__.startswith("11"):
        with pytest.raises(AttributeError):
            config.set_flag(trt.BuilderFlag.FP16)
    else:
        config.set_flag(trt.BuilderFlag.FP16)  # allowed on 10.x, but not with a strongly typed network
        network = trt.Builder(trt.Logger()).create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        assert trt.Builder(trt.Logger()).build_serialized_network(network, config) is None


def test_corrupt_and_foreign_timing_caches_are_replaced(trt, onnx_model, tmp_path):
    from engines.tensorrt_build import build_engine

    engine = tmp_path / "model.engine"
    cache = Path(f"{engine}.timing")
    cache.write_bytes(b"\x00garbage, not a timing cache")  # create_timing_cache gives None for this
    build_engine(str(onnx_model), str(engine), fp16=False, batch_range=(1, 1, 2))
    assert cache.read_bytes().endswith(GPU[0].encode())
    cache.write_bytes(b"FAKE-TRT-CACHE:Another GPU")  # set_timing_cache refuses a mismatch
    build_engine(str(onnx_model), str(engine), fp16=False, batch_range=(1, 1, 2))
    sets = [c[1] for c in trt.calls if c[0] == "set_timing_cache"]
    assert sets == [GPU[0], "Another GPU", GPU[0]]


def test_unsupported_versions_and_multitask_models_are_refused_before_building(trt, tmp_path, monkeypatch):
    from engines.checkpoint import model_meta, save_checkpoint
    from engines.export import export_onnx
    from engines.models import create_model
    from engines.tensorrt_build import build_engine
    from train.multitask import attribute_classes

    ckpt = tmp_path / "heads.pt"
    save_checkpoint(str(ckpt), create_model("mlp", attributes={"gender": 2}).eval(),
                    model_meta("mlp", {}, KAGGLE15, attributes=attribute_classes(["gender"])))
    heads = Path(export_onnx(str(ckpt), str(tmp_path / "heads.onnx")))
    with pytest.raises(ModelError, match="attr_gender") as err:
        build_engine(str(heads), str(tmp_path / "heads.engine"))
    assert OUTPUT_NAME in str(err.value)
    assert not [c for c in trt.calls if c[0] == "create_network"]  # refused before any TensorRT work
    assert not (tmp_path / "heads.engine").exists()
    monkeypatch.setattr(trt, "__version__", "12.0.0")
    with pytest.raises(ModelError, match="TensorRT 12.0.0 is not supported"):
        build_engine(str(heads), str(tmp_path / "x.engine"))


def test_backend_checks_io_types_and_input_shapes(trt, onnx_model, real_crops, tmp_path, monkeypatch):
    from engines.tensorrt_build import build_engine

    engine = tmp_path / "model.engine"
    build_engine(str(onnx_model), str(engine), fp16=True, batch_range=(2, 4, 8))
    backend = _backend(engine)
    one = backend.predict(real_crops[:1])  # padded up to the engine's min batch of 2
    assert np.allclose(one, backend.predict(real_crops[:2])[:1], atol=1e-4)
    # a context that refuses the shape (as TensorRT does outside the profile) is an error, not stale output
    monkeypatch.setattr(type(backend.context), "set_input_shape", lambda self, name, shape: False)
    with pytest.raises(RuntimeError, match="refused input shape"):
        backend.predict(real_crops[:2])
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr("engines.tensorrt_backend.current_gpu", lambda: GPU)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: FakeStream())
    engine_cls = type(backend.engine)
    monkeypatch.setattr(engine_cls, "get_tensor_dtype", lambda self, name: trt.DataType.HALF)
    with pytest.raises(ModelError, match="not .*float32"):
        _backend(engine)
