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
from kdviz.core.budget import OverBudget
from kdviz.runs.settings import server_settings
from kdviz.runs.log import EventLog
from kdviz.runs.manager import NotYours, QueueFull
from kdviz.core.models import ModelSpec
from kdviz.core.checkpoints import is_valid_run_id
from kdviz.runs.store import RunStore

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
    manager.cancel(second, "alice")
    assert manager.get(second).state == "cancelled"
    wait_until(lambda: distill_steps(manager, first), what="the first run's distillation steps")
    manager.cancel(first, "alice")
    wait_done(manager, first)
    run = manager.get(first)
    assert run.state == "cancelled"
    assert any(e["event"] == "StepLosses" for e in RunStore().read_events(first)), "measured steps are kept on disk"


def test_pause_blocks_progress_and_resume_continues(manager):
    run_id = manager.submit(dataclasses.replace(TINY, epochs=100), "alice")
    wait_until(lambda: distill_steps(manager, run_id), what="the run's distillation steps")
    manager.pause(run_id, "alice")
    wait_until(lambda: manager.get(run_id).state == "paused", what="the run to pause at its next step")
    time.sleep(0.3)
    count = len(manager.get(run_id).events)
    time.sleep(0.5)
    assert len(manager.get(run_id).events) <= count + 1, "a paused run takes no more steps"
    manager.resume_run(run_id, "alice")
    wait_until(lambda: len(manager.get(run_id).events) > count + 5, what="more steps after resume")
    assert manager.get(run_id).state == "running"
    manager.cancel(run_id, "alice")
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
    assert restarted.get(done).owner != "alice", "only a hash of the identity is stored"
    assert "alice" not in (restarted.store.folder(done) / "config.json").read_text()


def test_deleting_the_run_folder_mid_run_loses_nothing(manager):
    run_id = manager.submit(dataclasses.replace(TINY, epochs=40), "alice")
    wait_until(lambda: distill_steps(manager, run_id), what="the run's distillation steps")
    folder = manager.store.folder(run_id)
    folder.rename(folder.with_name("deleted"))  # gone from under the app in one step, as `rm -r` would leave it
    shutil.rmtree(folder.with_name("deleted"))
    wait_done(manager, run_id)
    run = manager.get(run_id)
    assert run.state == "completed"
    on_disk = [e for e in RunStore().read_events(run_id) if e["event"] != "Snapshot"]
    assert on_disk == run.events, "the folder is rebuilt from memory (every loss and accuracy)"
    assert [e["step"] for e in on_disk if e["event"] == "StepLosses" and e["phase"] == "distill"] == list(range(1, 161))
    assert json.loads((manager.store.folder(run_id) / "status.json").read_text())["state"] == "completed"


def test_queue_limits_per_owner_and_bad_configs_are_refused(make_manager):
    manager = make_manager(max_live_per_browser=3)
    gate = threading.Event()
    original = manager._execute
    manager._execute = lambda run: (gate.wait(30), original(run))
    try:
        manager.submit(TINY, "alice")
        wait_until(lambda: manager.queue_position(manager.list_runs("alice")[0].id) is None,
                   what="alice's first run to leave the queue")
        manager.submit(TINY, "alice")
        manager.submit(TINY, "alice")
        with pytest.raises(QueueFull, match="at most 3 per browser"):
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


# ---- a lecture hall on one server: identity, budget, fair queue, pauses, deletes, sweeps, bounded memory ----------

SLOW = dataclasses.replace(TINY, epochs=400)


def test_another_identity_can_view_but_not_stop_pause_resume_or_delete(manager):
    run_id = manager.submit(SLOW, "alice")
    wait_until(lambda: distill_steps(manager, run_id), what="the run's distillation steps")
    for action in (manager.cancel, manager.pause, manager.resume_run, manager.delete):
        with pytest.raises(NotYours, match="belongs to someone else"):
            action(run_id, "mallory")
    run = manager.get(run_id)
    assert run.state == "running" and manager.owns(run, "alice") and not manager.owns(run, "mallory")
    assert manager.list_runs("mallory") == [] and [r.id for r in manager.list_runs("alice")] == [run_id]
    manager.cancel(run_id, "alice")
    assert wait_for_run(manager, run_id).state == "cancelled"
    with pytest.raises(NotYours):
        manager.delete(run_id, "mallory")  # a finished run, read from disk, is checked the same way
    assert manager.get(run_id) is not None


def test_an_over_budget_run_is_refused_naming_the_limit_and_nothing_is_queued(manager):
    huge = dataclasses.replace(TINY, student=ModelSpec("mlp", 8192, 16))
    with pytest.raises(OverBudget, match="memory") as refused:
        manager.submit(huge, "alice")
    assert refused.value.limit == "memory"
    assert manager.list_runs() == [] and manager.store.run_ids() == []


def test_a_run_over_the_wall_clock_limit_is_stopped_and_keeps_what_it_measured(make_manager):
    manager = make_manager(budget=dataclasses.replace(server_settings().budget, max_seconds=0.5))
    run = wait_for_run(manager, manager.submit(SLOW, "alice"))
    assert run.state == "cancelled" and "time limit of 0.5 s" in run.message
    assert any(e["event"] == "StepLosses" for e in run.events) and run.summary["steps"] > 0


def test_the_queue_takes_turns_between_browsers_and_addresses_are_capped(make_manager):
    manager = make_manager(max_live_per_address=4)
    gate = threading.Event()
    original = manager._execute
    manager._execute = lambda run: (gate.wait(30), original(run))
    try:
        alice = [manager.submit(TINY, "alice", address="10.0.0.7") for _ in range(3)]
        wait_until(lambda: manager.queue_position(alice[0]) is None, what="alice's first run to start")
        bob = manager.submit(TINY, "bob", address="10.0.0.8")
        assert manager.queue_position(bob) == 1, "bob goes before alice's second run: she already has one running"
        assert [manager.queue_position(r) for r in alice[1:]] == [2, 3]
        manager.submit(TINY, "carol", address="10.0.0.7")  # a new browser on alice's machine...
        with pytest.raises(QueueFull, match="at most 4 per address"):
            manager.submit(TINY, "dave", address="10.0.0.7")  # ...cannot multiply the caps without bound
    finally:
        gate.set()
    wait_done(manager, *alice, bob)


def test_a_paused_run_gives_its_worker_back_and_resumes_with_the_same_numbers(make_manager, tmp_path):
    config = dataclasses.replace(TINY, epochs=30, augment=1, student=ModelSpec("mlp", 12, 2, dropout=0.3))
    alone = make_manager(RunStore(tmp_path / "alone"), workers=1)
    reference = wait_for_run(alone, alone.submit(config, "alice"))
    manager = make_manager(RunStore(tmp_path / "paused"), workers=1)
    paused = manager.submit(config, "alice")
    wait_until(lambda: distill_steps(manager, paused), what="the run's distillation steps")
    manager.pause(paused, "alice")
    wait_until(lambda: manager.get(paused).state == "paused", what="the run to pause")
    other = manager.submit(TINY, "bob")  # the only worker is free: bob's run trains while alice's waits
    assert wait_for_run(manager, other).state == "completed"
    assert manager.get(paused).state == "paused"
    manager.resume_run(paused, "alice")
    resumed = wait_for_run(manager, paused)
    assert resumed.state == "completed"
    assert _numbers(resumed) == _numbers(reference), "a pause changes nothing the run measures"


def test_a_paused_run_nobody_resumes_is_stopped_after_the_time_out(make_manager):
    manager = make_manager(paused_timeout_s=0.5)
    run_id = manager.submit(SLOW, "alice")
    wait_until(lambda: distill_steps(manager, run_id), what="the run's distillation steps")
    manager.pause(run_id, "alice")
    wait_until(lambda: manager.get(run_id).state == "paused", what="the run to pause")
    assert manager.get(run_id).pause_deadline is not None
    run = wait_for_run(manager, run_id, timeout=30)
    assert run.state == "cancelled" and "paused for more than" in run.message
    assert any(e["event"] == "StepLosses" for e in RunStore().read_events(run_id)), "what it measured is kept"


def test_deleting_a_live_run_stops_it_and_it_stays_deleted(manager):
    run_id = manager.submit(SLOW, "alice")
    wait_until(lambda: distill_steps(manager, run_id), what="the run's distillation steps")
    manager.delete(run_id, "alice")
    assert manager.get(run_id) is None
    wait_until(lambda: not manager._runs, what="the deleted run to stop")
    time.sleep(0.3)  # room for a late write from the worker
    assert not manager.store.folder(run_id).exists() and manager.get(run_id) is None
    assert manager.list_runs() == []
    queued = manager.submit(TINY, "alice")  # the worker is free again
    assert wait_for_run(manager, queued).state == "completed"


def test_a_read_that_races_a_delete_does_not_bring_the_run_back(make_manager):
    """Another browser opens a finished run just as its owner deletes it: that read began first and may show it, but
    what it cached must not bring the run back to the next reader (seen once in tests/test_run_lifecycle.py)."""
    from run_fakes import FakeExecutor

    run_id = make_manager(executor=FakeExecutor(steps=3)).submit(TINY, "alice")
    owner = make_manager(executor=FakeExecutor(steps=3))  # a fresh manager on the same folder: nothing cached yet
    wait_until(lambda: owner.get(run_id) is not None and owner.get(run_id).state == "completed", 30,
               what="the run to complete")
    owner._forget(run_id)
    real_read = owner.store.read_json

    def read_then_delete(read_id, name):
        found = real_read(read_id, name)
        if name == "config.json" and read_id == run_id:  # the reader has the record in hand; the owner deletes now
            owner.store.read_json = real_read
            owner.delete(run_id, "alice")
        return found

    owner.store.read_json = read_then_delete
    owner.get(run_id)  # the racing read (it may show the run it began to read)
    assert owner.store.read_json is real_read, "the read never reached the run's record"
    assert not owner.store.folder(run_id).exists()
    assert owner.get(run_id) is None and owner.list_runs() == []


def test_a_sweep_is_accepted_or_refused_whole(make_manager):
    manager = make_manager(max_live_per_browser=12)
    gate = threading.Event()
    original = manager._execute
    manager._execute = lambda run: (gate.wait(30), original(run))
    try:
        values = [1.0 + i for i in range(12)]
        sweep = [(dataclasses.replace(TINY, temperature=t), {"sweep": "s1", "value": t}) for t in values]
        ids = manager.submit_many(sweep, "alice")
        assert len(ids) == 12 and len(manager.runs_tagged("sweep", "s1")) == 12
        with pytest.raises(QueueFull, match="at most 12 per browser"):
            manager.submit_many([(c, {"sweep": "s2"}) for c, _ in sweep], "alice")
        bad = sweep[:3] + [(dataclasses.replace(TINY, student=ModelSpec("mlp", 8192, 16)), {"sweep": "s3"})]
        with pytest.raises(OverBudget, match="run 4 of 4"):
            manager.submit_many(bad, "bob")
        assert manager.runs_tagged("sweep", "s2") == [] and manager.runs_tagged("sweep", "s3") == []
        assert len(manager.store.run_ids()) == 12, "a refused sweep leaves no orphan runs"
    finally:
        gate.set()
    for run_id in ids:
        manager.cancel(run_id, "alice")


def test_finished_runs_leave_memory_and_listing_reads_no_event_logs(manager, monkeypatch):
    ids = [manager.submit(dataclasses.replace(TINY, seed=seed), "alice") for seed in range(3)]
    wait_done(manager, *ids)
    assert manager._runs == {}, "finished runs are on disk, not in memory"
    reads = []
    original = manager.store.iter_events
    monkeypatch.setattr(manager.store, "iter_events", lambda run_id: reads.append(run_id) or original(run_id))
    manager._finished.clear()
    runs = manager.list_runs("alice")
    assert [run.state for run in runs] == ["completed"] * 3 and reads == []
    assert runs[0].events and reads == [runs[0].id], "a run's log is read when someone looks at it"


def test_the_event_log_keeps_every_epoch_and_a_bounded_binned_loss_curve():
    log = EventLog(max_step_points=100)
    log.append({"phase": "distill", "event": "Started", "total_steps": 10_000})
    for step in range(1, 10_001):
        log.append({"phase": "distill", "event": "StepLosses", "step": step, "epoch": 1 + (step - 1) // 100,
                    "losses": {"hard": float(step)}})
        if step % 100 == 0:
            log.append({"phase": "distill", "event": "EpochEnd", "epoch": step // 100, "accuracy": {}})
    records = log.records()
    steps = [r for r in records if r["event"] == "StepLosses"]
    assert 50 <= len(steps) <= 100 and sum(r.get("count", 1) for r in steps) == 10_000
    assert sum(r["losses"]["hard"] * r.get("count", 1) for r in steps) == pytest.approx(sum(range(1, 10_001)))
    assert steps[-1]["step"] == 10_000 and [r["step"] for r in steps] == sorted(r["step"] for r in steps)
    assert [r["epoch"] for r in records if r["event"] == "EpochEnd"] == list(range(1, 101))
    assert records[0]["event"] == "Started"
    log.append({"phase": "distill", "event": "Snapshot", "epoch": 100, "logits": {}})
    assert len(log.records()) == len(records), "probe snapshots stay on disk only"


def test_only_a_few_finished_runs_keep_their_logs_in_memory(manager, monkeypatch):
    from kdviz.runs import finished

    monkeypatch.setattr(finished, "FINISHED_LOGS_CACHED", 2)
    ids = [manager.submit(dataclasses.replace(TINY, seed=seed, epochs=1), "alice") for seed in range(4)]
    wait_done(manager, *ids)
    # a run's status says "completed" a moment before its worker lets go of it: until then it is live in memory
    wait_until(lambda: not manager._runs, 30, what="the workers to let go of the finished runs")
    runs = [manager.get(run_id) for run_id in ids]
    counts = [len(run.events) for run in runs]  # each log read once from disk
    assert all(counts)
    loaded = [run for run in runs if run._log_loader is None]
    assert len(loaded) == 2, "older logs were dropped from memory"
    assert [len(run.events) for run in runs] == counts, "a dropped log is read again when asked for"


def test_an_experiment_runs_through_the_manager_and_keeps_its_results(manager):
    from kdviz import experiments
    from kdviz.experiments import gradient_variance

    config = gradient_variance.GradientVarianceConfig(dataclasses.replace(TINY, train_subset=0), epochs=(0, 1),
                                                      temperatures=(1.0, 4.0), batch_size=32)
    run = wait_for_run(manager, manager.submit(config, "alice"))
    assert run.state == "completed" and run.experiment == "gradient-variance"
    assert len(run.summary["points"]) == 4
    assert experiments.from_record(run.config) == config, "the run's record rebuilds its config"
    assert any(e["event"] == "Measured" for e in run.events)
    assert manager.list_runs("alice")[0].experiment == "gradient-variance"
    huge = dataclasses.replace(config, distill=dataclasses.replace(TINY, student=ModelSpec("mlp", 8192, 16)))
    with pytest.raises(OverBudget, match="memory"):
        manager.submit(huge, "alice")
