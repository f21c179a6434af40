"""The engine's events: what a training run tells its consumers (the app's run manager, the CLI, tests), step by step.

Small frozen dataclasses; a run's stream is Started, StepLosses per step, EpochEnd (and Snapshot) per epoch, perhaps
Diverged or Notice, and always Finished last. event_to_dict is what a run's log on disk holds.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

# A loss above this many nats has diverged even if still finite: cross-entropy starts at ln(classes) ≈ 2.3 and
# Adam bounds each step, so with a huge learning rate the loss explodes to ~1e4–1e8 long before it overflows.
DIVERGED_LOSS = 1e4


def _diverged(value: float) -> bool:
    return not math.isfinite(value) or value > DIVERGED_LOSS


def diverged(value: float) -> bool:
    """Whether a loss value means the run has diverged (not finite, or above DIVERGED_LOSS)."""
    return not math.isfinite(value) or value > DIVERGED_LOSS


@dataclass(frozen=True)
class Started:
    kind: str  # "teacher" or "distill"
    total_steps: int
    steps_per_epoch: int
    device: str
    n_train: int
    n_test: int
    probe_indices: tuple[int, ...] = ()
    n_val: int = 0


@dataclass(frozen=True)
class StepLosses:
    step: int  # 1-based, counts optimiser steps
    epoch: int
    losses: dict  # teacher: {"teacher"}; distill: {"hard", "kd_soft", "kd_hard", "kd_total"}


@dataclass(frozen=True)
class EpochEnd:
    epoch: int  # 0 is before training
    accuracy: dict  # test accuracy per model: {"teacher"} or {"teacher", "hard", "kd"}; reported, never chosen by
    val_accuracy: dict = field(default_factory=dict)  # the same models on the validation part: what choices read


@dataclass(frozen=True)
class Snapshot:
    epoch: int
    logits: dict  # {"hard": [[...]], "kd": [[...]]}: the students' logits on the probe images


@dataclass(frozen=True)
class Diverged:
    step: int
    model: str
    message: str


@dataclass(frozen=True)
class Notice:
    message: str  # something the user should read, e.g. "the cached teacher was corrupt and is retrained"


@dataclass(frozen=True)
class Finished:
    status: str  # "completed", "cancelled" or "diverged"
    summary: dict
    models: dict = field(default_factory=dict, repr=False, compare=False)  # trained models by role; never logged


Event = Started | StepLosses | EpochEnd | Snapshot | Diverged | Notice | Finished


def event_to_dict(event) -> dict:
    """A JSON-ready dict of an event (without the model objects), with its type name under "event"."""
    payload = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "models"}
    if "probe_indices" in payload:
        payload["probe_indices"] = list(payload["probe_indices"])
    return {"event": type(event).__name__, **payload}
