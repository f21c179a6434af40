"""`make test`'s two workers hand out whole groups: a module's tests run on one worker (its module-scoped servers start
once) and the Ray modules share one (two Ray clusters at once fight over two cores). xdist's own loadgroup stopped
grouping silently under pytest 9.2 (tests/conftest.py, pytest_xdist_make_scheduler); this runs the scheduler on small
modules in a pytest of its own and reads which worker ran what."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = "".join(f"def test_{n}():\n    pass\n\n\n" for n in range(6))


def test_each_module_and_the_ray_modules_together_run_on_one_worker(tmp_path):
    # collected in this order: plain per-file scheduling would hand the two Ray modules to the two workers at once
    for module in ("test_present_ray", "test_ray_executor", "test_s1", "test_s2"):
        (tmp_path / f"{module}.py").write_text(TESTS)
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_xdist_make_scheduler  # noqa: F401\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadfile", "-v", "-p",
                           "no:cacheprovider", "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    workers: dict[str, set[str]] = {}
    for worker, module in re.findall(r"\[(gw\d)\] \[ *\d+%\] PASSED (\w+)\.py::", done.stdout):
        workers.setdefault(module, set()).add(worker)
    assert len(workers) == 4, done.stdout[-3000:]
    assert all(len(ran) == 1 for ran in workers.values()), workers  # no module split over the two workers
    assert workers["test_ray_executor"] == workers["test_present_ray"], workers
    assert len(set().union(*workers.values())) == 2, workers  # and both workers got work
