"""The frame loop shared by the live view, `video` and `bench`: read, process, draw, write, show.

`run_stream` times every stage (decode and draw here, the rest in the pipeline) and returns `StreamStats`.
Sequential (one thread, frame after frame) or pipelined (`pipelined=True`, for files): decoding and the
scene-cut test run on a reader thread ahead, the tracker sees a window of the frames read after the current
one so the pipeline starts the next whole-frame detection on its look-ahead thread while the frames before it
are tracked, and drawing and writing run on a writer thread; the tracking itself stays in frame order, so the
rows are the same as the sequential loop's.
Outputs are flushed frame by frame; the caller closes them (in a `finally`), so Ctrl-C loses nothing: on
any exit every stage is drained (what was tracked is written) and its thread ended before this returns.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tracker.config import OverlayParams
from tracker.csv_out import KeypointCsvWriter
from tracker.overlay import draw_faces, draw_hud
from tracker.pipeline import Pipeline
from tracker.results import STAGES, FrameResult
from tracker.sources import Frame, FrameSource
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
    cpu_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))  # thread CPU

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
        for stage, ms in result.cpu_ms.items():
            self.cpu_ms[stage] = self.cpu_ms.get(stage, 0.0) + ms


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
    pipelined: bool = False,
) -> StreamStats:
    """Process every frame of `source` until it ends, `on_frame` returns False, or max_frames are done.

    `on_frame` is called on this thread, in frame order, after the frame was drawn and written. A run that
    ends without an error leaves the CSV with at least its header (`KeypointCsvWriter.finish`)."""
    out = _Output(pipeline, csv, video, overlay, draw)
    if pipelined:
        stats = _run_pipelined(source, pipeline, out, on_frame, max_frames)
    else:
        stats = _run_sequential(source, pipeline, out, on_frame, max_frames)
    if csv is not None:
        csv.finish()
    return stats


def _run_sequential(source: FrameSource, pipeline: Pipeline, out: _Output, on_frame: FrameCallback | None,
                    max_frames: int | None) -> StreamStats:
    """One frame after another on this thread."""
    stats = StreamStats()
    start = time.perf_counter()
    frames = iter(source)
    clock = pipeline.clock
    while max_frames is None or stats.frames < max_frames:
        t, c = time.perf_counter(), clock()
        frame = next(frames, None)
        if frame is None:
            break
        decode = ((time.perf_counter() - t) * 1000.0, (clock() - c) * 1000.0)
        result = pipeline.process(frame)
        result.timings_ms["decode"], result.cpu_ms["decode"] = decode
        image = out.write(frame, result)
        stats.add(result)
        stats.seconds = time.perf_counter() - start
        if on_frame is not None and on_frame(result, image) is False:
            break
    return stats


class _Output:
    """Draw (into a copy), write the CSV rows and the video frame of one tracked frame; times "draw"."""

    def __init__(self, pipeline: Pipeline, csv, video, overlay: OverlayParams | None, draw: bool) -> None:
        self.names = pipeline.kps.names
        self.csv, self.video = csv, video
        self.overlay = overlay or OverlayParams()
        self.draw = draw
        self.meter = FpsMeter()
        self.last_draw_ms = 0.0
        self.clock = pipeline.clock

    def write(self, frame: Frame, result: FrameResult):
        """The annotated image (None when not drawing), after the rows and the video frame are written."""
        image = None
        clock = self.clock
        t, c = time.perf_counter(), clock()
        if self.draw:
            image = frame.image.copy()
            draw_faces(image, result.faces, self.names, self.overlay)
            if self.overlay.hud:  # this frame's drawing is not done yet: show the previous frame's draw time
                hud = {**result.timings_ms, "draw": self.last_draw_ms}
                draw_hud(image, self.meter.tick(t), hud, len(result.faces))
        self.last_draw_ms = result.timings_ms["draw"] = (time.perf_counter() - t) * 1000.0
        result.cpu_ms["draw"] = (clock() - c) * 1000.0
        if self.csv is not None:
            self.csv.write_frame(frame.index, frame.timestamp_ms, result.faces)
        if self.video is not None and image is not None:
            self.video.write(image)
        return image


_END = object()  # end of stream on a stage's queue
LOOKAHEAD_BYTES = 128 << 20  # the pipelined loop holds at most this much of frames read ahead (colour + grey)


@dataclass
class _Failure:
    """An exception raised on a stage's thread, to be raised again on the consumer's."""

    error: BaseException


class _Stage(threading.Thread):
    """A daemon thread feeding a bounded queue; `stop()` ends it (unblocking a full queue) and joins it."""

    def __init__(self, name: str, depth: int) -> None:
        super().__init__(name=name, daemon=True)
        self.out: queue.Queue = queue.Queue(depth)
        self.halt = threading.Event()

    def put(self, item) -> bool:
        """Hand on `item`; False once stopped."""
        while not self.halt.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def stop(self) -> None:
        self.halt.set()
        self.join()


class _Reader(_Stage):
    """Decodes frames and prepares them (grey image, scene-cut test) ahead of the tracker, in frame order."""

    def __init__(self, source: FrameSource, pipeline: Pipeline, depth: int = 4) -> None:
        super().__init__("fkd-read", depth)
        self.source, self.pipeline = source, pipeline

    def run(self) -> None:
        clock = self.pipeline.clock
        try:
            frames: Iterator[Frame] = iter(self.source)
            while not self.halt.is_set():
                t, c = time.perf_counter(), clock()
                frame = next(frames, None)
                if frame is None:
                    break
                decode = ((time.perf_counter() - t) * 1000.0, (clock() - c) * 1000.0)
                if not self.put((self.pipeline.prepare(frame), decode)):
                    return
        except BaseException as err:  # a source failing mid-stream: raised after the frames before it
            self.put(_Failure(err))
            return
        self.put(_END)


class _Writer(_Stage):
    """Draws and writes tracked frames in order; hands (result, image) on for `on_frame`."""

    def __init__(self, output: _Output, depth: int = 8) -> None:
        super().__init__("fkd-write", depth)
        self.output = output
        self.inbox: queue.Queue = queue.Queue(depth)

    def run(self) -> None:
        while True:
            item = self.inbox.get()
            if item is _END:
                self.put(_END)
                return
            frame, result = item
            try:
                image = self.output.write(frame, result)
            except BaseException as err:  # e.g. disk full: raised on the consumer's thread
                self.put(_Failure(err))
                return
            if not self.put((result, image)):
                return


def _run_pipelined(source: FrameSource, pipeline: Pipeline, output: _Output, on_frame: FrameCallback | None,
                   max_frames: int | None) -> StreamStats:
    """The pipelined loop: reader thread -> tracker (this thread, + the pipeline's look-ahead thread) ->
    writer thread -> `on_frame` here. Every thread is drained and ended on any exit."""
    stats = StreamStats()
    start = time.perf_counter()
    reader, writer = _Reader(source, pipeline), _Writer(output)
    reader.start()
    writer.start()
    stopped = False

    def report(block: bool) -> None:
        """Count (and pass to on_frame) every frame the writer has finished; raise a writer's failure."""
        nonlocal stopped
        while True:
            try:
                item = writer.out.get(block=block)
            except queue.Empty:
                return
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            result, image = item
            stats.add(result)
            stats.seconds = time.perf_counter() - start
            if not stopped and on_frame is not None and on_frame(result, image) is False:
                stopped = True

    def hand(item) -> None:
        """Give the writer an item, reporting its finished frames meanwhile (so neither side blocks)."""
        while True:
            try:
                writer.inbox.put(item, timeout=0.1)
                return
            except queue.Full:
                report(block=False)

    failure: BaseException | None = None
    window: collections.deque = collections.deque()  # items read after the current one, in order
    held = 0  # bytes of the frames in `window`

    def fill(limit: int) -> None:
        """Read ahead into `window`: the next item (waiting for it), then as many as the reader has ready, up
        to `limit` items and about LOOKAHEAD_BYTES of frames, and no further than the end of the stream."""
        nonlocal held
        while len(window) < limit and (not window or isinstance(window[-1], tuple) and held < LOOKAHEAD_BYTES):
            try:
                item = reader.out.get(block=not window)
            except queue.Empty:
                return
            window.append(item)
            held += _frame_bytes(item)

    depth = pipeline.lookahead  # frames read ahead: enough for the schedule's longest gap
    try:
        item = reader.out.get()
        done = 0
        while item is not _END and not stopped and (max_frames is None or done < max_frames):
            if isinstance(item, _Failure):
                failure = item.error
                break
            prep, decode = item
            fill(depth if max_frames is None else min(depth, max_frames - done - 1))
            result = pipeline.run(prep, [w[0] for w in window if isinstance(w, tuple)])
            result.timings_ms["decode"], result.cpu_ms["decode"] = decode
            hand((prep.frame, result))
            done += 1
            report(block=False)
            item = window.popleft() if window else _END
            held -= _frame_bytes(item)
        hand(_END)
        report(block=True)
    finally:
        reader.stop()
        if writer.is_alive():  # an exception above: write what was tracked, then end the writer
            try:
                writer.inbox.put_nowait(_END)
            except queue.Full:
                pass
            _drain_writer(writer, stats, start)
        pipeline.close()
    if failure is not None:
        raise failure
    return stats


def _frame_bytes(item) -> int:
    """Memory a read-ahead item holds: its colour and grey frames (0 for the end or a failure)."""
    if not isinstance(item, tuple):
        return 0
    prep = item[0]
    return prep.frame.image.nbytes + prep.gray.nbytes


def _drain_writer(writer: _Writer, stats: StreamStats, start: float) -> None:
    """After an interruption: let the writer finish the frames it was given (counted, not reported)."""
    while writer.is_alive() or not writer.out.empty():
        try:
            item = writer.out.get(timeout=0.1)
        except queue.Empty:
            if not writer.inbox.full():
                try:
                    writer.inbox.put_nowait(_END)
                except queue.Full:
                    pass
            continue
        if item is _END or isinstance(item, _Failure):
            break
        stats.add(item[0])
        stats.seconds = time.perf_counter() - start
    writer.halt.set()
    writer.join(timeout=5.0)
