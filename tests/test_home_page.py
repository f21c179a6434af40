"""The home page through Streamlit's AppTest: intro, map of the app, device, and the default teacher's state."""
from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from conftest import wait_until
from kdviz.runs import tasks

from kdviz.core import presets, teachers

from kdviz import ui
from kdviz.core.engine import EpochEnd, TeacherConfig
from kdviz.core.models import ModelSpec
from kdviz.core.teachers import teacher_path

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TINY_TEACHER = TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0)


@pytest.fixture(autouse=True)
def fresh_default_teacher(monkeypatch):
    """A fresh default-teacher task per test; at the end it is cancelled and joined so it never trains on in the
    background while the rest of the suite runs (the real default teacher costs 20-40 s of CPU)."""
    monkeypatch.setattr(tasks, "_tasks", {})
    yield
    for task in list(tasks._tasks.values()):
        task.cancel()
    for task in list(tasks._tasks.values()):
        task.join(60)
        assert task.done, "the background teacher did not stop"


def _run() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def _default_task() -> tasks.BackgroundTask:
    return tasks._tasks["default-teacher"]


def _join(task: tasks.BackgroundTask, timeout: float = 60) -> tasks.BackgroundTask:
    task.join(timeout)
    assert task.done, f"the default teacher was still {task.state!r} after {timeout:g} s"
    return task


@pytest.fixture
def held_training(monkeypatch):
    """A tiny two-epoch default teacher that trains for real but holds after its first epoch until released, so the
    test sees it running (at a known point) without racing it."""
    reached, release = threading.Event(), threading.Event()
    real = teachers.train_teacher  # what prepare_teacher trains with

    def train_teacher(config, device="auto", should_stop=None):
        for event in real(config, device, should_stop):
            yield event
            if isinstance(event, EpochEnd) and event.epoch == 1:
                reached.set()
                release.wait(60)

    monkeypatch.setattr(teachers, "train_teacher", train_teacher)
    monkeypatch.setattr(presets, "DEFAULT_TEACHER", dataclasses.replace(TINY_TEACHER, epochs=2))
    yield SimpleNamespace(reached=reached, release=release, teacher=presets.DEFAULT_TEACHER)
    release.set()  # before fresh_default_teacher cancels and joins the task


def test_home_page_explains_kd_and_maps_the_app(monkeypatch):
    monkeypatch.setattr(presets, "DEFAULT_TEACHER", TINY_TEACHER)  # this test is about the text: train nothing big
    at = _run()
    assert "knowledge distillation" in at.title[0].value
    intro = at.markdown[0].value.lower()
    assert all(word in intro for word in ("teacher", "student", "temperature", "soft labels"))
    assert "Hinton" in at.markdown[0].value
    assert at.latex and r"T^2" in at.latex[0].value  # the loss, with the T² factor
    links = {link.proto.label.strip("*"): link.proto.page for link in at.get("page_link")}
    texts = _texts(at)
    for plan in ui.PAGES[1:]:
        if plan.built:
            assert plan.title in links, plan.title
        else:
            assert plan.title in texts and "not built yet" in texts
        assert plan.blurb in texts
    assert at.sidebar.toggle[0].label == "Lecture mode"


def test_home_page_shows_the_device_and_the_teachers_progress_then_that_it_is_ready(held_training):
    at = _run()
    assert "**Device:** `cpu`" in _texts(at) or "**Device:** `cuda" in _texts(at)
    task = _default_task()  # the first visit started training the default teacher in the background
    wait_until(held_training.reached.is_set, 60, what=lambda: f"the teacher's first epoch (it is {task.state!r})")
    assert task.state == "running" and not teacher_path(held_training.teacher).is_file()

    at = _run()
    progress = at.get("progress")
    assert len(progress) == 1 and not at.success and not at.error
    assert progress[0].value == 50  # one epoch of two
    epoch = task.last_epoch
    assert progress[0].proto.text == ("Training the default teacher once (then it is cached), epoch 1: "
                                      f"{epoch.val_accuracy['teacher']:.1%} validation, "
                                      f"{epoch.accuracy['teacher']:.1%} test accuracy…")

    held_training.release.set()
    assert _join(task).state == "completed", task.error
    at = _run()
    assert not at.get("progress") and not at.error
    facts = task.finished.summary["teacher"]
    assert len(at.success) == 1 and f"{facts['accuracy']:.1%} test accuracy" in at.success[0].value
    assert f"{facts['val_accuracy']:.1%} validation" in at.success[0].value
    assert teacher_path(held_training.teacher).is_file()


def test_a_cancelled_default_teacher_is_not_cached_and_the_page_says_so(held_training):
    _run()
    task = _default_task()
    wait_until(held_training.reached.is_set, 60, what=lambda: f"the teacher's first epoch (it is {task.state!r})")
    task.cancel()  # what stop_all_tasks does when the server shuts down
    held_training.release.set()
    assert _join(task).state == "cancelled"
    assert task.finished.summary["steps"] == task.started.steps_per_epoch, "it stopped at once, after epoch 1"
    assert not teacher_path(held_training.teacher).is_file(), "a cancelled teacher is never cached"
    at = _run()
    assert not at.get("progress") and not at.success
    assert len(at.error) == 1 and "could not be prepared (cancelled)" in at.error[0].value


def test_home_page_says_when_the_default_teacher_is_ready(monkeypatch):
    monkeypatch.setattr(presets, "DEFAULT_TEACHER", TINY_TEACHER)
    _run()
    task = _join(_default_task())
    assert task.state == "completed", task.error
    at = _run()
    assert not at.get("progress")
    assert len(at.success) == 1 and "The default teacher is ready" in at.success[0].value
    accuracy = task.finished.summary["teacher"]["accuracy"]
    assert f"{accuracy:.1%} test accuracy" in at.success[0].value
    assert teacher_path(TINY_TEACHER).is_file()  # and it is cached for the next server start


def test_a_corrupt_cached_teacher_is_a_warning_not_a_crash(monkeypatch):
    monkeypatch.setattr(presets, "DEFAULT_TEACHER", TINY_TEACHER)
    path = teacher_path(TINY_TEACHER)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    _run()
    assert _join(_default_task()).state == "completed"
    at = _run()
    assert len(at.warning) == 1 and "training it again" in at.warning[0].value
    assert "The default teacher is ready" in at.success[0].value


def test_a_teacher_that_cannot_be_prepared_is_an_error_message(monkeypatch, offline):
    monkeypatch.setattr(presets, "DEFAULT_TEACHER", dataclasses.replace(TINY_TEACHER, dataset="cifar10"))
    _run()
    assert _join(_default_task()).state == "failed"
    at = _run()
    assert len(at.error) == 1
    message = at.error[0].value
    assert "could not be prepared" in message and "mnist5k" in message and "python -m kdviz prepare" in message
