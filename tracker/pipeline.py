"""One frame through the tracker: scene-cut test, detection when due, crops, one engine batch, keypoints
back to the frame, track update with confidence, One Euro smoothing; timed per stage.

`Pipeline.process(frame)` returns a `FrameResult`; drawing and writing are the caller's business.
"""

from __future__ import annotations

import time

import numpy as np

from engines.backend import Backend, ModelInfo
from tracker.config import SmoothParams, TrackParams
from tracker.crop import ANCHORS, CROP_SIZE, box_from_keypoints, crop_face, from_crop, to_gray
from tracker.errors import UserError
from tracker.haar import HaarDetector
from tracker.keypoints import KAGGLE15, KeypointSet
from tracker.one_euro import OneEuroFilter
from tracker.results import FaceResult, FrameResult
from tracker.scene_cut import SceneCutDetector
from tracker.sources import Frame
from tracker.tracking import Tracker
from tracker.verify import FaceVerifier


def model_keypoints(info: ModelInfo) -> KeypointSet:
    """The model's keypoint set; UserError unless its points give the eye centres and mouth corners that
    place the next frame's crop."""
    if tuple(info.keypoint_names) == KAGGLE15.names:
        return KAGGLE15
    from tracker.keypoints import derivable, keypoint_set_for

    kps = keypoint_set_for(str(info.extra.get("keypoint_set", "model")), info.keypoint_names, info.flip_pairs)
    if not set(ANCHORS) <= set(derivable(kps, KAGGLE15)):
        raise UserError(
            f"model {info.path} predicts {', '.join(kps.names)}; tracking needs points that give "
            "the eye centres and mouth corners"
        )
    return kps


class Pipeline:
    """Detector + engine + tracker + smoothers for one stream. Not thread-safe; one per stream."""

    def __init__(
        self, detector: HaarDetector, backend: Backend, track: TrackParams, smooth: SmoothParams
    ) -> None:
        self.detector = detector
        self.backend = backend
        self.smooth = smooth
        self.kps = model_keypoints(backend.info)
        self.tracker = Tracker(track, self.kps)
        self.verifier = FaceVerifier()
        self.cuts = SceneCutDetector(track.scene_cut)
        self.filters: dict[int, OneEuroFilter] = {}
        self.success_above = track.success_above

    def process(self, frame: Frame) -> FrameResult:
        timings: dict[str, float] = {}
        t = time.perf_counter()

        gray = to_gray(frame.image)
        cut = self.cuts.is_cut(gray)
        if cut:
            self.tracker.drop_all()
        detected = self.tracker.wants_detection(frame.index)
        detections = self.detector.detect(gray) if detected else None

        slots = self.tracker.plan(frame.index, detections)
        if detections is not None:  # a tracked face the detector missed: look closer before doubting it
            for slot in slots:
                missed = slot.track is not None and slot.detection is None
                if missed and self.verifier.holds_face(gray, slot.box):
                    self.tracker.confirm(slot.track, frame.index)
        t = _lap(timings, "detect", t)

        crops = np.empty((len(slots), CROP_SIZE, CROP_SIZE), np.uint8)
        matrices = []
        for i, slot in enumerate(slots):
            crops[i], m = crop_face(gray, slot.box, CROP_SIZE)
            matrices.append(m)
        t = _lap(timings, "crop", t)

        crop_points = self.backend.predict(crops) if slots else np.zeros((0, len(self.kps), 2), np.float32)
        t = _lap(timings, "infer", t)

        points = np.stack([from_crop(p, m) for p, m in zip(crop_points, matrices, strict=True)]) if slots \
            else np.zeros((0, len(self.kps), 2))
        tracks = self.tracker.update(frame.index, slots, points, gray.shape)
        t = _lap(timings, "post", t)

        faces = []
        seconds = frame.timestamp_ms / 1000.0
        for tr in tracks:
            raw = tr.points
            out = self._filter(tr.face_id)(raw, seconds) if self.smooth.enabled else raw
            own = box_from_keypoints(self.tracker.kaggle_points(out), KAGGLE15, upright=True)
            box = tr.face_box if own is None else self.tracker.correction.apply(own)
            faces.append(FaceResult(
                face_id=tr.face_id, points=out, raw_points=raw, box=box,
                crop_box=tr.crop_box, confidence=tr.confidence,
                success=tr.confidence >= self.success_above,
            ))
        alive = {tr.face_id for tr in tracks}
        for fid in [f for f in self.filters if f not in alive]:
            del self.filters[fid]
        _lap(timings, "smooth", t)
        return FrameResult(frame.index, frame.timestamp_ms, faces, detected, cut, timings)

    def _filter(self, face_id: int) -> OneEuroFilter:
        """The face's own filter, created fresh for a new id (so nothing carries over between tracks)."""
        if face_id not in self.filters:
            self.filters[face_id] = OneEuroFilter(self.smooth)
        return self.filters[face_id]


def _lap(timings: dict[str, float], stage: str, start: float) -> float:
    now = time.perf_counter()
    timings[stage] = (now - start) * 1000.0
    return now
