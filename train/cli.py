"""`fkd-track train ...`: prepare datasets, fit, evaluate, compare, refine (cascade) and report on models.

Each command is a plain function; torch is imported only by the commands that train.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from engines.errors import UserError
from engines.extras import require

train_app = typer.Typer(help="Prepare data, train, evaluate and compare keypoint models, and train the tracker's "
                                 "face/non-face check (fit, compare, refine and report need torch: the \\[train] "
                                 "extra).")


@train_app.callback(invoke_without_command=True)
def _train_group(ctx: typer.Context) -> None:
    """`fkd-track train` alone shows its commands (exit 0), as `fkd-track` alone does."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn())


def _positive(value: float | None) -> float | None:
    """Typer callback: refuse a value <= 0 (Typer's min= cannot exclude the bound itself)."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be > 0, got {value:g}")
    return value


def _fraction(value: float) -> float:
    """Typer callback: a share in [0, 1)."""
    if not 0 <= value < 1:
        raise typer.BadParameter(f"must be >= 0 and < 1, got {value:g}")
    return value


LIMIT_HELP = "Train on at most this many faces (default: all)."
FORCE_HELP = "Start over in an --out folder that already holds a run (replaces its checkpoints)."
DEVICE_HELP = "Where to train: auto (CUDA when torch sees a GPU, else the CPU), cpu, cuda, cuda:N or mps (Apple GPUs)."
RESUME_HELP = "Continue the run in --out from its last.pt (never replaces a better best.pt)."


def _spec_files(specs: list[str]) -> list[str]:
    """The files and folders the dataset specs read, for the output checks; a spec's missing or binary label
    file is refused first, as the more basic problem."""
    from train.datasets import parse_spec, spec_inputs

    files = []
    for spec in specs:
        inputs = spec_inputs(spec)
        if inputs:  # a FORMAT:PATH spec (not a prepared file)
            parse_spec(spec)
        files += inputs
    return files


KEYPOINTS_HELP = "Keypoint set to store: kaggle15 (default), mtfl5, nose or ibug68 (YouTube-Faces only)."


@train_app.command("prepare")
def prepare_cmd(
    data: list[str] = typer.Option(..., "--data",
                                   help="Dataset spec FORMAT:PATH (kaggle|ytf|mtfl|points); repeatable."),
    out: Path = typer.Option(..., "--out", help="Prepared dataset file to write (.npz)."),
    val_fraction: float = typer.Option(0.1, callback=_fraction,
                                       help="Share of identities held out for validation, in [0, 1)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip malformed rows and unreadable images."),
    limit: int | None = typer.Option(None, min=1, help="Use at most this many faces per spec (default: all)."),
    keypoints: str = typer.Option("kaggle15", "--keypoints", help=KEYPOINTS_HELP),
) -> None:
    """Detect, crop (96 px box + margin) and store every face of the given datasets in one compact file."""
    from engines.output_files import check_outputs
    from train.datasets import parse_spec
    from train.prepare import prepare

    for spec in data:  # the format, the label file's presence and text before the output checks
        parse_spec(spec)
    check_outputs(_spec_files(list(data)), {"--out": out})
    with _progress() as progress:
        meta = prepare(list(data), str(out), val_fraction, skip_bad, limit, progress=progress,
                       keypoints=keypoints)
    c = meta["calibration"]
    typer.echo(f"wrote {out}: {meta['n_faces']} faces ({meta['n_val']} validation), "
               f"{meta['n_detector_boxes']} Haar boxes, {meta['n_skipped']} skipped, "
               f"{out.stat().st_size / 2**20:.1f} MiB, {meta['keypoints']} keypoints")
    typer.echo(f"landmark->Haar box calibration: along={c['along']:.3f} across={c['across']:.3f} "
               f"size_eye={c['size_eye']:.3f} size_mouth={c['size_mouth']:.3f}")
    for line in meta["skipped_examples"][:5]:
        typer.echo(f"skipped: {line}")


def _attr_weights(attr_weights: str, multitask: bool) -> dict[str, float]:
    """--attr-weights parsed, or every attribute at the default lambda under --multitask."""
    from train.multitask import DEFAULT_WEIGHT, parse_attr_weights

    try:
        weights = parse_attr_weights(attr_weights) if attr_weights else {}
    except ValueError as err:
        raise UserError(f"--attr-weights: {err}") from None
    if multitask and not weights:
        weights = parse_attr_weights(f"all={DEFAULT_WEIGHT}")
    return weights


@train_app.command("fit")
def fit_cmd(
    data: Path = typer.Option(..., "--data", help="Prepared dataset from `train prepare`."),
    out: Path = typer.Option(..., "--out", help="Run directory (checkpoints, metrics.csv, loss_curve.png)."),
    arch: str = typer.Option(None, help="Architecture from the registry: mlresnet, mlresnet_fast, cnn, mlp, "
                                        "resnet18 (default: the --init model's, or the run's with --resume, else "
                                        "mlresnet)."),
    loss: str = typer.Option("masked", help="masked (MSE, ignores missing labels), wing (masked Wing loss) or "
                                            "complete-only (drops partial rows)."),
    epochs: int = typer.Option(30, min=1),
    batch: int = typer.Option(256, min=1),
    lr: float = typer.Option(1e-4, callback=_positive),
    weight_decay: float = typer.Option(5e-4, min=0.0),
    schedule: str = typer.Option("constant", help="Learning-rate schedule: constant or cosine."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    amp: bool = typer.Option(True, help="bf16 mixed precision on CUDA."),
    seed: int = typer.Option(0, min=0),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    limit: int | None = typer.Option(None, min=1, help=LIMIT_HELP),
    attr_weights: str = typer.Option(
        "", "--attr-weights",
        help="Multi-task: attribute heads with their loss weights, e.g. gender=0.1,smile=0.1,glasses=0.1,pose=0.1."),
    multitask: bool = typer.Option(False, "--multitask", help="All four MTFL attribute heads at lambda 0.1."),
    stop_k: int = typer.Option(5, min=1,
                               help="Task-wise early stopping (TCDCN): epochs in the training-error strip."),
    stop_epsilon: float = typer.Option(8.0, help="Task-wise early stopping (TCDCN): threshold epsilon (a head stops "
                                                 "when training trend x validation rise exceeds it)."),
    init: str = typer.Option(None, "--init", help="Start from these weights (same keypoints; every tensor of matching "
                                                  "name and shape, so mlresnet_fast can start from mlresnet): a "
                                                  "checkpoint, an exported ONNX model, or 'default' (the packaged "
                                                  "model)."),
    pose_balance: float = typer.Option(0.0, "--pose-balance", min=0.0, max=1.0,
                                       help="Draw MTFL head poses (profile / turned / frontal) evenly: 0 = every "
                                            "face once per epoch, 1 = each pose group equally often."),
    arch_option: list[str] = typer.Option(
        [], "--arch-option", help="Model option KEY=VALUE, repeatable: fc=1000, dropout=0.3, widths=64,128,256."),
    augment: float = typer.Option(1.0, min=0.0, help="Augmentation strength: x the default rotation/scale/shift/"
                                                     "brightness ranges (0 = none, flips off too)."),
    save_every: int = typer.Option(1, "--save-every", min=1,
                                   help="Write last.pt/best.pt every N epochs (the last epoch is always saved)."),
) -> None:
    """Fit a keypoint model with Adam; keeps last.pt and best.pt (by validation RMSE), Ctrl-C safe.

    A --out folder holding a run needs --resume (continue) or --force (start over)."""
    from train.prepare import require_prepared_file
    from train.run_folder import claim_run_folder

    require_prepared_file(str(data))  # the cheap checks first: no torch import for a refused command
    if init == "default":
        from engines.select import default_model_path

        init = default_model_path()
    if init is not None and not os.path.isfile(init):
        raise UserError(f"--init: no such file: {init}")
    require("torch", "training")  # before the run folder is claimed
    require("matplotlib", "training (its loss curve)")
    from engines.models import MODELS, create_model, parse_arch_options
    from train.augment import AugmentParams
    from train.fit import FitConfig, check_fit, fit, fit_summary, model_arch
    from train.masked_loss import LOSSES

    if loss not in LOSSES:
        raise UserError(f"unknown --loss {loss!r}; known: {', '.join(LOSSES)}")
    if schedule not in ("constant", "cosine"):
        raise UserError("--schedule must be constant or cosine")
    inherited: dict = {}
    if arch is None:  # fine-tuning or resuming keeps the model's own architecture and options
        source = os.path.join(out, "last.pt") if resume else init
        arch, inherited = model_arch(source) if source and os.path.isfile(source) else ("mlresnet", {})
    if arch not in MODELS:
        raise UserError(f"unknown --arch {arch!r}; known: {', '.join(MODELS)}")
    try:
        arch_kwargs = parse_arch_options(arch_option) if arch_option else inherited
        create_model(arch, **arch_kwargs)  # fails fast on an option the architecture does not take
    except ValueError as err:
        raise UserError(f"--arch-option: {err}") from None
    augment_params = AugmentParams.scaled(augment)  # --augment >= 0 is checked by Typer
    cfg = FitConfig(str(data), str(out), arch, loss, epochs, batch, lr, weight_decay, schedule, device, amp,
                    seed, resume, force=force, limit=limit, attr_weights=_attr_weights(attr_weights, multitask),
                    stop_k=stop_k, stop_epsilon=stop_epsilon, init=init,
                    augment=augment_params, arch_kwargs=arch_kwargs, save_every=save_every,
                    pose_balance=pose_balance)
    check_fit(cfg)  # faces for this loss and --limit, a known --device
    claim_run_folder(out, resume, force, inputs=[data, init])
    try:
        result = fit(cfg, log=typer.echo)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        raise UserError(str(err)) from None
    summary = fit_summary(cfg, result)
    if summary:  # under torchrun, rank 0's alone
        typer.echo(summary)


@train_app.command("evaluate")
def evaluate_cmd(
    model: Path = typer.Option(None, "--model",
                               help="Checkpoint (.pt), ONNX model or TensorRT engine.",
                               show_default="the packaged model"),
    data: str = typer.Option(..., "--data",
                             help="Dataset spec FORMAT:PATH (all rows) or a prepared file (validation split)."),
    crop: str = typer.Option("landmarks",
                             help="landmarks (calibrated box), detector (the face detector, end to end: the crop the "
                                  "tracker writes a new face from, placed by the model's points in the detector's "
                                  "box), or prepared (stored crops)."),
    split: str = typer.Option("all",
                              help="For a dataset spec: all rows, or validation (the split `prepare` holds out)."),
    backend: str = typer.Option("auto", help="Inference backend: auto, onnxruntime, torch, tensorrt."),
    cascades: str = typer.Option(None, "--cascades",
                                 help="--crop detector: OpenCV cascades, comma-separated (frontal, alt2, alt, profile, "
                                      "or a file; profile ones also run mirrored).", show_default="the tracker's"),
    angles: str = typer.Option(None, "--angles",
                               help="--crop detector: in-plane rotations (degrees) searched with the first cascade, "
                                    "comma-separated, or none.", show_default="the tracker's"),
    json_out: Path = typer.Option(None, "--json", help="Write the metrics here as JSON."),
    ced: Path = typer.Option(None, "--ced", help="Write the cumulative error distribution PNG here."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip malformed rows of a dataset spec (as prepare)."),
    worst: Path = typer.Option(None, "--worst", help="Write a PNG of the 24 worst faces (predicted and true points)."),
    flip_average: bool | None = typer.Option(
        None, "--flip-average/--no-flip-average",
        help="Average each face's points with its mirror image's, as the tracker does by default "
             "(--no-flip-average: the model's own points).", show_default="as the tracker: on where the model "
                                                                           "can be mirrored"),
) -> None:
    """Masked RMSE (96-px crop pixels), failure rate at 10%, inter-ocular NME, detection rate, every metric per
    MTFL head-pose class; with --crop detector, false detections per 100 face-free image regions; attribute
    accuracies for a model with attribute heads. Scored on the model's own keypoint set."""
    from dataclasses import replace

    from engines.output_files import check_outputs
    from engines.select import default_model_path, load_backend
    from tracker.haar import HaarDetector, HaarParams, parse_angles, parse_cascades
    from train.evaluate import evaluate

    params = HaarParams()
    if crop != "detector" and (cascades is not None or angles is not None):
        raise UserError(f"--cascades and --angles set the detector of --crop detector, not --crop {crop}")
    try:
        if cascades is not None:
            params = replace(params, cascades=parse_cascades(cascades))
    except ValueError as err:
        raise UserError(f"--cascades: {err}") from None
    try:
        if angles is not None:
            params = replace(params, angles=parse_angles(angles))
    except ValueError:  # a word, or an angle beyond +-90
        raise UserError(f"--angles {angles}: give degrees within -90..90 separated by commas, e.g. -25,25, "
                        "or none") from None
    model_path = str(model) if model else default_model_path()
    check_outputs([model_path, *(_spec_files([data]) or [data])], {"--json": json_out, "--ced": ced, "--worst": worst})
    if ced or worst:  # before the evaluation, not after it
        require("matplotlib", "--ced" if ced else "--worst")
    try:
        detector = HaarDetector(params) if crop == "detector" else None
    except FileNotFoundError as err:
        raise UserError(f"--cascades: {err}") from None
    from tracker.flip_average import flip_averaged

    engine = flip_averaged(load_backend(model_path, backend), flip_average)
    m = evaluate(engine, data, crop, ced_png=str(ced) if ced else None,
                 json_out=str(json_out) if json_out else None, worst_png=str(worst) if worst else None,
                 split=split, detector=detector, skip_bad=skip_bad)
    per_pose = m.pop("per_pose", None)
    typer.echo(json.dumps({k: v for k, v in m.items() if k != "per_keypoint_rmse_px"}, indent=2))
    typer.echo("per keypoint RMSE (px): " + ", ".join(
        f"{k}={v:.2f}" for k, v in m["per_keypoint_rmse_px"].items() if v is not None))
    if per_pose:
        typer.echo(f"{'pose':<14}{'faces':>7}{'found':>8}{'rmse_px':>9}{'fail':>8}{'NME':>8}{'NME 95% interval':>18}"
                   f"{'NME>10%':>9}")
        for name, p in per_pose.items():
            if not p.get("n_images"):
                typer.echo(f"{name:<14}{p['n_asked']:>7}{p.get('detection_rate', 0.0) if p['n_asked'] else 0:>8.1%}")
                continue
            nme, f10, ci = p["nme_interocular"], p["failure_rate_nme10"], p.get("nme_ci95")
            interval = f"{ci[0]:.4f}-{ci[1]:.4f}" if ci else "-"
            typer.echo(f"{name:<14}{p['n_asked']:>7}{p['detection_rate']:>8.1%}{p['rmse_px']:>9.2f}"
                       f"{p['failure_rate']:>8.2%}{nme if nme is not None else float('nan'):>8.4f}{interval:>18}"
                       f"{f10 if f10 is not None else float('nan'):>9.1%}")
    typer.echo(_evaluate_summary(m))


def _evaluate_summary(m: dict) -> str:
    """The closing line of `train evaluate`: how many faces, the headline metrics, and what produced them."""
    nme, f10 = m.get("nme_interocular"), m.get("failure_rate_nme10")
    scores = f"RMSE {m['rmse_px']:.2f} px" + (f", NME {nme:.2%}, {f10:.1%} of faces over 10%" if nme is not None
                                              else "")
    crops = {"detector": "detector crops (second look)", "landmarks": "landmark crops",
             "prepared": "stored crops"}[m["crop"]]
    points = "flip-averaged" if m["flip_average"] else "the model's own points"
    return (f"done: {m['n_images']} faces ({m['detection_rate']:.1%} found); {scores}; "
            f"{os.path.basename(m['model'])} on {m['backend']}, {crops}, {points}")


@train_app.command("compare")
def compare_cmd(
    data: Path = typer.Option(..., "--data", help="Prepared dataset from `train prepare`."),
    out: Path = typer.Option(..., "--out", help="Directory for the runs, table.md and loss_curves.png."),
    epochs: int = typer.Option(30, min=1),
    batch: int = typer.Option(256, min=1),
    lr: float = typer.Option(1e-4, callback=_positive),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    limit: int | None = typer.Option(None, min=1, help=LIMIT_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue each run of --out that has a last.pt."),
    force: bool = typer.Option(False, "--force", help="Start over the runs --out already holds."),
    archs: str = typer.Option(
        "", "--archs",
        help="Comma-separated architectures, each trained with the masked loss (e.g. mlresnet,cnn,mlp,resnet18); "
             "default: the paper's three runs."),
) -> None:
    """Train models on one split and write a Table-2 style comparison (default: the paper's three runs)."""
    require("torch", "training")
    require("matplotlib", "training (its loss curves)")
    from engines.models import MODELS
    from train.compare import PAPER_RUNS, compare
    from train.fit import FitConfig

    if resume and force:
        raise UserError("--resume and --force exclude each other: continue the runs, or start them over")
    runs = PAPER_RUNS
    if archs:
        names = list(dict.fromkeys(a.strip() for a in archs.split(",") if a.strip()))
        unknown = [a for a in names if a not in MODELS]
        if unknown or not names:
            raise UserError(f"--archs: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(MODELS)}")
        runs = tuple((a, "masked") for a in names)
    cfg = FitConfig(str(data), str(out), epochs=epochs, batch=batch, lr=lr, device=device, limit=limit,
                    resume=resume, force=force)
    typer.echo(compare(cfg, str(out), runs=runs, log=typer.echo))


@train_app.command("refine")
def refine_cmd(
    stage1: Path = typer.Option(..., "--stage1", help="First-stage checkpoint (.pt), e.g. RUN/best.pt."),
    data: Path = typer.Option(..., "--data", help="The prepared dataset the first stage was trained on."),
    out: Path = typer.Option(..., "--out", help="Run directory of the second stage."),
    zoom: float = typer.Option(
        1.2, min=0.5, max=3.0,
        help="Stage-2 crop: the face box's side / zoom, centred and turned upright by the stage-1 points "
             "(above 3 the eyes and mouth leave the crop; below 0.5 the face fills less than half of it)."),
    epochs: int = typer.Option(10, min=1),
    batch: int = typer.Option(256, min=1),
    lr: float = typer.Option(1e-4, callback=_positive),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    seed: int = typer.Option(0, min=0),
    limit: int | None = typer.Option(None, min=1, help="The --limit the first stage was fitted with (same faces)."),
    init: bool = typer.Option(True, help="Start the second stage from the first stage's weights."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Cascade refinement (Sun et al.): re-crop every face around the first stage's points, fit a second
    stage on those crops, export both to ONNX and report the accuracy gain and the cost per face."""
    from engines.model_file import require_model_file
    from engines.output_files import atomic_path, check_outputs
    from train.prepare import require_prepared_file
    from train.run_folder import check_run_folder, claim_run_folder

    require("torch", "train refine")  # before the run folder is claimed
    require("matplotlib", "train refine (its loss curve)")
    require_model_file(str(stage1))
    require_prepared_file(str(data))
    check_run_folder(out, force=force, can_resume=False)
    from engines.export import export_onnx
    from engines.select import load_backend
    from train.fit import FitConfig, fit, pick_device
    from train.refine import check_stage1, evaluate_cascade, prepare_stage2

    pick_device(device)
    first = load_backend(str(stage1), "torch")
    check_stage1(first, str(data))
    claim_run_folder(out, force=force, inputs=[stage1, data], can_resume=False)
    for name in ("stage2.npz", "stage1.onnx", "stage2.onnx", "cascade.json"):
        check_outputs([stage1, data], {"--out": out / name})
    stage2_data = str(out / "stage2.npz")
    with _progress() as progress:
        meta = prepare_stage2(str(data), first, stage2_data, zoom, limit or None, seed, progress)
    typer.echo(f"wrote {stage2_data}: {meta['n_faces']} faces re-cropped around {stage1}'s points "
               f"(zoom {zoom:g}, {meta['n_val']} validation)")
    cfg = FitConfig(stage2_data, str(out), first.info.arch, epochs=epochs, batch=batch, lr=lr, device=device,
                    seed=seed, arch_kwargs=dict(first.info.extra.get("arch_kwargs") or {}),
                    init=str(stage1) if init else None, force=force)
    try:
        fit(cfg, log=typer.echo)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        raise UserError(str(err)) from None
    onnx1 = export_onnx(str(stage1), str(out / "stage1.onnx"))
    onnx2 = export_onnx(str(out / "best.pt"), str(out / "stage2.onnx"))
    result = evaluate_cascade(load_backend(onnx1, "onnxruntime"), load_backend(onnx2, "onnxruntime"), str(data),
                              limit or None, seed)
    with atomic_path(out / "cascade.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    s1, s2, ms = result["stage1"], result["cascade"], result["ms_per_face"]
    typer.echo(f"validation faces: {result['n_images']}; RMSE {s1['rmse_px']:.3f} -> {s2['rmse_px']:.3f} px "
               f"(gain {result['rmse_gain_px']:+.3f}); failure rate {100 * s1['failure_rate']:.2f}% -> "
               f"{100 * s2['failure_rate']:.2f}%; ms per face (ONNX Runtime CPU, batch 1): stage 1 "
               f"{ms['stage1']:.2f}, stage 2 {ms['stage2']:.2f}")
    typer.echo(f"wrote {out / 'cascade.json'}, {onnx2}")


@train_app.command("report")
def report_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory, or a directory of runs (e.g. from compare)."),
    data: Path = typer.Option(None, "--data", help="Prepared dataset for CED curves and prediction grids."),
    out: Path = typer.Option(None, "--out", help="Where to write the PNGs (default RUN_DIR/report)."),
) -> None:
    """PNGs: loss curves, attribute accuracies, CED curves per model, validation crops with predicted and true
    points, first-layer filters."""
    require("torch", "train report")
    require("matplotlib", "train report")
    from train.report import report

    try:
        paths = report(str(run_dir), str(data) if data else None, str(out) if out else None)
    except FileNotFoundError as err:
        raise UserError(str(err)) from None
    for p in paths:
        typer.echo(f"wrote {p}")


@train_app.command("face-check")
def face_check_cmd(
    data_root: Path | None = typer.Option(
        None, "--data-root", help="The shared data folder, holding ytf/training_frames_keypoints.csv and "
                                  "mtfl/training.txt.",
        show_default="$FKD_SHARED_DATA, else ../shared/data beside the repository"),
    out: Path = typer.Option(..., "--out", help="Weights file to write (.npz); the tracker's own is "
                                                "tracker/assets/face_check.npz."),
    per_source: int = typer.Option(4000, "--per-source", min=1,
                                   help="Images drawn from each source, in each split."),
    hidden: int = typer.Option(128, "--hidden", min=0, help="Hidden ReLU units (0: logistic regression)."),
    epochs: int = typer.Option(30, "--epochs", min=1, help="Passes over the training crops."),
) -> None:
    """Train the face/non-face check that guards new tracks (HOG, one hidden layer) on the shared faces' training
    split; prints its scores on both splits. The defaults reproduce the shipped weights byte for byte."""
    from tracker.config import DEFAULT_TRACK
    from train.datasets import parse_spec, shared_data_dir
    from train.face_check import source_specs, train_face_check

    root = data_root or shared_data_dir()
    where = f"--data-root {root}" + ("" if data_root else " (the default; set --data-root or FKD_SHARED_DATA)")
    if not root.is_dir():
        raise UserError(f"{where}: {'not a folder' if root.exists() else 'no such folder'}")
    specs = source_specs(root)
    lacking = [os.path.relpath(spec.partition(":")[2], root) for spec in specs
               if not os.path.isfile(spec.partition(":")[2])]
    if lacking:
        raise UserError(f"{where} has no {' and no '.join(lacking)} (the face check trains on both)")
    for spec in specs:  # each label file is text
        parse_spec(spec)
    if out.suffix != ".npz":  # np.savez would add .npz to any other name (and to the temp file's)
        raise UserError(f"--out {out}: the weights file must end in .npz")
    result = train_face_check(root, out, per_source, hidden, epochs, log=typer.echo)
    train, val = result["training"], result["validation"][DEFAULT_TRACK.face_check_min]
    net = f"{hidden} hidden units" if hidden else "logistic regression"
    typer.echo(f"done: face check ({net}, {epochs} epochs) trained on {train['faces']} face and "
               f"{train['non_faces']} non-face crops; validation at P(face) >= {DEFAULT_TRACK.face_check_min}: "
               f"{val['faces_accepted']:.1%} of faces, {val['non_faces_accepted']:.2%} of non-faces accepted; "
               f"wrote {out}")
