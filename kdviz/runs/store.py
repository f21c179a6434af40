"""Runs on disk: KDVIZ_HOME/runs/<id>/ holds config.json, status.json, events.jsonl and students.pt; an index of them
(kdviz.runs.index, runs/index.sqlite3) answers "which runs are this browser's?" without opening every folder."""
from __future__ import annotations

import dataclasses
import json
import secrets
import os
import shutil
import time
from pathlib import Path

from kdviz.core import checkpoints
from kdviz.core.checkpoints import is_valid_run_id
from kdviz.core.paths import atomic_write_text, runs_dir

LIVE_STATES = ("queued", "running", "paused")
FINAL_STATES = ("completed", "cancelled", "diverged", "failed", "interrupted")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def read_folder(folder: Path) -> tuple[dict, dict, int | None, int] | None:
    """(config.json's record, status.json's status, the status file's mtime in ns, the folder's bytes) of a run
    folder, or None when it has no readable config (not a run, or one being made or removed)."""
    try:
        record = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    stamp = _mtime_ns(folder / "status.json")
    try:
        status = json.loads((folder / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        status = None
    return record, status if isinstance(status, dict) else {"state": "interrupted"}, stamp, folder_bytes(folder)


def folder_bytes(folder: Path) -> int:
    """What a run folder holds on disk (its files' sizes; a run folder has no subfolders)."""
    try:
        return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
    except OSError:
        return 0


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class RunStore:
    """Reads and writes run folders; every JSON write is atomic, the event log is append-only JSON lines. Each create,
    status write and delete also updates the index, after the folder (the folder is the truth if a crash comes in
    between; kdviz.runs.index finds and repairs the difference)."""

    def __init__(self, root: Path | None = None):
        from kdviz.runs.index import RunIndex

        self.root = Path(root) if root is not None else runs_dir()
        self.index = RunIndex(self.root)

    def folder(self, run_id: str) -> Path:
        return checkpoints.run_folder(run_id, self.root)

    def create(self, run_id: str, record: dict) -> None:
        folder = self.folder(run_id)
        self.root.mkdir(parents=True, exist_ok=True)
        before = _mtime_ns(self.root)
        folder.mkdir(exist_ok=True)
        atomic_write_text(folder / "config.json", json.dumps(record, indent=2))
        status = self._write_status_file(run_id, {"state": "queued"})
        self.index.put(run_id, record, status, _mtime_ns(folder / "status.json"), folder_bytes(folder), before)

    def write_status(self, run_id: str, status: dict) -> None:
        status = self._write_status_file(run_id, status)
        folder = self.folder(run_id)
        if not self.index.update_status(run_id, status, _mtime_ns(folder / "status.json"), folder_bytes(folder)):
            self.reindex(run_id)

    def _write_status_file(self, run_id: str, status: dict) -> dict:
        folder = self.folder(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        status = {**status, "updated": time.time()}
        atomic_write_text(folder / "status.json", json.dumps(status, indent=2))
        return status

    def reindex(self, run_id: str) -> None:
        """Bring a run's row in line with its folder (after a write whose row was missing, or a stale row)."""
        found = read_folder(self.folder(run_id))
        if found is None:
            self.index.remove(run_id)
        else:
            self.index.put(run_id, *found)

    def append_events(self, run_id: str, events: list[dict]) -> None:
        with open(self.folder(run_id) / "events.jsonl", "a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(event) + "\n" for event in events))
            handle.flush()

    def rewrite_events(self, run_id: str, events: list[dict]) -> None:
        text = "".join(json.dumps(event) + "\n" for event in events)
        atomic_write_text(self.folder(run_id) / "events.jsonl", text)

    def read_json(self, run_id: str, name: str) -> dict | None:
        try:
            return json.loads((self.folder(run_id) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def read_events(self, run_id: str) -> list[dict]:
        """The whole event log (for a CSV download or the explorer's snapshots); see iter_events."""
        return list(self.iter_events(run_id))

    def iter_events(self, run_id: str):
        """The event log line by line, without holding the file in memory; a line torn by a crash mid-write is
        skipped, everything before it is kept."""
        try:
            handle = open(self.folder(run_id) / "events.jsonl", encoding="utf-8")
        except OSError:
            return
        with handle:
            for line in handle:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue

    def read_new_events(self, run_id: str, offset: int) -> tuple[list[dict], int]:
        """The events appended since byte `offset` of the log, and the offset to ask from next time: a reader in
        another process follows a live run by reading only what was added (a line still being written waits for the
        next call). A log that got shorter was rewritten: it is read again from the start."""
        path = self.folder(run_id) / "events.jsonl"
        try:
            size = path.stat().st_size
            if size < offset:
                offset = 0
            if size == offset:
                return [], offset
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read(size - offset)
        except OSError:
            return [], offset
        complete = chunk.rfind(b"\n") + 1
        events = []
        for line in chunk[:complete].splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events, offset + complete

    def status_stamp(self, run_id: str) -> int | None:
        """When status.json last changed (ns), or None: a cached record of a finished run is fresh while it holds."""
        try:
            return (self.folder(run_id) / "status.json").stat().st_mtime_ns
        except OSError:
            return None

    def rows(self, owner: str | None = None, tag: tuple[str, object] | None = None, states=None):
        """The index's rows (kdviz.runs.index.Row) of one owner's runs, of a tag, or all, newest first; None when
        the index cannot be read (callers then read the folders: run_ids)."""
        return self.index.rows(owner, tag, states)

    def run_ids(self) -> list[str]:
        """Every run on disk, newest first (a scan of the runs folder: the index's rows are the cheap way)."""
        if not self.root.is_dir():
            return []
        ids = [p.name for p in self.root.iterdir() if p.is_dir() and is_valid_run_id(p.name)]
        return sorted(ids, reverse=True)

    def mark_interrupted(self) -> list[str]:
        """After a server restart, runs that were live belong to a dead process: keep their data, say so."""
        self.index.verify_all()  # the restarted writer first brings the index in line with every folder
        rows = self.rows(states=LIVE_STATES)
        marked = []
        for run_id in self.run_ids() if rows is None else [row.id for row in rows]:
            status = self.read_json(run_id, "status.json") or {}
            if status.get("state") in LIVE_STATES:
                self.write_status(run_id, {**status, "state": "interrupted",
                                           "message": "the server stopped during this run; what it measured is kept"})
                marked.append(run_id)
        return marked

    def delete(self, run_id: str) -> None:
        folder, before = self.folder(run_id), _mtime_ns(self.root)
        shutil.rmtree(folder, ignore_errors=True)
        self.index.remove(run_id, before if not folder.exists() else None)

    def latest_completed(self, teacher) -> str | None:
        """The newest run that distilled this teacher (a TeacherConfig), completed and saved its students, or None.

        The one answer to "which run is the latest?": a run's students are only ever shown beside the teacher they
        learnt from, so the run's recorded teacher config must equal the teacher's (both as JSON); a run on the
        same dataset with another teacher does not count.
        """
        wanted = json.loads(json.dumps(dataclasses.asdict(teacher)))
        for run_id in self.run_ids():
            status, record = self.read_json(run_id, "status.json") or {}, self.read_json(run_id, "config.json") or {}
            if status.get("state") == "completed" and (record.get("config") or {}).get("teacher") == wanted \
                    and self.students_path(run_id).is_file():
                return run_id
        return None

    def students_path(self, run_id: str) -> Path:
        return checkpoints.students_path(run_id, self.root)

    def exists(self, run_id: str) -> bool:
        return is_valid_run_id(run_id) and (self.root / run_id / "config.json").is_file()

    def load_students(self, run_id: str):
        """The trained hard-label and KD students of a completed run: (DistillConfig, {"hard": model, "kd": model})."""
        return checkpoints.load_students(self.students_path(run_id))
