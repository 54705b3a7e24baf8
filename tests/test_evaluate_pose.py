"""`fkd-track train evaluate` as a user runs it on real MTFL faces: the packaged model by default, every metric per
head-pose class, detection rate, false detections on face-free regions, and the PNG of the worst faces."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from tests.conftest import SHARED, assert_user_error
from tracker.crop import FaceBox
from train.evaluate import face_free_regions, mean_interval

POSES = ("left profile", "left", "frontal", "right", "right profile")
PER_POSE = 8
REGION_FACES = 3


def test_face_free_regions_avoid_every_labelled_face():
    face = FaceBox(200, 150, 60)  # spans 170..230 x 120..180; grown 1.5x: 155..245 x 105..195
    regions = face_free_regions((300, 400), [face])
    assert regions == [(0, 0, 155, 300), (245, 0, 155, 300), (0, 0, 400, 105), (0, 195, 400, 105)]
    gx, gy, gw, gh = face.scaled(1.5).to_xywh()
    for x, y, w, h in regions:
        assert min(w, h) >= 80
        assert x + w <= gx or x >= gx + gw or y + h <= gy or y >= gy + gh  # no overlap with the grown face
    assert face_free_regions((150, 150), [FaceBox(75, 75, 60)]) == []  # nothing large enough is left
    assert face_free_regions((100, 120), []) == [(0, 0, 120, 100)]


def test_mean_interval_is_a_bootstrap_95_percent_interval_of_the_mean():
    values = np.random.default_rng(1).normal(0.05, 0.02, size=400)
    lo, hi = mean_interval(values)
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))  # the normal-theory interval it should match
    assert lo < values.mean() < hi and abs((hi - lo) / 2 - half) < 0.1 * half
    assert mean_interval(values) == (lo, hi)  # fixed seed: the same data, the same interval
    few = mean_interval(values[:8])
    assert few[1] - few[0] > 4 * (hi - lo)  # eight faces: an interval about sqrt(50) times as wide
    assert mean_interval(np.full(5, 0.07)) == (0.07, 0.07) and mean_interval(np.array([0.1])) == (0.1, 0.1)


def _pose_list(tmp_path) -> str:
    """A small MTFL list (absolute image paths into the shared set): per pose class, the first PER_POSE faces
    of which REGION_FACES have a face-free region large enough to search (most MTFL photos are tight crops)."""
    from tracker.crop import box_from_keypoints
    from tracker.keypoints import KAGGLE15
    from train.datasets import load_dataset

    fs = load_dataset(f"mtfl:{SHARED / 'mtfl' / 'training.txt'}")
    lines = (SHARED / "mtfl" / "training.txt").read_text().splitlines()
    chosen: list[int] = []
    for c in range(5):
        rows = np.flatnonzero(fs.attributes[:, 3] == c)
        roomy = [i for i in rows[::-1][:200]  # the last rows: the larger net_7876 photos
                 if face_free_regions(cv2.imread(fs.images[i]).shape, [box_from_keypoints(fs.box_points[i], KAGGLE15)])]
        chosen += roomy[:REGION_FACES] + [int(i) for i in rows[: PER_POSE - REGION_FACES]]
    out = tmp_path / "list" / "poses.txt"  # its folder counts as the spec's image folder: outputs go beside it
    out.parent.mkdir(exist_ok=True)
    with out.open("w") as f:
        for i in chosen:
            parts = lines[int(fs.rows[i].rsplit(":", 1)[1]) - 1].split()
            parts[0] = str(SHARED / "mtfl" / parts[0].replace("\\", "/"))
            f.write(" " + " ".join(parts) + "\n")
    return f"mtfl:{out}"


def test_evaluate_reports_per_pose_metrics_false_detections_and_the_worst_faces(shared_data, cli, tmp_path):
    spec = _pose_list(tmp_path)
    js, worst = tmp_path / "m.json", tmp_path / "worst.png"
    r = cli("train", "evaluate", "--data", spec, "--crop", "detector", "--json", js, "--worst", worst)
    assert r.code == 0, r.err
    m = json.loads(js.read_text())
    # the packaged model when --model is not given (auto runs its INT8 sibling where that is faster)
    assert Path(m["model"]).name in ("default.onnx", "default.int8.onnx")
    assert set(m["per_pose"]) == set(POSES)
    for name in POSES:
        p = m["per_pose"][name]
        assert p["n_asked"] == PER_POSE
        assert 0.0 <= p["detection_rate"] <= 1.0
        if p["n_images"]:
            assert p["nme_interocular"] > 0 and 0 <= p["failure_rate_nme10"] <= 1
            lo, hi = p["nme_ci95"]
            assert lo <= p["nme_interocular"] <= hi and (p["n_images"] == 1 or lo < hi)
            assert f"{lo:.4f}-{hi:.4f}" in r.out  # the table's interval column
    found = sum(m["per_pose"][n].get("n_images", 0) for n in POSES)
    assert found == m["n_images"] and m["detection_rate"] == found / (5 * PER_POSE)
    fd = m["false_detections"]
    assert fd["regions"] > 0 and fd["boxes_per_100_regions"] == 100 * fd["boxes"] / fd["regions"]
    assert 0 <= fd["verified"] <= fd["boxes"]
    assert m["detector"]["cascades"][0] == "frontal" and m["detector"]["second_look"] is True
    assert m["flip_average"] is True  # as the tracker runs the packaged model by default
    done = r.out.strip().splitlines()[-1]  # the closing line says what produced the numbers
    assert done.startswith(f"done: {m['n_images']} faces") and f"NME {m['nme_interocular']:.2%}" in done
    assert done.endswith("detector crops (second look), flip-averaged"), done
    for name in POSES:  # the table on stdout
        assert name in r.out
    img = cv2.imread(str(worst))
    assert img is not None and img.shape[0] > 300 and img.shape[1] > 600
    assert img.std() > 10  # faces drawn, not a blank canvas

    # landmark crops: every face is cropped, no false-detection count; the model's own points on request
    r = cli("train", "evaluate", "--data", spec, "--json", js, "--no-flip-average")
    assert r.code == 0, r.err
    m = json.loads(js.read_text())
    assert m["detection_rate"] == 1.0 and "false_detections" not in m and m["flip_average"] is False
    assert r.out.strip().splitlines()[-1].endswith("landmark crops, the model's own points")
    assert all(m["per_pose"][n]["n_images"] == PER_POSE for n in POSES)
    nme = np.array([m["per_pose"][n]["nme_interocular"] for n in POSES])
    assert np.isfinite(nme).all()


def test_evaluate_refuses_bad_detector_options_and_writing_onto_its_input(shared_data, cli, tmp_path):
    spec = _pose_list(tmp_path)
    r = cli("train", "evaluate", "--data", spec, "--crop", "detector", "--angles", "120")
    assert_user_error(r, "--angles")
    r = cli("train", "evaluate", "--data", spec, "--crop", "detector", "--cascades", "nope.xml")
    assert_user_error(r, "nope.xml")
    r = cli("train", "evaluate", "--data", spec, "--cascades", "alt")  # landmark crops: no detector to set
    assert_user_error(r, "--cascades and --angles set the detector of --crop detector, not --crop landmarks")
    r = cli("train", "evaluate", "--data", spec, "--json", spec.split(":", 1)[1])
    assert_user_error(r, "--json")
