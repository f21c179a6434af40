"""The event experiments add to the engine's (Started, Notice, Finished, ...): one measured point, with progress."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measured:
    """One point of an experiment (e.g. relative variances at one epoch and temperature)."""

    done: int  # points measured so far, of total (progress)
    total: int
    point: dict


def relay(events):
    """Run an engine stream (distill, prepare_teacher) inside an experiment's: pass its Notice and Diverged events
    on, keep the rest to itself; `finished = yield from relay(stream)` gets its Finished event (None if it had none)."""
    from kdviz.core.events import Diverged, Finished, Notice

    finished = None
    for event in events:
        if isinstance(event, Finished):
            finished = event
        elif isinstance(event, (Notice, Diverged)):
            yield event
    return finished
