"""A training run's folder: refuse to overwrite finished work, resume safely, name what an interruption kept.

`claim_run_folder` runs before any work (`train fit`, `compare`, `refine`); `best_to_beat` is what a resumed run
must improve on before it may replace best.pt; `held_interrupts` keeps an epoch's files in step.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from engines.errors import UserError
from engines.output_files import check_outputs

CHECKPOINTS = ("last.pt", "best.pt")
RUN_FILES = (*CHECKPOINTS, "metrics.csv", "loss_curve.png")  # what `train fit` writes into its run folder


def run_checkpoints(folder: Path | str) -> list[str]:
    """The checkpoint files (last.pt, best.pt) already in `folder`."""
    return [n for n in CHECKPOINTS if os.path.exists(os.path.join(folder, n))]


def check_run_folder(folder: Path | str, resume: bool = False, force: bool = False, option: str = "--out",
                     can_resume: bool = True) -> None:
    """UserError when `folder` cannot take this run: a file, --resume without its last.pt, or a folder holding a
    run without `resume` or `force`; creates nothing (`claim_run_folder` does). `can_resume` False: the command
    has no --resume (e.g. `train refine`), so only --force is offered."""
    if resume and force:
        raise UserError("--resume and --force exclude each other: continue the run, or start it over")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"{option} {folder} is a file; a training run needs a folder")
    found = run_checkpoints(folder)
    if resume and "last.pt" not in found:
        raise UserError(f"--resume: no checkpoint at {os.path.join(folder, 'last.pt')} to continue from")
    if found and not (resume or force):
        choices = "pass --resume to continue it or --force" if can_resume else "pass --force"
        raise UserError(f"{option} {folder} already holds a training run ({', '.join(found)}); {choices} to "
                        f"start over and replace it")


def claim_run_folder(folder: Path | str, resume: bool = False, force: bool = False, option: str = "--out",
                     inputs: Sequence[Path | str | None] = (), can_resume: bool = True) -> None:
    """Create `folder` and check it writable; refuse a folder holding a run unless `resume` or `force`, and
    any run file that is one of `inputs` (e.g. `--init RUN/best.pt --out RUN`).

    `resume` needs its last.pt; `force` starts over (the old checkpoints are replaced as the new run saves).
    """
    check_run_folder(folder, resume, force, option, can_resume)
    for name in RUN_FILES:  # also creates the folder and proves it writable
        check_outputs([p for p in inputs if p], {option: os.path.join(folder, name)})


@contextlib.contextmanager
def run_folder_lock(folder: Path | str) -> Iterator[None]:
    """Hold `folder`'s lock for a training run: a second `fit` into the same folder (e.g. a `--resume` started
    while the first still runs) is refused with UserError instead of interleaving their checkpoints. The lock
    is the operating system's (flock on the folder itself: no file left behind), gone with the process however
    it ends."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    os.makedirs(folder, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{folder} is in use by another training run; wait for it to end or stop it "
                            "first") from None
        yield
    finally:
        os.close(fd)


def stored_best(path: Path | str) -> float:
    """The best validation RMSE recorded in checkpoint `path` (inf when absent or unreadable)."""
    import torch

    if not os.path.isfile(path):
        return math.inf
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        return float(ckpt.get("best_val_rmse", math.inf))
    except Exception:  # noqa: BLE001 - an unreadable best.pt holds nothing worth keeping over a new best
        return math.inf


def best_to_beat(folder: Path | str, resumed_best: float, history: list[dict]) -> float:
    """The validation RMSE a resumed run must beat before replacing best.pt: the lowest of what last.pt says,
    what best.pt itself records, and every epoch in the metrics history (an interrupted save can leave
    best.pt an epoch ahead of last.pt)."""
    rmses = [float(h["val_rmse_px"]) for h in history if "val_rmse_px" in h]
    return min([resumed_best, stored_best(os.path.join(folder, "best.pt")), *rmses])


@contextlib.contextmanager
def held_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while an epoch's files are written, so best.pt, last.pt and metrics.csv always
    describe the same epoch; a signal that arrived meanwhile is delivered again once they are all written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    old = {s: h for s, h in old.items() if h is not None}  # a handler set outside Python cannot be restored
    for s in old:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if caught:
        signal.raise_signal(caught[0])


def interruption_message(folder: Path | str, finished: int, start: int) -> str:
    """What an interrupted run kept: the last saved epoch, or that none was saved."""
    if finished > start:
        return f"interrupted: checkpoints in {folder} hold the last saved epoch ({finished})"
    if start:
        return f"interrupted: no epoch finished in this session; {folder} still holds epoch {start}"
    return f"interrupted: no epoch finished; no checkpoint written in {folder}"
