"""Multi-face tracking logic: which boxes to crop each frame, when to detect, stable ids, when to drop.

Pure bookkeeping on boxes and keypoint arrays; the pipeline runs the detector and the engine around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from tracker.confidence import combine, detector_agreement, shape_score
from tracker.config import TrackParams
from tracker.crop import FaceBox, box_from_keypoints
from tracker.keypoints import KAGGLE15, KeypointSet

FULL, SEARCH, AROUND = "full", "search", "around"  # where a detection round looks (Tracker.detection_due)


@dataclass
class Track:
    """One followed face. `box` is where to crop it next frame; `face_box` is its upright box now."""

    face_id: int
    box: FaceBox
    face_box: FaceBox
    born: int
    last_confirmed: int
    crop_box: FaceBox | None = None  # the box this frame's crop was taken from
    points: np.ndarray | None = None  # raw keypoints (K, 2) in frame pixels, latest frame
    det_iou: float = 1.0  # overlap with the detector's box when it last confirmed the face
    misses: int = 0  # detection rounds in a row that found no face here
    looked_closer: bool = False  # last confirmed by the closer look only, not by the full-frame detector
    shape: float = 1.0
    confidence: float = 1.0


@dataclass
class BoxCorrection:
    """How this model's keypoint boxes differ from the detector's: a scale and a shift (in box sides, along
    the face's own axes), learnt from frames where the engine saw exactly the detector's crop.

    Applying it makes the detector's box a fixed point of crop -> keypoints -> next crop, whatever the
    model's bias (an undertrained model that shrinks the face would otherwise shrink the crop every frame).
    It starts as no correction worth `prior` detections: one face's box is not the model's bias (the profile
    cascade's box sits toward the back of the head; a well-placed crop from the points beats it there).
    """

    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    samples: int = 0
    prior: int = 4

    def apply(self, box: FaceBox) -> FaceBox:
        t = math.radians(box.angle)
        ox = (self.dx * math.cos(t) - self.dy * math.sin(t)) * box.size
        oy = (self.dx * math.sin(t) + self.dy * math.cos(t)) * box.size
        return replace(box, cx=box.cx + ox, cy=box.cy + oy, size=box.size * self.scale)

    def learn(self, predicted: FaceBox, detected: FaceBox, min_weight: float = 0.1) -> None:
        """Move towards the correction that maps `predicted` (upright, uncorrected) onto `detected`:
        a running mean over the prior and the first samples, then an exponential average."""
        w = max(1.0 / (self.samples + 1 + self.prior), min_weight)
        scale = min(2.0, max(0.5, detected.size / predicted.size))
        dx = (detected.cx - predicted.cx) / predicted.size
        dy = (detected.cy - predicted.cy) / predicted.size
        self.scale += w * (scale - self.scale)
        self.dx += w * (dx - self.dx)
        self.dy += w * (dy - self.dy)
        self.samples += 1


@dataclass
class Slot:
    """One crop to take this frame: for an existing track, or for a new face the detector found."""

    box: FaceBox
    track: Track | None
    detection: FaceBox | None = None  # the detector's box matched to this face on a detection frame
    face_prob: float | None = None  # a new face's crop: P(face) from tracker.face_check (None: not checked)
    verified: bool = False  # a new face already checked on the frame its detection came from (a live round that
    # ended frames later: its box is stale here, so neither its agreement nor its box-bias lesson applies)


@dataclass
class Tracker:
    """Decides the crops of each frame and turns their keypoints into tracks with stable ids."""

    params: TrackParams
    kps: KeypointSet  # the model's points; boxes and shape are judged on the Kaggle points they give
    tracks: list[Track] = field(default_factory=list)
    correction: BoxCorrection = field(default_factory=BoxCorrection)
    next_id: int = 1
    last_detection: int | None = None  # the last frame the detector ran on (anywhere)
    last_search: int | None = None  # the last frame it searched as a whole (FULL or SEARCH)
    lost: list[FaceBox] = field(default_factory=list)  # boxes of tracks lost since, searched around at once

    def __post_init__(self) -> None:
        self._kaggle = self.kps.names == KAGGLE15.names
        self._judged = None
        if not self._kaggle:  # another point set: judged on the Kaggle points it gives
            from tracker.keypoints import derivable

            self._judged = [KAGGLE15.index(n) for n in derivable(self.kps, KAGGLE15)]

    def kaggle_points(self, points: np.ndarray) -> np.ndarray:
        """The model's points (..., K, 2) as KAGGLE15 points (NaN where the model gives none)."""
        if self._kaggle:
            return points
        from tracker.keypoints import map_keypoints

        return map_keypoints(points, self.kps, KAGGLE15)

    def wants_detection(self, frame_index: int) -> bool:
        """Whether the detector runs on this frame at all (see `detection_due`)."""
        return self.detection_due(frame_index) is not None

    def detection_due(self, frame_index: int) -> str | None:
        """Where the detector looks on this frame, or None (adaptive cadence):

        FULL (the whole frame at the detector's resolution) on the first frame, after a cut, while nothing is
        tracked, and always with detect_every 1; SEARCH (the whole frame at low resolution, for new faces)
        every `detect_every` frames, stretched to `detect_every * confident_stretch` while every track is
        confident; AROUND (only around doubtful and lost tracks) at once after a track was lost, and at most
        every `redetect_gap` frames while a track was missed or its confidence is below `redetect_below`."""
        p = self.params
        if self.last_search is None or not self.tracks or p.detect_every == 1:
            return FULL
        stretch = p.confident_stretch if self.all_confident() else 1
        if frame_index - self.last_search >= p.detect_every * stretch:
            return SEARCH
        if self.lost:
            return AROUND
        doubtful = any(t.misses or t.confidence < p.redetect_below for t in self.tracks)
        since = frame_index - (self.last_detection if self.last_detection is not None else self.last_search)
        return AROUND if doubtful and since >= p.redetect_gap else None

    def all_confident(self) -> bool:
        """Every track is at least `confident_above` and neither missed nor found only by a closer look: the
        whole-frame search may then wait `confident_stretch` times longer."""
        p = self.params
        return all(t.confidence >= p.confident_above and not t.misses and not t.looked_closer for t in self.tracks)

    def doubtful(self) -> list[Track]:
        """The tracks an AROUND round looks at: missed, or below `redetect_below`."""
        return [t for t in self.tracks if t.misses or t.confidence < self.params.redetect_below]

    def drop_all(self) -> None:
        """Forget every track (a scene cut); ids are never reused."""
        self.tracks = []
        self.last_detection = self.last_search = None
        self.lost = []

    def plan(
        self, frame_index: int, detections: list[FaceBox] | None, judged: set[int] | None = None
    ) -> list[Slot]:
        """The crops for this frame: one per track, plus one per detection no track claims.

        With detections, tracks and detections are matched greedily by IoU of their upright boxes; a
        matched track whose box drifted from its detection (IoU < reseed_iou) is cropped from the detection,
        the others move `detector_pull` of the way towards it. An unmatched track counts a miss (which
        `confirm` takes back when a closer look finds the face, e.g. turned to profile). A detection no track
        claims starts a new face unless it crowds a tracked one (e.g. Haar's false hit on a chin).
        `judged`: the ids of the tracks the detector looked at (an AROUND round); None: all (a whole-frame
        round, which also restarts the search clock). Tracks it did not look at count no miss.
        """
        if detections is None:
            return [Slot(t.box, t) for t in self.tracks]
        self.last_detection = frame_index
        self.lost = []
        if judged is None:
            self.last_search = frame_index
        p = self.params
        # tracks are upright boxes: compare them with each detection's upright square (a rotated detection's
        # bounding rectangle is up to 1.4x its side, so a small turned hit inside a face would outscore the face)
        upright = [upright_of(d) for d in detections]
        pairs = match_boxes([t.face_box for t in self.tracks], upright, p.match_iou)
        slots = []
        for ti, track in enumerate(self.tracks):
            di = pairs.get(ti)
            if di is None:
                if judged is None or track.face_id in judged:
                    track.misses += 1
                slots.append(Slot(track.box, track))
                continue
            det = detections[di]
            box = track.box if track.face_box.iou(upright[di]) >= p.reseed_iou else det
            slots.append(Slot(pull_towards(box, det, p.detector_pull), track, det))
        claimed = set(pairs.values())
        for di, d in enumerate(detections):
            if di not in claimed and not crowds(d, [t.face_box for t in self.tracks], p.new_face_gap):
                slots.append(Slot(d, None, d))
        return slots

    def confirm(self, track: Track, frame_index: int) -> None:
        """The face is still there although the detector missed it (a closer look found it)."""
        track.misses = 0
        track.looked_closer = True
        track.last_confirmed = frame_index

    def update(
        self, frame_index: int, slots: list[Slot], points: np.ndarray, frame_shape: tuple
    ) -> list[Track]:
        """Take the keypoints (N, K, 2) in frame pixels predicted for the planned slots; returns live tracks.

        New faces get fresh ids; a track is dropped when its keypoints give no face box, the box leaves the
        frame, its confidence falls below `drop_below`, or `max_misses` detection rounds in a row missed it.
        """
        p = self.params
        alive: list[Track] = []
        kaggle = self.kaggle_points(np.asarray(points, dtype=np.float64))
        raw_boxes = [box_from_keypoints(k, KAGGLE15, upright=True) for k in kaggle]
        shapes = [shape_score(k, self._judged) for k in kaggle]
        for slot, raw, shape in zip(slots, raw_boxes, shapes, strict=True):
            if raw is not None and slot.detection is not None and slot.box is slot.detection and not slot.verified and (
                    slot.track is not None or accepts_new_face(shape, raw, slot.detection, slot.face_prob, p)):
                self.correction.learn(raw, upright_of(slot.detection))
        for slot, pts, kag, raw, shape in zip(slots, points, kaggle, raw_boxes, shapes, strict=True):
            boxes = self.boxes_from(kag, raw)
            if boxes is None:
                continue
            upright, crop_box = boxes
            track = slot.track
            if track is None:  # a new candidate becomes a track only when its keypoints look like a face
                if not slot.verified and not accepts_new_face(shape, upright, slot.detection, slot.face_prob, p):
                    continue
                track = Track(self.next_id, crop_box, upright, born=frame_index, last_confirmed=frame_index)
                self.next_id += 1
            if slot.detection is not None:
                track.det_iou = upright.iou(upright_of(slot.detection))
                track.last_confirmed = frame_index
                track.misses, track.looked_closer = 0, False
            track.box, track.face_box, track.crop_box = crop_box, upright, slot.box
            track.points = np.asarray(pts, dtype=np.float64)
            track.shape = shape
            track.confidence = confidence_of(track, shape)
            lost = track.misses >= p.max_misses
            inside = within(upright, frame_shape)
            if lost or not inside or track.confidence < p.drop_below:
                if inside and slot.track is not None:  # it may be back at once: look there next frame
                    self.lost.append(upright)
                continue
            alive.append(track)
        self.tracks = drop_duplicates(alive, p.duplicate_iou)
        return list(self.tracks)

    def boxes_from(self, kaggle: np.ndarray, raw: FaceBox | None) -> tuple[FaceBox, FaceBox] | None:
        """(upright face box, next crop box) from a face's Kaggle points and their upright box `raw`, both
        corrected for the model's bias; the crop turns by `roll_gain` of the face's roll. None: no box."""
        p = self.params
        rolled = raw if p.upright else box_from_keypoints(kaggle, KAGGLE15, upright=False)
        if raw is None or rolled is None:
            return None
        rolled = replace(rolled, angle=rolled.angle * p.roll_gain)
        return self.correction.apply(raw), self.correction.apply(rolled)

    def look_again(self, slots: list[Slot], points: np.ndarray, frame_shape: tuple) -> list[Track]:
        """Take the keypoints (N, K, 2, frame pixels) of a second look at tracks cropped from the detector's own
        box this frame (see `second_look`): their points, boxes and shape follow the second look; what `update`
        decided (ids, matches, misses, agreement with the detection) stands. A look whose points give no face
        box, a box outside the frame or a confidence `update` would drop changes nothing. Returns the live
        tracks: one the second look put on an older track's face is dropped, as `update` drops duplicates."""
        kaggle = self.kaggle_points(np.asarray(points, dtype=np.float64))
        for slot, pts, kag in zip(slots, points, kaggle, strict=True):
            boxes = self.boxes_from(kag, box_from_keypoints(kag, KAGGLE15, upright=True))
            if boxes is None:
                continue
            upright, crop_box = boxes
            track = slot.track
            shape = shape_score(kag, self._judged)
            confidence = confidence_of(track, shape)
            if not within(upright, frame_shape) or confidence < self.params.drop_below:
                continue
            track.face_box, track.box, track.crop_box = upright, crop_box, slot.box
            track.points = np.asarray(pts, dtype=np.float64)
            track.shape, track.confidence = shape, confidence
        self.tracks = drop_duplicates(self.tracks, self.params.duplicate_iou)
        return list(self.tracks)


def second_look(slots: list[Slot], tracks: list[Track]) -> list[Slot]:
    """The crops of a second look this frame: for each track whose crop was the detector's own box (a new face,
    or a track re-cropped from its detection), where the next frame would crop it, from its first points. The
    model places points better in a crop made from points than in a detector's box (the profile cascade's box
    sits toward the back of the head), so a face's first frame gets the crop its later frames get."""
    from_detection = {id(s.box) for s in slots if s.detection is not None and s.box is s.detection}
    return [Slot(t.box, t) for t in tracks if id(t.crop_box) in from_detection]


def first_crop(points: np.ndarray, detection: FaceBox, kps: KeypointSet, params: TrackParams) -> FaceBox | None:
    """Where a fresh tracker takes its second look at a face (`second_look`), from the points (K, 2, image
    pixels) the model gave in the crop of the detector's box `detection`; None when they give no face box.
    `train evaluate --crop detector` scores this crop, as the tracker writes it."""
    tracker = Tracker(params, kps)
    kaggle = tracker.kaggle_points(np.asarray(points, dtype=np.float64))
    raw = box_from_keypoints(kaggle, KAGGLE15, upright=True)
    if raw is None:
        return None
    tracker.correction.learn(raw, upright_of(detection))
    boxes = tracker.boxes_from(kaggle, raw)
    return None if boxes is None else boxes[1]


def confidence_of(track: Track, shape: float) -> float:
    """A track's confidence for keypoints of plausibility `shape`: times its agreement with the detector's last
    box, lowered while the detector misses it or only a closer look found it."""
    return combine(shape, detector_agreement(track.det_iou, track.misses > 0 or track.looked_closer))


def within(box: FaceBox, frame_shape: tuple) -> bool:
    """The box's centre lies in the frame and it is at least 8 px: a face the tracker can keep."""
    height, width = frame_shape[:2]
    return 0 <= box.cx < width and 0 <= box.cy < height and box.size >= 8


def upright_of(box: FaceBox) -> FaceBox:
    """The box without its roll (a rotated detection compared with an upright keypoint box)."""
    return box if box.angle == 0.0 else replace(box, angle=0.0)


def candidate_confidence(shape: float, face_box: FaceBox, detection: FaceBox) -> float:
    """How sure a new candidate is a face: the tracker's own confidence (shape plausibility x agreement of the
    keypoints' upright box with the detection's) for the keypoints the model put in the detection's crop."""
    return combine(shape, detector_agreement(face_box.iou(upright_of(detection))))


def accepts_new_face(shape: float, face_box: FaceBox, detection: FaceBox, face_prob: float | None,
                     params: TrackParams) -> bool:
    """The one rule for a new track: the keypoints in the detection's crop give `candidate_confidence` of at least
    `new_face_min`, and the face check (when run) gives the crop P(face) of at least `face_check_min`."""
    if face_prob is not None and face_prob < params.face_check_min:
        return False
    return candidate_confidence(shape, face_box, detection) >= params.new_face_min


def pull_towards(box: FaceBox, target: FaceBox, weight: float) -> FaceBox:
    """The box moved `weight` of the way to `target` in centre, size and roll (0: box, 1: target)."""
    if weight <= 0.0 or box is target:
        return box
    turn = (target.angle - box.angle + 180.0) % 360.0 - 180.0
    return FaceBox(
        box.cx + weight * (target.cx - box.cx),
        box.cy + weight * (target.cy - box.cy),
        box.size * (target.size / box.size) ** weight,
        box.angle + weight * turn,
    )


def match_boxes(tracks: list[FaceBox], detections: list[FaceBox], min_iou: float) -> dict[int, int]:
    """Greedy one-to-one matching by decreasing IoU; returns {track index: detection index}.

    A pair also qualifies below `min_iou` when the track's centre lies inside the detection and their sizes
    are within 2x (a track that grew or shrank on the face), ranked after every IoU match.
    """
    pairs = []
    for ti, t in enumerate(tracks):
        for di, d in enumerate(detections):
            iou = t.iou(d)
            if iou >= min_iou:
                pairs.append((1.0 + iou, ti, di))
            elif contains(d, t):
                pairs.append((iou, ti, di))
    out: dict[int, int] = {}
    used: set[int] = set()
    for _, ti, di in sorted(pairs, reverse=True):
        if ti in out or di in used:
            continue
        out[ti] = di
        used.add(di)
    return out


def crowds(box: FaceBox, others: list[FaceBox], gap: float) -> bool:
    """`box` and one of `others`, each shrunk to `gap` of its side about its centre, overlap: their centres are
    closer than `gap` times the two sides' mean along both axes (a small face right beside a large one, boxes
    apart, is another face; a small box on the large one's corner is not)."""
    return any(max(abs(box.cx - o.cx), abs(box.cy - o.cy)) < gap * (box.size + o.size) / 2.0 for o in others)


def contains(outer: FaceBox, inner: FaceBox) -> bool:
    """`inner`'s centre lies within `outer` (upright extent) and their sizes differ by less than 2x."""
    half = outer.size / 2.0
    near = abs(inner.cx - outer.cx) < half and abs(inner.cy - outer.cy) < half
    return near and 0.5 < inner.size / outer.size < 2.0


def drop_duplicates(tracks: list[Track], max_iou: float) -> list[Track]:
    """Where two tracks cover the same face (IoU above max_iou, or one's centre inside the other at a
    similar size), keep the older one (lower id)."""
    kept: list[Track] = []
    for t in sorted(tracks, key=lambda t: t.face_id):
        if all(t.face_box.iou(k.face_box) <= max_iou and not contains(k.face_box, t.face_box) for k in kept):
            kept.append(t)
    return kept
