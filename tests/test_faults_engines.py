"""Fault injection for `fkd-track export` and `fkd-track quantize` before any model is read, through the installed
script: an export never replaces an ONNX the user did not name, outputs carry the suffix their backend is picked
by, and quantize refuses a corrupt or an already quantised model in one line, writing nothing.
"""

from __future__ import annotations

from tests.conftest import YTF_SPEC, assert_user_error, file_hash, run_cli


def test_export_does_not_replace_an_onnx_it_was_not_told_to(tmp_path):
    checkpoint, beside = tmp_path / "m.pt", tmp_path / "m.onnx"
    checkpoint.write_bytes(b"a checkpoint")  # refused before it is read
    beside.write_bytes(b"an earlier export")
    r = run_cli("export", "--model", checkpoint)
    assert_user_error(r, "m.onnx already exists", "--onnx")
    assert beside.read_bytes() == b"an earlier export"


def test_export_outputs_carry_their_suffix(tmp_path):
    checkpoint = tmp_path / "m.pt"
    checkpoint.write_bytes(b"a checkpoint")
    r = run_cli("export", "--model", checkpoint, "--onnx", tmp_path / "out" / "m.txt")
    assert_user_error(r, "--onnx", "*.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # not even the folder


def test_quantize_refuses_a_corrupt_or_quantised_model(tmp_path, model_path):
    from engines.select import int8_sibling

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(open(model_path, "rb").read()[:5000])
    out = tmp_path / "q.onnx"
    r = run_cli("quantize", "--model", broken, "--data", YTF_SPEC, "--out", out)
    assert_user_error(r, "broken.onnx is not a loadable ONNX model")
    int8 = int8_sibling(model_path)
    before = file_hash(int8)
    r = run_cli("quantize", "--model", int8, "--data", YTF_SPEC, "--out", out)
    assert_user_error(r, "quantised already", "QuantizeLinear")
    assert not out.exists() and file_hash(int8) == before


def test_a_whole_file_output_onto_a_pipe_is_finished_then_copied_in(tmp_path):
    """npz is a zip file, which its writer seeks in: onto a pipe it is finished in a temp folder and copied."""
    import io
    import os
    import threading

    import numpy as np

    fifo = tmp_path / "faces"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    r = run_cli("train", "prepare", "--data", YTF_SPEC, "--limit", "5", "--out", fifo, cwd=tmp_path)
    reader.join(timeout=60)
    assert r.code == 0, r.err
    assert len(np.load(io.BytesIO(got[0]))["keypoints"]) == 5 and fifo.is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces"]
