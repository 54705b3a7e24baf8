"""The frame loop shared by the live view, `video` and `bench`: read, process, draw, write, show.

`run_stream` times every stage (decode and draw here, the rest in the pipeline) and returns `StreamStats`.
Outputs are flushed frame by frame; the caller closes them (in a `finally`), so Ctrl-C loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tracker.config import OverlayParams
from tracker.csv_out import KeypointCsvWriter
from tracker.overlay import draw_faces, draw_hud
from tracker.pipeline import Pipeline
from tracker.results import STAGES, FrameResult
from tracker.sources import FrameSource
from tracker.video_out import AnnotatedVideoWriter


@dataclass
class StreamStats:
    """Counts and timings of a finished (or interrupted) run."""

    frames: int = 0
    frames_with_face: int = 0  # frames with at least one face written with success=1
    faces: int = 0  # face rows
    crops: int = 0  # faces sent to the engine (and to the second stage with --refine)
    detections: int = 0  # frames on which the detector ran
    scene_cuts: int = 0
    face_ids: set[int] = field(default_factory=set)
    seconds: float = 0.0  # wall time from the first read to the last frame done
    stage_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def mean_ms(self) -> dict[str, float]:
        return {s: (v / self.frames if self.frames else 0.0) for s, v in self.stage_ms.items()}

    def ms_per_face(self, stage: str) -> float:
        """A stage's total ms over the faces sent to the engine (e.g. "infer", "refine"); 0 without faces."""
        return self.stage_ms.get(stage, 0.0) / self.crops if self.crops else 0.0

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.faces += len(result.faces)
        self.crops += result.crops
        self.frames_with_face += any(f.success for f in result.faces)
        self.detections += result.detected
        self.scene_cuts += result.scene_cut
        self.face_ids.update(f.face_id for f in result.faces)
        for stage, ms in result.timings_ms.items():
            self.stage_ms[stage] = self.stage_ms.get(stage, 0.0) + ms


class FpsMeter:
    """Frames per second over the recent past (exponential average of frame intervals)."""

    def __init__(self, weight: float = 0.1) -> None:
        self.weight = weight
        self.interval: float | None = None
        self.last: float | None = None

    def tick(self, now: float) -> float:
        if self.last is not None:
            dt = now - self.last
            prev = dt if self.interval is None else self.interval
            self.interval = prev + self.weight * (dt - prev)
        self.last = now
        return 1.0 / self.interval if self.interval else 0.0


# called after each frame with (result, annotated image or None); returns False to stop the loop
FrameCallback = Callable[[FrameResult, object], bool]


def run_stream(
    source: FrameSource,
    pipeline: Pipeline,
    csv: KeypointCsvWriter | None = None,
    video: AnnotatedVideoWriter | None = None,
    overlay: OverlayParams | None = None,
    draw: bool = True,
    on_frame: FrameCallback | None = None,
    max_frames: int | None = None,
) -> StreamStats:
    """Process every frame of `source` until it ends, `on_frame` returns False, or max_frames are done."""
    overlay = overlay or OverlayParams()
    stats = StreamStats()
    meter = FpsMeter()
    names = pipeline.kps.names
    start = time.perf_counter()
    frames = iter(source)
    last_draw_ms = 0.0
    while max_frames is None or stats.frames < max_frames:
        t = time.perf_counter()
        frame = next(frames, None)
        if frame is None:
            break
        decode_ms = (time.perf_counter() - t) * 1000.0
        result = pipeline.process(frame)
        result.timings_ms["decode"] = decode_ms
        image = None
        t = time.perf_counter()
        if draw:
            image = frame.image.copy()
            draw_faces(image, result.faces, names, overlay)
            if overlay.hud:  # this frame's drawing is not done yet: show the previous frame's draw time
                hud = {**result.timings_ms, "draw": last_draw_ms}
                draw_hud(image, meter.tick(t), hud, len(result.faces))
        last_draw_ms = result.timings_ms["draw"] = (time.perf_counter() - t) * 1000.0
        if csv is not None:
            csv.write_frame(frame.index, frame.timestamp_ms, result.faces)
        if video is not None and image is not None:
            video.write(image)
        stats.add(result)
        stats.seconds = time.perf_counter() - start
        if on_frame is not None and on_frame(result, image) is False:
            break
    return stats
