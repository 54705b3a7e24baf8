"""The dataset spec parser on every row of the real shared files, and on broken copies of them."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.conftest import KAGGLE_LABELS, MTFL_SPEC, SHARED, YTF_SPEC
from tracker.keypoints import KAGGLE15
from train.datasets import DatasetError, is_validation, load_dataset

LE, RE = KAGGLE15.index("left_eye_center"), KAGGLE15.index("right_eye_center")
ML, MR = KAGGLE15.index("mouth_left_corner"), KAGGLE15.index("mouth_right_corner")


def test_ytf_every_row_with_all_15_keypoints(shared_data):
    fs = load_dataset(YTF_SPEC)
    assert len(fs) == 3531
    assert np.isfinite(fs.keypoints).all()
    # subject's left = image right, for eyes and mouth corners, on nearly every frame
    assert (fs.keypoints[:, LE, 0] > fs.keypoints[:, RE, 0]).mean() > 0.97
    assert (fs.keypoints[:, ML, 0] > fs.keypoints[:, MR, 0]).mean() > 0.97
    # the left eye centre is the mean of iBUG points 42..47: first row, computed by hand from the CSV
    import csv

    with open(YTF_SPEC.split(":", 1)[1]) as f:
        row = list(csv.reader(f))[1]
    xs = [float(row[1 + 2 * i]) for i in range(42, 48)]
    assert fs.keypoints[0, LE, 0] == pytest.approx(np.mean(xs))
    assert fs.images[0].endswith("training/Luis_Fonsi_21.jpg")
    assert fs.groups[0] == "ytf/Luis_Fonsi"


def test_mtfl_every_row_with_its_five_points_and_attributes(shared_data):
    fs = load_dataset(MTFL_SPEC)
    assert len(fs) == 10000
    labelled = np.isfinite(fs.keypoints).all(axis=2)
    assert (labelled.sum(axis=1) == 5).all()
    assert set(np.flatnonzero(labelled[0])) == {LE, RE, KAGGLE15.index("nose_tip"), ML, MR}
    # first line: image-left eye x = 107.25 is the subject's RIGHT eye
    assert fs.keypoints[0, RE, 0] == 107.25 and fs.keypoints[0, LE, 0] == 147.75
    assert fs.keypoints[0, MR, 0] == 106.25 and fs.keypoints[0, ML, 0] == 140.75
    assert fs.keypoints[0, LE, 1] == 113.25 and fs.keypoints[0, MR, 1] == 158.75
    assert (fs.keypoints[:, LE, 0] > fs.keypoints[:, RE, 0]).mean() > 0.97
    # Aaron_Eckhart: male, not smiling, no glasses, frontal -> 0, 0, 0, pose index 2
    assert fs.attributes[0].tolist() == [0, 0, 0, 2]
    assert set(np.unique(fs.attributes[:, 3])) <= {0, 1, 2, 3, 4}
    assert fs.images[6000].replace("\\", "/").split("/")[-2] == "net_7876"


def test_kaggle_label_table(shared_data):
    fs = load_dataset(f"kaggle:{KAGGLE_LABELS}")
    assert len(fs) == 7049
    assert np.isfinite(fs.keypoints).all(axis=(1, 2)).sum() == 2140
    assert fs.keypoints[0, LE, 0] == pytest.approx(66.0335639098)
    assert fs.keypoints[0, RE, 0] == pytest.approx(30.2270075188)
    assert not fs.has_images


def test_kaggle_training_format_with_images(tmp_path, shared_data):
    rng = np.random.default_rng(0)
    header = open(KAGGLE_LABELS).readline().strip()
    rows = open(KAGGLE_LABELS).read().splitlines()[1:4]
    with open(tmp_path / "training.csv", "w") as f:
        f.write(header + ",Image\n")
        for r in rows:
            f.write(r + "," + " ".join(str(v) for v in rng.integers(0, 256, 9216)) + "\n")
    fs = load_dataset(f"kaggle:{tmp_path / 'training.csv'}")
    assert len(fs) == 3 and fs.precropped and fs.load_image(0).shape == (96, 96)


def _copy_with_line(src: str, dst, lineno: int, text: str) -> str:
    lines = open(src).read().splitlines(keepends=True)
    lines[lineno - 1] = text
    with open(dst, "w") as f:
        f.writelines(lines)
    return str(dst)


def test_malformed_rows_name_file_and_line_or_are_skipped(tmp_path, shared_data):
    src = MTFL_SPEC.split(":", 1)[1]
    bad = _copy_with_line(src, tmp_path / "training.txt", 3, r" lfw_5590\x.jpg 1 2 3" + "\n")
    with pytest.raises(DatasetError, match=r"training.txt:3: expected 15 fields"):
        load_dataset(f"mtfl:{bad}")
    fs = load_dataset(f"mtfl:{bad}", skip_bad=True)
    assert len(fs) == 9999 and len(fs.skipped) == 1


def test_nan_only_and_non_numeric_rows(tmp_path, shared_data):
    src = YTF_SPEC.split(":", 1)[1]
    nan_row = "x.jpg," + ",".join(["nan"] * 136) + "\n"
    bad = _copy_with_line(src, tmp_path / "training_frames_keypoints.csv", 5, nan_row)
    (tmp_path / "training").mkdir()
    with pytest.raises(DatasetError, match=r":5: no keypoint labelled"):
        load_dataset(f"ytf:{bad}")
    bad = _copy_with_line(src, tmp_path / "training_frames_keypoints.csv", 7, "x.jpg," + ",".join(["abc"] * 136) + "\n")
    with pytest.raises(DatasetError, match=r":7: non-numeric"):
        load_dataset(f"ytf:{bad}")


def test_missing_files_and_bad_specs(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(f"ytf:{tmp_path / 'nope_frames_keypoints.csv'}")
    with pytest.raises(DatasetError, match="FORMAT:PATH"):
        load_dataset("celeba:/x.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(f"kaggle:{tmp_path / 'empty.csv'}")


def test_undecodable_image_is_reported(tmp_path, shared_data):
    src = YTF_SPEC.split(":", 1)[1]
    lines = open(src).read().splitlines(keepends=True)[:3]
    (tmp_path / "training").mkdir()
    for line in lines[1:]:
        name = line.split(",", 1)[0]
        (tmp_path / "training" / name).write_bytes(b"not a jpeg")
    (tmp_path / "training_frames_keypoints.csv").write_text("".join(lines))
    fs = load_dataset(f"ytf:{tmp_path / 'training_frames_keypoints.csv'}")
    with pytest.raises(DatasetError, match="cannot be decoded"):
        fs.load_image(0)


def test_split_is_deterministic_and_by_identity(shared_data):
    fs = load_dataset(YTF_SPEC)
    val = np.array([is_validation(g) for g in fs.groups])
    assert 0.03 < val.mean() < 0.25
    for g in set(fs.groups):
        flags = {v for v, gg in zip(val, fs.groups, strict=True) if gg == g}
        assert len(flags) == 1


def test_infinite_coordinates_are_malformed_like_text(tmp_path, shared_data):
    src = MTFL_SPEC.split(":", 1)[1]
    line = open(src).readline().split()
    line[3] = "inf"
    bad = _copy_with_line(src, tmp_path / "training.txt", 2, " " + " ".join(line) + "\n")
    with pytest.raises(DatasetError, match=r"training.txt:2: infinite coordinate"):
        load_dataset(f"mtfl:{bad}")
    assert len(load_dataset(f"mtfl:{bad}", skip_bad=True)) == 9999


def test_labels_without_images_refuse_to_load_an_image(shared_data):
    fs = load_dataset(f"kaggle:{KAGGLE_LABELS}")
    assert not fs.has_images
    with pytest.raises(DatasetError, match="labels but no images"):
        fs.load_image(0)


def test_spec_inputs_name_the_label_file_and_the_image_folder(shared_data):
    from train.datasets import spec_inputs

    ytf = YTF_SPEC.split(":", 1)[1]
    assert spec_inputs(YTF_SPEC) == [ytf, ytf[: -len("_frames_keypoints.csv")]]
    mtfl = MTFL_SPEC.split(":", 1)[1]
    assert spec_inputs(MTFL_SPEC) == [mtfl, os.path.abspath(SHARED / "mtfl")]
    assert spec_inputs(f"kaggle:{KAGGLE_LABELS}") == [str(KAGGLE_LABELS)]
    assert spec_inputs("celeba:/x.csv") == [] and spec_inputs("no-colon") == []


def _points_csv(folder, fs, rows, rng, blank: float = 0.4, extra: str = "") -> tuple[str, np.ndarray]:
    """Your-own-faces file from real shared faces: image paths relative to it, a subject column, the 15
    Kaggle points by name with a share of them blanked (a partly labelled set). Returns (spec, the points)."""
    import csv

    names = [f"{n}_{a}" for n in KAGGLE15.names for a in "xy"]
    points = fs.keypoints[rows].copy()
    points[rng.random(points.shape[:2]) < blank] = np.nan
    path = folder / "mine.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "subject", *names, *([extra] if extra else [])])
        for i, p in zip(rows, points, strict=True):
            w.writerow([os.path.relpath(fs.images[i], folder), fs.groups[i],
                        *("" if np.isnan(v) else f"{v:.3f}" for v in p.reshape(-1)), *(["1"] if extra else [])])
    return f"points:{path}", points


def test_points_format_reads_your_own_partly_labelled_faces(tmp_path, shared_data, cli):
    ytf = load_dataset(YTF_SPEC)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(ytf), 30, replace=False)
    spec, points = _points_csv(tmp_path, ytf, rows, rng)
    fs = load_dataset(spec)
    assert len(fs) == 30 and fs.kps.names == KAGGLE15.names
    np.testing.assert_allclose(fs.keypoints, points, atol=1e-3)  # blanks stay NaN, the rest as written
    assert np.isnan(fs.keypoints).any() and fs.groups == [f"points/{ytf.groups[i]}" for i in rows]
    assert fs.load_image(0).shape == ytf.load_image(int(rows[0])).shape
    out = tmp_path / "faces.npz"
    r = cli("train", "prepare", "--data", spec, "--out", out)
    assert r.code == 0, r.err
    assert "30 faces" in r.out + r.err


def test_points_format_names_a_wrong_column(tmp_path, shared_data):
    ytf = load_dataset(YTF_SPEC)
    rng = np.random.default_rng(1)
    spec, _ = _points_csv(tmp_path, ytf, np.arange(3), rng, extra="left_eye_centre_x")
    with pytest.raises(DatasetError, match="unknown keypoint 'left_eye_centre'"):
        load_dataset(spec)
    (tmp_path / "no_image.csv").write_text("picture,nose_tip_x,nose_tip_y\na.jpg,1,2\n")
    with pytest.raises(DatasetError, match="needs an `image` column"):
        load_dataset(f"points:{tmp_path / 'no_image.csv'}")
    (tmp_path / "half.csv").write_text("image,nose_tip_x\na.jpg,1\n")
    with pytest.raises(DatasetError, match="nose_tip needs both nose_tip_x and nose_tip_y"):
        load_dataset(f"points:{tmp_path / 'half.csv'}")
    (tmp_path / "twice.csv").write_text("image,nose_tip_x,nose_tip_y,nose_tip_x\na.jpg,1,2,3\n")
    with pytest.raises(DatasetError, match="column 'nose_tip_x' appears twice"):
        load_dataset(f"points:{tmp_path / 'twice.csv'}")


def test_points_format_takes_a_spreadsheets_byte_order_mark(tmp_path, shared_data, cli):
    """Excel's "CSV UTF-8" starts the file with a byte-order mark; the `image` column is still found."""
    ytf = load_dataset(YTF_SPEC)
    spec, points = _points_csv(tmp_path, ytf, np.arange(4), np.random.default_rng(2))
    path = tmp_path / "mine.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    np.testing.assert_allclose(load_dataset(spec).keypoints, points, atol=1e-3)
    r = cli("train", "evaluate", "--data", spec)  # through the installed CLI too
    assert r.code == 0, r.err
