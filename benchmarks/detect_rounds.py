"""Detection rounds of the tracker on clips, one frame after another on one thread (OpenCV on one thread, ONNX
Runtime on one): faces found, distinct ids, and the CPU ms per frame of whole-frame rounds, looks around faces
and closer looks, for a `TrackParams` (and `HaarParams`) given as JSON.

    .venv/bin/python benchmarks/detect_rounds.py CLIP[,CLIP...] ['{"search_passes": -1}'] ['{"scale_factor": 1.2}']

(the multi-face clip: `build_multi_face_clip` in benchmarks/peer_mediapipe.py).
"""

from __future__ import annotations

import collections
import json
import sys
import time
from pathlib import Path

import cv2

from engines.select import load_backend
from tracker.config import DEFAULT_SMOOTH, TrackParams
from tracker.haar import HaarDetector, HaarParams
from tracker.pipeline import Pipeline
from tracker.sources import Frame

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_mediapipe import read_frames  # noqa: E402


def timed(obj, name: str, key: str, cpu: collections.Counter, calls: collections.Counter) -> None:
    """Wrap obj.name so its calls and thread CPU seconds add up under `key`."""
    fn = getattr(obj, name)

    def wrapper(*args, **kwargs):
        t = time.thread_time()
        out = fn(*args, **kwargs)
        cpu[key] += time.thread_time() - t
        calls[key] += 1
        return out

    setattr(obj, name, wrapper)


def main(clips: list[str], track: dict, haar: dict | None) -> None:
    cv2.setNumThreads(1)
    backend = load_backend(None, "auto", threads=1)
    for clip in clips:
        images = read_frames(clip)
        pipeline = Pipeline(HaarDetector(HaarParams(**haar) if haar else None), backend, TrackParams(**track),
                            DEFAULT_SMOOTH)
        cpu: collections.Counter = collections.Counter()
        calls: collections.Counter = collections.Counter()
        timed(pipeline, "_whole", "whole", cpu, calls)  # also called (returning at once) for looks around only
        timed(pipeline, "_around", "around", cpu, calls)
        timed(pipeline.verifier, "holds_face", "verify", cpu, calls)
        faces, ids = 0, set()
        start = time.thread_time()
        for i, image in enumerate(images):
            result = pipeline.process(Frame(i, i * 40.0, image))
            faces += sum(f.success for f in result.faces)
            ids |= {f.face_id for f in result.faces}
        total = time.thread_time() - start
        n = len(images)
        print(f"{Path(clip).name:28s} frames {n} faces {faces} ids {len(ids)} cpu/frame {total / n * 1000:.1f} ms; "
              + ", ".join(f"{k} {calls[k]}x {cpu[k] / n * 1000:.1f} ms/f" for k in ("whole", "around", "verify")))


if __name__ == "__main__":
    main(sys.argv[1].split(","), json.loads(sys.argv[2]) if len(sys.argv) > 2 else {},
         json.loads(sys.argv[3]) if len(sys.argv) > 3 else None)
