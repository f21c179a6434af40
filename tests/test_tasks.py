"""kdviz.runs.tasks: an event stream in a background thread that pages poll, cancel, and share by name."""
from __future__ import annotations

import threading
import time

import pytest

from kdviz.runs import tasks
from kdviz.core.engine import EpochEnd, Finished, Notice, Started, StepLosses, TeacherConfig, train_teacher
from kdviz.runs.tasks import BackgroundTask, task_for
from kdviz.core.models import ModelSpec

TIMEOUT = 30


@pytest.fixture(autouse=True)
def fresh_tasks(monkeypatch):
    """Each test sees an empty process-wide task table, and nothing it starts outlives it."""
    monkeypatch.setattr(tasks, "_tasks", {})
    yield
    for task in tasks._tasks.values():
        task.cancel()
        task.join(TIMEOUT)


class Stepper:
    """A stream of 4 steps that advances only when the test says so, so progress can be read in between."""

    def __init__(self):
        self.go, self.reached = threading.Semaphore(0), threading.Semaphore(0)

    def events(self, should_stop):
        yield Started("teacher", total_steps=4, steps_per_epoch=2, device="cpu", n_train=8, n_test=2)
        self.reached.release()
        for step in range(1, 5):
            self.go.acquire()
            if should_stop():
                yield Finished("cancelled", {"steps": step - 1})
                return
            yield StepLosses(step, (step + 1) // 2, {"teacher": 1.0 / step})
            if step == 2:
                yield Notice("half way")
                yield EpochEnd(1, {"teacher": 0.5})
            self.reached.release()
        self.go.acquire()
        yield Finished("completed", {"steps": 4})
        self.reached.release()

    def advance(self):
        self.go.release()
        assert self.reached.acquire(timeout=TIMEOUT)


def test_progress_goes_from_zero_to_one():
    stepper = Stepper()
    task = BackgroundTask("steps", stepper.events)
    assert task.state == "pending" and task.progress() == 0.0 and not task.done
    task.start()
    assert stepper.reached.acquire(timeout=TIMEOUT)
    assert task.state == "running" and task.progress() == 0.0 and task.started.total_steps == 4
    seen = []
    for _ in range(4):
        stepper.advance()
        seen.append(task.progress())
    assert seen == [0.25, 0.5, 0.75, 1.0]
    assert task.notices == ["half way"] and task.last_epoch.accuracy == {"teacher": 0.5}
    assert task.state == "running"  # all steps done, Finished not yet
    stepper.advance()
    task.join(TIMEOUT)
    assert task.state == "completed" and task.done and task.progress() == 1.0
    assert task.finished.summary == {"steps": 4} and task.error is None


def test_cancel_stops_the_stream():
    stepper = Stepper()
    task = BackgroundTask("steps", stepper.events).start()
    assert stepper.reached.acquire(timeout=TIMEOUT)
    stepper.advance()
    task.cancel()
    stepper.go.release()
    task.join(TIMEOUT)
    assert task.state == "cancelled" and task.finished.summary == {"steps": 1} and task.step == 1


def test_cancel_stops_real_teacher_training():
    config = TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1000, batch_size=8, augment=0)
    task = BackgroundTask("teacher", lambda should_stop: train_teacher(config, "cpu", should_stop)).start()
    for _ in range(TIMEOUT * 20):
        if task.step >= 3:
            break
        threading.Event().wait(0.05)
    task.cancel()
    task.join(TIMEOUT)
    assert task.state == "cancelled" and 3 <= task.finished.summary["steps"] < task.started.total_steps


def test_an_exception_in_the_stream_fails_the_task_with_a_message():
    def broken(should_stop):
        yield Started("teacher", 10, 10, "cpu", 1, 1)
        raise RuntimeError("out of memory on purpose")

    task = BackgroundTask("broken", broken).start()
    task.join(TIMEOUT)
    assert task.state == "failed" and task.done and task.progress() == 1.0
    assert task.error == "RuntimeError: out of memory on purpose"


def test_a_stream_that_ends_without_finished_fails():
    task = BackgroundTask("empty", lambda should_stop: iter([])).start()
    task.join(TIMEOUT)
    assert task.state == "failed"


def test_task_for_shares_one_task_per_name():
    release = threading.Event()

    def waiting(should_stop):
        release.wait(TIMEOUT)
        yield Finished("completed", {})

    first = task_for("teacher", waiting)
    assert task_for("teacher", waiting) is first
    assert task_for("other", waiting) is not first
    release.set()
    first.join(TIMEOUT)
    assert first.state == "completed" and task_for("teacher", waiting) is first  # a finished task is kept


def test_task_for_restarts_a_failed_or_cancelled_task():
    def broken(should_stop):
        raise ValueError("no network")
        yield  # pragma: no cover

    failed = task_for("flaky", broken)
    failed.join(TIMEOUT)
    assert failed.state == "failed"
    retried = task_for("flaky", lambda should_stop: iter([Finished("cancelled", {})]))
    assert retried is not failed
    retried.join(TIMEOUT)
    assert retried.state == "cancelled"
    assert task_for("flaky", lambda should_stop: iter([Finished("completed", {})])) is not retried


def test_a_polled_task_that_failed_is_started_again_only_after_the_delay(monkeypatch):
    import time as clock

    def broken(should_stop):
        raise OSError("no network")
        yield  # pragma: no cover

    failed = task_for("download", broken, retry_after=60)
    failed.join(TIMEOUT)
    assert failed.state == "failed" and 59 < failed.retry_in(60) <= 60
    assert task_for("download", broken, retry_after=60) is failed, "polling every second does not restart it"
    later = clock.monotonic() + 61
    monkeypatch.setattr(tasks.time, "monotonic", lambda: later)
    assert failed.retry_in(60) == 0.0
    assert task_for("download", broken, retry_after=60) is not failed


def test_the_default_teacher_is_trained_again_after_a_failure(monkeypatch):
    """The page's words "kdviz tries again by itself" are true: no process-wide cache keeps the failed task."""
    from kdviz import ui
    from kdviz.core import presets
    from kdviz.core.engine import TeacherConfig

    monkeypatch.setattr(ui.core, "TEACHER_RETRY_S", 0.0)
    monkeypatch.setattr(presets, "DEFAULT_TEACHER", TeacherConfig("no-such-dataset", ModelSpec("mlp", 8, 1)))
    failed = ui.default_teacher_task()
    failed.join(TIMEOUT)
    assert failed.state == "failed" and "no-such-dataset" in failed.error
    monkeypatch.setattr(presets, "DEFAULT_TEACHER", TeacherConfig("digits", ModelSpec("mlp", 8, 1), epochs=1))
    retried = ui.default_teacher_task()
    assert retried is not failed
    retried.join(TIMEOUT)
    assert retried.state == "completed"


def test_a_teacher_whose_file_is_gone_is_trained_again_not_reported_unreadable(monkeypatch):
    """The disk quota may remove a cached teacher while its completed task is still kept: the next page that asks
    for the teacher starts the task again instead of saying "restart the server"."""
    from kdviz import ui
    from kdviz.core import presets
    from kdviz.core.teachers import is_cached, teacher_path

    monkeypatch.setattr(presets, "DEFAULT_TEACHER", TeacherConfig("digits", ModelSpec("mlp", 8, 1), epochs=1))
    first = ui.default_teacher_task()
    first.join(TIMEOUT)
    assert first.state == "completed" and ui.default_teacher_task() is first  # kept while its file is there
    teacher_path(presets.DEFAULT_TEACHER).unlink()  # what the disk quota does to the least recently used teacher
    again = ui.default_teacher_task()
    assert again is not first
    again.join(TIMEOUT)
    assert again.state == "completed" and is_cached(presets.DEFAULT_TEACHER)
    other = TeacherConfig("digits", ModelSpec("mlp", 4, 1), epochs=1)  # any page's teacher, not only the default
    task = ui.teacher_task(other)
    task.join(TIMEOUT)
    teacher_path(other).unlink()
    assert ui.teacher_task(other) is not task


def test_a_background_teacher_takes_a_worker_as_a_run_does(make_manager, monkeypatch):
    """A one-worker server never trains two things at once: a teacher started in the background waits while a run
    trains (the page says so), and a run submitted while the teacher trains waits in the queue until it ends."""
    from conftest import wait_for_run, wait_until
    from run_fakes import FakeExecutor
    from kdviz.core.budget import UNLIMITED
    from kdviz.core.engine import DistillConfig

    monkeypatch.setattr(tasks, "_slots", None)  # this test's manager shares its slots; put back afterwards
    gate = threading.Event()
    executor = FakeExecutor(steps=50, step_s=0.001)
    executor.step_hook = lambda run, step: gate.wait(TIMEOUT)  # the run trains until the test lets it end
    manager = make_manager(workers=1, executor=executor, budget=UNLIMITED)
    config = DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 8, 1), epochs=1), ModelSpec("mlp", 8, 1))
    first = manager.submit(config, "alice")
    wait_until(lambda: manager.get(first).state == "running", TIMEOUT, what="the first run to train")
    stepper = Stepper()
    task = BackgroundTask("teacher", stepper.events).start()
    wait_until(lambda: task.state == "waiting", TIMEOUT, what="the teacher to wait for the worker")
    assert not stepper.reached.acquire(timeout=0.5), "the teacher trained beside the run"
    gate.set()
    assert wait_for_run(manager, first).state == "completed"
    assert stepper.reached.acquire(timeout=TIMEOUT) and task.state == "running"  # the worker's slot is the teacher's
    second = manager.submit(config, "bob")
    time.sleep(0.5)  # a free worker would have taken it by now
    assert manager.get(second).state == "queued"
    for _ in range(5):
        stepper.advance()
    task.join(TIMEOUT)
    assert task.state == "completed"
    assert wait_for_run(manager, second).state == "completed"  # then the queue goes on


def test_a_teacher_waiting_for_a_worker_can_be_cancelled(monkeypatch):
    slots = threading.BoundedSemaphore(1)
    monkeypatch.setattr(tasks, "_slots", slots)
    assert slots.acquire()  # a run holds the only worker
    stepper = Stepper()
    task = BackgroundTask("teacher", stepper.events).start()
    task.cancel()
    task.join(TIMEOUT)
    assert task.state == "cancelled" and task.started is None  # it never trained
    slots.release()
    assert slots.acquire(blocking=False)  # and it took no slot with it
