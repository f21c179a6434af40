"""A run's life in the run manager, every change of its state under the manager's one lock: queued (in the queue,
nobody drives it), running (exactly one thread holds run.driver, the claim to step its stream), paused (its stream
waits in memory, nobody drives it; any worker continues it, and the reaper stops it if nobody resumes it in time) or
ended (out of memory, for good). Only two moves claim a run, both under the lock: a worker taking it from the queue,
and a cancel stopping an idle one; a Resume after a cancel is refused, so a stopping run is never driven twice
(tests/test_run_lifecycle.py races them)."""
from __future__ import annotations

import threading
import time

from kdviz.runs.queue import QueueFull
from kdviz.runs.run import Run, stop_clock

REAP_INTERVAL_S = 1.0


class Lifecycle:
    """The run manager's lifecycle (a mixin of kdviz.runs.manager.RunManager). The state it shares, all guarded by
    self._lock: self._runs (live runs by id), self._queue (waiting ids), self._wakeup (a Condition on the lock),
    self._closing; and self.settings, self.max_paused, self.executor, self._slots (training slots). It calls the
    manager's self._mine (the owner check, kdviz.runs.owners) and self._fair_order (kdviz.runs.queue), and the
    writing of kdviz.runs.persistence."""

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
                    stop_clock(run)
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
                stop_clock(run)
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
            stop_clock(run)
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


def _one_phase(pairs):
    """The events of the next phase of an executor's (phase, event) pairs: up to and including its Finished."""
    from kdviz.core.engine import Finished

    for _, event in pairs:
        yield event
        if isinstance(event, Finished):
            return


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
