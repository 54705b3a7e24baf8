"""Fair peer benchmark: MediaPipe FaceMesh (its own venv) and fkd-track, alternately, on the same clips.

Builds a 640x360 multi-face clip with scene cuts from the shared videos (never committed), then times each
tracker in its own process, on frames decoded into memory first (decode excluded for both), one round after
another in alternating order; prints every round and the median fkd-track / MediaPipe frames/s ratio.

    make bench-peer                       # sets up benchmarks/.venv-mediapipe, then runs this
    .venv/bin/python benchmarks/peer_mediapipe.py --rounds 3 [--clips multi,gates,trump,bloom] [--json OUT]
    .venv/bin/python benchmarks/peer_mediapipe.py --against /tmp/base   # + an older fkd-track, e.g. from
                                          # `git archive REV | tar -x -C /tmp/base`, in the same rounds

The same file is the worker in each venv (`--worker mediapipe|fkd CLIP`): the MediaPipe venv holds
mediapipe==0.10.14 with numpy<2 and no fkd-track; the project venv holds fkd-track and no mediapipe.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MP_PYTHON = HERE / ".venv-mediapipe" / "bin" / "python"
SHARED_CLIPS = {
    "gates": "0492_03_009_bill_gates.avi",
    "trump": "0553_01_006_donald_trump.avi",
    "bloom": "orlando_bloom.avi",
}
WIDTH, HEIGHT, FPS = 640, 360, 25.0
MAX_FACES = 4  # MediaPipe's face budget; the multi-face clip shows at most two at once


def read_frames(path: str | os.PathLike) -> list:
    """Every frame of a video, decoded into memory (BGR)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    if not frames:
        raise SystemExit(f"cannot read {path}")
    return frames


def shared_videos() -> Path:
    """The shared clips' folder (imported here: the MediaPipe worker's venv runs this file without the repo)."""
    from train.datasets import shared_data_dir

    return shared_data_dir() / "videos"


def build_multi_face_clip(out: Path) -> int:
    """640x360, 25 fps, MJPEG: Gates | Trump side by side (each scaled to 360 px high, centre 320 px kept),
    cut to Bloom (scaled to 360 px high, pillar-boxed), cut to Trump | Gates (second halves, swapped), cut to
    Bloom's second half. Three scene cuts, up to two faces at once. Returns the frame count."""
    import cv2
    import numpy as np

    def fit(image, width):  # scale to HEIGHT px high, keep the centre `width` px (or pad to it)
        h, w = image.shape[:2]
        scaled = cv2.resize(image, (round(w * HEIGHT / h), HEIGHT), interpolation=cv2.INTER_LINEAR)
        sw = scaled.shape[1]
        if sw >= width:
            x = (sw - width) // 2
            return scaled[:, x:x + width]
        canvas = np.zeros((HEIGHT, width, 3), np.uint8)
        x = (width - sw) // 2
        canvas[:, x:x + sw] = scaled
        return canvas

    gates, trump, bloom = (read_frames(shared_videos() / SHARED_CLIPS[k]) for k in ("gates", "trump", "bloom"))
    half, bhalf = min(len(gates), len(trump)) // 2, len(bloom) // 2
    frames = [np.hstack([fit(a, WIDTH // 2), fit(b, WIDTH // 2)])
              for a, b in zip(gates[:half], trump[:half], strict=True)]
    frames += [fit(f, WIDTH) for f in bloom[:bhalf]]
    frames += [np.hstack([fit(b, WIDTH // 2), fit(a, WIDTH // 2)])
               for a, b in zip(gates[half:2 * half], trump[half:2 * half], strict=True)]
    frames += [fit(f, WIDTH) for f in bloom[bhalf:]]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    for f in frames:
        writer.write(f)
    writer.release()
    return len(frames)


def time_mediapipe(clip: str) -> dict:
    """FaceMesh in tracking mode (static_image_mode=False) over the decoded frames; BGR->RGB counted."""
    import cv2
    import mediapipe as mp

    frames = read_frames(clip)
    mesh_kind = mp.solutions.face_mesh.FaceMesh
    settings = dict(static_image_mode=False, max_num_faces=MAX_FACES, refine_landmarks=False,
                    min_detection_confidence=0.5, min_tracking_confidence=0.5)
    with mesh_kind(**settings) as warm:  # load and warm the graph outside the timing
        for f in frames[:5]:
            warm.process(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    faces = 0
    with mesh_kind(**settings) as mesh:
        start = time.perf_counter()
        cpu = time.process_time()
        for f in frames:
            result = mesh.process(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
            faces += len(result.multi_face_landmarks or ())
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    return {"tracker": "mediapipe", "version": mp.__version__, "frames": len(frames), "faces": faces,
            "seconds": seconds, "fps": len(frames) / seconds, "cpu_s": cpu}


def time_fkd(clip: str, mode: str) -> dict:
    """fkd-track with the CLI's defaults (packaged model, auto backend) over the decoded frames, nothing drawn
    or written; `mode` "sequential" (one frame after another on one thread) or "pipelined" (tracker.stream)."""
    import numpy as np

    from engines.select import load_backend
    from tracker.config import DEFAULT_SMOOTH, DEFAULT_TRACK, ENGINE_THREADS
    from tracker.haar import HaarDetector
    from tracker.pipeline import Pipeline
    from tracker.sources import Frame
    from tracker.stream import run_stream

    images = read_frames(clip)
    source = [Frame(i, i * 1000.0 / FPS, im) for i, im in enumerate(images)]
    backend = load_backend(None, "auto", threads=ENGINE_THREADS)  # as `fkd-track video` opens it ...
    try:  # ... flip-averaged by default (a checkout from before that default has no flip_averaged: plain, as it ran)
        from tracker.flip_average import flip_averaged

        backend = flip_averaged(backend, None)
    except ImportError:
        pass
    backend.predict(np.zeros((1, 96, 96), np.uint8))  # load and warm the engine outside the timing
    pipeline = Pipeline(HaarDetector(), backend, DEFAULT_TRACK, DEFAULT_SMOOTH)
    faces = 0

    def count(result, _image) -> bool:
        nonlocal faces
        faces += sum(f.success for f in result.faces)
        return True

    kwargs = {"pipelined": True} if mode == "pipelined" else {}
    cpu = time.process_time()
    stats = run_stream(source, pipeline, draw=False, on_frame=count, **kwargs)
    cpu = time.process_time() - cpu
    return {"tracker": f"fkd-track ({mode})", "backend": backend.name, "frames": stats.frames, "faces": faces,
            "detections": stats.detections, "seconds": stats.seconds, "fps": stats.fps, "cpu_s": cpu}


def run_worker(python: Path | str, worker: str, clip: Path, mode: str, repo: Path = REPO) -> dict:
    """One timing in its own process; `repo`: the fkd-track checkout whose code (and copy of this file) runs."""
    script = repo / "benchmarks" / Path(__file__).name
    cmd = [str(python), str(script), "--worker", worker, "--mode", mode, str(clip)]
    env = {**os.environ, "PYTHONPATH": str(repo)} if worker == "fkd" else dict(os.environ)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{worker} worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def describe(got: dict, label: str) -> str:
    """One worker's timing as printed in a round's line."""
    ms = 1000.0 * got["cpu_s"] / got["frames"]
    more = f", detector on {got['detections']} of {got['frames']} frames" if "detections" in got else ""
    return f"{label} {got['fps']:7.1f} fps ({got['faces']} faces{more}; CPU {ms:.1f} ms/frame)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip", nargs="?", help="(worker only) the clip to time")
    ap.add_argument("--worker", choices=("mediapipe", "fkd"), help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="pipelined", choices=("sequential", "pipelined"),
                    help="fkd-track's frame loop (default: pipelined)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per clip (default 3)")
    ap.add_argument("--clips", default="multi,gates,trump,bloom",
                    help="comma-separated: multi (the built 640x360 clip), gates, trump, bloom")
    ap.add_argument("--json", type=Path, help="write every round here")
    ap.add_argument("--against", type=Path,
                    help="also time the fkd-track checkout in this folder (before/after), in the same rounds")
    args = ap.parse_args(argv)
    if args.worker == "mediapipe":
        print(json.dumps(time_mediapipe(args.clip)))
        return 0
    if args.worker == "fkd":
        print(json.dumps(time_fkd(args.clip, args.mode)))
        return 0
    if not MP_PYTHON.is_file():
        raise SystemExit(f"no MediaPipe venv at {MP_PYTHON}: run `make bench-peer` (it sets one up)")
    report = {"mode": args.mode, "rounds": args.rounds, "clips": {}}
    with tempfile.TemporaryDirectory(prefix="fkd-peer-") as tmp:
        clips = {}
        for name in args.clips.split(","):
            if name == "multi":
                path = Path(tmp) / "multi_640x360.avi"
                n = build_multi_face_clip(path)
                print(f"built {path.name}: {n} frames, {WIDTH}x{HEIGHT}, 3 scene cuts, up to 2 faces")
                clips[name] = path
            else:
                clips[name] = shared_videos() / SHARED_CLIPS[name]
        ratios_all = {}
        for name, clip in clips.items():
            ratios = []
            rounds = []
            workers = ["mediapipe", "fkd"] + (["against"] if args.against else [])
            for r in range(args.rounds):
                order = workers[r % len(workers):] + workers[:r % len(workers)]  # each goes first in turn
                if r % 2:
                    order.reverse()
                got = {}
                for w in order:
                    if w == "mediapipe":
                        got[w] = run_worker(MP_PYTHON, w, clip, args.mode)
                    else:
                        got[w] = run_worker(sys.executable, "fkd", clip, args.mode,
                                            args.against.resolve() if w == "against" else REPO)
                ratio = got["fkd"]["fps"] / got["mediapipe"]["fps"]
                ratios.append(ratio)
                rounds.append(got)
                line = (f"{name:<6} round {r + 1}: {describe(got['mediapipe'], 'mediapipe')}, "
                        f"{describe(got['fkd'], 'fkd-track')}")
                if args.against:
                    line += f", {describe(got['against'], 'against')}"
                print(f"{line}, ratio {ratio:.2f}x", flush=True)
            ratios_all[name] = statistics.median(ratios)
            report["clips"][name] = {"rounds": rounds, "median_ratio": ratios_all[name]}
        for name, ratio in ratios_all.items():
            line = (f"{name}: fkd-track ({args.mode}) / MediaPipe FaceMesh, median of {args.rounds} rounds: "
                    f"{ratio:.2f}x")
            if args.against:
                rs = report["clips"][name]["rounds"]
                new = statistics.median(g["fkd"]["fps"] / g["against"]["fps"] for g in rs)
                old = statistics.median(g["against"]["fps"] / g["mediapipe"]["fps"] for g in rs)
                line += f"; fkd-track / against: {new:.2f}x, against / MediaPipe: {old:.2f}x"
            print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
