"""Searches that look past the tracked faces (`TrackParams.mask_tracked`) against searches of the whole frame,
on clips, one frame after another on one thread (OpenCV and ONNX Runtime on one thread each, flip-averaged as
by default): faces written, ids, detection rounds and CPU ms per frame of each, alternating, and how far the
points of the frames both write for a face moved (mean, 95th percentile and max over frames of the mean point
distance, as a share of the face box).

    .venv/bin/python benchmarks/search_masks.py CLIP[,CLIP...] [--rounds N]

(the multi-face clip: `build_multi_face_clip` in benchmarks/peer_mediapipe.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from engines.select import load_backend
from tracker.config import DEFAULT_SMOOTH, TrackParams
from tracker.flip_average import flip_averaged
from tracker.haar import HaarDetector
from tracker.pipeline import Pipeline
from tracker.sources import Frame

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_mediapipe import read_frames  # noqa: E402


def track(images: list[np.ndarray], backend, masked: bool) -> tuple[dict, float]:
    """({(frame, face id): (points, box side)} written with success, ids, rounds), CPU ms per frame."""
    pipeline = Pipeline(HaarDetector(), backend, TrackParams(mask_tracked=masked), DEFAULT_SMOOTH)
    rows, rounds = {}, 0
    start = time.thread_time()
    for i, image in enumerate(images):
        result = pipeline.process(Frame(i, i * 40.0, image))
        rounds += result.detected
        for f in result.faces:
            if f.success:
                rows[(i, f.face_id)] = (f.points, f.box.size)
    cpu = (time.thread_time() - start) * 1000.0 / len(images)
    return {"rows": rows, "ids": len({fid for _, fid in rows}), "rounds": rounds}, cpu


def moved(a: dict, b: dict) -> list[float]:
    """Per frame both write a face at about the same place: the mean point distance over the box side."""
    where = {}
    for (i, _), (pts, side) in b.items():
        c = pts.mean(axis=0)
        where[(i, round(c[0] / 20), round(c[1] / 20))] = (pts, side)
    out = []
    for (i, _), (pts, side) in a.items():
        c = pts.mean(axis=0)
        other = where.get((i, round(c[0] / 20), round(c[1] / 20)))
        if other is not None:
            out.append(float(np.linalg.norm(pts - other[0], axis=1).mean() / side))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips")
    ap.add_argument("--rounds", type=int, default=2, help="alternating timing rounds per setting (default 2)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    backend = flip_averaged(load_backend(None, "auto", threads=1), None)
    print("clip: faces, ids, rounds, CPU ms/frame (median of rounds): whole-frame searches -> searches past the "
          "tracked faces; points moved (share of the box)")
    for clip in args.clips.split(","):
        images = read_frames(clip)
        runs, cpu = {}, {False: [], True: []}
        for r in range(args.rounds):
            for masked in ((False, True) if r % 2 == 0 else (True, False)):
                runs[masked], ms = track(images, backend, masked)
                cpu[masked].append(ms)
        plain, masked = runs[False], runs[True]
        before, after = statistics.median(cpu[False]), statistics.median(cpu[True])
        d = moved(plain["rows"], masked["rows"])
        print(f"{Path(clip).name}: {len(plain['rows'])}, {plain['ids']}, {plain['rounds']}, {before:.2f} -> "
              f"{len(masked['rows'])}, {masked['ids']}, {masked['rounds']}, {after:.2f} ({after / before:.2f}x); "
              f"moved mean {100 * np.mean(d):.2f}%, p95 {100 * np.percentile(d, 95):.2f}%, "
              f"max {100 * np.max(d):.2f}% over {len(d)} face-frames")


if __name__ == "__main__":
    main()
