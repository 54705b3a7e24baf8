"""The face/non-face check's training (train.face_check) on real shared faces: crops collected from both splits, the
one-hidden-layer net fitted, saved and loaded back exactly as the tracker loads its packaged weights."""

from __future__ import annotations

import numpy as np
import pytest

from tracker.face_check import FaceCheck
from train.face_check import collect, fit, scores


@pytest.fixture(scope="module")
def features(shared_data):
    """(training x, y, validation x, y) from 60 images of each shared source per split."""
    x, y = collect(str(shared_data), 60, validation=False)
    xv, yv = collect(str(shared_data), 60, validation=True, seed=1)
    return x, y, xv, yv


def test_collect_gives_faces_and_non_faces_from_both_splits(features):
    x, y, xv, yv = features
    for feats, labels in ((x, y), (xv, yv)):
        assert feats.shape == (len(labels), 900) and np.isfinite(feats).all()
        assert 0.15 < labels.mean() < 0.6  # 2-4 face crops per image against its non-face crops
        assert set(np.unique(labels)) == {0, 1}


@pytest.mark.parametrize("hidden", [0, 32])
def test_fitted_check_tells_held_out_faces_from_non_faces(features, tmp_path, hidden):
    x, y, xv, yv = features
    check = fit(x, y, hidden=hidden, epochs=15)
    got = scores(check, xv, yv)
    assert got["faces_accepted"] >= 0.85 and got["non_faces_accepted"] <= 0.15, got
    path = tmp_path / "check.npz"
    check.save(str(path))
    back = FaceCheck.load(str(path))
    assert len(back.layers) == (2 if hidden else 1)
    np.testing.assert_array_equal(back.logits(xv), check.logits(xv))
    if not hidden:  # the logistic regression files of earlier releases (weights, bias) load as one layer
        (w, b), = check.layers
        np.savez(tmp_path / "old.npz", mean=check.mean, scale=check.scale, weights=w[:, 0], bias=np.float32(b[0]))
        np.testing.assert_allclose(FaceCheck.load(str(tmp_path / "old.npz")).logits(xv), check.logits(xv),
                                   rtol=1e-6)


def test_fit_is_deterministic_for_a_seed(features):
    x, y, _, _ = features
    a, b = fit(x, y, hidden=16, epochs=2, seed=3), fit(x, y, hidden=16, epochs=2, seed=3)
    for (wa, ba), (wb, bb) in zip(a.layers, b.layers, strict=True):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ba, bb)
    c = fit(x, y, hidden=16, epochs=2, seed=4)
    assert not np.array_equal(a.layers[0][0], c.layers[0][0])
