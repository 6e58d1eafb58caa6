"""DistributedDataParallel helpers: the same training command runs under ``torchrun``.

``torchrun --nproc_per_node N -m lenssr.cli train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` reads them and joins the
process group (``gloo`` on CPU, ``nccl`` on CUDA). Without them training is single-process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> DistInfo:
    """Join the process group described by the ``torchrun`` environment, if any.

    On CUDA each process uses ``cuda:LOCAL_RANK``. Returns ``DistInfo()`` (rank 0 of 1) when
    ``WORLD_SIZE`` is unset or 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, False)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local_rank, True)


def teardown(info: DistInfo) -> None:
    """Leave the process group if :func:`setup` joined it."""
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def any_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """``True`` on every rank when ``flag`` is true on any rank (keeps ranks stopping together)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op when single-process)."""
    if info.enabled:
        dist.barrier()
