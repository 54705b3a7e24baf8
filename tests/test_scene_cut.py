"""Scene-cut signatures (tracker.scene_cut) on real frames at the sizes users feed: the 320x240 shared clips,
640x360 and 1080p. A large frame is cut to whole multiples of the thumbnail before the area shrink (the fast
path); its signature stays close to the whole frame's (as close as two frames of one shot are), and a cut
stays a cut."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tracker.crop import to_gray
from tracker.scene_cut import THUMB, SceneCutDetector, frame_signature, signature_distance
from tracker.sources import VideoSource


def _plain(gray: np.ndarray) -> np.ndarray:
    """The signature of the whole frame, shrunk as it is (the slow path)."""
    small = cv2.resize(gray, THUMB, interpolation=cv2.INTER_AREA)
    h, w = small.shape
    hists = [cv2.calcHist([np.ascontiguousarray(small[y0:y1, x0:x1])], [0], None, [32], [0, 256])[:, 0]
             for y0, y1 in ((0, h // 2), (h // 2, h)) for x0, x1 in ((0, w // 2), (w // 2, w))]
    return np.stack([h / h.sum() for h in hists]).astype(np.float32)


@pytest.fixture(scope="module")
def frames(shared_data) -> dict[str, list[np.ndarray]]:
    out = {}
    for name in ("0553_01_006_donald_trump.avi", "orlando_bloom.avi"):
        with VideoSource(shared_data / "videos" / name) as src:
            out[name] = [to_gray(f.image) for f in src if f.index in (10, 11, 60)]
    return out


def test_a_frame_in_whole_thumbnails_keeps_its_signature(frames):
    gray = frames["orlando_bloom.avi"][0]
    assert gray.shape == (240, 320)  # 5 x 5 thumbnails
    assert np.array_equal(frame_signature(gray), _plain(gray))


@pytest.mark.parametrize("size", [(640, 360), (1920, 1080), (1000, 700)])
def test_larger_frames_keep_the_whole_frames_signature_and_their_cuts(frames, size):
    trump, bloom = (frames[k] for k in ("0553_01_006_donald_trump.avi", "orlando_bloom.avi"))
    scaled = [cv2.resize(g, size, interpolation=cv2.INTER_LINEAR) for g in trump + bloom]
    for g in scaled:  # within a shot, consecutive frames differ by up to 0.14; a cut is 0.4 and more
        assert signature_distance(frame_signature(g), _plain(g)) < 0.1
    cuts = SceneCutDetector(0.25)
    seen = [cuts.is_cut(g) or cuts.last_distance for g in scaled]  # Trump 10, 11, 60, then Bloom 10, 11, 60
    assert seen[3] is True and all(d is not True and d < 0.15 for i, d in enumerate(seen) if i != 3)
