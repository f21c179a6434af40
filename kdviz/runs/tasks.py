"""Background tasks: one event stream in a daemon thread (e.g. training a teacher) that any page polls or cancels."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from kdviz.core.engine import EpochEnd, Finished, Notice, Started, StepLosses
from kdviz.runs import stopping  # noqa: F401 (imported for its exit hook: tasks stop at their next step at exit)

StreamFactory = Callable[[Callable[[], bool]], Iterator]  # should_stop → events
SLOT_POLL_S = 0.2  # how often a task waiting for a worker checks whether it was cancelled meanwhile

# The run manager's training slots (one per worker): a background task takes one before it trains, as a run does, so
# that a server of `workers` runs at once never trains more than that (a teacher in the background included) and its
# memory stays within (workers + paused) x the per-run budget. None until a run manager shares them (the CLI, tests).
_slots: threading.Semaphore | None = None


def share_workers(slots: threading.Semaphore | None) -> None:
    """The run manager hands its workers' slots to the background tasks started from now on."""
    global _slots
    _slots = slots


class BackgroundTask:
    """One event stream consumed in a daemon thread; state is read by UI polls (never by blocking on it)."""

    def __init__(self, name: str, make_events: StreamFactory):
        self.name = name
        self._make_events = make_events
        self.made: Path | None = None  # the file it writes (task_for's makes): gone after it completed, it runs again
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.state = "pending"  # pending → waiting (for a worker) → running → completed | cancelled | diverged | failed
        self.started: Started | None = None
        self.step = 0
        self.last_epoch: EpochEnd | None = None
        self.notices: list[str] = []
        self.finished: Finished | None = None
        self.error: str | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None  # time.monotonic() when it ended
        self._thread = threading.Thread(target=self._run, name=f"kdviz-{name}", daemon=True)

    def start(self) -> "BackgroundTask":
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def done(self) -> bool:
        return self.state in ("completed", "cancelled", "diverged", "failed")

    def progress(self) -> float:
        """Fraction of steps done, in [0, 1]."""
        with self._lock:
            if self.done:
                return 1.0
            total = self.started.total_steps if self.started else 0
            return min(self.step / total, 1.0) if total else 0.0

    def _run(self) -> None:
        slots = _slots
        if slots is not None:
            self.state = "waiting"
            while not slots.acquire(timeout=SLOT_POLL_S):  # every worker trains a run: wait for one to be free
                if self._stop.is_set():
                    self.state, self.ended_at = "cancelled", time.monotonic()
                    return
        self.state, self.started_at = "running", time.monotonic()
        try:
            for event in self._make_events(self._stop.is_set):
                with self._lock:
                    if isinstance(event, Started):
                        self.started = event
                    elif isinstance(event, StepLosses):
                        self.step = event.step
                    elif isinstance(event, EpochEnd):
                        self.last_epoch = event
                    elif isinstance(event, Notice):
                        self.notices.append(event.message)
                    elif isinstance(event, Finished):
                        self.finished = event
            self.state = self.finished.status if self.finished else "failed"
        except Exception as error:  # a task must never take the server down; the UI shows the message
            self.error = f"{type(error).__name__}: {error}"
            self.state = "failed"
        finally:
            self.ended_at = time.monotonic()
            if slots is not None:
                slots.release()

    def retry_in(self, retry_after: float) -> float | None:
        """Seconds until task_for(..., retry_after) starts this failed or cancelled task again; None otherwise."""
        if self.state not in ("failed", "cancelled") or self.ended_at is None:
            return None
        return max(0.0, self.ended_at + retry_after - time.monotonic())


_tasks: dict[str, BackgroundTask] = {}
_tasks_guard = threading.Lock()


def cancel_all_tasks() -> list[BackgroundTask]:
    """Ask every background task to stop at its next step, without waiting; the tasks asked."""
    with _tasks_guard:
        tasks = list(_tasks.values())
    for task in tasks:
        task.cancel()
    return tasks


def stop_all_tasks(timeout: float = 30.0) -> None:
    """Cancel every background task and wait for their threads, up to timeout in all (tests, server shutdown)."""
    deadline = time.monotonic() + timeout
    for task in cancel_all_tasks():
        if task._thread.is_alive():
            task.join(max(0.0, deadline - time.monotonic()))


def task_for(name: str, make_events: StreamFactory, retry_after: float = 0.0,
             makes: Callable[[], Path] | None = None) -> BackgroundTask:
    """The process-wide task with this name, started on first request; a failed or cancelled one is started again
    when asked for at least retry_after seconds after it ended (pages that poll every second pass a delay, so that a
    task that cannot succeed, e.g. a download without a network, is not restarted every second). makes: the file the
    task writes (asked when it starts); a completed task whose file has gone since (a teacher's file removed by the
    disk quota) is started again."""
    with _tasks_guard:
        task = _tasks.get(name)
        gone = task is not None and task.state == "completed" and task.made is not None and not task.made.exists()
        if task is None or task.retry_in(retry_after) == 0.0 or gone:
            task = BackgroundTask(name, make_events)
            try:  # a config that cannot name its file fails in the task, with the task's message
                task.made = makes() if makes is not None else None
            except Exception:
                task.made = None
            _tasks[name] = task.start()
        return task
