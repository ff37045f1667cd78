"""Several processes, one result: ranks, sharding without duplicates, sums, rank-0 work.

Training is distributed by Lightning's strategies; what is SpikeZIP's own (converting,
proving, measuring the SNN, writing run files) uses these helpers on top of
``torch.distributed``. Everything works unchanged in a single process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import Dataset, Subset

from spikezip.errors import SpikeZIPError

T = TypeVar("T")


class OtherRankError(SpikeZIPError, RuntimeError):
    """Work that rank 0 did for every process failed there; its message says what."""


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank: from the process group, or before one exists from the
    launcher's environment (torchrun, SLURM, Lightning's DDP launcher)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    for key in ("RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key])
    # Lightning's own launcher gives its processes a node and a local rank only; on a
    # later node this is not the exact global rank, but it is never 0 there.
    node, local = int(os.environ.get("NODE_RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    return node * int(os.environ.get("LOCAL_WORLD_SIZE", 1)) + local if node else local


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_rank_zero() -> bool:
    return rank() == 0


def _device() -> torch.device:
    """The device collectives of this process run on (NCCL needs the process's GPU)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reduce_sum(tensor: Tensor) -> Tensor:
    """``tensor`` summed over every process (itself in a single process)."""
    if not is_distributed():
        return tensor
    total = tensor.to(_device()).clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(tensor.device)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def on_rank_zero(work: Callable[[], T]) -> T | None:
    """Run ``work`` on rank 0 only while the others wait; an error there is raised on
    every rank (the others get its message), so no process waits forever."""
    if not is_distributed():
        return work()
    result, error = None, None
    if dist.get_rank() == 0:
        try:
            result = work()
        except Exception as err:  # re-raised below, on this rank as it is
            error = err
    message = [f"{type(error).__name__}: {error}" if error is not None else None]
    dist.broadcast_object_list(message, src=0, device=_device())
    if error is not None:
        raise error
    if message[0] is not None:
        raise OtherRankError(f"rank 0 failed, so this rank stops too: {message[0]}")
    return result


def shard(dataset: Dataset, limit: int | None = None) -> Dataset:
    """This process's share of the first ``limit`` samples of ``dataset`` (all of them if
    None): samples ``rank, rank + W, ...``. Unlike a padded ``DistributedSampler``, no
    sample is seen twice, so sums over processes are sums over the data."""
    size = len(dataset) if limit is None else min(limit, len(dataset))
    if world_size() == 1:
        return dataset if size == len(dataset) else Subset(dataset, range(size))
    return Subset(dataset, range(rank(), size, world_size()))


def init_from_env() -> bool:
    """Join the process group a launcher such as ``torchrun`` describes in the environment
    (``WORLD_SIZE`` > 1), with NCCL on GPUs and gloo otherwise; whether it did."""
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True
