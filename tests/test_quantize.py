"""INT8 quantisation: calibrated on real face crops, written only within its accuracy bound, the bound recorded in
the file, `auto` picking the INT8 sibling only when it was quantised from that very file, met the bound and
ran faster; the shipped INT8 model keeps its recorded bound on held-out faces."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engines.backend import ModelError
from engines.model_file import sha256_file
from engines.quantize import BOUND_PX, HeldOut, int8_record, masked_rmse, quantize_int8
from engines.select import default_model_path, int8_sibling, load_backend
from tests.conftest import MTFL_SPEC, YTF_SPEC, run_cli
from tracker.calibration import split_faces


@pytest.fixture(scope="module")
def faces(shared_data):
    """64 calibration crops (training split) and 120 held-out validation faces, landmark crops only (fast)."""
    from train.datasets import is_validation, load_dataset
    from train.evaluate import faces_from_set

    fs = load_dataset(YTF_SPEC)
    val = np.array([is_validation(g) for g in fs.groups])
    calib = faces_from_set(fs, np.flatnonzero(~val)[::50][:64], "landmarks").crops
    held = faces_from_set(fs, np.flatnonzero(val)[::3][:120], "landmarks")
    return calib, HeldOut("landmarks", held.crops, held.truth)


@pytest.fixture(scope="module")
def quantized(faces, tmp_path_factory):
    """The packaged model quantised beside a copy of itself (MODEL.onnx + MODEL.int8.onnx)."""
    folder = tmp_path_factory.mktemp("int8")
    src = folder / "model.onnx"
    shutil.copy(default_model_path(), src)
    calib, held = faces
    record = quantize_int8(str(src), int8_sibling(str(src)), calib, [held], speed_seconds=1.0)
    return src, record


def test_int8_is_within_the_bound_and_records_it(quantized, faces):
    src, record = quantized
    _, held = faces
    int8 = load_backend(int8_sibling(str(src)), "onnxruntime")
    assert int8_record(int8.info.extra) == record  # the measurement is in the file's metadata
    assert record.source_sha256 == sha256_file(str(src)) and record.bound_px == BOUND_PX
    # recomputed here on the same held-out faces: the recorded RMSEs and their difference
    rmse_f = masked_rmse(load_backend(str(src), "onnxruntime").predict(held.crops), held.truth)
    rmse_q = masked_rmse(int8.predict(held.crops), held.truth)
    assert rmse_f == pytest.approx(record.rmse_float["landmarks"], abs=1e-3)
    assert rmse_q == pytest.approx(record.rmse_int8["landmarks"], abs=1e-3)
    assert rmse_q - rmse_f <= BOUND_PX and record.meets_bound
    assert 1.0 < rmse_f < 3.0  # real faces, a trained model: the bound compares like with like
    assert int8.info.keypoint_names == load_backend(str(src), "onnxruntime").info.keypoint_names
    # INT8 weights: the file is much smaller than float32 (the FC weight alone is 37 MB in float32)
    assert (src.parent / "model.int8.onnx").stat().st_size < 12_000_000


def test_an_unmet_bound_writes_nothing(faces, tmp_path):
    src = tmp_path / "m.onnx"
    shutil.copy(default_model_path(), src)
    calib, held = faces
    with pytest.raises(ModelError, match="not written"):  # INT8 would have to be 1 px better than float
        quantize_int8(str(src), str(tmp_path / "m.int8.onnx"), calib[:8], [held], bound_px=-1.0,
                      speed_seconds=0.2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def _with_record(src, dst, **changes) -> None:
    """Copy an INT8 file with fields of its `int8` record changed."""
    import onnx

    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key == "int8":
            prop.value = json.dumps({**json.loads(prop.value), **changes})
    onnx.save_model(model, str(dst))


def test_auto_picks_the_int8_sibling_only_when_it_fits(quantized, tmp_path):
    src, record = quantized
    q = int8_sibling(str(src))
    picked = load_backend(str(src), "auto")
    assert picked.info.path == (q if record.faster else str(src))
    assert load_backend(str(src), "onnxruntime").info.path == str(src)  # a named backend runs the named file
    for name, changes in {
        "fits": dict(delta_px=0.01, faces_per_s_int8=2.0, faces_per_s_float=1.0),
        "over_bound": dict(delta_px=0.5, faces_per_s_int8=2.0, faces_per_s_float=1.0),
        "slower": dict(delta_px=0.01, faces_per_s_int8=1.0, faces_per_s_float=2.0),
        "other_source": dict(delta_px=0.01, faces_per_s_int8=2.0, faces_per_s_float=1.0, source_sha256="0" * 64),
    }.items():
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(src, folder / "model.onnx")
        _with_record(q, folder / "model.int8.onnx", **changes)
        chosen = load_backend(str(folder / "model.onnx"), "auto").info.path
        assert chosen.endswith("model.int8.onnx") == (name == "fits"), name


def test_shipped_int8_model_keeps_its_bound(faces):
    path = int8_sibling(default_model_path())
    record = int8_record(load_backend(path, "onnxruntime").info.extra)
    assert record is not None and record.source_sha256 == sha256_file(default_model_path())
    assert record.meets_bound and record.bound_px == BOUND_PX
    assert set(record.faces) == {"landmarks", "detector"} and min(record.faces.values()) >= 900
    _, held = faces  # other faces than it was measured on: still well within the bound
    rmse = [masked_rmse(load_backend(p, "onnxruntime").predict(held.crops), held.truth)
            for p in (default_model_path(), path)]
    assert rmse[1] - rmse[0] <= BOUND_PX


def test_split_keeps_calibration_and_held_out_faces_apart(shared_data):
    calib, held = split_faces([YTF_SPEC, MTFL_SPEC], calibration=16, held_out=20)
    assert calib.shape == (16, 96, 96) and calib.dtype == np.uint8
    assert [h.name for h in held] == ["landmarks", "detector"]
    assert len(held[0].crops) == 20 and 15 <= len(held[1].crops) <= 20  # Haar finds most validation faces
    assert not any((c == h).all() for c in calib for h in held[0].crops)


def test_quantize_command_refuses_a_checkpoint_with_one_line(tmp_path):
    bad = tmp_path / "m.pt"
    bad.write_bytes(b"not a checkpoint")
    r = run_cli("quantize", "--model", bad, "--data", YTF_SPEC)
    assert r.code == 2 and r.err.startswith("error: ") and len(r.err.strip().splitlines()) == 1
