"""Clean stops: Ctrl-C or SIGTERM on the server, or any script's end, while a teacher trains in the background and a run
is live: exit code 0, no C++ abort ("terminate called without an active exception"), live runs marked interrupted."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.appserver import server
from tests.support.st_client import StreamlitSession
from conftest import run_async, wait_for_async

ROOT = Path(__file__).resolve().parents[1]
EXIT_TIMEOUT_S = 30  # generous: the exit itself takes a few seconds; a hang or an abort is what this catches

SCRIPT = textwrap.dedent("""
    import dataclasses, sys, time
    from kdviz.core import presets
    from kdviz.core.engine import DistillConfig
    from kdviz.core.models import ModelSpec
    from kdviz.core.teachers import prepare_teacher
    from kdviz.runs import tasks
    from kdviz.runs.manager import RunManager

    task = tasks.task_for("default-teacher", lambda stop: prepare_teacher(presets.DEFAULT_TEACHER, "auto", stop))
    config = DistillConfig(presets.DEFAULT_TEACHER, ModelSpec("mlp", 8, 1), epochs=400, train_subset=200)
    manager = RunManager(workers=1)
    run_id = manager.submit(config, "alice")
    deadline = time.monotonic() + 120
    while task.step < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    print(run_id, task.state, task.step, flush=True)
    # the script ends here, with the teacher training in one thread and the run waiting on it in another
""")


def test_a_script_that_ends_while_a_teacher_trains_exits_cleanly_and_its_run_is_interrupted(kdviz_home):
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=EXIT_TIMEOUT_S + 120, env={**_env(), "KDVIZ_HOME": str(kdviz_home)})
    assert "terminate called" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 0, done.stderr[-2000:]
    run_id, state, _ = done.stdout.split()
    assert state == "running", "the teacher was training when the script ended"
    status = json.loads((kdviz_home / "runs" / run_id / "status.json").read_text())
    assert status["state"] == "interrupted" and "server stopped" in status["message"]
    assert not list((kdviz_home / "teachers").glob("*.pt")) if (kdviz_home / "teachers").is_dir() else True, \
        "a teacher stopped mid-training is never cached"


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_server_stops_cleanly_while_the_default_teacher_trains(tmp_path, signal_number):
    """`make run` (python -m kdviz.ui.serve run app.py), the home page open, its teacher training; Ctrl-C or SIGTERM."""
    log_path = tmp_path / "server.log"
    with server(tmp_path / "home", log_path, module="kdviz.ui.serve", env={"KDVIZ_TOUR_RUNS": "off"}) as running:
        run_async(_open_home_until_training(running.url))  # the home page starts training the default teacher
        running.process.send_signal(signal_number)
        returncode = running.process.wait(EXIT_TIMEOUT_S)
    log = log_path.read_text()
    assert "terminate called" not in log, log[-2000:]
    assert returncode == 0, log[-2000:]


async def _open_home_until_training(url: str) -> None:
    session = StreamlitSession(url)
    await session.connect()
    try:
        await session.open("")
        await wait_for_async(lambda: any("epoch" in d.text for d in session.find(kind="progress")), 120,
                             "the default teacher's progress bar to show an epoch")
    finally:
        await session.close()


def _env() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}
