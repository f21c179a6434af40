"""The hall's load generator against a real server: tests/support/st_client.py draws pages and moves widgets as a
browser does, a viewer gets its run's redraws and no control over it, a follower follows a lecturer, and
bench/hall_load.py writes its JSON. Each test takes a few seconds (tiny runs of the quick preset, a handful of
users)."""
from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState

from bench import hall_users
from conftest import run_async, wait_for_async
from tests.support.appserver import app_server as app_server_process

ROOT = Path(__file__).resolve().parents[1]
RANDOM = random.Random(0)  # a follower's guesses
QUICK_EPOCHS = 500  # the quick preset at the form's most epochs: several seconds of training, long enough to watch

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def hall_server(tmp_path_factory):
    """A server of this module's own (not conftest's shared app_server): these tests train runs, which would queue
    behind, or delay, the browser tests' runs on a shared one. Yields (url, KDVIZ_HOME)."""
    home = tmp_path_factory.mktemp("hall-home")
    with app_server_process(home, home / "server.log", env={"KDVIZ_TOUR_RUNS": "off"}) as url:
        yield url, home


def run_state(home: Path, run_id: str) -> str | None:
    try:
        return json.loads((home / "runs" / run_id / "status.json").read_text()).get("state")
    except (OSError, ValueError):
        return None






def test_client_draws_the_soft_labels_page(hall_server):
    url, _ = hall_server

    async def scenario():
        async with hall_users.tab(url, "test", "soft_labels") as session:
            return session.widget(hall_users.SOFT_LABELS_KEY), session.stats.errors

    widget, errors = run_async(scenario())
    assert widget.kind == "bidi_component" and widget.element_id.endswith("-sl.widget")
    assert errors == []
    assert widget.data()["temperature"] == 1 and 100.0 in widget.data()["temperatures"]


def test_releasing_a_temperature_changes_the_url_and_the_widget(hall_server):
    url, _ = hall_server

    async def scenario():
        async with hall_users.tab(url, "test", "soft_labels") as session:
            result = await hall_users.release_temperature(session, 4.0, 0.5, user="test")
            return result, session.widget(hall_users.SOFT_LABELS_KEY).data()

    result, data = run_async(scenario())
    assert result.kind == "fragment" and result.errors == []  # the widget lives in an st.fragment
    assert "temperature=4" in result.query_string and "alpha=0.5" in result.query_string
    assert (data["temperature"], data["alpha"]) == (4.0, 0.5)


def test_a_viewer_polls_a_training_run_and_sees_its_end(hall_server):
    url, home = hall_server

    async def scenario():
        async with hall_users.tab(url, "test", "live_distillation", auto_rerun=False) as owner:
            run_id = await hall_users.start_run(owner, "quick", QUICK_EPOCHS)
        seen = {"max_step": 0, "charts": 0, "state": None}
        poller = hall_users.RoutePoller(url, f"/kdviz/runs/{run_id}/live", "run")
        async with hall_users.tab(url, "test", "live_distillation", f"run={run_id}") as viewer:
            versions = []
            while seen["state"] in (None, *hall_users.LIVE_STATES):  # as live_run.js: poll, draw, rerun at the end
                await hall_users.watch_once(viewer, poller, run_id, seen, "test")
                versions.append(seen.get("version"))
                await asyncio.sleep(0.3)
            poller.close()
            return run_id, seen, versions, viewer.stats

    run_id, seen, versions, stats = run_async(scenario())
    assert len(set(versions)) >= 3, f"the viewer drew {sorted(set(versions))} of the run's versions"
    assert seen["max_step"] > 0 and seen["charts"] == 2, seen  # progress and both charts while it trained
    assert seen["state"] == run_state(home, run_id) == "completed", "the end is drawn (statically) once it came"
    assert stats.errors == [] and stats.disconnects == 0


def test_another_browser_cannot_control_a_run(hall_server):
    url, home = hall_server

    async def scenario():
        owner = await hall_users.open_tab(url, "test", "live_distillation", auto_rerun=False)
        intruder = None
        try:
            run_id = await hall_users.start_run(owner, "quick", QUICK_EPOCHS)
            stop = owner.widget(f"stop-{run_id}")  # the owner's page has a Stop button
            intruder = await hall_users.open_tab(url, "test", "live_distillation", f"run={run_id}", auto_rerun=False)
            keys = {drawn.key for drawn in intruder.page_elements.values()}
            copy = intruder.widget(f"copy-{run_id}")
            # a forged click on the owner's Stop button (the same widget id): Streamlit drops the state of a widget
            # this session never drew, and the run manager would refuse the identity anyway
            click = WidgetState(id=stop.element_id, trigger_value=True)
            await intruder.rerun([click])
            await asyncio.sleep(1.5)  # a cancel is seen by the training loop at its next step: well within this
            after_intruder = run_state(home, run_id)
            await owner.rerun([click])  # the same message from the owner's browser stops it
            await wait_for_async(lambda: run_state(home, run_id) not in (None, *hall_users.LIVE_STATES), 60,
                           f"run {run_id} to end")
            return run_id, keys, copy, after_intruder
        finally:
            await owner.close()
            if intruder is not None:
                await intruder.close()

    run_id, keys, copy, after_intruder = run_async(scenario())
    assert "Run this configuration myself" in copy.text
    assert f"stop-{run_id}" not in keys and f"pause-{run_id}" not in keys
    assert after_intruder in hall_users.LIVE_STATES
    assert run_state(home, run_id) == "cancelled"


def test_a_follower_follows_the_lecturers_step_and_question(hall_server):
    url, _ = hall_server

    async def scenario():
        lecturer = await hall_users.open_tab(url, "test", "lecture", "step=1")
        follower = poller = None
        try:
            room = await hall_users.present(lecturer)
            follower = await hall_users.open_tab(url, "test", "lecture", f"room={room}")
            first_step = [d.text for d in follower.find(kind="markdown", text="Step ")]
            poller, state = hall_users.RoomPoller(url, room), hall_users.Following()
            await lecturer.click("tour.next")
            await wait_async(lambda: hall_users.follow_once(follower, poller, state, RANDOM), 10)
            second_step = [d.text for d in follower.find(kind="markdown", text="Step ")]
            guesses = hall_users.RECORD.guesses
            await lecturer.set_widget("tour.indicator", ["4"])
            await lecturer.click("tour.ask.student-pick")
            await wait_async(lambda: hall_users.follow_once(follower, poller, state, RANDOM), 10)
            await lecturer.rerun()
            histogram = [d.text for d in lecturer.find(kind="markdown", text="from the hall")]
            return first_step, second_step, hall_users.RECORD.guesses - guesses, histogram
        finally:
            for session in (lecturer, follower):
                if session is not None:
                    await session.close()
            if poller is not None:
                poller.close()

    first_step, second_step, guesses, histogram = run_async(scenario())
    assert any("Step 1 of 14" in text for text in first_step)
    assert any("Step 2 of 14" in text for text in second_step)
    assert guesses == 1 and any(text.startswith("1 guess from the hall") for text in histogram), histogram


async def wait_async(tick, timeout: float) -> None:
    """Call the coroutine function tick every 0.5 s (a follower's poll) until it returns True."""
    deadline = time.monotonic() + timeout
    while not await tick():
        if time.monotonic() > deadline:
            pytest.fail(f"the follower did not rerun within {timeout:g} s", pytrace=False)
        await asyncio.sleep(hall_users.POLL_INTERVAL_S)


def test_hall_load_writes_its_json(tmp_path):
    report = tmp_path / "students.json"
    completed = subprocess.run([sys.executable, "bench/hall_load.py", "--scenario", "students", "--users", "5",
                                "--seconds", "5", "--json", str(report)], cwd=ROOT, capture_output=True, text=True,
                               timeout=200)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(report.read_text())
    for key in ("users", "errors", "disconnects", "p50_ms", "p95_ms", "server_cpu_s_per_s", "server_rss_mb",
                "generator_cpu_s_per_s"):
        assert key in result, key
    assert result["users"] == 5 and result["errors"] == 0 and result["disconnects"] == 0
    assert result["requests"] >= 5 and result["p50_ms"] > 0 and result["server_rss_mb"] > 0
    assert re.match(r"\{.*\}", completed.stdout.strip().splitlines()[-1])


def test_hall_load_refuses_an_unbounded_hall():
    completed = subprocess.run([sys.executable, "bench/hall_load.py", "--scenario", "students", "--users", "1001",
                                "--seconds", "5"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2 and "--users must be 1 to 1000" in completed.stderr
