"""The event experiments add to the engine's (Started, Notice, Finished, ...): one measured point, with progress."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measured:
    """One point of an experiment (e.g. relative variances at one epoch and temperature)."""

    done: int  # points measured so far, of total (progress)
    total: int
    point: dict
