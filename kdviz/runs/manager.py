"""The run manager: one server's distillation runs, queued fairly, within a budget, controlled only by their owner.

Who may do what: every mutating call takes the caller's identity (a secret the browser keeps, never in a link) and
refuses anyone else's run with NotYours. The manager stores only a hash of the identity, so the run folders on disk
do not hold anyone's key either.

Memory stays bounded however long the server lives: live runs (queued, running, paused) are in memory with a
bounded event log (kdviz.runs.log); finished runs are read from disk on demand, through small caches.

This file is the manager's public calls; its parts are a file each in kdviz.runs: run (a run in memory), owners (who
may do what), queue (the fair order and the caps), lifecycle (queued, running, paused, ended: every change under the
manager's one lock), persistence (the run's folder as it goes) and finished (the caches of finished runs).
"""
from __future__ import annotations

import dataclasses
import threading
import time

from kdviz.core.identity import owner_key
from kdviz.runs import stopping
from kdviz.runs.finished import FinishedRuns
from kdviz.runs.lifecycle import Lifecycle
from kdviz.runs.owners import NotYours, check_mine, owns
from kdviz.runs.persistence import Persistence
from kdviz.runs.queue import QueueFull, check_room, fair_order
from kdviz.runs.run import Run

__all__ = ["NotYours", "QueueFull", "Run", "RunManager"]  # what the pages, the CLI and the tests import from here


class RunManager(Lifecycle, Persistence, FinishedRuns):
    """Process-wide: queued runs served by a bounded pool of worker threads, persisted under runs/.

    Each run trains (or loads) its teacher, then distils. The queue is fair: the next run is the oldest of the owner
    with the fewest runs ahead of it (and running), so one user's sweep does not stall everyone else. A paused run
    gives its worker back (its generator waits in memory; any worker continues it) and is stopped, keeping what it
    measured, if nobody resumes it within the server's time-out. A restart marks runs that were live as interrupted.

    One lock (self._lock) guards every change of a run's state, so cancel, pause, resume, delete and the time-out can
    race freely (kdviz.runs.lifecycle says how).

    settings: kdviz.runs.settings.ServerSettings (default: this server's, from the environment and server.toml);
    keyword overrides replace single fields (tests: workers=2, max_live_per_browser=2, budget=UNLIMITED, ...).
    """

    def __init__(self, store=None, settings=None, max_paused: int | None = None, executor=None, **overrides):
        from kdviz.runs.executors import make_executor
        from kdviz.runs.settings import server_settings
        from kdviz.runs.store import RunStore

        self.store = store or RunStore()
        self.settings = dataclasses.replace(settings or server_settings(), **overrides)
        self.executor = executor if executor is not None else make_executor(self.settings)
        if max_paused is not None:
            self.settings = dataclasses.replace(self.settings, max_paused=max_paused)
        self.max_paused = self.settings.max_paused
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: list[str] = []
        self._runs: dict[str, Run] = {}  # live runs only
        self._seq = 0
        self._init_caches()  # of finished runs (kdviz.runs.finished)
        self._closing = False
        self.store.mark_interrupted()
        stopping.register(self)  # at exit, live runs end interrupted and no worker is left inside torch
        from kdviz.runs import tasks

        # one training slot per worker, shared with the background tasks (teachers): never more trainings at once
        self._slots = threading.BoundedSemaphore(max(1, self.settings.workers))
        tasks.share_workers(self._slots)
        self._threads = [threading.Thread(target=self._work, name=f"kdviz-worker-{i}", daemon=True)
                         for i in range(max(1, self.settings.workers))]
        self._threads.append(threading.Thread(target=self._reap, name="kdviz-reaper", daemon=True))
        if getattr(self.executor, "name", "") == "ray":  # at once: pickling a Ray task walks sys.modules, which the
            _warm_up_costs()  # warm-up's imports change ("dictionary changed size during iteration", seen in a test)
        else:
            self._threads.append(threading.Thread(target=_warm_up_costs, name="kdviz-warm-up", daemon=True))
        for thread in self._threads:
            thread.start()

    # -- who may do what (kdviz.runs.owners) --
    @staticmethod
    def owns(run: Run | None, caller: str | None) -> bool:
        """Whether caller (an identity) controls this run."""
        return owns(run, caller)

    def _mine(self, run_id: str, caller: str, doing: str) -> Run | None:
        return check_mine(self.get(run_id), run_id, caller, doing)

    # -- asking for runs --
    def check(self, config, teacher_cached: bool | None = None):
        """The config's cost if it is valid and within this server's budget; else ValueError / OverBudget naming
        the problem (what the form shows before anything is queued)."""
        from kdviz import experiments
        from kdviz.core.budget import check_budget
        from kdviz.core.engine import check_config
        from kdviz.runs.disk import check_fits

        if teacher_cached is None and not getattr(self.executor, "shares_teacher_cache", True):
            teacher_cached = False  # a Ray node elsewhere has its own cache: it may have to train the teacher
        if experiments.name_of(config):  # an experiment: each of its trainings, and their sum
            cost = experiments.check_budget(config, self.settings.budget, teacher_cached)
        else:
            check_config(config)
            cost = check_budget(config, self.settings.budget, teacher_cached)
        check_fits(cost, self.settings)  # a run the disk quota could never hold
        return cost

    def submit(self, config, caller: str, tags: dict | None = None, address: str | None = None) -> str:
        return self.submit_many([(config, tags)], caller, address)[0]

    def submit_many(self, items, caller: str, address: str | None = None) -> list[str]:
        """Queue several runs (config, tags) at once, or none: a sweep is accepted or refused whole."""
        from kdviz import experiments
        from kdviz.runs.store import new_run_id

        items, disk = list(items), 0
        for index, (config, _) in enumerate(items):
            try:
                disk += getattr(self.check(config), "disk_bytes", 0)
            except ValueError as error:
                if len(items) > 1:  # say which run of the sweep, keep the error's kind and details
                    error.args = (f"run {index + 1} of {len(items)}: {error}",)
                raise
        key, settings, n = owner_key(caller), self.settings, len(items)
        with self._lock:
            if self._closing:
                raise QueueFull("the server is shutting down; try again in a moment")
            check_room(settings, len(self._queue), self._runs.values(), key, address, n)
            self._make_room(key, disk)
            ids = []
            for config, tags in items:
                record = experiments.to_record(config) if experiments.name_of(config) else dataclasses.asdict(config)
                run = Run(new_run_id(), record, key, time.time(), config_object=config)
                run.tags, run.address = dict(tags or {}), address
                run.disk_bytes = disk // n
                self._seq += 1
                run.seq = self._seq
                self._write(run, lambda run=run: self.store.create(run.id, self._record(run)))
                self._runs[run.id] = run
                self._queue.append(run.id)
                ids.append(run.id)
            self._wakeup.notify(len(ids))
        return ids

    def cancel(self, run_id: str, caller: str) -> None:
        run = self._mine(run_id, caller, "stop")
        if run is not None:
            self._cancel(run, "stopped; what it measured is kept")

    def delete(self, run_id: str, caller: str) -> None:
        """Delete a run and its folder; a live run is stopped first, and nothing it does later brings it back."""
        run = self._mine(run_id, caller, "delete")
        if run is None:
            return
        with run.write_lock:
            run.deleted = True
            self.store.delete(run_id)
        self._cancel(run, "deleted")  # a live run stops at its next step; it writes nothing more
        with self._lock:
            self._runs.pop(run_id, None)
            self._forget(run_id)

    def _make_room(self, owner: str, need: int) -> None:
        """Remove what the disk quota says must go for `need` more bytes of owner's (kdviz.runs.disk), finished runs
        only, each with a notice to its browser; DiskFull (removing nothing) when no room can be made. Lock held."""
        from kdviz.core.budget import format_bytes
        from kdviz.runs.disk import plan_room

        plan = plan_room(self.store, self.settings, owner, need, list(self._runs.values()))
        for row in plan.runs:
            self.store.delete(row.id)
            self._forget(row.id)
            self.store.index.add_notice(row.owner, row.id, row.record.get("config", {}),
                                        f"removed to make room on this server's disk ({format_bytes(row.bytes)})")
        for path in plan.teachers:
            path.unlink(missing_ok=True)

    def removed_runs(self, caller: str | None) -> list[dict]:
        """The caller's runs the disk quota removed, newest first: {run_id, removed_at, config, reason}."""
        return self.store.index.notices(owner_key(caller)) if caller else []

    def dismiss_removed(self, caller: str) -> None:
        if caller:
            self.store.index.dismiss_notices(owner_key(caller))

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every live run (they end interrupted, keeping what they measured) and wait (up to timeout) until no
        worker is inside a run. Called at exit too (kdviz.runs.stopping)."""
        with self._lock:
            self._closing = True
            live = list(self._runs.values())
            self._wakeup.notify_all()  # idle workers leave
        for run in live:
            self._cancel(run, "the server stopped during this run; what it measured is kept", final="interrupted")
        deadline = time.monotonic() + timeout
        while any(run.live or run.driver is not None for run in live) and time.monotonic() < deadline:
            time.sleep(0.02)

    # -- reading --
    def queue_position(self, run_id: str) -> int | None:
        """1 for the next run to start; None when the run is not waiting."""
        with self._lock:
            order = self._fair_order()
        return order.index(run_id) + 1 if run_id in order else None

    def get(self, run_id: str) -> Run | None:
        """A live run from memory, or a past one from disk (None when it does not exist)."""
        from kdviz.core.checkpoints import is_valid_run_id

        if not is_valid_run_id(run_id):
            return None
        with self._lock:
            if run_id in self._runs:
                return self._runs[run_id]
        return self._load(run_id)  # a deleted run's folder is gone: None

    def list_runs(self, caller: str | None = None) -> list[Run]:
        """Every run (or the caller's), newest first, from the run index: a browser's list costs its own runs (a row
        and a stat each), not the server's; reads no event logs. The folders themselves if the index is unusable."""
        if caller is not None and not caller:
            return []
        rows = self.store.rows(owner=owner_key(caller) if caller else None)
        return self._runs_of(rows, lambda run: caller is None or self.owns(run, caller))

    def runs_tagged(self, name: str, value) -> list[Run]:
        return self._runs_of(self.store.rows(tag=(name, value)), lambda run: run.tags.get(name) == value)

    def _runs_of(self, rows, wanted) -> list[Run]:
        """The runs of index rows (None: of every folder), live ones from memory; plus live runs in memory that are
        wanted but have no row (a run whose folder cannot be written)."""
        from kdviz.runs.store import LIVE_STATES

        with self._lock:
            live = {run_id: run for run_id, run in self._runs.items() if not run.deleted}
        if rows is None:
            runs = [live.pop(run_id, None) or self._load(run_id) for run_id in self.store.run_ids()]
        else:
            runs = [live.pop(row.id, None) or self._load(row.id, None if row.state in LIVE_STATES else row)
                    for row in rows]
        runs = [run for run in runs + list(live.values()) if run is not None and wanted(run)]
        return sorted(runs, key=lambda run: run.created, reverse=True)

    def _fair_order(self) -> list[str]:
        """The queue in the order runs will start (call with the lock held; kdviz.runs.queue)."""
        return fair_order(self._queue, self._runs)


def _warm_up_costs() -> None:
    """The first FLOP count imports torch's compiler stack (~3 s): do it now, not in the first form's rerun."""
    from kdviz.core.budget import model_cost
    from kdviz.core.models import ModelSpec

    model_cost(ModelSpec("mlp", 1, 1), (1,), 2)

