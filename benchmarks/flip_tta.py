"""Flip test-time averaging, measured: validation RMSE of a checkpoint on a prepared set's stored crops, plain and
averaged with its mirror (points swapped back with the keypoint set's flip pairs).

    .venv/bin/python benchmarks/flip_tta.py all.npz runs/tuned/last.pt [more checkpoints]
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch

from engines.checkpoint import load_checkpoint
from tracker.keypoints import get_keypoint_set
from train.augment import AugmentParams, augment_batch
from train.fit import split_indices, to_targets
from train.prepare import load_prepared


def main(data: str, checkpoints: list[str]) -> None:
    prepared = load_prepared(data)
    perm = torch.from_numpy(get_keypoint_set(prepared.meta["keypoints"]).flip_permutation)
    _, val = split_indices(prepared.val, None, 0)
    crops = torch.from_numpy(prepared.crops[val])
    points = torch.from_numpy(prepared.keypoints[val].astype(np.float32))
    for path in checkpoints:
        model, _ = load_checkpoint(path)
        sq, count = [0.0, 0.0], 0
        with torch.no_grad():
            for i in range(0, len(val), 256):
                x, q = augment_batch(crops[i:i + 256], points[i:i + 256], perm, AugmentParams.none())
                y, m = to_targets(q)
                plain = model(x).view(len(x), -1, 2)
                mirror = model(torch.flip(x, dims=[3])).view(len(x), -1, 2)[:, perm]
                mirror[..., 0] = -mirror[..., 0] - 1 / 48  # pixel x -> 95 - x in targets (x - 48) / 48
                for j, pred in enumerate((plain, (plain + mirror) / 2)):
                    err = (pred.reshape(len(x), -1) - y) * 48.0
                    sq[j] += float((err * err)[m].sum())
                count += int(m.sum())
        plain_rmse, flip_rmse = (math.sqrt(v / count) for v in sq)
        print(f"{path}: validation RMSE plain {plain_rmse:.3f} px, flip-averaged {flip_rmse:.3f} px "
              f"({len(val)} faces)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
