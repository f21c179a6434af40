"""A run as the manager holds it in memory: its config, state and tags, a bounded event log (the full log is on disk),
and the worker's side (its event stream, the claim of the one thread driving it)."""
from __future__ import annotations

import threading
import time

from kdviz.runs.log import EventLog


class Run:
    """A run as the app sees it: config, state, tags and its events (a bounded log; the full log is on disk)."""

    def __init__(self, run_id: str, config: dict, owner: str, created: float, state: str = "queued",
                 config_object=None, log_loader=None):
        self.id, self.config, self.owner, self.created = run_id, config, owner, created
        self.config_object = config_object  # the DistillConfig itself, for runs started by this process
        self.tags: dict = {}  # e.g. {"sweep": id, "parameter": "temperature", "value": 4.0}
        self.state = state
        self.message = ""
        self.summary: dict | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.paused_at: float | None = None
        self.pause_deadline: float | None = None  # a paused run is stopped at this time unless resumed
        self.active_seconds = 0.0  # running time so far, pauses excluded (the budget's wall-clock limit reads it)
        self.address: str | None = None  # the client address that asked for it (memory only, never on disk)
        self.disk_bytes = 0  # its estimated bytes on disk at the end: the disk quota counts them while it is live
        self.seq = 0  # submission order, for the fair queue
        self.log = EventLog()
        self._log_loader = self._reload = log_loader  # a run read from disk loads its log when someone reads it
        # the worker's side
        self.cancel_requested = threading.Event()
        self.pause_requested = False
        self.stop_reason = ""
        self.stop_state = "cancelled"  # what a stop makes of it: "interrupted" when the server stops
        self.pending: list[dict] = []  # records not yet appended to events.jsonl
        self.stream = None  # the run's generator once started: a paused run keeps it, and any worker continues it
        self.resumed_at: float | None = None
        self.driver: object | None = None  # the claim of the one thread driving the stream (under the manager's lock)
        self.deleted = False
        self.write_lock = threading.Lock()
        self.status_seq = self.status_written = 0  # status snapshots taken / the newest one on disk
        self.placement: dict | None = None  # where a Ray executor runs it: {"node", "pid"}

    @property
    def experiment(self) -> str | None:
        """The experiment this run is (kdviz.experiments), or None for a distillation run."""
        return self.config.get("experiment")

    @property
    def live(self) -> bool:
        return self.state in ("queued", "running", "paused")

    @property
    def events(self) -> list[dict]:
        """The kept events in order (per-step losses binned): what charts and progress read."""
        if self._log_loader is not None:
            self.log, self._log_loader = self._log_loader(), None
        return self.log.records()

    def unload(self) -> None:
        """Drop a finished run's loaded log from memory; it is read again from disk if someone asks."""
        if self._reload is not None:
            self.log, self._log_loader = EventLog(), self._reload

    @property
    def events_version(self) -> int:
        return -1 if self._log_loader is not None else self.log.version

    def running_seconds(self) -> float:
        extra = time.monotonic() - self.resumed_at if self.resumed_at is not None else 0.0
        return self.active_seconds + extra

    def status_record(self) -> dict:
        return {"state": self.state, "message": self.message, "summary": self.summary,
                "started_at": self.started_at, "finished_at": self.finished_at, "paused_at": self.paused_at,
                "pause_deadline": self.pause_deadline, "active_seconds": round(self.running_seconds(), 3)}


def stop_clock(run: Run) -> None:
    """Add the time since the run last started running to its running time, once (call with the lock held)."""
    if run.resumed_at is not None:
        run.active_seconds += time.monotonic() - run.resumed_at
        run.resumed_at = None

