"""One entry point for one process or many: torchrun's environment decides.

Under ``torchrun --nproc_per_node=N`` (env RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)
each process trains on its slice of every minibatch; gradients and ADA statistics are averaged
with all-reduce (NCCL on GPUs, gloo on CPU). Without those variables every helper here is a no-op,
so the training loop has a single code path.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job, and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_process_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> this rank's GPU when CUDA is available, else the CPU; 'cuda' without a GPU is an error."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device {name!r}: choose 'auto', 'cpu' or 'cuda'.")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch.cuda.is_available() is False.")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def init_from_env(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes (if any) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    resolved = resolve_device(device, local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        # Generous timeout: ranks wait at a barrier while rank 0 writes a snapshot and runs its hook.
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo", rank=rank,
                                world_size=world_size, timeout=datetime.timedelta(hours=1))
        owns = True
    return DistContext(rank, world_size, local_rank, resolved, owns)


def shutdown(ctx: DistContext) -> None:
    if ctx.owns_process_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean_(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Average `tensor` over ranks, in place."""
    if ctx.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(ctx.world_size)
    return tensor


def all_reduce_sum_(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum `tensor` over ranks, in place."""
    if ctx.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_buffers_(module: torch.nn.Module, ctx: DistContext) -> None:
    """Average floating-point buffers over ranks, e.g. G's tracked w_avg, which each rank updates from its
    own slice of the batch; the average equals what one process would track over the whole batch."""
    buffers = [buffer for buffer in module.buffers() if buffer.is_floating_point()]
    if not ctx.active or not buffers:
        return
    flat = torch.cat([buffer.flatten() for buffer in buffers])
    all_reduce_mean_(flat, ctx)
    for buffer, value in zip(buffers, flat.split([buffer.numel() for buffer in buffers])):
        buffer.copy_(value.view_as(buffer))


def broadcast_module_(modules: Iterable[torch.nn.Module], ctx: DistContext) -> None:
    """Give every rank rank 0's parameters and buffers."""
    if not ctx.active:
        return
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's `obj`, in rank order (used to store each rank's RNG state in the snapshot)."""
    if not ctx.active:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()
