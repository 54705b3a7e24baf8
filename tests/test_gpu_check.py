"""`make gpu-check`'s script on a CPU with a tiny budget: a synthetic prepared set that loads, and a summary
that lists every part it could not run here with the reason (the full CPU run takes minutes: see README)."""

from __future__ import annotations

import json

import numpy as np

from train.gpu_check import main, synthetic_prepared
from train.prepare import load_prepared


def test_synthetic_prepared_set_loads(tmp_path):
    path = tmp_path / "s.npz"
    meta = synthetic_prepared(str(path), 40)
    p = load_prepared(str(path))
    assert meta["n_faces"] == 40 and p.crops.shape == (40, 120, 120) and p.keypoints.shape == (40, 15, 2)
    assert np.isnan(p.keypoints).any() and np.isfinite(p.keypoints).any()
    assert p.crops.std() > 10  # not a blank image


def test_gpu_check_reports_its_skips(tmp_path):
    code = main(["--out", str(tmp_path), "--faces", "40", "--budget", "1"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert code == 0 and not summary["failed"], summary["failed"]
    assert "environment" in summary["parts"] and summary["parts"]["data"]["synthetic"] == 40
    for part in ("training", "host_syncs", "fp16_vs_fp32", "torch_bench", "tensorrt", "cuda_tests"):
        assert part in summary["skipped"] and summary["skipped"][part], part
    log = (tmp_path / "gpu_check.log").read_text()
    assert "skipped" in log and "done in" in log
