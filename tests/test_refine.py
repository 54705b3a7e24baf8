"""Cascade refinement (Sun et al.) on real faces: the stage-2 box geometry, recovering the prepared face boxes,
`train refine` end to end (re-crop, brief fit, export, accuracy and cost), and the tracker-side library call."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest

from engines.backend import ModelError
from engines.select import load_backend
from tests.conftest import MTFL_SPEC, YTF_SPEC
from tracker.cascade import refine, refine_box, refine_points, stage2_zoom
from tracker.crop import CROP_SIZE, box_from_keypoints, crop_face, from_crop
from tracker.keypoints import IBUG68, KAGGLE15, NOSE, map_keypoints
from train.datasets import DatasetError, load_dataset
from train.prepare import load_prepared, prepare
from train.refine import check_refinable, prepared_box, scale_shift, source_faces


def test_scale_shift_is_exact_and_needs_two_points():
    src = np.array([[10.0, 20.0], [30.0, 25.0], [np.nan, 1.0], [12.0, 60.0]])
    dst = 0.37 * src + [5.0, -2.0]
    k, t = scale_shift(src, dst)
    assert k == pytest.approx(0.37) and np.allclose(t, [5.0, -2.0])
    with pytest.raises(ValueError):
        scale_shift(src[:1], dst[:1])


def test_refine_box_turns_upright_zooms_and_reads_any_set(ytf_faces):
    pts = ytf_faces[2].keypoints
    base = box_from_keypoints(pts, KAGGLE15)
    box = refine_box(pts, KAGGLE15, size=90.0, zoom=1.25)
    le, re = pts[KAGGLE15.index("left_eye_center")], pts[KAGGLE15.index("right_eye_center")]
    assert box.angle == pytest.approx(math.degrees(math.atan2(le[1] - re[1], le[0] - re[0])))
    assert box.size == pytest.approx(90.0 / 1.25) and (box.cx, box.cy) == pytest.approx((base.cx, base.cy))
    # 68 points give the same box through their derived eye centres and mouth corners
    fs = load_dataset(YTF_SPEC, keypoints="ibug68")
    p68 = fs.keypoints[0]
    a, b = refine_box(p68, IBUG68, 80.0), refine_box(map_keypoints(p68, IBUG68, KAGGLE15), KAGGLE15, 80.0)
    assert (a.cx, a.cy, a.size, a.angle) == pytest.approx((b.cx, b.cy, b.size, b.angle))
    assert refine_box(np.full((15, 2), np.nan), KAGGLE15, 80.0) is None
    with pytest.raises(DatasetError, match="eye centres and mouth corners"):
        check_refinable(NOSE)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, shared_data):
    path = tmp_path_factory.mktemp("ref") / "p.npz"
    prepare([YTF_SPEC, MTFL_SPEC], str(path), limit=60)
    return path


def test_prepared_boxes_are_recovered_from_the_stored_points(prepared):
    p = load_prepared(str(prepared))
    m = int(p.margin)
    diffs = []
    for i, image, box, _ in source_faces(p, np.arange(0, len(p), 7)):
        crop, _ = crop_face(image, box, CROP_SIZE)
        diffs.append(np.abs(crop.astype(float) - p.crops[i, m : m + CROP_SIZE, m : m + CROP_SIZE]).mean())
    assert len(diffs) >= 15 and max(diffs) < 3.0  # the stored crop, but for its JPEG coding
    assert prepared_box(p.keypoints[0].astype(float), p.keypoints[0].astype(float) * 2.0 + 7.0, p.meta).size \
        == pytest.approx(2.0 * CROP_SIZE)


@pytest.fixture(scope="module")
def cascade(prepared, tmp_path_factory, cli):
    """A 1-epoch MLP first stage and the 1-epoch second stage `train refine` builds on it."""
    root = tmp_path_factory.mktemp("cascade")
    r = cli("train", "fit", "--data", prepared, "--out", root / "s1", "--arch", "mlp", "--epochs", "1",
            "--batch", "32", "--lr", "1e-3")
    assert r.code == 0, r.err
    r = cli("train", "refine", "--stage1", root / "s1" / "best.pt", "--data", prepared, "--out", root / "s2",
            "--epochs", "1", "--batch", "32", "--lr", "1e-4", "--zoom", "1.15")
    assert r.code == 0, r.err
    assert "ms per face" in r.out
    return root


def test_train_refine_writes_a_stage2_model_and_its_measured_gain(cascade, prepared):
    s2 = cascade / "s2"
    p2, p = load_prepared(str(s2 / "stage2.npz")), load_prepared(str(prepared))
    assert p2.meta["refine"]["zoom"] == 1.15 and len(p2) == len(p)
    assert (p2.val == p.val).all() and p2.crops.shape == p.crops.shape
    meta = {q.key: json.loads(q.value) for q in onnx.load(str(s2 / "stage2.onnx")).metadata_props}
    assert meta["refine"]["zoom"] == 1.15 and meta["refine"]["stage1"] == "best.pt"
    result = json.loads((s2 / "cascade.json").read_text())
    assert result["n_images"] == int(p.val.sum())
    for stage in ("stage1", "cascade"):
        assert 0 < result[stage]["rmse_px"] < 96 and result[stage]["n_points"] > 0
    assert result["rmse_gain_px"] == pytest.approx(result["stage1"]["rmse_px"] - result["cascade"]["rmse_px"])
    assert result["ms_per_face"]["stage1"] > 0 and result["ms_per_face"]["stage2"] > 0


def test_library_refine_for_the_tracker(cascade, ytf_faces):
    stage1 = load_backend(cascade / "s2" / "stage1.onnx")
    stage2 = load_backend(cascade / "s2" / "stage2.onnx")
    assert stage2_zoom(stage2.info, stage1.info) == 1.15
    with pytest.raises(ModelError, match="not a cascade second stage"):
        stage2_zoom(stage1.info)
    face = ytf_faces[0]
    boxes = [box_from_keypoints(face.keypoints, KAGGLE15), box_from_keypoints(ytf_faces[1].keypoints, KAGGLE15)]
    out = refine(stage1, stage2, face.image, boxes)
    assert out.shape == (2, 15, 2) and np.isfinite(out).all()
    # the same as refining the first stage's points; a face without a box keeps its points
    crop, m = crop_face(face.image, boxes[0])
    pts1 = from_crop(stage1.predict(crop[None])[0].astype(float), m)
    np.testing.assert_allclose(refine_points(stage2, face.image, pts1[None], boxes[:1])[0], out[0], atol=1e-3)
    nan = np.full((1, 15, 2), np.nan)
    assert np.isnan(refine_points(stage2, face.image, nan, boxes[:1])).all()
