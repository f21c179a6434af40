"""How a run uses its device: DeviceOptions resolved into a plan (precision, memory format, how often the host reads
the losses), and StepLog, which keeps step losses on the device between reads. A CPU run is the reference path."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from kdviz.core.distributed import SINGLE, Shard
from kdviz.core.events import StepLosses, diverged

# On a GPU the host reads the step losses every SYNC_EVERY steps (or SYNC_SECONDS, whichever comes first), not every
# step: reading a CUDA tensor (.tolist(), .item(), float()) waits until the GPU has finished all queued work, and a
# GPU that waits for Python between steps is idle most of the time on these small models.
SYNC_EVERY = 50
SYNC_SECONDS = 0.2
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class DeviceOptions:
    """How a run uses a GPU. None of it changes a CPU run: the CPU path is the reference, read and checked every step.

    sync_every: steps between two host reads of the losses (None: 1 on CPU, SYNC_EVERY on a GPU; an explicit value
      applies on every device, which is how the tests show batching changes no number). A single-process GPU run also
      reads after sync_seconds, so live charts keep moving. Divergence is checked at each read: a diverged step is
      reported with its exact number, but found up to sync_every - 1 steps (or sync_seconds) late.
    precision: "auto" = bf16 autocast on CUDA for models with convolutions (tensor cores, with channels_last), fp32
      for MLPs (at these widths a step is kernel-launch bound: autocast's casts would cost more than they save);
      "fp32"; "bf16" (CUDA only; fp32 elsewhere).
    channels_last: None = with bf16 on models with convolutions (NHWC is what cuDNN's tensor-core kernels want).
    compile: torch.compile the training forward passes (CUDA only). Off by default: compiling takes tens of seconds
      and recompiles for the last, smaller batch; bench/bench_gpu.py --compile times whether it pays off.
    """

    sync_every: int | None = None
    sync_seconds: float = SYNC_SECONDS
    precision: str = "auto"
    channels_last: bool | None = None
    compile: bool = False


@dataclass(frozen=True)
class Plan:
    """DeviceOptions resolved for one run on one device."""

    sync_every: int
    sync_seconds: float | None  # None: read by step count only (the CPU path; every rank of a DDP run alike)
    bf16: bool
    channels_last: bool
    compile: bool

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()


def has_convolutions(model: nn.Module) -> bool:
    return any(isinstance(module, nn.Conv2d) for module in model.modules())


def plan_for(options: DeviceOptions | None, device: torch.device, model: nn.Module, single: bool = True) -> Plan:
    options = options or DeviceOptions()
    if options.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {options.precision!r}")
    if options.sync_every is not None and not (isinstance(options.sync_every, int) and options.sync_every >= 1):
        raise ValueError(f"sync_every must be an integer >= 1, got {options.sync_every!r}")
    cuda, convolutional = device.type == "cuda", has_convolutions(model)
    bf16 = cuda and torch.cuda.is_bf16_supported() and (
        options.precision == "bf16" or (options.precision == "auto" and convolutional))
    every = options.sync_every or (1 if device.type == "cpu" else SYNC_EVERY)
    # by time only in one process: every rank of a DDP run must read (an all-reduce) at the same steps
    seconds = options.sync_seconds if single and device.type != "cpu" and options.sync_seconds else None
    channels_last = cuda and convolutional and (bf16 if options.channels_last is None else options.channels_last)
    return Plan(every, seconds, bf16, channels_last, cuda and options.compile)


def placed(model: nn.Module, device: torch.device, plan: Plan) -> nn.Module:
    return model.to(device, memory_format=torch.channels_last) if plan.channels_last else model.to(device)


def handed_back(model: nn.Module, plan: Plan, rebuild: Callable[[], nn.Module] | None = None) -> nn.Module:
    """A trained model as callers get it: on the CPU, in eval mode, standard memory format and batch norm."""
    model = model.cpu()
    if plan.channels_last:
        model = model.to(memory_format=torch.contiguous_format)
    if rebuild is not None and any(isinstance(m, nn.SyncBatchNorm) for m in model.modules()):
        plain = rebuild()
        plain.load_state_dict(model.state_dict())
        model = plain
    return model.eval()


class StepLog:
    """Step losses kept where they were computed and read by the host every few steps, not every step.

    Each step adds a row (its losses, in `keys` order, still on the device); read() brings all pending rows to the
    host in one transfer (in a DDP run one all-reduce: the sum over ranks of their weighted shard losses, which is the
    global batch's loss) and turns them into StepLosses events. On CPU a read follows every step, before its update:
    the engine's path before GPU batching, number for number.
    """

    def __init__(self, keys: tuple[str, ...], plan: Plan, device: torch.device, shard: Shard = SINGLE):
        self.keys, self.every, self.seconds, self.device, self.shard = keys, plan.sync_every, plan.sync_seconds, \
            device, shard
        self.rows: list[tuple[int, int, torch.Tensor]] = []  # (step, epoch, losses (K,))
        self.stop = False  # this rank was asked to stop: in a DDP run, all ranks agree on it at the next read
        self.read_at = time.perf_counter()

    def add(self, step: int, epoch: int, losses: dict, fraction: float = 1.0) -> None:
        """fraction: this rank's share of the global batch (1 in one process)."""
        row = torch.stack([losses[key] for key in self.keys]).detach()
        self.rows.append((step, epoch, row if self.shard.single else row * fraction))

    def due(self) -> bool:
        return len(self.rows) >= self.every or (
            self.seconds is not None and bool(self.rows) and time.perf_counter() - self.read_at >= self.seconds)

    def read(self, watched: tuple[str, ...]) -> tuple[list[StepLosses], tuple | None, bool]:
        """(the pending steps' StepLosses up to the first diverged one, that one as (step, key, value) or None,
        whether any rank asked to stop). watched: the keys whose divergence ends the run, in the order checked."""
        rows, self.rows, self.read_at = self.rows, [], time.perf_counter()
        stop = self.stop
        if rows:
            table = torch.stack([row for _, _, row in rows])  # (steps, K) on the device
        else:
            table = torch.zeros((0, len(self.keys)), device=self.device)
        if self.shard.single:
            values = table.tolist()  # the one host sync of these steps
        else:
            flat = torch.cat([table.flatten(), torch.tensor([float(self.stop)], device=table.device)])
            flat = self.shard.all_sum(flat).tolist()
            values = [flat[i * len(self.keys):(i + 1) * len(self.keys)] for i in range(len(rows))]
            stop = flat[-1] > 0
        events = []
        for (step, epoch, _), row in zip(rows, values):
            losses = dict(zip(self.keys, row))
            bad = next((key for key in watched if key in losses and diverged(losses[key])), None)
            if bad is not None:
                return events, (step, bad, losses[bad]), stop
            events.append(StepLosses(step, epoch, losses))
        return events, None, stop
