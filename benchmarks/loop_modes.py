"""The tracker's frame loop one frame after another (`run_stream`) against the pipelined loop, with OpenCV on its
default threads and on one, in alternating rounds on frames decoded into memory: frames/s and process CPU ms per
frame, medians.

    .venv/bin/python benchmarks/loop_modes.py CLIP [ROUNDS]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from engines.select import load_backend
from tracker.config import DEFAULT_SMOOTH, DEFAULT_TRACK, ENGINE_THREADS
from tracker.flip_average import flip_averaged
from tracker.haar import HaarDetector
from tracker.pipeline import Pipeline
from tracker.sources import Frame
from tracker.stream import run_stream

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_mediapipe import read_frames  # noqa: E402

MODES = {"sequential": (False, 2), "pipelined": (True, 2), "sequential, OpenCV 1 thread": (False, 1),
         "pipelined, OpenCV 1 thread": (True, 1)}


def main(clip: str, rounds: int) -> None:
    source = [Frame(i, i * 40.0, im) for i, im in enumerate(read_frames(clip))]
    backend = flip_averaged(load_backend(None, "auto", threads=ENGINE_THREADS), None)  # as the tracker opens it
    backend.predict(np.zeros((1, 96, 96), np.uint8))
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in MODES}
    for r in range(rounds):
        for name in (list(MODES) if r % 2 == 0 else list(MODES)[::-1]):
            pipelined, threads = MODES[name]
            cv2.setNumThreads(threads)
            pipeline = Pipeline(HaarDetector(), backend, DEFAULT_TRACK, DEFAULT_SMOOTH)
            cpu = time.process_time()
            stats = run_stream(source, pipeline, draw=False, pipelined=pipelined)
            cpu = time.process_time() - cpu
            pipeline.close()
            got[name].append((stats.fps, cpu / stats.frames * 1000.0))
    for name, values in got.items():
        fps = " ".join(f"{f:.1f}" for f, _ in values)
        print(f"{Path(clip).name} {name}: fps {fps}, median {statistics.median(f for f, _ in values):.1f}; "
              f"CPU ms/frame median {statistics.median(c for _, c in values):.2f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)
