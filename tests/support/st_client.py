"""A browser tab without the browser: an asyncio client that speaks Streamlit's websocket protocol (BackMsg out,
ForwardMsg in), so that one core can play hundreds of users of a Streamlit app (bench/hall_load.py, tests).

What a tab does, and so what this client does (Streamlit 1.67, read from its server code and its frontend bundle):

* connect: a websocket to /_stcore/stream with the subprotocol "streamlit" and the page's cookies (st.context.cookies
  reads them from this handshake). Streamlit's XSRF token (the second subprotocol entry, checked against the
  `_streamlit_xsrf` cookie) only unlocks the signed st.user cookie in starlette_websocket.py: nothing else is refused
  without it, so the client sends none and the server keeps its default `enableXsrfProtection`;
* a page load is a BackMsg rerun_script with ClientState(query_string, page_name = the url path, context_info); later
  reruns name the page by the page_script_hash that new_session gave, and carry every widget state the tab holds (the
  frontend re-sends them all on each rerun; a trigger, such as a button click, is sent once and dropped);
* a widget inside an st.fragment reruns only that fragment: the rerun carries the fragment id of the widget's delta;
* `st.fragment(run_every=...)` is driven by the tab, not pushed by the server: the server sends ForwardMsg auto_rerun
  (interval, fragment id) and the tab sends a rerun_script with that fragment id and is_auto_rerun every interval,
  until stop_auto_rerun or the next full run. Such a redraw is counted as a "push" (what a viewer sees change);
* each script run the server makes is new_session, deltas, then script_finished (FINISHED_EARLY_FOR_RERUN when
  st.rerun() restarts it: the request is not over until a final status). The server's websocket pings are answered by
  the websockets library, as a browser answers them.

A session keeps one request in flight, as a person does: rerun() waits for the previous request to end, and an
auto-rerun tick that finds a request in flight is skipped (counted in `skipped_ticks`), so that every timing is one
request's BackMsg → script_finished. With client.showErrorDetails = "none" a failing script still draws an
st.exception element; that, an st.error alert, a compile error or a page-not-found is counted in `errors`.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import websockets
from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

FINAL = {ForwardMsg.FINISHED_SUCCESSFULLY: "full", ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY: "fragment",
         ForwardMsg.FINISHED_WITH_COMPILE_ERROR: "compile error"}
INTERNAL_KEY_PREFIX = "$$STREAMLIT_INTERNAL_KEY"  # streamlit.runtime.state.session_state (bidi trigger ids)
# How each widget's value travels in a WidgetState (streamlit/elements/widgets/*.py: register_widget's value_type)
STRING_WIDGETS = ("radio", "selectbox", "text_input", "text_area", "color_picker", "time_input", "date_input")
ARRAY_WIDGETS = ("button_group", "multiselect")


class SessionClosed(ConnectionError):
    """The server closed the websocket (or it broke) while a request was waiting."""


@dataclass
class Drawn:
    """One element the server drew: its type (the Element oneof, e.g. "slider", "bidi_component", "markdown"), its
    place in the page (delta_path), its widget id and user key (widgets only), its fragment (if any) and its text."""

    kind: str
    path: tuple[int, ...]
    proto: object  # the element's message, e.g. a Slider
    fragment_id: str = ""
    element_id: str = ""
    key: str | None = None
    text: str = ""

    def data(self) -> dict:
        """A components-v2 element's data (its JSON payload), {} for any other element."""
        payload = getattr(self.proto, "json", "") if self.kind == "bidi_component" else ""
        return json.loads(payload) if payload else {}


@dataclass
class RunResult:
    """One request: what kind it was ("load", "rerun", "fragment", "auto"), how long from BackMsg to the final
    script_finished, how it ended, what it drew, the errors it showed and the URL's query string afterwards."""

    kind: str
    seconds: float
    status: str
    drawn: list[Drawn]
    errors: list[str]
    query_string: str

    def find(self, kind: str | None = None, key: str | None = None, text: str | None = None) -> list[Drawn]:
        return [d for d in self.drawn if (kind is None or d.kind == kind) and (key is None or d.key == key)
                and (text is None or text in d.text)]


@dataclass
class Stats:
    """What a session measured, for the load generator: timings per kind, errors, pushes, disconnects."""

    timings: list[tuple[str, float]] = field(default_factory=list)  # (kind, seconds) per finished request
    errors: list[str] = field(default_factory=list)
    pushes: int = 0  # auto-reruns of run_every fragments that came back (redraws a viewer sees)
    skipped_ticks: int = 0  # auto-rerun ticks that found a request in flight
    unsolicited: int = 0  # deltas that arrived with no request in flight
    disconnects: int = 0
    bytes_received: int = 0


def user_key(element_id: str) -> str | None:
    """The user key inside a Streamlit element id ("$$ID-<hash>-<key>"), as streamlit.runtime.state.common does."""
    if not element_id.startswith("$$ID-"):
        return None
    key = element_id.split("-", maxsplit=2)[-1]
    return None if key == "None" else key


def _describe(proto) -> tuple[str, str]:
    """(widget id, text) of an element message: its label, body or message, whichever it has."""
    element_id = getattr(proto, "id", "")  # widgets only; other elements have no such field
    for name in ("label", "body", "text", "message"):
        value = getattr(proto, name, None)
        if isinstance(value, str) and value:
            return element_id, value
    return element_id, ""


class StreamlitSession:
    """One tab of a Streamlit app: `await connect()`, `await open(page, query)`, then change widgets by their user key
    (set_widget, click, set_component_state, trigger_component) or `rerun()`; `await close()` at the end.

    url: the app's base URL (http://host:port); cookies: the tab's cookies (e.g. {"kdviz_identity": ...});
    auto_rerun: whether run_every fragments are rerun (a tab left open does); timeout: seconds one request may take.
    """

    def __init__(self, url: str, cookies: dict[str, str] | None = None, auto_rerun: bool = True,
                 timeout: float = 120.0, timezone: str = "UTC", locale: str = "en-US"):
        self.url, self.cookies = url.rstrip("/"), dict(cookies or {})
        self.auto_rerun, self.timeout = auto_rerun, timeout
        self.timezone, self.locale = timezone, locale
        self.page, self.query_string, self.page_script_hash = "", "", ""
        self.page_elements: dict[tuple[int, ...], Drawn] = {}  # what the tab shows now, by delta path
        self.stats = Stats()
        self._widget_states: dict[str, WidgetState] = {}  # what the tab re-sends on every rerun
        self._socket = None
        self._reader: asyncio.Task | None = None
        self._timers: dict[str, dict] = {}  # fragment id → {interval, task, busy, stopped}: the tab's setIntervals
        self._lock = asyncio.Lock()  # one request in flight
        self._pending: dict | None = None  # the request in flight: future, kind, start, drawn, errors
        self.closed = False
        # hooks for a load generator: on_request(RunResult) after each request, on_error(text) for each error shown,
        # on_disconnect() when the server closed the websocket (not when close() did)
        self.on_request = self.on_error = self.on_disconnect = None

    # ---- connection ------------------------------------------------------------------------------------------------

    async def connect(self) -> None:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        headers = {"Origin": self.url}  # same-origin, as a browser sends it (the server refuses foreign origins)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        self._socket = await websockets.connect(
            f"{scheme}://{parts.netloc}{parts.path}/_stcore/stream", subprotocols=["streamlit"],
            additional_headers=headers, max_size=None, compression=None,
            ping_interval=None,  # a browser sends no pings of its own; it answers the server's (the library does)
            open_timeout=self.timeout)
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        self.closed = True
        for timer in self._timers.values():
            timer["task"].cancel()
        self._timers.clear()
        if self._socket is not None:
            await self._socket.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    # ---- requests --------------------------------------------------------------------------------------------------

    async def open(self, page: str = "", query: str = "") -> RunResult:
        """Load a page (its url path, "" for the main page) with a query string, as a browser's address bar does."""
        self.page, self.query_string, self.page_script_hash = page.strip("/"), query.lstrip("?"), ""
        self._widget_states.clear()
        return await self.rerun(kind="load")

    async def rerun(self, widgets: list[WidgetState] = (), fragment_id: str = "", kind: str = "rerun",
                    auto: bool = False) -> RunResult:
        """Send a rerun_script with every widget state the tab holds plus `widgets` (one-shot triggers or new values
        already stored) and wait for that run's final script_finished."""
        async with self._lock:
            return await self._request(list(widgets), fragment_id, kind, auto)

    async def _request(self, extra: list[WidgetState], fragment_id: str, kind: str, auto: bool) -> RunResult:
        if self.closed:
            raise SessionClosed("the session is closed")
        message = BackMsg()
        state = message.rerun_script
        state.query_string = self.query_string
        state.page_script_hash = self.page_script_hash
        if not self.page_script_hash:
            state.page_name = self.page  # a page load names the page by its url path
        state.fragment_id = fragment_id
        state.is_auto_rerun = auto
        widget_ids = {w.id for w in extra}
        state.widget_states.widgets.extend([w for w in self._widget_states.values() if w.id not in widget_ids] + extra)
        context = state.context_info
        context.timezone, context.timezone_offset, context.locale = self.timezone, 0, self.locale
        context.url = f"{self.url}/{self.page}" + (f"?{self.query_string}" if self.query_string else "")
        context.is_embedded, context.color_scheme = False, "light"
        done = asyncio.get_running_loop().create_future()
        self._pending = {"future": done, "kind": kind, "drawn": [], "errors": [], "start": time.perf_counter()}
        await self._socket.send(message.SerializeToString())
        try:
            return await asyncio.wait_for(done, self.timeout)
        except asyncio.TimeoutError:
            self._error(f"{kind}: no script_finished within {self.timeout:g} s")
            raise
        finally:
            self._pending = None

    def widget(self, key: str) -> Drawn:
        """The widget drawn now with this user key (KeyError naming the keys drawn when there is none)."""
        for drawn in self.page_elements.values():
            if drawn.key == key:
                return drawn
        keys = sorted(d.key for d in self.page_elements.values() if d.key)
        raise KeyError(f"no widget with key {key!r} on the page; keys drawn: {keys}")

    def find(self, kind: str | None = None, key: str | None = None, text: str | None = None) -> list[Drawn]:
        """Elements drawn now, filtered by type, user key and a piece of their text."""
        return [d for d in self.page_elements.values() if (kind is None or d.kind == kind)
                and (key is None or d.key == key) and (text is None or text in d.text)]

    async def set_widget(self, key: str, value) -> RunResult:
        """Give the widget with this user key a new value, as a user's change does, and wait for the rerun.

        slider: a number or a (low, high) pair; checkbox/toggle: a bool; radio/selectbox/text: the option's label as
        drawn (or its index for radio and selectbox); number_input: a number; segmented control / multiselect: a list
        of labels."""
        drawn = self.widget(key)
        state = WidgetState(id=drawn.element_id)
        if drawn.kind == "slider":
            state.double_array_value.data.extend(value if isinstance(value, (list, tuple)) else [value])
        elif drawn.kind == "checkbox":
            state.bool_value = bool(value)
        elif drawn.kind in STRING_WIDGETS:
            options = list(getattr(drawn.proto, "options", []))
            state.string_value = options[value] if isinstance(value, int) and options else str(value)
        elif drawn.kind == "number_input":
            state.double_value = float(value)
        elif drawn.kind in ARRAY_WIDGETS:
            state.string_array_value.data.extend(str(v) for v in value)
        else:
            raise TypeError(f"set_widget does not know how to set a {drawn.kind} ({key!r})")
        self._widget_states[state.id] = state
        return await self.rerun(fragment_id=drawn.fragment_id, kind="fragment" if drawn.fragment_id else "rerun")

    async def click(self, key: str | None = None, label: str | None = None) -> RunResult:
        """Press a button, found by user key or by a piece of its label (a trigger: sent once)."""
        drawn = self.widget(key) if key else self._by_label("button", label)
        trigger = WidgetState(id=drawn.element_id, trigger_value=True)
        return await self.rerun([trigger], drawn.fragment_id, "fragment" if drawn.fragment_id else "rerun")

    async def set_component_state(self, key: str, values: dict) -> RunResult:
        """A components-v2 (bidi) component's setStateValue: its state dict, merged with what it held, as json_value."""
        drawn = self.widget(key)
        held = self._widget_states.get(drawn.element_id)
        merged = {**(json.loads(held.json_value) if held is not None else {}), **values}
        self._widget_states[drawn.element_id] = WidgetState(id=drawn.element_id, json_value=json.dumps(merged))
        return await self.rerun(fragment_id=drawn.fragment_id, kind="fragment" if drawn.fragment_id else "rerun")

    async def trigger_component(self, key: str, event: str, value) -> RunResult:
        """A components-v2 component's setTriggerValue(event, value): a one-shot JSON list on its "events" id."""
        drawn = self.widget(key)
        trigger = WidgetState(id=f"{INTERNAL_KEY_PREFIX}_{drawn.element_id}__events",
                              json_trigger_value=json.dumps([{"event": event, "value": value}]))
        return await self.rerun([trigger], drawn.fragment_id, "fragment" if drawn.fragment_id else "rerun")

    def _by_label(self, kind: str, label: str | None) -> Drawn:
        found = [d for d in self.page_elements.values() if d.kind == kind and label and label in d.text]
        if not found:
            raise KeyError(f"no {kind} labelled {label!r} on the page")
        return found[0]

    # ---- what the server sends -------------------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for raw in self._socket:
                self.stats.bytes_received += len(raw)
                message = ForwardMsg()
                message.ParseFromString(raw)
                self._handle(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self.closed:
                self.stats.disconnects += 1
                self.closed = True
                if self.on_disconnect is not None:
                    self.on_disconnect()
            if self._pending is not None and not self._pending["future"].done():
                self._pending["future"].set_exception(SessionClosed("the server closed the websocket"))

    def _handle(self, message: ForwardMsg) -> None:
        kind = message.WhichOneof("type")
        if kind == "new_session":
            self.page_script_hash = message.new_session.page_script_hash
            if not message.metadata.run.fragment_ids:  # a full run: the frontend drops every auto-rerun timer
                self._stop_timers(list(self._timers))
        elif kind == "delta":
            self._delta(message)
        elif kind == "page_info_changed":
            self.query_string = message.page_info_changed.query_string  # st.query_params wrote the URL
        elif kind == "navigation":
            self.page_script_hash = message.navigation.page_script_hash or self.page_script_hash
        elif kind == "auto_rerun":
            self._start_timer(message.auto_rerun.fragment_id, message.auto_rerun.interval)
        elif kind == "stop_auto_rerun":
            self._stop_timers(list(message.stop_auto_rerun.fragment_ids))
        elif kind == "script_finished":
            self._finished(message)
        elif kind == "page_not_found":
            self._error(f"page not found: {message.page_not_found.page_name!r}")
        elif kind == "session_event" and message.session_event.WhichOneof("type") == "script_compilation_exception":
            self._error("script compilation error")
        elif kind == "ref_hash":  # the tab has no message cache: .streamlit/config.toml turns references off
            self._error("the server sent a cached-message reference (minCachedMessageSize)")

    def _delta(self, message: ForwardMsg) -> None:
        if self._pending is None:
            self.stats.unsolicited += 1
        delta, path = message.delta, tuple(message.metadata.delta_path)
        if delta.WhichOneof("type") != "new_element":
            return
        element = delta.new_element
        kind = element.WhichOneof("type")
        proto = getattr(element, kind)
        element_id, text = _describe(proto)
        drawn = Drawn(kind, path, proto, delta.fragment_id, element_id, user_key(element_id), text)
        self.page_elements[path] = drawn
        if getattr(proto, "set_value", False):  # the script set this widget's value: the tab takes the server's
            self._widget_states.pop(element_id, None)
        if self._pending is not None:
            self._pending["drawn"].append(drawn)
        if kind == "exception":
            self._error(f"st.exception: {proto.type or ''} {proto.message}".strip())
        elif kind == "alert" and proto.format == Alert.ERROR:
            self._error(f"st.error: {proto.body[:200]}")

    def _error(self, text: str) -> None:
        self.stats.errors.append(text)
        if self._pending is not None:
            self._pending["errors"].append(text)
        if self.on_error is not None:
            self.on_error(text)

    def _finished(self, message: ForwardMsg) -> None:
        status = FINAL.get(message.script_finished)
        if status is None:  # FINISHED_EARLY_FOR_RERUN: st.rerun() goes on in the same request
            return
        fragments = set(message.metadata.run.fragment_ids)
        self._drop_stale(fragments)
        pending = self._pending
        if pending is None or pending["future"].done():
            return
        seconds = time.perf_counter() - pending["start"]
        self.stats.timings.append((pending["kind"], seconds))
        if pending["kind"] == "auto":
            self.stats.pushes += 1
        result = RunResult(pending["kind"], seconds, status, pending["drawn"], pending["errors"], self.query_string)
        pending["future"].set_result(result)
        if self.on_request is not None:
            self.on_request(result)

    def _drop_stale(self, fragments: set[str]) -> None:
        """What the frontend does when a run ends: elements the run did not redraw go (a fragment run: those of its
        fragments only), and so do the stored states of widgets no longer drawn."""
        if self._pending is None:
            return
        touched = {d.path for d in self._pending["drawn"]}
        for path, drawn in list(self.page_elements.items()):
            if path not in touched and (not fragments or drawn.fragment_id in fragments):
                del self.page_elements[path]
        drawn_ids = {d.element_id for d in self.page_elements.values()}
        for widget_id in list(self._widget_states):
            if widget_id not in drawn_ids:
                del self._widget_states[widget_id]

    # ---- run_every fragments: the tab's timers ---------------------------------------------------------------------

    def _start_timer(self, fragment_id: str, interval: float) -> None:
        timer = self._timers.get(fragment_id)
        if not self.auto_rerun or not fragment_id or (timer is not None and timer["interval"] == interval):
            return
        self._stop_timers([fragment_id])
        timer = self._timers[fragment_id] = {"interval": interval, "busy": False, "stopped": False}
        timer["task"] = asyncio.get_running_loop().create_task(self._tick(fragment_id, timer))

    def _stop_timers(self, fragment_ids: list[str]) -> None:
        """clearInterval: a sleeping timer is cancelled; one whose rerun is in flight ends after it (the full run that
        stops it is often that very request's st.rerun(), whose timing must not be lost)."""
        for fragment_id in fragment_ids:
            timer = self._timers.pop(fragment_id, None)
            if timer is not None:
                timer["stopped"] = True
                if not timer["busy"]:
                    timer["task"].cancel()

    async def _tick(self, fragment_id: str, timer: dict) -> None:
        """setInterval(interval): rerun the fragment, unless this tab's previous request is still in flight."""
        while not self.closed and not timer["stopped"]:
            await asyncio.sleep(timer["interval"])
            if self._lock.locked():
                self.stats.skipped_ticks += 1
                continue
            timer["busy"] = True
            try:
                await self.rerun(fragment_id=fragment_id, kind="auto", auto=True)
            except (asyncio.TimeoutError, SessionClosed, websockets.ConnectionClosed):
                return
            finally:
                timer["busy"] = False
