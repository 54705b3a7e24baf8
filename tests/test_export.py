"""Export and backends on real faces: ONNX validity and metadata, ONNX Runtime vs torch parity, export CLI,
backend selection, the bench harness, and (where present) torch CUDA FP16 and TensorRT.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from engines.backend import ModelError
from engines.bench import bench_backend
from engines.checkpoint import model_meta, save_checkpoint
from engines.models import create_model
from engines.select import load_backend
from engines.tensorrt_env import current_gpu, tensorrt_available
from tests.conftest import count_denormals
from tests.test_gpu_paths_cpu import FP16_MAX_PX, FP16_MEAN_PX
from tracker.bench import crops_from_video
from tracker.crop import box_from_keypoints, crop_face
from tracker.keypoints import KAGGLE15

REPO = Path(__file__).resolve().parent.parent
NO_TENSORRT = "TensorRT is not installed (import tensorrt fails)"


@pytest.fixture(scope="module")
def real_crops(ytf_faces) -> np.ndarray:
    """The six YouTube-Faces frames cut to 96x96 crops with the shared crop function."""
    return np.stack([crop_face(f.image, box_from_keypoints(f.keypoints, KAGGLE15))[0] for f in ytf_faces])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, real_crops) -> Path:
    """An untrained ML-ResNet made non-trivial: BN statistics from real crops, random BN scales, eval mode."""
    torch.manual_seed(0)
    model = create_model("mlresnet")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(real_crops[:, None].astype(np.float32) / 255.0))
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
            bn.running_mean.add_(torch.empty_like(bn.running_mean).uniform_(-0.05, 0.05))
        # dead filters as long weight decay leaves them: denormal weights, and tiny ones BN folding can
        # turn denormal; both must leave the exported model (x86 runs denormal arithmetic ~10x slower)
        model.blocks[1].conv1.weight[:2] = 1e-40
        model.blocks[1].conv1.weight[2:4] = 2e-38
        model.blocks[1].bn1.weight[2:4] = 1e-3
    model.eval()
    path = tmp_path_factory.mktemp("export") / "model.pt"
    save_checkpoint(str(path), model, model_meta("mlresnet", {}, KAGGLE15, {"faces": 6, "source": "test"}))
    return path


@pytest.fixture(scope="module")
def exported(checkpoint) -> Path:
    """The checkpoint exported through the real CLI command."""
    pytest.importorskip("typer")  # here, not at the top: the CUDA tests run on GPU images without typer
    from typer.testing import CliRunner

    from tracker.cli import app

    out = checkpoint.with_name("model.onnx")
    result = CliRunner().invoke(app, ["export", "--model", str(checkpoint), "--onnx", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    return out


def test_onnx_is_valid_and_self_describing(exported):
    import onnx

    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["crops"]
    assert [o.name for o in proto.graph.output] == ["keypoints"]
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [1, 96, 96]  # dynamic batch
    assert {op.op_type for op in proto.graph.node} <= {"Div", "Conv", "Relu", "MaxPool", "Add", "Reshape",
                                                      "Gemm", "Mul", "Flatten", "Constant"}
    meta = {p.key: p.value for p in proto.metadata_props}
    for key in ("keypoint_names", "flip_pairs", "input_size", "normalisation", "arch", "data"):
        assert key in meta
    assert len(meta["source_sha256"]) == 66  # a JSON string of 64 hex digits
    backend = load_backend(exported, "onnxruntime")
    assert backend.info.keypoint_names == KAGGLE15.names
    assert backend.info.flip_pairs == KAGGLE15.flip_pairs
    assert backend.info.arch == "mlresnet" and backend.info.input_size == 96
    assert backend.info.extra["data"] == {"faces": 6, "source": "test"}


def test_onnxruntime_matches_torch_fp32_on_real_crops(exported, checkpoint, real_crops):
    ort_backend = load_backend(exported, "onnxruntime")
    torch_backend = load_backend(checkpoint, "torch")
    if torch_backend.name != "torch-cpu":
        from engines.torch_backend import TorchBackend

        torch_backend = TorchBackend(str(checkpoint), device="cpu")
    got, want = ort_backend.predict(real_crops), torch_backend.predict(real_crops)
    assert got.shape == (6, 15, 2) and got.dtype == np.float32
    assert np.abs(got - want).max() < 0.01
    assert np.ptp(want, axis=0).max() > 1.0  # the network is not constant across faces
    for i in (0, 3):  # batch size does not change the answer
        assert np.abs(ort_backend.predict(real_crops[i:i + 1]) - got[i:i + 1]).max() < 1e-3
    assert ort_backend.predict(real_crops[:0]).shape == (0, 15, 2)


def test_denormal_weights_are_flushed_on_load_and_export(checkpoint, exported):
    import onnx
    from onnx import numpy_helper

    from engines.ort_backend import session_options
    from engines.pixel_model import load_pixel_model

    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert count_denormals(saved["blocks.1.conv1.weight"].numpy()) > 0
    model, _ = load_pixel_model(str(checkpoint))
    assert sum(count_denormals(t.numpy()) for t in model.state_dict().values() if t.is_floating_point()) == 0
    assert sum(count_denormals(numpy_helper.to_array(i)) for i in onnx.load(str(exported)).graph.initializer) == 0
    # not ONNX Runtime's session.set_denormal_as_zero: it also switches the creating thread to flush-to-zero,
    # which changed unrelated float code later in the same process
    with pytest.raises(RuntimeError, match="does not have configuration"):
        session_options().get_session_config_entry("session.set_denormal_as_zero")


def test_export_engine_without_tensorrt_is_one_clear_line(checkpoint, tmp_path):
    if tensorrt_available():
        pytest.skip("TensorRT is installed here; the engine build is tested below")
    onnx_out, engine = tmp_path / "m.onnx", tmp_path / "m.engine"
    cmd = [sys.executable, "-c", "from tracker.entry import main; main()", "export", "--model", str(checkpoint),
           "--onnx", str(onnx_out), "--engine", str(engine)]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: TensorRT is not installed")
    assert "pip install fkd-track[tensorrt]" in lines[0]
    assert not engine.exists() and not onnx_out.exists()  # it failed before writing anything


def test_export_cli_rejects_bad_requests(checkpoint, exported, tmp_path):
    from typer.testing import CliRunner

    from tracker.cli import app

    runner = CliRunner()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    bad = runner.invoke(app, ["export", "--model", str(garbage)])
    assert isinstance(bad.exception, ModelError) and str(garbage) in str(bad.exception)
    nothing = runner.invoke(app, ["export", "--model", str(exported)])
    assert nothing.exit_code != 0 and "--engine" in str(nothing.exception)
    order = runner.invoke(app, ["export", "--model", str(checkpoint), "--engine", str(tmp_path / "x.engine"),
                                "--min-batch", "8", "--opt-batch", "4"])
    assert order.exit_code != 0 and "--min-batch" in str(order.exception)
    assert not (tmp_path / "x.engine").exists()


def test_auto_selection(exported, checkpoint, tmp_path):
    alone = tmp_path / "alone.onnx"  # no engine or checkpoint of the same stem beside it
    alone.write_bytes(exported.read_bytes())
    assert load_backend(alone).name == "onnxruntime"
    cuda = torch.cuda.is_available()
    assert load_backend(checkpoint).name == ("torch-cuda-fp16" if cuda else "torch-cpu")
    # model.onnx beside model.pt: the checkpoint it was exported from is used on CUDA only
    sibling = checkpoint.with_suffix(".onnx")
    assert sibling == exported
    assert load_backend(sibling, "auto").name == ("torch-cuda-fp16" if cuda else "onnxruntime")
    with pytest.raises(ModelError, match="torch backend runs .pt"):
        load_backend(exported, "torch")


def test_onnx_inference_does_not_import_torch(exported, real_crops):
    code = (
        "import sys, numpy as np\n"
        "from engines.select import load_backend\n"
        f"b = load_backend({str(exported)!r}, 'onnxruntime')\n"
        "out = b.predict(np.zeros((2, 96, 96), np.uint8))\n"
        "assert out.shape == (2, 15, 2), out.shape\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_bench_harness_on_real_video_crops(exported, video_path, haar_detection):
    crops = crops_from_video(video_path, max_faces=16)
    assert crops.shape == (16, 96, 96) and crops.dtype == np.uint8
    backend = load_backend(exported, "onnxruntime")
    rows = bench_backend(backend, crops, batch_sizes=(1, 8), seconds=0.2, min_calls=3, warmup=1)
    assert [(r.backend, r.batch) for r in rows] == [("onnxruntime", 1), ("onnxruntime", 8)]
    for r in rows:
        assert r.calls >= 3 and r.faces_per_s > 0 and 0 < r.p50_ms <= r.p99_ms


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_torch_cuda_fp16_matches_fp32(checkpoint, real_crops):
    from engines.torch_backend import TorchBackend

    fp32 = TorchBackend(str(checkpoint), device="cpu").predict(real_crops)
    graphs = TorchBackend(str(checkpoint), device="cuda")
    eager = TorchBackend(str(checkpoint), device="cuda", cuda_graphs=False)
    fast = graphs.predict(real_crops)  # 6 crops padded to the graph of 8
    diff = np.abs(fast - fp32)
    assert diff.mean() < FP16_MEAN_PX and diff.max() < FP16_MAX_PX, (diff.mean(), diff.max())
    # graph vs eager at the same batch (cuDNN may pick other algorithms for other batch sizes)
    padded = np.concatenate([real_crops, real_crops[:2]])
    assert np.abs(fast - eager.predict(padded)[:6]).max() < 1e-3
    small = graphs.predict(real_crops[:3])  # a second graph, of 4
    assert np.abs(small - eager.predict(np.concatenate([real_crops[:3], real_crops[:1]]))[:3]).max() < 1e-3
    assert np.abs(small - fp32[:3]).mean() < FP16_MEAN_PX


@pytest.mark.skipif(not tensorrt_available(), reason=NO_TENSORRT)
def test_tensorrt_engine_build_and_parity(exported, real_crops, tmp_path):
    if current_gpu() is None:
        pytest.skip("TensorRT is installed but no CUDA GPU is available")
    from engines.engine_sidecar import read_sidecar
    from engines.tensorrt_build import build_engine

    engine = tmp_path / "model.engine"
    sidecar = build_engine(str(exported), str(engine), fp16=True, batch_range=(1, 8, 64))
    assert read_sidecar(str(engine)) == sidecar and sidecar.precision == "fp16"
    trt_backend = load_backend(engine)
    assert trt_backend.name == "tensorrt"
    want = load_backend(exported, "onnxruntime").predict(real_crops)
    assert np.abs(trt_backend.predict(real_crops) - want).mean() < FP16_MEAN_PX
    engine.write_bytes(engine.read_bytes()[: sidecar.engine_bytes // 2])
    with pytest.raises(ModelError, match="truncated"):
        load_backend(engine)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_flip_average_on_the_torch_backend(checkpoint, real_crops, device):
    """--flip-average over a .pt checkpoint (the doubled batch through the torch backend's static batches and, on
    CUDA, its graphs): mirror equivariant, and on CUDA (fp16) within its bound of the CPU's fp32 points."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from engines.torch_backend import TorchBackend
    from tracker.flip_average import FlipAveraged
    from tracker.keypoints import KAGGLE15, flip_keypoints

    flip = FlipAveraged(TorchBackend(str(checkpoint), device=device))
    points = flip.predict(real_crops)
    of_mirror = flip.predict(np.ascontiguousarray(real_crops[:, :, ::-1]))
    tolerance = 1e-3 if device == "cpu" else FP16_MAX_PX
    assert np.abs(flip_keypoints(of_mirror, 96, KAGGLE15) - points).max() < tolerance
    if device == "cuda":
        cpu = FlipAveraged(TorchBackend(str(checkpoint), device="cpu")).predict(real_crops)
        assert np.abs(points - cpu).mean() < FP16_MEAN_PX
