"""The fkd-track command line: wires sources, detector, crops, engine, tracker, smoothing and outputs.

Commands are plain functions with typed options; user errors print one line and exit with status 2.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import typer

from engines.errors import UserError
from engines.output_files import atomic_path, check_outputs
from tracker.config import (
    BENCH_BATCHES,
    DEFAULT_CAMERA,
    DEFAULT_OVERLAY,
    DEFAULT_SMOOTH,
    DEFAULT_TRACK,
    ENGINE_THREADS,
    CameraParams,
    OverlayParams,
    SmoothParams,
    TrackParams,
)
from tracker.haar import HaarParams

app = typer.Typer(
    name="fkd-track",
    help="Real-time facial keypoint tracker: 15 Kaggle keypoints on every face, live or from video. "
    "Add --debug (or FKD_DEBUG=1) to see the traceback of an unexpected error.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_HAAR = HaarParams()
MAX_BENCH_BATCH = 1024  # one batch of 96x96 crops this size needs about 2.4 GB in ONNX Runtime

# Options shared by the live view, `video` and `bench` (one definition each).
MODEL = typer.Option(None, "--model", help="Model file: .onnx, .pt or .engine (default: the packaged model).")
BACKEND = typer.Option("auto", "--backend", help="Inference backend: auto, onnxruntime, torch or tensorrt.")
DETECT_EVERY = typer.Option(
    DEFAULT_TRACK.detect_every, "--detect-every", min=1,
    help="Run the face detector every N frames (and when a track's confidence drops); 1 = every frame.",
)
SMOOTH = typer.Option(True, "--smooth/--no-smooth", help="One Euro smoothing of the keypoints (off: raw).")
MIN_CUTOFF = typer.Option(
    DEFAULT_SMOOTH.min_cutoff, "--min-cutoff", min=0.001, max=1000.0,
    help="One Euro min cutoff (Hz).",
)
BETA = typer.Option(DEFAULT_SMOOTH.beta, "--beta", min=0.0, max=1000.0, help="One Euro speed coefficient.")
D_CUTOFF = typer.Option(
    DEFAULT_SMOOTH.d_cutoff, "--d-cutoff", min=0.001, max=1000.0, help="One Euro speed cutoff (Hz)."
)
SCALE_FACTOR = typer.Option(
    _HAAR.scale_factor, "--scale-factor", min=1.01, max=10.0, help="Haar pyramid scale step."
)
MIN_NEIGHBORS = typer.Option(
    _HAAR.min_neighbors, "--min-neighbors", min=0, max=1000, help="Haar neighbours per face."
)
MIN_FACE = typer.Option(
    _HAAR.min_size, "--min-face", min=8, max=16384, help="Smallest face side to detect (pixels)."
)
MAX_SIDE = typer.Option(
    _HAAR.max_side, "--max-side", min=64, max=16384,
    help="Detect on frames shrunk to this longer side.",
)
LABELS = typer.Option(
    DEFAULT_OVERLAY.labels, "--labels",
    help="Point labels on the overlay: none, index or name.",
)
CSV = typer.Option(None, "--csv", help="Write the keypoint table here (one row per face per frame).")
OUT = typer.Option(None, "--out", help="Write the annotated video here (.mp4, .m4v, .mov, .avi or .mkv).")
FOLDER_FPS = typer.Option(25.0, "--folder-fps", min=0.01, max=1000.0, help="Frame rate of image folders.")
HEADLESS = typer.Option(False, "--headless", help="No window: progress and FPS on the terminal only.")
ATTRIBUTES = typer.Option(
    False, "--attributes",
    help="Also run the model's attribute heads (a multi-task model: gender, smile, glasses, pose) in the same "
    "engine call: shown under each face box, and in the CSV as two columns per head after the coordinates, "
    "NAME (most probable class, e.g. gender: male|female, smile/glasses: no|yes, pose: left profile|left|"
    "frontal|right|right profile) and NAME_p (its probability, 0-1); empty on rows without a face. "
    "A model without heads is an error.",
)
FLIP_AVERAGE = typer.Option(
    None, "--flip-average/--no-flip-average",
    help="Average each face's points with those of its mirror image (swapped back left for right), both in one "
    "engine call (each stage's, with --refine): about 3% lower error, for 1.5-1.6x the inference time per face. "
    "Written and drawn points only: who is tracked, and how sure, stays as without it. Default: on where the model "
    "names its left/right flip pairs (the packaged one does), off where it names none; --flip-average refuses "
    "such a model.", show_default="on where the model can be mirrored",
)
REFINE = typer.Option(
    None, "--refine",
    help="Cascade second stage (Sun et al.; from `fkd-track train refine`, e.g. RUN/stage2.onnx): re-crops "
    "every face around the first stage's points and predicts them again, all faces in one batch; timed as "
    "the 'refine' stage. Opened with the backend its file type picks.",
)


def _settings(detect_every: int, smooth: bool, min_cutoff: float, beta: float, d_cutoff: float) -> tuple:
    return (
        TrackParams(detect_every=detect_every),
        SmoothParams(enabled=smooth, min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff),
    )


def _haar(scale_factor: float, min_neighbors: int, min_face: int, max_side: int):
    from tracker.haar import HaarDetector

    return HaarDetector(HaarParams(scale_factor, min_neighbors, min_face, max_side))


def _overlay(labels: str) -> OverlayParams:
    if labels not in ("none", "index", "name"):
        raise UserError(f"--labels must be none, index or name, not {labels!r}")
    return OverlayParams(labels=labels)


def _stage2(refine: Path | None, threads: int | None = ENGINE_THREADS):
    """The --refine second-stage backend (the backend its file type picks), or None."""
    from engines.select import load_backend

    return None if refine is None else load_backend(str(refine), threads=threads)


def _pipeline(model: Path | None, backend: str, detector, track: TrackParams, smooth: SmoothParams,
              attributes: bool = False, refine: Path | None = None, flip_average: bool | None = None,
              threads: int | None = ENGINE_THREADS):
    """The tracker for one stream; `threads`: ONNX Runtime threads of its engines (None: one per core, for a
    loop with nothing else running beside it)."""
    from engines.select import load_backend
    from tracker.flip_average import flip_averaged_stages
    from tracker.pipeline import Pipeline

    engine, stage2 = flip_averaged_stages(
        load_backend(None if model is None else str(model), backend, threads=threads), _stage2(refine, threads),
        flip_average)
    return Pipeline(detector, engine, track, smooth, attributes=attributes, refine=stage2)


def _check_outputs(inputs: list[Path], model: Path | None, refine: Path | None, outputs: dict) -> None:
    """Refuse, before anything opens, outputs onto an input (the model files included) or onto each other,
    a video name we cannot write, and output folders that cannot be written."""
    from engines.select import default_model_path
    from tracker.video_out import video_fourcc

    models = [model if model is not None else Path(default_model_path())] + ([refine] if refine else [])
    check_outputs([*inputs, *models], outputs)
    if outputs.get("--out") is not None:
        video_fourcc(outputs["--out"])


def _outputs(csv: Path | None, out: Path | None, pipeline, fps: float | None):
    from tracker.csv_out import KeypointCsvWriter
    from tracker.keypoints import KeypointSet
    from tracker.video_out import AnnotatedVideoWriter

    kps: KeypointSet = pipeline.kps
    video = AnnotatedVideoWriter(out, fps or 25.0) if out is not None else None
    writer = KeypointCsvWriter(csv, kps.columns, list(pipeline.attribute_classes)) if csv is not None else None
    return writer, video


def _wrote(csv: Path | None, writer, out: Path | None, video) -> None:
    """The `wrote` lines, each only for a file that is whole: the video is reopened and its frames counted."""
    if writer is not None:
        _echo_err(f"wrote {csv} ({writer.rows} rows)")
    if video is not None:
        _echo_err(f"wrote {out} ({video.verify()} frames)")


def _kept(writer, video) -> str:
    """What an input that stops early leaves of the outputs, for its error line ('' when nothing was written)."""
    if (writer is not None and writer.opened) or (video is not None and video.frames):
        return "; output for the frames read was kept"
    return ""


def _refine_cost(pipeline, stats) -> str | None:
    """With --refine, one line with the second stage's cost per face next to the first stage's."""
    if pipeline.stage2 is None:
        return None
    return (f"refine: {stats.ms_per_face('refine'):.2f} ms per face over {stats.crops} faces "
            f"(first stage infer {stats.ms_per_face('infer'):.2f} ms per face)")


def _close(*things) -> None:
    """Close every one of `things` (None skipped), even when an earlier close fails; the first error is raised."""
    with ExitStack() as stack:
        for t in things:
            if t is not None:
                stack.callback(t.close)


def _echo_err(msg: str) -> None:
    typer.echo(msg, err=True)


@app.callback(invoke_without_command=True)
def live(
    ctx: typer.Context,
    camera: int | None = typer.Option(
        None, "--camera", min=0, max=1023, help="Track this camera live (e.g. 0)."
    ),
    width: int = typer.Option(
        DEFAULT_CAMERA.width, "--width", min=1, max=16384, help="Camera frame width to ask for."
    ),
    height: int = typer.Option(
        DEFAULT_CAMERA.height, "--height", min=1, max=16384, help="Camera frame height to ask for."
    ),
    fps: float = typer.Option(
        DEFAULT_CAMERA.fps, "--fps", min=1.0, max=1000.0, help="Camera frame rate to ask for."
    ),
    buffer: int = typer.Option(
        DEFAULT_CAMERA.buffer, "--buffer", min=1, max=64, help="Camera driver buffer (1: lowest latency)."
    ),
    headless: bool = HEADLESS,
    csv: Path | None = CSV,
    out: Path | None = OUT,
    model: Path | None = MODEL,
    backend: str = BACKEND,
    detect_every: int = DETECT_EVERY,
    smooth: bool = SMOOTH,
    min_cutoff: float = MIN_CUTOFF,
    beta: float = BETA,
    d_cutoff: float = D_CUTOFF,
    scale_factor: float = SCALE_FACTOR,
    min_neighbors: int = MIN_NEIGHBORS,
    min_face: int = MIN_FACE,
    max_side: int = MAX_SIDE,
    labels: str = LABELS,
    attributes: bool = ATTRIBUTES,
    refine: Path | None = REFINE,
    flip_average: bool | None = FLIP_AVERAGE,
) -> None:
    """Live view: `fkd-track --camera 0` tracks the webcam (q or Esc quits). Commands below do the rest."""
    if ctx.invoked_subcommand is not None:
        if camera is not None:
            raise UserError("--camera starts the live view; use it without a command")
        return
    if camera is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    from tracker.live import require_display, run_live
    from tracker.sources import CameraSource

    overlay = _overlay(labels)
    _check_outputs([], model, refine, {"--csv": csv, "--out": out})
    source = CameraSource(camera, CameraParams(width=width, height=height, fps=fps, buffer=buffer,
                                               open_timeout_s=DEFAULT_CAMERA.open_timeout_s))
    writer = video = None
    try:
        if not headless:
            require_display()
        track, smoothing = _settings(detect_every, smooth, min_cutoff, beta, d_cutoff)
        detector = _haar(scale_factor, min_neighbors, min_face, max_side)
        pipeline = _pipeline(model, backend, detector, track, smoothing, attributes, refine, flip_average)
        writer, video = _outputs(csv, out, pipeline, source.fps)
        h, w = source.frame_size
        from tracker.flip_average import FlipAveraged

        flipped = ", flip-averaged" if isinstance(pipeline.backend, FlipAveraged) else ""
        _echo_err(f"camera {camera}: {w}x{h} at {source.fps:g} fps, engine {pipeline.backend.name}{flipped}")
        stats, dropped = run_live(source, pipeline, headless, _echo_err, csv=writer, video=video,
                                  overlay=overlay)
    finally:
        _close(writer, video, source)
    _echo_err(f"{stats.frames} frames at {stats.fps:.1f} fps ({dropped} camera frames skipped to keep up)")
    if (cost := _refine_cost(pipeline, stats)) is not None:
        _echo_err(cost)
    _wrote(csv, writer, out, video)


@app.command()
def video(
    inputs: list[Path] = typer.Argument(..., help="Video file(s) or image folder(s), played as one stream."),
    csv: Path | None = CSV,
    out: Path | None = OUT,
    headless: bool = HEADLESS,
    model: Path | None = MODEL,
    backend: str = BACKEND,
    detect_every: int = DETECT_EVERY,
    smooth: bool = SMOOTH,
    min_cutoff: float = MIN_CUTOFF,
    beta: float = BETA,
    d_cutoff: float = D_CUTOFF,
    scale_factor: float = SCALE_FACTOR,
    min_neighbors: int = MIN_NEIGHBORS,
    min_face: int = MIN_FACE,
    max_side: int = MAX_SIDE,
    labels: str = LABELS,
    attributes: bool = ATTRIBUTES,
    refine: Path | None = REFINE,
    flip_average: bool | None = FLIP_AVERAGE,
    folder_fps: float = FOLDER_FPS,
    pipelined: bool = typer.Option(
        True, "--pipelined/--sequential",
        help="Overlap decoding, detection, inference and writing on threads (same rows as --sequential).",
    ),
) -> None:
    """Track every frame of a video (or image folder): keypoint CSV, annotated video, progress bar.

    Shows the frames in a window when a display exists (q or Esc stops early), unless --headless.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tracker.live import Window, display_available
    from tracker.sources import SourceError, open_inputs
    from tracker.stream import run_stream

    overlay = _overlay(labels)
    _check_outputs(inputs, model, refine, {"--csv": csv, "--out": out})
    show = not headless and display_available()
    if not headless and not show:
        _echo_err("no display here: running headless")
    source = open_inputs([str(p) for p in inputs], folder_fps)
    writer = video_out = window = None
    try:
        track, smoothing = _settings(detect_every, smooth, min_cutoff, beta, d_cutoff)
        detector = _haar(scale_factor, min_neighbors, min_face, max_side)
        # --sequential: one frame after another on this thread, so the engine may use every core (the same
        # points, 2-4% more frames/s than on one thread; README "Speed against MediaPipe FaceMesh")
        pipeline = _pipeline(model, backend, detector, track, smoothing, attributes, refine, flip_average,
                             threads=ENGINE_THREADS if pipelined else None)
        writer, video_out = _outputs(csv, out, pipeline, source.fps)
        if show:
            window = Window(f"fkd-track: {source.name} (q or Esc to stop)")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[fps]}"), TimeRemainingColumn())
        with Progress(*columns, console=_stderr_console(), transient=False) as progress:
            task = progress.add_task(source.name, total=source.frame_count, fps="")

            def on_frame(result, image) -> bool:
                progress.update(task, advance=1, fps=f"{result.index + 1} frames")
                return window.show(image) if window is not None else True

            try:
                stats = run_stream(source, pipeline, csv=writer, video=video_out, overlay=overlay,
                                   draw=window is not None or video_out is not None, on_frame=on_frame,
                                   pipelined=pipelined)
            except SourceError as err:  # a truncated input: say what became of the outputs
                raise SourceError(f"{err}{_kept(writer, video_out)}") from None
    finally:
        _close(window, writer, video_out, source)
    _echo_err(
        f"{stats.frames} frames at {stats.fps:.1f} fps; a face in {stats.frames_with_face}; "
        f"{len(stats.face_ids)} face id(s); detector ran on {stats.detections}"
    )
    if (cost := _refine_cost(pipeline, stats)) is not None:
        _echo_err(cost)
    _wrote(csv, writer, out, video_out)


@app.command()
def cameras(
    max_index: int = typer.Option(10, "--max-index", min=1, max=1024, help="Try camera indices 0 .. N-1."),
) -> None:
    """List the camera indices that open and deliver a frame."""
    from tracker.sources import list_cameras

    found = list_cameras(max_index)
    if not found:
        raise UserError(f"no working camera at indices 0-{max_index - 1}; try `fkd-track video FILE`")
    for index, w, h in found:
        typer.echo(f"{index}: {w}x{h}")


@app.command()
def bench(
    video: Path | None = typer.Option(None, "--video", help="Also time this video end to end, two ways."),
    backend: str = typer.Option("auto", "--backend", help="auto, all, or one backend name."),
    batch: str = typer.Option(
        BENCH_BATCHES, "--batch", help=f"Comma-separated batch sizes to time (1 to {MAX_BENCH_BATCH})."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write all results as JSON here."),
    model: Path | None = MODEL,
    seconds: float = typer.Option(
        2.0, "--seconds", min=0.1, max=3600.0, help="Seconds timed per backend and batch."
    ),
    detect_every: int = DETECT_EVERY,
    passes: int = typer.Option(2, "--passes", min=1, max=100, help="End-to-end passes per mode (alternating)."),
    refine: Path | None = typer.Option(
        None, "--refine",
        help="Cascade second stage run after the model end to end (needs --video): its own 'refine' column "
        "and ms per face.",
    ),
    live_sim: float | None = typer.Option(
        None, "--live-sim", min=1.0, help="Also feed --video to the live loop at this frame rate (scaled to "
        "--width x --height, headless) and report capture-to-drawn-frame latency p50/p99."),
    live_seconds: float = typer.Option(10.0, "--live-seconds", min=1.0, help="Length of the --live-sim feed."),
    width: int = typer.Option(DEFAULT_CAMERA.width, "--width", min=16, help="--live-sim frame width."),
    height: int = typer.Option(DEFAULT_CAMERA.height, "--height", min=16, help="--live-sim frame height."),
    flip_average: bool | None = typer.Option(
        None, "--flip-average/--no-flip-average", help="The end-to-end and live modes with or without flip "
        "averaging (each face and its mirror image in one engine call), as `video` runs them; the engine table times "
        "the engine alone.", show_default="as video: on where the model can be mirrored"),
) -> None:
    """Engine throughput (faces/s, p50/p99 per backend and batch) and, with --video, end-to-end frames/s."""
    from engines.bench import format_rows
    from tracker.bench import (
        bench_crops,
        bench_end_to_end,
        bench_engines,
        bench_live,
        engine_label,
        format_end_to_end,
        format_live,
        open_backends,
        speedup,
    )
    from tracker.flip_average import FlipAveraged, flip_averaged, flip_averaged_stages

    sizes = _batch_sizes(batch)
    if refine is not None and video is None:
        raise UserError("--refine is timed end to end: add --video PATH")
    if flip_average and video is None:
        raise UserError("--flip-average is timed end to end: add --video PATH")
    check_outputs([p for p in (video, model, refine) if p is not None], {"--json": json_out})
    if live_sim is not None and video is None:
        raise UserError("--live-sim feeds a video to the live loop: add --video PATH")
    backends, skipped = open_backends(None if model is None else str(model), backend)
    # decided once for both stages, as `video` decides; a model or second stage --flip-average cannot mirror is
    # refused before any timing
    first, stage2 = flip_averaged_stages(backends[0], _stage2(refine), flip_average)
    flipped = isinstance(first, FlipAveraged)
    if stage2 is not None:  # refuse a wrong second stage before any timing
        from tracker.cascade import stage2_zoom

        stage2_zoom(stage2.info, backends[0].info)
    for line in skipped:
        _echo_err(line)
    rows = bench_engines(backends, sizes, seconds, bench_crops(video))
    typer.echo(format_rows(rows))
    report: dict = {"engines": [asdict(r) for r in rows], "skipped": skipped}
    if video is not None:
        track, smoothing = _settings(detect_every, True, DEFAULT_SMOOTH.min_cutoff, DEFAULT_SMOOTH.beta,
                                     DEFAULT_SMOOTH.d_cutoff)
        engine = flip_averaged(_tracking_engine(model, backend, backends), flipped)
        detector = _haar(_HAAR.scale_factor, _HAAR.min_neighbors, _HAAR.min_size, _HAAR.max_side)
        results = bench_end_to_end(video, engine, detector, track, smoothing, passes, refine=stage2)
        ratio = speedup(results)
        typer.echo("")
        label = engine_label(engine) + (", flip-averaged" if flipped else "")
        typer.echo(format_end_to_end(results, label, video.name))
        typer.echo(f"tracking (detector every {track.detect_every} frames) is {ratio:.1f}x faster than "
                   "detecting every frame")
        report["end_to_end"] = {"video": str(video), "backend": engine.name, "flip_average": flipped,
                                "runs": [r.to_json() for r in results], "speedup": ratio,
                                "refine": None if refine is None else str(refine)}
        if live_sim is not None:
            live_result = bench_live(video, engine, detector, track, smoothing, live_sim, (width, height),
                                     live_seconds)
            typer.echo(format_live(live_result))
            report["live"] = live_result.to_json()
    if json_out is not None:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(report, indent=2))
        _echo_err(f"wrote {json_out}")


def _tracking_engine(model: Path | None, backend: str, opened: list):
    """The engine `video` would run, for bench's end-to-end runs: with `all`, the file `auto` picks (e.g. the
    INT8 sibling); an ONNX Runtime one opened again on the tracker's threads (ENGINE_THREADS), where the engine
    table timed it on every core; another backend (TensorRT, torch) is the one already open."""
    from engines.select import load_backend

    engine = opened[0]
    if backend == "all":  # `auto`'s choice, opened as the tracker opens it
        engine = load_backend(None if model is None else str(model), "auto", threads=ENGINE_THREADS)
        if engine.name == "onnxruntime":
            return engine
        return next((b for b in opened if b.info.path == engine.info.path), engine)
    if engine.name != "onnxruntime":
        return engine
    return load_backend(engine.info.path, "onnxruntime", threads=ENGINE_THREADS)


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise UserError(f"--batch wants positive integers with commas (e.g. {BENCH_BATCHES}), not {text!r}")
    if max(sizes) > MAX_BENCH_BATCH:
        raise UserError(f"--batch {max(sizes)} is too large: at most {MAX_BENCH_BATCH} crops per batch")
    return sizes


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _register() -> None:
    """Attach the command groups that live beside the tracker (train needs torch only when run)."""
    from engines.cli import export
    from tracker.batch import batch
    from tracker.calibration import quantize
    from tracker.doctor import doctor
    from train.cli import train_app

    app.add_typer(train_app, name="train")
    app.command("export")(export)
    app.command("batch")(batch)
    app.command("doctor")(doctor)
    app.command("quantize")(quantize)


_register()
