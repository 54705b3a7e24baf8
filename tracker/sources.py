"""Frame sources behind one iterator: camera, video file, image folder, a chain of them, and a
latest-frame reader that captures on its own thread so live processing never falls behind.

Every source yields `Frame`s (index, timestamp in ms, BGR image) and raises `SourceError` (a UserError) with
one clear line when it cannot start, or when it fails mid-stream after yielding what it could.
"""

from __future__ import annotations

import glob
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from engines.errors import UserError
from tracker.config import CameraParams

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class SourceError(UserError):
    """A camera, video or image folder that cannot be opened or read."""


@dataclass
class Frame:
    """One frame: its number in the stream, its time in ms from the stream's start, BGR pixels."""

    index: int
    timestamp_ms: float
    image: np.ndarray


def quiet_video_logs() -> None:
    """Silence OpenCV's and FFmpeg's own warnings; sources report problems themselves, in one line."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


class FrameSource:
    """Base class: iterate for frames, `close()` (or use `with`) to release the device or file."""

    name: str = "source"
    fps: float | None = None
    frame_count: int | None = None  # None when unknown (cameras)

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoSource(FrameSource):
    """A video file. Unreadable files fail on open; one that ends before the frame count in its header
    says (truncated or corrupt) raises SourceError after yielding every frame it could decode."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.name = os.path.basename(self.path)
        if not os.path.isfile(self.path):
            raise SourceError(f"video not found: {self.path}")
        self.cap = cv2.VideoCapture(self.path)
        ok, first = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok or first is None:
            self.cap.release()
            raise SourceError(f"cannot read video {self.path} (not a video OpenCV can decode, or corrupt)")
        self._first: np.ndarray | None = first
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while True:
            if self._first is not None:
                image, self._first = self._first, None
            else:
                ok, image = self.cap.read()
                if not ok or image is None:
                    break
            ms = index * 1000.0 / self.fps if self.fps else self.cap.get(cv2.CAP_PROP_POS_MSEC)
            yield Frame(index, float(ms), image)
            index += 1
        if self.frame_count is not None and index < self.frame_count:
            raise SourceError(
                f"{self.path} ends after {index} of {self.frame_count} frames (truncated or corrupt)"
            )

    def close(self) -> None:
        self.cap.release()


def jpeg_cut_short(data: bytes) -> bool:
    """True for a JPEG that ends before its end-of-image marker (a decoder would fill the missing part grey).

    Walks the marker segments and the entropy-coded scans (where every FF byte is followed by 00, a restart
    marker or fill), so data appended after the end marker (e.g. a phone's motion clip) does not count;
    anything that is not a JPEG, or not one this walk understands, is left to the decoder (False)."""
    if data[:2] != b"\xff\xd8":
        return False
    i, n = 2, len(data)
    while True:
        if i + 2 > n:
            return True
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xD9:  # end of image
            return False
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:  # fill, TEM, restart: no length
            i += 1 if marker == 0xFF else 2
            continue
        if i + 4 > n:
            return True
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if marker != 0xDA:  # a segment; the start of a scan is followed by its entropy-coded data
            continue
        while True:
            j = data.find(b"\xff", i)
            if j < 0 or j + 1 >= n:
                return True
            follower = data[j + 1]
            if follower == 0x00 or 0xD0 <= follower <= 0xD7 or follower == 0xFF:
                i = j + 1 if follower == 0xFF else j + 2
                continue
            i = j
            break


def warn_on_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class ImageFolderSource(FrameSource):
    """The images of a folder in name order, as frames `1000 / fps` ms apart (frame N is the N-th image). A JPEG
    cut short is left out with one `warn` line naming it (not decoded grey-filled); an image that does not decode
    at all stops the stream (SourceError)."""

    def __init__(
        self, folder: str | os.PathLike, fps: float = 25.0, warn: Callable[[str], None] = warn_on_stderr
    ) -> None:
        self.folder = os.fspath(folder)
        self.warn = warn
        self.name = os.path.basename(os.path.normpath(self.folder))
        if not os.path.isdir(self.folder):
            raise SourceError(f"image folder not found: {self.folder}")
        self.paths = sorted(
            p for p in glob.glob(os.path.join(self.folder, "*")) if p.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not self.paths:
            raise SourceError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {self.folder}")
        self.fps = fps
        self.frame_count = len(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            with open(path, "rb") as f:
                data = f.read()
            if jpeg_cut_short(data):
                self.warn(f"skipped {path}: the JPEG is cut short (truncated); frame {index} is left out")
                continue
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
            if image is None:
                raise SourceError(f"cannot read image {path} (corrupt or not an image); stopped there")
            yield Frame(index, index * 1000.0 / self.fps, image)


class ChainSource(FrameSource):
    """Several sources played one after another as one stream: frame numbers and times continue."""

    def __init__(self, sources: list[FrameSource]) -> None:
        if not sources:
            raise SourceError("no input given")
        self.sources = sources
        self.name = " + ".join(s.name for s in sources)
        self.fps = sources[0].fps
        counts = [s.frame_count for s in sources]
        self.frame_count = None if None in counts else sum(counts)

    def __iter__(self) -> Iterator[Frame]:
        index, offset_ms = 0, 0.0
        for src in self.sources:
            step = 1000.0 / src.fps if src.fps else 40.0
            last = -step
            for frame in src:
                last = frame.timestamp_ms
                yield Frame(index, offset_ms + frame.timestamp_ms, frame.image)
                index += 1
            offset_ms += last + step

    def close(self) -> None:
        for s in self.sources:
            s.close()


def camera_device_missing(index: int) -> bool:
    """On Linux a camera index is a /dev/videoN node: when it is absent, do not even ask OpenCV."""
    return sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{index}")


def no_camera_message(index: int) -> str:
    return f"no camera found at index {index}; try `fkd-track video FILE`"


class CameraSource(FrameSource):
    """A camera by index, asked for a resolution, a frame rate and a small driver buffer.

    Opening fails with one line when the camera is missing or sends no frame within `open_timeout_s`
    (busy); a camera that stops sending frames later ends the stream with SourceError.
    """

    def __init__(self, index: int, params: CameraParams | None = None) -> None:
        self.index = index
        self.params = params or CameraParams()
        self.name = f"camera {index}"
        self.frame_count = None
        if camera_device_missing(index):
            raise SourceError(no_camera_message(index))
        self.cap = cv2.VideoCapture(index)
        if not self.cap.isOpened():
            self.cap.release()
            raise SourceError(no_camera_message(index))
        p = self.params
        self.cap.set(cv2.CAP_PROP_BUFFERSIZE, p.buffer)
        self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, p.width)
        self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, p.height)
        self.cap.set(cv2.CAP_PROP_FPS, p.fps)
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else p.fps
        self._first: np.ndarray | None = self._read_first(p.open_timeout_s)
        self.frame_size: tuple[int, int] = self._first.shape[:2]  # (height, width) actually delivered
        self._t0 = time.monotonic()

    def _read_first(self, timeout_s: float) -> np.ndarray:
        """The first frame, read on a helper thread so that a stuck driver cannot hang the program."""
        box: list = []
        reader = threading.Thread(target=lambda: box.append(self.cap.read()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not box or not box[0][0] or box[0][1] is None:
            if box:
                self.cap.release()
            raise SourceError(
                f"camera {self.index} opened but sent no frame within {timeout_s:g} s "
                "(busy, in use by another program, or not a capture device?)"
            )
        return box[0][1]

    def __iter__(self) -> Iterator[Frame]:
        index, failures = 0, 0
        image: np.ndarray | None = self._first
        self._first = None
        while True:
            if image is None:
                ok, image = self.cap.read()
                if not ok or image is None:
                    failures += 1
                    if failures >= 10:
                        raise SourceError(f"camera {self.index} stopped sending frames (unplugged or busy?)")
                    image = None
                    time.sleep(0.05)
                    continue
            failures = 0
            yield Frame(index, (time.monotonic() - self._t0) * 1000.0, image)
            index += 1
            image = None

    def close(self) -> None:
        self.cap.release()


def list_cameras(max_index: int = 10) -> list[tuple[int, int, int]]:
    """Camera indices below max_index that open and deliver a frame: (index, width, height)."""
    found = []
    for index in range(max_index):
        if camera_device_missing(index):
            continue
        try:
            cam = CameraSource(index, CameraParams(open_timeout_s=2.0))
        except SourceError:
            continue
        h, w = cam.frame_size
        cam.close()
        found.append((index, int(w), int(h)))
    return found


class LatestFrameSource(FrameSource):
    """Reads another source on its own thread and hands out only the newest frame, dropping the ones
    that arrived while the consumer was busy; so a slow pipeline shows the present, not a growing backlog.

    `pace=True` replays a file at its own frame rate, as a camera would deliver it (for testing the live
    path without a camera). `dropped` counts the frames never handed out.
    """

    def __init__(self, inner: FrameSource, pace: bool = False) -> None:
        self.inner = inner
        self.pace = pace
        self.name = inner.name
        self.fps = inner.fps
        self.frame_count = None
        self.dropped = 0
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._done = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        start = time.monotonic()
        try:
            for frame in self.inner:
                if self._stop.is_set():
                    break
                if self.pace:
                    delay = start + frame.timestamp_ms / 1000.0 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                with self._cond:
                    if self._latest is not None:
                        self.dropped += 1
                    self._latest = frame
                    self._cond.notify()
        except BaseException as err:  # handed to the consumer, which raises it in its own thread
            self._error = err
        finally:
            with self._cond:
                self._done = True
                self._cond.notify()

    def __iter__(self) -> Iterator[Frame]:
        self._thread = threading.Thread(target=self._run, name=f"capture {self.name}", daemon=True)
        self._thread.start()
        while True:
            with self._cond:
                while self._latest is None and not self._done:
                    self._cond.wait(0.5)
                frame, self._latest = self._latest, None
                done = self._done
            if frame is not None:
                yield frame
            elif done:
                break
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.inner.close()


def open_inputs(
    paths: list[str], folder_fps: float = 25.0, warn: Callable[[str], None] = warn_on_stderr
) -> FrameSource:
    """Video files and image folders, chained when there are several (`warn`: for images cut short)."""
    sources: list[FrameSource] = []
    try:
        for p in paths:
            sources.append(ImageFolderSource(p, folder_fps, warn) if os.path.isdir(p) else VideoSource(p))
    except SourceError:
        for s in sources:
            s.close()
        raise
    return sources[0] if len(sources) == 1 else ChainSource(sources)
