"""`train report`: the PNGs a person would rather look at than read, for one run or a directory of runs.

Finds the runs, evaluates their best checkpoints on validation faces and hands the figures to `train.plots`:
loss and attribute curves, CED curves, crops with predicted and true points, first-layer filters.
"""

from __future__ import annotations

import os

import numpy as np

from engines.output_files import check_outputs
from tracker.keypoints import derivable, map_keypoints
from train.datasets import DatasetError
from train.evaluate import faces_from_prepared, keypoint_metrics, model_keypoint_set
from train.plots import plot_attribute_curves, plot_ced, plot_filters, plot_losses, plot_predictions
from train.prepare import read_prepared


def find_runs(run_dir: str) -> dict[str, str]:
    """{run name: run folder} for a run folder (metrics.csv inside) or a folder of them (e.g. `train compare`)."""
    if os.path.isfile(os.path.join(run_dir, "metrics.csv")):
        return {os.path.basename(os.path.normpath(run_dir)): run_dir}
    runs = {}
    for name in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []:
        sub = os.path.join(run_dir, name)
        if os.path.isfile(os.path.join(sub, "metrics.csv")):
            runs[name] = sub
    return runs


def read_metrics(path: str) -> list[dict]:
    """The rows of a run's metrics.csv (one dict per epoch); DatasetError naming the file when it is empty,
    malformed or lacks the epoch and loss columns."""
    import pandas as pd

    need = ("epoch", "train_loss", "val_loss")
    try:
        table = pd.read_csv(path)
        missing = [c for c in need if c not in table.columns]
        if missing:
            raise ValueError(f"no {', '.join(missing)} column")
        if table.empty:
            raise ValueError("no epoch rows")
        for c in need:
            table[c] = pd.to_numeric(table[c], errors="raise")
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "empty"
        raise DatasetError(f"{path} is not a metrics.csv written by `train fit` ({first})") from None
    return table.to_dict("records")


def first_layer_filters(model) -> np.ndarray:
    """The first layer's filters as images (F, h, w): a conv's kernels, or an MLP's 96x96 input weights."""
    from torch import nn

    for name, m in model.named_modules():
        if name.startswith("attribute_heads"):
            continue
        if isinstance(m, nn.Conv2d):
            return m.weight.detach().float().cpu().numpy()[:, 0]
        if isinstance(m, nn.Linear):
            side = int(round(np.sqrt(m.in_features)))
            return m.weight.detach().float().cpu().numpy().reshape(-1, side, side)
    raise ValueError("the model has no conv or linear layer")


def report(run_dir: str, data: str | None = None, out_dir: str | None = None, n_crops: int = 24) -> list[str]:
    """Write the report PNGs for the runs in `run_dir` into `out_dir` (default RUN_DIR/report); returns paths.

    Without `data` (a prepared file) only the curves and filters are drawn: CED curves and crops need faces.
    """
    from engines.checkpoint import load_checkpoint
    from engines.torch_backend import TorchBackend

    runs = find_runs(run_dir)
    if not runs:
        raise FileNotFoundError(f"{run_dir}: no training run here (no metrics.csv in it or its sub-folders)")
    if data:  # a missing or foreign --data is refused before the output folder is made
        read_prepared(data, ("meta",))
    out_dir = out_dir or os.path.join(run_dir, "report")
    inputs = [p for p in [data, *(os.path.join(d, f) for d in runs.values() for f in ("metrics.csv", "best.pt"))] if p]
    check_outputs(inputs, {"--out": os.path.join(out_dir, "loss_curves.png")})  # creates and probes out_dir
    written = []
    histories = {n: read_metrics(os.path.join(d, "metrics.csv")) for n, d in runs.items()}
    plot_losses(histories, os.path.join(out_dir, "loss_curves.png"))
    written.append(os.path.join(out_dir, "loss_curves.png"))
    if plot_attribute_curves(histories, os.path.join(out_dir, "attribute_accuracy.png")):
        written.append(os.path.join(out_dir, "attribute_accuracy.png"))
    faces = None
    if data:
        faces, data_kps = faces_from_prepared(data, "prepared")
    curves = {}
    for name, d in runs.items():
        ckpt = os.path.join(d, "best.pt")
        if not os.path.isfile(ckpt):
            continue
        model, _ = load_checkpoint(ckpt)
        path = os.path.join(out_dir, f"filters_{name}.png")
        plot_filters(first_layer_filters(model), path, name)
        written.append(path)
        if faces is None:
            continue
        backend = TorchBackend(ckpt, device="cpu")
        kps = model_keypoint_set(backend.info)
        if not derivable(data_kps, kps):
            continue
        truth = map_keypoints(faces.truth, data_kps, kps)
        pred = np.concatenate([backend.predict(faces.crops[i : i + 256]) for i in range(0, len(faces.crops), 256)])
        metrics = keypoint_metrics(pred.astype(np.float64), truth, kps)
        if metrics.get("_nme_per_face") is not None:
            curves[name] = metrics["_nme_per_face"]
        pick = np.linspace(0, len(faces.crops) - 1, min(n_crops, len(faces.crops))).astype(int)
        path = os.path.join(out_dir, f"predictions_{name}.png")
        plot_predictions(faces.crops[pick], pred[pick], truth[pick], path,
                         f"{name} (validation RMSE {metrics['rmse_px']:.2f} px)")
        written.append(path)
    if curves:
        plot_ced(curves, os.path.join(out_dir, "ced.png"))
        written.append(os.path.join(out_dir, "ced.png"))
    return written
