"""Data-parallel distillation under torchrun: each rank trains on its shard of every global batch, DDP averages.

A `Shard` tells the engine which part of each global batch this process owns and how to talk to the other
processes; `SINGLE` (one process, the whole batch) changes nothing. The order of the batches and the jitter come from
the run's explicit generators, seeded alike on every rank, so every rank draws the same global batch and takes its
slice: the run equals the single-process run of the same config up to floating-point rounding.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
from torch import nn

# How long a rank waits for the others (a collective, the teacher's broadcast while rank 0 trains it): generous,
# because rank 0 may train a teacher first; torchrun stops every worker at once when one of them fails.
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Shard:
    """This process's place in a data-parallel run: rank r of world_size, on the node's GPU local_rank."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def single(self) -> bool:
        return self.world_size == 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints, writes files and trains the teacher."""
        return self.rank == 0

    def bounds(self, batch: int) -> tuple[int, int]:
        """[start, end) of this rank's slice of a global batch of `batch` items.

        Contiguous slices whose sizes differ by at most one, the larger ones first (torch.tensor_split's rule), so rank
        0 is never empty; a later rank is when the batch is smaller than the world (its zero gradient still joins
        the all-reduce)."""
        size, extra = divmod(batch, self.world_size)
        start = self.rank * size + min(self.rank, extra)
        return start, start + size + (self.rank < extra)

    def weight(self, shard: int, batch: int) -> float:
        """The factor on this rank's mean loss that makes DDP's gradient average the global batch's mean gradient.

        DDP averages gradients over ranks: (1/W) Σ_r ∇(w_r · mean_r) = (1/B) Σ_i ∇loss_i  when  w_r = n_r · W / B.
        With equal shards w_r = 1; an uneven last batch is weighted by how many of its items each rank holds."""
        return shard * self.world_size / batch

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module to train: the model itself in one process, else a DistributedDataParallel around it."""
        if self.single:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if device.type != "cuda":
            return DistributedDataParallel(model, gradient_as_bucket_view=True)
        index = device.index if device.index is not None else torch.cuda.current_device()
        return DistributedDataParallel(model, device_ids=[index], gradient_as_bucket_view=True)

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of `tensor` over all ranks (the tensor itself in one process)."""
        if not self.single:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether any rank's flag is set: a decision every rank takes together (stop, give up)."""
        if self.single:
            return flag
        return bool(self.all_sum(torch.tensor([float(flag)], device=device)).item() > 0)

    def broadcast_module(self, model: nn.Module, device: torch.device) -> nn.Module:
        """Give every rank rank 0's weights (and buffers), in place; the model stays where it was."""
        if not self.single:
            for tensor in model.state_dict().values():
                moved = tensor.detach().to(device)
                torch.distributed.broadcast(moved, src=0)
                tensor.copy_(moved)
        return model

    def barrier(self) -> None:
        if self.single:
            return
        if torch.distributed.get_backend() == "nccl":  # name this rank's GPU rather than let NCCL guess it
            torch.distributed.barrier(device_ids=[torch.cuda.current_device()])
        else:
            torch.distributed.barrier()


SINGLE = Shard()


def from_environment(environ: Mapping[str, str] | None = None) -> Shard | None:
    """The shard torchrun gave this process (RANK, WORLD_SIZE, LOCAL_RANK), or None outside torchrun or alone."""
    environ = os.environ if environ is None else environ
    try:
        world_size = int(environ.get("WORLD_SIZE", "1"))
        rank, local_rank = int(environ.get("RANK", "0")), int(environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers, got {environ.get('RANK')!r}, "
                         f"{environ.get('WORLD_SIZE')!r}, {environ.get('LOCAL_RANK')!r}") from None
    if world_size <= 1:
        return None
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK must be in [0, {world_size - 1}], got {rank}")
    return Shard(rank, world_size, local_rank)


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(shard: Shard, device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group for the length of the block (once per process); yield this rank's device.

    On CUDA each rank owns the GPU LOCAL_RANK of its node: it becomes the current device, so tensors and
    generators made for "cuda" land on it."""
    if device.type == "cuda":
        torch.cuda.set_device(shard.local_rank)
        device = torch.device("cuda", shard.local_rank)
    torch.distributed.init_process_group(backend_for(device), timeout=TIMEOUT)
    try:
        yield device
    finally:
        torch.distributed.destroy_process_group()


def plain_batch_norm(model: nn.Module) -> bool:
    """Whether model has batch norm that a CPU data-parallel run normalises per shard (SyncBatchNorm needs a GPU)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)
               for m in model.modules())


def sync_batch_norm(model: nn.Module, device: torch.device, shard: Shard) -> nn.Module:
    """On CUDA under DDP, batch norm over the global batch (SyncBatchNorm), as one process would compute it."""
    if shard.single or device.type != "cuda" or not plain_batch_norm(model):
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
