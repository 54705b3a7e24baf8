"""The light install (`pip install fkd-track`, no extras), through the installed `fkd-track`: the tracker runs on
ONNX files without torch, and each command that needs an extra names it in one `error:` line before writing anything.

The extras are hidden from the subprocess by modules of their names, first on PYTHONPATH, that fail to import
exactly as a missing package does.
"""

from __future__ import annotations

import csv

import pytest

from tests.conftest import assert_user_error

HIDDEN = ("torch", "onnx", "onnxscript", "matplotlib", "ray")
YTF_SPEC = "ytf:{shared}/ytf/training_frames_keypoints.csv"


@pytest.fixture(scope="module")
def light_env(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("no_extras")
    for name in HIDDEN:
        (folder / f"{name}.py").write_text(f"raise ModuleNotFoundError(\"No module named '{name}'\", name='{name}')\n")
    return {"PYTHONPATH": str(folder)}


def test_the_hiding_works(light_env, cli):
    r = cli("train", "compare", "--data", "x.npz", "--out", "unused", env=light_env)
    assert_user_error(r, "training needs torch", "pip install 'fkd-track[train]'")


def test_tracker_runs_on_onnx_without_extras(light_env, cli, video_path, tmp_path):
    out = tmp_path / "points.csv"
    r = cli("video", video_path, "--csv", out, "--headless", env=light_env)
    assert r.code == 0, r.err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) >= 190 and sum(row["success"] == "1" for row in rows) >= 190


def test_a_checkpoint_needs_torch(light_env, cli, video_path, tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"a checkpoint")  # never read: torch is missing
    out = tmp_path / "points.csv"
    r = cli("video", video_path, "--csv", out, "--model", model, "--headless", env=light_env)
    assert_user_error(r, "model.pt (a .pt checkpoint) needs torch", "pip install 'fkd-track[train]'", "export")
    assert not out.exists()
    onnx = tmp_path / "new" / "model.onnx"
    r = cli("export", "--model", model, "--onnx", onnx, env=light_env)
    assert_user_error(r, "exporting a .pt checkpoint needs torch", "fkd-track[train]")
    assert not onnx.parent.exists()  # refused before its folder was made


def test_training_needs_matplotlib_too_and_says_so_before_training(cli, shared_data, tmp_path):
    folder = tmp_path / "no_matplotlib"
    folder.mkdir()
    (folder / "matplotlib.py").write_text("raise ModuleNotFoundError(\"No module named 'matplotlib'\", "
                                          "name='matplotlib')\n")
    data = tmp_path / "faces.npz"
    r = cli("train", "prepare", "--data", YTF_SPEC.format(shared=shared_data), "--limit", "12", "--out", data)
    assert r.code == 0, r.err
    run = tmp_path / "run"
    r = cli("train", "fit", "--data", data, "--out", run, "--epochs", "1", env={"PYTHONPATH": str(folder)})
    assert_user_error(r, "training (its loss curve) needs matplotlib", "fkd-track[train]")
    assert not run.exists()  # refused before any epoch, not after


def test_training_and_plots_need_their_extras(light_env, cli, shared_data, model_path, tmp_path):
    data = tmp_path / "faces.npz"
    r = cli("train", "prepare", "--data", YTF_SPEC.format(shared=shared_data), "--limit", "12", "--out", data,
            env=light_env)
    assert r.code == 0, r.err  # preparing data needs no extra
    run = tmp_path / "run"
    r = cli("train", "fit", "--data", data, "--out", run, env=light_env)
    assert_user_error(r, "training needs torch")
    assert not run.exists()  # refused before the run folder is claimed
    worst = tmp_path / "worst.png"
    r = cli("train", "evaluate", "--data", YTF_SPEC.format(shared=shared_data), "--worst", worst, env=light_env)
    assert_user_error(r, "--worst needs matplotlib", "fkd-track[train]")
    assert "rmse" not in r.out  # refused before evaluating, not after
    assert not worst.exists()
    int8 = tmp_path / "int8.onnx"
    r = cli("quantize", "--model", model_path, "--data", YTF_SPEC.format(shared=shared_data), "--out", int8,
            env=light_env)
    assert_user_error(r, "quantize needs onnx", "fkd-track[train]")
    assert not int8.exists()


def test_an_installed_package_that_fails_to_import_is_not_called_missing(tmp_path, monkeypatch):
    """A package that is there but breaks on import (here: a nameless ImportError, as numpy's own) gets the
    reinstall line, not 'not installed'; a module that is not there at all is 'not installed'."""
    from engines import extras

    (tmp_path / "fkd_broken_pkg.py").write_text("raise ImportError('failed to import its C part')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(extras.ExtraMissing, match="installed but cannot be imported .failed to import its C part"):
        extras.require("fkd_broken_pkg", "a test")
    with pytest.raises(extras.ExtraMissing, match="a test needs fkd_not_there, which is not installed"):
        extras.require("fkd_not_there", "a test")
