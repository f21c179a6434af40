"""A live run as its browsers poll it (kdviz.views.run_live, GET /kdviz/runs/{id}/live in kdviz.routes): one payload
per version of the run's log, built at most once per MIN_BUILD_S for every viewer, a few bytes when nothing is new, a
"redraw" key that changes when the page around the charts must be drawn again, and memory bounded."""
from __future__ import annotations

import gzip
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import uvicorn
from starlette.applications import Starlette

from kdviz import routes
from kdviz.runs.log import EventLog
from kdviz.views import run_live


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeRun:
    """What the payloads read of a run (kdviz.runs.manager.Run): id, state, events and their version, seconds run."""

    def __init__(self, run_id: str = "run-a", state: str = "running"):
        self.id, self.state, self.log = run_id, state, EventLog()
        self.log.append({"event": "Started", "phase": "distill", "total_steps": 100, "device": "cpu", "t": 0.0})
        self.log.append({"event": "EpochEnd", "phase": "distill", "epoch": 0, "t": 0.1,
                         "accuracy": {"teacher": 0.9, "hard": 0.1, "kd": 0.12},
                         "val_accuracy": {"teacher": 0.91, "hard": 0.11, "kd": 0.13}})
        self.steps = 0

    def train(self, steps: int) -> None:
        for _ in range(steps):
            self.steps += 1
            self.log.append({"event": "StepLosses", "phase": "distill", "step": self.steps, "epoch": 1,
                             "t": 0.1 * self.steps, "losses": {"hard": 2 / self.steps, "kd_total": 3 / self.steps,
                                                               "kd_soft": 1 / self.steps, "kd_hard": 2 / self.steps}})

    @property
    def events(self):
        return self.log.records()

    @property
    def events_version(self) -> int:
        return self.log.version

    def running_seconds(self) -> float:
        return 12.4


def answer(payloads, run, since=None, gzip_ok=False, queue=None, split="validation"):
    body, zipped = payloads.answer(run, queue, False, split, since, gzip_ok)
    return json.loads(gzip.decompress(body) if zipped else body)


def test_a_payload_has_the_progress_and_both_charts_of_the_static_page():
    run = FakeRun()
    run.train(40)
    payload = answer(run_live.LivePayloads(), run)
    assert payload["state"] == "running" and payload["version"] == run.events_version
    assert payload["progress"]["fraction"] == pytest.approx(0.4)
    assert payload["progress"]["text"].startswith("distilling: step 40 of 100 on cpu, {elapsed} s elapsed")
    assert payload["elapsed_s"] == 12.4  # the browser counts on from here between payloads
    loss, accuracy = payload["figures"]["loss"], payload["figures"]["accuracy"]
    assert loss["layout"]["title"]["text"] == "Training loss"
    assert {trace["name"] for trace in loss["data"]} >= {"hard-label student: CE", "KD student: total"}
    assert max(max(trace["x"]) for trace in loss["data"]) == 40
    assert accuracy["layout"]["title"]["text"] == "Validation accuracy"
    test = answer(run_live.LivePayloads(), run, split="test")["figures"]["accuracy"]
    assert test["layout"]["title"]["text"] == "Test accuracy"


def test_many_polls_of_one_version_build_it_once_and_newer_versions_at_most_every_min_build_s():
    clock, run = Clock(), FakeRun()
    payloads = run_live.LivePayloads(min_build_s=0.5, clock=clock)
    run.train(5)
    first = answer(payloads, run)
    for _ in range(100):  # a hall of viewers polling the same version
        assert answer(payloads, run, since=first["version"]) == {"state": "running", "version": first["version"],
                                                                 "redraw": "running:"}
    assert payloads.builds == 1
    run.train(3)  # the run logs again within min_build_s: everyone keeps the version they have
    clock.now += 0.2
    assert answer(payloads, run, since=first["version"])["version"] == first["version"]
    assert payloads.builds == 1
    clock.now += 0.4  # and after it, the newest version, built once for everyone
    newer = [answer(payloads, run, since=first["version"]) for _ in range(50)]
    assert payloads.builds == 2
    assert all(payload["version"] == run.events_version and "figures" in payload for payload in newer)
    assert max(max(trace["x"]) for trace in newer[0]["figures"]["loss"]["data"]) == 8


def test_a_change_of_state_or_queue_place_is_news_at_once():
    clock, run = Clock(), FakeRun(state="queued")
    payloads = run_live.LivePayloads(min_build_s=60, clock=clock)
    version = answer(payloads, run, queue=3)["version"]
    assert answer(payloads, run, since=version, queue=3)["redraw"] == "queued:3"
    assert answer(payloads, run, since=version, queue=2)["redraw"] == "queued:2"  # moved up: the page says so
    run.state = "completed"
    ended = answer(payloads, run, since=version)
    assert (ended["state"], ended["redraw"]) == ("completed", "completed:")
    assert payloads.builds == 3


def test_gzip_is_the_same_payload_and_memory_is_bounded():
    payloads = run_live.LivePayloads(max_entries=3)
    runs = [FakeRun(f"run-{index}") for index in range(5)]
    for run in runs:
        run.train(30)
        assert answer(payloads, run, gzip_ok=True) == answer(payloads, run)
    assert len(payloads._entries) == 3  # the least recently polled runs left


class FakeManager:
    def __init__(self, *runs):
        self.runs = {run.id: run for run in runs}

    def get(self, run_id):
        return self.runs.get(run_id)

    def queue_position(self, run_id):
        return 1


class Response:
    def __init__(self, status: int, headers, raw: bytes):
        self.status_code, self.headers, self.raw = status, {k.lower(): v for k, v in headers.items()}, raw
        self.content = gzip.decompress(raw) if self.headers.get("content-encoding") == "gzip" else raw

    def json(self):
        return json.loads(self.content)


class Client:
    """GETs to kdviz's routes on a real server (uvicorn, as Streamlit's st.App serves them), on loopback."""

    def __init__(self, base: str):
        self.base = base

    def get(self, path: str, params: dict | None = None, headers: dict | None = None) -> Response:
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        request = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, error.headers, error.read())


@pytest.fixture(scope="module")
def server():
    config = uvicorn.Config(Starlette(routes=routes.routes()), host="127.0.0.1", port=0, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = running.servers[0].sockets[0].getsockname()[1]
    yield Client(f"http://127.0.0.1:{port}")
    running.should_exit = True
    thread.join(10)


@pytest.fixture
def client(server, monkeypatch):
    monkeypatch.setattr(routes, "_SERVED", {})
    payloads = run_live.LivePayloads()
    monkeypatch.setattr(run_live, "shared", lambda: payloads)
    return server


def test_the_route_answers_a_poll_with_news_gzipped_or_a_few_bytes(client):
    run = FakeRun("20261203-1-abc")
    run.train(20)
    routes.serve_runs(FakeManager(run))
    url = routes.live_run_url(run.id)
    full = client.get(url, params={"split": "test"}, headers={"Accept-Encoding": "gzip"})
    assert full.status_code == 200 and full.headers["content-encoding"] == "gzip"
    assert full.headers["cache-control"] == "no-store"
    payload = full.json()  # decompressed, as a browser does
    assert payload["figures"]["accuracy"]["layout"]["title"]["text"] == "Test accuracy"
    same = client.get(url, params={"since": payload["version"], "split": "test"})
    assert same.json() == {"state": "running", "version": payload["version"], "redraw": "running:"}
    assert len(same.content) < 100


def test_the_route_knows_no_other_run_and_no_run_before_a_manager_serves(client):
    assert client.get(routes.live_run_url("nope")).status_code == 404  # no manager yet: the page has not run
    routes.serve_runs(FakeManager(FakeRun("mine")))
    missing = client.get(routes.live_run_url("someone-else"), params={"since": "x" * 40})
    assert missing.status_code == 404 and missing.json() == {"state": "unknown"}


def test_plotly_js_is_served_gzipped_once(client):
    zipped = client.get(routes.PLOTLY_URL, headers={"Accept-Encoding": "gzip"})
    plain = client.get(routes.PLOTLY_URL, headers={"Accept-Encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip" and "content-encoding" not in plain.headers
    assert zipped.content == plain.content == routes.plotly_js_path().read_bytes()
    assert len(zipped.raw) < len(plain.raw) / 2


def test_a_diverged_runs_nan_losses_are_gaps_in_json_a_browser_parses():
    run = FakeRun()
    run.train(5)
    run.log.append({"event": "StepLosses", "phase": "distill", "step": 6, "epoch": 1, "t": 0.6,
                    "losses": {"hard": float("nan"), "kd_total": float("inf"), "kd_soft": 1.0, "kd_hard": 1.0}})
    body, _ = run_live.LivePayloads().answer(run, None, False, "validation", None)
    assert b"NaN" not in body and b"Infinity" not in body  # JSON.parse refuses both
    traces = {trace["name"]: trace["y"] for trace in json.loads(body)["figures"]["loss"]["data"]}
    assert traces["hard-label student: CE"][-1] is None and traces["KD student: total"][-1] is None
    assert traces["KD student: soft T²·KL"][-1] == 1.0
