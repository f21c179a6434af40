"""The run manager: a FIFO queue of distillation runs served by worker threads, persisted by the run store."""
from __future__ import annotations

import threading
import time

class Run:
    """A distillation run as the app sees it: config, state, and its events (in memory while the server lives)."""

    def __init__(self, run_id: str, config: dict, owner: str, created: float, state: str = "queued",
                 config_object=None):
        self.id, self.config, self.owner, self.created = run_id, config, owner, created
        self.config_object = config_object  # the DistillConfig itself, for runs started by this process
        self.tags: dict = {}  # e.g. {"sweep": id, "parameter": "temperature", "value": 4.0}
        self.state = state
        self.message = ""
        self.summary: dict | None = None
        self.events: list[dict] = []  # append-only; readers take a slice, so no lock is needed to read
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.cancel_requested = threading.Event()
        self.resume = threading.Event()
        self.resume.set()

    @property
    def live(self) -> bool:
        return self.state in ("queued", "running", "paused")

    def status_record(self) -> dict:
        return {"state": self.state, "message": self.message, "summary": self.summary,
                "started_at": self.started_at, "finished_at": self.finished_at}


class QueueFull(ValueError):
    """More runs were asked for than the server accepts; the message says how many are allowed."""


class RunManager:
    """Process-wide: a FIFO queue of runs served by a bounded pool of worker threads, persisted under runs/.

    Each run trains (or loads) its teacher, then distils; its events go to memory for live charts and to
    events.jsonl for history. A restart marks runs that were live as interrupted and keeps what they measured.
    """

    def __init__(self, store=None, workers: int = 1, max_queued_per_owner: int = 8, max_queued: int = 64):
        from kdviz.runs.store import RunStore

        self.store = store or RunStore()
        self.max_queued_per_owner, self.max_queued = max_queued_per_owner, max_queued
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: list[str] = []
        self._runs: dict[str, Run] = {}
        self.store.mark_interrupted()
        self._workers = [threading.Thread(target=self._work, name=f"kdviz-worker-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for worker in self._workers:
            worker.start()

    # -- asking for runs --
    def submit(self, config, owner: str, tags: dict | None = None) -> str:
        import dataclasses

        from kdviz.core.engine import check_config
        from kdviz.runs.store import new_run_id

        check_config(config)
        with self._lock:
            if len(self._queue) >= self.max_queued:
                raise QueueFull(f"the server already has {len(self._queue)} runs waiting; try again when some finish")
            mine = sum(self._runs[r].owner == owner for r in self._queue)
            if mine >= self.max_queued_per_owner:
                raise QueueFull(f"you already have {mine} runs waiting (at most {self.max_queued_per_owner})")
            run = Run(new_run_id(), dataclasses.asdict(config), owner, time.time(), config_object=config)
            run.tags = dict(tags or {})
            self.store.create(run.id, self._record(run))
            self._runs[run.id] = run
            self._queue.append(run.id)
            self._wakeup.notify()
        return run.id

    def cancel(self, run_id: str) -> None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or not run.live:
                return
            run.cancel_requested.set()
            run.resume.set()
            if run_id in self._queue:
                self._queue.remove(run_id)
                self._finish(run, "cancelled", "stopped before it started")

    def pause(self, run_id: str) -> None:
        run = self._runs.get(run_id)
        if run is not None and run.state == "running":
            run.resume.clear()
            run.state = "paused"
            self._save_status(run)

    def resume_run(self, run_id: str) -> None:
        run = self._runs.get(run_id)
        if run is not None and run.state == "paused":
            run.state = "running"
            run.resume.set()
            self._save_status(run)

    def delete(self, run_id: str) -> None:
        self.cancel(run_id)
        with self._lock:
            self._runs.pop(run_id, None)
        self.store.delete(run_id)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel every queued and running run and wait (up to timeout) until no worker is inside a run."""
        with self._lock:
            live = [run.id for run in self._runs.values() if run.live]
        for run_id in live:
            self.cancel(run_id)
        deadline = time.monotonic() + timeout
        while any(self._runs[r].live for r in live if r in self._runs) and time.monotonic() < deadline:
            time.sleep(0.02)

    # -- reading --
    def queue_position(self, run_id: str) -> int | None:
        """1 for the next run to start; None when the run is not waiting."""
        with self._lock:
            return self._queue.index(run_id) + 1 if run_id in self._queue else None

    def get(self, run_id: str) -> Run | None:
        """A live run from memory, or a past one from disk (None when it does not exist)."""
        from kdviz.runs.store import is_valid_run_id

        if not is_valid_run_id(run_id):
            return None
        with self._lock:
            if run_id in self._runs:
                return self._runs[run_id]
        return self._load(run_id)

    def list_runs(self, owner: str | None = None) -> list[Run]:
        runs = [self.get(run_id) for run_id in self.store.run_ids()]
        with self._lock:
            runs += [run for run_id, run in self._runs.items() if run_id not in self.store.run_ids()]
        runs = [run for run in runs if run is not None and (owner is None or run.owner == owner)]
        return sorted(runs, key=lambda run: run.created, reverse=True)

    def _load(self, run_id: str) -> Run | None:
        record = self.store.read_json(run_id, "config.json")
        if record is None:
            return None
        status = self.store.read_json(run_id, "status.json") or {"state": "interrupted"}
        run = Run(run_id, record.get("config", {}), record.get("owner", ""), record.get("created", 0.0),
                  status.get("state", "interrupted"))
        run.message, run.summary = status.get("message", ""), status.get("summary")
        run.tags = record.get("tags", {})
        run.started_at, run.finished_at = status.get("started_at"), status.get("finished_at")
        run.events = self.store.read_events(run_id)
        return run

    # -- the workers --
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._wakeup.wait()
                run = self._runs[self._queue.pop(0)]
            self._execute(run)

    def _execute(self, run: Run) -> None:
        from kdviz.core.engine import distill
        from kdviz.core.teachers import prepare_teacher

        config = run.config_object
        run.state, run.started_at = "running", time.time()
        self._save_status(run)

        def should_stop() -> bool:
            run.resume.wait()  # a paused run blocks here, between two steps
            return run.cancel_requested.is_set()

        try:
            teacher = self._phase(run, "teacher", prepare_teacher(config.teacher, config.device, should_stop))
            if teacher is None:
                return
            students = self._phase(run, "distill", distill(config, teacher.models["teacher"], should_stop))
            if students is None:
                return
            self._save_students(run, students)
            self._finish(run, "completed", "", students)
        except Exception as error:  # noqa: BLE001 — a run must never take the server down
            self._finish(run, "failed", _explain(error))

    def _phase(self, run: Run, phase: str, events):
        """Record one event stream; return its Finished event if it completed, else finish the run and return None."""
        from kdviz.core.engine import Finished, event_to_dict

        finished, pending = None, []
        for event in events:
            record = {"phase": phase, "t": round(time.time(), 3), **event_to_dict(event)}
            run.events.append(record)
            pending.append(record)
            if isinstance(event, Finished):
                finished = event
            if len(pending) >= 32 or record["event"] != "StepLosses":  # batch the per-step lines
                self._append(run, pending)
                pending = []
        self._append(run, pending)
        if finished is not None and finished.status == "completed":
            return finished
        message = next((e["message"] for e in run.events if e["event"] == "Diverged"), "")
        self._finish(run, finished.status if finished else "failed",
                     message or f"stopped during the {phase} phase; what it measured is kept", finished)
        return None

    def _append(self, run: Run, records: list[dict]) -> None:
        if not records:
            return
        try:
            self.store.append_events(run.id, records)
        except OSError:  # the folder was deleted under us: rebuild it from memory, nothing measured is lost
            self._rebuild(run)

    def _rebuild(self, run: Run) -> None:
        try:
            self.store.create(run.id, self._record(run))
            self.store.rewrite_events(run.id, list(run.events))
            self._save_status(run)
        except OSError:
            run.message = "the run's folder cannot be written; its data is kept in memory only"

    @staticmethod
    def _record(run: Run) -> dict:
        return {"config": run.config, "owner": run.owner, "created": run.created, "tags": run.tags}

    def _save_status(self, run: Run) -> None:
        try:
            self.store.write_status(run.id, run.status_record())
        except OSError:
            pass

    def _save_students(self, run: Run, finished) -> None:
        import io

        import torch

        from kdviz.core.paths import atomic_write_bytes

        buffer = io.BytesIO()
        torch.save({"config": run.config, **{f"{name}_state_dict": model.state_dict()
                                             for name, model in finished.models.items()}}, buffer)
        try:
            atomic_write_bytes(self.store.students_path(run.id), buffer.getvalue())
        except OSError:
            pass

    def _finish(self, run: Run, state: str, message: str, finished=None) -> None:
        run.state, run.message, run.finished_at = state, message, time.time()
        if finished is not None and state != "failed":
            run.summary = finished.summary
        if not self.store.exists(run.id):
            self._rebuild(run)
        self._save_status(run)


def _explain(error: Exception) -> str:
    """One sentence for the user about a run that failed."""
    name = type(error).__name__
    if "OutOfMemory" in name:
        return "the GPU ran out of memory: lower the batch size, use a smaller model, or run on the CPU"
    if isinstance(error, ValueError):
        return str(error)
    return f"the run failed ({name}: {error})"
