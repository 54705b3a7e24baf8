"""`train report`: the PNGs a person would rather look at than read, for one run or a directory of runs.

Loss curves (and attribute accuracies), CED curves per model, validation crops with predicted and true points,
and each model's first-layer filters.
"""

from __future__ import annotations

import os

import numpy as np

from tracker.keypoints import derivable, map_keypoints
from train.evaluate import faces_from_prepared, keypoint_metrics, model_keypoint_set, plot_ced


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


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_attribute_curves(histories: dict[str, list[dict]], path: str) -> bool:
    """Validation accuracy per attribute head and epoch, one panel per run that has heads; False if none."""
    runs = {n: h for n, h in histories.items() if any(k.startswith("val_acc_") for k in h[0])}
    if not runs:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4), squeeze=False)
    for ax, (name, hist) in zip(axes[0], runs.items(), strict=True):
        ep = [h["epoch"] for h in hist]
        for key in (k for k in hist[0] if k.startswith("val_acc_")):
            ax.plot(ep, [100 * float(h[key]) for h in hist], marker="o", label=key[len("val_acc_"):])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_predictions(crops: np.ndarray, pred: np.ndarray, truth: np.ndarray, path: str, title: str,
                     cols: int = 6) -> None:
    """A grid of crops with predicted (red +) and true (green o) points."""
    plt = _plt()
    rows = int(np.ceil(len(crops) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.9 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, c, p, t in zip(axes.ravel(), crops, pred, truth, strict=False):
        ax.imshow(c, cmap="gray", vmin=0, vmax=255)
        ok = np.isfinite(t).all(axis=1)
        ax.scatter(t[ok, 0], t[ok, 1], s=9, facecolors="none", edgecolors="lime", linewidths=0.8)
        ax.scatter(p[:, 0], p[:, 1], s=9, c="red", marker="+", linewidths=0.8)
        ax.set_xlim(-0.5, c.shape[1] - 0.5)
        ax.set_ylim(c.shape[0] - 0.5, -0.5)
    fig.suptitle(f"{title}: predicted (red +), true (green o)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


def plot_filters(filters: np.ndarray, path: str, title: str, limit: int = 64) -> None:
    """Each filter in its own grey scale (symmetric around 0)."""
    plt = _plt()
    f = filters[:limit]
    cols = min(8, len(f))
    rows = int(np.ceil(len(f) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, w in zip(axes.ravel(), f, strict=False):
        lim = float(np.abs(w).max()) or 1.0
        ax.imshow(w, cmap="gray", vmin=-lim, vmax=lim, interpolation="nearest")
    fig.suptitle(f"{title}: first-layer filters ({filters.shape[-2]}x{filters.shape[-1]})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(run_dir: str, data: str | None = None, out_dir: str | None = None, n_crops: int = 24) -> list[str]:
    """Write the report PNGs for the runs in `run_dir` into `out_dir` (default RUN_DIR/report); returns paths.

    Without `data` (a prepared file) only the curves and filters are drawn: CED curves and crops need faces.
    """
    import pandas as pd

    from engines.torch_backend import TorchBackend
    from train.checkpoint import load_checkpoint
    from train.fit import plot_losses

    runs = find_runs(run_dir)
    if not runs:
        raise FileNotFoundError(f"{run_dir}: no training run here (no metrics.csv in it or its sub-folders)")
    out_dir = out_dir or os.path.join(run_dir, "report")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    histories = {n: pd.read_csv(os.path.join(d, "metrics.csv")).to_dict("records") for n, d in runs.items()}
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
