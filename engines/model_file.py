"""Checks every model file gets before a backend opens it: present, a file, not empty; and its sha256.

Each failure is a one-line ModelError naming the file.
"""

from __future__ import annotations

import hashlib
import os

from engines.backend import ModelError

SUFFIXES = (".onnx", ".pt", ".engine")


def require_model_file(path: str) -> str:
    """Return path as str when it is a non-empty file; ModelError naming it otherwise."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelError(f"model file not found: {path}")
    if not os.path.isfile(path):
        raise ModelError(f"model path is not a file: {path}")
    if os.path.getsize(path) == 0:
        raise ModelError(f"model file is empty (0 bytes): {path}")
    return path


def model_kind(path: str) -> str:
    """'onnx', 'pt' or 'engine' from the file suffix; ModelError for anything else."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        what = suffix or "(no suffix)"
        raise ModelError(f"{path}: unknown model type {what!r}; expected one of {', '.join(SUFFIXES)}")
    return suffix[1:]


def sha256_file(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
