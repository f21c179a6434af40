"""Several app servers for one hall: kdviz.hall starts two replicas behind Debian's HAProxy on loopback, with a local
Ray head that drives every run (kdviz.runs.remote) and keeps the presentations (kdviz.present.remote). A run started
through one replica is watched, and stopped by its owner only, through the other; a presentation started on one is
followed on the other; a killed replica loses no run and its browsers land on the other. The first two tests need
neither Ray nor HAProxy: a replica's reading and forwarding against an in-process service."""
from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState

from conftest import run_async, wait_for_async, wait_for_run, wait_until
from kdviz.core.engine import DistillConfig, TeacherConfig
from kdviz.core.models import ModelSpec
from kdviz.hall import REPLICA_HEADER, STICKY_COOKIE, Hall, HallConfig, haproxy_path
from kdviz.runs.executors import ThreadExecutor
from kdviz.runs.manager import NotYours, RunManager
from kdviz.runs.remote import SharedRuns, make_run_manager
from kdviz.runs.store import LIVE_STATES, RunStore

pytestmark = pytest.mark.timeout(300)

TINY = DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0),
                     ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.5, epochs=400, batch_size=64, train_subset=200,
                     device="cpu")
QUICK_EPOCHS = 500  # the Live form's most epochs
LONG_RUN_BATCH = 8  # with QUICK_EPOCHS on all 1151 digits: 72 000 steps, still going when the test stops it (on the
# quick preset's 100 images it was 6 500 steps, which a loaded machine finished before the other replica's tabs opened)


def distilling(manager, run_id: str) -> bool:
    run = manager.get(run_id)
    return run is not None and any(e["event"] == "StepLosses" and e["phase"] == "distill" for e in run.events)


# ---- a replica's view of the hall's runs, without Ray: SharedRuns on the service's store ------------------------

def test_a_replica_follows_a_run_the_service_drives_and_forwards_only_its_owners_control(make_manager):
    service = make_manager(executor=ThreadExecutor(), workers=1)  # the hall's run service, here in this process
    replica_a, replica_b = SharedRuns(service=service), SharedRuns(service=service)
    run_id = replica_a.submit(TINY, "alice")
    wait_until(lambda: distilling(replica_b, run_id), 60, what="replica B to see the distillation's first steps")
    seen = replica_b.get(run_id)
    assert seen.state == "running" and seen.owner == service.get(run_id).owner and seen.config["epochs"] == 400
    version = seen.events_version
    wait_until(lambda: replica_b.get(run_id).events_version > version, 30, what="new events read by replica B")
    assert replica_b.get(run_id).running_seconds() > 0  # its clock runs on from what the service wrote
    with pytest.raises(NotYours, match="belongs to someone else"):
        replica_b.cancel(run_id, "mallory")
    assert replica_a.get(run_id).live
    replica_b.cancel(run_id, "alice")  # its owner, through the other replica
    run = wait_for_run(replica_a, run_id, 60)
    assert run.state == "cancelled" and 0 < run.summary["steps"] < 400 * 4
    assert [r.id for r in replica_b.list_runs("alice")] == [run_id] and replica_b.list_runs("mallory") == []


def test_the_run_service_is_a_server_setting(monkeypatch):
    monkeypatch.setenv("KDVIZ_RUN_SERVICE", "process")
    manager = make_run_manager(workers=1)
    try:
        assert type(manager) is RunManager
    finally:
        manager.shutdown()
    monkeypatch.setenv("KDVIZ_RUN_SERVICE", "redis")
    with pytest.raises(ValueError, match="KDVIZ_RUN_SERVICE must be process or ray, got 'redis'"):
        make_run_manager()


# ---- the hall: two replicas, HAProxy, Ray ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def hall(tmp_path_factory):
    pytest.importorskip("ray", reason="needs Ray (pip install -r requirements.txt)")
    if haproxy_path() is None:
        pytest.skip("needs Debian's HAProxy for the hall's proxy: apt-get install -y haproxy (.ci/run installs it)")
    from bench import hall_users  # noqa: F401 (websockets and the protocol client: the dev requirements)

    home = tmp_path_factory.mktemp("hall-home")
    with Hall(HallConfig(replicas=2, port=0, host="127.0.0.1", ray_cpus=2, home=home,
                         env={"KDVIZ_TOUR_RUNS": "off"})) as started:
        yield started




def status(hall: Hall, run_id: str) -> dict:
    try:
        return json.loads((hall.home / "runs" / run_id / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def get(url: str, cookies: dict[str, str] | None = None):
    """(status, headers, body) of a GET, 4xx answers too; headers are read case-insensitively (HAProxy writes them in
    lower case)."""
    request = urllib.request.Request(url, headers={"Cookie": "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def reader(hall: Hall) -> SharedRuns:
    """A replica's reading code on the hall's store (no service: it only reads)."""
    return SharedRuns(store=RunStore(hall.home / "runs"), service=object())




def heading(session, run_id: str) -> str | None:
    """The run's state as the page's heading shows it ("Run <id>: running")."""
    found = session.find(kind="heading", text=f"Run {run_id}: ")
    return found[0].text.rsplit(": ", 1)[-1] if found else None


def test_the_proxy_keeps_a_browser_on_its_replica_and_shares_the_load(hall):
    first, second = (get(hall.url + "/_stcore/health")[1] for _ in range(2))
    assert {first[REPLICA_HEADER], second[REPLICA_HEADER]} == {"r1", "r2"}  # round robin for new browsers
    sticky = first.get_all("Set-Cookie")
    assert any(f"{STICKY_COOKIE}={first[REPLICA_HEADER]};" in cookie for cookie in sticky), sticky  # HAProxy's own
    for _ in range(3):
        assert get(hall.url + "/_stcore/health", {STICKY_COOKIE: "r2"})[1][REPLICA_HEADER] == "r2"


def test_a_presentation_started_on_one_replica_is_followed_on_the_other(hall):
    from bench import hall_users

    a, b = hall.replicas[0].url, hall.replicas[1].url

    async def scenario():
        async with hall_users.tab(a, "lecturer", "lecture", "step=1") as lecturer:
            room = await hall_users.present(lecturer)
            first = json.loads(get(f"{b}/kdviz/rooms/{room}")[2])
            await lecturer.click("tour.next")
            second = json.loads(get(f"{b}/kdviz/rooms/{room}?since={first['version']}")[2])
            through_proxy = get(f"{hall.url}/kdviz/rooms/{room}", {STICKY_COOKIE: "r2"})
            return room, first, second, through_proxy

    room, first, second, (code, headers, body) = run_async(scenario())
    assert first["state"] == "live" and first["view"]["step"] == 1
    assert second["state"] == "live" and second["view"]["step"] == 2 and second["version"] > first["version"]
    assert code == 200 and headers[REPLICA_HEADER] == "r2" and json.loads(body)["view"]["step"] == 2


async def start_long_run(session) -> str:
    """The quick preset in small batches (minutes of steps on an idle CPU): it is still running when the other
    replica's tabs have opened, whatever the machine's speed; the test stops it."""
    from bench import hall_users

    quick = next(option for option in session.widget("preset").proto.options
                 if hall_users.PRESET_LABELS["quick"] in option)
    await session.set_widget("preset", quick)
    await session.set_widget("quick:batch", LONG_RUN_BATCH)
    await session.set_widget("quick:subset", 0)  # all the training images
    return await hall_users.start_run(session, "quick", QUICK_EPOCHS)


def test_a_run_is_watched_and_stopped_by_its_owner_only_through_the_other_replica_and_outlives_a_killed_one(hall):
    """One hall scenario (one run, started through the proxy on replica r1): a tab on r2 watches it, an intruder's
    forged click on its stop button does nothing, r1 is killed and the run goes on in Ray, a reload of the owner's
    browser lands on r2 with the owner's controls, and the owner stops it there; what it measured is kept."""
    from bench import hall_users

    owner = hall_users.new_identity(hall.home)
    on_r1 = {STICKY_COOKIE: "r1"}  # a browser the proxy keeps on replica r1
    b = hall.replicas[1].url
    replica = reader(hall)

    async def start():
        session = hall_users.StreamlitSession(hall.url, cookies={hall_users.IDENTITY_COOKIE: owner, **on_r1},
                                              auto_rerun=False)
        try:
            await session.connect()
            await session.open("live_distillation")
            return await start_long_run(session)
        finally:
            await session.close()

    async def watch_and_forge(run_id: str):
        async with hall_users.tab(b, "intruder", "live_distillation", f"run={run_id}", auto_rerun=False) as other:
            intruder_keys = {drawn.key for drawn in other.page_elements.values()}
            async with hall_users.tab(b, "owner", "live_distillation", f"run={run_id}", identity=owner,
                                      auto_rerun=False) as on_b:
                shown_on_b = heading(on_b, run_id)
                stop = on_b.widget(f"stop-{run_id}")  # the owner's controls, on the replica it did not start on
                await other.rerun([WidgetState(id=stop.element_id, trigger_value=True)])  # a forged click
                await asyncio.sleep(1.5)
        return shown_on_b, intruder_keys, status(hall, run_id).get("state")

    async def reload_and_stop(run_id: str):
        session = hall_users.StreamlitSession(hall.url, cookies={hall_users.IDENTITY_COOKIE: owner, **on_r1},
                                              auto_rerun=False)
        try:
            await session.connect()
            await session.open("live_distillation", f"run={run_id}")
            shown = heading(session, run_id)
            await session.click(f"stop-{run_id}")
            await wait_for_async(lambda: status(hall, run_id).get("state") not in (None, *LIVE_STATES), 60,
                                 f"run {run_id} to stop")
            return shown
        finally:
            await session.close()

    run_id = run_async(start())
    wait_until(lambda: distilling(replica, run_id), 90, what=f"run {run_id} to distil")
    version = replica.get(run_id).events_version
    wait_until(lambda: replica.get(run_id).events_version > version, 30, what="its progress to grow")
    shown_on_b, intruder_keys, after_intruder = run_async(watch_and_forge(run_id))
    assert shown_on_b == "running"
    assert f"stop-{run_id}" not in intruder_keys and f"copy-{run_id}" in intruder_keys
    assert after_intruder in LIVE_STATES

    assert get(hall.url + "/_stcore/health", on_r1)[1][REPLICA_HEADER] == "r1"
    hall.kill_replica(0)
    assert status(hall, run_id).get("state") == "running"
    version = replica.get(run_id).events_version
    wait_until(lambda: replica.get(run_id).events_version > version, 30, what="its progress to grow after the kill")
    assert get(hall.url + "/_stcore/health", on_r1)[1][REPLICA_HEADER] == "r2"  # a reload lands on the other
    assert run_async(reload_and_stop(run_id)) == "running"  # still the owner's run, with its stop button, on r2
    final = status(hall, run_id)
    assert final["state"] == "cancelled" and 0 < final["summary"]["steps"]
    events = wait_for_run(replica, run_id, 60).events  # one run, never restarted by the kill: one distillation,
    assert sum(e["event"] == "Started" and e["kind"] == "distill" for e in events) == 1  # its steps in order
    steps = [e["step"] for e in events if e["event"] == "StepLosses" and e["phase"] == "distill"]
    assert steps and steps == sorted(steps) and len(set(steps)) == len(steps)


def test_the_launcher_reports_what_a_benchmark_needs(hall):
    info = hall.describe()
    assert info["url"] == hall.url and info["ray_address"].rsplit(":", 1)[1].isdigit()
    assert [r["name"] for r in info["replicas"]] == ["r1", "r2"] and all(r["pid"] for r in info["replicas"])
    assert info["haproxy_pid"] and Path(info["folder"], "haproxy.cfg").is_file()

