"""The training loop: Adam on a prepared set held on the device, masked loss, on-device augmentation.

Optional attribute heads (multi-task, TCDCN-style stopping). Writes RUN_DIR/last.pt and best.pt atomically every
`save_every` epochs and after the last, metrics.csv and loss_curve.png; Ctrl-C keeps them valid.
On CUDA: cuDNN autotuning, fused Adam, bf16 autocast with a float32 regression head, no host sync in the step.
Under torchrun: DistributedDataParallel over ranks that each hold a shard (train/distributed.py); rank 0 writes.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from engines.checkpoint import CheckpointError, load_checkpoint, model_meta, save_checkpoint
from engines.errors import Terminated, UserError
from engines.model_file import model_kind
from engines.models import create_model
from engines.output_files import atomic_path
from tracker.keypoints import get_keypoint_set
from train.augment import AugmentParams, augment_batch
from train.datasets import ATTRIBUTES, DatasetError
from train.distributed import (
    DistContext,
    barrier,
    init_distributed,
    shard,
    shutdown,
    sum_over_ranks,
    sync_buffers,
    wrap_model,
)
from train.masked_loss import LOSSES
from train.multitask import (
    STOP_EPSILON,
    STOP_K,
    attribute_classes,
    flip_labels,
    flip_tables,
    masked_cross_entropy,
    should_stop,
)
from train.onnx_import import calibrate_batchnorm, load_onnx_model
from train.plots import plot_losses
from train.prepare import Prepared, load_prepared, read_prepared, require_prepared_file
from train.run_folder import (
    best_to_beat,
    claim_run_folder,
    held_interrupts,
    interruption_message,
    run_folder_lock,
)

METRIC_FIELDS = ["epoch", "train_loss", "val_loss", "val_rmse_px", "lr", "images_per_s", "seconds"]
# images_per_s and seconds time the training steps; wall_images_per_s the whole epoch (validation, saving)


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
    force: bool = False  # start over in a folder that already holds a run (see train.run_folder)
    augment: AugmentParams = field(default_factory=AugmentParams)
    arch_kwargs: dict = field(default_factory=dict)
    limit: int | None = None  # use at most this many training faces (quick runs and tests)
    attr_weights: dict[str, float] = field(default_factory=dict)  # lambda per attribute head; empty: single task
    stop_k: int = STOP_K  # task-wise early stopping of the attribute heads (TCDCN eq. 5)
    stop_epsilon: float = STOP_EPSILON
    init: str | None = None  # start from this checkpoint's weights (same keypoints), e.g. a cascade stage 2
    save_every: int = 1  # write last.pt / best.pt every N epochs (and always after the last one)
    pose_balance: float = 0.0  # 0: every face once per epoch; 1: each head-pose group drawn equally often

    @property
    def attributes(self) -> list[str]:
        """The attribute heads to train, in ATTRIBUTES order (those with a weight > 0)."""
        return [a for a in ATTRIBUTES if self.attr_weights.get(a, 0.0) > 0]


DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def pick_device(name: str) -> torch.device:
    """The torch device for --device auto, cpu, cuda, cuda:N or mps; UserError for any other name or a CUDA device
    this machine does not have (checked before any run folder is made)."""
    kind, sep, index = name.partition(":")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not (name in ("cpu", "mps") or (kind == "cuda" and (not sep or (index.isascii() and index.isdigit())))):
        raise UserError(f"--device {name}: use {DEVICE_CHOICES}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps asked for, but torch sees no Apple GPU (MPS)")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name} asked for, but torch sees no CUDA GPU")
        if sep and int(index) >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return torch.device(name)


def to_targets(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop-pixel keypoints (N, K, 2) -> normalised targets (N, 2K) and their 0/1 mask."""
    flat = points.flatten(1)
    mask = torch.isfinite(flat)
    return torch.where(mask, (flat - 48.0) / 48.0, torch.zeros_like(flat)), mask


@torch.no_grad()
def validate(model, crops, points, flip_perm, batch: int, loss_fn, amp_dtype,
             labels: torch.Tensor | None = None, attributes: list[str] | tuple = ()) -> dict[str, float]:
    """Centre crops, no augmentation: val_loss (masked), val_rmse_px (96-px crop pixels) and, per attribute
    head, val_ce_NAME and val_acc_NAME over the faces whose label is known (`labels`: (N, len(attributes)))."""
    model.eval()
    sq, cnt, loss_sum, n_batches = 0.0, 0, 0.0, 0
    ce_sum = dict.fromkeys(attributes, 0.0)
    hits, known = dict.fromkeys(attributes, 0), dict.fromkeys(attributes, 0)
    for i in range(0, len(crops), batch):
        x, q = augment_batch(crops[i : i + batch], points[i : i + batch], flip_perm, AugmentParams.none())
        y, m = to_targets(q)
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            pred, logits = model.forward_all(x) if attributes else (model(x), {})
        pred = pred.float()
        loss_sum += float(loss_fn(pred, y, m))
        n_batches += 1
        err = (pred - y) * 48.0
        sq += float((err * err)[m].sum())
        cnt += int(m.sum())
        for j, a in enumerate(attributes):
            lab = labels[i : i + batch, j]
            ok = lab >= 0
            n = int(ok.sum())
            if n:
                ce_sum[a] += float(masked_cross_entropy(logits[a], lab)) * n
                hits[a] += int((logits[a][ok].argmax(dim=1) == lab[ok]).sum())
                known[a] += n
    out = {"val_loss": loss_sum / max(n_batches, 1), "val_rmse_px": math.sqrt(sq / max(cnt, 1))}
    for a in attributes:
        out[f"val_ce_{a}"] = ce_sum[a] / known[a] if known[a] else float("nan")
        out[f"val_acc_{a}"] = hits[a] / known[a] if known[a] else float("nan")
    return out


def step_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor, loss_fn, amp_dtype,
              attrs: list[str] | tuple = (), labels: torch.Tensor | None = None,
              weights: dict[str, float] | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """One training step's forward pass (autocast to `amp_dtype` when given) and its float32 losses:
    (joint loss, landmark loss, {attribute: masked cross-entropy}); no host sync."""
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        pred, logits = model.forward_all(x) if attrs else (model(x), {})
    landmark_loss = loss = loss_fn(pred.float(), y, m)
    ces = {}
    for j, a in enumerate(attrs):
        ces[a] = masked_cross_entropy(logits[a], labels[:, j])
        if weights[a] > 0:
            loss = loss + weights[a] * ces[a]
    return loss, landmark_loss, ces


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, crops: torch.Tensor, points: torch.Tensor,
               flip_perm: torch.Tensor, augment: AugmentParams, gen: torch.Generator | None, loss_fn, amp_dtype,
               attrs: list[str] | tuple = (), labels: torch.Tensor | None = None,
               flips: dict[str, torch.Tensor] | None = None, weights: dict[str, float] | None = None,
               ) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """One optimiser step on a batch of stored uint8 crops and keypoints: augment, forward, losses, backward,
    Adam. Returns the landmark loss and {attribute: (cross-entropy, known labels)} as device tensors, with
    no host sync (each .item() or float() would stall the GPU queue)."""
    x, q, flipped = augment_batch(crops, points, flip_perm, augment, generator=gen, return_flip=True)
    y, m = to_targets(q)
    lab = flip_labels(labels, attrs, flipped, flips) if attrs else None
    loss, landmark_loss, ces = step_loss(model, x, y, m, loss_fn, amp_dtype, attrs, lab, weights)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return landmark_loss.detach(), {a: (ces[a].detach(), (lab[:, j] >= 0).sum()) for j, a in enumerate(attrs)}


POSE_GROUPS = (0, 1, 2, 1, 0)  # MTFL pose 0..4 -> profile, turned, frontal: mirror images share a group
UNKNOWN_POSE_GROUP = 2  # faces without a pose label (YouTube-Faces frames) are near-frontal video frames


def pose_balance_weights(pose: np.ndarray, strength: float) -> np.ndarray:
    """Sampling weights (summing to 1) for faces with MTFL pose codes 0..4 (-1 unknown): each face's weight is
    its pose group's size to the power -strength, so 0 draws faces uniformly and 1 draws every group (profile,
    turned, frontal; left and right pooled, as flips mirror them) equally often."""
    groups = np.where(pose >= 0, np.take(POSE_GROUPS, np.clip(pose, 0, 4)), UNKNOWN_POSE_GROUP)
    sizes = np.bincount(groups, minlength=3).astype(np.float64)
    w = sizes[groups] ** -float(strength)
    return w / w.sum()


def split_indices(val: np.ndarray, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) face indices of a prepared set; with `limit`, a seeded random pool of at most
    `limit` training and max(limit // 4, 16) validation faces, the same for every run with that seed."""
    train_idx, val_idx = np.flatnonzero(~val), np.flatnonzero(val)
    if limit:  # the same random pool for every loss, so complete-only sees a subset of masked's faces
        rng = np.random.default_rng(seed)
        train_idx = np.sort(rng.permutation(train_idx)[:limit])
        val_idx = np.sort(rng.permutation(val_idx)[: max(limit // 4, 16)])
    return train_idx, val_idx


def training_faces(keypoints: np.ndarray, val: np.ndarray, cfg: FitConfig,
                   hint: str = "use --loss masked") -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) face indices `cfg` trains on (its --limit pool; complete-only keeps the faces with
    every keypoint); DatasetError naming the data file when either split is empty. `hint` ends the
    complete-only message (what the user can do instead)."""
    train_idx, val_idx = split_indices(val, cfg.limit, cfg.seed)
    if cfg.loss == "complete-only":  # the conventional pipeline drops every partially labelled face
        labelled = np.isfinite(keypoints[train_idx]).all(axis=2).sum(axis=1)
        n_kps, most = keypoints.shape[1], int(labelled.max(initial=0))
        if len(train_idx) and most < n_kps:
            raise DatasetError(
                f"{cfg.data}: no training face has all {n_kps} keypoints, which the complete-only loss needs "
                f"(at most {most} are labelled{', as MTFL gives' if most == 5 else ''}); {hint}")
        train_idx = train_idx[labelled == n_kps]
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise DatasetError(f"{cfg.data}: needs faces in both splits (train {len(train_idx)}, validation "
                           f"{len(val_idx)})")
    return train_idx, val_idx


def check_fit(cfg: FitConfig, hint: str = "use --loss masked") -> None:
    """The checks `fit` can make before any run folder is made: a known --device, and a prepared file with
    training and validation faces for this loss and --limit."""
    pick_device(cfg.device)
    arrays, _ = read_prepared(cfg.data, ("keypoints", "val"))
    training_faces(arrays["keypoints"], arrays["val"], cfg, hint)


def fit(cfg: FitConfig, log: Callable[[str], None] = print) -> dict:
    """Train per `cfg`; returns the final history row. KeyboardInterrupt propagates after a safe save."""
    require_prepared_file(cfg.data)  # a missing input leaves no empty run folder behind
    torch.manual_seed(cfg.seed)
    ctx = init_distributed(pick_device(cfg.device))  # under torchrun: this rank's device and shard
    try:
        with run_folder_lock(cfg.out) if ctx.is_main else contextlib.nullcontext():
            return _fit(cfg, ctx, log if ctx.is_main else _quiet)
    finally:
        shutdown(ctx)


def _quiet(line: str) -> None:
    """The log of ranks other than 0: silent."""


def _fit(cfg: FitConfig, ctx: DistContext, log: Callable[[str], None]) -> dict:
    device = ctx.device
    if ctx.is_main:
        claim_run_folder(cfg.out, cfg.resume, cfg.force, inputs=[cfg.data, cfg.init])
    barrier(ctx)
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:  # a user's own setting wins
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // ctx.world_size))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest algorithms
    if cfg.save_every < 1:
        raise ValueError(f"save_every must be >= 1, got {cfg.save_every}")
    prepared: Prepared = load_prepared(cfg.data)
    kps = get_keypoint_set(prepared.meta["keypoints"])
    loss_fn = LOSSES[cfg.loss]

    train_idx, val_idx = training_faces(prepared.keypoints, prepared.val, cfg)
    n_train = len(train_idx)
    train_idx = shard(train_idx, ctx)  # each rank holds its own share of the training faces on its device

    # the whole prepared set lives on the device: no loader can starve the GPU
    crops = torch.from_numpy(prepared.crops).to(device)
    points = torch.from_numpy(prepared.keypoints.astype(np.float32)).to(device)
    flip_perm = torch.from_numpy(kps.flip_permutation).to(device)
    tr_crops, tr_pts = crops[train_idx], points[train_idx]
    va_crops, va_pts = crops[val_idx], points[val_idx]
    attrs = cfg.attributes
    cols = [ATTRIBUTES.index(a) for a in attrs]
    labels = torch.from_numpy(prepared.attributes[:, cols].astype(np.int64)).to(device)
    tr_labels, va_labels = labels[train_idx], labels[val_idx]
    if attrs and not bool((tr_labels >= 0).any()):
        raise ValueError(f"{cfg.data}: no training face has a known {'/'.join(attrs)} label (MTFL faces have them)")
    weights = {a: float(cfg.attr_weights[a]) for a in attrs}  # current lambda_a; 0 once task a has stopped
    draw_weights = None
    if cfg.pose_balance > 0:
        pose = prepared.attributes[train_idx, ATTRIBUTES.index("pose")]
        draw_weights = torch.from_numpy(pose_balance_weights(pose, cfg.pose_balance)).float().to(device)

    # channels-last is faster for these convolutions on CUDA and on CPU (oneDNN) alike
    model = create_model(cfg.arch, len(kps), attributes={a: len(attribute_classes([a])[a]) for a in attrs},
                         **cfg.arch_kwargs).to(device, memory_format=torch.channels_last)
    if cfg.init and not cfg.resume:
        sample = None  # an ONNX start's unfolded BatchNorms are calibrated on real crops (init_from)
        if model_kind(cfg.init) == "onnx":
            sample = augment_batch(tr_crops[:512], tr_pts[:512], flip_perm, AugmentParams.none())[0]
        init_from(model, cfg.init, cfg.arch, kps.names, log, sample)
    # fused Adam on CUDA: one kernel for all parameters, step counters on the device (no .item() per step)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                           fused=True if device.type == "cuda" else None)
    flips = flip_tables(attrs, device)  # built once, not from Python lists every step
    amp_dtype = torch.bfloat16 if (cfg.amp and device.type == "cuda") else None

    os.makedirs(cfg.out, exist_ok=True)
    last_path, best_path = os.path.join(cfg.out, "last.pt"), os.path.join(cfg.out, "best.pt")
    metrics_path = os.path.join(cfg.out, "metrics.csv")
    data_summary = {
        "prepared": os.path.basename(cfg.data), "specs": prepared.meta["specs"],
        "n_train": int(n_train), "n_val": int(len(val_idx)), "loss": cfg.loss,
    }
    if attrs:
        data_summary["attr_weights"] = weights.copy()
    if cfg.init:
        data_summary["init"] = os.path.basename(cfg.init)
    meta = model_meta(cfg.arch, cfg.arch_kwargs, kps, data_summary, attributes=attribute_classes(attrs),
                      refine=prepared.meta.get("refine"))
    start_epoch, best, history = 0, float("inf"), []
    best_model = None  # a device copy of the best weights, written at the next save
    if cfg.resume:
        if not os.path.isfile(last_path):
            raise FileNotFoundError(f"--resume: no checkpoint at {last_path}")
        # on the CPU: Optimizer.load_state_dict moves the moments to the parameters' device, but keeps a
        # non-fused Adam's step counters where they were loaded (CPU, as Adam wants them; no .item() syncs)
        old_model, ckpt = load_checkpoint(last_path)
        if ckpt["arch"] != cfg.arch:
            raise ValueError(f"--resume: {last_path} is a {ckpt['arch']} run, not {cfg.arch}")
        if dict(ckpt.get("arch_kwargs") or {}) != cfg.arch_kwargs:
            raise ValueError(f"--resume: {last_path} was trained with model options {ckpt.get('arch_kwargs')}, "
                             f"not {cfg.arch_kwargs}; pass the same --arch-option values")
        model.load_state_dict(old_model.state_dict())
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch, best, history = ckpt["epoch"], ckpt["best_val_rmse"], ckpt["history"]
        best = best_to_beat(cfg.out, best, history)  # never replace a better best.pt
        if history:
            weights = {a: float(history[-1].get(f"lambda_{a}", w)) for a, w in weights.items()}
        log(f"resumed {last_path} at epoch {start_epoch} (best validation RMSE {best:.3f} px)")
    step_model = wrap_model(model, ctx, bool(attrs))  # DDP under torchrun: gradients averaged in backward

    def lr_at(epoch: int) -> float:
        if cfg.schedule == "cosine":
            return cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / max(cfg.epochs, 1)))
        return cfg.lr

    def save(epoch: int) -> None:
        save_checkpoint(last_path, model, meta, optimizer=opt.state_dict(), epoch=epoch, best_val_rmse=best,
                        history=history, config={**asdict(cfg), "augment": asdict(cfg.augment)})

    epoch = saved = start_epoch
    best_epoch = min((h for h in history if h.get("val_rmse_px") == best), key=lambda h: h["epoch"],
                     default={}).get("epoch")  # resumed: the epoch of the best so far, when the history has it
    t_run = time.perf_counter()
    try:  # from the first line on, Ctrl-C says what was kept
        log(f"training {cfg.arch} ({cfg.loss} loss) on {n_train} faces, validating on {len(val_idx)}, "
            f"device {device}{', bf16 autocast' if amp_dtype else ''}"
            + (f", {ctx.world_size} processes ({len(train_idx)} faces each)" if ctx.distributed else "")
            + "".join(f", {k}={v}" for k, v in cfg.arch_kwargs.items())
            + ("" if cfg.augment == AugmentParams() else f", augmentation {cfg.augment}")
            + (f", pose-balanced draws (strength {cfg.pose_balance:g})" if cfg.pose_balance > 0 else "")
            + (", attribute heads " + ", ".join(f"{a} (lambda {w:g})" for a, w in weights.items()) if attrs else ""))
        if start_epoch >= cfg.epochs:
            log(f"{last_path} already holds epoch {start_epoch}; raise --epochs above it to train on")
        gen = torch.Generator(device=device)
        gen.manual_seed(cfg.seed + start_epoch + 7919 * ctx.rank)  # rank 0 draws as a single process does
        for epoch in range(start_epoch, cfg.epochs):
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch)
            model.train()
            t0 = time.perf_counter()
            if draw_weights is None:
                perm = torch.randperm(len(tr_crops), device=device, generator=gen)
            else:  # pose-balanced: as many draws as faces, with replacement
                perm = torch.multinomial(draw_weights, len(tr_crops), replacement=True, generator=gen)
            loss_sum, n_batches, seen = torch.zeros((), device=device), 0, 0  # summed on the device: no sync
            ce_sum = {a: torch.zeros((), device=device) for a in attrs}
            ce_n = {a: torch.zeros((), device=device) for a in attrs}
            for i in range(0, len(perm), cfg.batch):
                idx = perm[i : i + cfg.batch]
                landmark_loss, ces = train_step(step_model, opt, tr_crops[idx], tr_pts[idx], flip_perm, cfg.augment,
                                                gen, loss_fn, amp_dtype, attrs, tr_labels[idx], flips, weights)
                for a, (ce, known) in ces.items():
                    ce_sum[a] += ce * known
                    ce_n[a] += known
                loss_sum += landmark_loss
                n_batches += 1
                seen += len(idx)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            loss_sum, seen = sum_over_ranks(loss_sum, ctx), seen * ctx.world_size
            n_batches *= ctx.world_size
            for a in attrs:
                ce_sum[a], ce_n[a] = sum_over_ranks(ce_sum[a], ctx), sum_over_ranks(ce_n[a], ctx)
            sync_buffers(model, ctx)  # every rank validates with rank 0's BatchNorm statistics: same decisions
            val = validate(model, va_crops, va_pts, flip_perm, 1024, loss_fn, amp_dtype, va_labels, attrs)
            val_loss, val_rmse = val["val_loss"], val["val_rmse_px"]
            row = {
                "epoch": epoch + 1, "train_loss": float(loss_sum) / max(1, n_batches),  # the mean over every batch
                "val_loss": val_loss, "val_rmse_px": val_rmse, "lr": lr_at(epoch),
                "images_per_s": seen / seconds, "seconds": seconds,
            }
            for a in attrs:
                row[f"train_ce_{a}"] = float(ce_sum[a] / ce_n[a].clamp_min(1))
                row.update({f"val_ce_{a}": val[f"val_ce_{a}"], f"val_acc_{a}": val[f"val_acc_{a}"]})
            history.append(row)
            for a in stopped_tasks(history, weights, cfg):
                weights[a] = 0.0
                log(f"epoch {epoch + 1}: auxiliary task {a} stopped (TCDCN criterion, k={cfg.stop_k}, "
                    f"epsilon={cfg.stop_epsilon:g}); its head is frozen from here on")
            for a in attrs:  # the weight in force from the next epoch on (0 once stopped); --resume reads it
                row[f"lambda_{a}"] = weights[a]
            if val_rmse < best:
                best, best_model, best_epoch = val_rmse, copy.deepcopy(model), epoch + 1
            row["wall_images_per_s"] = seen / (time.perf_counter() - t0)
            due = (epoch + 1) % cfg.save_every == 0 or epoch + 1 == cfg.epochs
            if ctx.is_main:
                with held_interrupts():  # best.pt, last.pt and metrics.csv always describe the same epoch
                    if due and best_model is not None:
                        save_checkpoint(best_path, best_model, meta, epoch=best_epoch, best_val_rmse=best,
                                        history=[h for h in history if h["epoch"] <= best_epoch])
                        best_model = None
                    if due:
                        save(epoch + 1)
                    write_metrics(metrics_path, history)
            if due:
                saved = epoch + 1
            log(f"epoch {epoch + 1}/{cfg.epochs}  train {row['train_loss']:.5f}  val {val_loss:.5f}  "
                f"val RMSE {val_rmse:.3f} px  {row['images_per_s']:.0f} images/s (steps), "
                f"{row['wall_images_per_s']:.0f} (wall)"
                + "".join(f"  {a} {100 * row[f'val_acc_{a}']:.1f}%" for a in attrs))
    except (KeyboardInterrupt, Terminated):
        log(interruption_message(cfg.out, saved, start_epoch))
        raise
    finally:
        if history and ctx.is_main:
            plot_losses({cfg.arch: history}, os.path.join(cfg.out, "loss_curve.png"))
    if not history or not ctx.is_main:
        return history[-1] if history else {}
    # the final row, plus what `fit_summary` reports (rank 0 alone): epochs trained now (the loop ran to its end)
    return {**history[-1], "epochs_trained": cfg.epochs - start_epoch, "seconds_total": time.perf_counter() - t_run,
            "best_val_rmse_px": best, "best_epoch": best_epoch}


def fit_summary(cfg: FitConfig, result: dict) -> str | None:
    """The one line `train fit` ends with: epochs trained, time, the best validation RMSE and where the
    checkpoints are; None when this session trained no epoch."""
    trained = result.get("epochs_trained", 0)
    if trained <= 0:
        return None
    best, best_epoch = result["best_val_rmse_px"], result["best_epoch"]
    at = f" at epoch {best_epoch}" if best_epoch else ""
    best_part = (f"best validation RMSE {best:.3f} px{at} -> {os.path.join(cfg.out, 'best.pt')}"
                 if math.isfinite(best) else "no finite validation RMSE, so no best.pt")
    return (f"done: {trained} epoch{'s' if trained != 1 else ''} in {_duration(result['seconds_total'])}; "
            f"{best_part}; last -> {os.path.join(cfg.out, 'last.pt')}")


def _duration(seconds: float) -> str:
    """3.2 s, 4 min 05 s, 1 h 02 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def stopped_tasks(history: list[dict], weights: dict[str, float], cfg: FitConfig) -> list[str]:
    """The attribute tasks still running that the TCDCN criterion stops after the last epoch of `history`."""
    out = []
    for a, w in weights.items():
        if w <= 0:
            continue
        train = [h[f"train_ce_{a}"] for h in history]
        val = [h[f"val_ce_{a}"] for h in history]
        if all(math.isfinite(v) for v in train + val) and should_stop(
                train, val, cfg.attr_weights[a], cfg.stop_k, cfg.stop_epsilon):
            out.append(a)
    return out


def model_arch(path: str) -> tuple[str, dict]:
    """(architecture, model options) of a checkpoint or an exported ONNX model: what `fit --init`/`--resume`
    build when no --arch is given."""
    _, ckpt = load_onnx_model(path) if model_kind(path) == "onnx" else load_checkpoint(path)
    return str(ckpt["arch"]), dict(ckpt.get("arch_kwargs") or {})


def init_from(model: torch.nn.Module, path: str, arch: str, names: tuple[str, ...], log: Callable[[str], None],
              sample: torch.Tensor | None = None) -> None:
    """Copy the weights of checkpoint `path` (same keypoints) into `model`: every tensor of matching name
    and shape, so a variant (e.g. mlresnet_fast from mlresnet) starts from its parent; the rest stays fresh.

    An exported ONNX file (e.g. the packaged model) works too: its folded BatchNorms come back with the
    statistics of `sample` (a batch of network inputs), so training starts from the exported function."""
    if model_kind(path) == "onnx":
        src, ckpt = load_onnx_model(path)
        if sample is not None:
            calibrate_batchnorm(src.to(sample.device), sample)
    else:
        src, ckpt = load_checkpoint(path)
    if tuple(ckpt["keypoint_names"]) != tuple(names):
        raise CheckpointError(f"--init {path}: a {ckpt['arch']} model with {len(ckpt['keypoint_names'])} keypoints "
                              f"cannot start a {arch} model with {len(names)}")
    own = model.state_dict()
    state = {k: v for k, v in src.state_dict().items() if k in own and own[k].shape == v.shape}
    weights = [k for k, v in state.items() if v.dim() > 1]
    if not weights:
        raise CheckpointError(f"--init {path}: a {ckpt['arch']} model shares no weights with a {arch} model")
    model.load_state_dict(state, strict=False)
    other = "" if ckpt["arch"] == arch else f", a {ckpt['arch']} model: the tensors of matching name and shape"
    log(f"initialised from {path} ({len(state)}/{len(own)} tensors{other})")


def write_metrics(path: str, history: list[dict]) -> None:
    fields = METRIC_FIELDS + [k for k in history[-1] if k not in METRIC_FIELDS] if history else METRIC_FIELDS
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(history)
