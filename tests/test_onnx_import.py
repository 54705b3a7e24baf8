"""Fine-tuning from an exported model: the packaged ONNX comes back as a trainable torch model computing the
same keypoints, its unfolded BatchNorms calibrated on real crops; pose-balanced draws; the masked Wing loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.checkpoint import CheckpointError
from engines.select import default_model_path, int8_sibling, load_backend
from tracker.crop import box_from_keypoints, crop_face
from tracker.keypoints import KAGGLE15
from train.fit import pose_balance_weights
from train.masked_loss import masked_mse, masked_wing
from train.onnx_import import calibrate_batchnorm, load_onnx_model


@pytest.fixture(scope="module")
def crops(ytf_faces, mtfl_faces) -> np.ndarray:
    return np.stack([crop_face(f.image, box_from_keypoints(f.keypoints, KAGGLE15))[0]
                     for f in ytf_faces + mtfl_faces]).astype(np.float32)[:, None]


def _keypoints(net: torch.nn.Module, crops: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return (net(torch.from_numpy(crops) / 255.0).reshape(len(crops), -1, 2) * 48.0 + 48.0).numpy()


def test_the_packaged_model_imports_as_the_same_function(model_path, crops):
    if model_path.endswith(".engine"):
        pytest.skip("FKD_TEST_MODEL is a TensorRT engine")
    net, meta = load_onnx_model(model_path)
    assert meta["arch"] == "mlresnet_fast" and tuple(meta["keypoint_names"]) == KAGGLE15.names
    expected = load_backend(model_path, "onnxruntime").predict(crops[:, 0])
    assert np.abs(_keypoints(net, crops) - expected).max() < 1e-3  # crop pixels


def test_calibrated_batchnorm_gives_training_mode_the_same_function(model_path, crops):
    net, _ = load_onnx_model(model_path)
    before = _keypoints(net, crops)
    x = torch.from_numpy(crops) / 255.0
    calibrate_batchnorm(net, x)
    assert np.abs(_keypoints(net.eval(), crops) - before).max() < 1e-3
    net.train()
    for m in net.modules():  # dropout off: only the BatchNorms' batch statistics differ from eval mode
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    assert np.abs(_keypoints(net, crops) - before).max() < 1e-2
    # without the calibration, batch statistics would replace the unfolded identity ones
    raw, _ = load_onnx_model(model_path)
    raw.train()
    for m in raw.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    assert np.abs(_keypoints(raw, crops) - before).max() > 1.0


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(CheckpointError, match="not a readable ONNX"):
        load_onnx_model(str(bad))
    with pytest.raises(CheckpointError, match="INT8 .* start from its float model"):
        load_onnx_model(int8_sibling(default_model_path()))  # its weights live in QDQ nodes


def test_pose_balance_weights_even_out_the_pose_groups():
    pose = np.array([0] * 3 + [1] * 10 + [2] * 80 + [3] * 10 + [4] * 2 + [-1] * 20)
    uniform = pose_balance_weights(pose, 0.0)
    assert np.allclose(uniform, 1 / len(pose))
    even = pose_balance_weights(pose, 1.0)
    groups = [even[(pose == 0) | (pose == 4)].sum(), even[(pose == 1) | (pose == 3)].sum(),
              even[(pose == 2) | (pose == -1)].sum()]
    assert np.allclose(groups, 1 / 3)
    half = pose_balance_weights(pose, 0.5)
    assert uniform[0] < half[0] < even[0] and abs(half.sum() - 1) < 1e-9


def test_masked_wing_loss_ignores_missing_targets_and_weights_small_errors():
    torch.manual_seed(0)
    pred = torch.randn(4, 30, requires_grad=True)
    target = torch.randn(4, 30)
    mask = torch.rand(4, 30) > 0.4
    target[~mask] = float("nan")
    loss = masked_wing(pred, target, mask)
    loss.backward()
    assert torch.isfinite(loss) and (pred.grad[~mask] == 0).all() and (pred.grad[mask] != 0).all()
    # relative to a 10-px error's, a 1-px error (96-px crop) gets 3.3x the gradient under Wing, 0.1x under MSE
    small, big = torch.tensor([[1.0 / 48]]), torch.tensor([[10.0 / 48]])
    ones, zero = torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 1)

    def grad(fn, e):
        e = e.clone().requires_grad_(True)
        fn(e, zero, ones).backward()
        return float(e.grad)
    assert grad(masked_wing, small) / grad(masked_wing, big) == pytest.approx(10 / 3)
    assert grad(masked_mse, small) / grad(masked_mse, big) == pytest.approx(0.1)
