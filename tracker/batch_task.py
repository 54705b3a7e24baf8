"""One input of `fkd-track batch`: tracked into its keypoint CSV (and annotated video) in a pool worker or Ray task.

The engine is opened once per worker process; each input gets a fresh pipeline, so its CSV equals `video INPUT --csv`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from engines.backend import Backend
from engines.output_files import atomic_path
from tracker.config import ENGINE_THREADS, OverlayParams, SmoothParams, TrackParams
from tracker.haar import HaarDetector, HaarParams

STATUS_OK, STATUS_FAILED, STATUS_SKIPPED, STATUS_INTERRUPTED = "ok", "failed", "skipped", "interrupted"


@dataclass(frozen=True)
class TrackSettings:
    """Everything `video` takes besides its inputs and outputs; the same for every input of a batch."""

    track: TrackParams = TrackParams()
    smooth: SmoothParams = SmoothParams()
    haar: HaarParams = HaarParams()
    overlay: OverlayParams = OverlayParams()
    attributes: bool = False
    folder_fps: float = 25.0
    flip_average: bool | None = None  # --flip-average/--no-flip-average (tracker.flip_average.flip_averaged); the
    # batch records what it resolved to (True or False)


@dataclass(frozen=True)
class ModelFile:
    """A model by path (pool workers on this machine) or by content (Ray workers anywhere: `data` holds the
    file's bytes and `sidecar` a TensorRT engine's .json, written to a worker-local temp folder once)."""

    path: str | None  # None: the packaged default model
    data: bytes | None = None
    sidecar: bytes | None = None

    @classmethod
    def shipped(cls, path: str | None, backend: str = "auto") -> ModelFile:
        """The bytes of the file this machine's `backend` would run, read here, to travel through Ray's object
        store: for `auto` on an .onnx that is the INT8 sibling when `auto` picks it here, so Ray workers run
        what `fkd-track video` runs."""
        from engines.select import default_model_path, load_backend

        if path is None:
            path = default_model_path()
        if backend == "auto" and path.endswith(".onnx"):
            chosen = load_backend(path, "auto", threads=ENGINE_THREADS)
            if chosen.name == "onnxruntime":
                path = chosen.info.path
        sidecar = Path(path + ".json")
        return cls(path, Path(path).read_bytes(), sidecar.read_bytes() if sidecar.is_file() else None)


@dataclass(frozen=True)
class EngineSpec:
    """Which engine (and --refine second stage) a worker opens, and with how many ONNX Runtime threads."""

    model: ModelFile
    backend: str = "auto"
    refine: ModelFile | None = None
    threads: int | None = ENGINE_THREADS


@dataclass(frozen=True)
class Task:
    """One input and where its outputs go (`video` None without --out-video)."""

    input: str
    csv: str
    video: str | None = None


@dataclass
class TaskResult:
    """One row of the summary CSV."""

    input: str
    status: str
    frames: int | None = None
    frames_with_face: int | None = None
    faces: int | None = None  # face ids tracked
    seconds: float | None = None
    error: str = ""
    output: str = ""


@dataclass
class Engines:
    """What a worker opened once: the engine, the --refine second stage and the Haar detector."""

    backend: Backend
    stage2: Backend | None
    detector: HaarDetector


def open_engines(spec: EngineSpec, settings: TrackSettings) -> Engines:
    """Open the spec's engine(s); a shipped model is written to a temp folder first and removed once loaded."""
    from engines.select import load_backend

    with _model_path(spec.model) as model, _model_path(spec.refine) as refine:
        backend = load_backend(model, spec.backend, threads=spec.threads)
        stage2 = None if refine is None else load_backend(refine, threads=spec.threads)
    from tracker.flip_average import flip_averaged_stages

    backend, stage2 = flip_averaged_stages(backend, stage2, settings.flip_average)
    return Engines(backend, stage2, HaarDetector(settings.haar))


@contextlib.contextmanager
def _model_path(model: ModelFile | None):
    if model is None or model.data is None:
        yield None if model is None else model.path
        return
    folder = tempfile.mkdtemp(prefix="fkd-model-")
    try:
        path = os.path.join(folder, os.path.basename(model.path or "model.onnx"))
        Path(path).write_bytes(model.data)
        if model.sidecar is not None:
            Path(path + ".json").write_bytes(model.sidecar)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def track_one(task: Task, settings: TrackSettings, engines: Engines) -> TaskResult:
    """Track `task.input` into `task.csv` (and `task.video`), each written under a temporary name and renamed
    only when the whole input is done; any error leaves no output and becomes the result's `error`."""
    from engines.errors import UserError
    from tracker.csv_out import KeypointCsvWriter
    from tracker.pipeline import Pipeline
    from tracker.sources import open_inputs
    from tracker.stream import run_stream
    from tracker.video_out import AnnotatedVideoWriter

    start = time.perf_counter()
    try:
        with atomic_path(task.csv) as csv_tmp, _maybe_atomic(task.video) as video_tmp:
            for tmp in (csv_tmp, video_tmp):
                readable_like_plain_files(tmp)
            source = open_inputs([task.input], settings.folder_fps)
            writer = video = None
            try:
                pipeline = Pipeline(engines.detector, engines.backend, settings.track, settings.smooth,
                                    attributes=settings.attributes, refine=engines.stage2)
                writer = KeypointCsvWriter(csv_tmp, pipeline.kps.columns, list(pipeline.attribute_classes))
                if video_tmp is not None:
                    video = AnnotatedVideoWriter(video_tmp, source.fps or 25.0)
                stats = run_stream(source, pipeline, csv=writer, video=video, overlay=settings.overlay,
                                   draw=video is not None)
            finally:
                for thing in (writer, video, source):
                    if thing is not None:
                        thing.close()
    except (UserError, OSError) as err:  # a truncated input's partial output is not kept here: say so
        return _failed(task, start, f"{str(err) or type(err).__name__}; no output written")
    except Exception as err:  # one input's unexpected failure must not stop the others
        return _failed(task, start, f"{type(err).__name__}: {err}")
    outputs = [task.csv] + ([task.video] if task.video else [])
    return TaskResult(task.input, STATUS_OK, stats.frames, stats.frames_with_face, len(stats.face_ids),
                      round(time.perf_counter() - start, 3), "", " ".join(os.path.basename(p) for p in outputs))


def _failed(task: Task, start: float, message: str) -> TaskResult:
    return TaskResult(task.input, STATUS_FAILED, seconds=round(time.perf_counter() - start, 3),
                      error=" ".join(message.split()))


def readable_like_plain_files(path: Path | None) -> None:
    """Give an atomic_path temp file (created 0600) the mode a plain open() would: 0666 less the umask, so
    outputs on a shared folder are readable by the cluster's other users."""
    if path is not None:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(path, 0o666 & ~mask)


@contextlib.contextmanager
def _maybe_atomic(path: str | None):
    if path is None:
        yield None
    else:
        with atomic_path(path) as tmp:
            yield tmp


# --- process pool workers --------------------------------------------------------------------------------------


class _Stop(BaseException):
    """SIGTERM in a pool worker while it tracks an input: unwinds (temp outputs removed), then the worker exits."""


@dataclass
class _WorkerState:
    """A pool worker's engines and settings, set once by `init_worker` (the state a process pool initializer
    exists for: one per worker process, never shared)."""

    settings: TrackSettings = field(default_factory=TrackSettings)
    engines: Engines | None = None
    busy: bool = False


_worker = _WorkerState()


def init_worker(spec: EngineSpec, settings: TrackSettings) -> None:
    """Pool initializer: Ctrl-C is the parent's to handle (it stops the workers with SIGTERM); open the engine."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _worker.settings = settings
    _worker.engines = open_engines(spec, settings)


def _on_sigterm(signum, frame) -> None:
    if _worker.busy:
        raise _Stop()
    os._exit(143)


def run_in_worker(task: Task) -> TaskResult:
    """One input in a pool worker, with the engine `init_worker` opened."""
    assert _worker.engines is not None, "init_worker did not run"
    _worker.busy = True
    try:
        return track_one(task, _worker.settings, _worker.engines)
    except _Stop:
        os._exit(143)  # atomic_path removed this input's temp files on the way out
    finally:
        _worker.busy = False


# --- Ray tasks -------------------------------------------------------------------------------------------------


@dataclass
class _RayCache:
    """The engines a Ray worker process opened, by the spec's key: a worker runs many tasks, and opens once."""

    key: str | None = None
    engines: Engines | None = None


_ray_cache = _RayCache()


def run_in_ray(task: Task, settings: TrackSettings, spec_box: list, key: str) -> TaskResult:
    """One input as a Ray task. `spec_box` is [ObjectRef of the EngineSpec with the model's bytes]: boxed in a
    list so Ray does not fetch it for every task, only when this worker has not opened that model yet."""
    if _ray_cache.key != key or _ray_cache.engines is None:
        import ray

        _ray_cache.engines = open_engines(ray.get(spec_box[0]), settings)
        _ray_cache.key = key
    return track_one(task, settings, _ray_cache.engines)
