"""The run manager: queue order, bounded workers, cancel, pause/resume, persistence, restarts, faults."""
from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time

import pytest

from conftest import wait_for_run, wait_until
from kdviz.core.engine import DistillConfig, TeacherConfig
from kdviz.runs.manager import QueueFull
from kdviz.core.models import ModelSpec
from kdviz.runs.store import RunStore, is_valid_run_id

TINY = DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0),
                     ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.5, epochs=2, batch_size=64, train_subset=200)


def wait_done(manager, *run_ids, timeout=90.0):
    for run_id in run_ids:
        wait_for_run(manager, run_id, timeout)


def distill_steps(manager, run_id: str) -> bool:
    return any(e["event"] == "StepLosses" and e["phase"] == "distill" for e in manager.get(run_id).events)


@pytest.fixture
def manager(make_manager):
    return make_manager(workers=1)  # shut down at the end: no worker may still be inside torch at exit


def test_a_run_completes_with_events_summary_and_students_on_disk(manager):
    run_id = manager.submit(TINY, "alice")
    wait_done(manager, run_id)
    run = manager.get(run_id)
    assert run.state == "completed"
    assert {"hard", "kd", "teacher"} <= set(run.summary)
    kinds = [e["event"] for e in run.events]
    assert kinds.count("Finished") == 2  # the teacher phase, then the distillation phase
    folder = manager.store.folder(run_id)
    assert {"config.json", "status.json", "events.jsonl", "students.pt"} <= {p.name for p in folder.iterdir()}
    config, students = manager.store.load_students(run_id)
    assert config == TINY and set(students) == {"hard", "kd"}


def test_queue_is_first_in_first_out_and_concurrency_is_bounded(manager):
    gate = threading.Event()
    started: list[str] = []
    original = manager._execute

    def gated(run):
        started.append(run.id)
        gate.wait(30)
        original(run)

    manager._execute = gated
    try:
        ids = [manager.submit(dataclasses.replace(TINY, seed=seed), "alice") for seed in range(3)]
        wait_until(lambda: len(started) == 1, what="the first run to start")
        time.sleep(0.3)  # room for a second worker to (wrongly) pick up a run
        assert started == ids[:1], "one worker: only one run at a time"
        assert [manager.queue_position(r) for r in ids] == [None, 1, 2]
        gate.set()
        wait_done(manager, *ids)
        assert started == ids
        assert [manager.get(r).state for r in ids] == ["completed"] * 3
    finally:
        gate.set()


def test_cancel_a_queued_run_and_a_running_run_keeps_what_was_measured(manager):
    slow = dataclasses.replace(TINY, epochs=200)
    first, second = manager.submit(slow, "alice"), manager.submit(TINY, "alice")
    manager.cancel(second)
    assert manager.get(second).state == "cancelled"
    wait_until(lambda: distill_steps(manager, first), what="the first run's distillation steps")
    manager.cancel(first)
    wait_done(manager, first)
    run = manager.get(first)
    assert run.state == "cancelled"
    assert any(e["event"] == "StepLosses" for e in RunStore().read_events(first)), "measured steps are kept on disk"


def test_pause_blocks_progress_and_resume_continues(manager):
    run_id = manager.submit(dataclasses.replace(TINY, epochs=100), "alice")
    wait_until(lambda: distill_steps(manager, run_id), what="the run's distillation steps")
    manager.pause(run_id)
    assert manager.get(run_id).state == "paused"
    time.sleep(0.3)
    count = len(manager.get(run_id).events)
    time.sleep(0.5)
    assert len(manager.get(run_id).events) <= count + 1, "a paused run takes no more steps"
    manager.resume_run(run_id)
    wait_until(lambda: len(manager.get(run_id).events) > count + 5, what="more steps after resume")
    assert manager.get(run_id).state == "running"
    manager.cancel(run_id)
    assert wait_for_run(manager, run_id).state == "cancelled"


def test_a_diverging_run_ends_with_its_message_and_keeps_its_data(manager):
    run_id = manager.submit(dataclasses.replace(TINY, learning_rate=1e30), "alice")
    wait_done(manager, run_id)
    run = manager.get(run_id)
    assert run.state == "diverged"
    assert "diverged at step" in run.message
    losses = [v for e in run.events if e["event"] == "StepLosses" for v in e["losses"].values()]
    assert all(v == v and abs(v) != float("inf") for v in losses), "no NaN reaches the charts"


def test_history_survives_a_restart_and_live_runs_become_interrupted(manager, make_manager):
    done = manager.submit(TINY, "alice")
    wait_done(manager, done)
    # A run that was live when the server died: its status still says "running".
    store = RunStore()
    store.create("20260101-000000-abcdef", {"config": dataclasses.asdict(TINY), "owner": "bob", "created": 1.0})
    store.write_status("20260101-000000-abcdef", {"state": "running"})
    store.append_events("20260101-000000-abcdef", [{"event": "StepLosses", "step": 1, "epoch": 1, "losses": {}}])
    with open(store.folder("20260101-000000-abcdef") / "events.jsonl", "a") as handle:
        handle.write('{"event": "StepLos')  # torn by the crash
    restarted = make_manager()
    runs = {run.id: run for run in restarted.list_runs()}
    assert runs[done].state == "completed" and runs[done].summary == manager.get(done).summary
    crashed = runs["20260101-000000-abcdef"]
    assert crashed.state == "interrupted" and len(crashed.events) == 1
    assert [run.id for run in restarted.list_runs("alice")] == [done]


def test_deleting_the_run_folder_mid_run_loses_nothing(manager):
    run_id = manager.submit(dataclasses.replace(TINY, epochs=40), "alice")
    wait_until(lambda: distill_steps(manager, run_id), what="the run's distillation steps")
    folder = manager.store.folder(run_id)
    folder.rename(folder.with_name("deleted"))  # gone from under the app in one step, as `rm -r` would leave it
    shutil.rmtree(folder.with_name("deleted"))
    wait_done(manager, run_id)
    run = manager.get(run_id)
    assert run.state == "completed"
    on_disk = RunStore().read_events(run_id)
    assert len(on_disk) == len(run.events), "the folder is rebuilt from memory"
    assert json.loads((manager.store.folder(run_id) / "status.json").read_text())["state"] == "completed"


def test_queue_limits_per_owner_and_bad_configs_are_refused(make_manager):
    manager = make_manager(max_queued_per_owner=2)
    gate = threading.Event()
    original = manager._execute
    manager._execute = lambda run: (gate.wait(30), original(run))
    try:
        manager.submit(TINY, "alice")
        wait_until(lambda: manager.queue_position(manager.list_runs("alice")[0].id) is None,
                   what="alice's first run to leave the queue")
        manager.submit(TINY, "alice")
        manager.submit(TINY, "alice")
        with pytest.raises(QueueFull, match="at most 2"):
            manager.submit(TINY, "alice")
        manager.submit(TINY, "bob")  # another user is not blocked by alice's queue
        with pytest.raises(ValueError, match="temperature"):
            manager.submit(dataclasses.replace(TINY, temperature=0.0), "bob")
    finally:
        gate.set()  # the fixture then shuts the manager down


def test_run_ids_from_urls_cannot_escape_the_runs_folder(manager):
    for bad in ("../../etc", "20260101-000000-ABCDEF/..", "", "x" * 22):
        assert not is_valid_run_id(bad)
        assert manager.get(bad) is None


def _numbers(run) -> list:
    """Everything a run measured, without timestamps: losses, accuracies, snapshots and the summary's accuracies."""
    kept = ("StepLosses", "EpochEnd", "Snapshot")
    events = [{k: v for k, v in e.items() if k != "t"} for e in run.events
              if e["event"] in kept and e["phase"] == "distill"]  # the teacher is trained by the first run only
    facts = {role: {k: run.summary[role][k] for k in ("accuracy", "val_accuracy")} for role in ("hard", "kd")}
    return [events, facts]


def test_runs_in_parallel_workers_equal_the_same_runs_one_after_the_other(make_manager, tmp_path):
    """One lecture server, two students' runs at the same moment on two workers: bit-identical to running them alone
    (explicit generators only; dropout and jitter on, so any use of the global RNG would show)."""
    configs = [dataclasses.replace(TINY, augment=1, student=ModelSpec("mlp", 12, 2, dropout=0.3)),
               dataclasses.replace(TINY, seed=7, temperature=2.0)]
    alone = make_manager(RunStore(tmp_path / "alone"), workers=1)
    sequential = []
    for config in configs:  # one after the other: each waits for the previous to finish
        sequential.append(wait_for_run(alone, alone.submit(config, "alice")))
    together = make_manager(RunStore(tmp_path / "together"), workers=2)
    gate = threading.Barrier(2)
    original = together._execute

    def start_together(run):
        gate.wait(30)  # both workers enter their runs at the same moment
        original(run)

    together._execute = start_together
    ids = [together.submit(config, owner) for config, owner in zip(configs, ("alice", "bob"))]
    parallel = [wait_for_run(together, run_id) for run_id in ids]
    assert [run.state for run in sequential + parallel] == ["completed"] * 4
    for solo, shared in zip(sequential, parallel):
        assert _numbers(shared) == _numbers(solo)
