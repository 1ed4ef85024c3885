"""Multi-process data parallelism under ``torchrun`` (NCCL on GPU, gloo on CPU) and the epoch sampler.

``torchrun --nproc-per-node N -m equiseg.cli.main train ...`` sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``;
:func:`init_distributed` reads them and joins the process group. Without them training runs in one process and
every helper here degrades to a no-op, so the same loop serves both.

Sampling: :func:`epoch_indices` draws one permutation per epoch from ``(seed, epoch)`` alone and hands rank ``r``
the items ``r, r + W, r + 2W, ...`` of it (the ``DistributedSampler`` layout), cut to whole global batches. So
global step ``t`` always sees the same samples whatever the world size, and a run resumed mid-epoch recomputes
the same order and skips the steps it already did.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "cleanup_distributed",
    "epoch_indices",
    "init_distributed",
    "resolve_device",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, local rank and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """Map ``train.device`` (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``) to a device.

    Raises:
        RuntimeError: CUDA requested but not available.
    """
    if preference == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if preference == "cpu":
        return torch.device("cpu")
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"train.device={preference!r} but no CUDA device is visible; use --set train.device=cpu (or auto)"
            )
        if preference == "cuda":
            return torch.device("cuda", local_rank)
        return torch.device(preference)
    raise ValueError(f"train.device must be auto, cpu, cuda or cuda:N, got {preference!r}")


def init_distributed(device_preference: str = "auto") -> DistInfo:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1, else describe a single process.

    The backend is NCCL when the device is CUDA, gloo otherwise. Calling it twice reuses the existing group.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
            logger.info("joined %s process group: rank %d of %d on %s", backend, rank, world_size, device)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    """Leave the process group if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in one process)."""
    if info.distributed:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks in place and return it (no-op in one process)."""
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a Python float over ranks."""
    if not info.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / info.world_size


def epoch_indices(
    num_samples: int,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool = True,
) -> list[int]:
    """This rank's sample indices for one epoch, whole batches only (``batch_size`` is per rank).

    The global batch is ``batch_size * world_size``; the trailing partial global batch is dropped so every rank
    runs the same number of steps and every step has the same size.

    Raises:
        ValueError: fewer samples than one global batch.
    """
    global_batch = batch_size * world_size
    steps = num_samples // global_batch
    if steps == 0:
        raise ValueError(
            f"the training split has {num_samples} samples, fewer than one global batch of {global_batch} "
            f"(train.batch_size={batch_size} x {world_size} processes); lower train.batch_size or add data"
        )
    if shuffle:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(num_samples, generator=generator).tolist()
    else:
        order = list(range(num_samples))
    used = order[: steps * global_batch]
    return used[rank::world_size]
