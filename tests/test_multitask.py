"""Multi-task learning (TCDCN-style): attribute heads beside the landmarks on real YTF + MTFL faces, the masked
attribute loss, Zhang et al.'s task-wise early stopping on synthetic traces, and the heads through export."""

from __future__ import annotations

import csv
import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from engines.model_meta import attribute_classes, attribute_labels
from engines.select import load_backend
from tests.conftest import MTFL_SPEC, YTF_SPEC
from train.fit import FitConfig, fit
from train.multitask import (
    flip_labels,
    generalisation_gap,
    masked_cross_entropy,
    parse_attr_weights,
    should_stop,
    strip_trend,
)
from train.prepare import load_prepared, prepare


def test_parse_attr_weights():
    assert parse_attr_weights("gender=0.5, pose=0.25") == {"gender": 0.5, "pose": 0.25}
    assert parse_attr_weights("all=0.1") == dict.fromkeys(("gender", "smile", "glasses", "pose"), 0.1)
    for bad in ("age=0.5", "gender", "gender=x", "smile=-1"):
        with pytest.raises(ValueError):
            parse_attr_weights(bad)


def test_masked_cross_entropy_ignores_unknown_labels():
    logits = torch.randn(6, 5, requires_grad=True)
    labels = torch.tensor([2, -1, 0, -1, 4, 1])
    loss = masked_cross_entropy(logits, labels)
    known = labels >= 0
    assert torch.allclose(loss, F.cross_entropy(logits[known], labels[known]))
    loss.backward()
    assert (logits.grad[~known] == 0).all() and (logits.grad[known].abs().sum(1) > 0).all()
    logits.grad = None
    none = masked_cross_entropy(logits, torch.full((6,), -1))
    none.backward()
    assert float(none.detach()) == 0.0 and (logits.grad == 0).all()


def test_flip_labels_mirrors_pose_only():
    labels = torch.tensor([[0, 1, 0, 0], [1, 0, 1, 4], [-1, -1, -1, -1], [0, 0, 0, 1]])
    flipped = torch.tensor([True, True, True, False])
    out = flip_labels(labels, ["gender", "smile", "glasses", "pose"], flipped)
    assert out.tolist() == [[0, 1, 0, 4], [1, 0, 1, 0], [-1, -1, -1, -1], [0, 0, 0, 1]]


def test_tcdcn_terms():
    k = 5
    assert strip_trend([0.3] * 6, k) == pytest.approx(k)  # levelled off: about k
    assert strip_trend([1.0, 0.4, 0.2, 0.12, 0.1, 0.09], k) < 1.0  # still dropping fast: small
    assert strip_trend([1.0, 1.0, 1.0, 1.0, 0.3, 0.2], k) == 0.0  # sharp fall at the end: keep going
    assert generalisation_gap([0.5, 0.3], [0.6, 0.6], 0.5) == pytest.approx((0.6 - 0.3) / (0.5 * 0.3))


def test_task_wise_early_stopping_on_synthetic_traces():
    epochs = np.arange(1, 13)
    # an auxiliary task that overfits: training error levels off, validation error climbs
    train_over = 0.3 + 0.5 * np.exp(-epochs)
    val_over = 0.55 + 0.03 * epochs
    # a healthy task: training error still falling steeply, validation error tracking it
    train_ok = 1.0 / epochs**2 + 0.01
    val_ok = 1.1 * train_ok
    fired = [t for t in range(1, 13) if should_stop(train_over[:t], val_over[:t], weight=0.1)]
    assert fired and fired[0] == 6  # as soon as the k + 1 = 6 epoch strip exists
    assert not any(should_stop(train_ok[:t], val_ok[:t], weight=0.1) for t in range(1, 13))
    # a more important task (larger lambda) is stopped later or not at all
    assert not should_stop(train_over[:6], val_over[:6], weight=100.0)
    with pytest.raises(ValueError):
        should_stop([0.1, 0.2], [0.1], 0.1)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, shared_data):
    """40 YouTube-Faces frames (no attributes) and 80 MTFL faces (attributes), and 20 YTF frames alone."""
    out = tmp_path_factory.mktemp("mt")
    both, ytf = out / "both.npz", out / "ytf.npz"
    prepare([YTF_SPEC, MTFL_SPEC], str(both), limit=80)
    prepare([YTF_SPEC], str(ytf), limit=20)
    return both, ytf


@pytest.fixture(scope="module")
def run_dir(prepared, tmp_path_factory, cli):
    """A 2-epoch multi-task MLP; the stopping threshold is set so that every head stops after epoch 2."""
    out = tmp_path_factory.mktemp("mt_run")
    r = cli("train", "fit", "--data", prepared[0], "--out", out, "--arch", "mlp", "--epochs", "2", "--batch", "32",
            "--lr", "1e-3", "--attr-weights", "gender=0.2,smile=0.2,glasses=0.2,pose=0.2", "--stop-k", "1",
            "--stop-epsilon=-1e9")
    assert r.code == 0, r.err
    assert "attribute heads gender (lambda 0.2)" in r.out and "auxiliary task pose stopped" in r.out
    return out


def test_multitask_fit_records_heads_losses_and_stopping(run_dir, prepared):
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert len(rows) == 2
    for a in ("gender", "smile", "glasses", "pose"):
        assert float(rows[0][f"train_ce_{a}"]) > 0 and 0 <= float(rows[1][f"val_acc_{a}"]) <= 1
        assert float(rows[0][f"lambda_{a}"]) == 0.2 and float(rows[1][f"lambda_{a}"]) == 0.0  # stopped
    ckpt = torch.load(run_dir / "best.pt", weights_only=True)
    assert ckpt["attributes"]["pose"] == ["left profile", "left", "frontal", "right", "right profile"]
    assert ckpt["state_dict"]["attribute_heads.pose.weight"].shape == (5, 100)


def test_heads_export_to_onnx_outputs_and_the_predict_contract_stays(run_dir, prepared):
    from engines.export import export_onnx
    from train.evaluate import evaluate

    path = export_onnx(str(run_dir / "best.pt"), str(run_dir / "mt.onnx"))
    proto = onnx.load(path)
    assert [o.name for o in proto.graph.output] == ["keypoints", "attr_gender", "attr_smile", "attr_glasses",
                                                    "attr_pose"]
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["attributes"]["gender"] == ["male", "female"]
    crops = load_prepared(str(prepared[0])).crops[:7, 12:108, 12:108].copy()
    from engines.torch_backend import TorchBackend

    # FP32 against FP32: the torch backend on the CPU even where CUDA (FP16) is available
    ort_b, torch_b = load_backend(path), TorchBackend(str(run_dir / "best.pt"), device="cpu")
    a, b = ort_b.predict_all(crops), torch_b.predict_all(crops)
    assert a.keys() == b.keys() == {"keypoints", "gender", "smile", "glasses", "pose"}
    assert a["pose"].shape == (7, 5) and np.allclose(a["pose"].sum(1), 1, atol=1e-5)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-3)
    np.testing.assert_array_equal(ort_b.predict(crops), a["keypoints"])  # predict: keypoints only, as before
    labels = attribute_labels(a, attribute_classes(ort_b.info))
    assert len(labels) == 7 and set(labels[0]) == {"gender", "smile", "glasses", "pose"}
    name, prob = labels[3]["pose"]
    assert name == meta["attributes"]["pose"][int(a["pose"][3].argmax())] and prob == pytest.approx(a["pose"][3].max())
    # evaluation scores the heads on the validation faces that have labels (MTFL), not the YTF ones
    p = load_prepared(str(prepared[0]))
    m = evaluate(ort_b, str(prepared[0]), "prepared")
    known = int((p.attributes[p.val, 0] >= 0).sum())
    assert 0 < known < int(p.val.sum())
    for head in ("gender", "smile", "glasses", "pose"):
        assert m["attributes"][head]["n"] == known and 0 <= m["attributes"][head]["accuracy"] <= 1


def test_multitask_without_any_attribute_label_is_a_clear_error(prepared, tmp_path):
    cfg = FitConfig(str(prepared[1]), str(tmp_path), arch="mlp", epochs=1, attr_weights={"smile": 0.1})
    with pytest.raises(ValueError, match="no training face has a known smile label"):
        fit(cfg, log=lambda _: None)
