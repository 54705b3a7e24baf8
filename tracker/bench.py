"""`fkd-track bench`: the engine table (engines/bench.py harness, per backend and batch size), the end-to-end
run of a video through the whole tracker (tracking and detecting every frame, one thread, per-stage table; and
tracking pipelined: wall frames/s of the concurrent loop), with wall and CPU ms per stage, and the live path fed
a clip at a camera's rate (`--live-sim FPS`): capture-to-drawn-frame latency p50/p99.

End to end, nothing is written or shown; drawing is done into a copy of each frame so its cost is counted.
With a cascade second stage (--refine) its cost is its own stage, "refine", also given in ms per face.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace

import cv2
import numpy as np

from engines.backend import Backend
from engines.bench import BenchRow, bench_backend
from engines.errors import UserError
from tracker.config import SmoothParams, TrackParams
from tracker.crop import crop_face
from tracker.haar import HaarDetector
from tracker.live import live_opencv_threads
from tracker.pipeline import Pipeline
from tracker.results import REFINE_STAGE, stage_names
from tracker.sources import Frame, FrameSource, LatestFrameSource, VideoSource
from tracker.stream import StreamStats, run_stream


def crops_from_frames(frames: Iterable[np.ndarray], max_faces: int = 64, every: int = 1) -> np.ndarray:
    """Haar-detect faces in BGR/grey frames and cut them with tracker.crop.crop_face: (N, 96, 96) uint8."""
    detector, out = HaarDetector(), []
    for i, frame in enumerate(frames):
        if i % every:
            continue
        for box in detector.detect(frame):
            out.append(crop_face(frame, box)[0])
            if len(out) >= max_faces:
                return np.stack(out)
    if not out:
        raise ValueError("no face found in the frames given")
    return np.stack(out)


def crops_from_video(path: str | os.PathLike, max_faces: int = 64, every: int = 3) -> np.ndarray:
    """Face crops from a real video (every `every`-th frame), for benchmark input."""
    with VideoSource(path) as source:
        return crops_from_frames((f.image for f in source), max_faces, every)


MODES = ("tracking", "detect every frame", "tracking, pipelined")


@dataclass
class EndToEndResult:
    """All passes of one mode over the video."""

    mode: str  # one of MODES
    detect_every: int
    passes: int
    frames: int  # per pass
    detections: int  # frames per pass on which the detector ran
    frames_with_face: int  # per pass
    fps: float  # over all passes
    stage_ms: dict[str, float]  # mean per frame
    ms_per_face: dict[str, float]  # "infer" (and "refine" with a second stage): mean ms per face sent to it
    # mean CPU ms per frame: per stage, the CPU time of the thread(s) that ran it (detection rounds on the
    # look-ahead or live detection thread counted in "detect", those started ahead and unused too); "total": the
    # whole process (ONNX Runtime's own pool threads included)
    cpu_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def bench_end_to_end(
    video: str | os.PathLike,
    backend: Backend,
    detector: HaarDetector,
    track: TrackParams,
    smooth: SmoothParams,
    passes: int = 2,
    refine: Backend | None = None,
) -> list[EndToEndResult]:
    """`passes` runs over `video` in each mode (MODES: tracking (track.detect_every) and detecting every frame
    on one thread, and tracking pipelined), in alternating order (T D P, P D T, ...) so that every mode meets
    the same load from other programs. `refine`: a cascade second stage run on every face after the first
    (timed as the "refine" stage)."""
    for engine in (backend, refine):  # load and warm the engines outside the timing
        if engine is not None:
            size = engine.info.input_size
            engine.predict(np.zeros((1, size, size), np.uint8))
    modes = {MODES[0]: track, MODES[1]: replace(track, detect_every=1), MODES[2]: track}
    runs: dict[str, list[StreamStats]] = {m: [] for m in modes}
    cpu_total: dict[str, float] = dict.fromkeys(modes, 0.0)
    for i in range(passes):
        for mode in list(modes)[:: 1 if i % 2 == 0 else -1]:
            with VideoSource(video) as source:
                pipeline = Pipeline(detector, backend, modes[mode], smooth, refine=refine, cpu_timing=True)
                c = time.process_time()
                stats = run_stream(source, pipeline, draw=True, pipelined=mode == MODES[2])
                cpu_total[mode] += (time.process_time() - c) * 1000.0
                pipeline.close()
                stats.cpu_ms["detect"] = stats.cpu_ms.get("detect", 0.0) + pipeline.detect_cpu_ms
                runs[mode].append(stats)
    out = []
    for mode, stats in runs.items():
        frames = sum(s.frames for s in stats)
        seconds = sum(s.seconds for s in stats)
        crops = sum(s.crops for s in stats)
        per_face = ["infer", REFINE_STAGE] if refine is not None else ["infer"]
        stages = stage_names(stats[0].stage_ms)
        cpu = {st: round(sum(s.cpu_ms.get(st, 0.0) for s in stats) / max(frames, 1), 3) for st in stages}
        out.append(EndToEndResult(
            mode=mode, detect_every=modes[mode].detect_every, passes=passes, frames=stats[0].frames,
            detections=stats[0].detections, frames_with_face=stats[0].frames_with_face,
            fps=frames / seconds if seconds > 0 else 0.0,
            stage_ms={st: round(sum(s.stage_ms.get(st, 0.0) for s in stats) / max(frames, 1), 3)
                      for st in stages},
            ms_per_face={st: round(sum(s.stage_ms.get(st, 0.0) for s in stats) / max(crops, 1), 3)
                         for st in per_face},
            cpu_ms={**cpu, "total": round(cpu_total[mode] / max(frames, 1), 3)},
        ))
    return out


@dataclass
class LiveResult:
    """The live path fed a clip at a camera's rate, headless: what a user of `fkd-track --camera` would see."""

    fps_in: float  # the rate frames were delivered at
    size: tuple[int, int]  # (width, height) of the delivered frames
    delivered: int
    processed: int  # frames tracked and drawn (the others were skipped as stale, as with a camera)
    fps: float  # frames tracked per second
    latency_ms: dict[str, float]  # capture to drawn frame: p50, p99, max
    detections: int  # detection rounds whose boxes arrived
    frames_with_face: int

    def to_json(self) -> dict:
        return asdict(self)


class PacedFrames(FrameSource):
    """Frames in memory delivered at `fps` like a camera's, each stamped (perf_counter) as it is delivered."""

    def __init__(self, images: list[np.ndarray], fps: float, name: str = "clip") -> None:
        self.images, self.fps, self.name = images, fps, name
        self.frame_count = len(images)
        self.stamps: dict[int, float] = {}

    def __iter__(self):
        start = time.perf_counter()
        for i, image in enumerate(self.images):
            delay = start + i / self.fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.stamps[i] = time.perf_counter()
            yield Frame(i, i * 1000.0 / self.fps, image)


def live_frames(video: str | os.PathLike, size: tuple[int, int], count: int) -> list[np.ndarray]:
    """`count` frames of the video (played again from the start as needed: a scene cut at each restart),
    scaled to `size` (width, height) as a camera of that size would deliver them; decoded up front."""
    with VideoSource(video) as source:
        clip = [cv2.resize(f.image, size, interpolation=cv2.INTER_LINEAR) for f in source]
    return [clip[i % len(clip)] for i in range(count)]


def bench_live(
    video: str | os.PathLike, backend: Backend, detector: HaarDetector, track: TrackParams, smooth: SmoothParams,
    fps: float = 30.0, size: tuple[int, int] = (640, 480), seconds: float = 10.0,
) -> LiveResult:
    """The live loop (newest frame only, asynchronous detection, drawing with the HUD), fed the video at `fps`
    for `seconds`: latency from a frame's delivery to its drawn image."""
    backend.predict(np.zeros((1, backend.info.input_size, backend.info.input_size), np.uint8))
    paced = PacedFrames(live_frames(video, size, max(1, int(round(fps * seconds)))), fps, os.fspath(video))
    latest = LatestFrameSource(paced)
    pipeline = Pipeline(detector, backend, track, smooth, async_detect=True, cpu_timing=True)
    latency: list[float] = []

    def on_frame(result, _image) -> bool:
        latency.append((time.perf_counter() - paced.stamps[result.index]) * 1000.0)
        return True

    try:
        with live_opencv_threads():  # as run_live runs it
            stats = run_stream(latest, pipeline, draw=True, on_frame=on_frame)
    finally:
        latest.close()
        pipeline.close()
    ms = np.array(latency) if latency else np.zeros(1)
    return LiveResult(fps, size, len(paced.images), stats.frames, stats.fps,
                      {"p50": round(float(np.percentile(ms, 50)), 2), "p99": round(float(np.percentile(ms, 99)), 2),
                       "max": round(float(ms.max()), 2)},
                      stats.detections, stats.frames_with_face)


def format_live(r: LiveResult) -> str:
    w, h = r.size
    return (f"live path, headless: {r.delivered} frames of {w}x{h} delivered at {r.fps_in:g} fps; {r.processed} "
            f"tracked and drawn ({r.delivered - r.processed} skipped as stale) at {r.fps:.1f} fps; latency capture "
            f"-> drawn frame p50 {r.latency_ms['p50']:.1f} ms, p99 {r.latency_ms['p99']:.1f} ms, max "
            f"{r.latency_ms['max']:.1f} ms; {r.detections} detection rounds (asynchronous)")


def speedup(results: list[EndToEndResult]) -> float:
    """Frames per second with tracking over frames per second detecting every frame."""
    by_mode = {r.mode: r for r in results}
    base = by_mode["detect every frame"].fps
    return by_mode["tracking"].fps / base if base > 0 else float("nan")


ENGINE_BACKENDS = {"onnxruntime": ".onnx", "torch": ".pt", "tensorrt": ".engine"}


def open_backends(model: str | None, backend: str) -> tuple[list[Backend], list[str]]:
    """The backends to time: one by name (or `auto`), or with `all` every backend that can run the model or
    its same-named sibling (.onnx, .pt, .engine) here. Returns (backends, one line per backend skipped)."""
    from engines.select import BACKENDS, default_model_path, load_backend

    if backend not in ("all", *BACKENDS):
        raise UserError(f"unknown backend {backend!r}; choose one of all, {', '.join(BACKENDS)}")
    if backend != "all":
        return [load_backend(model, backend)], []
    base = os.path.splitext(model if model is not None else default_model_path())[0]
    opened, skipped = [], []
    for name, ext in ENGINE_BACKENDS.items():
        path = base + ext
        if not os.path.isfile(path):
            skipped.append(f"skipped {name}: no {path}")
            continue
        try:
            opened.append(load_backend(path, name))
        except (UserError, ImportError, OSError) as err:
            skipped.append(f"skipped {name}: {err}")
    if not opened:
        raise UserError("no backend could open the model here: " + "; ".join(skipped))
    from engines.select import int8_sibling

    if os.path.isfile(int8_sibling(base + ".onnx")):  # the INT8 file `auto` may pick, timed beside float
        try:
            opened.append(load_backend(int8_sibling(base + ".onnx"), "onnxruntime"))
        except UserError as err:
            skipped.append(f"skipped onnxruntime int8: {err}")
    return opened, skipped


def engine_label(backend: Backend) -> str:
    """The backend's name, with "int8" for a quantised file (engines/quantize.py)."""
    from engines.quantize import int8_record

    return f"{backend.name} int8" if int8_record(backend.info.extra) is not None else backend.name


def bench_crops(video: str | os.PathLike | None, count: int = 64) -> np.ndarray:
    """Input for the engine table: real face crops from the video, or (without one) seeded noise crops,
    which a convolutional network takes exactly as long to run."""
    if video is not None:
        try:
            return crops_from_video(video, max_faces=count)
        except ValueError:
            pass  # no face in the video: time on noise rather than not at all
    return np.random.default_rng(0).integers(0, 256, (count, 96, 96), dtype=np.uint8)


def bench_engines(
    backends: list[Backend], batches: list[int], seconds: float, crops: np.ndarray
) -> list[BenchRow]:
    """The engines harness: each batch size on every backend, the backends' order alternating from one batch
    size to the next (so that they meet the same machine load); rows grouped by backend."""
    timed: dict[int, list[BenchRow]] = {i: [] for i in range(len(backends))}
    for k, batch in enumerate(batches):
        order = list(range(len(backends)))[:: 1 if k % 2 == 0 else -1]
        for i in order:
            b = backends[i]
            timed[i] += [replace(r, backend=engine_label(b)) for r in bench_backend(b, crops, [batch], seconds)]
    return [row for i in range(len(backends)) for row in timed[i]]


def format_end_to_end(results: list[EndToEndResult], backend: str, video: str) -> str:
    """A plain-text table: one line per mode, wall frames/s and mean ms of each stage (with a second stage, its
    "refine" column), the CPU ms per stage, then the engine stages' ms per face."""
    stages = stage_names(results[0].stage_ms)
    head = f"end to end: {video}, backend {backend}, {results[0].passes} alternating passes per mode"
    cols = f"{'mode':<20}{'every':>6}{'frames':>7}{'detects':>8}{'fps':>8}"
    cols += "".join(f"{s:>8}" for s in stages)
    lines = [head, cols]
    for r in results:
        lines.append(
            f"{r.mode:<20}{r.detect_every:>6}{r.frames:>7}{r.detections:>8}{r.fps:>8.1f}"
            + "".join(f"{r.stage_ms[s]:>8.2f}" for s in stages)
        )
    lines.append("(stage columns: mean wall ms per frame; pipelined, the stages overlap on threads)")
    lines.append(f"{'CPU ms per frame':<49}" + "".join(f"{s:>8}" for s in stages) + f"{'total':>8}")
    for r in results:
        lines.append(f"{r.mode:<49}" + "".join(f"{r.cpu_ms.get(s, 0.0):>8.2f}" for s in stages)
                     + f"{r.cpu_ms.get('total', 0.0):>8.2f}")
    lines.append("(thread CPU of each stage; total: the whole process, ONNX Runtime's pool threads included)")
    for r in results:
        faces = ", ".join(f"{s} {ms:.2f}" for s, ms in r.ms_per_face.items())
        lines.append(f"ms per face, {r.mode}: {faces}")
    return "\n".join(lines)
