"""One frame through the tracker: scene-cut test, detection when due, crops, one engine batch (keypoints, and
attribute heads with --attributes), keypoints back to the frame, optional cascade refinement (--refine, one
second-stage batch), track update with confidence, One Euro smoothing; timed per stage.

`Pipeline.process(frame)` returns a `FrameResult`; drawing and writing are the caller's business.
"""

from __future__ import annotations

import time

import numpy as np

from engines.backend import Backend, ModelInfo
from engines.errors import UserError
from engines.model_meta import OUTPUT_NAME, attribute_classes, attribute_labels
from tracker.cascade import refine_points, stage2_zoom
from tracker.config import SmoothParams, TrackParams
from tracker.crop import ANCHORS, CROP_SIZE, box_from_keypoints, crop_face, from_crop, to_gray
from tracker.face_check import FaceCheck
from tracker.haar import HaarDetector
from tracker.keypoints import KAGGLE15, KeypointSet
from tracker.one_euro import OneEuroFilter
from tracker.results import REFINE_STAGE, FaceResult, FrameResult
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


def model_attributes(backend: Backend) -> dict[str, list[str]]:
    """{attribute: class names} of the backend's attribute heads, for --attributes; UserError when the model
    has none or the backend cannot give their outputs."""
    classes = attribute_classes(backend.info)
    if not classes:
        raise UserError(f"--attributes: model {backend.info.path} has no attribute heads "
                        "(train one with `fkd-track train fit --multitask`)")
    if not callable(getattr(backend, "predict_all", None)):
        raise UserError(f"--attributes: the {backend.name} backend gives keypoints only; "
                        "use --backend onnxruntime or torch")
    return classes


class Pipeline:
    """Detector + engine (+ second stage) + tracker + smoothers for one stream. Not thread-safe; one per stream.

    `attributes=True` runs the model's attribute heads in the same engine call as the keypoints (UserError
    for a model without heads); `refine` is a cascade second-stage backend (tracker.cascade) or None.
    """

    def __init__(
        self, detector: HaarDetector, backend: Backend, track: TrackParams, smooth: SmoothParams,
        attributes: bool = False, refine: Backend | None = None,
    ) -> None:
        self.detector = detector
        self.backend = backend
        self.smooth = smooth
        self.kps = model_keypoints(backend.info)
        self.attribute_classes = model_attributes(backend) if attributes else {}
        if refine is not None:  # ModelError (one line) unless a second stage for this model's keypoints
            stage2_zoom(refine.info, backend.info)
        self.stage2 = refine
        self.tracker = Tracker(track, self.kps)
        self.verifier = FaceVerifier(detector)  # the closer look runs the same cascades
        self.face_check = FaceCheck.load()
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
        new = [i for i, slot in enumerate(slots) if slot.track is None]  # new candidates: face or not?
        for i, prob in zip(new, self.face_check.probability(crops[new]), strict=True):
            slots[i].face_prob = float(prob)
        t = _lap(timings, "crop", t)

        crop_points, labels = self._infer(crops)
        t = _lap(timings, "infer", t)

        points = np.stack([from_crop(p, m) for p, m in zip(crop_points, matrices, strict=True)]) if slots \
            else np.zeros((0, len(self.kps), 2))
        if self.stage2 is not None:
            t = _lap(timings, "post", t)
            if slots:
                points = refine_points(self.stage2, gray, points, [slot.box for slot in slots])
            t = _lap(timings, REFINE_STAGE, t)
        tracks = self.tracker.update(frame.index, slots, points, gray.shape)
        # a track's crop box is its slot's box (the same object), which gives each track its slot's labels
        slot_of = {id(slot.box): i for i, slot in enumerate(slots)}
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
                attributes=labels[slot_of[id(tr.crop_box)]] if labels else {},
            ))
        alive = {tr.face_id for tr in tracks}
        for fid in [f for f in self.filters if f not in alive]:
            del self.filters[fid]
        _lap(timings, "smooth", t)
        return FrameResult(frame.index, frame.timestamp_ms, faces, detected, cut, timings, crops=len(slots))

    def _infer(self, crops: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        """One engine call for all crops: (N, K, 2) crop-pixel keypoints and, with attributes, the per-face
        {attribute: (class, probability)} labels (else an empty list)."""
        if not len(crops):
            return np.zeros((0, len(self.kps), 2), np.float32), []
        if not self.attribute_classes:
            return self.backend.predict(crops), []
        outputs = self.backend.predict_all(crops)
        return outputs[OUTPUT_NAME], attribute_labels(outputs, self.attribute_classes)

    def _filter(self, face_id: int) -> OneEuroFilter:
        """The face's own filter, created fresh for a new id (so nothing carries over between tracks)."""
        if face_id not in self.filters:
            self.filters[face_id] = OneEuroFilter(self.smooth)
        return self.filters[face_id]


def _lap(timings: dict[str, float], stage: str, start: float) -> float:
    """Add the ms since `start` to `stage` (a stage may be timed in more than one piece); returns now."""
    now = time.perf_counter()
    timings[stage] = timings.get(stage, 0.0) + (now - start) * 1000.0
    return now
