"""The records the pipeline hands to its outputs: one `FaceResult` per face, one `FrameResult` per frame.

Plain dataclasses of numpy arrays and numbers, in frame pixels; outputs (CSV, overlay, video) read only these.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from tracker.crop import FaceBox

STAGES = ("decode", "detect", "crop", "infer", "post", "smooth", "draw")
REFINE_STAGE = "refine"  # timed only when a cascade second stage runs (--refine); listed after "infer"


def stage_names(timed: Iterable[str]) -> tuple[str, ...]:
    """The stages to report, in pipeline order: STAGES, with "refine" after "infer" when `timed` has it."""
    if REFINE_STAGE not in set(timed):
        return STAGES
    at = STAGES.index("infer") + 1
    return (*STAGES[:at], REFINE_STAGE, *STAGES[at:])


@dataclass
class FaceResult:
    """One face in one frame."""

    face_id: int
    points: np.ndarray  # (K, 2) output keypoints in frame pixels (smoothed unless smoothing is off)
    raw_points: np.ndarray  # (K, 2) the engine's keypoints mapped to the frame, unsmoothed
    box: FaceBox  # upright face box implied by `points`, calibrated to look like the Haar detector's boxes
    crop_box: FaceBox  # the (possibly rotated) box the engine's crop was taken from
    confidence: float
    success: bool
    # with --attributes: {attribute: (most probable class, its probability)} in the model's head order
    attributes: dict[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def box_xywh(self) -> tuple[float, float, float, float]:
        return self.box.to_xywh()


@dataclass
class FrameResult:
    """Everything known about one processed frame."""

    index: int
    timestamp_ms: float
    faces: list[FaceResult]
    detected: bool  # the detector ran on this frame
    scene_cut: bool
    timings_ms: dict[str, float] = field(default_factory=dict)  # per stage, see stage_names
    crops: int = 0  # crops sent to the engine this frame (one batch, and one more for the faces given a second
    # look on a detection frame; also the second stage's with --refine)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per stage, CPU time of the thread that ran it
