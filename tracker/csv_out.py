"""The keypoint CSV: one row per face per frame (one success=0 row for a frame without a face); with
--attributes two more columns per attribute head after the coordinates: NAME (class) and NAME_p (its probability).

Rows of a frame go to the file in one unbuffered write, so it is valid up to the last finished frame even
after Ctrl-C, SIGTERM, a failing source or a full disk (a partly written frame is cut off again).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence

from engines.errors import UserError
from engines.output_files import is_stream, open_stream
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
    """Writes the header and one frame at a time to `path` (creating its folder). `attributes`: the attribute
    heads to export (each face's FaceResult.attributes must have them), or none.

    The file is opened (and an old file of that name replaced) only with the first frame, so a run that fails
    before its first frame (an unreadable video) leaves an old file as it was; `finish` writes the header of a
    run that ended without a frame. Writes go straight to the file (no buffer), a frame's rows in one piece;
    when a write fails (disk full, I/O error) the file is cut back to its last complete row and the failure is
    one UserError line."""

    def __init__(
        self, path: str | os.PathLike, coordinate_columns: Sequence[str], attributes: Sequence[str] = ()
    ) -> None:
        self.path = os.fspath(path)
        self.n_coords = len(coordinate_columns)
        self.attributes = tuple(attributes)
        self.rows = 0
        self._header = ",".join(csv_header(coordinate_columns, self.attributes))
        self._complete = 0  # bytes of the file that hold whole rows
        self._file = None  # opened with the first frame
        self._stream = False

    @property
    def opened(self) -> bool:
        """Whether the file was written (the first frame came, or `finish` ran)."""
        return self._file is not None

    def _open(self) -> None:
        try:
            if is_stream(self.path):  # a pipe, device or inherited descriptor: written in place, never cut back
                self._stream = True
                self._file = open_stream(self.path)
            else:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                self._file = open(self.path, "wb", buffering=0)
        except OSError as err:
            raise UserError(f"cannot write CSV {self.path}: {err.strerror or err}") from None
        try:
            self._write([self._header])
        except UserError:
            self._file.close()
            if not self._stream and os.path.isfile(self.path):  # not even the header fitted: no empty file
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            raise

    def _write(self, lines: list[str]) -> None:
        data = memoryview("".join(line + "\n" for line in lines).encode("utf-8"))
        size = len(data)
        try:
            while data:
                written = self._file.write(data)
                data = data[written:]
        except BrokenPipeError:
            if self._stream:  # the reader stopped reading (`| head`): Typer's click ends quietly (exit 1)
                raise
            self._cut_back()
            raise UserError(f"cannot write CSV {self.path}: broken pipe; kept its {self.rows} complete rows") from None
        except OSError as err:
            self._cut_back()
            raise UserError(
                f"cannot write CSV {self.path}: {err.strerror or err}; kept its {self.rows} complete rows"
            ) from None
        except BaseException:  # Ctrl-C / SIGTERM between two pieces of one frame
            self._cut_back()
            raise
        self._complete += size  # counted, not told: a pipe (--csv /dev/stdout) has no position

    def _cut_back(self) -> None:
        """Drop a partly written frame, so the file ends with a complete row (not on a stream: a file behind
        /dev/stdout may hold other lines before ours)."""
        if self._stream:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._file.fileno(), self._complete)
            self._file.seek(self._complete)

    def write_frame(self, frame: int, timestamp_ms: float, faces: Sequence[FaceResult]) -> None:
        lines = format_rows(frame, timestamp_ms, faces, self.n_coords, self.attributes)
        if self._file is None:
            self._open()
        self._write(lines)
        self.rows += len(lines)

    def finish(self) -> None:
        """After a run that completed: the file exists, with its header even when no frame came."""
        if self._file is None:
            self._open()

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()

    def __enter__(self) -> KeypointCsvWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
