"""The training PNGs: loss curves, CED curves, attribute accuracies, prediction grids and first-layer filters.

matplotlib draws off-screen (Agg) and is imported only when a figure is drawn; `save` writes them all.
"""

from __future__ import annotations

import numpy as np


def pyplot():
    """matplotlib.pyplot on the off-screen Agg backend (no display needed), imported only when drawing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str) -> None:
    """Lay out, write the PNG at 110 dpi (atomically: whole or not at all) and free the figure."""
    from engines.output_files import atomic_path

    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        pyplot().close(fig)


def plot_losses(runs: dict[str, list[dict]], path: str) -> None:
    """Train (dashed) and validation (solid) loss per epoch for one or more runs, in one PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, hist in runs.items():
        ep = [h["epoch"] for h in hist]
        line, = ax.plot(ep, [h["val_loss"] for h in hist], label=f"{name} validation")
        ax.plot(ep, [h["train_loss"] for h in hist], "--", color=line.get_color(), label=f"{name} train")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (normalised MSE)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save(fig, path)


def plot_ced(curves: dict[str, np.ndarray], path: str, xmax: float = 0.2) -> None:
    """Cumulative error distribution: share of faces with inter-ocular NME below x, one line per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, nme in curves.items():
        x = np.sort(nme)
        ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=f"{name} (mean {nme.mean():.3f})")
    ax.axvline(0.1, color="grey", ls=":", lw=1)
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, 1)
    ax.set_xlabel("NME (error / inter-ocular distance)")
    ax.set_ylabel("share of faces")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save(fig, path)


def plot_attribute_curves(histories: dict[str, list[dict]], path: str) -> bool:
    """Validation accuracy per attribute head and epoch, one panel per run that has heads; False if none."""
    runs = {n: h for n, h in histories.items() if any(k.startswith("val_acc_") for k in h[0])}
    if not runs:
        return False
    plt = pyplot()
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
    save(fig, path)
    return True


def plot_predictions(crops: np.ndarray, pred: np.ndarray, truth: np.ndarray, path: str, title: str,
                     cols: int = 6, labels: list[str] | None = None) -> None:
    """A grid of crops with predicted (red +) and true (green o) points; `labels` (one per crop) above each."""
    plt = pyplot()
    rows = int(np.ceil(len(crops) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.9 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (ax, c, p, t) in enumerate(zip(axes.ravel(), crops, pred, truth, strict=False)):
        if labels is not None:
            ax.set_title(labels[k], fontsize=7)
        ax.imshow(c, cmap="gray", vmin=0, vmax=255)
        ok = np.isfinite(t).all(axis=1)
        ax.scatter(t[ok, 0], t[ok, 1], s=9, facecolors="none", edgecolors="lime", linewidths=0.8)
        ax.scatter(p[:, 0], p[:, 1], s=9, c="red", marker="+", linewidths=0.8)
        ax.set_xlim(-0.5, c.shape[1] - 0.5)
        ax.set_ylim(c.shape[0] - 0.5, -0.5)
    fig.suptitle(f"{title}: predicted (red +), true (green o)", fontsize=9)
    save(fig, path)


def plot_filters(filters: np.ndarray, path: str, title: str, limit: int = 64) -> None:
    """Each filter in its own grey scale (symmetric around 0)."""
    plt = pyplot()
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
    save(fig, path)
