"""Keypoint sets beyond Kaggle's 15 on real faces: the schema (flip pairs, derivations), every adapter giving
each set its source has, prepare/fit/export/evaluate of a nose-only and a 68-point model."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from engines.select import load_backend
from tests.conftest import KAGGLE_LABELS, MTFL_SPEC, YTF_SPEC
from tracker.keypoints import (
    IBUG68,
    KAGGLE15,
    KEYPOINT_SETS,
    MTFL5,
    NOSE,
    derivable,
    flip_keypoints,
    get_keypoint_set,
    keypoint_set_for,
    map_keypoints,
)
from train.datasets import DatasetError, load_dataset
from train.prepare import load_prepared, prepare


@pytest.mark.parametrize("name", ["kaggle15", "mtfl5", "nose", "ibug68"])
def test_every_set_is_registered_and_its_flip_is_an_involution(name):
    kps = get_keypoint_set(name)
    perm = kps.flip_permutation
    assert (perm[perm] == np.arange(len(kps))).all()
    assert len(set(kps.names)) == len(kps)
    assert KEYPOINT_SETS[name] is kps
    assert len(kps) == {"kaggle15": 15, "mtfl5": 5, "nose": 1, "ibug68": 68}[name]


def test_ibug68_flip_pairs_agree_with_kaggle15_flip_on_a_real_face(shared_data):
    fs = load_dataset(YTF_SPEC, keypoints="ibug68")
    p68, w = fs.keypoints[500], 320.0
    # mirroring the 68 points and then deriving the 15 equals deriving first and mirroring the 15
    a = map_keypoints(flip_keypoints(p68, w, IBUG68), IBUG68, KAGGLE15)
    b = flip_keypoints(map_keypoints(p68, IBUG68, KAGGLE15), w, KAGGLE15)
    np.testing.assert_allclose(a, b, atol=1e-9)
    # iBUG 36..41 (the subject's right eye) lie on the image's left of 42..47
    assert p68[36:42, 0].mean() < p68[42:48, 0].mean()


def test_ytf_gives_all_four_sets_from_its_68_points(shared_data):
    sets = {k: load_dataset(YTF_SPEC, keypoints=k) for k in ("kaggle15", "mtfl5", "nose", "ibug68")}
    assert {k: fs.keypoints.shape for k, fs in sets.items()} == {
        "kaggle15": (3531, 15, 2), "mtfl5": (3531, 5, 2), "nose": (3531, 1, 2), "ibug68": (3531, 68, 2)}
    p68 = sets["ibug68"].keypoints
    np.testing.assert_array_equal(sets["nose"].keypoints[:, 0], p68[:, 30])  # nose tip = iBUG 30
    k15 = sets["kaggle15"].keypoints
    for j, name in enumerate(MTFL5.names):
        np.testing.assert_allclose(sets["mtfl5"].keypoints[:, j], k15[:, KAGGLE15.index(name)])
    np.testing.assert_allclose(k15[:, KAGGLE15.index("left_eye_center")], p68[:, 42:48].mean(axis=1))
    # every set keeps the Kaggle-15 box points, so every set gets the same face crops
    for fs in sets.values():
        np.testing.assert_array_equal(fs.box_points, k15)


def test_mtfl_and_kaggle_give_the_sets_they_have(shared_data):
    mtfl5 = load_dataset(MTFL_SPEC, keypoints="mtfl5")
    k15 = load_dataset(MTFL_SPEC)
    assert mtfl5.keypoints.shape == (10000, 5, 2) and np.isfinite(mtfl5.keypoints).all()
    np.testing.assert_array_equal(mtfl5.keypoints, map_keypoints(k15.keypoints, KAGGLE15, MTFL5))
    assert mtfl5.keypoints[0, MTFL5.index("right_eye_center"), 0] == 107.25  # image-left eye = subject's right
    assert mtfl5.attributes[0].tolist() == [0, 0, 0, 2]
    with pytest.raises(DatasetError, match="none of the ibug68"):
        load_dataset(MTFL_SPEC, keypoints="ibug68")
    kag = load_dataset(f"kaggle:{KAGGLE_LABELS}", keypoints="nose")
    assert kag.keypoints.shape[1:] == (1, 2) and np.isfinite(kag.keypoints).all()
    assert len(kag) + len(kag.skipped) == 7049
    with pytest.raises(DatasetError, match="unknown keypoint set"):
        load_dataset(MTFL_SPEC, keypoints="ibug5")


def test_derivable_and_keypoint_set_for():
    assert derivable(MTFL5, IBUG68) == ()
    assert derivable(IBUG68, NOSE) == ("nose_tip",)
    assert len(derivable(IBUG68, KAGGLE15)) == 15
    assert keypoint_set_for("mtfl5", MTFL5.names) is MTFL5
    custom = keypoint_set_for("mtfl5", ("nose_tip", "chin"))
    assert custom.names == ("nose_tip", "chin") and custom is not MTFL5


@pytest.fixture(scope="module")
def prepared_sets(tmp_path_factory, shared_data):
    """60 YouTube-Faces frames prepared as ibug68 and 60 YTF + 60 MTFL faces as nose-only."""
    out = tmp_path_factory.mktemp("sets")
    ibug, nose = out / "ibug68.npz", out / "nose.npz"
    prepare([YTF_SPEC], str(ibug), limit=60, keypoints="ibug68")
    prepare([YTF_SPEC, MTFL_SPEC], str(nose), limit=60, keypoints="nose")
    return ibug, nose


def test_prepare_stores_the_requested_set(prepared_sets):
    ibug, nose = (load_prepared(str(p)) for p in prepared_sets)
    assert ibug.meta["keypoints"] == "ibug68" and ibug.keypoints.shape == (60, 68, 2)
    assert ibug.meta["keypoint_names"][30] == "ibug_30"
    assert nose.meta["keypoints"] == "nose" and nose.keypoints.shape == (120, 1, 2)
    assert np.isfinite(nose.keypoints).all()
    # same faces, same Haar boxes, whatever the set: the nose tip sits where the 68-point file has iBUG 30
    # (faces the detector missed get calibrated boxes, and each file fits its own calibration)
    haar = ibug.detector & nose.detector[:60]
    assert haar.sum() > 50
    np.testing.assert_allclose(nose.keypoints[:60][haar, 0], ibug.keypoints[haar, 30], atol=1e-3)
    np.testing.assert_array_equal(nose.crops[:60][haar], ibug.crops[haar])


@pytest.mark.parametrize("which, k", [(0, 68), (1, 1)])
def test_brief_fit_export_and_evaluate_follow_the_models_own_set(which, k, prepared_sets, cli, tmp_path):
    from engines.export import export_onnx
    from train.evaluate import evaluate

    data = prepared_sets[which]
    r = cli("train", "fit", "--data", data, "--out", tmp_path, "--arch", "mlp", "--epochs", "1", "--batch", "32",
            "--lr", "1e-3")
    assert r.code == 0, r.err
    onnx_path = export_onnx(str(tmp_path / "best.pt"), str(tmp_path / "m.onnx"))
    meta = {p.key: json.loads(p.value) for p in onnx.load(onnx_path).metadata_props}
    expected = IBUG68 if k == 68 else NOSE
    assert meta["keypoint_set"] == expected.name and tuple(meta["keypoint_names"]) == expected.names
    assert [tuple(p) for p in meta["flip_pairs"]] == [tuple(p) for p in expected.flip_pairs]
    backend = load_backend(onnx_path)
    crops = load_prepared(str(data)).crops[:3, 12:108, 12:108].copy()
    assert backend.predict(crops).shape == (3, k, 2)
    m = evaluate(backend, str(data), "prepared")
    assert m["keypoint_set"] == expected.name and m["n_points"] == k * m["n_images"]
    assert len(m["per_keypoint_rmse_px"]) == k and 0 < m["rmse_px"] < 96
    # NME uses the eye centres the 68 points give; a nose alone has none
    assert (m["nme_interocular"] is None) == (k == 1)
    # the other file: a nose-only model is scored on the 68-point faces (nose tip = iBUG 30); a 68-point model
    # cannot be scored on nose-only data
    other = str(prepared_sets[1 - which])
    if k == 1:
        m = evaluate(backend, other, "prepared")
        n_val = int(load_prepared(other).val.sum())
        assert m["keypoint_set"] == "nose" and m["n_points"] == m["n_images"] == n_val > 0
    else:
        with pytest.raises(DatasetError, match="none of the model's ibug68 keypoints"):
            evaluate(backend, other, "prepared")
