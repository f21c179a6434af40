"""A lecture hall on one server: N browser sessions use the app while one lecture-preset run trains.

Every phase starts a run of the preset from a browser (the Live page's "Start run") on one Streamlit server:

* alone: the starting page leaves at once (about:blank); nothing else talks to the server until the run finishes;
* N sessions (N = 10 and 30 by default): N Playwright contexts in one Chromium open /soft_labels one after the other
  (staggered) and play with its temperature slider; once every session has drawn the page and moved the slider
  (ramp-up, no run training), the run is started and every session opens /live_distillation?run=<id> (a read-only
  viewer), watches it for a few seconds, goes back to /soft_labels, moves the slider a few times, waits, opens the
  run again, ... until the run has finished. Every page is a fresh load (a new Streamlit session);
* alone, W epochs (--watch-epochs, default 4× the preset's: 120 for lecture): the alone run again, its "Epochs"
  field set in the form, long enough for a hall to be watching it for most of the run;
* N viewers (--watchers, 10 and 30 by default), the lecture moment: the starter starts the W-epoch run and leaves,
  then N contexts open /live_distillation?run=<id> one after the other (staggered), each a single page load kept
  open (no reload, no widget: a read-only viewer redrawn by the app's run_every fragment), until the run has
  finished. Measured beside the rest: the fragment reruns (count, per second, per viewer-second, median, p95), the
  viewers that drew the page (title and a Plotly chart) and when.

--sessions or --watchers with no values skips those phases (and their alone run).

Before the phases the server is warmed up (both pages once, one uncounted run: the first run in a process pays
one-off costs). The server runs a copy of the sources taken at the start (edits made meanwhile cannot reach it).

Measured, per phase: the server's script runs (bench/script_timer.py in the server process, via bench/hall_server.py:
each ScriptRunner._run_script, full reruns and fragment reruns), the run's wall time from its status.json, the
server's CPU seconds (/proc/<pid>/stat utime+stime) and peak memory (VmHWM, reset per phase through clear_refs),
app errors (st.exception boxes on the pages, console errors, uncaught page errors, failed page loads, tracebacks in
the server log: the 0-errors target) and, apart, the load generator's timeouts (pages that drew no title or chart in
time, sliders not focusable: what one Chromium on one core could not get done, shown with that core's busy fraction),
and each page's first render (navigation to its st.title heading drawn). By default the server is pinned to core 0
and this process with Playwright and Chromium to core 1 (--no-pin: they share every core).

    python bench/bench_hall.py                          # sessions (alone, 10, 30), watch (alone, 10, 30 viewers)
    python bench/bench_hall.py --sessions 2 --watchers --preset quick --json /tmp/hall.json
    python bench/bench_hall.py --sessions --watchers 2 --preset quick --watch-epochs 300
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.appserver import launch_chromium, server  # noqa: E402

LIVE_STATES = ("queued", "running", "paused")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MAX_EPOCHS = 500  # the form's "Epochs" field (kdviz/ui/runs.py)
TARGET_ERRORS, TARGET_P95_MS, TARGET_P95_AT, TARGET_SLOWDOWN = 0, 250.0, 10, 1.5
TITLES = {"soft_labels": "Soft labels & temperature", "live": "Live distillation"}
ERROR_BOXES = '[data-testid="stException"]'
ALERT_ERRORS = '[data-testid="stAlertContentError"]'  # st.error: the app's own messages (e.g. a full queue)
CHART = ".js-plotly-plot"  # a Plotly chart drawn in the page (the live run's loss and accuracy charts)
# What went wrong, in two kinds. App errors: what the app (or its server) did wrong, the 0-errors target. Load-generator
# timeouts: what this bench's one Chromium did not get done in time (a page that drew no title, or no chart, within
# --load-timeout; a slider that could not be focused in 30 s): when the browser core is saturated these say more
# about the load generator than about the app (the app raised nothing: see the app errors beside them).
APP_ERRORS = ("st.exception", "console", "pageerror", "page load failed", "server traceback")
LOAD_GENERATOR_TIMEOUTS = ("no title in time", "no chart in time", "slider not focusable")
# Streamlit's frontend, loaded at /<page>, first asks /<page>/_stcore/health and host-config (404), then the root
# ones: streamlit/streamlit#7074. Listed apart, not counted as errors.
BASE_PATH_PROBE = re.compile(r"status of 404 .*\(https?://[^/]+/[^/?#]+/_stcore/(health|host-config)\)$")


# ---- the server process, from /proc ----------------------------------------------------------------------------

def proc_stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # fields from the 3rd (state) on


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of the process (+ cutime + cstime: its reaped children), in seconds."""
    fields = proc_stat(pid)
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / CLOCK_TICKS


def status_field(pid: int, key: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def status_mb(pid: int, key: str) -> float:
    value = status_field(pid, key)
    return int(value.split()[0]) / 1024 if value else float("nan")


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (writing 5 to clear_refs, Linux ≥ 4.0), so a phase reads its own peak."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                tree.setdefault(int(proc_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return tree


def descendants(pid: int, tree: dict[int, list[int]] | None = None) -> list[int]:
    tree = tree if tree is not None else children_of()
    found, todo = [], list(tree.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo += tree.get(child, [])
    return found


def python_server_pid(pid: int) -> int:
    """The pid that runs the Python server: pid itself when it is Python (taskset execs), else its Python child."""
    for candidate in [pid, *descendants(pid)]:
        try:
            if Path(os.readlink(f"/proc/{candidate}/exe")).name.startswith("python"):
                return candidate
        except OSError:
            pass
    raise RuntimeError(f"no Python process at or under pid {pid}")


def bench_side_cpu(server_pid: int) -> float:
    """CPU seconds of this process and every descendant but the server (Playwright's driver, Chromium and its
    reaped renderers), so that the browsers' cost can be told apart from the server's."""
    tree = children_of()
    server_side = {server_pid, *descendants(server_pid, tree)}
    own = os.times()
    total = own.user + own.system
    for pid in descendants(os.getpid(), tree):
        if pid not in server_side:
            try:
                total += cpu_seconds(pid, children=True)
            except (OSError, IndexError, ValueError):
                pass
    return total


def core_busy() -> dict[int, float]:
    """Busy CPU seconds of each core since boot (/proc/stat: all but idle and iowait), whoever used them."""
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(v) for v in values[:8]]
            busy[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS
    return busy


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def affinity(pid: int) -> str:
    try:
        return status_field(pid, "Cpus_allowed_list")
    except OSError:
        return "?"


# ---- small statistics --------------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between the closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: list[float]) -> dict:
    return {"n": len(seconds), "median_ms": None if not seconds else 1000 * statistics.median(seconds),
            "p95_ms": None if not seconds else 1000 * percentile(seconds, 95),
            "max_ms": None if not seconds else 1000 * max(seconds)}


def read_script_times(path: Path, start: float, end: float) -> list[dict]:
    """The server's script runs that ended within [start, end] (epoch seconds)."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and start <= float(parts[0]) <= end:
            rows.append({"t": float(parts[0]), "seconds": float(parts[1]), "kind": parts[2],
                         "page": parts[3] if len(parts) > 3 else "", "session": parts[4] if len(parts) > 4 else ""})
    return rows


def script_summary(rows: list[dict]) -> dict:
    groups = {"all": rows, "full": [r for r in rows if r["kind"] == "full"],
              "fragment": [r for r in rows if r["kind"] == "fragment"]}
    for page in sorted({r["page"] for r in rows}):
        groups[f"page {page or '?'}"] = [r for r in rows if r["page"] == page]
    return {name: summary_ms([r["seconds"] for r in group]) for name, group in groups.items()}


def tracebacks(text: str) -> list[str]:
    """Every `Traceback (most recent call last)` block in a log, up to its exception line, with the line before it
    (Streamlit's logger names what failed there)."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        if "Traceback (most recent call last)" in lines[i]:
            start, i = max(0, i - 1), i + 1
            while i < len(lines) and (lines[i].startswith((" ", "\t")) or not lines[i].strip()
                                      or lines[i].startswith(("During handling", "The above exception"))
                                      or "Traceback (most recent call last)" in lines[i]):
                i += 1
            blocks.append("\n".join(lines[start:i + 1]))
        i += 1
    return blocks


# ---- the browser side ------------------------------------------------------------------------------------------

class Shared:
    """What the sessions of a phase share: the run to view, the stop signal, and everything they saw."""

    def __init__(self, url: str):
        self.url = url
        self.run_id: str | None = None
        self.started = asyncio.Event()  # the run was submitted: every session opens it at once
        self.stop = asyncio.Event()
        self.first_renders: dict[str, list[float]] = {"soft_labels": [], "live": []}
        self.first_charts: list[float] = []  # watch phases: navigation → the first chart drawn, per viewer
        self.viewers: dict[int, dict] = {}  # watch phases: each viewer's outcome, and when it drew (epoch s)
        self.ready: set[int] = set()  # sessions that drew /soft_labels and moved its slider once
        self.errors: dict[str, list[str]] = {kind: [] for kind in (*APP_ERRORS, *LOAD_GENERATOR_TIMEOUTS)
                                             if kind != "server traceback"}
        self.base_path_probes = 0  # the benign 404s of BASE_PATH_PROBE
        self.alerts: list[str] = []  # st.error boxes (not counted as errors: the app's own messages)
        self.request_failures: list[str] = []  # informational (e.g. a websocket closed by navigating away)
        self.unfinished: dict[str, list[float]] = {"soft_labels": [], "live": []}  # loads cut by the run's end
        self.iterations: list[int] = []
        self.slider_moves = 0
        self.skipped_checks = 0  # watch phases: st.exception checks that did not come back within 30 s

    async def pause(self, seconds: float, until_started: bool = False) -> None:
        """Sleep, waking early at the stop (and, with until_started, when the run has been submitted)."""
        events = [self.stop] + ([self.started] if until_started else [])
        waits = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()


def watch_page(page, shared: Shared, who: str) -> None:
    def console(message):
        if message.type == "error":
            text = f"{message.text[:300]} ({(message.location or {}).get('url', '')})"
            if BASE_PATH_PROBE.search(text):
                shared.base_path_probes += 1
            else:
                shared.errors["console"].append(f"{who} on {urllib.parse.urlsplit(page.url).path}: {text}")

    page.on("console", console)
    page.on("pageerror", lambda error: shared.errors["pageerror"].append(f"{who}: {str(error)[:300]}"))
    page.on("requestfailed", lambda request: shared.request_failures.append(
        f"{who}: {request.url[:120]} {request.failure}"))


async def visit(page, shared: Shared, path: str, kind: str, who: str, timeout_ms: float = 60_000) -> bool:
    """Open the page and time it until its st.title heading is drawn; False (a failed load) when it is not."""
    started = time.perf_counter()
    try:
        await page.goto(shared.url + path, wait_until="commit", timeout=timeout_ms)
        await page.locator("h1").filter(has_text=TITLES[kind]).first.wait_for(state="visible", timeout=timeout_ms)
    except Exception as error:  # noqa: BLE001 — a timeout or a navigation error is what we count
        if shared.stop.is_set():  # cut by the end of the run (the bench closes the pages): not an error
            shared.unfinished[kind].append(time.perf_counter() - started)
        else:
            shared.errors[load_error_kind(error)].append(f"{who}: {path}: {type(error).__name__}: "
                                                         f"{str(error).splitlines()[0][:200]}")
        return False
    shared.first_renders[kind].append(time.perf_counter() - started)
    return True


def load_error_kind(error: Exception) -> str:
    """A Playwright timeout (the page drew no title in time: the load generator's share) or a failed load (e.g.
    net::ERR_CONNECTION_REFUSED: the app's)."""
    return "no title in time" if type(error).__name__ == "TimeoutError" else "page load failed"


async def check_boxes(page, shared: Shared, who: str, path: str, seen: set[tuple[str, str]] | None = None) -> None:
    """st.exception boxes are errors; st.error boxes outside them are recorded apart (the app's own messages).
    seen: texts already recorded for this page (a page that stays open is checked again and again)."""
    try:
        exceptions = await page.locator(ERROR_BOXES).evaluate_all("els => els.map(e => e.innerText)")
        alerts = await page.locator(ALERT_ERRORS).evaluate_all(
            f"els => els.filter(e => !e.closest('{ERROR_BOXES}')).map(e => e.innerText)")
    except Exception:  # noqa: BLE001 — the page went away under us
        return
    exceptions, alerts = [" ".join(t.split())[:400] for t in exceptions], [" ".join(t.split())[:400] for t in alerts]
    if seen is not None:
        exceptions = [t for t in exceptions if ("exception", t) not in seen]
        alerts = [t for t in alerts if ("alert", t) not in seen]
        seen.update([("exception", t) for t in exceptions] + [("alert", t) for t in alerts])
    shared.errors["st.exception"] += [f"{who}: {path}: {text}" for text in exceptions]
    shared.alerts += [f"{who}: {path}: {text}" for text in alerts]


async def move_slider(page, shared: Shared, who: str, stroke: int, moves: int, until_started: bool = False) -> None:
    """Keyboard on the temperature slider, as a student would drag it: a few steps, one way then the other."""
    slider = page.get_by_role("slider", name=re.compile("^Temperature"))
    try:
        await slider.focus(timeout=30_000)
        for _ in range(moves):
            if shared.stop.is_set() or (until_started and shared.started.is_set()):
                return
            await page.keyboard.press("ArrowRight" if stroke % 2 == 0 else "ArrowLeft")
            shared.slider_moves += 1
            await shared.pause(0.4, until_started)
    except Exception as error:  # noqa: BLE001
        if not shared.stop.is_set():
            shared.errors["slider not focusable"].append(f"{who}: {type(error).__name__}: {str(error).splitlines()[0][:200]}")


async def session(index: int, browser, shared: Shared, delay: float, args) -> None:
    await asyncio.sleep(delay)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    who = f"session {index}"
    watch_page(page, shared, who)
    iterations, strokes = 0, 0  # strokes: slider gestures, alternately right and left
    try:
        while not shared.stop.is_set():
            if await visit(page, shared, "/soft_labels", "soft_labels", who):
                await move_slider(page, shared, who, strokes, args.slider_moves)  # a whole gesture, always
                strokes += 1
                shared.ready.add(index)
                ramping = not shared.started.is_set()  # until the run starts; then everyone opens it at once
                await shared.pause(args.think, ramping)
                await check_boxes(page, shared, who, "/soft_labels")
                while not shared.started.is_set() and not shared.stop.is_set():
                    await move_slider(page, shared, who, strokes, args.slider_moves, True)
                    strokes += 1
                    await shared.pause(args.think, True)
            else:
                await shared.pause(args.think, not shared.started.is_set())
            if shared.stop.is_set():
                break
            if not shared.run_id:
                continue
            path = f"/live_distillation?run={shared.run_id}"
            if await visit(page, shared, path, "live", who):
                await shared.pause(args.watch)
                await check_boxes(page, shared, who, path)
            iterations += 1
    finally:
        shared.iterations.append(iterations)
        try:
            await asyncio.wait_for(context.close(), 30)
        except Exception:  # noqa: BLE001
            pass


async def start_run(browser, shared: Shared, preset_label: str | None, leave: asyncio.Event | None = None,
                    epochs: int | None = None) -> str:
    """Start the preset from the Live page in a context of its own (with epochs: typed into the form's "Epochs"
    field first), read the run id from the URL (shared.run_id, shared.started), and leave (about:blank, close) once
    `leave` is set; returns the run id."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    watch_page(page, shared, "starter")
    page.set_default_timeout(120_000)
    await page.goto(shared.url + "/live_distillation", wait_until="commit")
    await page.get_by_role("button", name="Start run").wait_for()
    if preset_label:  # the selectbox defaults to the first preset, the lecture one
        await page.locator('[data-testid="stSelectbox"]').filter(has_text="Preset").click()
        await page.get_by_role("option", name=preset_label).click()
        await page.wait_for_timeout(1500)  # the form redraws with the preset's values
    if epochs is not None:  # the "Configuration" expander is open while no run is shown
        field = page.get_by_label("Epochs", exact=True)
        await field.fill(str(epochs))
        await field.press("Enter")
        await page.wait_for_timeout(1500)  # the rerun that takes the value in, before Start run reads the form
    await page.get_by_role("button", name="Start run").click()
    await page.wait_for_url(lambda url: "run" in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query))
    run_id = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["run"][0]
    shared.run_id = run_id
    shared.started.set()
    if leave is not None:
        await leave.wait()
    await check_boxes(page, shared, "starter", "/live_distillation")
    await page.goto("about:blank")  # the run keeps going in the server
    await context.close()
    return run_id


async def unless_stopped(shared: Shared, awaitable) -> bool:
    """Await it, unless the phase stops first (then it is cancelled): True when it completed (its errors raise)."""
    task, stop = asyncio.ensure_future(awaitable), asyncio.ensure_future(shared.stop.wait())
    try:
        await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False


async def viewer(index: int, browser, shared: Shared, delay: float, args) -> None:
    """A student watching the lecturer's run: one page load of /live_distillation?run=<id>, kept open (no reload, no
    widget) until the run has finished, checked for st.exception boxes every --check-every s and once at the end."""
    outcome = shared.viewers[index] = {"outcome": "never opened (the run ended first)"}
    await shared.pause(delay)
    if shared.stop.is_set():
        return
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    who, path, seen = f"viewer {index}", f"/live_distillation?run={shared.run_id}", set()
    watch_page(page, shared, who)
    timeout_ms = 1000 * args.load_timeout
    started, step = time.perf_counter(), "title"
    outcome["outcome"] = "loading"
    try:
        await page.goto(shared.url + path, wait_until="commit", timeout=timeout_ms)
        title = page.locator("h1").filter(has_text=TITLES["live"]).first
        if await unless_stopped(shared, title.wait_for(state="visible", timeout=timeout_ms)):
            shared.first_renders["live"].append(time.perf_counter() - started)
            outcome.update(outcome="title", title_at=time.time(), title_s=time.perf_counter() - started)
            step, chart_started = "chart", time.perf_counter()
            chart = page.locator(CHART).first
            if await unless_stopped(shared, chart.wait_for(state="visible", timeout=timeout_ms)):
                shared.first_charts.append(time.perf_counter() - started)
                outcome.update(outcome="drew", chart_at=time.time(), chart_s=time.perf_counter() - started)
            else:
                outcome["outcome"] = "title, chart cut by the run's end"
                shared.unfinished["live"].append(time.perf_counter() - chart_started)
        else:
            outcome["outcome"] = "title cut by the run's end"
            shared.unfinished["live"].append(time.perf_counter() - started)
    except Exception as error:  # noqa: BLE001 — a timeout or a navigation error is what we count
        text = f"{who}: {path}: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
        if step == "chart" and type(error).__name__ == "TimeoutError":
            outcome["outcome"] = "title, no chart in time"
            shared.errors["no chart in time"].append(text)
        else:
            outcome["outcome"] = "no title in time" if load_error_kind(error) == "no title in time" else "failed"
            shared.errors[load_error_kind(error)].append(text)
    try:
        while True:
            last = shared.stop.is_set()  # once stopped: a last look at the page the run's end redrew, then close
            if not last:
                await shared.pause(args.check_every)
            try:
                await asyncio.wait_for(check_boxes(page, shared, who, path, seen), 30)
            except asyncio.TimeoutError:  # a check that did not come back in time (a saturated browser)
                shared.skipped_checks += 1
            if last:
                break
    finally:
        try:
            await asyncio.wait_for(context.close(), 30)
        except Exception:  # noqa: BLE001
            pass


def snapshot_sources(dest: Path) -> dict:
    """Copy what the server runs (app.py, pages/, kdviz/, bench/, .streamlit/) to dest, so that edits made in the
    working tree while the bench runs cannot reach the server half-way (it re-reads page files on every run but
    keeps its imported modules); returns the git state that was copied."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    dest.mkdir(parents=True)
    shutil.copy2(ROOT / "app.py", dest / "app.py")
    for name in ("pages", "kdviz", "bench", ".streamlit"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted": [line for line in git("status", "--porcelain").splitlines() if line]}


def run_status(home: Path, run_id: str) -> dict:
    try:
        return json.loads((home / "runs" / run_id / "status.json").read_text())
    except (OSError, ValueError):
        return {}


async def wait_for_run(home: Path, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run_status(home, run_id)
        if status.get("state") and status["state"] not in LIVE_STATES and status.get("finished_at"):
            return status
        await asyncio.sleep(0.25)
    raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f} s (status {run_status(home, run_id)})")


class Sampler:
    """A thread that reads the server's CPU seconds and RSS, the bench side's CPU seconds and every core's busy
    seconds every `interval` s, so that a window (the run's started_at to finished_at) can be cut afterwards,
    however busy the event loop was."""

    def __init__(self, pid: int, interval: float = 0.2):
        import threading

        self.pid, self.interval, self.samples = pid, interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hall-sampler", daemon=True)
        self._thread.start()

    def _take(self) -> None:
        try:
            self.samples.append({"t": time.time(), "cpu": cpu_seconds(self.pid), "bench": bench_side_cpu(self.pid),
                                 "cores": core_busy(), "rss": status_mb(self.pid, "VmRSS"), "load": load_average()})
        except (OSError, ValueError, IndexError):
            pass

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._take()
            self._stop.wait(self.interval)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._take()

    def at(self, t: float) -> dict:
        """The first sample taken at or after t (the last one if none)."""
        return next((sample for sample in self.samples if sample["t"] >= t), self.samples[-1])

    def window(self, start: float, end: float) -> dict:
        a, b = self.at(start), self.at(end)
        return {"seconds": b["t"] - a["t"], "server_cpu": b["cpu"] - a["cpu"], "bench_cpu": b["bench"] - a["bench"],
                "cores": {str(core): b["cores"][core] - a["cores"].get(core, 0.0) for core in b["cores"]},
                "load": [a["load"], b["load"]]}


async def phase(n: int, browser, url: str, home: Path, pid: int, times_file: Path, log_file: Path, args,
                preset_label: str | None, run_timeout: float, server_core: str | None) -> dict:
    """One phase: N sessions ramp up (each draws /soft_labels and moves its slider once), then the run starts,
    every session opens it, and they loop until it has finished."""
    shared = Shared(url)
    log_start = log_file.stat().st_size
    peak_reset = reset_peak(pid)
    sampler = Sampler(pid)
    phase_started = time.time()
    stagger = args.stagger if args.stagger is not None else min(0.5, 15.0 / max(n, 1))
    tasks = [asyncio.create_task(session(i, browser, shared, i * stagger, args)) for i in range(n)]
    ramp_deadline = time.monotonic() + n * stagger + args.ramp_timeout
    while n and len(shared.ready) < n and time.monotonic() < ramp_deadline:
        await asyncio.sleep(0.25)
    ramp_end = time.time()
    ramped = len(shared.ready)
    submitted = time.time()
    leave = asyncio.Event()
    starter = asyncio.create_task(start_run(browser, shared, preset_label, leave))
    try:
        while not shared.started.is_set():
            if starter.done():
                starter.result()  # raises what went wrong
                raise RuntimeError("the run was not started")
            await asyncio.sleep(0.05)
        run_id = shared.run_id
        leave.set()  # the starting page leaves (in the background) while the run trains
        status = await wait_for_run(home, run_id, run_timeout)
    finally:
        shared.stop.set()
        leave.set()
        done, pending = await asyncio.wait([*tasks, starter], timeout=90)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=30)
        sampler.close()
    if starter.exception():
        raise starter.exception()
    await asyncio.sleep(1.0)  # the last script runs and log lines
    ramp_rows = read_script_times(times_file, phase_started, ramp_end) if n else []
    return {
        "kind": "sessions", "sessions": n, "epochs": None,
        **measure(shared, run_id, status, sampler, phase_started, submitted, times_file, log_file, log_start, pid,
                  peak_reset, server_core),
        "ramp": {"seconds": ramp_end - phase_started, "sessions_ready": ramped, "stagger_s": stagger,
                 "script_runs": script_summary(ramp_rows)},
        "iterations_per_session": sorted(shared.iterations), "slider_moves": shared.slider_moves,
    }


def measure(shared: Shared, run_id: str, status: dict, sampler: Sampler, phase_started: float, submitted: float,
            times_file: Path, log_file: Path, log_start: int, pid: int, peak_reset: bool,
            server_core: str | None) -> dict:
    """What every phase reports: the run, the server's script runs while it trained, CPU, memory, errors."""
    started_at, finished_at = status["started_at"], status["finished_at"]
    window = sampler.window(started_at, finished_at)
    whole = sampler.window(phase_started, sampler.samples[-1]["t"])
    run_rows = read_script_times(times_file, started_at, finished_at)
    log_text = log_file.read_text(errors="replace")[log_start:]
    errors = {kind: list(found) for kind, found in shared.errors.items()}
    errors["server traceback"] = tracebacks(log_text)
    app = {kind: errors[kind] for kind in APP_ERRORS}
    load = {kind: errors[kind] for kind in LOAD_GENERATOR_TIMEOUTS}
    log_errors = [line for line in log_text.splitlines() if re.search(r"\b(ERROR|CRITICAL)\b", line)]
    rss = [sample["rss"] for sample in sampler.samples]
    bench_cores = [str(core) for core in sorted(os.sched_getaffinity(0))]

    def browser_busy(cut: dict) -> float:
        """The bench side's core(s) busy (pinned: whoever used them; else this process + Chromium's CPU), as a
        fraction of the window: near 1, the load generator was saturated."""
        seconds = max(cut["seconds"], 1e-9)
        if server_core is not None:
            return sum(cut["cores"].get(core, 0.0) for core in bench_cores) / (seconds * len(bench_cores))
        return cut["bench_cpu"] / (seconds * len(bench_cores))

    return {
        "run_id": run_id, "run_state": status["state"], "run_message": status.get("message", ""),
        "run_wall_s": finished_at - started_at, "start_page_s": started_at - submitted,
        "script_runs": script_summary(run_rows),
        "script_runs_per_s": len(run_rows) / max(finished_at - started_at, 1e-9),
        "script_seconds": sum(row["seconds"] for row in run_rows),
        "server_cpu_s": {"run_window": window["server_cpu"], "phase": whole["server_cpu"],
                         "window_s": window["seconds"]},
        "core_busy_s": window["cores"], "load_average": window["load"], "server_core": server_core,
        "others_on_server_core_s": (window["cores"].get(server_core, window["server_cpu"]) - window["server_cpu"])
        if server_core is not None else None,
        "bench_side_cpu_s": {"run_window": window["bench_cpu"], "phase": whole["bench_cpu"]},
        "browser_core_busy_fraction": {"run_window": browser_busy(window), "phase": browser_busy(whole),
                                       "cores": bench_cores, "pinned": server_core is not None},
        "server_memory_mb": {"vm_hwm": status_mb(pid, "VmHWM"), "vm_hwm_is_phase_peak": peak_reset,
                             "rss_sampled_max": max(rss) if rss else None, "rss_end": status_mb(pid, "VmRSS")},
        "first_render": {kind: summary_ms(values) for kind, values in shared.first_renders.items()},
        "unfinished_loads": {kind: summary_ms(values) for kind, values in shared.unfinished.items()},
        "errors": errors, "app_errors": app, "load_generator_timeouts": load,
        "app_error_count": sum(len(found) for found in app.values()),
        "load_generator_timeout_count": sum(len(found) for found in load.values()),
        "server_log_error_lines": log_errors[:50], "st_error_alerts": shared.alerts[:50],
        "console_base_path_probes": shared.base_path_probes,
        "request_failures": {"count": len(shared.request_failures), "first": shared.request_failures[:10]},
    }


async def watch_phase(n: int, browser, url: str, home: Path, pid: int, times_file: Path, log_file: Path, args,
                      preset_label: str | None, run_timeout: float, server_core: str | None) -> dict:
    """A watch phase: the starter starts the preset with --watch-epochs epochs and leaves; N viewers open the run
    one after the other (staggered), each a single page load kept open, and watch it until it has finished (N = 0:
    the alone run these are compared with)."""
    shared = Shared(url)
    log_start = log_file.stat().st_size
    peak_reset = reset_peak(pid)
    sampler = Sampler(pid)
    phase_started = submitted = time.time()
    stagger = args.stagger if args.stagger is not None else min(0.5, 15.0 / max(n, 1))
    leave = asyncio.Event()
    starter = asyncio.create_task(start_run(browser, shared, preset_label, leave, epochs=args.watch_epochs))
    tasks: list[asyncio.Task] = []
    try:
        while not shared.started.is_set():
            if starter.done():
                starter.result()  # raises what went wrong
                raise RuntimeError("the run was not started")
            await asyncio.sleep(0.05)
        run_id, run_seen = shared.run_id, time.time()  # the viewers' sessions all start after run_seen
        leave.set()  # the starting page leaves (in the background) while the run trains
        tasks = [asyncio.create_task(viewer(i, browser, shared, i * stagger, args)) for i in range(n)]
        status = await wait_for_run(home, run_id, run_timeout)
        await shared.pause(args.settle)  # the viewers' pages redraw the ended run; their last check follows
    finally:
        shared.stop.set()
        leave.set()
        done, pending = await asyncio.wait([*tasks, starter], timeout=90)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=30)
        sampler.close()
    if starter.exception():
        raise starter.exception()
    await asyncio.sleep(1.0)  # the last script runs and log lines
    config = (json.loads((home / "runs" / run_id / "config.json").read_text()).get("config") or {})
    started_at, finished_at = status["started_at"], status["finished_at"]
    fragments = [r for r in read_script_times(times_file, started_at, finished_at) if r["kind"] == "fragment"]
    viewers = [shared.viewers.get(i, {"outcome": "not started"}) for i in range(n)]
    drew = [v for v in viewers if v["outcome"] == "drew"]
    # Per viewer, from the server's side (its script timer names each run's Streamlit session): a viewer's session
    # is present from its first script run (its page is drawn and its run_every timer runs) to the run's end. The
    # starter's session is the one that ran before the run id was read (the viewers open the page only after).
    first_run: dict[str, float] = {}
    for r in read_script_times(times_file, phase_started, finished_at):
        first_run.setdefault(r["session"], r["t"])
    sessions = {sid: t for sid, t in first_run.items() if sid and t > run_seen} if n else {}
    per_session = {sid: sum(r["session"] == sid for r in fragments) for sid in sessions}
    present = {sid: finished_at - max(t, started_at) for sid, t in sessions.items()}
    present_s = sum(present.values())
    rates = [per_session[sid] / present[sid] for sid in sessions if present[sid] >= 5]
    all_in = max(sessions.values(), default=None)  # every viewer session the server served had begun by then
    steady_s = finished_at - max(all_in, started_at) if all_in is not None else 0.0
    steady = [r for r in fragments if r["session"] in sessions and r["t"] >= (all_in or 0)]
    outcomes: dict[str, int] = {}
    for v in viewers:
        outcomes[v["outcome"]] = outcomes.get(v["outcome"], 0) + 1
    return {
        "kind": "watch", "sessions": n, "viewers": n, "epochs": config.get("epochs"),
        **measure(shared, run_id, status, sampler, phase_started, submitted, times_file, log_file, log_start, pid,
                  peak_reset, server_core),
        "stagger_s": stagger, "viewer_outcomes": outcomes, "viewers_drew": len(drew),
        "first_chart": summary_ms(shared.first_charts),
        "fragment_reruns": {**summary_ms([r["seconds"] for r in fragments]),
                            "per_s": len(fragments) / max(finished_at - started_at, 1e-9),
                            "viewer_sessions": len(sessions), "viewer_seconds": present_s,
                            "of_viewers": sum(per_session.values()),
                            "per_viewer_s": sum(per_session.values()) / present_s if present_s > 0 else None,
                            "per_session_per_s": {"n": len(rates), "min": min(rates, default=None),
                                                  "median": statistics.median(rates) if rates else None,
                                                  "max": max(rates, default=None)},
                            "steady_s": steady_s, "steady_n": len(steady),
                            "steady_per_viewer_s": len(steady) / (steady_s * len(sessions))
                            if steady_s >= 5 and sessions else None},
        "skipped_checks": shared.skipped_checks,
    }


# ---- report ------------------------------------------------------------------------------------------------------

def fmt(value, spec: str = ".0f") -> str:
    return "–" if value is None else format(value, spec)


def label_of(p: dict) -> str:
    if p["kind"] == "watch":
        return f"alone {p['epochs']} ep" if not p["sessions"] else f"{p['sessions']} viewers"
    return "alone" if not p["sessions"] else f"N={p['sessions']}"


def groups(result: dict) -> list[tuple[str, list[dict]]]:
    """The phases in tables: the sessions phases (after their alone run), the watch phases (after theirs)."""
    found = []
    for kind in ("sessions", "watch"):
        phases = [p for p in result["phases"] if p["kind"] == kind]
        if phases:
            found.append((kind, phases))
    return found


def table(rows: list[tuple[str, list[str]]], columns: list[str]) -> list[str]:
    width = max(len(label) for label, _ in rows) + 2
    cell = max(12, *(len(v) + 2 for _, values in rows for v in values), *(len(c) + 2 for c in columns))
    lines = ["".ljust(width) + "".join(c.rjust(cell) for c in columns)]
    lines += [label.ljust(width) + "".join(v.rjust(cell) for v in values) for label, values in rows]
    return lines


def common_rows(row, phases: list[dict]) -> None:
    """The rows every table has after its own: CPU, cores, memory."""
    alone = phases[0]
    row("server CPU s (run window)", lambda p: f"{p['server_cpu_s']['run_window']:.1f}")
    row(" = cores busy", lambda p: f"{p['server_cpu_s']['run_window'] / max(p['server_cpu_s']['window_s'], 1e-9):.2f}")
    row("server CPU s (whole phase)", lambda p: f"{p['server_cpu_s']['phase']:.1f}")
    row("bench+Chromium CPU s (run window)", lambda p: f"{p['bench_side_cpu_s']['run_window']:.1f}")
    for core in sorted(alone["core_busy_s"], key=int):
        row(f"core {core} busy s, anyone (run window)", lambda p, c=core: f"{p['core_busy_s'][c]:.1f}")
    row("others' CPU s on the server's core", lambda p: fmt(None if p["others_on_server_core_s"] is None
                                                          else max(0.0, p["others_on_server_core_s"]), ".1f"))
    row("load average (start → end)", lambda p: f"{p['load_average'][0]:.1f}→{p['load_average'][1]:.1f}")
    row("server peak memory MB (VmHWM)", lambda p: f"{p['server_memory_mb']['vm_hwm']:.0f}")


def error_rows(row) -> None:
    """App errors (the 0-errors target) and, apart, the load generator's timeouts with its core's busy fraction."""
    row("APP ERRORS (target 0)", lambda p: str(p["app_error_count"]))
    for kind in APP_ERRORS:
        row(f" {kind}", lambda p, k=kind: str(len(p["app_errors"][k])))
    row("LOAD-GENERATOR TIMEOUTS (bench's own)", lambda p: str(p["load_generator_timeout_count"]))
    for kind in LOAD_GENERATOR_TIMEOUTS:
        row(f" {kind}", lambda p, k=kind: str(len(p["load_generator_timeouts"][k])))
    row(" browser core busy, run window / phase", lambda p: f"{p['browser_core_busy_fraction']['run_window']:.2f} / "
                                                            f"{p['browser_core_busy_fraction']['phase']:.2f}")
    row("st.error boxes (app messages)", lambda p: str(len(p["st_error_alerts"])))
    row("console 404 base-path probes (info)", lambda p: str(p["console_base_path_probes"]))
    row("failed requests (info)", lambda p: str(p["request_failures"]["count"]))


def sessions_report(phases: list[dict]) -> list[str]:
    alone = phases[0]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, get) -> None:
        rows.append((label, [get(p) for p in phases]))

    row("run wall time (s)", lambda p: f"{p['run_wall_s']:.1f}")
    row("run state", lambda p: p["run_state"])
    row("slowdown vs alone", lambda p: f"{p['run_wall_s'] / alone['run_wall_s']:.2f}×")
    for group, label in (("all", "script runs"), ("full", " full reruns"), ("fragment", " fragment reruns")):
        row(f"{label}: n", lambda p, g=group: str(p["script_runs"].get(g, {}).get("n", 0)))
        row(f"{label}: median ms", lambda p, g=group: fmt(p["script_runs"].get(g, {}).get("median_ms")))
        row(f"{label}: p95 ms", lambda p, g=group: fmt(p["script_runs"].get(g, {}).get("p95_ms")))
    pages = sorted({name for p in phases for name in p["script_runs"] if name.startswith("page ")})
    for name in pages:
        row(f" {name}: n / med / p95 ms", lambda p, k=name: (
            "–" if k not in p["script_runs"] else f"{p['script_runs'][k]['n']} / {fmt(p['script_runs'][k]['median_ms'])}"
                                                 f" / {fmt(p['script_runs'][k]['p95_ms'])}"))
    row("script runs per second", lambda p: f"{p['script_runs_per_s']:.1f}")
    row("script-run seconds in the run", lambda p: f"{p['script_seconds']:.1f}")
    row("ramp-up (no run): seconds", lambda p: f"{p['ramp']['seconds']:.0f}" if p["sessions"] else "–")
    row(" sessions ready / script runs", lambda p: f"{p['ramp']['sessions_ready']} / "
                                                  f"{p['ramp']['script_runs'].get('all', {}).get('n', 0)}"
        if p["sessions"] else "–")
    row(" script runs median / p95 ms", lambda p: f"{fmt(p['ramp']['script_runs'].get('all', {}).get('median_ms'))} / "
                                                  f"{fmt(p['ramp']['script_runs'].get('all', {}).get('p95_ms'))}"
        if p["sessions"] else "–")
    row("Start run page: open → run started (s)", lambda p: f"{p['start_page_s']:.1f}")
    common_rows(row, phases)
    row("first render soft labels med/p95 ms", lambda p: f"{fmt(p['first_render']['soft_labels']['median_ms'])} / "
                                                         f"{fmt(p['first_render']['soft_labels']['p95_ms'])}")
    row("first render live med/p95 ms", lambda p: f"{fmt(p['first_render']['live']['median_ms'])} / "
                                                  f"{fmt(p['first_render']['live']['p95_ms'])}")
    row("page loads (soft labels + live)", lambda p: f"{p['first_render']['soft_labels']['n']} + "
                                                     f"{p['first_render']['live']['n']}")
    row("loads cut by the run's end (soft + live)", lambda p: f"{p['unfinished_loads']['soft_labels']['n']} + "
                                                              f"{p['unfinished_loads']['live']['n']}")
    row(" their wait so far, median ms (soft / live)", lambda p: f"{fmt(p['unfinished_loads']['soft_labels']['median_ms'])}"
                                                           f" / {fmt(p['unfinished_loads']['live']['median_ms'])}")
    row("iterations per session (min-max)", lambda p: (f"{min(p['iterations_per_session'])}-"
                                                        f"{max(p['iterations_per_session'])}")
        if p["iterations_per_session"] else "–")
    row("slider moves", lambda p: str(p["slider_moves"]))
    error_rows(row)
    return table(rows, [label_of(p) for p in phases])


def watch_report(phases: list[dict]) -> list[str]:
    alone = phases[0]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, get) -> None:
        rows.append((label, [get(p) for p in phases]))

    def viewers(get):
        return lambda p: get(p) if p["sessions"] else "–"

    row("epochs", lambda p: str(p["epochs"]))
    row("run wall time (s)", lambda p: f"{p['run_wall_s']:.1f}")
    row("run state", lambda p: p["run_state"])
    row("slowdown vs alone (same epochs)", lambda p: f"{p['run_wall_s'] / alone['run_wall_s']:.2f}×")
    row("viewers that drew title + chart", viewers(lambda p: f"{p['viewers_drew']} / {p['viewers']}"))
    row("viewer sessions the server ran", viewers(lambda p: f"{p['fragment_reruns']['viewer_sessions']} / "
                                                            f"{p['viewers']}"))
    row("first render (title) med/p95 ms", viewers(lambda p: f"{fmt(p['first_render']['live']['median_ms'])} / "
                                                              f"{fmt(p['first_render']['live']['p95_ms'])}"))
    row("first chart med/p95 ms", viewers(lambda p: f"{fmt(p['first_chart']['median_ms'])} / "
                                                     f"{fmt(p['first_chart']['p95_ms'])}"))
    row("fragment reruns: n", lambda p: str(p["fragment_reruns"]["n"]))
    row("fragment reruns per second", lambda p: f"{p['fragment_reruns']['per_s']:.2f}")
    row("fragment reruns: median / p95 ms", lambda p: f"{fmt(p['fragment_reruns']['median_ms'])} / "
                                                      f"{fmt(p['fragment_reruns']['p95_ms'])}")
    row(" per viewer-second (viewer-s)", viewers(lambda p: f"{fmt(p['fragment_reruns']['per_viewer_s'], '.2f')} "
                                                          f"({p['fragment_reruns']['viewer_seconds']:.0f})"))
    row(" per viewer session /s min-med-max", viewers(lambda p: "–" if not p["fragment_reruns"]["per_session_per_s"]["n"]
                                                      else "-".join(fmt(p["fragment_reruns"]["per_session_per_s"][k], ".2f")
                                                                    for k in ("min", "median", "max"))))
    row(" per viewer per s, all in → end (s)", viewers(lambda p: f"{fmt(p['fragment_reruns']['steady_per_viewer_s'], '.2f')}"
                                                                f" ({p['fragment_reruns']['steady_s']:.0f})"))
    row("full reruns: n / median / p95 ms", lambda p: f"{p['script_runs']['full']['n']} / "
                                                      f"{fmt(p['script_runs']['full']['median_ms'])} / "
                                                      f"{fmt(p['script_runs']['full']['p95_ms'])}")
    row("script-run seconds in the run", lambda p: f"{p['script_seconds']:.1f}")
    row("Start run page: open → run started (s)", lambda p: f"{p['start_page_s']:.1f}")
    common_rows(row, phases)
    error_rows(row)
    row("exception checks skipped (no answer in 30 s)", viewers(lambda p: str(p["skipped_checks"])))
    lines = table(rows, [label_of(p) for p in phases])
    for p in phases[1:]:
        others = {k: v for k, v in p["viewer_outcomes"].items() if k != "drew"}
        if others:
            lines.append(f"  {label_of(p)}: viewers that did not draw: "
                         + ", ".join(f"{count} {what}" for what, count in others.items()))
    return lines


def report(result: dict) -> list[str]:
    lines = []
    for kind, phases in groups(result):
        if lines:
            lines.append("")
        if kind == "sessions":
            lines.append("sessions phases (every session reloads pages and moves a slider while the run trains):")
            lines += sessions_report(phases)
        else:
            lines.append("watch phases (each viewer: one page load of the run, kept open until it has finished):")
            lines += watch_report(phases)
    return lines


def targets(result: dict) -> list[str]:
    phases, pinned = result["phases"], result["pinned"]
    errors = sum(p["app_error_count"] for p in phases)
    timeouts = sum(p["load_generator_timeout_count"] for p in phases)
    busiest = max(phases, key=lambda p: p["browser_core_busy_fraction"]["phase"])
    lines = [f"  app errors, all phases: {errors} (target {TARGET_ERRORS}): "
             f"{'PASS' if errors == TARGET_ERRORS else 'FAIL'}"
             f" — beside it, not counted: {timeouts} load-generator timeouts ("
             + ", ".join(f"{label_of(p)}: {p['load_generator_timeout_count']}" for p in phases if p["sessions"])
             + f"); browser core busy up to {busiest['browser_core_busy_fraction']['phase']:.2f} of a phase "
               f"({label_of(busiest)}){': the load generator was saturated' if busiest['browser_core_busy_fraction']['phase'] >= 0.9 else ''}"]
    sessions = [p for p in phases if p["kind"] == "sessions"]
    at = next((p for p in sessions[1:] if p["sessions"] == TARGET_P95_AT), None)
    if at is None or at["script_runs"]["all"]["p95_ms"] is None:
        lines.append(f"  server-side p95 script run at N={TARGET_P95_AT}: not measured (no N={TARGET_P95_AT} "
                     "sessions phase)")
    else:
        p95 = at["script_runs"]["all"]["p95_ms"]
        lines.append(f"  server-side p95 script run at N={TARGET_P95_AT}: {p95:.0f} ms (target ≤ {TARGET_P95_MS:.0f} ms): "
                     f"{'PASS' if p95 <= TARGET_P95_MS else 'FAIL'}")
    for kind, group in groups(result):
        alone = group[0]
        for p in group[1:]:
            slowdown = p["run_wall_s"] / alone["run_wall_s"]
            verdict = ("PASS" if slowdown <= TARGET_SLOWDOWN else "FAIL") if pinned else \
                "n/a: the target is for a server on its own core (run without --no-pin)"
            others = max(p["others_on_server_core_s"] or 0.0, alone["others_on_server_core_s"] or 0.0)
            if pinned and others > 0.1 * min(p["run_wall_s"], alone["run_wall_s"]):
                verdict += (f" (WARNING: other processes used up to {others:.1f} s of the server's core during these "
                            "runs: the machine was not quiet, so this ratio is not the sessions' alone)")
            lines.append(f"  run slowdown at {label_of(p)}: {slowdown:.2f}× {label_of(alone)} (target ≤ "
                         f"{TARGET_SLOWDOWN}×, server on its own core): {verdict}")
    return lines


def print_errors(result: dict) -> None:
    for p in result["phases"]:
        label = label_of(p)
        for group, name in (("app_errors", "app error"), ("load_generator_timeouts", "load-generator timeout")):
            for kind, found in p[group].items():
                for text in dict.fromkeys(found[:200]):  # distinct, in order
                    print(f"[{label}] {name}: {kind}: {text}")
        for line in p["server_log_error_lines"][:10]:
            print(f"[{label}] server log: {line}")


# ---- main ------------------------------------------------------------------------------------------------------

async def bench(args, home: Path, work: Path, source: Path) -> dict:
    from playwright.async_api import async_playwright

    sys.path.insert(0, str(source))  # the copied kdviz, the one the server runs
    from kdviz.core.presets import PRESETS

    if args.preset not in PRESETS:
        raise SystemExit(f"unknown preset {args.preset!r}: one of {', '.join(PRESETS)}")
    preset_label = None if args.preset == next(iter(PRESETS)) else PRESETS[args.preset][0]
    if args.watch_epochs is None:
        args.watch_epochs = min(MAX_EPOCHS, 4 * PRESETS[args.preset][1].epochs)
    times_file, log_file = work / "script_times.tsv", work / "server.log"
    cores = sorted(os.sched_getaffinity(0))
    pinned = not args.no_pin and len(cores) >= 2
    prefix = ["taskset", "-c", str(cores[0])] if pinned else []
    env = {"KDVIZ_THREADS": "1", "KDVIZ_SCRIPT_TIMES": str(times_file)}
    with server(home, log_file, timeout=120, prefix=prefix, module="bench.hall_server", env=env,
                root=source) as running:
        pid = python_server_pid(running.pid)
        if pinned:
            os.sched_setaffinity(0, {cores[1]})  # this process, then Playwright's driver and Chromium (inherited)
        result = {"preset": args.preset, "pinned": pinned, "server_pid": pid, "server_affinity": affinity(pid),
                  "cores": cores, "kdviz_threads": 1, "phases": []}
        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            result["bench_affinity"] = affinity(os.getpid())
            chromium = [p for p in descendants(os.getpid()) if p != pid and p not in descendants(pid)]
            result["chromium_affinity"] = sorted({affinity(p) for p in chromium})
            # warm the server (imports, the run manager, caches) so that the alone run is not charged for them
            warm = Shared(running.url)
            context = await browser.new_context()
            page = await context.new_page()
            watch_page(page, warm, "warm-up")
            for path, kind in (("/soft_labels", "soft_labels"), ("/live_distillation", "live")):
                if await visit(page, warm, path, kind, "warm-up", timeout_ms=120_000):
                    await warm.pause(2.0)
                    await check_boxes(page, warm, "warm-up", path)
            await context.close()
            if not args.no_warm_run:  # the first run in a process pays one-off costs (data, teacher, torch)
                warm_id = await start_run(browser, warm, preset_label)
                status = await wait_for_run(home, warm_id, args.run_timeout)
                result["warm_run"] = {"run_id": warm_id, "state": status["state"],
                                      "wall_s": status["finished_at"] - status["started_at"]}
                print(f"warm-up run {warm_id} {status['state']} in {result['warm_run']['wall_s']:.1f} s (not counted)",
                      flush=True)
            result["warm_up_errors"] = {kind: found for kind, found in warm.errors.items() if found}
            if result["warm_up_errors"]:
                print(f"errors while warming up (not counted in the phases): {result['warm_up_errors']}", flush=True)
            plan = ([(phase, n) for n in [0, *args.sessions]] if args.sessions else []) + \
                   ([(watch_phase, n) for n in [0, *args.watchers]] if args.watchers else [])
            alone_wall = None
            for run_phase, n in plan:
                if not n:
                    alone_wall = None  # each kind of phase is compared with its own alone run
                run_timeout = args.run_timeout if alone_wall is None else max(args.run_timeout, 20 * alone_wall)
                what = (f"{n} sessions" if run_phase is phase else f"{n} viewers") if n else \
                    ("alone" if run_phase is phase else f"alone, {args.watch_epochs} epochs")
                print(f"phase: {what} …", flush=True)
                outcome = await run_phase(n, browser, running.url, home, pid, times_file, log_file, args,
                                          preset_label, run_timeout, str(cores[0]) if pinned else None)
                alone_wall = alone_wall or outcome["run_wall_s"]
                result["phases"].append(outcome)
                extra = ""
                if run_phase is watch_phase:
                    extra = (f", {outcome['fragment_reruns']['n']} fragment reruns, viewers drew "
                             f"{outcome['viewers_drew']}/{n}")
                    if outcome["epochs"] != args.watch_epochs:
                        print(f"  WARNING: the run has {outcome['epochs']} epochs, not the {args.watch_epochs} typed "
                              "into the form", flush=True)
                print(f"  run {outcome['run_id']} {outcome['run_state']} in {outcome['run_wall_s']:.1f} s, "
                      f"{outcome['script_runs']['all']['n']} script runs (p95 "
                      f"{fmt(outcome['script_runs']['all']['p95_ms'])} ms){extra}, {outcome['app_error_count']} app "
                      f"errors, {outcome['load_generator_timeout_count']} load-generator timeouts", flush=True)
                await asyncio.sleep(3)  # let the sessions' leftovers settle
            await browser.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="*", default=[10, 30], help="browser sessions per sessions "
                        "phase (after an alone run); none (--sessions alone): skip these phases")
    parser.add_argument("--watchers", type=int, nargs="*", default=[10, 30], help="viewers per watch phase (after "
                        "an alone run of --watch-epochs); none (--watchers alone): skip these phases")
    parser.add_argument("--watch-epochs", type=int, default=None, help="epochs of the watch phases' runs, typed into "
                        f"the form (default 4× the preset's, at most {MAX_EPOCHS}: 120 for lecture)")
    parser.add_argument("--load-timeout", type=float, default=60.0, help="watch phases: seconds a viewer's page may "
                        "take to draw its title, then its first chart (beyond: a load-generator timeout)")
    parser.add_argument("--check-every", type=float, default=5.0, help="watch phases: seconds between two looks "
                        "for st.exception boxes on each viewer's page")
    parser.add_argument("--settle", type=float, default=3.0, help="watch phases: seconds the viewers' pages stay "
                        "open after the run has ended (they redraw it statically), before their last look")
    parser.add_argument("--preset", default="lecture", help="the run's preset (default lecture)")
    parser.add_argument("--no-pin", action="store_true", help="let server, bench and Chromium share every core")
    parser.add_argument("--json", type=Path, help="write the results there")
    parser.add_argument("--home", type=Path, help="a KDVIZ_HOME to use (kept; default: a temporary one)")
    parser.add_argument("--slider-moves", type=int, default=3, help="slider steps per soft-labels visit")
    parser.add_argument("--think", type=float, default=2.0, help="seconds on the soft-labels page after the moves")
    parser.add_argument("--watch", type=float, default=4.0, help="seconds watching the live page")
    parser.add_argument("--stagger", type=float, default=None, help="seconds between two sessions' starts "
                        "(default min(0.5, 15/N))")
    parser.add_argument("--ramp-timeout", type=float, default=180.0, help="extra seconds for every session to draw "
                        "the soft-labels page before the run starts anyway")
    parser.add_argument("--run-timeout", type=float, default=600.0, help="seconds a run may take (later phases: "
                        "at least 20× the alone run)")
    parser.add_argument("--no-warm-run", action="store_true", help="skip the uncounted run before the alone phase")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds for the whole bench")
    args = parser.parse_args()
    if not args.sessions and not args.watchers:
        parser.error("nothing to measure: --sessions and --watchers are both empty")
    if args.watch_epochs is not None and not 1 <= args.watch_epochs <= MAX_EPOCHS:
        parser.error(f"--watch-epochs must be within 1..{MAX_EPOCHS} (the form's Epochs field)")

    temporary = args.home is None
    home = Path(tempfile.mkdtemp(prefix="kdviz-bench-hall-")) if temporary else args.home.resolve()
    work = Path(tempfile.mkdtemp(prefix="kdviz-bench-hall-work-"))
    source = work / "src"
    git_state = snapshot_sources(source)
    print(f"sources copied to {source} (commit {git_state['commit']}, {len(git_state['uncommitted'])} uncommitted "
          "paths in the working tree)", flush=True)
    env = {**os.environ, "KDVIZ_HOME": str(home), "PYTHONPATH": str(source)}
    started = time.perf_counter()
    print(f"KDVIZ_HOME {home}; preparing the presets' teachers (python -m kdviz prepare) …", flush=True)
    subprocess.run([sys.executable, "-m", "kdviz", "prepare"], cwd=source, env=env, check=True, capture_output=True,
                   timeout=1800)
    try:
        result = asyncio.run(asyncio.wait_for(bench(args, home, work, source), args.timeout))
    except BaseException:
        log = work / "server.log"
        if log.exists():
            print(f"server log (last 3000 characters):\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        if temporary:
            shutil.rmtree(home, ignore_errors=True)
    result["bench_seconds"], result["sources"] = time.perf_counter() - started, git_state
    shutil.rmtree(work, ignore_errors=True)

    print(f"\npreset {args.preset}; bench took {result['bench_seconds']:.0f} s; sources: commit "
          f"{git_state['commit']} + {len(git_state['uncommitted'])} uncommitted paths, copied at the start")
    print("how it was measured:")
    if result["pinned"]:
        print(f"  server (python pid {result['server_pid']}, KDVIZ_THREADS=1) pinned by taskset to core(s) "
              f"{result['server_affinity']}; this bench, Playwright and Chromium to core(s) {result['bench_affinity']}"
              f" (Chromium processes: {', '.join(result['chromium_affinity']) or '?'})")
    else:
        print(f"  not pinned (--no-pin): server pid {result['server_pid']} (KDVIZ_THREADS=1) on {result['server_affinity']}, "
              f"bench and Chromium on {result['bench_affinity']}: they compete for the same cores")
    print("  script runs: ScriptRunner._run_script timed inside the server (bench/script_timer.py via "
          "bench/hall_server.py), full and fragment reruns, those that ended while the run trained")
    print("  run wall time: finished_at − started_at of runs/<id>/status.json; slowdown: ÷ the alone run's")
    print("  CPU: utime+stime of the server (/proc/<pid>/stat) between Start run and the run's end; bench side: this "
          "process + Playwright + Chromium (with reaped children)")
    print("  browser side: one Chromium on the bench's core(s); when it is saturated (core busy ≈ window) the "
          "sessions offer the server less load than N real browsers would (see script runs per second)")
    print("  peak memory: the server's VmHWM at a phase's end, reset at its start (clear_refs)" if all(
        p["server_memory_mb"]["vm_hwm_is_phase_peak"] for p in result["phases"])
          else "  peak memory: the server's VmHWM since it started (clear_refs was refused)")
    print("  core busy: /proc/stat, every process on that core (other users' work included); load average: "
          "/proc/loadavg")
    print("  app errors (the 0-errors target): st.exception boxes, console errors (except Streamlit's 404 base-path "
          "probes of /<page>/_stcore/health and host-config, streamlit/streamlit#7074), uncaught page errors, page "
          "loads that failed (not a timeout), and Traceback blocks in the server log")
    print(f"  load-generator timeouts (reported beside, not counted): pages that drew no title in time (sessions: 60 s; "
          f"viewers: {args.load_timeout:.0f} s, then {args.load_timeout:.0f} s more for a chart), sliders that could "
          "not be focused in 30 s; browser core busy: the bench's core busy ÷ the window (pinned; else bench+Chromium "
          "CPU ÷ window ÷ cores): near 1, the one Chromium could not keep up")
    print("  first render: page.goto → the page's st.title heading visible, every page load of every session; first "
          f"chart (watch): page.goto → the first {CHART} visible")
    if args.watchers:
        print(f"  watch phases: the run has {args.watch_epochs} epochs (typed into the form's Epochs field); the "
              "starter leaves at once (as in the alone runs), so the fragment reruns are the viewers' run_every "
              "redraws; viewer sessions: the Streamlit sessions the server ran for the viewers (its script timer "
              "names each run's session) before the run ended; per viewer-second: their fragment reruns ÷ the "
              "seconds each was present (its first script run → the run's end); per session: those present ≥ 5 s; "
              "'all in → end': the window after the last viewer session began")
    print()
    for line in report(result):
        print(line)
    print("\ntargets:")
    for line in targets(result):
        print(line)
    print()
    print_errors(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"\nresults written to {args.json}")


if __name__ == "__main__":
    main()
