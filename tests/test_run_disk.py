"""The disk quota: a new run makes room by removing the oldest finished runs (of its browser, or of whoever uses the
most disk), never a live one; each removal is reported to its browser; a run that can never fit is refused first."""
from __future__ import annotations

import pytest

from kdviz.core.budget import OverBudget
from kdviz.core.engine import DistillConfig, TeacherConfig
from kdviz.core.identity import owner_key
from kdviz.core.models import ModelSpec
from kdviz.runs.disk import DiskFull

TINY = DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0),
                     ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.5, epochs=2, batch_size=64, train_subset=200)


def past_run(store, n: int, owner: str, size: int, state: str = "completed") -> str:
    """A run folder of about `size` bytes (its students.pt), in `state`, created at time n."""
    run_id = f"20260101-{n:06d}-abcdef"
    store.create(run_id, {"config": {"seed": n}, "owner": owner_key(owner), "created": float(n), "tags": {}})
    store.students_path(run_id).write_bytes(b"\0" * size)
    store.write_status(run_id, {"state": state})
    return run_id


@pytest.fixture
def estimate(make_manager):
    return make_manager(workers=1).check(TINY).disk_bytes


def test_the_estimate_counts_students_weights_and_the_event_log(estimate):
    assert 2 * 4 * 600 < estimate < 1_000_000, "two 8-unit students' weights, a short log: tens of KB"
    wide = DistillConfig(TINY.teacher, ModelSpec("mlp", 800, 1), epochs=2, batch_size=64, train_subset=200)
    from kdviz.core.budget import run_cost

    assert run_cost(wide, True).disk_bytes > 2 * 4 * 800 * 64, "a 100× wider student: at least its weights"


def test_a_browser_over_its_quota_loses_its_oldest_finished_runs_and_is_told(make_manager, estimate):
    manager = make_manager(workers=1, max_disk_per_browser_bytes=int(3.5 * estimate), max_disk_bytes=None)
    store = manager.store
    old = [past_run(store, n, "alice", estimate) for n in (1, 2, 3)]
    live = past_run(store, 4, "alice", estimate, state="running")  # another process's live run: never removed
    others = past_run(store, 0, "bob", 10 * estimate)
    new = manager.submit(TINY, "alice")
    on_disk = set(store.run_ids())
    assert old[0] not in on_disk and old[1] not in on_disk, "the two oldest finished runs made room"
    assert {old[2], live, others, new} <= on_disk, "the newest finished, the live run and bob's are kept"
    notices = manager.removed_runs("alice")
    assert [notice["run_id"] for notice in notices] == [old[1], old[0]]
    assert notices[0]["config"] == {"seed": 2} and "disk" in notices[0]["reason"]
    assert manager.removed_runs("bob") == [] and [r.id for r in manager.list_runs("alice")][-1] == old[2]
    manager.dismiss_removed("alice")
    assert manager.removed_runs("alice") == []


def test_the_server_quota_takes_from_the_browser_using_the_most_disk(make_manager, estimate):
    manager = make_manager(workers=1, max_disk_bytes=6 * estimate, max_disk_per_browser_bytes=None)
    store = manager.store
    heavy = [past_run(store, n, "bob", estimate) for n in range(1, 6)]
    mine = past_run(store, 10, "alice", estimate)
    manager.submit(TINY, "alice")
    on_disk = set(store.run_ids())
    assert mine in on_disk and heavy[2] in on_disk
    assert heavy[0] not in on_disk and heavy[1] not in on_disk, "bob, the heaviest user, loses his two oldest"
    assert [notice["run_id"] for notice in manager.removed_runs("bob")] == [heavy[1], heavy[0]]


def test_a_run_that_can_never_fit_is_refused_before_anything_is_queued_or_removed(make_manager, estimate):
    manager = make_manager(workers=1, max_disk_per_browser_bytes=estimate // 2, max_disk_bytes=None)
    kept = past_run(manager.store, 1, "alice", estimate)
    with pytest.raises(OverBudget, match="on disk.*per browser") as refused:
        manager.submit(TINY, "alice")
    assert refused.value.limit == "disk"
    assert manager.store.run_ids() == [kept] and manager.removed_runs("alice") == []


def test_live_runs_are_never_removed_to_make_room(make_manager, estimate):
    manager = make_manager(workers=1, max_disk_per_browser_bytes=int(1.5 * estimate), max_disk_bytes=None)
    live = past_run(manager.store, 1, "alice", estimate, state="running")
    finished = past_run(manager.store, 2, "alice", estimate // 4)
    with pytest.raises(DiskFull, match="live runs"):
        manager.submit(TINY, "alice")
    assert set(manager.store.run_ids()) == {live, finished}, "a refused run removes nothing"
