"""Live-path latency (capture to drawn frame, p50/p99) of this checkout, and optionally of another one, in
alternating rounds, each in its own process: `tracker.bench.bench_live` (what `fkd-track bench --live-sim` runs).

    .venv/bin/python benchmarks/live_latency.py --video ../shared/data/videos/orlando_bloom.avi [--rounds 3]
    .venv/bin/python benchmarks/live_latency.py --video V --against /tmp/base
    # (/tmp/base: an older checkout, e.g. `git archive REV | tar -x -C /tmp/base`)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKER = """
import json, sys
from engines.select import load_backend
from tracker.bench import bench_live
from tracker import config
from tracker.haar import HaarDetector
video, fps, w, h, seconds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
threads = getattr(config, "ENGINE_THREADS", None)  # as `fkd-track --camera` opens it (older checkouts: every core)
backend = load_backend(None, "auto", threads=threads)
try:  # flip-averaged by default, as the live view runs it (older checkouts: plain, as they ran)
    from tracker.flip_average import flip_averaged
    backend = flip_averaged(backend, None)
except ImportError:
    pass
r = bench_live(video, backend, HaarDetector(), config.DEFAULT_TRACK,
               config.DEFAULT_SMOOTH, fps=fps, size=(w, h), seconds=seconds)
print(json.dumps(r.to_json()))
"""


def run(repo: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    cmd = [sys.executable, "-c", WORKER, str(args.video), str(args.fps), str(args.width), str(args.height),
           str(args.seconds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=repo, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"worker for {repo} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, required=True)
    ap.add_argument("--against", type=Path, help="another fkd-track checkout, timed in the same rounds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    args.video = args.video.resolve()
    trees = {"this": REPO} | ({"against": args.against.resolve()} if args.against else {})
    p99: dict[str, list[float]] = {k: [] for k in trees}
    for r in range(args.rounds):
        for name in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
            got = run(trees[name], args)
            lat = got["latency_ms"]
            p99[name].append(lat["p99"])
            print(f"round {r + 1} {name:<8} p50 {lat['p50']:6.1f} ms  p99 {lat['p99']:6.1f} ms  "
                  f"max {lat['max']:6.1f} ms  {got['processed']}/{got['delivered']} frames drawn at "
                  f"{got['fps']:.1f} fps, {got['detections']} detection rounds", flush=True)
    for name, values in p99.items():
        print(f"{name}: median p99 {statistics.median(values):.1f} ms over {args.rounds} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
