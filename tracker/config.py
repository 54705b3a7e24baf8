"""Tracker settings as frozen dataclasses: the one place where the CLI's defaults are defined.

Each stage takes its own settings object as an explicit argument; the CLI builds them from its options.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrackParams:
    """When to detect, how to match detections to tracks, and when to drop a track."""

    detect_every: int = 10  # run the Haar detector on every N-th frame (1 = every frame)
    redetect_below: float = 0.5  # ... and on the next frame when a track's confidence falls below this
    redetect_gap: int = 4  # at most one confidence-triggered detection per this many frames
    match_iou: float = 0.3  # a detection belongs to a track when their boxes overlap at least this much
    reseed_iou: float = 0.5  # a matched track whose box overlaps its detection less is re-cropped from it
    max_misses: int = 2  # drop a track after this many detection rounds in a row found no face there
    drop_below: float = 0.05  # drop a track at once when its confidence falls below this
    success_above: float = 0.25  # rows with confidence at or above this are written with success=1
    new_face_gap: float = 0.9  # a new face's box and each tracked one's, both shrunk to this share, must not overlap
    duplicate_iou: float = 0.5  # two tracks overlapping this much are one face: keep the older
    scene_cut: float = 0.25  # grey-histogram distance between consecutive frames that marks a cut
    upright: bool = False  # crop boxes follow the face's roll (False) or stay upright (True)
    roll_gain: float = 0.8  # share of the measured roll the next crop turns by (< 1: a model's roll bias
    # cannot build up frame after frame)
    detector_pull: float = 0.5  # on a detection frame a matched track's crop moves this far to the detection
    confident_above: float = 0.6  # while every track is at least this confident (and none missed) ...
    confident_stretch: int = 2  # ... the whole-frame search runs only every detect_every x this frames
    search_passes: int = 3  # ... running the detector's first (frontal) pass and this many of its other passes,
    # in rotation from one search to the next (-1: all; the first frame, cuts and lost tracks get all)
    search_side: int = 640  # the periodic search for new faces sees the whole frame shrunk to this longer side
    # (tracked faces too small to be found there are searched around at full detail in the same round)
    around_margin: float = 2.0  # doubtful and lost tracks are searched in a region this many face sides wide
    around_face: float = 2.0  # ... shrunk so the face is this many times the detector's smallest face (never enlarged)
    new_face_min: float = 0.25  # a new detection becomes a track only when the confidence of the keypoints
    # predicted in its crop (shape plausibility x agreement with the detection) reaches this
    face_check_min: float = 0.8  # ... and the face/non-face check (tracker.face_check) of its crop reaches this
    idle_after: int = 3  # whole-frame rounds in a row that leave nothing tracked before the detector backs off
    idle_every: int = 10  # ... to a search round every 2, 4, ... up to this many frames while nothing is tracked
    # (a cut: a full round at once; 1: every frame; tracker.cadence.idle_gap)
    quiet_stretch: int = 1  # the confident search interval doubles after each search that found nothing new,
    # up to this factor (1: never; tracker.cadence.quiet_gap)
    search_extra_min: float = 1.4  # a search round's passes after the frontal one look only for faces at least
    # this many times the detector's smallest (--min-face); first frames, cuts and looks around faces: every size
    mask_tracked: bool = True  # a search round blanks out the tracked faces (files: their boxes after the last
    # whole-frame round, so a round started ahead is the same; live view: the boxes when the round starts), so
    # the cascades skip their costliest windows, and looks at each of them on its own instead, for a face of
    # about its size, with the face at look_size pixels (tracker.pipeline.Pipeline._near)
    look_size: int = 48  # the tracked face's side in pixels where a search looks at it on its own
    around_min: float = 0.6  # a look around a doubtful or lost face searches only for faces at least this share
    # of its size (0: every size the detector finds)


@dataclass(frozen=True)
class SmoothParams:
    """One Euro filter settings (Casiez et al. 2012), in frame pixels and seconds."""

    enabled: bool = True
    min_cutoff: float = 1.0  # Hz: lower = steadier points when the face is still
    beta: float = 0.02  # speed coefficient: higher = less lag when the face moves fast
    d_cutoff: float = 1.0  # Hz: cutoff of the speed estimate


@dataclass(frozen=True)
class CameraParams:
    """What to ask of a camera; drivers may deliver something else."""

    width: int = 640
    height: int = 480
    fps: float = 30.0
    buffer: int = 1  # driver-side frame queue; 1 keeps latency lowest
    open_timeout_s: float = 5.0  # how long to wait for the first frame


@dataclass(frozen=True)
class OverlayParams:
    """What the overlay draws besides the points."""

    labels: str = "none"  # "none", "index" or "name" next to each point
    boxes: bool = True
    hud: bool = True  # FPS and per-stage timings


DEFAULT_TRACK = TrackParams()
DEFAULT_SMOOTH = SmoothParams()
DEFAULT_CAMERA = CameraParams()
DEFAULT_OVERLAY = OverlayParams()
BENCH_BATCHES = "1,8,64,256"
# ONNX Runtime threads of the tracker's engine (video, live, batch workers, bench end to end; `video --sequential`
# uses every core, having no other thread beside it): a frame's batch is
# a few faces, too small to split across cores with profit, and the other core decodes and runs the detection
# rounds (pipelined files, live worker). Measured against one thread per core on the shared clips and the
# multi-face clip: 2-3% less CPU per frame, the same rows (README "Speed against MediaPipe FaceMesh").
# `fkd-track bench`'s engine table still times the engine alone on every core.
ENGINE_THREADS = 1
