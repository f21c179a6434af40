"""A live run as its browsers draw it: one JSON payload per version of the run's log (progress and the loss and
accuracy figures, from the same chart builders as the static page), built once for every viewer and served by
kdviz.routes, so that a hall watching one run costs the server a dictionary lookup per poll instead of a script run.

- Built at most once per MIN_BUILD_S per (run, lecture mode, split), however many browsers poll and however often
  the run logs: a run logging 20 batches a second is redrawn once a second for everyone, for the price of one
  build (~20 ms for a lecture run's 1,500 kept records: the figures as plain dicts, charts.fast_figure(plain=True)).
- A poll that already has the newest version gets a few bytes ({"state", "version", "redraw"}), never the figures.
- "redraw" changes when the page around the charts must be drawn again by its script (the run was queued and
  starts, pauses, resumes, ends, or moves in the queue): the browser then reruns its fragment once.
- Bounded: at most MAX_ENTRIES payloads are kept (the least recently used leave first).
"""
from __future__ import annotations

import functools
import gzip as gzip_module
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

MIN_BUILD_S = 1.0
MAX_ENTRIES = 64
LIVE_POINTS = 500  # per loss curve while live (a chart is < 1000 px wide); the finished run's page shows 1500
ELAPSED = "{elapsed}"  # where a progress text's seconds go: the browser counts them on between payloads


@functools.cache
def shared() -> LivePayloads:
    """The process's payloads: the routes answer from them and a page mounts its live run with them."""
    return LivePayloads()


def progress_text(state: dict, elapsed: str = ELAPSED) -> str:
    """The progress bar's text of a running run (state: run_view.progress); elapsed is "12" or the ELAPSED mark."""
    if not state["total"]:
        return f"starting: loading the teacher and the data, {elapsed} s elapsed"
    eta = f", about {state['eta']:.0f} s left" if state["eta"] is not None else ""
    phase = "training the teacher (once; then cached)" if state["phase"] == "teacher" else "distilling"
    return f"{phase}: step {state['step']} of {state['total']} on {state['device']}, {elapsed} s elapsed{eta}"


def redraw_key(run, queue_position: int | None) -> str:
    """What the page around a live run's charts shows: when it changes, the browser reruns the page's fragment."""
    return f"{run.state}:{queue_position or ''}"


@dataclass
class Payload:
    version: int
    redraw: str
    built_at: float
    body: str  # the whole answer: state, version, redraw, progress, figures (JSON)
    gzipped: bytes  # the same, compressed once for every browser that accepts gzip (most of a payload's bytes)


class LivePayloads:
    """The payloads of live runs, shared by all their viewers (thread-safe: routes build them on worker threads)."""

    def __init__(self, min_build_s: float = MIN_BUILD_S, max_entries: int = MAX_ENTRIES, clock=time.monotonic):
        self.min_build_s, self.max_entries, self.clock = min_build_s, max_entries, clock
        self._entries: OrderedDict[tuple, Payload] = OrderedDict()
        self._lock = threading.Lock()
        self._building: set[tuple] = set()
        self.builds = 0  # how many payloads were built (tests and the benchmark read it)

    def payload(self, run, queue_position: int | None, lecture: bool, split: str) -> Payload:
        """The newest payload of the run, rebuilt when the run logged something and the last build is older than
        min_build_s, or at once when the page around it must change (redraw). While another thread builds it, the
        previous one is returned."""
        key, version, redraw = (run.id, bool(lecture), split), run.events_version, redraw_key(run, queue_position)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                stale = entry.redraw != redraw or (
                    entry.version != version and self.clock() - entry.built_at >= self.min_build_s)
                if not stale or key in self._building:
                    return entry
            self._building.add(key)
        try:
            entry = self._build(run, redraw, lecture, split)
        finally:
            with self._lock:
                self._building.discard(key)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            self.builds += 1
        return entry

    def answer(self, run, queue_position: int | None, lecture: bool, split: str, since: int | None,
               gzip: bool = False) -> tuple[bytes, bool]:
        """A poll's answer and whether it is gzipped: the whole payload, or only {"state", "version", "redraw"}
        when the browser has the newest version (since)."""
        entry = self.payload(run, queue_position, lecture, split)
        if since is not None and since >= entry.version and entry.redraw == redraw_key(run, queue_position):
            return json.dumps({"state": run.state, "version": entry.version, "redraw": entry.redraw}).encode(), False
        return (entry.gzipped, True) if gzip else (entry.body.encode(), False)

    def _build(self, run, redraw: str, lecture: bool, split: str) -> Payload:
        from kdviz.views import run_charts, run_view

        version, events = run.events_version, run.events  # the version first: a newer log only redraws sooner
        version = run.events_version if version < 0 else version  # a run read from disk has one once loaded
        built_at = self.clock()
        state = run_view.progress(events)
        losses, accuracies = run_view.loss_frame(events, LIVE_POINTS), run_view.accuracy_frame(events)
        if split not in run_view.SPLITS or run_view.lacks_validation(accuracies):
            split = "test" if run_view.lacks_validation(accuracies) else "validation"
        figures = {}
        if len(accuracies):  # as the static page: charts once the first evaluation (epoch 0) is in
            figures = {"loss": run_charts.loss_chart(losses, lecture, plain=True),
                       "accuracy": run_charts.accuracy_chart(accuracies, lecture, split, plain=True)}
        head = {"state": run.state, "version": version, "redraw": redraw, "elapsed_s": round(run.running_seconds(), 1),
                "progress": ({"fraction": state["fraction"], "text": progress_text(state)}
                             if run.state == "running" else None)}
        body = json.dumps({**head, "figures": {name: _finite(figure) for name, figure in figures.items()}},
                          allow_nan=False, separators=(",", ":"))
        return Payload(version, redraw, built_at, body, gzip_module.compress(body.encode(), 5))


def _finite(figure: dict) -> dict:
    """The figure with its traces' numbers as Python's (pandas columns give numpy's) and every non-finite one (a
    diverged run's losses) as null: a gap in the line, and JSON a browser can parse (JSON has no NaN)."""
    return {**figure, "data": [{**trace, **{axis: _plain(trace[axis]) for axis in ("x", "y") if axis in trace}}
                               for trace in figure["data"]]}


def _plain(values) -> list:
    array = np.asarray(values)
    if array.dtype.kind != "f":
        return array.tolist()
    finite = np.isfinite(array)
    return array.tolist() if finite.all() else [v if ok else None for v, ok in zip(array.tolist(), finite)]
