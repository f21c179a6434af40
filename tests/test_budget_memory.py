"""The budget's memory estimate counts everything a run holds: measured peaks (each experiment's default and a plain
distillation preset, one process each, forked from one warm interpreter: bench/memory_peak.py) stay under it, and
gradient-variance's per-example gradients are in it, so the lecture preset's measurement is refused by a 2 GB server
in one line."""
from __future__ import annotations

import dataclasses
import sys

import pytest

from bench.memory_peak import DEFAULT_CASES, PAPER_CASES, WarmParent
from kdviz import cli, experiments
from kdviz.core.budget import MB, Budget, OverBudget, model_cost
from kdviz.core.presets import get_preset
from kdviz.experiments import gradient_variance
from tests.test_cli import _one_error_line


@pytest.fixture(scope="module")
def warm_parent():
    with WarmParent() as parent:
        yield parent


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the resident set from /proc")
@pytest.mark.parametrize("case", DEFAULT_CASES + PAPER_CASES)
def test_the_measured_peak_memory_stays_under_the_estimate(case, warm_parent):
    row = warm_parent.measure(case)
    assert row["status"] == "completed"
    assert 0 < row["measured"] <= row["estimate"], f"{case}: measured {row['measured'] / MB:.0f} MB, " \
                                                   f"estimated {row['estimate'] / MB:.0f} MB"


def _lecture_gradient_variance():
    return dataclasses.replace(gradient_variance.default_config(), distill=get_preset("lecture"))


def test_per_example_gradients_are_in_the_estimate():
    """A chunk of CHUNK images' gradients of every parameter, and the largest in float64 twice: the lecture preset's
    800×2 student needs gigabytes there, far more than its training (the estimate was ≈79 MB before)."""
    config = _lecture_gradient_variance()
    student = model_cost(config.distill.student, (1, 28, 28), 10)
    (_, measuring), _ = gradient_variance.budget_measurements(config)
    chunk = gradient_variance.CHUNK
    assert measuring.memory_bytes > 4 * chunk * student.params + 16 * chunk * student.largest_parameter
    assert experiments.experiment_cost(config, teacher_cached=True).memory_bytes == measuring.memory_bytes
    fewer_points = dataclasses.replace(config, epochs=(0,), temperatures=(1.0,))
    (_, fewer), _ = gradient_variance.budget_measurements(fewer_points)
    assert fewer.memory_bytes == measuring.memory_bytes and fewer.work_flops * 10 < measuring.work_flops


def test_a_server_refuses_the_lecture_presets_gradient_measurement_by_memory():
    with pytest.raises(OverBudget) as refused:
        experiments.check_budget(_lecture_gradient_variance(), Budget(max_memory_bytes=2048 * MB), True)
    assert refused.value.limit == "memory" and "per-example gradients" in str(refused.value)
    experiments.check_budget(gradient_variance.default_config(), Budget(max_memory_bytes=2048 * MB), True)


def test_cli_budget_refuses_the_lecture_presets_gradient_measurement_in_one_line(capsys, monkeypatch):
    monkeypatch.delenv("KDVIZ_MAX_RUN_MEMORY_MB", raising=False)
    assert cli.main(["experiment", "gradient-variance", "--preset", "lecture", "--budget"]) == cli.EXIT_BAD_INPUT
    line = _one_error_line(capsys)
    assert "per-example gradients" in line and "2.0 GB per run" in line


@pytest.mark.skipif(not sys.platform.startswith("linux") or not __import__("platform").libc_ver()[0] == "glibc",
                    reason="glibc's mmap threshold")
def test_every_run_fixes_glibcs_mmap_threshold_unless_told_otherwise():
    """A run's process fixes glibc's mmap threshold (the same run takes the same memory); KDVIZ_MALLOC=default and
    glibc's own MALLOC_MMAP_THRESHOLD_ leave glibc alone."""
    import os
    import subprocess

    code = "from kdviz.core.engine import configure_threads, fix_allocator; configure_threads(); print(fix_allocator())"

    def fixed(**env) -> str:
        clean = {k: v for k, v in os.environ.items() if k not in ("KDVIZ_MALLOC", "MALLOC_MMAP_THRESHOLD_")}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env},
                              check=True)
        return done.stdout.strip()

    assert fixed() == "True"
    assert fixed(KDVIZ_MALLOC="default") == "False"
    assert fixed(MALLOC_MMAP_THRESHOLD_="65536") == "False"
