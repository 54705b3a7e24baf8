"""`fkd-track batch`: an archive of videos and image folders, one keypoint CSV each, on a process pool or on Ray.

Resumable (finished outputs are skipped), one failing input never stops the others, DIR/summary.csv lists all.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import glob
import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, astuple, fields, replace
from pathlib import Path

import typer

from engines.errors import UserError
from engines.extras import require
from engines.output_files import atomic_path, check_outputs
from tracker.batch_task import (
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_OK,
    STATUS_SKIPPED,
    EngineSpec,
    ModelFile,
    Task,
    TaskResult,
    TrackSettings,
    init_worker,
    open_engines,
    readable_like_plain_files,
    run_in_ray,
    run_in_worker,
    track_one,
)

# tracker.cli registers this command in its _register() and holds the options `video` shares with it
from tracker.cli import (
    ATTRIBUTES,
    BACKEND,
    BETA,
    D_CUTOFF,
    DETECT_EVERY,
    FLIP_AVERAGE,
    FOLDER_FPS,
    LABELS,
    MAX_SIDE,
    MIN_CUTOFF,
    MIN_FACE,
    MIN_NEIGHBORS,
    MODEL,
    REFINE,
    SCALE_FACTOR,
    SMOOTH,
    _overlay,
    _settings,
)
from tracker.config import ENGINE_THREADS
from tracker.csv_out import BASE_COLUMNS
from tracker.flip_average import FlipAveraged
from tracker.haar import HaarParams

SUMMARY = "summary.csv"
LIST_SUFFIXES = (".txt", ".lst", ".list")
VIDEO_SUFFIX = ".mp4"
ATTEMPTS = 2  # a pool worker that dies (a crash in a decoder, out of memory) re-queues its inputs once
OnResult = Callable[[int, TaskResult], None]


def batch(
    inputs: list[Path] = typer.Argument(
        ..., help="Video files, image folders, or text files (.txt, .lst, .list) listing them, one path a line "
        "(relative to the list's folder; blank lines and # comments skipped). Each input is one task.",
    ),
    out_dir: Path = typer.Option(..., "--out-dir", help="Write DIR/<name>.csv per input and DIR/summary.csv."),
    jobs: int = typer.Option(
        os.cpu_count() or 1, "--jobs", min=1,
        help="Worker processes (with --ray local: the CPUs Ray gets). Default: one per core.",
    ),
    ray_address: str | None = typer.Option(
        None, "--ray",
        help="Run the inputs as Ray tasks: `local` starts Ray on this machine; an address (auto, ray://head:10001) "
        "joins a cluster (inputs and --out-dir on storage every node sees). Needs fkd-track[cluster].",
    ),
    out_video: bool = typer.Option(False, "--out-video", help="Also write DIR/<name>.mp4, annotated."),
    threads: int = typer.Option(ENGINE_THREADS, "--threads", min=1, help="ONNX Runtime threads per worker."),
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
    redo: bool = typer.Option(
        False, "--redo", help="Track every input again: first remove the outputs an earlier run left for them in "
        "--out-dir."),
) -> None:
    """Track an archive: each input alone into DIR/<name>.csv, the same bytes `fkd-track video INPUT --csv` gives.

    Resumable: finished outputs are skipped while the model and settings are those DIR/batch.json records (other
    ones are refused; --redo starts over). A failing input is listed in DIR/summary.csv, never stops the others.
    """
    track, smoothing = _settings(detect_every, smooth, min_cutoff, beta, d_cutoff)
    settings = TrackSettings(track, smoothing, HaarParams(scale_factor, min_neighbors, min_face, max_side),
                             _overlay(labels), attributes, folder_fps, flip_average)
    spec = EngineSpec(ModelFile(None if model is None else str(model)), backend,
                      None if refine is None else ModelFile(str(refine)), threads)
    ray = _import_ray() if ray_address is not None else None
    paths = expand_inputs(inputs)
    if not paths:
        raise UserError("no inputs: the list file(s) name no paths")
    tasks = make_tasks(paths, out_dir, out_video)
    _check_batch_outputs(paths, out_dir, tasks)
    summary = out_dir / SUMMARY
    engines, header = _open_checked(spec, settings)  # a wrong --model/--refine/--attributes: one line, first
    settings = replace(settings, flip_average=isinstance(engines.backend, FlipAveraged))  # as resolved
    record = run_record(engines, settings, out_video)
    if redo:  # the earlier outputs go first, so a stopped --redo never leaves them under the new record
        _remove_outputs(tasks, (out_dir / RECORD).exists())
        results, todo = [None] * len(tasks), list(range(len(tasks)))
    else:
        results, todo = _resume(tasks, summary, header)
        if len(todo) < len(tasks):
            _check_record(out_dir / RECORD, record)
    _write_record(out_dir / RECORD, record)
    start = time.perf_counter()
    try:
        with _progress(len(todo)) as on_result:
            def record(i: int, result: TaskResult) -> None:
                results[i] = result
                on_result(result)

            pending = [(i, tasks[i]) for i in todo]
            if ray is not None and pending:
                _run_ray(ray, pending, spec, settings, ray_address, jobs, record)
            elif jobs > 1 and len(pending) > 1:  # the workers open their own engines
                _run_pool(pending, spec, settings, min(jobs, len(pending)), record)
            else:
                for i, task in pending:
                    record(i, track_one(task, settings, engines))
    finally:
        for i, task in enumerate(tasks):
            if results[i] is None and _finished(task):  # renamed into place just before a stop reached its worker
                results[i] = TaskResult(task.input, STATUS_OK, output=_output_field(task))
        _remove_temp_outputs([t for t, r in zip(tasks, results, strict=True) if r is None])
        if summary.exists() or any(r is not None for r in results):  # not for a run stopped before any input
            _write_summary(summary, tasks, results)
    _report(results, time.perf_counter() - start, summary)


def _report(results: list[TaskResult | None], seconds: float, summary: Path) -> None:
    """The final line with the counts; UserError (exit 2) when any input failed."""
    counts = {s: sum(r is not None and r.status == s for r in results)
              for s in (STATUS_OK, STATUS_SKIPPED, STATUS_FAILED)}
    rate = counts[STATUS_OK] / seconds if seconds > 0 else 0.0
    typer.echo(f"{len(results)} inputs: {counts[STATUS_OK]} done, {counts[STATUS_SKIPPED]} skipped (finished "
               f"before), {counts[STATUS_FAILED]} failed in {seconds:.1f} s ({rate:.2f} files/s); summary {summary}",
               err=True)
    if counts[STATUS_FAILED]:
        raise UserError(f"{counts[STATUS_FAILED]} of {len(results)} inputs failed; see the error column of {summary}")


# --- inputs and outputs ----------------------------------------------------------------------------------------


def expand_inputs(inputs: Iterable[Path]) -> list[str]:
    """The inputs in order, list files replaced by the paths they name (relative ones against the list's folder);
    the same file or folder named twice is one input."""
    seen: set[str] = set()
    paths: list[str] = []
    for item in inputs:
        listed = _read_list(item) if item.suffix.lower() in LIST_SUFFIXES else [item]
        for path in listed:
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                paths.append(str(path))
    return paths


def _read_list(list_file: Path) -> list[Path]:
    if not list_file.is_file():
        raise UserError(f"list file not found: {list_file}")
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise UserError(f"{list_file}: not a text list of paths ({err.reason})") from None
    entries = (line.strip() for line in lines)
    return [list_file.parent / e for e in entries if e and not e.startswith("#")]


def output_names(paths: list[str]) -> list[str]:
    """One output name per input: its file stem (its name for a folder). Inputs sharing a name (and an input
    named like the summary) get `<name>-<8 hex of its absolute path's sha1>` instead, the same on every run."""
    stems = [Path(p).name if os.path.isdir(p) else Path(p).stem for p in paths]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s.casefold()] = counts.get(s.casefold(), 0) + 1
    reserved = Path(SUMMARY).stem.casefold()
    names = []
    for path, stem in zip(paths, stems, strict=True):
        if counts[stem.casefold()] > 1 or stem.casefold() == reserved:
            digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]
            stem = f"{stem}-{digest}"
        names.append(stem)
    return names


def make_tasks(paths: list[str], out_dir: Path, out_video: bool) -> list[Task]:
    return [Task(p, str(out_dir / f"{n}.csv"), str(out_dir / f"{n}{VIDEO_SUFFIX}") if out_video else None)
            for p, n in zip(paths, output_names(paths), strict=True)]


def _check_batch_outputs(paths: list[str], out_dir: Path, tasks: list[Task]) -> None:
    """`video`'s rules: --out-dir never an input folder nor inside one (checked on the summary's path, which also
    creates the folder and proves it writable), and no output onto an input."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out-dir {out_dir} is a file; give a folder")
    check_outputs(paths, {"--out-dir": out_dir / SUMMARY})
    ins = {os.path.realpath(p) for p in paths}
    for task in tasks:
        for out in (task.csv, task.video):
            if out is not None and os.path.realpath(out) in ins:
                raise UserError(f"--out-dir: {out} would overwrite an input; choose another --out-dir")


def _resume(tasks: list[Task], summary: Path, header: str) -> tuple[list[TaskResult | None], list[int]]:
    """Results so far (a `skipped` row for each input whose outputs exist, None for the rest) and the indices
    still to do; UserError for a CSV at an output's name that does not start with this run's `header`."""
    before = _previous_summary(summary)
    results: list[TaskResult | None] = [None] * len(tasks)
    todo = []
    for i, task in enumerate(tasks):
        if _finished(task):
            _check_header(task.csv, header)
            results[i] = _skipped(task, before.get(task.input))
        else:
            todo.append(i)
    return results, todo


def _first_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().rstrip("\r\n")
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None


def _table_header(path: str) -> str:
    """The header of the keypoint table at an output's name (any model's); UserError for a file fkd-track did
    not write, which batch never takes as finished, replaces or removes."""
    first = _first_line(path)
    if not first.startswith(",".join(BASE_COLUMNS) + ","):
        raise UserError(f"{path} is not a keypoint table fkd-track wrote; move it away (batch never replaces it)")
    return first


def _check_header(path: str, header: str) -> None:
    """A finished output must be this run's kind of table; UserError otherwise (nothing is removed)."""
    if _table_header(path) != header:
        raise UserError(f"{path} holds other keypoints or attribute columns than this model writes; write to "
                        "another --out-dir, or pass --redo to track every input again")


# --- what the outputs were made with ----------------------------------------------------------------------------

RECORD = "batch.json"  # in --out-dir: the model and settings its outputs were made with


def run_record(engines, settings: TrackSettings, videos: bool) -> dict:
    """What decides an output's rows: the file the engine runs (by content: `auto` may run the INT8 sibling),
    the backend, the --refine second stage and every tracking setting (the overlay's only with `videos`), as
    flat `name: value` pairs. JSON-ready."""
    from engines.model_file import sha256_file

    stage2 = engines.stage2
    flat = {"model sha256": sha256_file(engines.backend.info.path), "backend": engines.backend.name,
            "--refine sha256": None if stage2 is None else sha256_file(stage2.info.path),
            "tracker revision": TRACKER_REVISION}
    return {**flat, **flat_settings(settings, videos)}


def flat_settings(settings: TrackSettings, videos: bool) -> dict:
    """The settings part of the run record: `group.name: value` (JSON-ready), the overlay's only with `videos`."""
    flat = {}
    for group, value in asdict(settings).items():
        if group == "overlay" and not videos:
            continue
        for key, v in (value.items() if isinstance(value, dict) else [("", value)]):
            flat[f"{group}.{key}" if key else group] = v
    return json.loads(json.dumps(flat))


# what a record that does not name a setting was made with, where that is not today's default
OLDER_RECORDS = {"flip_average": False,  # on by default since it was recorded
                 "track.mask_tracked": False,  # searches look past the tracked faces since it was recorded
                 "tracker revision": 1}
TRACKER_REVISION = 2  # a release whose tracker writes other rows for the same model and settings raises it
# (2: a new face is written from its second look, and the box-bias correction starts from a prior)


def _check_record(path: Path, record: dict) -> None:
    """Resuming: the outputs already in --out-dir must come from this model and these settings (UserError
    naming what changed); a folder without a record (an older fkd-track) is trusted, with a note."""
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        typer.echo(f"note: {path.parent} has no {RECORD}; its finished outputs are kept as they are", err=True)
        return
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} ({err}); pass --redo to track every input again") from None
    if not isinstance(before, dict):
        raise UserError(f"cannot read {path} (not a run record); pass --redo to track every input again")
    # a setting the older record does not name (a later release added it) counts as its default there, so an
    # older folder resumes with the defaults and is refused with anything else (e.g. --flip-average); the overlay's
    # are compared only where both records name them (a record made without videos has none)
    before = {**flat_settings(TrackSettings(), videos=False), **OLDER_RECORDS, **before}
    changed = [f"{k} {_shown(before[k])} -> {_shown(record[k])}" for k in record
               if k in before and before[k] != record[k]]
    if changed:
        raise UserError(f"{path.parent} holds outputs made with other settings ({'; '.join(changed[:3])}"
                        f"{'; ...' if len(changed) > 3 else ''}); write to another --out-dir, or pass --redo to "
                        "track every input again")


def _shown(value) -> str:
    """A recorded value in a message: sha256s cut to 12 hex digits."""
    text = json.dumps(value)
    return text[:13] + '..."' if isinstance(value, str) and len(value) == 64 else text


def _write_record(path: Path, record: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        readable_like_plain_files(tmp)
        json.dump(record, f, indent=1)


def _finished(task: Task) -> bool:
    return os.path.isfile(task.csv) and (task.video is None or os.path.isfile(task.video))


def _skipped(task: Task, before: dict | None) -> TaskResult:
    """A finished input: its numbers from the previous summary, where it has them."""
    result = TaskResult(task.input, STATUS_SKIPPED, output=_output_field(task))
    if before and before.get("status") in (STATUS_OK, STATUS_SKIPPED):
        with contextlib.suppress(ValueError, TypeError):
            result.frames, result.frames_with_face, result.faces = (
                int(before[k]) for k in ("frames", "frames_with_face", "faces"))
            result.seconds = float(before["seconds"])
    return result


def _output_field(task: Task) -> str:
    return " ".join(os.path.basename(p) for p in (task.csv, task.video) if p)


def _previous_summary(path: Path) -> dict[str, dict]:
    """The previous run's summary rows by input (empty when there is none or it cannot be read)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return {row["input"]: row for row in csv.DictReader(f) if row.get("input")}
    except (OSError, csv.Error, KeyError, UnicodeDecodeError):
        return {}


def _write_summary(path: Path, tasks: list[Task], results: list[TaskResult | None]) -> None:
    columns = [f.name for f in fields(TaskResult)]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        readable_like_plain_files(tmp)
        writer = csv.writer(f)
        writer.writerow(columns)
        for task, result in zip(tasks, results, strict=True):
            result = result or TaskResult(task.input, STATUS_INTERRUPTED)
            writer.writerow(["" if v is None else v for v in astuple(result)])


def _remove_outputs(tasks: list[Task], recorded: bool) -> None:
    """--redo: remove the earlier tables of these inputs and their videos (made with or without --out-video this
    time), after checking that every table there is one fkd-track wrote: another file is refused, never removed.
    A video at an output's name goes where its table is ours or the folder has a run record."""
    for task in tasks:
        if os.path.isfile(task.csv):
            _table_header(task.csv)
    for task in tasks:
        video = str(Path(task.csv).with_suffix(VIDEO_SUFFIX)) if task.video is None else task.video
        olds = [task.csv] if os.path.isfile(task.csv) else []
        if os.path.isfile(video) and (olds or recorded):
            olds.append(video)
        for out in olds:
            try:
                os.unlink(out)
            except OSError as err:
                raise UserError(f"--redo: cannot remove {out}: {err.strerror or err}") from None


def _remove_temp_outputs(tasks: list[Task]) -> None:
    """Temp files of inputs that did not finish (a worker stopped without unwinding): atomic_path's names."""
    for task in tasks:
        for out in (task.csv, task.video):
            if out is None:
                continue
            p = Path(out)
            for tmp in glob.glob(os.path.join(glob.escape(str(p.parent)), f".{glob.escape(p.stem)}.*.tmp{p.suffix}")):
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def _open_checked(spec: EngineSpec, settings: TrackSettings):
    """Open the engines here and build one pipeline, so a wrong model or option fails once, before any input;
    returns the engines and the header line of the CSVs they write."""
    from tracker.csv_out import csv_header
    from tracker.pipeline import Pipeline

    engines = open_engines(spec, settings)
    pipeline = Pipeline(engines.detector, engines.backend, settings.track, settings.smooth, settings.attributes,
                        engines.stage2)
    return engines, ",".join(csv_header(pipeline.kps.columns, list(pipeline.attribute_classes)))


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[TaskResult], None]]:
    """A progress bar over the inputs on stderr; yields the function that counts one finished input."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failed]} failed"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        bar = progress.add_task("inputs", total=total, failed=0)
        failed = 0

        def on_result(result: TaskResult) -> None:
            nonlocal failed
            failed += result.status == STATUS_FAILED
            progress.update(bar, advance=1, failed=failed, description=Path(result.input).name)

        yield on_result


# --- local process pool ----------------------------------------------------------------------------------------


def _run_pool(pending: list[tuple[int, Task]], spec: EngineSpec, settings: TrackSettings, jobs: int,
              on_result: OnResult) -> None:
    """`jobs` spawned worker processes, each opening the engine once (init_worker); at most 2 inputs per worker
    queued at a time. A dead worker's inputs are retried once in a fresh pool, then reported failed."""
    import multiprocessing

    queue = list(reversed(pending))
    attempts: dict[int, int] = {}
    while queue:
        pool = cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=init_worker, initargs=(spec, settings))
        running: dict[cf.Future, tuple[int, Task]] = {}
        try:
            broken = False
            while (queue and not broken) or running:
                while queue and not broken and len(running) < 2 * jobs:
                    i, task = queue.pop()
                    running[pool.submit(run_in_worker, task)] = (i, task)
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    i, task = running.pop(future)
                    try:
                        on_result(i, future.result())
                    except cf.process.BrokenProcessPool:
                        broken = True
                        attempts[i] = attempts.get(i, 0) + 1
                        if attempts[i] >= ATTEMPTS:
                            on_result(i, TaskResult(task.input, STATUS_FAILED,
                                                    error="the worker process died on it (crash or out of memory)"))
                        else:
                            queue.append((i, task))
        except BaseException:
            _stop_pool(pool)
            raise
        pool.shutdown(wait=True)


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Ctrl-C or SIGTERM here: drop the queued inputs and SIGTERM the workers (each removes its temp files)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        with contextlib.suppress(OSError, ValueError):
            proc.terminate()
    for proc in processes:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            proc.join(timeout=10)


# --- Ray -------------------------------------------------------------------------------------------------------


def _import_ray():
    """Ray, imported only for --ray; one error line where the [cluster] extra is not installed."""
    return require("ray", "--ray")


def _run_ray(ray, pending: list[tuple[int, Task]], spec: EngineSpec, settings: TrackSettings, address: str,
             jobs: int, on_result: OnResult) -> None:
    """The same task as Ray tasks (one CPU each); the model's bytes go into the object store once."""
    shipped = EngineSpec(ModelFile.shipped(spec.model.path, spec.backend), spec.backend,
                         None if spec.refine is None else ModelFile.shipped(spec.refine.path, spec.backend),
                         spec.threads)
    key = hashlib.sha256(repr((shipped.backend, shipped.threads, settings.flip_average)).encode() + shipped.model.data
                         + (shipped.refine.data if shipped.refine else b"")).hexdigest()
    try:
        if address == "local":
            ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise UserError(f"--ray {address}: cannot start or join Ray: {' '.join(str(err).split())[:300]}") from None
    try:
        remote = ray.remote(num_cpus=1, max_retries=1)(run_in_ray)
        box = [ray.put(shipped)]
        window = 2 * max(1, int(ray.cluster_resources().get("CPU", jobs)))
        queue = iter(pending)
        running: dict = {}
        try:
            for i, task in itertools.islice(queue, window):
                running[remote.remote(task, settings, box, key)] = (i, task)
            while running:
                (ref,), _ = ray.wait(list(running), num_returns=1)
                i, task = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as err:  # the task's own error, or its worker died
                    cause = getattr(err, "cause", None) or err
                    result = TaskResult(task.input, STATUS_FAILED,
                                        error=" ".join(f"{type(cause).__name__}: {cause}".split())[:500])
                on_result(i, result)
                for i, task in itertools.islice(queue, 1):
                    running[remote.remote(task, settings, box, key)] = (i, task)
        except BaseException:
            for ref in running:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            raise
    finally:
        ray.shutdown()
