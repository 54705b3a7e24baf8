"""The tracker with the issue-7 models: `--attributes` (a multi-task model's heads on the overlay and in the CSV)
and `--refine` (a cascade second stage, timed as its own stage), on models trained briefly on real faces."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engines.model_meta import attribute_classes, attribute_labels
from engines.select import load_backend
from tests.conftest import MTFL_SPEC, YTF_SPEC
from tracker.cascade import refine_points
from tracker.config import DEFAULT_TRACK, SmoothParams
from tracker.crop import crop_face, from_crop, to_gray
from tracker.csv_out import BASE_COLUMNS, attribute_columns, csv_header
from tracker.haar import HaarDetector
from tracker.keypoints import KAGGLE15
from tracker.overlay import attribute_text
from tracker.pipeline import Pipeline
from tracker.results import STAGES, stage_names
from tracker.sources import VideoSource

HEADS = ("gender", "smile", "glasses", "pose")


@pytest.fixture(scope="module")
def models(tmp_path_factory, shared_data) -> dict[str, str]:
    """150 real faces (75 YouTube-Faces, 75 MTFL with attributes): a 3-epoch multi-task MLP exported to ONNX,
    and a 3-epoch second stage trained on the faces re-cropped around that model's points."""
    from engines.export import export_onnx
    from train.fit import FitConfig, fit
    from train.prepare import prepare
    from train.refine import prepare_stage2

    root = tmp_path_factory.mktemp("issue7")
    data = str(root / "faces.npz")
    prepare([YTF_SPEC, MTFL_SPEC], data, limit=75)
    quiet = {"arch": "mlp", "epochs": 3, "batch": 32, "lr": 1e-3, "device": "cpu"}
    fit(FitConfig(data, str(root / "mt"), attr_weights=dict.fromkeys(HEADS, 0.2), **quiet), log=lambda _: None)
    multitask = export_onnx(str(root / "mt" / "best.pt"), str(root / "mt.onnx"))
    prepare_stage2(data, load_backend(multitask, "onnxruntime"), str(root / "s2.npz"), zoom=1.2)
    fit(FitConfig(str(root / "s2.npz"), str(root / "s2"), **quiet), log=lambda _: None)
    stage2 = export_onnx(str(root / "s2" / "best.pt"), str(root / "stage2.onnx"))
    return {"multitask": multitask, "stage2": stage2}


@pytest.fixture(scope="module")
def runs(models, cli, video_path, tmp_path_factory) -> dict[str, tuple]:
    """`fkd-track video` on the real clip with the multi-task model, with --attributes (and an annotated
    video, so the labels are drawn), then with --attributes --refine: {name: (result, table)}."""
    out = tmp_path_factory.mktemp("issue7_runs")
    base = ["video", video_path, "--headless", "--no-smooth", "--model", models["multitask"], "--attributes"]
    results = {}
    for name, extra in (("attributes", ["--out", out / "a.mp4"]), ("refined", ["--refine", models["stage2"]])):
        csv = out / f"{name}.csv"
        r = cli(*base, "--csv", csv, *extra)
        assert r.code == 0, r.err
        results[name] = (r, csv)
    return results


def read_table(path) -> tuple[list[str], pd.DataFrame]:
    with open(path) as f:
        header = f.readline().rstrip("\n").split(",")
    return header, pd.read_csv(path, dtype={"face_id": "Int64"}, keep_default_na=False, na_values=[""])


def test_attribute_columns_follow_the_model_heads(models, runs):
    classes = attribute_classes(load_backend(models["multitask"]).info)
    assert tuple(classes) == HEADS and classes["pose"][2] == "frontal"
    header, table = read_table(runs["attributes"][1])
    extra = ["gender", "gender_p", "smile", "smile_p", "glasses", "glasses_p", "pose", "pose_p"]
    assert header == [*BASE_COLUMNS, *KAGGLE15.columns, *extra] == csv_header(KAGGLE15.columns, HEADS)
    assert attribute_columns(["pose"]) == ["pose", "pose_p"] and csv_header(KAGGLE15.columns)[-1].endswith("_y")
    faces = table[table["face_id"].notna()]
    assert len(faces) >= 190 and sorted(table["frame"].unique()) == list(range(202))
    for head, names in classes.items():
        assert faces[head].isin(names).all()
        # the most probable of n classes has at least 1/n of the probability
        assert faces[f"{head}_p"].between(1.0 / len(names) - 1e-3, 1.0).all()
    faceless = table[table["face_id"].isna()]
    assert faceless[extra].isna().all().all()
    assert "wrote" in runs["attributes"][0].err and "refine:" not in runs["attributes"][0].err


def test_refine_moves_the_points_and_keeps_the_rows(runs):
    (_, plain), (r, refined) = runs["attributes"], runs["refined"]
    header_a, a = read_table(plain)
    header_b, b = read_table(refined)
    assert header_a == header_b and len(a) == len(b)
    assert (a["frame"].to_numpy() == b["frame"].to_numpy()).all()
    both = a["face_id"].notna() & b["face_id"].notna()
    assert both.sum() >= 190
    coords = list(KAGGLE15.columns)
    moved = np.abs(a.loc[both, coords].to_numpy() - b.loc[both, coords].to_numpy())
    assert np.nanmedian(moved) > 0.05  # the second stage's points, not the first's
    assert np.isfinite(b.loc[both, coords].to_numpy()).all()
    line = next(x for x in r.err.splitlines() if x.startswith("refine:"))
    assert float(line.split()[1]) > 0 and "ms per face over" in line


def test_pipeline_labels_and_refined_points_belong_to_their_own_crop(models, video_path):
    """In process: each face's labels are the heads' output on that face's crop, and its raw points are the
    second stage run on the first stage's points from that crop."""
    stage1, stage2 = load_backend(models["multitask"]), load_backend(models["stage2"])
    classes = attribute_classes(stage1.info)
    pipe = Pipeline(HaarDetector(), stage1, DEFAULT_TRACK, SmoothParams(enabled=False), attributes=True,
                    refine=stage2)
    checked = 0
    with VideoSource(video_path) as src:
        for frame in src:
            result = pipe.process(frame)
            assert result.timings_ms["refine"] > 0 and result.crops >= len(result.faces)
            gray = to_gray(frame.image)
            for face in result.faces:
                crop, m = crop_face(gray, face.crop_box)
                outputs = stage1.predict_all(crop[None])
                (labels,) = attribute_labels(outputs, classes)
                assert face.attributes.keys() == labels.keys()
                for head, (name, p) in labels.items():
                    assert face.attributes[head][0] == name and face.attributes[head][1] == pytest.approx(p, abs=1e-4)
                first = from_crop(outputs["keypoints"][0].astype(np.float64), m)
                expect = refine_points(stage2, gray, first[None], [face.crop_box])[0]
                np.testing.assert_allclose(face.raw_points, expect, atol=0.05)
                checked += 1
            if frame.index == 8:
                break
    assert checked >= 8
    assert stage_names(result.timings_ms) == (*STAGES[:4], "refine", *STAGES[4:])


def test_attributes_without_heads_is_one_line(cli, model_path, video_path, tmp_path):
    csv = tmp_path / "x.csv"
    r = cli("video", video_path, "--headless", "--attributes", "--model", model_path, "--csv", csv)
    assert r.code == 2 and "Traceback" not in r.err
    assert r.err.strip().splitlines() == [r.err.strip()] and "has no attribute heads" in r.err


def test_a_model_that_is_not_a_second_stage_is_one_line(cli, models, video_path, tmp_path):
    r = cli("video", video_path, "--headless", "--model", models["multitask"], "--refine", models["multitask"])
    assert r.code == 2 and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    assert "not a cascade second stage" in r.err
    r = cli("video", video_path, "--headless", "--model", models["multitask"], "--refine", tmp_path / "none.onnx")
    assert r.code == 2 and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1


def test_bench_times_the_second_stage_as_its_own_stage(cli, models, all_video_paths, tmp_path):
    path = min(all_video_paths, key=lambda p: VideoSource(p).frame_count)
    report = tmp_path / "bench.json"
    r = cli("bench", "--video", path, "--batch", "1", "--seconds", "0.1", "--passes", "1", "--json", report,
            "--model", models["multitask"], "--refine", models["stage2"])
    assert r.code == 0, r.err
    head = next(line for line in r.out.splitlines() if line.startswith("mode"))
    assert head.split()[5:] == list(stage_names(["refine"]))
    runs = json.loads(report.read_text())["end_to_end"]["runs"]
    for run in runs:
        assert list(run["stage_ms"]) == list(stage_names(["refine"])) and run["stage_ms"]["refine"] > 0
        assert run["ms_per_face"]["refine"] > 0 and run["ms_per_face"]["infer"] > 0
    assert "ms per face, tracking: infer" in r.out
    r = cli("bench", "--refine", models["stage2"], "--model", models["multitask"])
    assert r.code == 2 and "--video" in r.err


def test_attribute_text_reads_yes_no_heads_by_name():
    text = attribute_text({"gender": ("female", 0.934), "smile": ("yes", 0.5), "glasses": ("no", 1.0),
                           "pose": ("left profile", 0.71)})
    assert text == "female .93  smile .50  no glasses 1  left profile .71"
