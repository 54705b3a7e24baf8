"""What TensorRT and GPU this machine has: the one place that imports tensorrt and names the install fix.

Nothing here imports tensorrt or torch at module import time.
"""

from __future__ import annotations

import importlib.util

from engines.backend import ModelError

INSTALL_HINT = (
    "install it with `pip install fkd-track[tensorrt]` (or NVIDIA's TensorRT installation guide) "
    "on a machine with an NVIDIA GPU"
)


class TensorRTMissing(ModelError):
    """TensorRT is not installed, so engines can be neither built nor run here."""


def tensorrt_available() -> bool:
    """True when the tensorrt package can be imported (checked without importing it)."""
    return importlib.util.find_spec("tensorrt") is not None


def import_tensorrt():
    """The tensorrt module; TensorRTMissing with the install hint when it is not installed."""
    try:
        import tensorrt
    except ImportError:
        raise TensorRTMissing(f"TensorRT is not installed; {INSTALL_HINT}") from None
    return tensorrt


def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None without importing anything heavy when absent."""
    return import_tensorrt().__version__ if tensorrt_available() else None


def current_gpu() -> tuple[str, str] | None:
    """(name, compute capability "9.0") of CUDA device 0 via torch.cuda, or None without a usable GPU."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return torch.cuda.get_device_name(0), f"{major}.{minor}"
