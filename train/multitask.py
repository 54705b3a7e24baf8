"""Multi-task learning as in Zhang et al.'s TCDCN: attribute losses beside the landmark loss, task-wise stopping.

Joint loss = landmark loss + sum_a lambda_a * CE_a, unknown attributes (-1) masked; `should_stop` is eq. (5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from train.datasets import ATTRIBUTE_CLASSES, ATTRIBUTE_FLIP, ATTRIBUTES

DEFAULT_WEIGHT = 0.1  # lambda of each attribute under --multitask
STOP_K = 5  # epochs in the training-error strip of the stopping criterion
STOP_EPSILON = 8.0  # threshold of the stopping criterion


def parse_attr_weights(text: str) -> dict[str, float]:
    """'gender=0.5,smile=0.5' -> {'gender': 0.5, 'smile': 0.5}; 'all=0.1' weights every attribute.

    ValueError naming the known attributes for an unknown name or a malformed / negative weight.
    """
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or (name not in ATTRIBUTES and name != "all"):
            raise ValueError(f"attribute weights are NAME=LAMBDA with NAME one of {', '.join(ATTRIBUTES)} or all; "
                             f"got {part!r}")
        try:
            w = float(value)
        except ValueError:
            raise ValueError(f"attribute weight {part!r} is not a number") from None
        if not (w >= 0 and math.isfinite(w)):
            raise ValueError(f"attribute weight {part!r} must be a finite number >= 0")
        for n in ATTRIBUTES if name == "all" else (name,):
            weights[n] = w
    return weights


def attribute_classes(names: Sequence[str]) -> dict[str, list[str]]:
    """{attribute: class names} for the heads of a model, as recorded in its checkpoint and ONNX metadata."""
    return {n: list(ATTRIBUTE_CLASSES[n]) for n in names}


def flip_tables(names: Sequence[str], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """{attribute: class permutation under a horizontal mirror} for the attributes that change; build once."""
    return {n: torch.tensor(ATTRIBUTE_FLIP[n], device=device, dtype=torch.int64) for n in names if n in ATTRIBUTE_FLIP}


def flip_labels(labels: torch.Tensor, names: Sequence[str], flipped: torch.Tensor,
                tables: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Attribute codes (N, len(names)) after a horizontal mirror of the rows where `flipped` is True;
    `tables` from flip_tables (built here when absent; the training loop passes them in)."""
    tables = flip_tables(names, labels.device) if tables is None else tables
    out = labels.clone()
    for j, name in enumerate(names):
        if name in tables:
            col = labels[:, j]
            mirrored = torch.where(col >= 0, tables[name].to(labels.dtype)[col.clamp_min(0)], col)
            out[:, j] = torch.where(flipped, mirrored, col)
    return out


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the rows with a known label (>= 0); exactly 0 (no gradient) when none is known.

    Row weights instead of `bool(known.any())` and boolean indexing: no host sync on a GPU.
    """
    known = (labels >= 0).to(torch.float32)
    ce = F.cross_entropy(logits.float(), labels.clamp_min(0).long(), reduction="none")
    return (ce * known).sum() / known.sum().clamp_min(1.0)


def strip_trend(train_errors: Sequence[float], k: int) -> float:
    """First term of TCDCN eq. (5) over the strip j = t-k..t (k + 1 epochs):

        k * med(E_tr) / (sum(E_tr) - k * med(E_tr))

    About k while the training error has levelled off, small while it still drops fast; 0 when the
    denominator is not positive (the error fell sharply at the strip's end: keep training).
    """
    strip = np.asarray(train_errors[-(k + 1):], dtype=np.float64)
    med = float(np.median(strip))
    denom = float(strip.sum()) - k * med
    return k * med / denom if denom > 0 else 0.0


def generalisation_gap(train_errors: Sequence[float], val_errors: Sequence[float], weight: float) -> float:
    """Second term of TCDCN eq. (5): (E_val(t) - min_j E_tr(j)) / (lambda_a * min_j E_tr(j))."""
    best_train = float(np.min(train_errors))
    if weight <= 0:
        return math.inf
    return (float(val_errors[-1]) - best_train) / (weight * max(best_train, 1e-12))


def should_stop(train_errors: Sequence[float], val_errors: Sequence[float], weight: float,
                k: int = STOP_K, epsilon: float = STOP_EPSILON) -> bool:
    """Zhang et al.'s task-wise early stopping: stop auxiliary task a at epoch t when

        [k med_{j=t-k..t} E_tr(j) / (sum_{j=t-k..t} E_tr(j) - k med E_tr)]
            * [(E_val(t) - min_{j<=t} E_tr(j)) / (lambda_a min_{j<=t} E_tr(j))]  >  epsilon

    E_tr / E_val are the task's per-epoch training / validation losses (epochs 1..t). Needs t > k epochs.
    """
    if len(train_errors) != len(val_errors):
        raise ValueError("training and validation traces must have one value per epoch each")
    if len(train_errors) <= k:
        return False
    return strip_trend(train_errors, k) * generalisation_gap(train_errors, val_errors, weight) > epsilon
