"""Where each cascade's boxes sit on the labelled faces of the training splits, against the frontal-convention box of
their points (`tracker.crop.box_from_keypoints`): medians of the centre's shift and of the size ratio.

    .venv/bin/python benchmarks/box_bias.py [--per-source 2500]

For every face a cascade finds (the box holding the labelled eyes and mouth, matched as `train prepare` matches
them), in the cascade's own view (a mirrored pass's sideways shift is mirrored back): the centre's shift along x
and y in sides of the cascade's box, and its side over the frontal-convention side. README, "Face detection".
"""

from __future__ import annotations

import argparse

import numpy as np

from tracker.crop import box_from_keypoints, to_gray
from tracker.haar import HaarDetector
from tracker.keypoints import KAGGLE15
from train.datasets import is_validation, load_dataset, shared_data_dir
from train.prepare import match_detection

SHARED = shared_data_dir()
SPECS = (f"mtfl:{SHARED}/mtfl/training.txt", f"ytf:{SHARED}/ytf/training_frames_keypoints.csv")


def main(per_source: int) -> None:
    detector = HaarDetector()
    found: dict[str, list[tuple[float, float, float]]] = {}
    for spec in SPECS:
        fs = load_dataset(spec)
        rows = np.flatnonzero([not is_validation(g) for g in fs.groups])
        for i in rows[:: max(1, len(rows) // per_source)]:
            gray = to_gray(fs.load_image(i))
            frontal = box_from_keypoints(fs.box_points[i], KAGGLE15, upright=True)
            if frontal is None:
                continue
            for name, cascade in detector.cascades:
                for mirror in (False, True) if "profile" in name else (False,):
                    boxes = detector.search(gray, cascade, mirror=mirror, min_side=detector.params.min_size)
                    box = match_detection(boxes, fs.box_points[i], frontal)
                    if box is None:
                        continue
                    sign = -1.0 if mirror else 1.0
                    found.setdefault(name, []).append((sign * (box.cx - frontal.cx) / box.size,
                                                       (box.cy - frontal.cy) / box.size, box.size / frontal.size))
    print(f"{'cascade':10s}{'faces':>7s}{'dx':>9s}{'dy':>9s}{'ratio':>8s}   (medians, in the cascade's own view)")
    for name, rows_ in found.items():
        dx, dy, ratio = np.median(np.array(rows_), axis=0)
        print(f"{name:10s}{len(rows_):7d}{dx:+9.3f}{dy:+9.3f}{ratio:8.3f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-source", type=int, default=2500, help="training faces looked at per source")
    main(ap.parse_args().per_source)
