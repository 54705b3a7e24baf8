"""`fkd-track train ...`: prepare datasets, fit, evaluate and compare models.

Each command is a plain function; torch is imported only by the commands that train.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tracker.errors import UserError

train_app = typer.Typer(help="Prepare data, train, evaluate and compare keypoint models (needs torch).",
                        no_args_is_help=True)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError("training needs torch: pip install 'fkd-track[train]'") from None


@train_app.command("prepare")
def prepare_cmd(
    data: list[str] = typer.Option(..., "--data", help="Dataset spec FORMAT:PATH (kaggle|ytf|mtfl); repeatable."),
    out: Path = typer.Option(..., "--out", help="Prepared dataset file to write (.npz)."),
    val_fraction: float = typer.Option(0.1, help="Share of identities held out for validation."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip malformed rows and unreadable images, with a count."),
    limit: int = typer.Option(0, help="Use at most this many faces per spec (0 = all)."),
) -> None:
    """Detect, crop (96 px box + margin) and store every face of the given datasets in one compact file."""
    from train.prepare import prepare

    with _progress() as progress:
        meta = prepare(list(data), str(out), val_fraction, skip_bad, limit or None, progress=progress)
    c = meta["calibration"]
    typer.echo(f"wrote {out}: {meta['n_faces']} faces ({meta['n_val']} validation), "
               f"{meta['n_detector_boxes']} Haar boxes, {meta['n_skipped']} skipped, "
               f"{out.stat().st_size / 2**20:.1f} MiB")
    typer.echo(f"landmark->Haar box calibration: along={c['along']:.3f} across={c['across']:.3f} "
               f"size_eye={c['size_eye']:.3f} size_mouth={c['size_mouth']:.3f}")
    for line in meta["skipped_examples"][:5]:
        typer.echo(f"skipped: {line}")


@train_app.command("fit")
def fit_cmd(
    data: Path = typer.Option(..., "--data", help="Prepared dataset from `train prepare`."),
    out: Path = typer.Option(..., "--out", help="Run directory (checkpoints, metrics.csv, loss_curve.png)."),
    arch: str = typer.Option("mlresnet", help="Architecture from the model registry: mlresnet, cnn, mlp."),
    loss: str = typer.Option("masked", help="masked (ignore missing labels) or complete-only (drop partial rows)."),
    epochs: int = typer.Option(30),
    batch: int = typer.Option(256),
    lr: float = typer.Option(1e-4),
    weight_decay: float = typer.Option(5e-4),
    schedule: str = typer.Option("constant", help="Learning-rate schedule: constant or cosine."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    amp: bool = typer.Option(True, help="bf16 mixed precision on CUDA."),
    seed: int = typer.Option(0),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt."),
    limit: int = typer.Option(0, help="Train on at most this many faces (0 = all)."),
) -> None:
    """Fit a keypoint model with Adam; keeps last.pt and best.pt (by validation RMSE), Ctrl-C safe."""
    _need_torch()
    from train.fit import FitConfig, fit
    from train.masked_loss import LOSSES
    from train.models import MODELS

    if arch not in MODELS:
        raise UserError(f"unknown --arch {arch!r}; known: {', '.join(MODELS)}")
    if loss not in LOSSES:
        raise UserError(f"unknown --loss {loss!r}; known: {', '.join(LOSSES)}")
    if schedule not in ("constant", "cosine"):
        raise UserError("--schedule must be constant or cosine")
    cfg = FitConfig(str(data), str(out), arch, loss, epochs, batch, lr, weight_decay, schedule, device, amp, seed,
                    resume, limit=limit or None)
    try:
        fit(cfg, log=typer.echo)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        raise UserError(str(err)) from None


@train_app.command("evaluate")
def evaluate_cmd(
    model: Path = typer.Option(..., "--model", help="Checkpoint (.pt), ONNX model or TensorRT engine."),
    data: str = typer.Option(..., "--data", help="Dataset spec FORMAT:PATH (all rows) or a prepared file (validation split)."),
    crop: str = typer.Option("landmarks", help="landmarks (calibrated box), detector (Haar), or prepared (stored crops)."),
    backend: str = typer.Option("auto", help="Inference backend: auto, onnxruntime, torch, tensorrt."),
    json_out: Path = typer.Option(None, "--json", help="Write the metrics here as JSON."),
    ced: Path = typer.Option(None, "--ced", help="Write the cumulative error distribution PNG here."),
) -> None:
    """Masked RMSE (96-px crop pixels), failure rate at 10%, inter-ocular NME, detection rate."""
    from engines.select import load_backend
    from train.evaluate import evaluate

    m = evaluate(load_backend(str(model), backend), data, crop, ced_png=str(ced) if ced else None,
                 json_out=str(json_out) if json_out else None)
    typer.echo(json.dumps({k: v for k, v in m.items() if k != "per_keypoint_rmse_px"}, indent=2))
    typer.echo("per keypoint RMSE (px): " + ", ".join(
        f"{k}={v:.2f}" for k, v in m["per_keypoint_rmse_px"].items() if v is not None))


@train_app.command("compare")
def compare_cmd(
    data: Path = typer.Option(..., "--data", help="Prepared dataset from `train prepare`."),
    out: Path = typer.Option(..., "--out", help="Directory for the runs, table.md and loss_curves.png."),
    epochs: int = typer.Option(30),
    batch: int = typer.Option(256),
    lr: float = typer.Option(1e-4),
    device: str = typer.Option("auto"),
    limit: int = typer.Option(0, help="Train on at most this many faces (0 = all)."),
) -> None:
    """Train the paper's three models on one split and write a Table-2 style comparison."""
    _need_torch()
    from train.compare import compare
    from train.fit import FitConfig

    cfg = FitConfig(str(data), str(out), epochs=epochs, batch=batch, lr=lr, device=device, limit=limit or None)
    typer.echo(compare(cfg, str(out), log=typer.echo))
