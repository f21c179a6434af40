"""An index of the run folders (sqlite, in the runs folder) so that listing a browser's runs costs its own runs.

The folders stay the source of truth: every row is what a folder's config.json and status.json say, stamped with the
status file's mtime, so a reader can tell a stale row (it stats the status file it is about to show: one stat per run
it lists, never one per run on the server) and the index can always be thrown away and rebuilt from the folders.

Who writes: the process that drives runs (the run manager, or the hall's service) through kdviz.runs.store.RunStore;
other server processes (a hall's replicas) read, in WAL mode, without blocking the writer. A reader also repairs what
a writer could not do: a folder that appeared or vanished without its row (a crash between the folder and the row, an
older kdviz that knew no index) changes the runs folder's mtime, which the index remembers (meta root_mtime) after
each of its own creates and deletes; when they differ, the folder names and the rows are compared and made to agree.
A status written without its row (a crash in between) is found by the stamp check above, and by the full check
(`sync(full=True)`) the run manager does when it starts. A missing, corrupt or older-format file is rebuilt.

Removal notices (runs the disk quota removed, kdviz.runs.disk) live here too: they are the only rows that cannot be
rebuilt from folders (the folders are gone), and losing them with a corrupt file loses a notice, not a run.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1
FILE_NAME = "index.sqlite3"
LIVE_STATES = ("queued", "running", "paused")
NOTICES_KEPT = 50  # removal notices kept per browser (the newest): bounded however long the server lives
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, owner TEXT NOT NULL, created REAL NOT NULL,
    state TEXT NOT NULL, status_ns INTEGER, bytes INTEGER NOT NULL DEFAULT 0, record TEXT NOT NULL,
    status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_owner ON runs (owner, created DESC);
CREATE INDEX IF NOT EXISTS runs_by_state ON runs (state);
CREATE TABLE IF NOT EXISTS tags (run_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (run_id, name));
CREATE INDEX IF NOT EXISTS tags_by_value ON tags (name, value);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS removed (owner TEXT NOT NULL, run_id TEXT NOT NULL, removed_at REAL NOT NULL,
    config TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (owner, run_id));
"""


@dataclass(frozen=True)
class Row:
    """One run as the index knows it: config.json's record and status.json's status, as of status_ns."""

    id: str
    owner: str
    created: float
    state: str
    status_ns: int | None
    bytes: int
    record: dict
    status: dict


def tag_value(value) -> str:
    """A tag's value as the index compares it: its JSON (4.0 and 4 differ, as they do in a run's tags dict)."""
    return json.dumps(value, sort_keys=True)


class RunIndex:
    """The index of one runs folder; thread-safe (one connection, one lock: every query is a few ms at most)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / FILE_NAME
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._seen_root_mtime: int | None = None  # the runs folder's mtime this process last found in agreement
        self._rebuilt = False  # the last opening rebuilt the file (a full check just ran)

    # -- opening, rebuilding --
    def _connect(self) -> sqlite3.Connection:
        """The open connection, opening (and rebuilding a missing, corrupt or older-format file) on first use."""
        if self._db is not None:
            return self._db
        self.root.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        try:
            db = self._open()
            if not fresh and db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                db.close()
                raise sqlite3.DatabaseError("an index of another format")
        except sqlite3.DatabaseError:
            self._discard_file()
            db, fresh = self._open(), True
        self._db = db
        if fresh:
            self._rebuild()
            self._rebuilt = True
        return db

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # readers in other processes never block the writer
            db.execute("PRAGMA synchronous=NORMAL")  # a power cut may lose the last rows: a rebuild finds them again
            # the write-ahead log is checkpointed every 1000 pages (4 MB) but keeps its largest size on disk unless
            # told: truncated back to 1 MB after each checkpoint, the index's files stay about its database's size
            db.execute("PRAGMA journal_size_limit=1048576")
            db.executescript(_SCHEMA)
            if db.execute("PRAGMA user_version").fetchone()[0] == 0 and not self._has_rows(db):
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @staticmethod
    def _has_rows(db: sqlite3.Connection) -> bool:
        return db.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is not None

    def _discard_file(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def _rebuild(self) -> None:
        """Index every folder (a new or discarded index): reads each run's config.json and status.json once."""
        self.sync(full=True)

    def reset(self) -> None:
        """Close the connection; the next use opens the file again (and rebuilds it if it is unreadable)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
            self._db, self._seen_root_mtime = None, None

    def _guarded(self, action):
        """Run action(db); a corrupt file is discarded and rebuilt once; None when the index cannot be used at all
        (the caller falls back to the folders)."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    return action(self._connect())
                except sqlite3.DatabaseError as error:
                    self.reset()
                    if attempt == 2 or "locked" in str(error) or "busy" in str(error):
                        return None
                    if "malformed" in str(error) or "not a database" in str(error):
                        self._discard_file()
            return None

    # -- keeping it in step with the folders --
    def _root_mtime(self) -> int | None:
        try:
            return self.root.stat().st_mtime_ns
        except OSError:
            return None

    def check(self) -> bool:
        """Make the rows agree with the folder names if something outside this index changed them (one stat when
        nothing did); False when the index cannot be used."""
        def verify(db):
            now = self._root_mtime()
            if now is not None and now == self._seen_root_mtime:
                return True
            known = db.execute("SELECT value FROM meta WHERE key='root_mtime'").fetchone()
            if known is None or int(known[0]) != now:
                self.sync(full=False)
            self._seen_root_mtime = now
            return True

        return bool(self._guarded(verify))

    def verify_all(self) -> None:
        """The full check (every status file's stamp against its row): what the run manager does when it starts."""
        with self._lock:
            self.reset()  # a file replaced or damaged while this process had it open is opened (or rebuilt) anew
            self._rebuilt = False
            self._guarded(lambda db: None if self._rebuilt else self.sync(full=True))

    def sync(self, full: bool = False) -> None:
        """Rows for folders without one, none for rows without a folder; full: also re-read every run whose
        status file changed since its row was written (what a crash between the two leaves)."""
        from kdviz.core.checkpoints import is_valid_run_id
        from kdviz.runs.store import read_folder

        db = self._connect()
        before = self._root_mtime()
        on_disk = {p.name for p in self.root.iterdir() if is_valid_run_id(p.name) and p.is_dir()} \
            if self.root.is_dir() else set()
        rows = dict(db.execute("SELECT id, status_ns FROM runs").fetchall())
        stale = [run_id for run_id in on_disk if run_id not in rows]
        if full:
            stale += [run_id for run_id in on_disk & rows.keys() if _status_ns(self.root / run_id) != rows[run_id]]
        with _transaction(db):
            for run_id in rows.keys() - on_disk:
                _delete(db, run_id)
            for run_id in stale:
                found = read_folder(self.root / run_id)
                if found is not None:
                    _upsert(db, run_id, *found)
            _set_meta(db, "root_mtime", before)
        for run_id in stale:  # a folder deleted while it was being indexed: its row goes too
            if not (self.root / run_id).is_dir():
                self._guarded(lambda db, run_id=run_id: _delete(db, run_id))

    # -- writes (the writer's; each keeps the folder first, the row second) --
    def put(self, run_id: str, record: dict, status: dict, status_ns: int | None, size: int,
            root_mtime_before: int | None = None) -> None:
        """The row of a run whose files were just written. root_mtime_before: the runs folder's mtime before this
        run's folder was made; the index's remembered mtime moves on only if nothing else changed the folder."""
        def write(db):
            with _transaction(db):
                _upsert(db, run_id, record, status, status_ns, size)
                if root_mtime_before is not None:
                    _advance_root_mtime(db, root_mtime_before, self._root_mtime())

        self._guarded(write)

    def update_status(self, run_id: str, status: dict, status_ns: int | None, size: int) -> bool:
        """A run's new status; False when the run has no row (the caller then indexes it from its folder)."""
        def write(db):
            cursor = db.execute("UPDATE runs SET state=?, status=?, status_ns=?, bytes=? WHERE id=? AND "
                                "(status_ns IS NULL OR ? IS NULL OR status_ns <= ?)",
                                (status.get("state", "interrupted"), json.dumps(status), status_ns, size, run_id,
                                 status_ns, status_ns))
            return cursor.rowcount > 0 or db.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone()

        return bool(self._guarded(write))

    def remove(self, run_id: str, root_mtime_before: int | None = None) -> None:
        def write(db):
            with _transaction(db):
                _delete(db, run_id)
                if root_mtime_before is not None:
                    _advance_root_mtime(db, root_mtime_before, self._root_mtime())

        self._guarded(write)

    # -- reads --
    def rows(self, owner: str | None = None, tag: tuple[str, object] | None = None,
             states: tuple[str, ...] | None = None) -> list[Row] | None:
        """The rows of one owner (or all), of one tag (name, value) or in some states, newest first; None when the
        index cannot be used (the caller reads the folders instead)."""
        if not self.check():
            return None
        where, args = [], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if tag is not None:
            where.append("id IN (SELECT run_id FROM tags WHERE name = ? AND value = ?)")
            args += [tag[0], tag_value(tag[1])]
        if states is not None:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args += list(states)
        sql = "SELECT id, owner, created, state, status_ns, bytes, record, status FROM runs" + \
            (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created DESC, id DESC"
        found = self._guarded(lambda db: db.execute(sql, args).fetchall())
        if found is None:
            return None
        return [Row(i, o, c, s, n, b, json.loads(r), json.loads(t)) for i, o, c, s, n, b, r, t in found]

    def bytes_by_owner(self) -> dict[str, int] | None:
        """Disk used by each browser's runs (as last written: a live run's folder grows after that)."""
        if not self.check():
            return None
        found = self._guarded(lambda db: db.execute("SELECT owner, SUM(bytes) FROM runs GROUP BY owner").fetchall())
        return None if found is None else {owner: int(total or 0) for owner, total in found}

    def oldest_finished(self, owner: str) -> list[Row]:
        """One browser's finished runs, oldest first: the order the disk quota removes them in."""
        found = self._guarded(lambda db: db.execute(
            "SELECT id, owner, created, state, status_ns, bytes, record, status FROM runs WHERE owner = ? AND "
            f"state NOT IN ({', '.join('?' * len(LIVE_STATES))}) ORDER BY created, id",
            (owner, *LIVE_STATES)).fetchall())
        return [Row(i, o, c, s, n, b, json.loads(r), json.loads(t)) for i, o, c, s, n, b, r, t in found or []]

    # -- removal notices --
    def add_notice(self, owner: str, run_id: str, config: dict, reason: str) -> None:
        def write(db):
            with _transaction(db):
                db.execute("INSERT OR REPLACE INTO removed VALUES (?, ?, ?, ?, ?)",
                           (owner, run_id, time.time(), json.dumps(config), reason))
                db.execute("DELETE FROM removed WHERE owner = ? AND run_id NOT IN (SELECT run_id FROM removed WHERE "
                           "owner = ? ORDER BY removed_at DESC LIMIT ?)", (owner, owner, NOTICES_KEPT))

        self._guarded(write)

    def notices(self, owner: str) -> list[dict]:
        """The runs of this browser the disk quota removed, newest first (at most NOTICES_KEPT)."""
        found = self._guarded(lambda db: db.execute(
            "SELECT run_id, removed_at, config, reason FROM removed WHERE owner = ? ORDER BY removed_at DESC",
            (owner,)).fetchall())
        return [{"run_id": r, "removed_at": t, "config": json.loads(c), "reason": why} for r, t, c, why in found or []]

    def dismiss_notices(self, owner: str) -> None:
        self._guarded(lambda db: db.execute("DELETE FROM removed WHERE owner = ?", (owner,)))


class _transaction:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on an error): a row and its tags change together or not at all."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, error, trace):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _upsert(db, run_id: str, record: dict, status: dict, status_ns: int | None, size: int) -> None:
    """Insert or replace a run's row and tags; a row already stamped newer than status_ns is kept (two writers)."""
    newer = db.execute("SELECT 1 FROM runs WHERE id = ? AND status_ns > ?", (run_id, status_ns or 0)).fetchone()
    if newer and status_ns is not None:
        return
    db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (run_id, str(record.get("owner", "")), float(record.get("created") or 0.0),
                status.get("state", "interrupted"), status_ns, int(size), json.dumps(record), json.dumps(status)))
    db.execute("DELETE FROM tags WHERE run_id = ?", (run_id,))
    tags = record.get("tags") or {}
    if isinstance(tags, dict):
        db.executemany("INSERT INTO tags VALUES (?, ?, ?)",
                       [(run_id, str(name), tag_value(value)) for name, value in tags.items()])


def _delete(db, run_id: str) -> None:
    db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
    db.execute("DELETE FROM tags WHERE run_id = ?", (run_id,))


def _set_meta(db, key: str, value) -> None:
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, None if value is None else str(value)))


def _advance_root_mtime(db, before: int | None, after: int | None) -> None:
    """The remembered runs-folder mtime follows this writer's own change only if it was current before it: a
    folder someone else added meanwhile is still found by the next check."""
    db.execute("UPDATE meta SET value = ? WHERE key = 'root_mtime' AND value = ?",
               (None if after is None else str(after), None if before is None else str(before)))


def _status_ns(folder: Path) -> int | None:
    try:
        return os.stat(folder / "status.json").st_mtime_ns
    except OSError:
        return None
