"""The run index agrees with the run folders (the truth) through creates, status changes, deletes, folders changed
behind its back, a rebuild, and a missing or corrupt index file; listing reads the index, not the folders."""
from __future__ import annotations

import json
import shutil

import pytest

from kdviz.core.identity import owner_key
from kdviz.runs.index import FILE_NAME
from kdviz.runs.store import RunStore


def run_id(n: int) -> str:
    return f"20260101-{n:06d}-abcdef"


def make_run(store: RunStore, n: int, owner: str, tags: dict | None = None) -> str:
    store.create(run_id(n), {"config": {"seed": n}, "owner": owner_key(owner), "created": float(n),
                             "tags": tags or {}})
    return run_id(n)


def from_folders(store: RunStore) -> dict:
    """What the folders say: id → (owner, created, state, tags)."""
    truth = {}
    for rid in store.run_ids():
        record, status = store.read_json(rid, "config.json"), store.read_json(rid, "status.json") or {}
        truth[rid] = (record["owner"], record["created"], status.get("state", "interrupted"), record.get("tags", {}))
    return truth


def from_index(store: RunStore) -> dict:
    rows = store.rows()
    assert rows is not None, "the index can be read"
    return {row.id: (row.owner, row.created, row.state, row.record.get("tags", {})) for row in rows}


def agree(store: RunStore) -> None:
    assert from_index(store) == from_folders(store)


def test_the_index_follows_creates_status_changes_and_deletes():
    store = RunStore()
    ids = [make_run(store, n, "alice" if n % 2 else "bob", {"sweep": "s1"} if n < 3 else {}) for n in range(6)]
    agree(store)
    store.write_status(ids[1], {"state": "running"})
    store.write_status(ids[2], {"state": "completed", "summary": {"kd": 1}})
    agree(store)
    store.delete(ids[3])
    agree(store)
    assert [row.id for row in store.rows(owner=owner_key("alice"))] == [ids[5], ids[1]], "by owner, newest first"
    assert [row.id for row in store.rows(tag=("sweep", "s1"))] == [ids[2], ids[1], ids[0]]
    assert store.rows(owner=owner_key("alice"))[1].state == "running"
    assert store.rows(tag=("sweep", "s1"))[0].status["summary"] == {"kd": 1}


def test_folders_changed_behind_the_index_back_are_found():
    store = RunStore()
    make_run(store, 1, "alice")
    gone = make_run(store, 2, "alice")
    agree(store)
    # An older kdviz (no index) adds a run folder, and someone removes one with rm -r.
    older = store.root / run_id(3)
    older.mkdir()
    (older / "config.json").write_text(json.dumps({"config": {}, "owner": owner_key("alice"), "created": 3.0}))
    (older / "status.json").write_text(json.dumps({"state": "completed"}))
    shutil.rmtree(store.folder(gone))
    agree(store)
    # A crash between status.json and its row: the next full check (a restarted server) finds it.
    (store.folder(run_id(1)) / "status.json").write_text(json.dumps({"state": "failed", "message": "x"}))
    store.index.verify_all()
    agree(store)


@pytest.mark.parametrize("damage", ["missing", "corrupt", "emptied"])
def test_a_missing_or_corrupt_index_is_rebuilt_from_the_folders(damage):
    store = RunStore()
    for n in range(5):
        make_run(store, n, "alice", {"sweep": "s"})
    store.write_status(run_id(2), {"state": "completed"})
    before = from_folders(store)
    store.index.reset()
    path = store.root / FILE_NAME
    for suffix in ("-wal", "-shm"):
        (store.root / (FILE_NAME + suffix)).unlink(missing_ok=True)
    if damage == "missing":
        path.unlink()
    elif damage == "corrupt":
        path.write_bytes(b"this is not a database, it is what a disk error leaves" * 100)
    else:
        path.write_bytes(b"")
    restarted = RunStore()
    assert from_index(restarted) == before
    assert [row.id for row in restarted.rows(tag=("sweep", "s"))] == [run_id(n) for n in reversed(range(5))]
    make_run(restarted, 9, "bob")
    agree(restarted)


def test_two_stores_on_one_folder_see_each_other(tmp_path):
    """A hall: the writer's store and a replica's store on the same runs folder."""
    writer, reader = RunStore(tmp_path / "runs"), RunStore(tmp_path / "runs")
    make_run(writer, 1, "alice")
    assert [row.id for row in reader.rows(owner=owner_key("alice"))] == [run_id(1)]
    writer.write_status(run_id(1), {"state": "completed"})
    assert reader.rows()[0].state == "completed"
    writer.delete(run_id(1))
    assert reader.rows() == []


def test_listing_a_browser_runs_opens_no_folder_and_follows_the_folders(make_manager, monkeypatch):
    manager = make_manager(workers=1)
    store = manager.store
    for n in range(8):
        make_run(store, n, "alice" if n < 3 else "bob", {"sweep": "mine"} if n < 2 else {})
        store.write_status(run_id(n), {"state": "completed", "summary": {"n": n}})
    opened = []
    original = store.read_json
    monkeypatch.setattr(store, "read_json", lambda rid, name: opened.append(rid) or original(rid, name))
    runs = manager.list_runs("alice")
    assert [run.id for run in runs] == [run_id(2), run_id(1), run_id(0)]
    assert [run.summary for run in runs] == [{"n": 2}, {"n": 1}, {"n": 0}] and runs[0].state == "completed"
    assert [run.id for run in manager.runs_tagged("sweep", "mine")] == [run_id(1), run_id(0)]
    assert opened == [], "the list comes from the index"
    # A status rewritten without its row (a crash in between) is seen, and the row mended.
    (store.folder(run_id(1)) / "status.json").write_text(json.dumps({"state": "failed", "message": "disk full"}))
    assert {run.id: run.state for run in manager.list_runs("alice")}[run_id(1)] == "failed"
    agree(store)
    manager.delete(run_id(0), "alice")
    assert [run.id for run in manager.list_runs("alice")] == [run_id(2), run_id(1)]
    agree(store)
    assert manager.list_runs("") == [] and len(manager.list_runs()) == 7


def test_the_listing_survives_an_unreadable_index(make_manager, monkeypatch):
    manager = make_manager(workers=1)
    make_run(manager.store, 1, "alice")
    monkeypatch.setattr(manager.store.index, "rows", lambda *args, **kwargs: None)
    assert [run.id for run in manager.list_runs("alice")] == [run_id(1)], "the folders, when the index fails"
