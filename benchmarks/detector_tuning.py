"""Which cascade passes find which labelled faces: each pass of tracker.haar (frontal, alt2, alt, profile and its
mirror, frontal/alt2 turned by +-15/25/35 degrees) runs once per image at full resolution; combinations are merged
afterwards with the detector's own suppression and scored as `train evaluate` scores a detection.

`python benchmarks/detector_tuning.py` (MTFL training faces drawn per pose + YouTube-Faces frames; slow: ~30 passes
per image). Prints the share found per pose class and YouTube-Faces, and the boxes per image.
"""

from __future__ import annotations

import numpy as np

from tracker.crop import box_from_keypoints, to_gray
from tracker.haar import HaarDetector, HaarParams, suppress
from tracker.keypoints import KAGGLE15
from train.datasets import load_dataset, shared_data_dir
from train.prepare import match_detection

SHARED = str(shared_data_dir())
PER_POSE = (136, 150, 150, 150, 195)  # every left/right profile face, 150 of the others
YTF_FRAMES = 250
COLUMNS = ("left profile", "left", "frontal", "right", "right profile", "YouTube-Faces")


def passes_of(cascades: list[str], angles: list[float], turned: tuple[str, ...] = ("frontal",)) -> list[tuple]:
    out = []
    for c in cascades:
        out.append((c, 0, False))
        if c == "profile":
            out.append((c, 0, True))
    for a in angles:
        for t in turned:
            out += [(t, a, False), (t, -a, False)]
    return out


SETTINGS = {
    "frontal": passes_of(["frontal"], []),
    "alt2": passes_of(["alt2"], []),
    "frontal+alt2": passes_of(["frontal", "alt2"], []),
    "frontal+profile": passes_of(["frontal", "profile"], []),
    "frontal+alt2+profile": passes_of(["frontal", "alt2", "profile"], []),
    "frontal+alt+profile": passes_of(["frontal", "alt", "profile"], []),
    "frontal+profile, rotation 15": passes_of(["frontal", "profile"], [15]),
    "frontal+profile, rotation 25": passes_of(["frontal", "profile"], [25]),
    "frontal+profile, rotation 35": passes_of(["frontal", "profile"], [35]),
    "frontal+alt2+profile, rotation 25": passes_of(["frontal", "alt2", "profile"], [25]),
    "frontal+alt2+profile, rotation 15,35": passes_of(["frontal", "alt2", "profile"], [15, 35]),
    "frontal+alt2+profile, rotation 25 (alt2 turned)": passes_of(["frontal", "alt2", "profile"], [25], ("alt2",)),
}


def main() -> None:
    rng = np.random.default_rng(0)
    mtfl = load_dataset(f"mtfl:{SHARED}/mtfl/training.txt")
    ytf = load_dataset(f"ytf:{SHARED}/ytf/training_frames_keypoints.csv")
    rows = []
    for c, n in enumerate(PER_POSE):
        idx = np.flatnonzero(mtfl.attributes[:, 3] == c)
        rows += [(mtfl, int(i), c) for i in rng.choice(idx, min(n, len(idx)), replace=False)]
    rows += [(ytf, int(i), 5) for i in rng.choice(len(ytf), YTF_FRAMES, replace=False)]
    det = HaarDetector(HaarParams(cascades=("frontal", "alt2", "alt", "profile"), angles=()))
    cascades = dict(det.cascades)
    needed = sorted({p for ps in SETTINGS.values() for p in ps})
    results = []
    for fs, i, c in rows:
        img = to_gray(fs.load_image(i))
        small, scale, min_side = det._shrunk(img, 640)
        found = {p: det.search(small, cascades[p[0]], mirror=p[2], angle=p[1], min_side=min_side, scale=scale)
                 for p in needed}
        results.append((fs.box_points[i], c, found))
    print(f"{'setting':<50}" + "".join(f"{n[:13]:>14}" for n in COLUMNS) + f"{'all':>8}{'boxes/img':>10}")
    for name, ps in SETTINGS.items():
        hit, total, boxes = np.zeros(6), np.zeros(6), 0
        for pts, c, found in results:
            merged = suppress([b for p in ps for b in sorted(found[p], key=lambda b: -b.size)], 0.3)
            boxes += len(merged)
            hit[c] += match_detection(merged, pts, box_from_keypoints(pts, KAGGLE15)) is not None
            total[c] += 1
        print(f"{name:<50}" + "".join(f"{100 * h / t:13.1f}%" for h, t in zip(hit, total, strict=True))
              + f"{100 * hit.sum() / total.sum():7.1f}%{boxes / len(results):10.2f}")


if __name__ == "__main__":
    main()
