"""Output files that can never damage inputs or each other: path checks up front, atomic writes after.

Every command that writes calls `check_outputs` before opening anything, and writes whole-file
outputs (npz, onnx, engine, json, png, checkpoints) through `atomic_path` (a sibling temp file, renamed on success).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from engines.errors import UserError


def _resolved(path: Path | str) -> Path:
    return Path(path).expanduser().resolve()


_FD_PATH = re.compile(r"/(?:dev/fd|proc/self/fd)/(\d+)")


def inherited_fd(path: Path | str) -> int | None:
    """The open descriptor /dev/stdout, /dev/stderr, /dev/fd/N or /proc/self/fd/N names, else None: written
    through that descriptor, so `--csv /dev/stdout >> log.csv` appends and a file behind it is never replaced."""
    p = os.path.abspath(os.path.expanduser(str(path)))
    named = {"/dev/stdout": 1, "/dev/stderr": 2}
    for _ in range(8):  # through links such as out.json -> /dev/stdout, one hop at a time
        if p in named:
            return named[p]
        m = _FD_PATH.fullmatch(p)
        if m:
            return int(m.group(1))
        if not os.path.islink(p):
            return None
        p = os.path.normpath(os.path.join(os.path.dirname(p), os.readlink(p)))
    return None


def is_stream(path: Path | str) -> bool:
    """A descriptor the process inherited (`inherited_fd`), or an existing pipe, terminal or device (/dev/null,
    a FIFO): written in place, never created, probed or replaced by a rename."""
    if inherited_fd(path) is not None:
        return True
    try:
        mode = os.stat(Path(path).expanduser()).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def open_stream(path: Path | str) -> BinaryIO:
    """An unbuffered binary writer onto a stream (`is_stream`): a duplicate of an inherited descriptor (its
    append mode and position kept; closing it leaves the original open), else the pipe or device opened."""
    fd = inherited_fd(path)
    if fd is not None:
        return os.fdopen(os.dup(fd), "wb", buffering=0)
    return open(path, "wb", buffering=0)


def check_outputs(inputs: Sequence[Path | str], outputs: Mapping[str, Path | str | None]) -> None:
    """Refuse outputs that resolve to an input, lie inside an input folder, or coincide with another output.

    `outputs` maps an option name (e.g. "--csv") to its path or None; each output's folder is created and
    checked for writability here, before any work starts.
    """
    ins = [_resolved(p) for p in inputs]
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        if str(path) == "-":
            raise UserError(f"{option} -: give a file path (or /dev/stdout for standard output)")
        if is_stream(path):
            out = Path(os.path.abspath(Path(path).expanduser()))
            if out in seen:
                raise UserError(f"{option} and {seen[out]} both name {path}; give each output its own path")
            seen[out] = option
            continue
        out = _resolved(path)
        for src in ins:
            if out == src or (src.exists() and out.exists() and os.path.samefile(out, src)):
                raise UserError(f"{option} {path} is an input; refusing to overwrite it (choose another path)")
            if src.is_dir() and src in out.parents:
                raise UserError(f"{option} {path} lies inside the input folder {src}; write it elsewhere")
        if out in seen:
            raise UserError(f"{option} and {seen[out]} both name {path}; give each output its own path")
        if out.is_dir():
            raise UserError(f"{option} {path} is a folder; give a file path")
        seen[out] = option
        ensure_writable_dir(out.parent, option)


def ensure_writable_dir(folder: Path | str, option: str = "output") -> Path:
    """Create `folder` (and parents) and prove it writable with a probe file; one clear error otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".fkd-probe-"):
            pass
    except FileExistsError as err:
        raise UserError(f"{option}: {folder} exists and is not a folder") from err
    except OSError as err:
        raise UserError(f"{option}: cannot write in {folder}: {err.strerror or err}") from err
    return folder


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a sibling temp path to write; rename it onto `path` only when the block succeeds (a pipe or device,
    `is_stream`, gets the finished file's bytes copied into it instead).

    On any exception (Ctrl-C and SIGTERM included) the temp file is removed and `path` is untouched.
    The temp name keeps the suffix, since some writers (np.savez, cv2, matplotlib) choose the format by it.
    """
    path = Path(path)
    if is_stream(path):  # a pipe or device: a rename would put a file in its place, and some writers (zip) seek
        with tempfile.TemporaryDirectory(prefix="fkd-out-") as folder:
            tmp = Path(folder) / f"out{path.suffix}"
            yield tmp
            with open(tmp, "rb") as src, open_stream(path) as dst:
                shutil.copyfileobj(src, dst)
        return
    if path.is_symlink():  # replace the file it points to, not the link
        path = Path(os.path.realpath(path))
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and not err.filename and err.errno:  # e.g. ENOSPC from write(): name the file
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
