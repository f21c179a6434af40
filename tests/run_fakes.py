"""A fake executor for run-manager tests: a run's stream of tiny events, fast, that checks nobody drives it twice."""
from __future__ import annotations

import threading
import time

from kdviz.core.engine import EpochEnd, Finished, Started, StepLosses


class FakeExecutor:
    """Yields a teacher phase of one event, then `steps` distillation steps, each `step_s` long; stops at the next
    step once should_stop() says so. `inside` counts threads inside a run's stream right now: more than one is a run
    driven twice, recorded in `overlaps` (the stream goes on, so the test can also see what the manager made of it)."""

    name = "fake"

    def __init__(self, steps: int = 200, step_s: float = 0.002):
        self.steps, self.step_s = steps, step_s
        self.lock = threading.Lock()
        self.inside: dict[str, int] = {}
        self.overlaps: list[str] = []
        self.step_hook = None  # called (run, step) inside each step, from the driving thread

    def _enter(self, run_id: str) -> None:
        with self.lock:
            self.inside[run_id] = self.inside.get(run_id, 0) + 1
            if self.inside[run_id] > 1:
                self.overlaps.append(run_id)

    def _leave(self, run_id: str) -> None:
        with self.lock:
            self.inside[run_id] -= 1

    def events(self, run, config, should_stop):
        yield "teacher", Finished("completed", {"teacher": {}}, {})
        yield "distill", Started("distill", self.steps, self.steps, "cpu", 10, 10)
        for step in range(1, self.steps + 1):
            self._enter(run.id)
            try:
                if self.step_hook is not None:
                    self.step_hook(run, step)
                time.sleep(self.step_s)
                stop = should_stop()
            finally:
                self._leave(run.id)
            if stop:
                yield "distill", Finished("cancelled", {"steps": step}, {})
                return
            yield "distill", StepLosses(step, 1, {"hard": 1.0, "kd_total": 1.0})
        yield "distill", EpochEnd(1, {"teacher": 1.0, "hard": 0.5, "kd": 0.6})
        yield "distill", Finished("completed", {"steps": self.steps}, {})

    def pause(self, run) -> None:
        return None

    def resume(self, run) -> None:
        return None

    def describe(self) -> str:
        return "a fake executor (tests)"

    def close(self) -> None:
        return None
