"""`fkd-track train face-check`: each bad input refused before any work (one `error:` line, nothing written), and a
small real run on the shared faces whose weights the tracker's FaceCheck loads and scores crops with."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_user_error

YTF_LABELS = "ytf/training_frames_keypoints.csv"
MTFL_LABELS = "mtfl/training.txt"
QUICK = ("--per-source", "1", "--epochs", "1", "--hidden", "0")  # a refusal that is missed fails fast


def fake_root(folder, *labels: str):
    """A data root holding (text) label files at `labels`, each path relative to the root."""
    for name in labels:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("not read: every refusal comes first\n")
    return folder


def tree(folder) -> dict[str, str]:
    """Every path under `folder` and what it is (a link's target), to show that a refused run left all as it was."""
    return {str(p.relative_to(folder)): str(p.readlink()) if p.is_symlink() else "dir" if p.is_dir()
            else p.read_text() for p in sorted(folder.rglob("*"))}


def refused(cli, tmp_path, out, *args: str, env: dict | None = None, words: tuple[str, ...] = ()) -> None:
    """`fkd-track train face-check --out OUT ARGS` follows the error contract and changes nothing under tmp_path."""
    before = tree(tmp_path)
    r = cli("train", "face-check", "--out", out, *QUICK, *args, env=env, timeout=120)
    assert_user_error(r, *words)
    assert r.out == "", r.out
    assert tree(tmp_path) == before


@pytest.fixture
def root(tmp_path):
    return fake_root(tmp_path / "data", YTF_LABELS, MTFL_LABELS)


def test_a_missing_data_root_is_refused(cli, tmp_path):
    out = tmp_path / "out" / "check.npz"
    refused(cli, tmp_path, out, "--data-root", tmp_path / "nowhere", words=("--data-root", "nowhere", "no such folder"))
    (tmp_path / "file").write_text("x")
    refused(cli, tmp_path, out, "--data-root", tmp_path / "file", words=("--data-root", "not a folder"))


def test_a_missing_default_data_root_names_the_variable(cli, tmp_path):
    refused(cli, tmp_path, tmp_path / "check.npz", env={"FKD_SHARED_DATA": str(tmp_path / "gone")},
            words=("--data-root", "gone", "no such folder", "FKD_SHARED_DATA"))


@pytest.mark.parametrize(("present", "lacking"), [((MTFL_LABELS,), (YTF_LABELS,)), ((YTF_LABELS,), (MTFL_LABELS,)),
                                                 ((), (YTF_LABELS, MTFL_LABELS))])
def test_a_data_root_without_a_source_names_the_missing_file(cli, tmp_path, present, lacking):
    data = fake_root(tmp_path / "data", *present)
    data.mkdir(exist_ok=True)
    refused(cli, tmp_path, tmp_path / "check.npz", "--data-root", data, words=("--data-root", "has no", *lacking))


@pytest.mark.parametrize("name", ["check", "check.NPZ", "check.npz.tmp", "check.onnx"])
def test_an_out_without_the_npz_suffix_is_refused(cli, tmp_path, root, name):
    refused(cli, tmp_path, tmp_path / name, "--data-root", root, words=("--out", name, "must end in .npz"))


def test_an_out_that_is_a_folder_is_refused(cli, tmp_path, root):
    folder = tmp_path / "weights.npz"
    folder.mkdir()
    (folder / "keep").write_text("kept")
    refused(cli, tmp_path, folder, "--data-root", root, words=("--out", "is a folder"))


def test_an_out_that_is_an_input_is_refused(cli, tmp_path, root):
    link = tmp_path / "labels.npz"  # a link to a label file: writing it would replace that file
    link.symlink_to(root / YTF_LABELS)
    refused(cli, tmp_path, link, "--data-root", root, words=("--out", "is an input"))
    refused(cli, tmp_path, root / "ytf" / "check.npz", "--data-root", root,
            words=("--out", "inside the input folder"))


@pytest.mark.parametrize(("option", "value"), [("--per-source", "0"), ("--hidden", "-1"), ("--epochs", "0")])
def test_out_of_range_numbers_are_usage_errors(cli, tmp_path, root, option, value):
    before = tree(tmp_path)
    r = cli("train", "face-check", "--data-root", root, "--out", tmp_path / "check.npz", option, value)
    assert_user_error(r, f"'{option}'", "greater than or equal to")
    assert tree(tmp_path) == before


def test_out_is_required(cli, tmp_path, root):
    r = cli("train", "face-check", "--data-root", root, *QUICK)
    assert_user_error(r, "missing option", "--out")


def test_a_small_run_writes_weights_the_tracker_loads(cli, tmp_path, shared_data, haar_detection, ytf_faces):
    from tracker.crop import CROP_SIZE, box_from_keypoints, crop_face
    from tracker.face_check import FaceCheck
    from tracker.keypoints import KAGGLE15

    out = tmp_path / "new" / "check.npz"  # its folder is made
    r = cli("train", "face-check", "--data-root", shared_data, "--out", out, "--per-source", "25", "--epochs", "2",
            "--hidden", "16", timeout=300)
    assert r.code == 0, r.err
    assert "Traceback" not in r.err and "error:" not in r.err
    lines = r.out.splitlines()
    assert lines[0].startswith("training split {'faces': ")
    assert [ln.split(" {")[0] for ln in lines[1:3]] == ["validation split, P(face) >= 0.5",
                                                        "validation split, P(face) >= 0.8"]
    assert len(lines) == 4 and lines[3].startswith("done: face check (16 hidden units, 2 epochs) trained on ")
    assert lines[3].endswith(f"wrote {out}") and "of non-faces accepted" in lines[3]
    assert [p.name for p in out.parent.iterdir()] == ["check.npz"]  # no temp file left beside it
    check = FaceCheck.load(str(out))
    assert [w.shape for w, _ in check.layers] == [(900, 16), (16, 1)]
    crops = np.array([crop_face(f.image, box_from_keypoints(f.keypoints, KAGGLE15), CROP_SIZE)[0]
                      for f in ytf_faces])
    p = check.probability(crops)
    assert p.shape == (len(ytf_faces),) and np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
