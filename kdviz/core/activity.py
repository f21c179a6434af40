"""Which trainings of this process took a step meanwhile: an energy measurement asks, to tell a student's own figure
from one shared with other runs (CodeCarbon in process mode counts every thread's CPU time).

Each of the engine's training loops makes a Training and calls its step() at every optimizer step; a Watch collects
the trainings that stepped while it was open: the distinct trainings that ran during a measurement (at least the most
that ran at once). Nothing to release when a run ends or is abandoned, and a paused run, taking no step, is not
counted. Process-wide and thread-safe; kdviz.core needs nothing of kdviz.runs.
"""
from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_watches: set["Watch"] = set()
_ids = itertools.count(1)


class Watch:
    """The trainings (their ids) that took a step while the watch was open."""

    def __init__(self) -> None:
        self.stepped: set[int] = set()

    @property
    def count(self) -> int:
        return len(self.stepped)


class Training:
    """One training loop: step() tells every open Watch that it trained meanwhile."""

    def __init__(self) -> None:
        self.id = next(_ids)

    def step(self) -> None:
        if _watches:  # no lock when nobody watches: the common case costs one truthiness test a step
            with _lock:
                for watch in _watches:
                    watch.stepped.add(self.id)


@contextmanager
def watch() -> Iterator[Watch]:
    """Open a Watch for the duration of the block (an energy measurement)."""
    opened = Watch()
    with _lock:
        _watches.add(opened)
    try:
        yield opened
    finally:
        with _lock:
            _watches.discard(opened)
