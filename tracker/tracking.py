"""Multi-face tracking logic: which boxes to crop each frame, when to detect, stable ids, when to drop.

Pure bookkeeping on boxes and keypoint arrays; the pipeline runs the detector and the engine around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tracker.confidence import combine, detector_agreement, shape_score
from tracker.config import TrackParams
from tracker.crop import FaceBox, box_from_keypoints
from tracker.keypoints import KeypointSet


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
    missed: bool = False  # the latest detection round did not find this face
    shape: float = 1.0
    confidence: float = 1.0


@dataclass
class Slot:
    """One crop to take this frame: for an existing track, or for a new face the detector found."""

    box: FaceBox
    track: Track | None
    detection: FaceBox | None = None  # the detector's box matched to this face on a detection frame


@dataclass
class Tracker:
    """Decides the crops of each frame and turns their keypoints into tracks with stable ids."""

    params: TrackParams
    kps: KeypointSet
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1
    last_detection: int | None = None

    def wants_detection(self, frame_index: int) -> bool:
        """Detect on the first frame, every `detect_every` frames, when no face is tracked, and (at most
        every `redetect_gap` frames) when some track's confidence fell below `redetect_below`."""
        p = self.params
        if self.last_detection is None or not self.tracks:
            return True
        since = frame_index - self.last_detection
        if since >= p.detect_every:
            return True
        weak = any(t.confidence < p.redetect_below for t in self.tracks)
        return weak and since >= p.redetect_gap

    def drop_all(self) -> None:
        """Forget every track (a scene cut); ids are never reused."""
        self.tracks = []
        self.last_detection = None

    def plan(self, frame_index: int, detections: list[FaceBox] | None) -> list[Slot]:
        """The crops for this frame: one per track, plus one per detection no track claims.

        With detections, tracks and detections are matched greedily by IoU of their upright boxes; a
        matched track whose box drifted from its detection (IoU < reseed_iou) is cropped from the detection.
        """
        if detections is None:
            return [Slot(t.box, t) for t in self.tracks]
        self.last_detection = frame_index
        p = self.params
        pairs = match_boxes([t.face_box for t in self.tracks], detections, p.match_iou)
        slots = []
        for ti, track in enumerate(self.tracks):
            di = pairs.get(ti)
            if di is None:
                track.missed = True
                slots.append(Slot(track.box, track))
                continue
            det = detections[di]
            box = track.box if track.face_box.iou(det) >= p.reseed_iou else det
            slots.append(Slot(box, track, det))
        claimed = set(pairs.values())
        slots += [Slot(d, None, d) for di, d in enumerate(detections) if di not in claimed]
        return slots

    def update(
        self, frame_index: int, slots: list[Slot], points: np.ndarray, frame_shape: tuple
    ) -> list[Track]:
        """Take the keypoints (N, K, 2) in frame pixels predicted for the planned slots; returns live tracks.

        New faces get fresh ids; a track is dropped when its keypoints give no face box, the box leaves the
        frame, its confidence falls below `drop_below`, or the detector has missed it for `lost_after` frames.
        """
        p = self.params
        height, width = frame_shape[:2]
        alive: list[Track] = []
        for slot, pts in zip(slots, points, strict=True):
            upright = box_from_keypoints(pts, self.kps, upright=True)
            crop_box = upright if p.upright else box_from_keypoints(pts, self.kps, upright=False)
            if upright is None or crop_box is None:
                continue
            track = slot.track
            if track is None:
                track = Track(self.next_id, crop_box, upright, born=frame_index, last_confirmed=frame_index)
                self.next_id += 1
            if slot.detection is not None:
                track.det_iou = upright.iou(slot.detection)
                track.last_confirmed = frame_index
                track.missed = False
            track.box, track.face_box, track.crop_box = crop_box, upright, slot.box
            track.points = np.asarray(pts, dtype=np.float64)
            track.shape = shape_score(pts)
            track.confidence = combine(track.shape, detector_agreement(track.det_iou, track.missed))
            lost = track.missed and frame_index - track.last_confirmed > p.lost_after
            inside = 0 <= upright.cx < width and 0 <= upright.cy < height and upright.size >= 8
            if lost or not inside or track.confidence < p.drop_below:
                continue
            alive.append(track)
        self.tracks = drop_duplicates(alive, p.duplicate_iou)
        return list(self.tracks)


def match_boxes(tracks: list[FaceBox], detections: list[FaceBox], min_iou: float) -> dict[int, int]:
    """Greedy one-to-one matching by decreasing IoU; returns {track index: detection index}."""
    pairs = sorted(
        ((t.iou(d), ti, di) for ti, t in enumerate(tracks) for di, d in enumerate(detections)),
        reverse=True,
    )
    out: dict[int, int] = {}
    used: set[int] = set()
    for iou, ti, di in pairs:
        if iou < min_iou:
            break
        if ti in out or di in used:
            continue
        out[ti] = di
        used.add(di)
    return out


def drop_duplicates(tracks: list[Track], max_iou: float) -> list[Track]:
    """Where two tracks cover the same face (IoU above max_iou), keep the older one (lower id)."""
    kept: list[Track] = []
    for t in sorted(tracks, key=lambda t: t.face_id):
        if all(t.face_box.iou(k.face_box) <= max_iou for k in kept):
            kept.append(t)
    return kept
