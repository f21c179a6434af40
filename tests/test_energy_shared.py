"""An energy figure is the student's own only when no other run trained meanwhile: two trainings at once in threads
are counted by the measurement, the compression rows carry the count, and the page and the CLI say the figure is
shared (kdviz.core.activity, kdviz.core.energy, kdviz.experiments.compression, kdviz.views.compression)."""
from __future__ import annotations

import threading
import time

from conftest import wait_until
from kdviz.core import activity
from kdviz.core.energy import FixedPower, energy_per_prediction
from kdviz.core.engine import DistillConfig, StepLosses, TeacherConfig, distill, generator
from kdviz.core.models import ModelSpec, create_model
from kdviz.experiments import compression
from kdviz.views import compression as views
from tests.test_energy import batch, tiny_model

TEACHER = TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0)
LONG = DistillConfig(TEACHER, ModelSpec("mlp", 8, 1), epochs=10_000, batch_size=32, train_subset=96, device="cpu",
                     probe_size=5)  # far longer than the test: stopped by its flag


def _training_in_a_thread(stop: threading.Event, stepped: threading.Event) -> threading.Thread:
    teacher = create_model(TEACHER.model, (1, 8, 8), 10, generator(0, "init"))

    def train() -> None:
        for event in distill(LONG, teacher, stop.is_set):
            if isinstance(event, StepLosses):
                stepped.set()

    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    return thread


def _quiet(seconds: float = 0.3) -> bool:
    """No training of this process took a step for `seconds`."""
    with activity.watch() as watch:
        time.sleep(seconds)
    return watch.count == 0


def test_two_trainings_in_threads_make_the_energy_shared_with_two_runs_and_a_quiet_server_none():
    # the count is process-wide: a run an earlier test of this worker left winding down would be counted too (seen
    # once, 3 instead of 2), so the test starts on a quiet process
    wait_until(_quiet, 120, what=lambda: "the trainings of earlier tests in this process to end (threads: "
                                         f"{sorted(t.name for t in threading.enumerate())})")
    stop, steps = threading.Event(), [threading.Event(), threading.Event()]
    threads = [_training_in_a_thread(stop, stepped) for stepped in steps]
    try:
        assert all(stepped.wait(60) for stepped in steps)
        busy = energy_per_prediction(tiny_model(), batch(), FixedPower(10.0), min_seconds=0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert busy["other_trainings"] == 2
    quiet = energy_per_prediction(tiny_model(), batch(), FixedPower(10.0), min_seconds=0.05)
    assert quiet["other_trainings"] == 0


def _row(role: str, others: int | None) -> dict:
    row = {"name": role, "role": role, "params": 10, "size_bytes": 40, "disk_bytes": 400, "flops_per_image": 20.0,
           "latency_ms_batch1": 0.1, "latency_ms_batch256": 1.0, "throughput_per_s": 1e5, "accuracy": 0.9,
           "val_accuracy": 0.9, "energy_j_per_prediction": 1e-6, "energy_j_per_million": 1.0,
           "energy_measured": False, "power_watts": 10.0, "power_source": "estimated from 10 W × time (a test)"}
    return row if others is None else {**row, "energy_other_trainings": others}


def test_a_shared_figure_is_marked_on_the_page_and_in_the_cli_and_an_own_one_is_not():
    shared_rows = [_row("teacher", 0), _row("kd", 2)]
    assert [r["energy"] for r in views.model_rows(shared_rows)] == ["estimated", "estimated, shared with 2 other runs"]
    warning = compression.shared_warning(shared_rows)
    assert "shared with 2 other runs" in warning and "not this student's own energy" in warning
    energy_chart = views.metric_charts(shared_rows)[-1]
    assert "not this student's own" in energy_chart.layout.title.text
    result = compression.report(compression.default_config(), [{"seed": 0, "models": shared_rows}])
    assert result["models"][1]["energy_other_trainings"] == 2 and warning in compression.format_text(result)

    own = [_row("teacher", 0), _row("kd", None)]  # a row recorded before the count existed reads as 0
    assert compression.shared_warning(own) == "" and "shared" not in compression.format_text(
        compression.report(compression.default_config(), [{"seed": 0, "models": own}]))
    assert "shared" not in views.metric_charts(own)[-1].layout.title.text


def test_a_watch_counts_each_training_that_stepped_once_and_is_gone_after():
    from kdviz.core import activity

    one, _paused = activity.Training(), activity.Training()
    with activity.watch() as watch:
        one.step()
        one.step()
    assert watch.count == 1 and not activity._watches  # the idle (paused) one is not counted; nothing left open
