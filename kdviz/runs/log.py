"""A run's events in bounded memory: what the live charts read while the full log goes to disk."""
from __future__ import annotations

import heapq
import threading

# Per-step loss records kept per phase; more are merged pairwise into bins (means), so a curve never has more points.
MAX_STEP_POINTS = 2000
# Probe-image logits every epoch: only the image explorer reads them, from the log on disk.
NOT_KEPT = ("Snapshot",)


class EventLog:
    """Every event of a run except per-step losses and snapshots, plus the per-step losses binned to at most
    MAX_STEP_POINTS per phase.

    A bin is one StepLosses record: its step, epoch and time are its last step's, its losses the mean over its
    steps, and "count" says how many steps it holds (a record of one step is kept as it came, without "count").
    Readers get a list that is rebuilt only when something was appended (`version` counts appends), so many viewers
    of one run share one list.
    """

    def __init__(self, max_step_points: int = MAX_STEP_POINTS):
        self.max_step_points = max(2, int(max_step_points))
        self._lock = threading.Lock()
        self._seq = 0
        self._other: list[tuple[int, dict]] = []
        self._steps: dict[str, list[tuple[int, dict]]] = {}  # phase → closed and open bins
        self._width: dict[str, int] = {}  # phase → steps per bin
        self.version = 0
        self._records: list[dict] | None = []

    def append(self, record: dict) -> None:
        kind = record.get("event")
        if kind in NOT_KEPT:
            return
        with self._lock:
            self._seq += 1
            if kind == "StepLosses":
                self._add_step(record)
            else:
                self._other.append((self._seq, record))
            self.version += 1
            self._records = None

    def extend(self, records) -> None:
        for record in records:
            self.append(record)

    def _add_step(self, record: dict) -> None:
        phase = record.get("phase", "distill")
        bins = self._steps.setdefault(phase, [])
        width = self._width.setdefault(phase, 1)
        if bins and _count(bins[-1][1]) < width:  # the open bin takes this step
            bins[-1] = (self._seq, _merge(bins[-1][1], record))
        else:
            bins.append((self._seq, record))
        if len(bins) > self.max_step_points:  # halve the resolution: merge neighbours
            self._steps[phase] = [(b[0], _merge(a[1], b[1])) if b is not None else a
                                  for a, b in zip(bins[::2], bins[1::2] + [None] * (len(bins) % 2))]
            self._width[phase] = width * 2

    def records(self) -> list[dict]:
        """Every kept record in the order it was appended (steps as bins). Do not modify the list."""
        with self._lock:
            if self._records is None:
                streams = [self._other, *self._steps.values()]
                self._records = [record for _, record in heapq.merge(*streams, key=lambda item: item[0])]
            return self._records

    def __len__(self) -> int:
        return len(self.records())


def _count(record: dict) -> int:
    return record.get("count", 1)


def _merge(first: dict, second: dict) -> dict:
    """One bin from two consecutive ones: the later one's step, epoch and time, the count-weighted mean losses."""
    a, b = _count(first), _count(second)
    losses = {key: (first["losses"].get(key, value) * a + value * b) / (a + b)
              for key, value in second.get("losses", {}).items()}
    return {**second, "losses": losses, "count": a + b}
