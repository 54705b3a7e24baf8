"""Build a compact prepared dataset: Haar (or calibrated landmark) face boxes cropped with a margin.

Crops are stored JPEG-encoded (so all shared faces fit in well under 60 MiB) with keypoints in crop pixels.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from engines.output_files import atomic_path
from tracker.crop import (
    CROP_SIZE,
    HAAR_CALIBRATION,
    FaceBox,
    box_from_keypoints,
    crop_face,
    fit_box_calibration,
    to_crop,
)
from tracker.haar import HaarDetector
from tracker.keypoints import KAGGLE15, KeypointSet
from train.datasets import DatasetError, FaceSet, is_validation, load_dataset, resolve_keypoint_set

STORE_SIZE = 120  # stored crop side: the 96 px face box plus a 12 px margin each side for augmentation
JPEG_QUALITY = 92


@dataclass
class Prepared:
    """A prepared dataset in memory: uint8 crops (N, S, S), keypoints (N, K, 2) in crop pixels, and labels."""

    crops: np.ndarray
    keypoints: np.ndarray  # NaN where missing
    attributes: np.ndarray  # (N, 4) int8, -1 where missing
    val: np.ndarray  # bool: validation split
    detector: np.ndarray  # bool: box from the Haar detector (else from calibrated landmarks)
    groups: np.ndarray
    rows: np.ndarray  # "file:line" of the source row
    source: np.ndarray  # index into meta["specs"]
    source_index: np.ndarray  # row index inside that spec's FaceSet
    meta: dict

    def __len__(self) -> int:
        return len(self.crops)

    @property
    def margin(self) -> float:
        """Pixels between the stored crop's edge and the 96 px face box."""
        return (self.meta["store_size"] - self.meta["crop_size"]) / 2.0


def match_detection(boxes: list[FaceBox], points: np.ndarray, guess: FaceBox | None) -> FaceBox | None:
    """The detected box that holds this face's labelled points (eyes and mouth), closest to `guess`."""
    pts = points[np.isfinite(points).all(axis=1)]
    best, best_score = None, 0.0
    for b in boxes:
        x, y, w, h = b.to_xywh()
        inside = ((pts[:, 0] >= x) & (pts[:, 0] <= x + w) & (pts[:, 1] >= y) & (pts[:, 1] <= y + h)).all()
        if not inside:
            continue
        score = b.iou(guess) if guess is not None else 1.0
        if guess is not None and score < 0.3:
            continue
        if score > best_score:
            best, best_score = b, score
    return best


def encode_crop(crop: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise DatasetError("JPEG encoding failed")
    return buf.tobytes()


def prepare(
    specs: list[str],
    out_path: str,
    val_fraction: float = 0.1,
    skip_bad: bool = False,
    limit: int | None = None,
    detector: HaarDetector | None = None,
    progress=None,
    keypoints: str | KeypointSet = "kaggle15",
) -> dict:
    """Detect, crop and store every face of the given specs; returns the summary written into the file.

    `keypoints` names the stored set (kaggle15, mtfl5, nose, ibug68); face boxes are always placed from the
    Kaggle-15 points each source gives (`FaceSet.box_points`), so every set gets the same crops.
    """
    kps = resolve_keypoint_set(keypoints)
    detector = detector or HaarDetector()
    sets: list[FaceSet] = [load_dataset(s, skip_bad=skip_bad, keypoints=kps) for s in specs]
    for fs in sets:
        fs.require_images()

    # pass 1: decode and detect
    work = []  # (set index, row index, image, detected box or None)
    skipped = [s for fs in sets for s in fs.skipped]
    total = sum(min(len(fs), limit or len(fs)) for fs in sets)
    task = progress.add_task("detect", total=total) if progress else None
    for si, fs in enumerate(sets):
        for i in range(min(len(fs), limit or len(fs))):
            try:
                img = fs.load_image(i)
            except DatasetError as err:
                if not skip_bad:
                    raise DatasetError(f"{err} (pass --skip-bad to skip such rows)") from None
                skipped.append(str(err))
                continue
            box = None
            if not fs.precropped:
                guess = box_from_keypoints(fs.box_points[i], KAGGLE15)
                box = match_detection(detector.detect(img), fs.box_points[i], guess)
            work.append((si, i, img, box))
            if progress:
                progress.advance(task)

    # fit the landmark -> Haar box calibration on the faces the detector found
    matched = [(sets[si].box_points[i], b) for si, i, _, b in work if b is not None]
    usable = [(p, b) for p, b in matched if box_from_keypoints(p, KAGGLE15) is not None]
    calib = fit_box_calibration(np.array([p for p, _ in usable]), [b for _, b in usable], KAGGLE15) \
        if len(usable) >= 20 else HAAR_CALIBRATION

    # pass 2: crop
    store = STORE_SIZE
    blobs, points, attrs, val, det, groups, rows, source, source_index = [], [], [], [], [], [], [], [], []
    task = progress.add_task("crop", total=len(work)) if progress else None
    for si, i, img, box in work:
        fs = sets[si]
        pts, box_pts = fs.keypoints[i], fs.box_points[i]
        if fs.precropped:  # already a 96x96 face crop: the box is the whole image
            box = FaceBox.whole_image(img.shape)
        from_det = box is not None and not fs.precropped
        if box is None:
            box = box_from_keypoints(box_pts, KAGGLE15, calib)
        if box is None:  # too few labelled points to place a box: centre on what is labelled
            good = box_pts[np.isfinite(box_pts).all(axis=1)]
            if len(good) < 2:
                skipped.append(f"{fs.rows[i]}: too few keypoints to place a face box")
                if progress:
                    progress.advance(task)
                continue
            span = float(np.ptp(good, axis=0).max())
            box = FaceBox(*good.mean(axis=0), max(span * 2.0, 24.0))
        crop, m = crop_face(img, box.scaled(store / CROP_SIZE), store)
        blobs.append(encode_crop(crop))
        points.append(to_crop(pts, m).astype(np.float32))
        attrs.append(fs.attributes[i])
        val.append(is_validation(fs.groups[i], val_fraction))
        det.append(from_det)
        groups.append(fs.groups[i])
        rows.append(fs.rows[i])
        source.append(si)
        source_index.append(i)
        if progress:
            progress.advance(task)
    if not blobs:
        raise DatasetError("no face could be prepared from " + ", ".join(specs))

    meta = {
        "specs": list(specs),
        "keypoints": kps.name,
        "keypoint_names": list(kps.names),
        "crop_size": CROP_SIZE,
        "store_size": store,
        "val_fraction": val_fraction,
        "calibration": asdict(calib),
        "n_faces": len(blobs),
        "n_val": int(np.sum(val)),
        "n_detector_boxes": int(np.sum(det)),
        "n_skipped": len(skipped),
        "skipped_examples": skipped[:20],
    }
    write_prepared(out_path, blobs, np.stack(points), np.stack(attrs), np.array(val), np.array(det),
                   np.array(groups), np.array(rows), np.array(source), np.array(source_index), meta)
    return meta


def write_prepared(out_path: str, blobs: list[bytes], keypoints: np.ndarray, attributes: np.ndarray,
                   val: np.ndarray, detector: np.ndarray, groups: np.ndarray, rows: np.ndarray,
                   source: np.ndarray, source_index: np.ndarray, meta: dict) -> None:
    """Write a prepared file atomically: JPEG blobs of the stored crops plus the per-face arrays and meta."""
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no .npz suffix
        np.savez(
            f,
            jpeg=np.frombuffer(b"".join(blobs), dtype=np.uint8),
            offsets=np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64),
            keypoints=keypoints.astype(np.float32),
            attributes=attributes.astype(np.int8),
            val=val.astype(bool),
            detector=detector.astype(bool),
            groups=groups,
            rows=rows,
            source=source.astype(np.int16),
            source_index=source_index.astype(np.int32),
            meta=np.array(json.dumps(meta)),
        )


PREPARED_ARRAYS = ("jpeg", "offsets", "keypoints", "attributes", "val", "detector", "groups", "rows", "source",
                   "source_index", "meta")


def _not_prepared(path: str, reason: str = "") -> DatasetError:
    return DatasetError(f"{path} is not a prepared dataset (.npz written by `fkd-track train prepare`)"
                        + (f": {reason}" if reason else ""))


def read_prepared(path: str, keys: tuple[str, ...] = PREPARED_ARRAYS) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays `keys` of a prepared file and its meta, the JPEG crops left coded (cheap without "jpeg");
    DatasetError naming the file when it is missing or not a prepared set."""
    require_prepared_file(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):  # a single .npy array, not an archive
                raise _not_prepared(path)
            missing = [k for k in PREPARED_ARRAYS if k not in z.files]
            if missing:
                raise _not_prepared(path, f"no {', '.join(missing)} array")
            arrays = {k: z[k] for k in dict.fromkeys((*keys, "offsets", "meta"))}
        meta = json.loads(str(arrays["meta"]))
        n = len(arrays["offsets"]) - 1
        for key in keys:
            if key not in ("jpeg", "offsets", "meta") and len(arrays[key]) != n:
                raise _not_prepared(path, f"{key} holds {len(arrays[key])} entries for {n} crops")
    except DatasetError:
        raise
    except PermissionError as err:
        raise DatasetError(f"cannot read {path}: {err.strerror}") from None
    except Exception:  # zip, pickle, key or JSON errors (numpy's text would not help) all mean the same to a user
        raise _not_prepared(path) from None
    if not isinstance(meta, dict) or "store_size" not in meta or "keypoints" not in meta:
        raise _not_prepared(path, "no meta data")
    return arrays, meta


def require_prepared_file(path: str) -> None:
    """DatasetError unless `path` is a file (cheapest; `read_prepared(path, ("meta",))` checks its contents)."""
    if not os.path.isfile(path):
        raise DatasetError(f"prepared dataset not found: {path}")


def load_prepared(path: str) -> Prepared:
    """Read a prepared file and decode its crops; DatasetError if it is missing or not a prepared set."""
    arrays, meta = read_prepared(path)
    jpeg, offsets = arrays["jpeg"], arrays["offsets"]
    crops = np.empty((len(offsets) - 1, meta["store_size"], meta["store_size"]), np.uint8)
    for i in range(len(crops)):
        blob = jpeg[offsets[i] : offsets[i + 1]]
        img = cv2.imdecode(blob, cv2.IMREAD_GRAYSCALE) if len(blob) else None
        if img is None or img.shape != crops.shape[1:]:
            raise DatasetError(f"{path}: crop {i} is corrupt")
        crops[i] = img
    return Prepared(
        crops, arrays["keypoints"], arrays["attributes"], arrays["val"], arrays["detector"], arrays["groups"],
        arrays["rows"], arrays["source"], arrays["source_index"], meta,
    )
