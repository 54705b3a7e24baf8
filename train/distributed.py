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


class SyncedModel:
    """A DDP-wrapped keypoint model with the model's two calls: `m(x)` and `m.forward_all(x)`."""

    def __init__(self, ddp: nn.Module):
        self.ddp = ddp

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.ddp(x)[0]

    def forward_all(self, x: torch.Tensor):
        return self.ddp(x)


def wrap_model(model: nn.Module, ctx: DistContext, multitask: bool):
    """The model the training step calls: `model` itself in one process; under torchrun a
    DistributedDataParallel wrapper, so backward averages the gradients over ranks. Attribute heads that
    stop (lambda 0) produce no gradient, hence find_unused_parameters for multi-task runs."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return SyncedModel(DistributedDataParallel(_AllOutputs(model), device_ids=ids,
                                               find_unused_parameters=multitask))


def sum_over_ranks(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The sum of a tensor over all ranks (itself in a single process)."""
    if not ctx.distributed:
        return value
    import torch.distributed as dist

    value = value.detach().clone()
    dist.all_reduce(value)
    return value


def sync_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics), so validation, best-model choice and
    task stopping agree on all ranks."""
    if ctx.distributed:
        import torch.distributed as dist

        for buf in model.buffers():
            dist.broadcast(buf, 0)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
