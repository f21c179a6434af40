"""Writing a run's folder as it goes (kdviz.runs.store): its events in batches, numbered status snapshots that never
go back in time, its students at the end; never into a deleted run's folder, and a folder removed under a live run is
rebuilt from memory."""
from __future__ import annotations

from kdviz.runs.run import Run


class Persistence:
    """The run manager's writing (a mixin of kdviz.runs.manager.RunManager): uses self.store (a RunStore) and
    self._lock (the manager's one lock, under which each status snapshot is numbered)."""

    def _write(self, run: Run, action) -> bool:
        with run.write_lock:
            if run.deleted:
                return False
            try:
                action()
                return True
            except OSError:
                return False

    def _flush(self, run: Run) -> None:
        records, run.pending = run.pending, []
        if records and not self._write(run, lambda: self.store.append_events(run.id, records)) and not run.deleted:
            self._rebuild(run)  # the folder was removed under us: rebuild it from memory

    def _rebuild(self, run: Run) -> None:
        def rebuild():
            self.store.create(run.id, self._record(run))
            self.store.rewrite_events(run.id, list(run.events))
            self.store.write_status(run.id, run.status_record())

        if not self._write(run, rebuild) and not run.deleted:
            run.message = "the run's folder cannot be written; its data is kept in memory only"

    @staticmethod
    def _record(run: Run) -> dict:
        return {"config": run.config, "owner": run.owner, "created": run.created, "tags": run.tags}

    def _save_status(self, run: Run) -> None:
        """Write the run's status as it is now. Threads that change a run one after the other may write out of order:
        the snapshot is numbered under the lock and an older one never replaces a newer one on disk."""
        with self._lock:
            snapshot = self._status_snapshot(run)
        self._write_status(run, *snapshot)

    @staticmethod
    def _status_snapshot(run: Run) -> tuple[dict, int]:
        """The run's status record and its number (call with the lock held)."""
        run.status_seq += 1
        return run.status_record(), run.status_seq

    def _write_status(self, run: Run, record: dict, seq: int) -> None:
        def write():
            if seq > run.status_written:
                self.store.write_status(run.id, record)
                run.status_written = seq

        self._write(run, write)

    def _save_students(self, run: Run, finished) -> None:
        from kdviz.core.checkpoints import students_bytes
        from kdviz.core.paths import atomic_write_bytes

        payload = students_bytes(run.config, finished.models)
        self._write(run, lambda: atomic_write_bytes(self.store.students_path(run.id), payload))
