"""`fkd-track doctor` through the installed command: a readable report and a JSON one, exit 0."""

from __future__ import annotations

import glob
import json
import platform

from tests.conftest import run_cli


def test_doctor_reports_this_machine_as_text_and_json():
    text = run_cli("doctor", timeout=120)
    assert text.code == 0, text.err
    for word in ("python", "opencv", "haar_default_exists=True", "onnxruntime", "CPUExecutionProvider", "torch",
                 "tensorrt", "auto_backend", "camera", "display"):
        assert word in text.out, (word, text.out)
    res = run_cli("doctor", "--json", timeout=120, env={"DISPLAY": "", "WAYLAND_DISPLAY": "wayland-9"})
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert report["python"]["version"] == platform.python_version()
    assert report["opencv"]["haar_default_exists"] is True
    assert "CPUExecutionProvider" in report["onnxruntime"]["providers"]
    assert report["tensorrt"]["supported_majors"] == [10, 11]
    torch = report["torch"]
    auto = report["auto_backend"]
    assert auto["model"].endswith("default.onnx") and auto["why"]
    if torch.get("cuda_available"):
        assert torch["gpu_name"] and torch["compute_capability"]
    else:  # no GPU: the packaged ONNX runs on ONNX Runtime, and the report says why
        assert auto["backend"] == "onnxruntime" and "no matching engine" in auto["why"]
    assert report["camera"]["devices"] == sorted(glob.glob("/dev/video*"))
    assert report["display"]["available"] is True and report["display"]["WAYLAND_DISPLAY"] == "wayland-9"
