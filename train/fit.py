"""The training loop: Adam on a prepared set held on the device, masked loss, on-device augmentation.

Writes RUN_DIR/last.pt and best.pt atomically each epoch, metrics.csv and loss_curve.png; Ctrl-C keeps them valid.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from train.augment import AugmentParams, augment_batch
from train.checkpoint import load_checkpoint, model_meta, save_checkpoint
from train.masked_loss import LOSSES
from train.models import create_model
from train.prepare import Prepared, load_prepared
from tracker.keypoints import get_keypoint_set

METRIC_FIELDS = ["epoch", "train_loss", "val_loss", "val_rmse_px", "lr", "images_per_s", "seconds"]


@dataclass
class FitConfig:
    """Every training setting; the CLI's `train fit` options map one to one onto these."""

    data: str
    out: str
    arch: str = "mlresnet"
    loss: str = "masked"
    epochs: int = 30
    batch: int = 256
    lr: float = 1e-4
    weight_decay: float = 5e-4
    schedule: str = "constant"  # or "cosine"
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA
    seed: int = 0
    resume: bool = False
    augment: AugmentParams = field(default_factory=AugmentParams)
    arch_kwargs: dict = field(default_factory=dict)
    limit: int | None = None  # use at most this many training faces (quick runs and tests)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA GPU")
    return torch.device(name)


def to_targets(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop-pixel keypoints (N, K, 2) -> normalised targets (N, 2K) and their 0/1 mask."""
    flat = points.flatten(1)
    mask = torch.isfinite(flat)
    return torch.where(mask, (flat - 48.0) / 48.0, torch.zeros_like(flat)), mask


@torch.no_grad()
def validate(model, crops, points, flip_perm, batch: int, loss_fn, amp_dtype) -> tuple[float, float]:
    """(masked loss, masked RMSE in 96-px crop pixels) on centre crops without augmentation."""
    model.eval()
    sq, cnt, loss_sum, n_batches = 0.0, 0, 0.0, 0
    for i in range(0, len(crops), batch):
        x, q = augment_batch(crops[i : i + batch], points[i : i + batch], flip_perm, AugmentParams.none())
        y, m = to_targets(q)
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            pred = model(x)
        pred = pred.float()
        loss_sum += float(loss_fn(pred, y, m))
        n_batches += 1
        err = (pred - y) * 48.0
        sq += float((err * err)[m].sum())
        cnt += int(m.sum())
    return loss_sum / max(n_batches, 1), math.sqrt(sq / max(cnt, 1))


def fit(cfg: FitConfig, log: Callable[[str], None] = print) -> dict:
    """Train per `cfg`; returns the final history row. KeyboardInterrupt propagates after a safe save."""
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    prepared: Prepared = load_prepared(cfg.data)
    kps = get_keypoint_set(prepared.meta["keypoints"])
    loss_fn = LOSSES[cfg.loss]

    train_idx = np.flatnonzero(~prepared.val)
    val_idx = np.flatnonzero(prepared.val)
    if cfg.limit:  # the same random pool for every loss, so complete-only sees a subset of masked's faces
        rng = np.random.default_rng(cfg.seed)
        train_idx = np.sort(rng.permutation(train_idx)[: cfg.limit])
        val_idx = np.sort(rng.permutation(val_idx)[: max(cfg.limit // 4, 16)])
    if cfg.loss == "complete-only":  # the conventional pipeline drops every partially labelled face
        train_idx = train_idx[np.isfinite(prepared.keypoints[train_idx]).all(axis=(1, 2))]
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(f"{cfg.data}: needs faces in both splits (train {len(train_idx)}, validation {len(val_idx)})")

    # the whole prepared set lives on the device: no loader can starve the GPU
    crops = torch.from_numpy(prepared.crops).to(device)
    points = torch.from_numpy(prepared.keypoints.astype(np.float32)).to(device)
    flip_perm = torch.from_numpy(kps.flip_permutation).to(device)
    tr_crops, tr_pts = crops[train_idx], points[train_idx]
    va_crops, va_pts = crops[val_idx], points[val_idx]

    # channels-last is faster for these convolutions on CUDA and on CPU (oneDNN) alike
    model = create_model(cfg.arch, len(kps), **cfg.arch_kwargs).to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp_dtype = torch.bfloat16 if (cfg.amp and device.type == "cuda") else None

    os.makedirs(cfg.out, exist_ok=True)
    last_path, best_path = os.path.join(cfg.out, "last.pt"), os.path.join(cfg.out, "best.pt")
    metrics_path = os.path.join(cfg.out, "metrics.csv")
    data_summary = {
        "prepared": os.path.basename(cfg.data), "specs": prepared.meta["specs"],
        "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "loss": cfg.loss,
    }
    meta = model_meta(cfg.arch, cfg.arch_kwargs, kps, data_summary)
    start_epoch, best, history = 0, float("inf"), []
    if cfg.resume:
        if not os.path.isfile(last_path):
            raise FileNotFoundError(f"--resume: no checkpoint at {last_path}")
        old_model, ckpt = load_checkpoint(last_path, device)
        if ckpt["arch"] != cfg.arch:
            raise ValueError(f"--resume: {last_path} is a {ckpt['arch']} run, not {cfg.arch}")
        model.load_state_dict(old_model.state_dict())
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch, best, history = ckpt["epoch"], ckpt["best_val_rmse"], ckpt["history"]
        log(f"resumed {last_path} at epoch {start_epoch} (best validation RMSE {best:.3f} px)")

    def lr_at(epoch: int) -> float:
        if cfg.schedule == "cosine":
            return cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / max(cfg.epochs, 1)))
        return cfg.lr

    def save(epoch: int) -> None:
        save_checkpoint(last_path, model, meta, optimizer=opt.state_dict(), epoch=epoch, best_val_rmse=best,
                        history=history, config={**asdict(cfg), "augment": asdict(cfg.augment)})

    log(f"training {cfg.arch} ({cfg.loss} loss) on {len(train_idx)} faces, validating on {len(val_idx)}, "
        f"device {device}{', bf16 autocast' if amp_dtype else ''}")
    epoch = start_epoch
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed + start_epoch)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch)
            model.train()
            t0 = time.perf_counter()
            perm = torch.randperm(len(tr_crops), device=device, generator=gen)
            loss_sum, n_batches, seen = 0.0, 0, 0
            for i in range(0, len(perm), cfg.batch):
                idx = perm[i : i + cfg.batch]
                x, q = augment_batch(tr_crops[idx], tr_pts[idx], flip_perm, cfg.augment, generator=gen)
                y, m = to_targets(q)
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    pred = model(x)
                loss = loss_fn(pred.float(), y, m)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) if n_batches % 10 == 0 or i + cfg.batch >= len(perm) else 0.0
                n_batches += 1
                seen += len(idx)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            val_loss, val_rmse = validate(model, va_crops, va_pts, flip_perm, 1024, loss_fn, amp_dtype)
            row = {
                "epoch": epoch + 1, "train_loss": loss_sum / max(1, math.ceil(n_batches / 10)),
                "val_loss": val_loss, "val_rmse_px": val_rmse, "lr": lr_at(epoch),
                "images_per_s": seen / seconds, "seconds": seconds,
            }
            history.append(row)
            if val_rmse < best:
                best = val_rmse
                save_checkpoint(best_path, model, meta, epoch=epoch + 1, best_val_rmse=best, history=history)
            save(epoch + 1)
            write_metrics(metrics_path, history)
            log(f"epoch {epoch + 1}/{cfg.epochs}  train {row['train_loss']:.5f}  val {val_loss:.5f}  "
                f"val RMSE {val_rmse:.3f} px  {row['images_per_s']:.0f} images/s")
    except KeyboardInterrupt:
        log(f"interrupted: checkpoints in {cfg.out} hold the last finished epoch ({epoch})")
        raise
    finally:
        if history:
            plot_losses({cfg.arch: history}, os.path.join(cfg.out, "loss_curve.png"))
    return history[-1] if history else {}


def write_metrics(path: str, history: list[dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        w.writeheader()
        w.writerows(history)
    os.replace(tmp, path)


def plot_losses(runs: dict[str, list[dict]], path: str) -> None:
    """Train (dashed) and validation (solid) loss per epoch for one or more runs, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
