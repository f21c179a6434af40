"""Finished runs read from disk on demand, through small caches, so that memory stays bounded however long the server
lives: run objects and config records in LRUs keyed by their status file's stamp, and the event logs of only the last
few read (the viewers of the same past runs)."""
from __future__ import annotations

import collections

from kdviz.runs.log import EventLog
from kdviz.runs.run import Run

FINISHED_RUNS_CACHED = 1024  # finished runs read from disk kept as objects (config, status; a few KB each)
FINISHED_LOGS_CACHED = 8  # of those, the ones whose event logs stay loaded (viewers of the same past runs)
RECORDS_CACHED = 1024  # config.json records of runs on disk (about 3 KB each: a few MB at most)


class FinishedRuns:
    """The run manager's caches of finished runs (a mixin of kdviz.runs.manager.RunManager): uses self.store and
    self._lock (the manager's one lock also guards the caches)."""

    def _init_caches(self) -> None:
        self._records: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self._finished: collections.OrderedDict[str, tuple[int, Run]] = collections.OrderedDict()
        self._loaded_logs: collections.OrderedDict[str, Run] = collections.OrderedDict()

    def _forget(self, run_id: str) -> None:
        """Drop a deleted run from the caches of finished runs (call with the lock held)."""
        self._finished.pop(run_id, None)
        self._loaded_logs.pop(run_id, None)
        self._records.pop(run_id, None)

    def _load(self, run_id: str, row=None) -> Run | None:
        """A finished run from disk (or from its index row, when the row is as new as the status file); cached while
        its status file is unchanged (records and logs in bounded LRUs)."""
        stamp = self.store.status_stamp(run_id)
        with self._lock:
            cached = self._finished.get(run_id)
            if cached is not None and cached[0] == stamp:
                self._finished.move_to_end(run_id)
                return cached[1]
            record = self._records.get(run_id)
        if row is not None and stamp is not None and row.status_ns == stamp:
            record, status = row.record, row.status
        else:
            if row is not None and stamp is not None:  # a row behind its folder (a crash between the two): mend it
                self.store.reindex(run_id)
            if record is None or (stamp is None and not self.store.exists(run_id)):
                record = self.store.read_json(run_id, "config.json")
                if record is None:  # never was, or deleted: a record cached by a read that raced the delete goes too
                    with self._lock:
                        self._records.pop(run_id, None)
                    return None
            status = self.store.read_json(run_id, "status.json") or {"state": "interrupted"}
        run = Run(run_id, record.get("config", {}), record.get("owner", ""), record.get("created", 0.0),
                  status.get("state", "interrupted"))
        run._log_loader = run._reload = lambda: self._read_log(run)
        run.message, run.summary = status.get("message", ""), status.get("summary")
        run.tags = record.get("tags", {})
        run.started_at, run.finished_at = status.get("started_at"), status.get("finished_at")
        run.active_seconds = status.get("active_seconds") or 0.0
        with self._lock:
            self._records[run_id] = record
            self._records.move_to_end(run_id)
            while len(self._records) > RECORDS_CACHED:
                self._records.popitem(last=False)
            if stamp is not None and not run.live:  # a live run from disk belongs to another process: no cache
                self._finished[run_id] = (stamp, run)
                while len(self._finished) > FINISHED_RUNS_CACHED:
                    self._finished.popitem(last=False)[1][1].unload()
        return run

    def _read_log(self, run: Run) -> EventLog:
        """A finished run's log from disk (bounded like a live one); only the last few read stay in memory."""
        log = EventLog()
        log.extend(self.store.iter_events(run.id))
        with self._lock:
            self._loaded_logs[run.id] = run
            self._loaded_logs.move_to_end(run.id)
            evicted = self._loaded_logs.popitem(last=False)[1] if len(self._loaded_logs) > FINISHED_LOGS_CACHED \
                else None
        if evicted is not None and evicted is not run:
            evicted.unload()
        return log
