"""The Ray executor (kdviz.runs.executors.RayExecutor) against a local Ray started here: a run's events come back
as they happen, with the thread executor's numbers; stop, pause and a lost worker behave as with threads."""
from __future__ import annotations

import dataclasses
import os
import signal

import pytest

from conftest import wait_for_run, wait_until
from kdviz.runs.settings import server_settings
from kdviz.core.engine import DistillConfig, TeacherConfig
from kdviz.core.models import ModelSpec
from kdviz.runs.executors import ThreadExecutor

ray = pytest.importorskip("ray", reason="needs Ray (pip install -r requirements.txt)")

TINY = DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0),
                     ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.5, epochs=2, batch_size=64, train_subset=200,
                     device="cpu")
LONG = dataclasses.replace(TINY, epochs=400)


@pytest.fixture(scope="module")
def executor():
    from kdviz.runs.executors import RayExecutor

    made = RayExecutor(num_cpus=2, object_store_memory=128 * 2**20)
    yield made
    ray.shutdown()


@pytest.fixture
def manager(make_manager, executor):
    return make_manager(executor=executor, workers=2)


def distilling(manager, run_id: str) -> bool:
    return any(e["event"] == "StepLosses" and e["phase"] == "distill" for e in manager.get(run_id).events)


def without_times(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("seconds",)}


def test_a_run_on_ray_streams_its_events_and_equals_the_thread_executors(manager, make_manager):
    run_id = manager.submit(TINY, "alice")
    run = wait_for_run(manager, run_id)
    assert run.state == "completed", run.message
    live = manager.get(run_id)
    assert [e["event"] for e in live.events].count("Finished") == 2
    config, students = manager.store.load_students(run_id)
    assert config == TINY and set(students) == {"hard", "kd"}
    local = make_manager(executor=ThreadExecutor())
    same = wait_for_run(local, local.submit(TINY, "alice"))
    assert without_times(same.summary) == without_times(run.summary)  # same config, same numbers, on any executor
    assert manager.executor.shares_teacher_cache  # a local Ray: its tasks use this machine's teacher cache


def test_a_cluster_elsewhere_counts_the_teacher_as_one_its_node_may_train(manager, monkeypatch):
    """The app's cache says cached, but a node on another machine has its own: the budget counts the training."""
    from kdviz.core.budget import check_budget

    from kdviz.core.teachers import get_teacher

    get_teacher(TINY.teacher)  # cached in this app's KDVIZ_HOME (a Ray worker's runs may use another)
    here = manager.check(TINY)
    assert here.teacher_cached and here.work_flops == check_budget(TINY, manager.settings.budget, True).work_flops
    nodes = manager.executor._ray.nodes()
    monkeypatch.setattr(manager.executor._ray, "nodes", lambda: [*nodes, {"Alive": True,
                                                                         "NodeManagerAddress": "10.9.8.7"}])
    assert not manager.executor.shares_teacher_cache
    elsewhere = manager.check(TINY)
    assert not elsewhere.teacher_cached
    assert elsewhere.work_flops == check_budget(TINY, manager.settings.budget, False).work_flops > here.work_flops


def test_the_task_runs_in_a_ray_worker_and_a_stop_keeps_what_it_measured(manager):
    run_id = manager.submit(LONG, "alice")
    wait_until(lambda: distilling(manager, run_id), 60, what="the distillation's first steps")
    placement = manager.get(run_id).placement
    assert placement and placement["pid"] != os.getpid()
    manager.cancel(run_id, "alice")
    run = wait_for_run(manager, run_id, 60)
    assert run.state == "cancelled" and run.summary is not None
    assert 0 < run.summary["steps"] < 400 * 4


def test_pause_holds_the_task_and_resume_gives_the_uninterrupted_numbers(manager):
    config = dataclasses.replace(TINY, epochs=60)
    plain = wait_for_run(manager, manager.submit(config, "bob"))
    run_id = manager.submit(config, "alice")
    wait_until(lambda: distilling(manager, run_id), 60, what="the distillation's first steps")
    manager.pause(run_id, "alice")
    wait_until(lambda: manager.get(run_id).state == "paused", 30, what="the run to pause")
    wait_until(lambda: ray.get(manager.executor._control.state.remote(run_id)) == "pause", 10,
               what="the pause to reach the task")
    manager.resume_run(run_id, "alice")
    run = wait_for_run(manager, run_id)
    assert run.state == "completed" and without_times(run.summary) == without_times(plain.summary)


def test_a_run_whose_worker_dies_fails_with_a_message_and_the_server_goes_on(manager):
    run_id = manager.submit(LONG, "alice")
    wait_until(lambda: distilling(manager, run_id), 60, what="the distillation's first steps")
    os.kill(manager.get(run_id).placement["pid"], signal.SIGKILL)
    run = wait_for_run(manager, run_id, 60)
    assert run.state == "failed" and "Ray worker" in run.message, run.message
    assert any(e["event"] == "StepLosses" for e in run.events), "what it logged before is kept"
    after = wait_for_run(manager, manager.submit(TINY, "alice"))
    assert after.state == "completed"


def test_the_executor_is_a_server_setting(monkeypatch):
    monkeypatch.setenv("KDVIZ_EXECUTOR", "ray")
    monkeypatch.setenv("KDVIZ_RAY_ADDRESS", "auto")
    settings = server_settings()
    assert (settings.executor, settings.ray_address) == ("ray", "auto")
    monkeypatch.setenv("KDVIZ_EXECUTOR", "slurm")
    with pytest.raises(ValueError, match='KDVIZ_EXECUTOR must be "threads" or "ray"'):
        server_settings()
