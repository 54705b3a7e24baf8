"""The one dataset spec parser: `FORMAT:PATH` -> a `FaceSet` of images and keypoints of a requested set.

Formats: kaggle (training.csv / test.csv / label-only table), ytf (Udacity YouTube-Faces CSV), mtfl (MTFL list),
points (your own: a CSV of image paths and any of the Kaggle points by name, blanks where a face is unlabelled).
Each adapter reads its native points (kaggle15, ibug68, mtfl5); `tracker.keypoints.map_keypoints` gives any set.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from engines.errors import UserError
from tracker.keypoints import IBUG68, KAGGLE15, MTFL5, KeypointSet, derivable, get_keypoint_set, map_keypoints

FORMATS = ("kaggle", "ytf", "mtfl", "points")
ATTRIBUTES = ("gender", "smile", "glasses", "pose")  # gender 1=female; smile/glasses 1=yes; pose 0..4
# Class names of each attribute's codes (column order of `FaceSet.attributes`; -1 = unknown).
ATTRIBUTE_CLASSES: dict[str, tuple[str, ...]] = {
    "gender": ("male", "female"),
    "smile": ("no", "yes"),
    "glasses": ("no", "yes"),
    "pose": ("left profile", "left", "frontal", "right", "right profile"),
}
# How each attribute's code changes under a horizontal mirror (pose: left <-> right); others stay.
ATTRIBUTE_FLIP: dict[str, tuple[int, ...]] = {"pose": (4, 3, 2, 1, 0)}


class DatasetError(UserError):
    """A dataset problem worth one line to the user (missing file, malformed row, undecodable image)."""


@dataclass
class FaceSet:
    """Faces from one spec: image sources, keypoints (N, K, 2) with NaN where missing, attributes, groups."""

    spec: str
    kps: KeypointSet
    images: list[str] | np.ndarray  # file paths, or (N, 96, 96) uint8 for the Kaggle format
    keypoints: np.ndarray
    attributes: np.ndarray  # (N, 4) int8, -1 where missing; see ATTRIBUTES
    groups: list[str]  # identity / source image, for a leak-free train/validation split
    rows: list[str]  # "file:line" of each face, for error messages
    precropped: bool = False  # Kaggle images are already 96x96 face crops
    skipped: list[str] = field(default_factory=list)  # "file:line: reason" of rows dropped by skip_bad
    # (N, 15, 2) Kaggle-15 points (eye centres, mouth corners...) that place each face's box; None: from keypoints
    box_points: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.box_points is None:
            self.box_points = map_keypoints(self.keypoints, self.kps, KAGGLE15)

    def __len__(self) -> int:
        return len(self.keypoints)

    def subset(self, rows: np.ndarray) -> FaceSet:
        """The faces at `rows` (integer indices), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        images = self.images[rows] if isinstance(self.images, np.ndarray) else (
            [self.images[i] for i in rows] if self.has_images else self.images)
        return FaceSet(self.spec, self.kps, images, self.keypoints[rows], self.attributes[rows],
                       [self.groups[i] for i in rows], [self.rows[i] for i in rows], self.precropped,
                       list(self.skipped), self.box_points[rows])

    def with_keypoints(self, kps: KeypointSet) -> FaceSet:
        """These faces with keypoints of set `kps` (copied or derived from the native points).

        Faces with none of its points labelled are dropped and listed in `skipped`; DatasetError when the
        source has none of the set's points at all (e.g. ibug68 from MTFL's five).
        """
        if kps.names == self.kps.names:
            return self
        if not derivable(self.kps, kps):
            raise DatasetError(f"{self.spec}: its {self.kps.name} points give none of the {kps.name} keypoints")
        points = map_keypoints(self.keypoints, self.kps, kps)
        keep = np.isfinite(points).all(axis=-1).any(axis=-1)
        out = self.subset(np.flatnonzero(keep))
        out.skipped += [f"{self.rows[i]}: no {kps.name} keypoint labelled" for i in np.flatnonzero(~keep)]
        out.kps, out.keypoints = kps, points[keep]
        return out

    @property
    def has_images(self) -> bool:
        return isinstance(self.images, np.ndarray) or len(self.images) == len(self)

    def require_images(self) -> None:
        """DatasetError unless the faces come with images (Kaggle's label-only table has none)."""
        if not self.has_images:
            raise DatasetError(f"{self.spec}: this file has labels but no images (nothing to crop)")

    def load_image(self, i: int) -> np.ndarray:
        """The grey uint8 image of face i; DatasetError if it is missing or cannot be decoded."""
        self.require_images()
        if isinstance(self.images, np.ndarray):
            return self.images[i]
        path = self.images[i]
        img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if img is None:
            what = "missing" if not os.path.exists(path) else "cannot be decoded"
            raise DatasetError(f"{self.rows[i]}: image {path} {what}")
        return img


def shared_data_dir() -> Path:
    """The shared data folder the tests, benchmarks and `make gpu-check` read: $FKD_SHARED_DATA, else
    ../shared/data beside the repository."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("FKD_SHARED_DATA", default))


LABEL_FILES = {"kaggle": "training.csv or test.csv", "ytf": "SPLIT_frames_keypoints.csv",
               "mtfl": "training.txt or testing.txt", "points": "CSV of image,NAME_x,NAME_y,... columns"}


def not_text(path: str, fmt: str) -> DatasetError:
    """The one message for a label file that is not text (e.g. a video or an image given by mistake)."""
    return DatasetError(f"{path} is not a text label file (it holds binary data; a {fmt} spec names its "
                        f"{LABEL_FILES[fmt]})")


def parse_spec(spec: str) -> tuple[str, str]:
    """Split `FORMAT:PATH`; DatasetError for an unknown format, a missing file or one that does not start as
    UTF-8 text (its first 4 KiB; cheap, so a wrong file is refused before any output is made)."""
    fmt, sep, path = spec.partition(":")
    if not sep or fmt not in FORMATS:
        raise DatasetError(f"dataset spec {spec!r} must be FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}")
    if not os.path.isfile(path):
        raise DatasetError(f"dataset file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4096)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a character cut at 4 KiB is fine
    except UnicodeDecodeError:
        raise not_text(path, fmt) from None
    if b"\0" in head:
        raise not_text(path, fmt)
    return fmt, path


def spec_inputs(spec: str) -> list[str]:
    """The files and folders a spec reads (its label file and image folder), for output checks; [] if invalid."""
    fmt, sep, path = spec.partition(":")
    if not sep or fmt not in FORMATS:
        return []
    if fmt == "ytf" and path.endswith("_frames_keypoints.csv"):
        return [path, path[: -len("_frames_keypoints.csv")]]
    if fmt == "mtfl":  # image paths are relative to the list's folder
        return [path, os.path.dirname(os.path.abspath(path))]
    if fmt == "points":  # the folders its images are in (an output may go beside the file itself)
        return [path, *_image_folders(path)]
    return [path]


def resolve_keypoint_set(keypoints: str | KeypointSet) -> KeypointSet:
    """A KeypointSet, or one looked up by name (DatasetError naming the known sets)."""
    if isinstance(keypoints, KeypointSet):
        return keypoints
    try:
        return get_keypoint_set(keypoints)
    except ValueError as err:
        raise DatasetError(str(err)) from None


def load_dataset(spec: str, skip_bad: bool = False, keypoints: str | KeypointSet = "kaggle15") -> FaceSet:
    """Parse a dataset spec into a FaceSet with the keypoints of set `keypoints` (default: Kaggle's 15).

    Malformed rows raise DatasetError naming file:line, or are dropped and listed in `skipped` when
    skip_bad is set. Images are not read here (see `FaceSet.load_image`) except Kaggle's inline pixels.
    Faces without any point of the requested set are dropped (listed in `skipped`).
    """
    kps = resolve_keypoint_set(keypoints)
    fmt, path = parse_spec(spec)
    loader = {"kaggle": _load_kaggle, "ytf": _load_ytf, "mtfl": _load_mtfl, "points": _load_points}[fmt]
    try:
        faces = loader(spec, path, skip_bad)
    except UnicodeDecodeError:  # binary data after the first 4 KiB parse_spec looked at
        raise not_text(path, fmt) from None
    if len(faces) == 0:
        raise DatasetError(f"{path}: no usable rows")
    faces = faces.with_keypoints(kps)
    if len(faces) == 0:
        raise DatasetError(f"{path}: no row has a {kps.name} keypoint labelled")
    return faces


def _bad(skipped: list[str], skip_bad: bool, where: str, reason: str) -> None:
    if not skip_bad:
        raise DatasetError(f"{where}: {reason} (pass --skip-bad to skip such rows)")
    skipped.append(f"{where}: {reason}")


def _floats(values: list[str], where: str) -> np.ndarray:
    """Coordinates of one row: numbers, or empty/nan for a missing label; ValueError for text or infinities."""
    try:
        out = np.array([float(v) if v.strip() not in ("", "nan", "NaN") else np.nan for v in values])
    except ValueError as err:
        raise ValueError(f"non-numeric value ({err})") from None
    if np.isinf(out).any():
        raise ValueError("infinite coordinate")
    return out


def _labelled(values: list[str], where: str, skipped: list[str], skip_bad: bool) -> np.ndarray | None:
    """A row's coordinates (`_floats`), or None after `_bad` when one is malformed or none is labelled."""
    try:
        out = _floats(values, where)
    except ValueError as err:
        _bad(skipped, skip_bad, where, str(err))
        return None
    if np.isnan(out).all():
        _bad(skipped, skip_bad, where, "no keypoint labelled")
        return None
    return out


def _load_kaggle(spec: str, path: str, skip_bad: bool) -> FaceSet:
    """Kaggle training.csv (30 columns + Image), test.csv (ImageId, Image) or the label-only table."""
    kps = KAGGLE15
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetError(f"{path}: empty file") from None
        cols = {name.strip(): i for i, name in enumerate(header)}
        has_labels = all(c in cols for c in kps.columns)
        if not has_labels and "Image" not in cols:
            missing = [c for c in kps.columns if c not in cols]
            raise DatasetError(f"{path}:1: not a Kaggle keypoints file (missing columns {', '.join(missing[:3])}...)")
        points, pixels, groups, rows, skipped = [], [], [], [], []
        for lineno, rec in enumerate(reader, start=2):
            where = f"{path}:{lineno}"
            if not rec:
                continue
            if len(rec) != len(header):
                _bad(skipped, skip_bad, where, f"expected {len(header)} fields, found {len(rec)}")
                continue
            xy = _labelled([rec[cols[c]] for c in kps.columns], where, skipped, skip_bad) if has_labels \
                else np.full(30, np.nan)
            if xy is None:
                continue
            if "Image" in cols:
                try:
                    img = np.array(rec[cols["Image"]].split(), dtype=np.float64)
                except ValueError:
                    _bad(skipped, skip_bad, where, "Image holds non-numeric pixels")
                    continue
                if img.size != 96 * 96 or img.min() < 0 or img.max() > 255:
                    _bad(skipped, skip_bad, where, f"Image must be 9216 pixel values 0..255, found {img.size}")
                    continue
                pixels.append(img.reshape(96, 96).astype(np.uint8))
            points.append(xy.reshape(len(kps), 2))
            image_id = rec[cols["ImageId"]] if "ImageId" in cols else str(lineno - 1)
            groups.append(f"kaggle/{image_id}")
            rows.append(where)
    images = np.stack(pixels) if pixels else []
    n = len(points)
    return FaceSet(
        spec, kps, images, np.array(points).reshape(n, len(kps), 2), np.full((n, 4), -1, np.int8),
        groups, rows, precropped=True, skipped=skipped,
    )


def _identity(filename: str) -> str:
    """Person name from 'First_Last_0001.jpg' / 'First_Last_21.jpg'; else the file stem."""
    stem = os.path.splitext(os.path.basename(filename))[0]
    m = re.match(r"^(.*[A-Za-z])_\d+$", stem)
    return m.group(1) if m else stem


def _load_ytf(spec: str, path: str, skip_bad: bool) -> FaceSet:
    """`{split}_frames_keypoints.csv` with images in the sibling folder `{split}/`."""
    base = os.path.basename(path)
    split = base[: -len("_frames_keypoints.csv")] if base.endswith("_frames_keypoints.csv") else None
    if not split:
        raise DatasetError(f"{path}: ytf files are named SPLIT_frames_keypoints.csv")
    folder = os.path.join(os.path.dirname(path), split)
    if not os.path.isdir(folder):
        raise DatasetError(f"{path}: image folder {folder} not found")
    points, images, groups, rows, skipped = [], [], [], [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or len(header) != 137:
            raise DatasetError(f"{path}:1: expected a header of 137 columns (file name + 68 x,y pairs)")
        for lineno, rec in enumerate(reader, start=2):
            where = f"{path}:{lineno}"
            if not rec:
                continue
            if len(rec) != 137:
                _bad(skipped, skip_bad, where, f"expected 137 fields, found {len(rec)}")
                continue
            xy = _labelled(rec[1:], where, skipped, skip_bad)
            if xy is None:
                continue
            points.append(xy.reshape(68, 2))
            images.append(os.path.join(folder, rec[0]))
            groups.append(f"ytf/{_identity(rec[0])}")
            rows.append(where)
    n = len(points)
    return FaceSet(spec, IBUG68, images, np.array(points).reshape(n, 68, 2), np.full((n, 4), -1, np.int8),
                   groups, rows, skipped=skipped)


# MTFL point order (image-left first) -> Kaggle names (subject's left = image right), read into MTFL5.
MTFL_TO_KAGGLE = ("right_eye_center", "left_eye_center", "nose_tip", "mouth_right_corner", "mouth_left_corner")


def _load_mtfl(spec: str, path: str, skip_bad: bool) -> FaceSet:
    """MTFL `training.txt`/`testing.txt`: path x1..x5 y1..y5 gender smile glasses pose."""
    root = os.path.dirname(path)
    kps = MTFL5
    idx = [kps.index(n) for n in MTFL_TO_KAGGLE]
    points, images, attrs, groups, rows, skipped = [], [], [], [], [], []
    with open(path) as f:
        for lineno, line in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 15:
                _bad(skipped, skip_bad, where,
                     f"expected 15 fields (path, 10 coordinates, 4 attributes), found {len(parts)}")
                continue
            try:
                vals = _floats(parts[1:11], where)
                a = [int(v) for v in parts[11:15]]
            except ValueError as err:
                _bad(skipped, skip_bad, where, str(err))
                continue
            if np.isnan(vals).all():
                _bad(skipped, skip_bad, where, "no keypoint labelled")
                continue
            if not (a[0] in (1, 2) and a[1] in (1, 2) and a[2] in (1, 2) and 1 <= a[3] <= 5):
                _bad(skipped, skip_bad, where, f"attributes out of range: {parts[11:15]}")
                continue
            xy = np.full((len(kps), 2), np.nan)
            xy[idx, 0], xy[idx, 1] = vals[:5], vals[5:]
            rel = parts[0].replace("\\", "/")
            points.append(xy)
            images.append(os.path.join(root, rel))
            # gender 1 male/2 female -> 0/1; smile, glasses 1 yes/2 no -> 1/0; pose 1..5 -> 0..4
            attrs.append([a[0] - 1, 2 - a[1], 2 - a[2], a[3] - 1])
            groups.append(f"mtfl/{_identity(rel)}")
            rows.append(where)
    n = len(points)
    return FaceSet(spec, kps, images, np.array(points).reshape(n, len(kps), 2),
                   np.array(attrs, dtype=np.int8).reshape(n, 4), groups, rows, skipped=skipped)


def _image_folders(path: str) -> list[str]:
    """The distinct folders of a points file's images ([] when it cannot be read: loading it says why)."""
    root = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if header.count("image") != 1:
                return []
            col = header.index("image")
            return sorted({os.path.dirname(os.path.join(root, rec[col].strip())) for rec in reader
                           if len(rec) > col and rec[col].strip()})
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _load_points(spec: str, path: str, skip_bad: bool) -> FaceSet:
    """Your own faces: a CSV with an `image` column (a path, relative to the CSV's folder), `NAME_x,NAME_y` for
    any of the Kaggle-15 names (`fkd-track video`'s CSV columns; a blank cell is an unlabelled point) and an
    optional `subject` column that keeps one person's faces on one side of the validation split (without it,
    each image is its own group). One row per face; an image with several faces has several rows."""
    kps = KAGGLE15
    root = os.path.dirname(path)
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if "image" not in header:
            raise DatasetError(f"{path}:1: a points file needs an `image` column (and NAME_x,NAME_y columns)")
        twice = sorted({h for h in header if h and header.count(h) > 1})
        if twice:
            raise DatasetError(f"{path}:1: column {twice[0]!r} appears twice")
        cols = {name: i for i, name in enumerate(header)}
        named = {c[:-2] for c in header if c.endswith(("_x", "_y"))}
        unknown = sorted(n for n in named if n not in kps.names)
        if unknown:
            raise DatasetError(f"{path}:1: unknown keypoint {unknown[0]!r} (columns NAME_x, NAME_y with NAME one of "
                               f"{', '.join(kps.names)})")
        unpaired = sorted(n for n in named if f"{n}_x" not in cols or f"{n}_y" not in cols)
        if unpaired:
            raise DatasetError(f"{path}:1: {unpaired[0]} needs both {unpaired[0]}_x and {unpaired[0]}_y")
        if not named:
            raise DatasetError(f"{path}:1: no keypoint columns (NAME_x, NAME_y with NAME one of "
                               f"{', '.join(kps.names)})")
        given = [kps.index(n) for n in kps.names if n in named]
        points, images, groups, rows, skipped = [], [], [], [], []
        for rec in reader:
            where = f"{path}:{reader.line_num}"  # the line the row ends on (a quoted field may span lines)
            if not rec:
                continue
            if len(rec) != len(header):
                _bad(skipped, skip_bad, where, f"expected {len(header)} fields, found {len(rec)}")
                continue
            image = rec[cols["image"]].strip()
            if not image:
                _bad(skipped, skip_bad, where, "no image path")
                continue
            values = _labelled([rec[cols[f"{kps.names[k]}_{a}"]] for k in given for a in "xy"], where, skipped,
                               skip_bad)
            if values is None:
                continue
            xy = np.full((len(kps), 2), np.nan)
            xy[given] = values.reshape(-1, 2)
            points.append(xy)
            images.append(os.path.join(root, image))
            subject = rec[cols["subject"]].strip() if "subject" in cols else ""
            groups.append(f"points/{subject or image}")
            rows.append(where)
    n = len(points)
    return FaceSet(spec, kps, images, np.array(points).reshape(n, len(kps), 2), np.full((n, 4), -1, np.int8),
                   groups, rows, skipped=skipped)


def is_validation(group: str, fraction: float = 0.1) -> bool:
    """Deterministic split by group (identity / source image): the same group always lands together."""
    h = int(hashlib.sha1(group.encode()).hexdigest()[:8], 16)
    return (h % 1000) < fraction * 1000
