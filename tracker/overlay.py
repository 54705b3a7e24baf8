"""Drawing on frames: keypoints (optionally numbered or named), face boxes with id and confidence (and the
attribute labels of --attributes), and a heads-up line with FPS and per-stage timings.

Functions draw in place on a BGR uint8 image and return it.
"""

from __future__ import annotations

import cv2
import numpy as np

from tracker.config import OverlayParams
from tracker.results import FaceResult, stage_names

POINT_COLOUR = (0, 255, 0)
LOW_COLOUR = (0, 165, 255)  # points and box of a face below the success threshold
BOX_COLOUR = (255, 200, 0)
TEXT_COLOUR = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_faces(
    image: np.ndarray, faces: list[FaceResult], names: tuple[str, ...], params: OverlayParams
) -> np.ndarray:
    """Each face's keypoints, and (params.boxes) its box labelled `#id confidence`, with the face's attribute
    labels (if any) on a line below the box."""
    scale = max(image.shape[:2]) / 640.0
    for face in faces:
        colour = POINT_COLOUR if face.success else LOW_COLOUR
        radius = max(1, int(round(face.box.size / 60.0)))
        if params.boxes:
            corners = np.round(face.box.corners()).astype(np.int32)
            cv2.polylines(image, [corners], True, BOX_COLOUR if face.success else LOW_COLOUR, 1, cv2.LINE_AA)
            x, y = corners.min(axis=0)
            _text(image, f"#{face.face_id} {face.confidence:.2f}", (int(x), int(y) - 4), 0.45 * scale)
            if face.attributes:
                bottom = int(corners[:, 1].max()) + int(14 * scale)
                _text(image, attribute_text(face.attributes), (int(x), bottom), 0.4 * scale)
        for k, (px, py) in enumerate(face.points):
            if not (np.isfinite(px) and np.isfinite(py)):
                continue
            centre = (int(round(px)), int(round(py)))
            cv2.circle(image, centre, radius, colour, -1, cv2.LINE_AA)
            if params.labels != "none":
                label = str(k) if params.labels == "index" else names[k]
                _text(image, label, (centre[0] + radius + 1, centre[1] - radius - 1), 0.3 * scale)
    return image


def attribute_text(attributes: dict[str, tuple[str, float]]) -> str:
    """One short line for a face's attribute labels, e.g. `female .93  smile .81  no glasses .97  frontal .70`
    (a yes/no class reads as the attribute's name or `no NAME`)."""
    words = []
    for name, (label, prob) in attributes.items():
        word = {"yes": name, "no": f"no {name}"}.get(label, label)
        words.append(f"{word} {'1' if prob >= 0.995 else f'{prob:.2f}'.lstrip('0')}")
    return "  ".join(words)


def draw_hud(image: np.ndarray, fps: float, timings_ms: dict[str, float], faces: int) -> np.ndarray:
    """Top-left: frames per second, face count, and the ms of each pipeline stage."""
    scale = max(image.shape[:2]) / 640.0
    stages = " ".join(f"{s} {timings_ms[s]:.1f}" for s in stage_names(timings_ms) if s in timings_ms)
    lines = [f"{fps:5.1f} fps  {faces} face{'s' if faces != 1 else ''}", f"ms: {stages}"]
    y = int(16 * scale) + 2
    for line in lines:
        _text(image, line, (6, y), 0.45 * scale)
        y += int(18 * scale) + 2
    return image


def _text(image: np.ndarray, text: str, origin: tuple[int, int], size: float) -> None:
    """White text on a dark box, readable on any background (one putText call: text is the costly part)."""
    thick = max(1, int(round(size * 2)))
    (w, h), base = cv2.getTextSize(text, FONT, size, thick)
    x, y = origin
    cv2.rectangle(image, (x - 1, y - h - 2), (x + w + 1, y + base), (0, 0, 0), -1)
    cv2.putText(image, text, origin, FONT, size, TEXT_COLOUR, thick, cv2.LINE_AA)
