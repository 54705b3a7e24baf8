"""`fkd-track bench`: the engine table (engines/bench.py harness, per backend and batch size) and the
end-to-end run of a video through the whole tracker, once with tracking and once detecting every frame.

End to end, nothing is written or shown; drawing is done into a copy of each frame so its cost is counted.
With a cascade second stage (--refine) its cost is its own stage, "refine", also given in ms per face.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

import numpy as np

from engines.backend import Backend
from engines.bench import BenchRow, bench_backend, crops_from_video
from engines.errors import UserError
from tracker.config import SmoothParams, TrackParams
from tracker.haar import HaarDetector
from tracker.pipeline import Pipeline
from tracker.results import REFINE_STAGE, stage_names
from tracker.sources import VideoSource
from tracker.stream import StreamStats, run_stream


@dataclass
class EndToEndResult:
    """All passes of one mode over the video."""

    mode: str  # "tracking" or "detect every frame"
    detect_every: int
    passes: int
    frames: int  # per pass
    detections: int  # frames per pass on which the detector ran
    frames_with_face: int  # per pass
    fps: float  # over all passes
    stage_ms: dict[str, float]  # mean per frame
    ms_per_face: dict[str, float]  # "infer" (and "refine" with a second stage): mean ms per face sent to it

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
    """`passes` runs over `video` in each mode, with tracking (track.detect_every) and with detection on every
    frame, alternating (T D, D T, ...) so that both modes meet the same load from other programs. `refine`: a
    cascade second stage run on every face after the first (timed as the "refine" stage)."""
    for engine in (backend, refine):  # load and warm the engines outside the timing
        if engine is not None:
            size = engine.info.input_size
            engine.predict(np.zeros((1, size, size), np.uint8))
    modes = {"tracking": track, "detect every frame": replace(track, detect_every=1)}
    runs: dict[str, list[StreamStats]] = {m: [] for m in modes}
    for i in range(passes):
        for mode in list(modes)[:: 1 if i % 2 == 0 else -1]:
            with VideoSource(video) as source:
                pipeline = Pipeline(detector, backend, modes[mode], smooth, refine=refine)
                runs[mode].append(run_stream(source, pipeline, draw=True))
    out = []
    for mode, stats in runs.items():
        frames = sum(s.frames for s in stats)
        seconds = sum(s.seconds for s in stats)
        crops = sum(s.crops for s in stats)
        per_face = ["infer", REFINE_STAGE] if refine is not None else ["infer"]
        out.append(EndToEndResult(
            mode=mode, detect_every=modes[mode].detect_every, passes=passes, frames=stats[0].frames,
            detections=stats[0].detections, frames_with_face=stats[0].frames_with_face,
            fps=frames / seconds if seconds > 0 else 0.0,
            stage_ms={st: round(sum(s.stage_ms.get(st, 0.0) for s in stats) / max(frames, 1), 3)
                      for st in stage_names(stats[0].stage_ms)},
            ms_per_face={st: round(sum(s.stage_ms.get(st, 0.0) for s in stats) / max(crops, 1), 3)
                         for st in per_face},
        ))
    return out


def speedup(results: list[EndToEndResult]) -> float:
    """Frames per second with tracking over frames per second detecting every frame."""
    by_mode = {r.mode: r for r in results}
    base = by_mode["detect every frame"].fps
    return by_mode["tracking"].fps / base if base > 0 else float("nan")


ENGINE_BACKENDS = {"onnxruntime": ".onnx", "torch": ".pt", "tensorrt": ".engine"}


def open_backends(model: str | None, backend: str) -> tuple[list[Backend], list[str]]:
    """The backends to time: one by name (or `auto`), or with `all` every backend that can run the model or
    its same-named sibling (.onnx, .pt, .engine) here. Returns (backends, one line per backend skipped)."""
    from engines.select import default_model_path, load_backend

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
    return opened, skipped


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
    """The engines harness over each backend in turn."""
    rows: list[BenchRow] = []
    for b in backends:
        rows += bench_backend(b, crops, batches, seconds=seconds)
    return rows


def format_end_to_end(results: list[EndToEndResult], backend: str, video: str) -> str:
    """A plain-text table: one line per mode, frames/s and mean ms of each stage (with a second stage, its
    "refine" column), then the engine stages' ms per face."""
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
    lines.append("(stage columns: mean ms per frame)")
    for r in results:
        faces = ", ".join(f"{s} {ms:.2f}" for s, ms in r.ms_per_face.items())
        lines.append(f"ms per face, {r.mode}: {faces}")
    return "\n".join(lines)
