"""One frame through the tracker: scene-cut test, detection when due, crops, one engine batch (keypoints, and
attribute heads with --attributes), keypoints back to the frame, optional cascade refinement (--refine, one
second-stage batch), track update with confidence, One Euro smoothing; timed per stage.

`Pipeline.process(frame)` returns a `FrameResult`; drawing and writing are the caller's business.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from engines.backend import Backend, ModelInfo
from engines.errors import UserError
from engines.model_meta import OUTPUT_NAME, attribute_classes, attribute_labels
from tracker.cadence import idle_gap, quiet_gap
from tracker.cascade import refine_points, stage2_zoom
from tracker.config import SmoothParams, TrackParams
from tracker.crop import ANCHORS, CROP_SIZE, FaceBox, box_from_keypoints, crop_face, from_crop, to_gray
from tracker.face_check import FaceCheck
from tracker.flip_average import FlipAveraged
from tracker.haar import HaarDetector, Pass, round_passes
from tracker.keypoints import KAGGLE15, KeypointSet
from tracker.one_euro import OneEuroFilter
from tracker.results import REFINE_STAGE, FaceResult, FrameResult
from tracker.scene_cut import SceneCutDetector
from tracker.sources import Frame
from tracker.tracking import AROUND, FULL, SEARCH, Slot, Tracker, crowds, match_boxes, second_look
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


@dataclass
class PreparedFrame:
    """A frame with what can be worked out before its turn: its grey image and whether it starts a new shot.

    `ahead` is a whole-frame detection started early on the look-ahead thread (pipelined files), `ahead_kind`
    the round it ran (kind, passes, the tracked faces it blanked out); the frame's own turn uses it only when the
    schedule asks for exactly that round, so the results never depend on it."""

    frame: Frame
    gray: np.ndarray
    cut: bool
    ms: float  # wall ms of the preparation (counted in the "detect" stage)
    cpu_ms: float  # CPU ms of the preparing thread
    ahead: Future | None = None
    ahead_kind: tuple[str, tuple[Pass, ...] | None, tuple[FaceBox, ...]] | None = None


@dataclass
class _Job:
    """An asynchronous detection round (live view): started on frame `index`, for the tracks in `judged`."""

    future: Future
    index: int
    kind: str
    judged: set[int] | None
    generation: int  # the shot it belongs to: a cut makes it stale


class Pipeline:
    """Detector + engine (+ second stage) + tracker + smoothers for one stream. One per stream; `run` is called
    from one thread, frame after frame (`prepare` may run on another thread, also in frame order).

    `attributes=True` runs the model's attribute heads in the same engine call as the keypoints (UserError
    for a model without heads); `refine` is a cascade second-stage backend (tracker.cascade) or None.
    `async_detect=True` (live view): detection rounds run on a worker thread on the frame they were asked for,
    tracks move on from their keypoints meanwhile and the boxes are matched on the frame they arrive;
    a detection never stalls a frame. Call `close()` when done (it waits for a round in flight).
    """

    def __init__(
        self, detector: HaarDetector, backend: Backend, track: TrackParams, smooth: SmoothParams,
        attributes: bool = False, refine: Backend | None = None, async_detect: bool = False,
        cpu_timing: bool = False,
    ) -> None:
        self.detector = detector
        self.backend = backend
        self.smooth = smooth
        self.params = track
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
        self.async_detect = async_detect
        self._worker: ThreadPoolExecutor | None = None
        self._job: _Job | None = None
        self._ahead: ThreadPoolExecutor | None = None  # the look-ahead thread (pipelined files) ...
        self._twin: HaarDetector | None = None  # ... and its own detector (one cascade object, one thread)
        self._ahead_job: Future | None = None
        self.ahead_used = 0  # rounds started ahead that their frame used (pipelined files)
        self._generation = 0
        self._searches = 0  # SEARCH rounds so far: which extra detector passes the next one runs
        self._empty = 0  # whole-frame rounds in a row that left nothing tracked (tracker.cadence.idle_gap)
        self._quiet = 0  # searches in a row that found no new face while every track was confident (quiet_gap)
        self._tracked_at_search: tuple[FaceBox, ...] = ()  # the tracked faces after the last whole-frame round
        # (what the next search blanks out: known before the look-ahead starts it, so pipelined = sequential)
        self.detect_cpu_ms = 0.0  # CPU ms of detection rounds on the live worker or the look-ahead thread (also
        # rounds started ahead and then unused)
        # per-stage CPU time (FrameResult.cpu_ms) only when asked (bench): no clock reads per stage otherwise
        self.clock = time.thread_time if cpu_timing else _no_clock

    def worker(self) -> ThreadPoolExecutor:
        """The live view's detection thread (started on first use), at a lower OS priority (`DETECT_NICENESS`),
        so a detection round takes the cores only while the frame loop does not need them: the live frame's
        latency does not wait on a round."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="fkd-detect", initializer=lower_thread_priority)
        return self._worker

    def close(self) -> None:
        """Wait for the detection rounds in flight and stop the worker and look-ahead threads."""
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)
            self._worker = None
        if self._ahead is not None:
            self._ahead.shutdown(wait=True, cancel_futures=True)
            self._ahead = None
        self._job = self._ahead_job = None

    @property
    def lookahead(self) -> int:
        """How many prepared frames after the current one `run` can use: the longest gap between two
        whole-frame rounds (`due`), so the next round can start as soon as the one before it is done."""
        p = self.params
        return max(1, p.detect_every * p.confident_stretch * max(1, p.quiet_stretch), p.idle_every)

    def prepare(self, frame: Frame) -> PreparedFrame:
        """Grey image and scene-cut test; must be called in frame order (the cut test compares neighbours)."""
        t, c = time.perf_counter(), self.clock()
        gray = to_gray(frame.image)
        cut = self.cuts.is_cut(gray)
        return PreparedFrame(frame, gray, cut, (time.perf_counter() - t) * 1000.0,
                             (self.clock() - c) * 1000.0)

    def process(self, frame: Frame) -> FrameResult:
        """One frame, start to end, on this thread."""
        return self.run(self.prepare(frame))

    def run(self, prep: PreparedFrame, upcoming: Sequence[PreparedFrame] = ()) -> FrameResult:
        """Track one prepared frame. `upcoming`: the frames after it, already prepared (pipelined files); the
        next whole-frame detection the schedule will ask for on one of them is started on the look-ahead
        thread when this frame is done, to run while the frames before it are tracked (`_start_ahead`)."""
        frame, gray = prep.frame, prep.gray
        timings: dict[str, float] = {"detect": prep.ms}
        cpu: dict[str, float] = {"detect": prep.cpu_ms}
        t = time.perf_counter(), self.clock()
        if prep.cut:
            self.tracker.drop_all()
            self._generation += 1
            self._empty = self._quiet = 0
            self._tracked_at_search = ()
        if self.async_detect:
            kind, slots = self._detect_async(gray, frame.index)
        else:
            kind, slots = self._detect_now(prep)
        detected = kind is not None
        t = _lap(self.clock, timings, cpu, "detect", t)

        points, shown, labels, t = self._look(gray, slots, timings, cpu, t, check=True)
        born = self.tracker.next_id
        tracks = self.tracker.update(frame.index, slots, points, gray.shape)
        self._count_round(kind, self.tracker.next_id != born)
        again = second_look(slots, tracks)
        if again:  # the faces cropped from a detector's box: once more, where their points put the crop
            t = _lap(self.clock, timings, cpu, "post", t)
            points, shown_again, labels_again, t = self._look(gray, again, timings, cpu, t)
            tracks = self.tracker.look_again(again, points, gray.shape)
            slots = slots + again
            shown = None if shown is None else np.concatenate([shown, shown_again])
            labels = labels + labels_again
        if kind in (FULL, SEARCH):
            self._tracked_at_search = tuple(t.face_box for t in self.tracker.tracks)
        if upcoming and not self.async_detect:
            self._start_ahead(upcoming)
        # a track's crop box is its slot's box (the same object), which gives each track its slot's labels
        slot_of = {id(slot.box): i for i, slot in enumerate(slots)}
        t = _lap(self.clock, timings, cpu, "post", t)

        faces = []
        seconds = frame.timestamp_ms / 1000.0
        for tr in tracks:
            raw = tr.points if shown is None else shown[slot_of[id(tr.crop_box)]].astype(np.float64)
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
        _lap(self.clock, timings, cpu, "smooth", t)
        return FrameResult(frame.index, frame.timestamp_ms, faces, detected, prep.cut, timings,
                           crops=len(slots), cpu_ms=cpu)

    # -- where and when the detector looks -------------------------------------------------------------

    def _detect_now(self, prep: PreparedFrame) -> tuple[str | None, list[Slot]]:
        """This frame's detection round (if due) on this thread, or the one started ahead for it: where it looked
        (None: no round), and the plan."""
        frame, gray = prep.frame, prep.gray
        kind = self.due(frame.index)
        if kind is None:  # a round started ahead for nothing finishes on the look-ahead thread, unused
            return None, self.tracker.plan(frame.index, None)
        judged = None if kind != AROUND else {t.face_id for t in self.tracker.doubtful()}
        regions = self._regions(kind, gray.shape)
        passes = self._next_passes(kind)
        masks = self._masks(kind, self._tracked_at_search)
        if prep.ahead is not None and prep.ahead_kind == (kind, passes, masks):
            whole = prep.ahead.result()
            self.ahead_used += 1
        else:
            whole = self._whole(gray, kind, passes, masks=masks)
        around = self._around(gray, regions) if regions else []
        near = [b for b in looks_near([t.face_box for t in self.tracker.tracks], masks)
                if all(b is not r for r in regions)]  # (a track too small for the search: looked around already)
        detections = merge_boxes(whole + around + self._near(gray, near, passes))
        slots = self.tracker.plan(frame.index, detections, judged)
        for slot in slots:  # a tracked face the detector missed: look closer before doubting it
            missed = slot.track is not None and slot.detection is None
            if missed and (judged is None or slot.track.face_id in judged) \
                    and self.verifier.holds_face(gray, slot.box):
                self.tracker.confirm(slot.track, frame.index)
        return kind, slots

    def _start_ahead(self, upcoming: Sequence[PreparedFrame]) -> None:
        """Start the next whole-frame round early: on the first of the `upcoming` frames (in order) that the
        schedule, as it stands after this frame, gives a FULL or SEARCH round (a cut: always FULL), on the
        look-ahead thread with its own detector, so a round costs no frame its wait while the frames before it
        are tracked. One round runs ahead at a time. The schedule may change before that frame's turn (a track
        doubts or is lost); the frame then runs its own round, and the one started ahead goes unused (while it
        runs, no other round starts ahead)."""
        if self._ahead_job is not None and not self._ahead_job.done():
            return
        for prep in upcoming:
            kind = FULL if prep.cut else self.due(prep.frame.index)
            if kind not in (FULL, SEARCH):
                continue
            if prep.ahead is None:
                passes = self._passes(kind)
                masks = self._masks(kind, self._tracked_at_search)
                if self._ahead is None:
                    self._ahead = ThreadPoolExecutor(1, thread_name_prefix="fkd-detect-ahead")
                prep.ahead = self._ahead_job = self._ahead.submit(self._ahead_round, prep.gray, kind, passes,
                                                                  masks)
                prep.ahead_kind = (kind, passes, masks)
            return

    def _detect_async(self, gray: np.ndarray, index: int) -> tuple[str | None, list[Slot]]:
        """Live view: take the boxes of a finished round (if any), start a new round when one is due; never
        waits for the detector. Returns where the round applied here looked (None: none) and the plan."""
        job, detections, judged, held, applied = self._job, None, None, set(), None
        if job is not None and job.future.done():
            self._job = None
            boxes, held = job.future.result()
            if job.generation == self._generation:  # a round from before a cut saw another shot
                alive = {t.face_id for t in self.tracker.tracks}
                detections, applied = boxes, job.kind
                judged = None if job.judged is None else job.judged & alive
        detected = detections is not None
        slots = self.tracker.plan(index, detections, judged)
        if detected:
            for slot in slots:
                if slot.track is not None and slot.detection is None and slot.track.face_id in held:
                    self.tracker.confirm(slot.track, index)
                slot.verified = slot.track is None  # the round checked its new faces on their own frame
        kind = self.due(index)
        if self._job is None and kind is not None and not detected:
            judged_now = None if kind != AROUND else {t.face_id for t in self.tracker.doubtful()}
            looks = [(t.face_id, t.face_box) for t in self.tracker.tracks
                     if judged_now is None or t.face_id in judged_now]
            regions = self._regions(kind, gray.shape)
            passes = self._next_passes(kind)
            masks = self._masks(kind, [box for _, box in looks])
            future = self.worker().submit(self._round_job, gray, kind, passes, regions, looks, masks)
            self._job = _Job(future, index, kind, judged_now, self._generation)
        return applied, slots

    def due(self, index: int) -> str | None:
        """Where the detector looks on frame `index` (FULL, SEARCH, AROUND) or None: `Tracker.detection_due`,
        with the whole-frame rounds spaced out while nothing is tracked (`idle_gap`; once backed off they are
        SEARCH rounds, each running part of the detector's passes) and while every track is confident and the
        searches find nothing new (`quiet_gap`). The first frame, the frame after a cut and the first
        `idle_after` frames without a track get a FULL round. No side effects: the look-ahead asks it of frames
        still to come."""
        tr, p = self.tracker, self.params
        kind = tr.detection_due(index)
        if tr.last_search is None or p.detect_every <= 1:
            return kind
        since = index - tr.last_search
        if kind == FULL and not tr.tracks:
            if since < idle_gap(self._empty, p.idle_after, p.idle_every):
                return None
            return FULL if self._empty < p.idle_after else SEARCH
        if kind == SEARCH and not tr.lost and tr.all_confident():
            gap = quiet_gap(p.detect_every * p.confident_stretch, self._quiet, p.quiet_stretch)
            return kind if since >= gap else None
        return kind

    def _count_round(self, kind: str | None, born: bool) -> None:
        """After a frame's track update: count whole-frame rounds that left nothing tracked (`_empty`) and
        searches that found no new face with every track confident (`_quiet`); any doubt resets the latter."""
        tracked = bool(self.tracker.tracks)
        whole = kind in (FULL, SEARCH)
        self._empty = 0 if tracked else self._empty + whole
        if not tracked or not self.tracker.all_confident() or (whole and born):
            self._quiet = 0
        elif whole:
            self._quiet += 1

    def _round_job(self, gray: np.ndarray, kind: str, passes: tuple[Pass, ...] | None, regions: list[FaceBox],
                   looks: list[tuple[int, FaceBox]], masks: tuple[FaceBox, ...]) -> tuple[list[FaceBox], set[int]]:
        """A whole detection round on the worker thread, on the frame it was asked for: the boxes that are no
        looked-at track's (new faces), and the ids of the looked-at tracks a box or a closer look found.
        `masks`: the tracked faces a search blanks out and looks at one by one (the tracks' boxes at its start)."""
        c = self.clock()
        boxes = merge_boxes(self._whole(gray, kind, passes, masks=masks) + self._around(gray, regions)
                            + self._near(gray, list(masks), passes))
        # matched here, against where the tracks were on the round's own frame: by the time the round ends the
        # faces have moved on, so its boxes only start new faces and the tracks they found are confirmed
        pairs = match_boxes([box for _, box in looks], boxes, self.params.match_iou)
        held = {fid for i, (fid, box) in enumerate(looks) if i in pairs or self.verifier.holds_face(gray, box)}
        found = set(pairs.values())
        new = [b for j, b in enumerate(boxes) if j not in found]
        if new:  # new faces are checked here, on the frame they were found in (the live frame has moved on)
            crops = np.stack([crop_face(gray, b, CROP_SIZE)[0] for b in new])
            probs = self.face_check.probability(crops)
            new = [b for b, prob in zip(new, probs, strict=True) if prob >= self.params.face_check_min]
        self.detect_cpu_ms += (self.clock() - c) * 1000.0
        return new, held

    def _ahead_round(self, gray: np.ndarray, kind: str, passes: tuple[Pass, ...] | None,
                     masks: tuple[FaceBox, ...]) -> list[FaceBox]:
        """`_whole` on the look-ahead thread, with its own detector (made there by the first round, so its
        loading does not hold up the tracker; a failure to load is raised where the round's frame takes it);
        its CPU counted in `detect_cpu_ms`."""
        c = self.clock()
        if self._twin is None:
            self._twin = self.detector.twin()
        boxes = self._whole(gray, kind, passes, self._twin, masks)
        self.detect_cpu_ms += (self.clock() - c) * 1000.0
        return boxes

    def _min_face(self) -> float:
        """The smallest face side the detector reports, in the pixels of the image it is given."""
        return float(getattr(getattr(self.detector, "params", None), "min_size", 40))

    def _passes(self, kind: str) -> tuple[Pass, ...] | None:
        """The detector passes of the next round of this kind: SEARCH rounds run the first pass and
        `search_passes` of the others in rotation (by the count of SEARCH rounds, so a file's rounds are the
        same pipelined or not); FULL and AROUND rounds run them all (None)."""
        passes = getattr(self.detector, "passes", None)
        if kind != SEARCH or passes is None or self.params.search_passes < 0:
            return None
        chosen = round_passes(passes, self._searches, self.params.search_passes)
        return None if chosen == passes else chosen

    def _next_passes(self, kind: str) -> tuple[Pass, ...] | None:
        """`_passes(kind)` for the round starting now, counting it when it is a SEARCH round."""
        passes = self._passes(kind)
        if kind == SEARCH:
            self._searches += 1
        return passes

    def _whole(self, gray: np.ndarray, kind: str, passes: tuple[Pass, ...] | None = None,
               detector: HaarDetector | None = None, masks: tuple[FaceBox, ...] = ()) -> list[FaceBox]:
        """FULL: the detector on the whole frame; SEARCH: on the frame shrunk to `search_side` (`passes` of
        it only, the passes after the first for faces at least `search_extra_min` x its smallest), with the
        tracked faces `masks` blanked out (`blank_out`) and the boxes that crowd a blanked face dropped
        (`tracker.tracking.crowds` with `new_face_gap`, against the masks' own places: a blanked square's edge
        can fool a cascade, and `_near` looks there);
        AROUND: none. `detector`: a twin of the pipeline's (the look-ahead thread's), or None for the
        pipeline's own."""
        detector = self.detector if detector is None else detector
        if kind == FULL:
            return list(detector.detect(gray))
        if kind == SEARCH:
            extra = self.params.search_extra_min * self._min_face()
            boxes = detect_scaled(detector, blank_out(gray, masks), self.params.search_side / max(gray.shape[:2]),
                                  passes, extra_min_size=extra if self.params.search_extra_min > 1.0 else None)
            return [b for b in boxes if not crowds(b, list(masks), self.params.new_face_gap)]
        return []

    def _masks(self, kind: str, tracked: Sequence[FaceBox]) -> tuple[FaceBox, ...]:
        """The tracked faces a round of this kind blanks out: all of `tracked` in SEARCH rounds
        (`TrackParams.mask_tracked`), none in the others."""
        return tuple(tracked) if kind == SEARCH and self.params.mask_tracked else ()

    def _near(self, gray: np.ndarray, boxes: list[FaceBox], passes: tuple[Pass, ...] | None) -> list[FaceBox]:
        """A search round's look at each tracked face it blanked out, on the region around each box, for faces of
        about its size, the box at `look_size` pixels: the boxes of the first of the round's `passes` (None:
        all the detector's) that finds one there, in trust order (mostly the frontal pass, as in the whole
        frame, where the frontal pass's boxes win; a turned face takes one pass or a few more)."""
        passes = self.detector.passes if passes is None else passes
        return [f for box in boxes
                for f in self.verifier.faces_near(gray, box, passes, work_size=self.params.look_size)]

    def _regions(self, kind: str, shape: tuple) -> list[FaceBox]:
        """The boxes to look around at full detail: in AROUND rounds the doubtful tracks' and the lost ones;
        in SEARCH rounds the tracks too small for the shrunken frame (so a search misses no tracked face)."""
        p = self.params
        if kind == AROUND:
            return [t.face_box for t in self.tracker.doubtful()] + list(self.tracker.lost)
        if kind == SEARCH:
            scale = p.search_side / max(shape[:2])
            if scale >= 1.0:  # the search sees the frame in full
                return []
            small = 1.25 * self._min_face() / scale
            return [t.face_box for t in self.tracker.tracks if t.face_box.size < small]
        return []

    def _around(self, gray: np.ndarray, regions: list[FaceBox]) -> list[FaceBox]:
        """The detector on the region `around_margin` face sides wide around each box, at a scale where the
        face is `around_face` times the detector's smallest face (never enlarged), for faces at least
        `around_min` of the box's size."""
        p = self.params
        out = []
        for box in regions:
            scale = min(1.0, p.around_face * self._min_face() / max(box.size, 1.0))
            least = p.around_min * box.size * scale if p.around_min > 0 else None
            out += detect_in_region(self.detector, gray, box.scaled(p.around_margin), scale, least)
        return out

    def _look(self, gray: np.ndarray, slots: list[Slot], timings: dict[str, float], cpu: dict[str, float],
              t: tuple[float, float], check: bool = False) -> tuple:
        """Crop the slots, run the engine on them (and the second stage), timed per stage from `t`: (frame-pixel
        points (N, K, 2) the tracker decides on, the points to show where they differ or None, attribute labels,
        now). `check`: the new faces' crops also get the face/non-face check (`Slot.face_prob`)."""
        crops = np.empty((len(slots), CROP_SIZE, CROP_SIZE), np.uint8)
        matrices = []
        for i, slot in enumerate(slots):
            crops[i], m = crop_face(gray, slot.box, CROP_SIZE)
            matrices.append(m)
        new = [i for i, slot in enumerate(slots) if check and slot.track is None and not slot.verified]
        for i, prob in zip(new, self.face_check.probability(crops[new]), strict=True):
            slots[i].face_prob = float(prob)
        t = _lap(self.clock, timings, cpu, "crop", t)

        crop_points, shown_points, labels = self._infer(crops)
        t = _lap(self.clock, timings, cpu, "infer", t)

        points = _to_frame(crop_points, matrices, len(self.kps))
        shown = None if shown_points is None else _to_frame(shown_points, matrices, len(self.kps))
        if self.stage2 is not None:  # the second stage's points are the ones decided on and shown
            t = _lap(self.clock, timings, cpu, "post", t)
            if slots:
                points = refine_points(self.stage2, gray, points if shown is None else shown,
                                       [slot.box for slot in slots])
            shown = None
            t = _lap(self.clock, timings, cpu, REFINE_STAGE, t)
        return points, shown, labels, t

    def _infer(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, list[dict]]:
        """One engine call for all crops: (N, K, 2) crop-pixel keypoints; the points to show and write when they
        differ from those (--flip-average: averaged with the mirror image's; else None); and, with attributes, the
        per-face {attribute: (class, probability)} labels (else an empty list)."""
        if not len(crops):
            return np.zeros((0, len(self.kps), 2), np.float32), None, []
        flipped = isinstance(self.backend, FlipAveraged)
        if not self.attribute_classes:
            return (*self.backend.predict_both(crops), []) if flipped else (self.backend.predict(crops), None, [])
        outputs, shown = self.backend.predict_all_both(crops) if flipped else (self.backend.predict_all(crops), None)
        return outputs[OUTPUT_NAME], shown, attribute_labels(outputs, self.attribute_classes)

    def _filter(self, face_id: int) -> OneEuroFilter:
        """The face's own filter, created fresh for a new id (so nothing carries over between tracks)."""
        if face_id not in self.filters:
            self.filters[face_id] = OneEuroFilter(self.smooth)
        return self.filters[face_id]


DETECT_NICENESS = 10  # how much lower the live view's detection thread runs (Unix niceness, added)


def lower_thread_priority(step: int = DETECT_NICENESS) -> None:
    """Lower the calling thread's OS priority by `step` (Linux: threads have their own niceness); nothing
    where the OS offers no per-thread priority or refuses."""
    if not hasattr(os, "setpriority") or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + step))
    except OSError:
        pass


def _to_frame(crop_points: np.ndarray, matrices: list[np.ndarray], k: int) -> np.ndarray:
    """(N, K, 2) crop-pixel points -> frame pixels, each face by its crop's matrix."""
    if not len(matrices):
        return np.zeros((0, k, 2))
    return np.stack([from_crop(p, m) for p, m in zip(crop_points, matrices, strict=True)])


def _no_clock() -> float:
    return 0.0


def _lap(clock, timings: dict[str, float], cpu: dict[str, float], stage: str, start: tuple[float, float]
         ) -> tuple[float, float]:
    """Add the wall ms and this thread's CPU ms since `start` (perf_counter, `clock`) to `stage` (a stage
    may be timed in more than one piece); returns now."""
    now = time.perf_counter(), clock()
    timings[stage] = timings.get(stage, 0.0) + (now[0] - start[0]) * 1000.0
    cpu[stage] = cpu.get(stage, 0.0) + (now[1] - start[1]) * 1000.0
    return now


def detect_scaled(detector: HaarDetector, gray: np.ndarray, scale: float,
                  passes: tuple[Pass, ...] | None = None, min_size: float | None = None,
                  extra_min_size: float | None = None) -> list[FaceBox]:
    """The detector (`passes` of it; None: all; `min_size`, `extra_min_size`: `HaarDetector.detect`'s, in the
    pixels of the shrunk image) on the grey image shrunk by `scale` (<= 1), boxes back in the image's pixels."""
    kw = {} if passes is None else {"passes": passes}
    for name, value in (("min_size", min_size), ("extra_min_size", extra_min_size)):
        if value is not None:
            kw[name] = value
    if scale >= 1.0:
        return list(detector.detect(gray, **kw))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return [FaceBox(b.cx / scale, b.cy / scale, b.size / scale, b.angle) for b in detector.detect(small, **kw)]


def detect_in_region(detector: HaarDetector, gray: np.ndarray, region: FaceBox, scale: float,
                     min_size: float | None = None) -> list[FaceBox]:
    """The detector on the part of the grey image inside `region`'s upright extent, shrunk by `scale` (looking
    for faces at least `min_size` there, in shrunk pixels, besides the detector's own smallest); boxes in image
    pixels. Nothing for a region (almost) outside the image."""
    x0, y0, x1, y1 = region.pixel_extent(gray.shape)
    if min(x1 - x0, y1 - y0) * scale < 24:
        return []
    boxes = detect_scaled(detector, gray[y0:y1, x0:x1], scale, min_size=min_size)
    return [FaceBox(b.cx + x0, b.cy + y0, b.size, b.angle) for b in boxes]


def blank_out(gray: np.ndarray, boxes: Sequence[FaceBox]) -> np.ndarray:
    """The grey image with each box's upright extent filled with its own mean grey (a copy; the image itself
    when there are no boxes): the cascades reject flat windows at their first stage, so a search spends
    nothing on faces already tracked."""
    if not boxes:
        return gray
    out = gray.copy()
    for box in boxes:
        x0, y0, x1, y1 = box.pixel_extent(gray.shape)
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = int(round(float(gray[y0:y1, x0:x1].mean())))
    return out


def looks_near(tracked: list[FaceBox], masks: Sequence[FaceBox]) -> list[FaceBox]:
    """Where a search that blanked out `masks` (the tracked faces at the last whole-frame round) looks at
    faces one by one: each tracked face now overlapping a mask (where it is now), and each mask no tracked face
    overlaps any more (where one was: it may still be there, or another)."""
    near = [b for b in tracked if any(b.iou(m) > 0.0 for m in masks)]
    return near + [m for m in masks if all(m.iou(b) <= 0.0 for b in tracked)]


def merge_boxes(boxes: list[FaceBox], max_iou: float = 0.5) -> list[FaceBox]:
    """One box per face from overlapping searches: largest first, a box overlapping a kept one is dropped."""
    kept: list[FaceBox] = []
    for b in sorted(boxes, key=lambda b: -b.size):
        if all(b.iou(k) <= max_iou for k in kept):
            kept.append(b)
    return kept
