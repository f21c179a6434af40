"""One run service for a hall spread over several app servers (KDVIZ_RUN_SERVICE=ray): every run is queued, driven
and recorded by one RunManager kept in a named, detached Ray actor, and each replica reads runs from the shared run
store (KDVIZ_HOME/runs) as they are written.

Who drives a run: the actor, never a replica. Its RunManager is the embedded one (the same queue, fairness, caps,
budget, pause time-out and event log), with the server's executor inside it (Ray tasks, owned by the actor). So:
- a run started through replica A is the same run for replica B: B reads its config, status and events from the
  shared store, following a live run's log by reading only the lines appended since its last look;
- control reaches the run from any replica: B's cancel / pause / resume / delete is a call to the actor, which checks
  the caller's identity as the embedded manager does (a hash of the identity cookie, the same on every replica) and
  raises the same exceptions (NotYours, QueueFull, ValueError) with the same messages;
- killing a replica loses no run: the actor and the tasks it owns outlive it (Ray ends a dead driver's tasks, which
  is why no replica may own a run's task), and the queue, the per-browser caps and the fair order are the hall's;
- only the actor's creation marks runs left live by an earlier service as interrupted: a replica that starts never
  does (it would mark its neighbours' runs), and get_if_exists makes the actor exist once per hall.

The actor is as mortal as the Ray cluster (as the presentation hub, kdviz.present.remote, is): when the hall's Ray
stops, its live runs are marked interrupted by the next hall's service, keeping what they measured. The store must be
one folder for the actor and every replica (one machine, or a shared filesystem across machines).
"""
from __future__ import annotations

import threading
import time

from kdviz.runs.manager import Run, RunManager

ACTOR_NAME = "kdviz-runs"
SERVICE_VARIABLE = "KDVIZ_RUN_SERVICE"
SERVICE_CONCURRENCY = 16  # the actor's threads: a slow call (a sweep's checks) never holds up a hall's Stop buttons
# The embedded manager's calls that change something: each is one round trip to the actor.
FORWARDED = ("submit_many", "cancel", "pause", "resume_run", "delete", "queue_position")


def make_run_manager(**overrides):
    """This server's run manager: the embedded one (KDVIZ_RUN_SERVICE unset or "process": runs in this process) or
    the hall's shared service ("ray"). ValueError names a bad value."""
    import os

    kind = os.environ.get(SERVICE_VARIABLE, "").strip().lower() or "process"
    if kind == "process":
        return RunManager(**overrides)
    if kind == "ray":
        return SharedRuns(**overrides)
    raise ValueError(f"{SERVICE_VARIABLE} must be process or ray, got {kind!r}")


class FollowedRun(Run):
    """A live run that another process drives, read from the shared store: its status when it changes, and its
    events by the lines appended to events.jsonl since the last read (the log stays bounded, as a live run's)."""

    def __init__(self, store, run_id: str, record: dict):
        super().__init__(run_id, record.get("config", {}), record.get("owner", ""), record.get("created", 0.0))
        self.tags = record.get("tags", {})
        self._store, self._offset, self._follow_lock = store, 0, threading.Lock()
        self.stamp: int | None = None

    def update(self, status: dict, stamp: int | None) -> None:
        """Take the status the driver last wrote (state, message, times); a running run's clock runs on from it."""
        self.stamp = stamp
        self.state, self.message = status.get("state", "interrupted"), status.get("message", "")
        self.summary = status.get("summary")
        self.started_at, self.finished_at = status.get("started_at"), status.get("finished_at")
        self.paused_at, self.pause_deadline = status.get("paused_at"), status.get("pause_deadline")
        self.active_seconds = status.get("active_seconds") or 0.0
        written = status.get("updated")
        self.resumed_at = (time.monotonic() - max(0.0, time.time() - written)
                           if self.state == "running" and written else None)

    def catch_up(self) -> None:
        with self._follow_lock:
            events, offset = self._store.read_new_events(self.id, self._offset)
            if offset < self._offset:  # the log was rewritten: start again
                self.log = type(self.log)()
            self._offset = offset
            self.log.extend(events)

    @property
    def events(self) -> list[dict]:
        self.catch_up()
        return self.log.records()

    @property
    def events_version(self) -> int:
        self.catch_up()
        return self.log.version


class SharedRuns(RunManager):
    """A replica's run manager in a hall: the embedded manager's reading (get, list_runs, runs_tagged, owns) on the
    shared store, live runs followed as they are written; every change (submit, cancel, pause, resume, delete) and the
    queue position forwarded to the hall's service. No threads, no runs of its own: stopping a replica stops nothing.

    service: what the changes go to (default: the hall's actor on the Ray cluster of the server's settings; tests
    pass an in-process RunManager on the same store). ray_init: more of ray.init's arguments."""

    def __init__(self, store=None, settings=None, service=None, ray_init: dict | None = None, **overrides):
        import dataclasses

        from kdviz.runs.settings import server_settings
        from kdviz.runs.store import RunStore

        self.store = store or RunStore()
        self.settings = dataclasses.replace(settings or server_settings(), **overrides)
        self.max_paused = 0
        self._lock = threading.Lock()
        self._queue, self._runs, self._closing = [], {}, False  # the reading code's view: nothing live in here
        self._init_caches()
        self._following: dict[str, FollowedRun] = {}
        self.service = service if service is not None else RemoteService(self.store, self.settings, **(ray_init or {}))
        self.executor = _Described(self.service)

    # -- changes: the service's, whoever asks through whichever replica --
    def submit_many(self, items, caller: str, address: str | None = None) -> list[str]:
        for index, (config, _) in enumerate(items := list(items)):  # the budget's message without a round trip
            try:
                self.check(config)
            except ValueError as error:
                if len(items) > 1:
                    error.args = (f"run {index + 1} of {len(items)}: {error}",)
                raise
        return self.service.submit_many(items, caller, address)

    def cancel(self, run_id: str, caller: str) -> None:
        self.service.cancel(run_id, caller)

    def pause(self, run_id: str, caller: str) -> None:
        self.service.pause(run_id, caller)

    def resume_run(self, run_id: str, caller: str) -> None:
        self.service.resume_run(run_id, caller)

    def delete(self, run_id: str, caller: str) -> None:
        self.service.delete(run_id, caller)
        with self._lock:
            self._following.pop(run_id, None)
            self._finished.pop(run_id, None)
            self._records.pop(run_id, None)

    def queue_position(self, run_id: str) -> int | None:
        return self.service.queue_position(run_id)

    def shutdown(self, timeout: float = 30.0) -> None:
        """A replica stops: the hall's runs go on (the service drives them)."""

    # -- reading: live runs followed in the shared store --
    def _load(self, run_id: str, row=None) -> Run | None:
        if row is not None:  # finished, says the run index: no live run to follow, no folder to open
            with self._lock:
                self._following.pop(run_id, None)
            return super()._load(run_id, row)
        stamp = self.store.status_stamp(run_id)
        with self._lock:
            followed = self._following.get(run_id)
        if followed is not None and followed.stamp == stamp:
            return followed
        from kdviz.runs.store import LIVE_STATES

        status = self.store.read_json(run_id, "status.json")
        record = self.store.read_json(run_id, "config.json")
        if record is None or status is None or status.get("state") not in LIVE_STATES:
            with self._lock:
                self._following.pop(run_id, None)
            return super()._load(run_id) if record is not None else None  # finished: cached by its status
        if followed is None:
            followed = FollowedRun(self.store, run_id, record)
        followed.update(status, stamp)
        with self._lock:
            self._following[run_id] = followed
        return followed


class RemoteService:
    """The hall's run service as method calls: each a round trip to the named actor (made on first use). An error
    raised in the actor is raised here as itself (its type and message, not Ray's wrapper)."""

    def __init__(self, store, settings, **init_kwargs):
        from kdviz.core.cluster import connect

        self._ray = connect(settings.ray_address or None, **init_kwargs)
        self._args = (str(store.root), settings)
        self._actor = self._find()
        home = self._call("store_root")
        if home != str(store.root):
            raise ValueError(f"this server's runs folder ({store.root}) is not the hall's ({home}): every replica "
                             "of a hall needs the same KDVIZ_HOME")

    def _find(self):
        return _service_class(self._ray).options(
            name=ACTOR_NAME, lifetime="detached", get_if_exists=True, num_cpus=0, max_restarts=0,
            max_concurrency=SERVICE_CONCURRENCY).remote(*self._args)

    def _call(self, name: str, *args):
        from ray.exceptions import RayActorError, RayTaskError

        for attempt in (1, 2):
            try:
                return self._ray.get(getattr(self._actor, name).remote(*args))
            except RayTaskError as error:
                cause = getattr(error, "cause", None)
                raise (cause if isinstance(cause, Exception) else error) from None
            except RayActorError:
                if attempt == 2:
                    raise
                self._actor = self._find()  # the service died (its Ray restarted): a new one marks its runs

    def __getattr__(self, name: str):
        if name not in (*FORWARDED, "describe"):
            raise AttributeError(name)
        return lambda *args: self._call(name, *args)

    def shutdown(self) -> None:
        """Kill the hall's service (tests; an operator ends a hall by stopping its Ray cluster)."""
        self._ray.kill(self._actor)


class _Described:
    """What the home page says runs execute on."""

    def __init__(self, service):
        self._service = service

    def describe(self) -> str:
        return self._service.describe()


def _service_class(ray):
    @ray.remote
    class RunService:
        """The hall's RunManager in a Ray actor: runs, queue and control in one place that outlives any replica."""

        def __init__(self, root: str, settings):
            import os
            from pathlib import Path

            from kdviz.runs.store import RunStore

            os.environ["KDVIZ_HOME"] = str(Path(root).parent)  # its teachers are cached beside the runs
            self.root = root
            self.manager = RunManager(store=RunStore(Path(root)), settings=settings)  # marks a dead service's runs

        def store_root(self) -> str:
            return self.root

        def describe(self) -> str:
            return f"the hall's run service (a Ray actor), with {self.manager.executor.describe()}"

        def submit_many(self, items, caller, address=None):
            return self.manager.submit_many(items, caller, address)

        def cancel(self, run_id, caller):
            return self.manager.cancel(run_id, caller)

        def pause(self, run_id, caller):
            return self.manager.pause(run_id, caller)

        def resume_run(self, run_id, caller):
            return self.manager.resume_run(run_id, caller)

        def delete(self, run_id, caller):
            return self.manager.delete(run_id, caller)

        def queue_position(self, run_id):
            return self.manager.queue_position(run_id)

    return RunService
