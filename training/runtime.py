"""Device, precision and process group: everything that differs between a laptop and a GPU node.

* Device ``auto``: CUDA when available, else CPU (``cpu``, ``cuda``, ``cuda:1`` explicitly).
* bf16 autocast on CUDA (the loss itself is computed in float32); none on CPU.
* DDP when ``WORLD_SIZE`` > 1, as ``torchrun`` sets it: NCCL on CUDA, gloo on CPU. Each rank
  takes its slice of every *global* batch (:class:`GlobalBatches`), and the loss is
  normalised by the global batch's weight (``training.loss``), so a DDP run computes the
  same updates as one process with the same batch size.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from schemas.errors import ConfigError


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on CUDA, nothing on CPU."""
        if self.cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast_flag(self, value: bool) -> bool:
        """Rank 0's value on every rank (stop/improved decisions must agree)."""
        if not self.distributed:
            return value
        t = torch.tensor([1 if value else 0], dtype=torch.int64, device=self.device)  # NCCL: on the GPU
        dist.broadcast(t, src=0)
        return bool(t.item())

    def sum_across(self, values: torch.Tensor, count: int) -> tuple[torch.Tensor, int]:
        """Element-wise sums over all ranks (epoch loss sums, examples seen)."""
        if not self.distributed:
            return values, count
        packed = torch.cat([values.double(), torch.tensor([float(count)], dtype=torch.float64)])
        if self.cuda:
            packed = packed.to(self.device)
        dist.all_reduce(packed)
        packed = packed.cpu()
        return packed[:-1], int(packed[-1].item())

    def close(self) -> None:
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def choose_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def start(device: str = "auto") -> Runtime:
    """The runtime of this process; joins the process group when ``WORLD_SIZE`` > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = choose_device(device, local_rank)
    rt = Runtime(dev, rank, world, local_rank)
    if world > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
            rt.initialised_here = True
    return rt


class GlobalBatches:
    """Batches of a seeded per-epoch permutation; each rank yields its contiguous part.

    With one process this is an ordinary shuffled batch sampler. A last global batch with
    fewer examples than ranks is dropped (a rank with nothing would stall the all-reduce).
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < world_size:
            raise ConfigError(f"batch size {batch_size} is smaller than the {world_size} ranks")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        batches = [order[i:i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        return [b for b in batches if len(b) >= self.world_size]

    def part(self, batch: list[int]) -> list[int]:
        """This rank's contiguous share; shares differ in size by at most one."""
        n, w, r = len(batch), self.world_size, self.rank
        return batch[r * n // w:(r + 1) * n // w]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            yield self.part(batch)

    def __len__(self) -> int:
        return len(self.global_batches())
