"""What each member of a lecture hall does, as asyncio coroutines on tests/support/st_client.py sessions (a student,
a viewer of a run, a follower of a presentation, a runner, the lecturer), and the shared record of what they
measured."""
from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import json
import random
import re
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from tests.support.st_client import StreamlitSession

IDENTITY_COOKIE = "kdviz_identity"  # kdviz.ui.core.IDENTITY_COOKIE: who may control a run or a presentation
SOFT_LABELS_KEY, FOLLOW_KEY = "sl.widget", "tour.follow"  # the components-v2 widgets' user keys
POLL_INTERVAL_S = 0.5  # kdviz.ui.tour_components.FOLLOW_INTERVAL_MS
OWNER_POLL_S, VIEWER_POLL_S = 0.5, 1.0  # kdviz.ui.components.OWNER_POLL_MS, VIEWER_POLL_MS
RELEASE_EVERY_S = (2.0, 5.0)  # a student lets go of the T slider every 2 to 5 s
FOLLOWED_FIELDS = ("step", "question", "revealed", "run_id")  # follow.js: a change of these reruns the page
PRESET_LABELS = {"lecture": "Hinton's MNIST", "quick": "digits 8×8"}  # how the Live page's selectbox shows them
LIVE_STATES = ("queued", "running", "paused")
# st.error messages that are the app's right answer to a slow user, not a fault: a follower whose guess arrives after
# the lecturer revealed the answer (under load a follower lags). Kept apart from the errors, as refusals.
REFUSALS = ("guesses are closed",)
# The lecturer's loop (about one change every `pace` seconds): steps, two questions asked and revealed, and T moved on
# the steps a follower's browser redraws by itself (5: temperature, 6: loss), then back to the start.
LECTURE_SCRIPT = (("step", 2), ("step", 3), ("step", 4), ("ask", "student-pick"), ("reveal", "student-pick"),
                  ("step", 5), ("ask", "teacher-cat"), ("reveal", "teacher-cat"), ("T", 4.0), ("T", 10.0),
                  ("step", 6), ("T", 2.0), ("step", 1))


def new_identity(home=None) -> str:
    """A browser's identity cookie, signed with the key of the server's KDVIZ_HOME `home` (default: this process's),
    as kdviz.ui.core.owner_id mints it; a made-up one is no identity (the server mints its own for that session)."""
    from kdviz.core import identity

    return identity.new_identity(home)


@dataclass
class Record:
    """What the hall measured, written by the asyncio loop's coroutines only. Every entry carries its time
    (time.monotonic()) so that the wrapper counts what happened inside its measured window."""

    requests: list[tuple[float, str, str, float, int]] = field(default_factory=list)  # (t, user, kind, s, errors)
    errors: list[tuple[float, str, str]] = field(default_factory=list)  # (t, user, text)
    refusals: list[tuple[float, str, str]] = field(default_factory=list)  # (t, user, text): see REFUSALS
    disconnects: list[tuple[float, str]] = field(default_factory=list)
    polls: list[tuple[float, float, str, int]] = field(default_factory=list)  # (t, seconds, route kind, bytes)
    follow_lags: list[tuple[float, float]] = field(default_factory=list)  # (t, lecturer's change → follower shows it)
    guesses: int = 0
    changes: dict[int, float] = field(default_factory=dict)  # room version → when the lecturer's page showed it
    viewers: list[dict] = field(default_factory=list)  # per viewer: what it saw of its run
    runs: list[dict] = field(default_factory=list)  # runners' runs: id, seconds from Start to its end, state
    sessions: list[StreamlitSession] = field(default_factory=list)
    listeners: list = field(default_factory=list)  # callables (user, kind, seconds, error text or None): Locust

    def request(self, user: str, kind: str, seconds: float, errors: list[str]) -> None:
        self.requests.append((time.monotonic(), user, kind, seconds, len(errors)))
        for listener in self.listeners:
            listener(user, kind, seconds, "; ".join(errors) or None)

    def error(self, user: str, text: str) -> None:
        refused = any(refusal in text for refusal in REFUSALS)
        (self.refusals if refused else self.errors).append((time.monotonic(), user, text))


RECORD = Record()


async def open_tab(url: str, user: str, page: str, query: str = "", identity: str | None = None,
                   auto_rerun: bool = True) -> StreamlitSession:
    """A browser tab on one page, with its own identity (or the one given), wired to RECORD (close_all closes it)."""
    session = StreamlitSession(url, cookies={IDENTITY_COOKIE: identity or new_identity()}, auto_rerun=auto_rerun)
    session.on_request = lambda result: RECORD.request(user, result.kind, result.seconds, result.errors)
    session.on_error = lambda text: RECORD.error(user, text)
    session.on_disconnect = lambda: RECORD.disconnects.append((time.monotonic(), user))
    RECORD.sessions.append(session)
    try:
        await session.connect()
        await session.open(page, query)
    except BaseException:
        await session.close()
        raise
    return session


@contextlib.asynccontextmanager
async def tab(url: str, user: str, page: str, query: str = "", identity: str | None = None, auto_rerun: bool = True):
    """open_tab for the length of a block: the tab is closed on the way out (also when its user is cancelled)."""
    session = await open_tab(url, user, page, query, identity, auto_rerun)
    try:
        yield session
    finally:
        await session.close()


async def close_all() -> None:
    """Close every session still open (the end of a phase) and forget them."""
    sessions, RECORD.sessions[:] = list(RECORD.sessions), []
    await asyncio.gather(*(session.close() for session in sessions), return_exceptions=True)


# ---- a student: the soft-labels page, T released every few seconds -------------------------------------------------

async def release_temperature(session: StreamlitSession, temperature: float, alpha: float = 0.9, user="student"):
    """Let go of the soft-labels widget's sliders at (T, α) and check that the page wrote T into its URL."""
    result = await session.set_component_state(SOFT_LABELS_KEY, {"temperature": temperature, "alpha": alpha})
    shown = parse_qs(result.query_string).get("temperature", [""])[0]
    if not shown or abs(float(shown) - temperature) > 1e-6 * temperature:
        RECORD.error(user, f"released T = {temperature:g}, the URL says temperature={shown!r}")
    return result


async def student(url: str, rng) -> None:
    async with tab(url, "student", "soft_labels") as session:
        temperatures = session.widget(SOFT_LABELS_KEY).data().get("temperatures")  # the slider's own stops
        while True:
            await asyncio.sleep(rng.uniform(*RELEASE_EVERY_S))
            await release_temperature(session, rng.choice(temperatures))


# ---- a viewer: someone else's run, read-only, its charts polled and drawn as assets/live_run.js does -------------

def observe_run(session: StreamlitSession, run_id: str, seen: dict) -> dict:
    """Update what a viewer's page shows of the run: its state heading (and when it first showed the end), its static
    charts once it ended, and the progress and charts of its live-run component's payload."""
    for heading in session.find(kind="heading", text=f"Run {run_id}: "):
        seen["state"] = heading.text.rsplit(": ", 1)[-1]
        if seen["state"] not in LIVE_STATES and "ended_seen_at" not in seen:
            seen["ended_seen_at"] = time.time()  # epoch seconds, to compare with the run's finished_at
    seen["charts"] = max(seen.get("charts", 0), len(session.find(kind="plotly_chart", key=f"loss-{run_id}")))
    for widget in session.find(key=live_key(run_id)):
        show_payload(json.loads(widget.data()["payload"]), seen)
    return seen


def live_key(run_id: str) -> str:
    return f"live-{run_id}"  # kdviz.ui.components.live_run's key


def show_payload(payload: dict, seen: dict) -> None:
    """What live_run.js draws of a payload: the progress bar's step, the charts."""
    seen["version"] = max(seen.get("version", -1), payload.get("version", -1))
    match = re.search(r"step (\d+) of (\d+)", (payload.get("progress") or {}).get("text", ""))
    if match:
        seen["max_step"] = max(seen.get("max_step", 0), int(match.group(1)))
    if payload.get("figures"):
        seen["charts"] = max(seen.get("charts", 0), len(payload["figures"]))


async def watch_once(session: StreamlitSession, poller: "RoutePoller", run_id: str, seen: dict,
                     user: str = "viewer") -> bool:
    """One tick of live_run.js: poll the run's route; draw new figures (a "redraw", timed as a request); rerun the
    page's fragment (the component's "changed" trigger) when the run's state or queue place changed. Returns whether
    the page reran. A page without the component (the run ended) is only observed."""
    widgets = session.find(key=live_key(run_id))
    if not widgets:
        observe_run(session, run_id, seen)
        return False
    data = widgets[0].data()
    if seen.get("mounted") != data["payload"]:  # a (re)drawn component starts from the payload it came with
        seen["mounted"] = data["payload"]
        observe_run(session, run_id, seen)
    started = time.perf_counter()
    answer = await poller.get(f"since={seen.get('version', -1)}&split={data['split']}&lecture=0")
    if answer.get("state") == "unknown" or answer.get("redraw") != data["redraw"]:
        if answer.get("figures") is not None and answer["version"] > seen.get("version", -1):
            show_payload(answer, seen)  # the last charts at once, the page's redraw after a random wait
        await asyncio.sleep(random.random() * data.get("spread_ms", 0) / 1000)
        await session.trigger_component(live_key(run_id), "changed", f"{answer.get('redraw')}:{answer.get('version')}")
        observe_run(session, run_id, seen)
        return True
    if answer.get("figures") is not None and answer["version"] > seen.get("version", -1):
        RECORD.request(user, "redraw", time.perf_counter() - started, [])
        show_payload(answer, seen)
    return False


async def viewer(url: str, run_id: str, rng, interval: float = VIEWER_POLL_S) -> None:
    seen = {"run": run_id, "max_step": 0, "charts": 0, "state": None, "since": time.monotonic()}
    RECORD.viewers.append(seen)
    poller = RoutePoller(url, f"/kdviz/runs/{run_id}/live", "run")
    try:
        async with tab(url, "viewer", "live_distillation", f"run={run_id}") as session:
            observe_run(session, run_id, seen)
            await asyncio.sleep(rng.uniform(0, interval))  # browsers do not poll in step
            while True:
                await watch_once(session, poller, run_id, seen)
                await asyncio.sleep(interval)
    finally:
        poller.close()


# ---- a runner: the Live page's form, a run of its own now and then -------------------------------------------------

async def start_run(session: StreamlitSession, preset: str, epochs: int | None = None) -> str:
    """Choose the preset (and its epochs) in the Live page's form, press Start run; returns the run's id."""
    options = list(session.widget("preset").proto.options)
    label = next((option for option in options if PRESET_LABELS.get(preset, preset) in option), None)
    if label is None:
        raise KeyError(f"no preset {preset!r} among {options}")
    await session.set_widget("preset", label)
    if epochs is not None:
        await session.set_widget(f"{preset}:epochs", epochs)
    result = await session.click(label="Start run")
    run_id = parse_qs(result.query_string).get("run", [None])[0]
    if run_id is None:
        raise RuntimeError(f"Start run gave no run: {result.errors or result.query_string!r}")
    return run_id


async def wait_for_end(session: StreamlitSession, run_id: str, timeout: float = 600.0, user: str = "runner") -> str:
    """Watch the run on its owner's page (polled every 0.5 s, as its owner's browser does) until the page shows its
    end; returns its final state."""
    seen: dict = {}
    poller = RoutePoller(session.url, f"/kdviz/runs/{run_id}/live", "run")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            await watch_once(session, poller, run_id, seen, user)
            if seen.get("state") and seen["state"] not in LIVE_STATES:
                return seen["state"]
            await asyncio.sleep(OWNER_POLL_S)
    finally:
        poller.close()
    raise TimeoutError(f"run {run_id} did not end within {timeout:g} s (last seen {seen.get('state')!r})")


async def runner(url: str, rng, preset: str = "quick", max_runs: int = 3) -> None:
    """Opens the Live page and, every 10–30 s, starts a run of the preset and watches it to its end (max_runs)."""
    async with tab(url, "runner", "live_distillation") as session:
        for _ in range(max_runs):
            await asyncio.sleep(rng.uniform(10.0, 30.0))
            started = time.monotonic()
            run_id = await start_run(session, preset)
            state = await wait_for_end(session, run_id)
            RECORD.runs.append({"id": run_id, "seconds": round(time.monotonic() - started, 2), "state": state})
        await asyncio.Event().wait()  # then stays on the page, as a tab left open does


# ---- a follower: a room's poll (kdviz.routes), a rerun when the step or a question changed, guesses -------------

class RoutePoller:
    """A browser's fetch of one of kdviz's routes (kdviz.routes), GET <path>?<query>, on one keep-alive HTTP/1.1
    connection, gzip accepted as browsers do; each poll's time is recorded under kind."""

    def __init__(self, url: str, path: str, kind: str):
        parts = urlsplit(url)
        self.host, self.port, self.path, self.kind = parts.hostname, parts.port or 80, path, kind
        self._streams = None

    async def get(self, query: str) -> dict:
        """The room's answer; a keep-alive connection the server closed while idle (uvicorn closes one after 5 s
        without a request, e.g. while this follower's page reran) is reopened once, as a browser's fetch does."""
        reused = self._streams is not None
        try:
            return await self._get(query)
        except (OSError, asyncio.IncompleteReadError):
            self.close()
            if not reused:
                raise
        return await self._get(query)

    async def _get(self, query: str) -> dict:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        started = time.perf_counter()
        writer.write(f"GET {self.path}?{query} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                     "Accept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))
        body = await reader.readexactly(length)
        if re.search(rb"content-encoding: *gzip", head, re.I):
            body = gzip.decompress(body)
        RECORD.polls.append((time.monotonic(), time.perf_counter() - started, self.kind, length))
        return json.loads(body)

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


class RoomPoller(RoutePoller):
    """follow.js's fetch of GET /kdviz/rooms/<code>?since=<version>."""

    def __init__(self, url: str, room: str):
        super().__init__(url, f"/kdviz/rooms/{room}", "room")

    async def get(self, since: int) -> dict:
        return await super().get(f"since={since}")


@dataclass
class Following:
    """What a follower's browser holds between polls: the room version and view it shows, the questions it answered."""

    version: int = 0
    view: dict = field(default_factory=dict)
    guessed: set = field(default_factory=set)


async def follow_once(session: StreamlitSession, poller: RoomPoller, state: Following, rng, user="follower") -> bool:
    """One tick of follow.js: poll the room; rerun the page (the component's "changed" trigger) when the step or a
    question changed (a new T or α alone is applied in the browser); then guess if a question is open. Returns
    whether the page reran."""
    widgets = session.find(key=FOLLOW_KEY)
    if not widgets:
        return False  # not following (the room ended, or this browser explores on its own): no poll
    data = widgets[0].data()
    if data["version"] > state.version:
        state.version, state.view = data["version"], data["view"]
    answer = await poller.get(state.version)
    if answer.get("state") != "live":
        await session.trigger_component(FOLLOW_KEY, "changed", f"{answer.get('state')}:{state.version}")
        return True
    if answer["version"] <= state.version:
        return False
    view, old = answer["view"], state.view
    state.version, state.view = answer["version"], view
    if data.get("browser_follows") and all(view.get(name) == old.get(name) for name in FOLLOWED_FIELDS):
        return False
    await session.trigger_component(FOLLOW_KEY, "changed", str(answer["version"]))
    shown = RECORD.changes.get(answer["version"])
    if shown is not None:
        RECORD.follow_lags.append((time.monotonic(), time.monotonic() - shown))
    await guess(session, view, state, rng, user)
    return True


async def guess(session: StreamlitSession, view: dict, state: Following, rng, user="follower") -> None:
    """An open, unrevealed question gets this follower's guess: the radio or slider, then "Commit my guess"."""
    question = view.get("question")
    if not question or view.get("revealed") or question in state.guessed:
        return
    key = f"tour.follow_guess.{question}"
    control = session.widget(key)
    if control.kind == "radio":
        await session.set_widget(key, rng.randrange(len(control.proto.options)))
    else:  # a slider: a value on its steps
        low, high, step = control.proto.min, control.proto.max, control.proto.step or 1
        await session.set_widget(key, round(low + step * round(rng.uniform(0, high - low) / step), 6))
    result = await session.click(f"tour.send.{question}")
    state.guessed.add(question)
    if any(refusal in text for text in result.errors for refusal in REFUSALS):
        return  # too late: the lecturer revealed the answer meanwhile (a refusal, recorded as such)
    if result.find(key=key) and not result.find(kind="alert", text="Your guess"):
        RECORD.error(user, f"the guess on {question!r} was not acknowledged")  # still asked, and no "Your guess"
        return
    RECORD.guesses += 1  # acknowledged, or the page already followed the lecturer to the next step


async def follower(url: str, room: str, rng) -> None:
    poller = RoomPoller(url, room)
    try:
        async with tab(url, "follower", "lecture", f"room={room}") as session:
            state = Following()
            widgets = session.find(key=FOLLOW_KEY)
            if widgets:
                state.version, state.view = widgets[0].data()["version"], widgets[0].data()["view"]
                await guess(session, state.view, state, rng)  # a question may be open already
            await asyncio.sleep(rng.uniform(0, POLL_INTERVAL_S))  # phones do not poll in step
            while True:
                await follow_once(session, poller, state, rng)
                await asyncio.sleep(POLL_INTERVAL_S)
    finally:
        poller.close()


# ---- the lecturer: presents, then moves steps, asks, reveals, moves T ---------------------------------------------

async def present(session: StreamlitSession) -> str:
    """Press Present on the tour; returns the room code the page wrote into its URL."""
    result = await session.click("tour.present")
    room = parse_qs(result.query_string).get("room", [None])[0]
    if room is None:
        raise RuntimeError(f"Present gave no room: {result.errors or result.query_string!r}")
    return room


async def lecture_action(session: StreamlitSession, action: str, value, poller: RoomPoller) -> None:
    """One of the lecturer's moves, then note the room version it made and when the lecturer's page showed it."""
    step = int(parse_qs(session.query_string).get("step", ["1"])[0])
    if action == "step":
        await session.set_widget("tour.indicator", [str(value)])
    elif action in ("ask", "reveal"):
        await session.click(f"tour.{action}.{value}")
    else:  # T on a step drawn in the browser: the followers' browsers redraw it, nothing reruns there
        await session.set_component_state(f"tour.widget.{step}", {"temperature": value, "alpha": 0.9})
    answer = await poller.get(0)
    RECORD.changes[answer.get("version", 0)] = time.monotonic()


async def lecturer(session: StreamlitSession, room: str, pace: float = 4.0) -> None:
    """The lecture: LECTURE_SCRIPT over and over, one move every `pace` seconds."""
    poller = RoomPoller(session.url, room)
    try:
        for action, value in itertools.cycle(LECTURE_SCRIPT):
            await asyncio.sleep(pace)
            await lecture_action(session, action, value, poller)
    finally:
        poller.close()
