"""A run's lifecycle under concurrent cancel, pause, resume, delete and time-out: one state, one driver, no loss."""
from __future__ import annotations

import threading
import time

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from conftest import wait_for_run, wait_until
from run_fakes import FakeExecutor
from kdviz.core.budget import UNLIMITED
from kdviz.core.engine import DistillConfig, TeacherConfig
from kdviz.core.models import ModelSpec
from kdviz.runs import lifecycle
from kdviz.runs.manager import QueueFull, Run, RunManager
from kdviz.runs.store import FINAL_STATES

TINY = DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0),
                     ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.5, epochs=2, batch_size=64, train_subset=200)


def _stepped(manager, run_id: str) -> bool:
    run = manager.get(run_id)
    return run is not None and any(e["event"] == "StepLosses" for e in run.events)


def test_the_reaper_stopping_a_paused_run_while_its_owner_resumes_it_drives_it_once(make_manager, monkeypatch):
    """The owner's Resume lands just after the reaper decided to stop the paused run, before its stopping thread
    starts (the interleaving is forced): the run must end cancelled by the time-out, driven by one thread at a time,
    its running time counted once."""
    executor = FakeExecutor(steps=100_000)
    manager = make_manager(workers=1, executor=executor, budget=UNLIMITED, paused_timeout_s=0.2)
    run_id = manager.submit(TINY, "alice")
    wait_until(lambda: _stepped(manager, run_id), 30, what="the run's first steps")

    worker_inside, release = threading.Event(), threading.Event()

    def step_hook(run, step):
        if threading.current_thread().name.startswith("kdviz-worker") and resumed.is_set():
            worker_inside.set()
            release.wait(10)  # hold the worker inside the stream while the stopping thread starts

    resumed = threading.Event()
    executor.step_hook = step_hook
    real_thread = threading.Thread

    class Interleaved(real_thread):
        def start(self):
            if self.name.startswith("kdviz-stop-"):  # the reaper's decision is made; its thread is not running yet
                manager.resume_run(run_id, "alice")
                resumed.set()
                run = manager.get(run_id)
                if run is not None and run.state == "queued":  # the Resume was taken: a worker picks the run up
                    wait_until(worker_inside.is_set, 10, what="the worker to drive the resumed run")
            super().start()

    monkeypatch.setattr(threading, "Thread", Interleaved)
    manager.pause(run_id, "alice")
    run = wait_for_run(manager, run_id, timeout=30)
    ended = (run.state, run.message)
    monkeypatch.undo()
    release.set()
    manager.shutdown()  # waits until no thread drives a run
    run = manager.get(run_id)  # read again from disk: what the run finally became

    assert (run.state, run.message) == ended, f"the run ended {ended[0]!r}, then became {run.state!r}"
    assert not executor.overlaps, "two threads were inside the run's stream at once"
    assert run.state == "cancelled" and "paused for more than" in run.message, (run.state, run.message)
    status = manager.store.read_json(run_id, "status.json")
    assert status["state"] == "cancelled" and status["active_seconds"] == round(run.active_seconds, 3)
    assert run.active_seconds <= run.finished_at - run.started_at, "running time counted twice"


class Lifecycle(RuleBasedStateMachine):
    """Owners submit runs and fire cancel, pause, resume, delete and time-outs at them from threads of their own,
    while two workers and the reaper (time-out 0.05 s) drive them; the manager's bookkeeping is checked after every
    step, and at the end every run must have ended once, as recorded on disk, or be gone."""

    runs = Bundle("runs")

    def __init__(self):
        super().__init__()
        self.executor = FakeExecutor(steps=25, step_s=0.002)
        self.manager = RunManager(executor=self.executor, workers=2, budget=UNLIMITED, paused_timeout_s=0.05,
                                  max_live_per_browser=1000, max_live_per_address=1000, max_queued=1000)
        self.submitted: dict[str, Run] = {}
        self.deleted: set[str] = set()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def _soon(self, action, *args) -> None:
        """Fire an owner's (or the reaper's) action without waiting for it: it races the workers and the others."""
        thread = threading.Thread(target=_quietly, args=(self.errors, action, *args), daemon=True)
        thread.start()
        self.threads.append(thread)

    @rule(target=runs, owner=st.sampled_from(["alice", "bob"]))
    def submit(self, owner):
        run_id = self.manager.submit(TINY, owner)
        self.submitted[run_id] = self.manager.get(run_id)
        return run_id, owner

    @rule(run=runs)
    def cancel(self, run):
        self._soon(self.manager.cancel, *run)

    @rule(run=runs)
    def pause(self, run):
        self._soon(self.manager.pause, *run)

    @rule(run=runs)
    def resume(self, run):
        self._soon(self.manager.resume_run, *run)

    @rule(run=runs)
    def delete(self, run):
        self.deleted.add(run[0])
        self._soon(self.manager.delete, *run)

    @rule(run=runs)
    def time_out(self, run):
        """The reaper's own move on this run, now (as if its deadline had just passed while it was paused)."""
        live = self.submitted[run[0]]
        self._soon(self.manager._cancel, live, "paused for too long", time.time() + 3600)

    @rule(seconds=st.sampled_from([0.0, 0.005, 0.02]))
    def wait(self, seconds):
        time.sleep(seconds)

    @invariant()
    def one_state_one_driver(self):
        manager = self.manager
        with manager._lock:
            assert len(set(manager._queue)) == len(manager._queue), "a run queued twice"
            for run_id, run in manager._runs.items():
                assert run.live, f"{run_id} ended ({run.state}) but is still among the live runs"
                if run_id in manager._queue:
                    assert run.state == "queued" and run.driver is None, (run.state, run.driver)
                if run.state == "paused":
                    assert run.driver is None and run_id not in manager._queue
                if run.state == "running":
                    assert run.driver is not None and run_id not in manager._queue
        assert not self.executor.overlaps, f"driven by two threads at once: {self.executor.overlaps}"

    def teardown(self):
        for thread in self.threads:
            thread.join(10)
        manager = self.manager
        wait_until(lambda: not manager._runs, 30, what=lambda: f"every run to end: {list(manager._runs.values())}")
        # a run leaves the live runs (_finish) a moment before its driver gives the claim back (_execute's finally)
        wait_until(lambda: all(run.driver is None for run in self.submitted.values()), 10,
                   what=lambda: f"every driver to let go: {[r.id for r in self.submitted.values() if r.driver]}")
        manager.shutdown()
        assert not self.errors, self.errors
        assert not self.executor.overlaps, f"driven by two threads at once: {self.executor.overlaps}"
        for run_id, run in self.submitted.items():
            on_disk = manager.store.read_json(run_id, "status.json")
            if run_id in self.deleted:
                assert on_disk is None and manager.get(run_id) is None, f"deleted {run_id} came back"
                continue
            assert run.state in FINAL_STATES and run.state != "failed", (run.state, run.message)
            assert on_disk is not None, f"{run_id} lost"
            assert (on_disk["state"], on_disk["message"]) == (run.state, run.message), (on_disk, run.state)
            assert on_disk["active_seconds"] == round(run.active_seconds, 3)
            if run.started_at is not None:
                assert run.active_seconds <= run.finished_at - run.started_at + 0.005, "running time counted twice"


def _quietly(errors: list, action, *args) -> None:
    """An action that may be refused (too many paused runs) as a user's click may be; anything else is a bug."""
    try:
        action(*args)
    except QueueFull:
        pass
    except BaseException as error:  # noqa: BLE001 — the test's teardown reports it
        errors.append(error)


def test_concurrent_lifecycle_events_never_lose_or_double_a_run(monkeypatch):
    monkeypatch.setattr(lifecycle, "REAP_INTERVAL_S", 0.01)
    run_state_machine_as_test(Lifecycle, settings=settings(max_examples=25, stateful_step_count=12, deadline=None,
                                                           suppress_health_check=list(HealthCheck)))


def test_a_pause_that_could_exceed_the_servers_memory_is_refused_saying_the_peak(make_manager, monkeypatch):
    """A paused run keeps its models and data: with 1 worker at 1024 MB a run and 2560 MB for the server, one pause
    fits (2 × 1024 MB) and a second (3 × 1024 MB) is refused, naming the peak."""
    monkeypatch.setenv("KDVIZ_SERVER_MEMORY_MB", "2560")
    monkeypatch.setenv("KDVIZ_MAX_RUN_MEMORY_MB", "1024")
    executor = FakeExecutor(steps=100_000)
    manager = make_manager(workers=1, executor=executor, paused_timeout_s=3600)
    assert manager.settings.peak_memory_bytes() == (1 + 4) * 1024 * 2**20
    first, second = manager.submit(TINY, "alice"), manager.submit(TINY, "bob")
    wait_until(lambda: _stepped(manager, first), 30, what="the first run's steps")
    manager.pause(first, "alice")
    wait_until(lambda: manager.get(first).state == "paused", 30, what="the first run to pause")
    wait_until(lambda: _stepped(manager, second), 30, what="the second run's steps")
    try:
        manager.pause(second, "bob")
    except QueueFull as refused:
        message = str(refused)
    else:
        raise AssertionError("a pause over the server's memory was accepted")
    assert "up to 3.0 GB" in message and "1 training and 2 paused" in message and "2.5 GB" in message, message
    assert manager.get(second).state == "running" and not manager.get(second).pause_requested
