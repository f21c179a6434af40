"""The run manager: one server's distillation runs, queued fairly, within a budget, controlled only by their owner.

Who may do what: every mutating call takes the caller's identity (a secret the browser keeps, never in a link) and
refuses anyone else's run with NotYours. The manager stores only a hash of the identity, so the run folders on disk
do not hold anyone's key either.

Memory stays bounded however long the server lives: live runs (queued, running, paused) are in memory with a
bounded event log (kdviz.runs.log); finished runs are read from disk on demand, through small caches.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time

from kdviz.core.identity import owner_key  # noqa: F401 (re-exported: runs record it)
from kdviz.runs import stopping
from kdviz.runs.log import EventLog

FINISHED_RUNS_CACHED = 1024  # finished runs read from disk kept as objects (config, status; a few KB each)
FINISHED_LOGS_CACHED = 8  # of those, the ones whose event logs stay loaded (viewers of the same past runs)
RECORDS_CACHED = 1024  # config.json records of runs on disk (about 3 KB each: a few MB at most)
REAP_INTERVAL_S = 1.0


class QueueFull(ValueError):
    """More runs were asked for than the server accepts; the message says how many are allowed."""


class NotYours(PermissionError):
    """A caller tried to change someone else's run; the message says so (the run is theirs to view only)."""


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


class RunManager:
    """Process-wide: queued runs served by a bounded pool of worker threads, persisted under runs/.

    Each run trains (or loads) its teacher, then distils. The queue is fair: the next run is the oldest of the owner
    with the fewest runs ahead of it (and running), so one user's sweep does not stall everyone else. A paused run
    gives its worker back (its generator waits in memory; any worker continues it) and is stopped, keeping what it
    measured, if nobody resumes it within the server's time-out. A restart marks runs that were live as interrupted.

    One lock (self._lock) guards every change of a run's state, so cancel, pause, resume, delete and the time-out can
    race freely: a run is queued (in the queue, nobody drives it), running (exactly one thread holds run.driver, the
    claim to step its stream), paused (its stream waits in memory, nobody drives it) or ended (out of memory, for
    good). Only two moves claim a run, both under the lock: a worker taking it from the queue, and a cancel stopping
    an idle one; a Resume after a cancel is refused, so a stopping run is never driven twice.

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
        self._records: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self._finished: collections.OrderedDict[str, tuple[int, Run]] = collections.OrderedDict()
        self._loaded_logs: collections.OrderedDict[str, Run] = collections.OrderedDict()
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

    # -- who may do what --
    @staticmethod
    def owns(run: Run | None, caller: str | None) -> bool:
        """Whether caller (an identity) controls this run."""
        return run is not None and bool(caller) and run.owner == owner_key(caller)

    def _mine(self, run_id: str, caller: str, doing: str) -> Run | None:
        run = self.get(run_id)
        if run is not None and not self.owns(run, caller):
            raise NotYours(f"run {run_id} belongs to someone else: you can view it but not {doing} it")
        return run

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
            if len(self._queue) + n > settings.max_queued:
                raise QueueFull(f"the server has {len(self._queue)} runs waiting and takes at most "
                                f"{settings.max_queued}; try again when some finish")
            mine = sum(run.owner == key for run in self._runs.values())
            if mine + n > settings.max_live_per_browser:
                raise QueueFull(_cap_message("you have", mine, n, settings.max_live_per_browser, "per browser"))
            if address:
                here = sum(run.address == address for run in self._runs.values())
                if here + n > settings.max_live_per_address:
                    raise QueueFull(_cap_message("your network address has", here, n,
                                                 settings.max_live_per_address, "per address"))
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

    def pause(self, run_id: str, caller: str) -> None:
        """Ask a running run to pause at its next event once past its teacher (a teacher trains to the end)."""
        run = self._mine(run_id, caller, "pause")
        with self._lock:
            if run is None or run.state != "running" or run.id not in self._runs:
                return
            paused = sum(other.state == "paused" for other in self._runs.values())
            if paused >= self.max_paused:
                raise QueueFull(f"this server already holds {paused} paused runs (at most {self.max_paused}); "
                                "stop or resume one first")
            _check_pause_memory(self.settings, paused + 1)
            run.pause_requested = True

    def resume_run(self, run_id: str, caller: str) -> None:
        """A paused run goes back in the queue (at its original place) and continues exactly where it stopped."""
        run = self._mine(run_id, caller, "resume")
        with self._lock:
            if run is None or run.id not in self._runs:
                return
            run.pause_requested = False
            if run.state != "paused" or run.cancel_requested.is_set() or run.driver is not None:
                return  # running, waiting, or being stopped (the time-out came first): nothing to resume
            run.state, run.paused_at, run.pause_deadline = "queued", None, None
            self._queue.append(run.id)
            self._wakeup.notify()
        self._save_status(run)

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

    def _forget(self, run_id: str) -> None:
        """Drop a deleted run from the caches of finished runs (call with the lock held)."""
        self._finished.pop(run_id, None)
        self._loaded_logs.pop(run_id, None)
        self._records.pop(run_id, None)

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

    def _load(self, run_id: str, row=None) -> Run | None:
        """A finished run from disk (or from its index row, when the row is as new as the status file); cached while
        its status file is unchanged (records and logs in bounded LRUs)."""
        stamp = self.store.status_stamp(run_id)
        with self._lock:
            cached = self._finished.get(run_id)
            if cached is not None and cached[0] == stamp:
                self._finished.move_to_end(run_id)
                return cached[1]
            record = self._records.get(run_id)
        if row is not None and stamp is not None and row.status_ns == stamp:
            record, status = row.record, row.status
        else:
            if row is not None and stamp is not None:  # a row behind its folder (a crash between the two): mend it
                self.store.reindex(run_id)
            if record is None:
                record = self.store.read_json(run_id, "config.json")
                if record is None:
                    return None
            status = self.store.read_json(run_id, "status.json") or {"state": "interrupted"}
        run = Run(run_id, record.get("config", {}), record.get("owner", ""), record.get("created", 0.0),
                  status.get("state", "interrupted"))
        run._log_loader = run._reload = lambda: self._read_log(run)
        run.message, run.summary = status.get("message", ""), status.get("summary")
        run.tags = record.get("tags", {})
        run.started_at, run.finished_at = status.get("started_at"), status.get("finished_at")
        run.active_seconds = status.get("active_seconds") or 0.0
        with self._lock:
            self._records[run_id] = record
            self._records.move_to_end(run_id)
            while len(self._records) > RECORDS_CACHED:
                self._records.popitem(last=False)
            if stamp is not None and not run.live:  # a live run from disk belongs to another process: no cache
                self._finished[run_id] = (stamp, run)
                while len(self._finished) > FINISHED_RUNS_CACHED:
                    self._finished.popitem(last=False)[1][1].unload()
        return run

    def _read_log(self, run: Run) -> EventLog:
        """A finished run's log from disk (bounded like a live one); only the last few read stay in memory."""
        log = EventLog()
        log.extend(self.store.iter_events(run.id))
        with self._lock:
            self._loaded_logs[run.id] = run
            self._loaded_logs.move_to_end(run.id)
            evicted = self._loaded_logs.popitem(last=False)[1] if len(self._loaded_logs) > FINISHED_LOGS_CACHED \
                else None
        if evicted is not None and evicted is not run:
            evicted.unload()
        return log

    # -- the queue --
    def _fair_order(self) -> list[str]:
        """The queue in the order runs will start (call with the lock held): each owner's k-th waiting run is in
        round k (+1 per run of theirs already running), oldest submission first within a round."""
        running = collections.Counter(run.owner for run in self._runs.values() if run.state == "running")
        rank: collections.Counter = collections.Counter()
        keyed = []
        for run_id in sorted(self._queue, key=lambda r: self._runs[r].seq):
            run = self._runs[run_id]
            keyed.append((rank[run.owner] + running[run.owner], run.seq, run_id))
            rank[run.owner] += 1
        return [run_id for *_, run_id in sorted(keyed)]

    def _work(self) -> None:
        """A worker: wait for a queued run and a training slot (a background teacher may hold one: kdviz.runs.tasks),
        then drive the run until it ends or pauses."""
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._wakeup.wait()
                if self._closing:
                    return
            while not self._slots.acquire(timeout=0.2):
                if self._closing:
                    return
            try:
                with self._lock:
                    if self._closing or not self._queue:  # another worker took it meanwhile
                        continue
                    run = self._runs[self._fair_order()[0]]
                    self._queue.remove(run.id)
                    run.state, run.driver = "running", object()
                self._execute(run)
            finally:
                self._slots.release()

    def _reap(self) -> None:
        """Stop paused runs nobody resumed in time (they keep what they measured)."""
        while not self._closing:
            time.sleep(REAP_INTERVAL_S)
            now = time.time()
            with self._lock:
                expired = [run for run in self._runs.values()
                           if run.state == "paused" and run.pause_deadline is not None and now >= run.pause_deadline]
            for run in expired:
                minutes = self.settings.paused_timeout_s / 60
                self._cancel(run, f"paused for more than {minutes:g} min, so the server stopped it; what it "
                                  "measured is kept", expired_at=now)

    def _cancel(self, run: Run, reason: str, expired_at: float | None = None, final: str = "cancelled") -> None:
        """Stop a run whoever holds it: a waiting run that never started ends now; a running one at its next step
        (its driver sees the flag); a paused (or resumed, waiting) one is claimed here, under the lock, and driven to
        its end in a short thread of its own. expired_at: the reaper's check, made again under the lock (a run
        resumed since the reaper looked is not stopped)."""
        with self._lock:
            if run.id not in self._runs or run.cancel_requested.is_set():
                return
            if expired_at is not None and (run.state != "paused" or run.pause_deadline is None
                                           or expired_at < run.pause_deadline):
                return
            run.cancel_requested.set()
            run.stop_reason, run.stop_state = reason, final
            waiting = run.id in self._queue
            if waiting:
                self._queue.remove(run.id)
            if run.driver is not None or not (waiting or run.state == "paused"):
                return  # its driver stops it at the next step
            run.driver, run.state = object(), "running"  # claimed: nobody else may drive (or resume) it now
            started = run.stream is not None
        if not started:
            unstarted = "stopped before it started" if final == "cancelled" and not run.deleted else reason
            self._finish(run, "cancelled", unstarted)
            with self._lock:
                run.driver = None
        else:
            threading.Thread(target=self._execute, args=(run,), name=f"kdviz-stop-{run.id}", daemon=True).start()

    # -- running --
    def _execute(self, run: Run) -> None:
        """Drive the run's stream until it ends or pauses (then this thread gives the run back and returns). The
        caller has claimed the run (run.driver, under the lock); the claim is given back here, whatever happens."""
        claim = run.driver
        try:
            if run.stream is None:
                run.started_at = time.time()
                run.stream = self._life(run)
            else:  # a paused run resumed, or stopped while paused: an executor elsewhere goes on (or stops) too
                self.executor.resume(run)
            with self._lock:
                run.state, run.resumed_at = "running", time.monotonic()
            self._save_status(run)
            for phase in run.stream:
                if run.pause_requested and phase != "teacher" and not run.cancel_requested.is_set() \
                        and self._park(run):
                    return
        except Exception as error:  # noqa: BLE001 — a run must never take the server down
            self._finish(run, "failed", _explain(error))
        finally:
            with self._lock:
                if run.driver is claim:  # not parked: this thread still held the run
                    _stop_clock(run)
                    run.driver = None

    def _park(self, run: Run) -> bool:
        """Pause between two steps: the generator stays in memory, the worker goes back to the queue. False when a
        cancel came first (the driver goes on and stops the run at its next step)."""
        self._flush(run)
        self.executor.pause(run)  # threads: nothing to do (the generator waits); Ray: the task waits too
        with self._lock:
            if run.cancel_requested.is_set():
                parked = False
            else:  # from here on another thread may resume (and drive) the run: this one touches it no more
                _stop_clock(run)
                run.pause_requested = False
                run.state, run.paused_at = "paused", time.time()
                run.pause_deadline = run.paused_at + self.settings.paused_timeout_s
                run.driver, parked = None, True
        if parked:
            self._save_status(run)  # a snapshot taken now: the run's state whoever changed it since
        else:
            self.executor.resume(run)
        return parked

    def _life(self, run: Run):
        """The run's whole life as a generator that yields its phase after each event it records: the teacher's
        events, then the distillation's or the experiment's, from the executor (threads here, or Ray tasks)."""
        from kdviz import experiments

        config, limit = run.config_object, self.settings.budget.max_seconds
        name = experiments.name_of(config)

        def should_stop() -> bool:
            if limit and run.running_seconds() > limit and not run.cancel_requested.is_set():
                run.stop_reason = (f"stopped at this server's time limit of {limit:g} s per run; what it measured "
                                   "is kept")
                run.cancel_requested.set()
            return run.cancel_requested.is_set()

        pairs = self.executor.events(run, config, should_stop)
        teacher = yield from self._phase(run, "teacher", _one_phase(pairs))
        if teacher is None:
            return
        main = "experiment" if name else "distill"
        finished = yield from self._phase(run, main, _one_phase(pairs))
        if finished is None:
            return
        if not name:  # an experiment's results are its summary; a distillation also keeps its students' weights
            self._save_students(run, finished)
        self._finish(run, "completed", "", finished)

    def _phase(self, run: Run, phase: str, events):
        """Record one event stream, yielding after each event; return its Finished event if it completed, else
        finish the run and return None."""
        from kdviz.core.engine import Finished, event_to_dict

        finished = None
        for event in events:
            record = {"phase": phase, "t": round(time.time(), 3), **event_to_dict(event)}
            run.log.append(record)
            run.pending.append(record)
            if isinstance(event, Finished):
                finished = event
            if len(run.pending) >= 32 or record["event"] != "StepLosses":  # batch the per-step lines
                self._flush(run)
            yield phase
        self._flush(run)
        if finished is not None and finished.status == "completed":
            return finished
        diverged = next((e["message"] for e in run.events if e["event"] == "Diverged"), "")
        status = finished.status if finished else "failed"
        message = diverged or (run.stop_reason if status == "cancelled" and run.stop_reason else
                               f"stopped during the {phase} phase; what it measured is kept")
        self._finish(run, status, message, finished)
        return None

    # -- writing (never into a deleted run's folder) --
    def _write(self, run: Run, action) -> bool:
        with run.write_lock:
            if run.deleted:
                return False
            try:
                action()
                return True
            except OSError:
                return False

    def _flush(self, run: Run) -> None:
        records, run.pending = run.pending, []
        if records and not self._write(run, lambda: self.store.append_events(run.id, records)) and not run.deleted:
            self._rebuild(run)  # the folder was removed under us: rebuild it from memory

    def _rebuild(self, run: Run) -> None:
        def rebuild():
            self.store.create(run.id, self._record(run))
            self.store.rewrite_events(run.id, list(run.events))
            self.store.write_status(run.id, run.status_record())

        if not self._write(run, rebuild) and not run.deleted:
            run.message = "the run's folder cannot be written; its data is kept in memory only"

    @staticmethod
    def _record(run: Run) -> dict:
        return {"config": run.config, "owner": run.owner, "created": run.created, "tags": run.tags}

    def _save_status(self, run: Run) -> None:
        """Write the run's status as it is now. Threads that change a run one after the other may write out of order:
        the snapshot is numbered under the lock and an older one never replaces a newer one on disk."""
        with self._lock:
            snapshot = self._status_snapshot(run)
        self._write_status(run, *snapshot)

    @staticmethod
    def _status_snapshot(run: Run) -> tuple[dict, int]:
        """The run's status record and its number (call with the lock held)."""
        run.status_seq += 1
        return run.status_record(), run.status_seq

    def _write_status(self, run: Run, record: dict, seq: int) -> None:
        def write():
            if seq > run.status_written:
                self.store.write_status(run.id, record)
                run.status_written = seq

        self._write(run, write)

    def _save_students(self, run: Run, finished) -> None:
        from kdviz.core.checkpoints import students_bytes
        from kdviz.core.paths import atomic_write_bytes

        payload = students_bytes(run.config, finished.models)
        self._write(run, lambda: atomic_write_bytes(self.store.students_path(run.id), payload))

    def _finish(self, run: Run, state: str, message: str, finished=None) -> None:
        """The run's end: its last events and its status on disk, then it leaves memory (readers find it on disk from
        now on). A run that failed between two batches of step losses keeps them too. A run ends once: a second end
        (a failure after it finished) changes nothing."""
        self._flush(run)
        if not run.deleted and not self.store.exists(run.id):
            self._rebuild(run)
        with self._lock:  # ended, on disk and out of the live runs in one step: no reader sees it half-way
            if not run.live:
                return
            _stop_clock(run)
            if state == "cancelled":
                state = run.stop_state
            run.state, run.message, run.finished_at = state, message, time.time()
            run.paused_at = run.pause_deadline = None
            if finished is not None and state != "failed":
                run.summary = finished.summary
            self._write_status(run, *self._status_snapshot(run))
            self._runs.pop(run.id, None)
            if run.id in self._queue:
                self._queue.remove(run.id)
        run.config_object, run.stream = None, None  # free the models the generator held


def _check_pause_memory(settings, paused: int) -> None:
    """A paused run keeps its memory while the workers train others: refuse a pause that would let the worst case,
    (workers + paused) runs at the per-run memory budget, exceed the server's memory setting."""
    from kdviz.core.budget import MB, format_bytes

    peak, total = settings.peak_memory_bytes(paused), settings.server_memory_mb
    if peak is not None and total is not None and peak > total * MB:
        raise QueueFull(f"pausing would let runs hold up to {format_bytes(peak)} ({settings.workers} training and "
                        f"{paused} paused at {format_bytes(settings.budget.max_memory_bytes)} each), more than this "
                        f"server's {format_bytes(total * MB)}; stop the run instead, or resume a paused one first")


def _stop_clock(run: Run) -> None:
    """Add the time since the run last started running to its running time, once (call with the lock held)."""
    if run.resumed_at is not None:
        run.active_seconds += time.monotonic() - run.resumed_at
        run.resumed_at = None


def _one_phase(pairs):
    """The events of the next phase of an executor's (phase, event) pairs: up to and including its Finished."""
    from kdviz.core.engine import Finished

    for _, event in pairs:
        yield event
        if isinstance(event, Finished):
            return


def _warm_up_costs() -> None:
    """The first FLOP count imports torch's compiler stack (~3 s): do it now, not in the first form's rerun."""
    from kdviz.core.budget import model_cost
    from kdviz.core.models import ModelSpec

    model_cost(ModelSpec("mlp", 1, 1), (1,), 2)


def _cap_message(who: str, current: int, asked: int, limit: int, scope: str) -> str:
    wanted = f"{asked} more" if asked > 1 else "another"
    return (f"{who} {current} runs waiting or running and asked for {wanted}; this server allows at most {limit} "
            f"{scope} at once. Stop one, or wait until some finish.")


def _explain(error: Exception) -> str:
    """One sentence for the user about a run that failed."""
    name = type(error).__name__
    if type(error).__module__.startswith("ray.") and ("Worker" in name or "NodeDied" in name or
                                                      "Crashed" in str(error) or "died" in str(error)):
        return (f"the Ray worker running it stopped ({name}): its node may have run out of memory or left the "
                "cluster; what it measured is kept")
    if "OutOfMemory" in name:
        return "the GPU ran out of memory: lower the batch size, use a smaller model, or run on the CPU"
    if isinstance(error, ValueError):
        return str(error)
    return f"the run failed ({name}: {error})"
