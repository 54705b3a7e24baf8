"""`fkd-track doctor`: what this machine offers the tracker (versions, GPU, TensorRT, camera, display) and
which backend `auto` picks for the packaged model, and why. Quick, opens no camera, always exits 0.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import platform
import sys
from collections.abc import Callable

import typer


def _section(fn: Callable[[], dict]) -> dict:
    """Run one probe; its failure becomes an `error` entry instead of stopping the report."""
    try:
        return fn()
    except Exception as err:  # a doctor reports broken installs, it does not crash on them
        return {"error": f"{type(err).__name__}: {err}".splitlines()[0]}


def _opencv() -> dict:
    import cv2

    from tracker.haar import DEFAULT_CASCADE

    folder = cv2.data.haarcascades
    gui = next((ln.split(":", 1)[1].strip() for ln in cv2.getBuildInformation().splitlines()
                if ln.strip().startswith("GUI:")), "unknown")
    return {"version": cv2.__version__, "haar_folder": folder,
            "haar_default_exists": os.path.isfile(os.path.join(folder, DEFAULT_CASCADE)), "gui": gui}


def _onnxruntime() -> dict:
    import onnxruntime as ort

    return {"version": ort.__version__, "providers": list(ort.get_available_providers())}


def _torch() -> dict:
    if importlib.util.find_spec("torch") is None:
        return {"installed": False, "note": "torch is optional: the .pt backend and `train` need it"}
    import torch

    from engines.tensorrt_env import current_gpu

    out = {"installed": True, "version": torch.__version__, "cuda_build": torch.version.cuda,
           "cuda_available": torch.cuda.is_available()}
    gpu = current_gpu()
    if gpu is not None:
        out.update(gpu_name=gpu[0], compute_capability=gpu[1], gpu_count=torch.cuda.device_count(),
                   cudnn=torch.backends.cudnn.version())
    return out


def _tensorrt() -> dict:
    from engines.tensorrt_build import SUPPORTED_MAJORS
    from engines.tensorrt_env import tensorrt_available, tensorrt_version

    if not tensorrt_available():
        return {"installed": False, "supported_majors": list(SUPPORTED_MAJORS)}
    version = tensorrt_version()
    major = version.split(".")[0]
    return {"installed": True, "version": version, "supported_majors": list(SUPPORTED_MAJORS),
            "supported": major.isdigit() and int(major) in SUPPORTED_MAJORS}


def _auto_backend() -> dict:
    from engines.select import default_model_path, load_backend

    path = default_model_path()
    backend = load_backend(None, "auto")
    stem = os.path.splitext(path)[0]
    engine, checkpoint = f"{stem}.engine", f"{stem}.pt"
    if backend.name == "tensorrt":
        why = f"a TensorRT engine built from it ({engine}) fits this GPU and TensorRT"
    elif backend.name.startswith("torch"):
        why = f"its source checkpoint {checkpoint} sits beside it and torch sees a CUDA GPU"
    else:
        reasons = []
        reasons.append(f"no matching engine {os.path.basename(engine)}" if not os.path.isfile(engine)
                       else "its engine does not fit this machine (TensorRT, GPU) or was built from another ONNX")
        reasons.append(f"no source checkpoint {os.path.basename(checkpoint)} beside it"
                       if not os.path.isfile(checkpoint) else "no CUDA GPU for its checkpoint")
        if backend.info.path != path:
            reasons.append(f"its INT8 sibling {os.path.basename(backend.info.path)} met its accuracy bound and "
                           "measured faster")
        why = "ONNX Runtime on the CPU: " + "; ".join(reasons)
    return {"model": path, "runs": backend.info.path, "backend": backend.name, "why": why}


def _camera() -> dict:
    devices = sorted(glob.glob("/dev/video*"))
    return {"devices": devices, "readable": [d for d in devices if os.access(d, os.R_OK)],
            "note": "listed only; no camera was opened"}


def _display() -> dict:
    env = {k: os.environ[k] for k in ("DISPLAY", "WAYLAND_DISPLAY") if os.environ.get(k)}
    return {"available": bool(env), **env,
            "note": "the live window needs one; `video` and `bench` run headless" if not env else ""}


def collect() -> dict:
    """The whole report as a JSON-ready dict; each section holds an `error` entry where its probe failed."""
    import numpy

    return {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": platform.platform(),
        "numpy": {"version": numpy.__version__},
        "opencv": _section(_opencv),
        "onnxruntime": _section(_onnxruntime),
        "torch": _section(_torch),
        "tensorrt": _section(_tensorrt),
        "auto_backend": _section(_auto_backend),
        "camera": _section(_camera),
        "display": _section(_display),
    }


def _lines(report: dict) -> list[str]:
    out = []
    for key, value in report.items():
        if isinstance(value, dict):
            parts = [f"{k}={v if v != [] else 'none'}" for k, v in value.items() if v not in ("", None)]
            out.append(f"{key:13s} " + ("; ".join(parts) if parts else "-"))
        else:
            out.append(f"{key:13s} {value}")
    return out


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Check this machine: versions (Python, numpy, OpenCV + Haar files, ONNX Runtime, torch, CUDA, GPU,
    TensorRT), which backend `auto` picks for the packaged model and why, camera and display."""
    report = collect()
    typer.echo(json.dumps(report, indent=2) if as_json else "\n".join(_lines(report)))
