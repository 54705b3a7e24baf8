"""Data-parallel training under torchrun: the process group, each rank's shard, the DDP wrapper.

A single process (no torchrun) is world size 1: every function here is then a no-op and training is unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among `world_size`, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics, plots and log lines."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> DistContext:
    """Join the torchrun process group (NCCL on CUDA, gloo on CPU), or return a world-size-1 context.

    On CUDA each rank takes the GPU of its LOCAL_RANK; `device` is then that GPU.
    """
    if not launched_by_torchrun():
        return DistContext(device=device)
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world, local_rank=local, device=device)


def shard(indices: np.ndarray, ctx: DistContext) -> np.ndarray:
    """This rank's equal share of `indices` (every rank gets len // world, so all ranks take the same
    number of steps; the at most world-1 faces left over are dropped for the run)."""
    if not ctx.distributed:
        return indices
    per_rank = len(indices) // ctx.world_size
    return indices[ctx.rank :: ctx.world_size][:per_rank]


class _AllOutputs(nn.Module):
    """Makes `forward_all` the forward pass, so DDP sees (and synchronises) the attribute heads' gradients."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model.forward_all(x)


def wrap_model(model: nn.Module, ctx: DistContext, multitask: bool):
    """The callable the training step uses: x -> (keypoints, {attribute: logits}).

    Under torchrun it is a DistributedDataParallel module (gradients averaged over ranks in backward);
    attribute heads that stop (lambda 0) produce no gradient, hence find_unused_parameters for multi-task.
    """
    fwd = _AllOutputs(model) if multitask else model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        fwd = DistributedDataParallel(fwd, device_ids=ids, find_unused_parameters=multitask)
    if multitask:
        return fwd
    return lambda x: (fwd(x), {})


def mean_over_ranks(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The average of a scalar tensor over all ranks (itself in a single process)."""
    if not ctx.distributed:
        return value
    import torch.distributed as dist

    value = value.detach().clone()
    dist.all_reduce(value)
    return value / ctx.world_size


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
