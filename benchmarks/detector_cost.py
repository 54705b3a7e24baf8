"""CPU cost of one detection frame at 640x360 for each detector setting (tracker.haar), on frames of the shared
videos resized to 640x360; one OpenCV thread, process CPU time (robust on a machine shared with other jobs).

`python benchmarks/detector_cost.py [ROUNDS]`; settings interleave frame by frame; prints medians and ratios.
The last lines are the tracker's search rounds (tracker.pipeline): the default detector's first pass and
`TrackParams.search_passes` of its other passes, in rotation (tracker.haar.round_passes), each round of the
rotation on every frame, and their mean; then the same with the other passes looking only for faces at least
`TrackParams.search_extra_min` x the smallest face (the tracker's default) and, for the record, at every size.
"""

from __future__ import annotations

import glob
import os
import sys
import time

import cv2
import numpy as np

from tracker.config import DEFAULT_TRACK
from tracker.haar import FRONTAL_ONLY, HaarDetector, HaarParams, round_passes
from train.datasets import shared_data_dir

SETTINGS = {
    "frontal": FRONTAL_ONLY,
    "frontal+alt2": HaarParams(cascades=("frontal", "alt2"), angles=()),
    "frontal+profile": HaarParams(cascades=("frontal", "profile"), angles=()),
    "frontal+alt2+profile": HaarParams(cascades=("frontal", "alt2", "profile"), angles=()),
    "default: frontal+alt2+profile, rotation +-25": HaarParams(),
    "the same, extra passes at full resolution": HaarParams(extra_max_side=640),
}


def frames(shared: str, every: int = 40) -> list[np.ndarray]:
    out = []
    for path in sorted(glob.glob(os.path.join(shared, "videos", "*.avi"))):
        cap = cv2.VideoCapture(path)
        k = 0
        while True:
            ok, f = cap.read()
            if not ok:
                break
            if k % every == 0:
                out.append(cv2.resize(f, (640, 360), interpolation=cv2.INTER_LINEAR))
            k += 1
    return out


def main(rounds: int = 1, shared: str = "") -> None:
    shared = shared or str(shared_data_dir())
    cv2.setNumThreads(1)
    images = frames(shared)
    detectors = {k: HaarDetector(v) for k, v in SETTINGS.items()}
    default = HaarDetector()
    extra = DEFAULT_TRACK.search_passes
    rotation = len(default.passes) - 1
    least = DEFAULT_TRACK.search_extra_min
    searches = {f"search round {r + 1}/{rotation}: frontal + {extra} extra": round_passes(default.passes, r, extra)
                for r in range(rotation)}
    times: dict[str, list[float]] = {k: [] for k in [*SETTINGS, *searches, "every-size"]}
    for _ in range(rounds):
        for f in images:
            for k, d in detectors.items():
                t = time.process_time()
                d.detect(f)
                times[k].append((time.process_time() - t) * 1000.0)
            every = 0.0
            for k, passes in searches.items():
                t = time.process_time()
                default.detect(f, passes, extra_min_size=least * default.params.min_size)
                times[k].append((time.process_time() - t) * 1000.0)
                t = time.process_time()
                default.detect(f, passes)
                every += (time.process_time() - t) * 1000.0 / rotation
            times["every-size"].append(every)
    base = float(np.median(times["frontal"]))
    print(f"{len(images)} frames at 640x360 x {rounds} round(s); median CPU ms per detection frame, one thread")
    every = float(np.median(times.pop("every-size")))
    for k in [*SETTINGS, *searches]:
        v = times[k]
        print(f"{k:<46} {np.median(v):7.1f} ms {np.median(v) / base:6.2f}x")
    mean = float(np.mean([np.median(times[k]) for k in searches]))
    print(f"{f'tracker search round, mean of the rotation (extra passes: faces >= {least:g}x the smallest)':<46} "
          f"{mean:7.1f} ms {mean / base:6.2f}x")
    print(f"{'the same, extra passes for faces of every size':<46} {every:7.1f} ms {every / base:6.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
