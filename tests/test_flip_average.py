"""--flip-average: each face and its mirror image in one engine call, the mirror's points swapped back and averaged;
on real shared faces and through the installed `fkd-track`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engines.backend import ModelError, ModelInfo
from engines.errors import UserError
from engines.select import load_backend
from tests.conftest import YTF_SPEC, assert_user_error, run_cli
from tracker.bench import crops_from_video
from tracker.flip_average import FlipAveraged, flip_averaged, flip_averaged_stages
from tracker.keypoints import KAGGLE15, flip_keypoints


@pytest.fixture(scope="module")
def crops(video_path) -> np.ndarray:
    return crops_from_video(video_path, max_faces=12)


def test_the_averaged_points_of_a_mirrored_face_are_the_mirrored_points(model_path, crops):
    """Mirror equivariance: the face's mirror image gives exactly the face's averaged points, mirrored and swapped
    back (a wrong swap or a wrong x mapping breaks it), and averaging moves points by less than a pixel or two."""
    backend = load_backend(model_path, "onnxruntime")
    flip = FlipAveraged(backend)
    points = flip.predict(crops)
    of_mirror = flip.predict(np.ascontiguousarray(crops[:, :, ::-1]))
    assert points.shape == (len(crops), 15, 2) and points.dtype == np.float32
    np.testing.assert_allclose(flip_keypoints(of_mirror, 96, KAGGLE15), points, atol=1e-3)
    moved = np.linalg.norm(points - backend.predict(crops), axis=-1)
    assert 0.05 < moved.mean() < 2.0, moved.mean()
    assert flip.predict(crops[:0]).shape == (0, 15, 2)
    np.testing.assert_allclose(flip.predict_all(crops)["keypoints"], points, atol=1e-5)
    own, averaged = flip.predict_both(crops)  # what the tracker decides on, and what it writes
    np.testing.assert_allclose(own, backend.predict(crops), atol=1e-4)
    np.testing.assert_allclose(averaged, points, atol=1e-6)


class Described:
    """A backend that only describes its model (refused before any prediction)."""

    name = "fake"

    def __init__(self, names, pairs=(), keypoint_set="model"):
        self.info = ModelInfo("m.onnx", tuple(names), flip_pairs=tuple(pairs), extra={"keypoint_set": keypoint_set})

    def predict(self, crops):  # pragma: no cover - never reached
        raise AssertionError


def test_by_default_a_model_that_cannot_be_mirrored_runs_as_it_is():
    """The default (neither flag) averages where the model names its pairs and runs a model without them as it is;
    --flip-average refuses that model, --no-flip-average never wraps; a broken pair list is an error unless off."""
    unpaired, broken = Described(["a", "b", "c"]), Described(["a", "b"], [("a", "z")])
    assert flip_averaged(unpaired, None) is unpaired and flip_averaged(unpaired, False) is unpaired
    with pytest.raises(UserError, match="names no left/right flip pairs"):
        flip_averaged(unpaired, True)
    assert isinstance(flip_averaged(Described(KAGGLE15.names, (), "kaggle15"), None), FlipAveraged)
    with pytest.raises(ModelError, match="--no-flip-average runs it without"):
        flip_averaged(broken, None)
    assert flip_averaged(broken, False) is broken and flip_averaged(None, True) is None
    # --refine: both stages average or neither; by default neither when one cannot be mirrored
    paired = Described(KAGGLE15.names, (), "kaggle15")
    assert flip_averaged_stages(paired, unpaired, None) == (paired, unpaired)
    engine, stage2 = flip_averaged_stages(paired, paired, None)
    assert isinstance(engine, FlipAveraged) and isinstance(stage2, FlipAveraged)
    with pytest.raises(UserError, match="names no left/right flip pairs"):
        flip_averaged_stages(paired, unpaired, True)


def test_a_model_whose_points_cannot_be_swapped_back_is_refused():
    with pytest.raises(UserError, match="names no left/right flip pairs"):
        FlipAveraged(Described(["a", "b", "c"]))
    with pytest.raises(ModelError, match="flip pairs name points it does not predict"):
        FlipAveraged(Described(["a", "b"], [("a", "z")]))
    assert FlipAveraged(Described(["nose"])).kps.flip_pairs == ()  # one point: its own mirror
    assert FlipAveraged(Described(KAGGLE15.names, (), "kaggle15")).kps == KAGGLE15  # a known set's own pairs


def test_flip_averaging_places_the_validation_faces_better(model_path):
    """On the YouTube-Faces validation split (real labelled faces never trained on), landmark crops."""
    from train.evaluate import evaluate

    spec = YTF_SPEC
    backend = load_backend(model_path, "onnxruntime")
    plain = evaluate(backend, spec, "landmarks", split="validation")
    flip = evaluate(FlipAveraged(backend), spec, "landmarks", split="validation")
    assert plain["n_images"] == flip["n_images"] > 300
    assert flip["flip_average"] and not plain["flip_average"]
    assert flip["nme_interocular"] < plain["nme_interocular"], (flip["nme_interocular"], plain["nme_interocular"])


def test_video_and_bench_with_flip_average(video_path, tmp_path):
    """`video` (flip averaging by default, as `--flip-average`) writes the averaged points but decides (who is a
    face, confidence, next crop) on the crops' own, so only the coordinates differ from `--no-flip-average`;
    `bench` times it end to end, by default too."""
    plain, flip, default = tmp_path / "plain.csv", tmp_path / "flip.csv", tmp_path / "default.csv"
    assert run_cli("video", video_path, "--csv", plain, "--headless", "--no-flip-average").code == 0
    res = run_cli("video", video_path, "--csv", flip, "--headless", "--flip-average")
    assert res.code == 0, res.err
    assert run_cli("video", video_path, "--csv", default, "--headless").code == 0
    assert default.read_bytes() == flip.read_bytes()
    a, b = pd.read_csv(plain), pd.read_csv(flip)
    # the tracker decides on the crops' own points: the same rows, ids, success and confidence; only the points move
    assert len(a) == len(b) == 202
    for column in ("frame", "face_id", "success", "confidence"):
        assert a[column].equals(b[column]), column
    cols = [c for c in a.columns if c.endswith(("_x", "_y")) and not c.startswith("box")]
    moved = (a[cols] - b[cols]).abs().to_numpy()
    assert a["success"].sum() > 190 and 0.05 < np.nanmean(moved) < 3.0, np.nanmean(moved)
    res = run_cli("bench", "--flip-average", "--batch", "1", "--seconds", "0.1")
    assert_user_error(res, "--flip-average is timed end to end", "--video")
    out = tmp_path / "bench.json"
    res = run_cli("bench", "--video", video_path, "--flip-average", "--batch", "1", "--seconds", "0.1", "--passes", "1",
                  "--json", out)
    assert res.code == 0, res.err
    assert "flip-averaged" in res.out and json.loads(out.read_text())["end_to_end"]["flip_average"] is True
    res = run_cli("bench", "--video", video_path, "--no-flip-average", "--batch", "1", "--seconds", "0.1",
                  "--passes", "1", "--json", out)
    assert res.code == 0, res.err
    assert "flip-averaged" not in res.out and json.loads(out.read_text())["end_to_end"]["flip_average"] is False


def test_batch_records_flip_average(video_path, tmp_path):
    """batch.json records what the default resolved to (on, for the packaged model), and a changed flag is
    refused."""
    out_dir = tmp_path / "out"
    assert run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1").code == 0
    assert json.loads((out_dir / "batch.json").read_text())["flip_average"] is True
    res = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1", "--flip-average")
    assert res.code == 0 and "0 done, 1 skipped" in res.err, res.err
    res = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1", "--no-flip-average")
    assert_user_error(res, "other settings (flip_average true -> false)", "--redo")


def test_an_older_batch_folder_without_the_setting_counts_as_plain(video_path, tmp_path):
    """A batch.json from before --flip-average existed names no flip_average: its tables are plain ones, so it
    resumes with --no-flip-average and is refused with the default (now on)."""
    out_dir = tmp_path / "old"
    assert run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1", "--no-flip-average").code == 0
    record = json.loads((out_dir / "batch.json").read_text())
    del record["flip_average"]
    (out_dir / "batch.json").write_text(json.dumps(record))
    res = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1")
    assert_user_error(res, "other settings (flip_average false -> true)", "--redo")
    res = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1", "--no-flip-average")
    assert res.code == 0 and "0 done, 1 skipped" in res.err, res.err
    # a record from before searches looked past the tracked faces: other rows, so --redo
    del record["track.mask_tracked"]
    (out_dir / "batch.json").write_text(json.dumps(record))
    res = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1", "--no-flip-average")
    assert_user_error(res, "other settings (track.mask_tracked false -> true)", "--redo")
    # a record from before the second look (no tracker revision): other rows for any setting, so --redo
    record["track.mask_tracked"] = True
    del record["tracker revision"]
    (out_dir / "batch.json").write_text(json.dumps(record))
    res = run_cli("batch", video_path, "--out-dir", out_dir, "--jobs", "1", "--no-flip-average")
    assert_user_error(res, "other settings (tracker revision 1 -> 2)", "--redo")
