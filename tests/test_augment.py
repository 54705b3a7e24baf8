"""On-device augmentation: keypoints follow the pixels through flips, rotations, scales and shifts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tracker.keypoints import KAGGLE15, flip_keypoints
from train.augment import AugmentParams, augment_batch

PERM = torch.from_numpy(KAGGLE15.flip_permutation)


def _dots(points: np.ndarray, size: int = 120) -> np.ndarray:
    """An image with a bright 3x3 dot at each (integer-rounded) keypoint."""
    img = np.zeros((size, size), np.uint8)
    for x, y in np.round(points).astype(int):
        img[y - 1 : y + 2, x - 1 : x + 2] = 255
    return img


def test_no_augmentation_is_the_central_96_crop():
    crops = torch.randint(0, 256, (2, 120, 120), dtype=torch.uint8)
    pts = torch.rand(2, 15, 2) * 80 + 20
    x, q = augment_batch(crops, pts, PERM, AugmentParams.none())
    assert x.shape == (2, 1, 96, 96)
    torch.testing.assert_close(x[:, 0] * 255, crops[:, 12:108, 12:108].float(), atol=0.01, rtol=0)
    torch.testing.assert_close(q, pts - 12)


def test_keypoints_follow_the_pixels_under_random_transforms():
    rng = np.random.default_rng(1)
    pts = rng.uniform(30, 90, (15, 2))
    pts[:, 0] = np.linspace(30, 90, 15)  # spread out so dots do not merge
    img = torch.from_numpy(_dots(pts))[None].repeat(16, 1, 1)
    p = torch.from_numpy(pts).float()[None].repeat(16, 1, 1)
    params = AugmentParams(flip=0.5, rotate=15, scale=0.1, shift=4, brightness=0.0)
    x, q = augment_batch(img, p, PERM, params, generator=torch.Generator().manual_seed(3))
    for i in range(16):
        xi = x[i, 0].numpy()
        vals = [xi[int(round(y)), int(round(xx))] for xx, y in q[i].numpy()]
        assert min(vals) > 0.3, f"sample {i}: a keypoint left its dot"


def test_flip_mirrors_and_swaps_left_right(ytf_faces):
    import cv2

    face = ytf_faces[0]
    img = cv2.resize(face.image, (120, 120))
    sx, sy = 120 / face.image.shape[1], 120 / face.image.shape[0]
    pts = face.keypoints * [sx, sy]
    crops = torch.from_numpy(img)[None]
    p = torch.from_numpy(pts).float()[None]
    x0, q0 = augment_batch(crops, p, PERM, AugmentParams.none())
    x1, q1 = augment_batch(crops, p, PERM, AugmentParams(1.0, 0, 0, 0, 0))
    torch.testing.assert_close(x1, torch.flip(x0, dims=[3]), atol=1e-5, rtol=0)
    np.testing.assert_allclose(q1[0].numpy(), flip_keypoints(q0[0].numpy(), 96, KAGGLE15), atol=1e-4)
    le, re = KAGGLE15.index("left_eye_center"), KAGGLE15.index("right_eye_center")
    assert q1[0, le, 0] > q1[0, re, 0]  # the subject's left eye stays on the image's right


def test_missing_keypoints_stay_missing():
    crops = torch.zeros(1, 120, 120, dtype=torch.uint8)
    pts = torch.full((1, 15, 2), float("nan"))
    pts[0, 0] = torch.tensor([50.0, 60.0])
    _, q = augment_batch(crops, pts, PERM, AugmentParams())
    assert torch.isfinite(q).all(dim=-1).sum() == 1


def test_strength_scales_the_ranges_and_zero_turns_everything_off():
    half, none, default = AugmentParams.scaled(0.5), AugmentParams.scaled(0.0), AugmentParams()
    assert half.rotate == default.rotate / 2 and half.shift == default.shift / 2 and half.flip == default.flip
    assert AugmentParams.scaled(1.0) == default and none == AugmentParams.none()
    with pytest.raises(ValueError):
        AugmentParams.scaled(-0.5)



def test_keypoints_use_the_closed_form_inverse_not_linalg_solve(monkeypatch):
    """torch.linalg.solve checks for singular matrices on the host: a GPU sync every training step."""
    from train.augment import apply_2x2, inverse_2x2

    a = torch.randn(64, 2, 2, dtype=torch.float64) + 2 * torch.eye(2, dtype=torch.float64)
    p = torch.randn(64, 15, 2, dtype=torch.float64)
    want = torch.linalg.solve(a, p.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(apply_2x2(inverse_2x2(a), p), want)

    def no_solve(*args, **kwargs):
        raise AssertionError("torch.linalg.solve syncs with the host")

    monkeypatch.setattr(torch.linalg, "solve", no_solve)
    gen = torch.Generator().manual_seed(0)
    crops = torch.zeros(8, 120, 120, dtype=torch.uint8)
    x, q = augment_batch(crops, torch.rand(8, 15, 2) * 80 + 20, PERM, AugmentParams(), generator=gen)
    assert x.shape == (8, 1, 96, 96) and torch.isfinite(q).all()
