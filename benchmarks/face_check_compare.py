"""Face checks compared end to end on the shared validation split, as the tracker uses them: of the combined
detector's boxes on the labelled faces (per source, MTFL per head pose), and of its and a loose cascade's boxes on
face-free regions, how many pass the new-face checks (`tracker.verify.new_face_checks`: keypoints and face check).

    .venv/bin/python benchmarks/face_check_compare.py OLD.npz NEW.npz [...]   (weights as `train.face_check` writes)
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

from engines.select import load_backend
from tracker.crop import box_from_keypoints
from tracker.face_check import FaceCheck
from tracker.haar import HaarDetector
from tracker.keypoints import KAGGLE15
from tracker.verify import new_face_checks
from train.datasets import ATTRIBUTE_CLASSES, is_validation, load_dataset, shared_data_dir
from train.evaluate import POSE, face_free_regions
from train.face_check import HARD_NEGATIVES
from train.prepare import match_detection


def cases():
    """(row name, image or region, boxes) for every validation face the detector finds and every face-free region."""
    root = shared_data_dir()
    detector, loose = HaarDetector(), HaarDetector(HARD_NEGATIVES)
    for spec in (f"ytf:{root}/ytf/training_frames_keypoints.csv", f"mtfl:{root}/mtfl/training.txt"):
        faces = load_dataset(spec)
        source = spec.split(":")[0]
        for i in [i for i, g in enumerate(faces.groups) if is_validation(g)]:
            face = box_from_keypoints(faces.box_points[i], KAGGLE15)
            if face is None:
                continue
            image = faces.load_image(i)
            pose = faces.attributes[i, POSE]
            name = source if pose < 0 else f"{source} {ATTRIBUTE_CLASSES['pose'][pose]}"
            found = match_detection(detector.detect(image), faces.box_points[i], face)
            if found is not None:
                yield f"faces: {name}", image, [found]
            for x, y, w, h in face_free_regions(image.shape, [face]):
                region = image[y : y + h, x : x + w]
                yield f"face-free: {source}, detector", region, detector.detect(region)
                yield f"face-free: {source}, loose cascade", region, loose.detect(region)


def main(paths: list[str]) -> None:
    checks = {Path(p).name: FaceCheck.load(p) for p in paths}
    backend = load_backend(None, "onnxruntime")
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for name, image, boxes in cases():
        counts[name]["boxes"] += len(boxes)
        for label, check in checks.items():
            counts[name][label] += int(new_face_checks(backend, image, boxes, KAGGLE15, check).sum())
    print(f"{'boxes accepted as a new face':34s} {'boxes':>6s} " + " ".join(f"{k:>22s}" for k in checks))
    for name in sorted(counts):
        c = counts[name]
        print(f"{name:34s} {c['boxes']:6d} " + " ".join(f"{c[k]:22d}" for k in checks))


if __name__ == "__main__":
    main(sys.argv[1:])
