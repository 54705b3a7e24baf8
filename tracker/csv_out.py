"""The keypoint CSV: one row per face per frame (one success=0 row for a frame without a face); with
--attributes two more columns per attribute head after the coordinates: NAME (class) and NAME_p (its probability).

Rows of a frame are written in one call and flushed, so the file is valid up to the last finished frame
even after Ctrl-C or a failing source.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from engines.errors import UserError
from tracker.results import FaceResult

BASE_COLUMNS = (
    "frame", "timestamp_ms", "face_id", "success", "confidence", "box_x", "box_y", "box_w", "box_h",
)


def attribute_columns(attributes: Sequence[str]) -> list[str]:
    """NAME, NAME_p for every attribute head in model order, e.g. gender,gender_p,pose,pose_p."""
    return [c for a in attributes for c in (a, f"{a}_p")]


def csv_header(coordinate_columns: Sequence[str], attributes: Sequence[str] = ()) -> list[str]:
    """The full header: the nine base columns, then name_x, name_y for every keypoint in model order, then
    (with attribute heads) NAME, NAME_p for each head."""
    return [*BASE_COLUMNS, *coordinate_columns, *attribute_columns(attributes)]


def _num(v: float, digits: int) -> str:
    return f"{v:.{digits}f}" if math.isfinite(v) else ""


def _text(value: str) -> str:
    """A CSV field: quoted when it holds a comma, quote or line break."""
    return f'"{value.replace(chr(34), chr(34) * 2)}"' if any(c in value for c in ',"\r\n') else value


def format_rows(
    frame: int, timestamp_ms: float, faces: Sequence[FaceResult], n_coords: int, attributes: Sequence[str] = ()
) -> list[str]:
    """The CSV lines (without newline) for one frame; `attributes` are the heads whose columns the header has."""
    ts = _num(timestamp_ms, 1)
    if not faces:
        return [",".join([str(frame), ts, "", "0", "", "", "", "", ""] + [""] * (n_coords + 2 * len(attributes)))]
    lines = []
    for f in faces:
        x, y, w, h = f.box_xywh
        coords = [_num(float(v), 2) for v in f.points.reshape(-1)]
        if len(coords) != n_coords:
            raise ValueError(f"face has {len(coords)} coordinates, the header {n_coords}")
        labels = []
        for a in attributes:
            name, prob = f.attributes[a]
            labels += [_text(name), _num(prob, 3)]
        lines.append(",".join([
            str(frame), ts, str(f.face_id), "1" if f.success else "0", _num(f.confidence, 3),
            _num(x, 1), _num(y, 1), _num(w, 1), _num(h, 1), *coords, *labels,
        ]))
    return lines


class KeypointCsvWriter:
    """Opens `path` (creating its folder), writes the header, then one frame at a time. `attributes`: the
    attribute heads to export (each face's FaceResult.attributes must have them), or none."""

    def __init__(
        self, path: str | os.PathLike, coordinate_columns: Sequence[str], attributes: Sequence[str] = ()
    ) -> None:
        self.path = os.fspath(path)
        self.n_coords = len(coordinate_columns)
        self.attributes = tuple(attributes)
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(folder, exist_ok=True)
            self._file = open(self.path, "w", newline="", encoding="utf-8")
        except OSError as err:
            raise UserError(f"cannot write CSV {self.path}: {err.strerror or err}") from None
        self.rows = 0
        self._write([",".join(csv_header(coordinate_columns, self.attributes))])

    def _write(self, lines: list[str]) -> None:
        self._file.write("".join(line + "\n" for line in lines))
        self._file.flush()

    def write_frame(self, frame: int, timestamp_ms: float, faces: Sequence[FaceResult]) -> None:
        lines = format_rows(frame, timestamp_ms, faces, self.n_coords, self.attributes)
        self._write(lines)
        self.rows += len(lines)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> KeypointCsvWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
