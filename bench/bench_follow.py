"""What a hall following a presentation costs the server: a follower's poll, and a follower's rerun on a change.

A follower's browser polls kdviz's own HTTP route (/kdviz/rooms/CODE?since=V, kdviz/routes.py) every 0.5 s; it reruns
its page only when the lecturer changed the step or a question (a new T or α on a browser-drawn step is applied in the
browser, without a rerun). So the hall's cost is (a) polls that find nothing new, all the time, and (b) one page run
per follower per change. Measured side by side on one server:

* polls: N followers (plain HTTP clients on keep-alive connections, no browser: one core plays hundreds) poll one
  room every 0.5 s for S seconds while nothing changes. Reported: the server's CPU time per poll (/proc/<pid>/stat,
  the whole process: uvicorn, the route, the hub), the in-process cost of the route's work (hub.poll_dict + its JSON,
  timed here in this process) and the clients' latency (p50, p95);
* changes: K Chromium followers (Playwright) follow a lecturer (one more Chromium) through C step changes. Reported:
  each follower's script run per change (bench/script_timer.py inside the server: median, p95, ms) and how long after
  the lecturer's page showed the step the followers showed it (median, worst).

The server is pinned to core 0 and this process (clients, Chromium) to core 1 (--no-pin: both share every core).

    python bench/bench_follow.py                                  # N = 50, 100, 300 pollers; K = 3 followers
    python bench/bench_follow.py --pollers 20 --seconds 5 --followers 2 --changes 4 --json /tmp/follow.json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.appserver import launch_chromium, server  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POLL_INTERVAL_S = 0.5  # kdviz.ui.tour_components.FOLLOW_INTERVAL_MS


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def poller(host: str, port: int, path: str, until: float, latencies: list[float], errors: list[str]) -> None:
    """One follower's poll loop on a keep-alive HTTP/1.1 connection (what a browser's fetch does)."""
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: keep-alive\r\n\r\n".encode()
    await asyncio.sleep(POLL_INTERVAL_S * (hash(path + str(id(latencies))) % 1000) / 1000)
    while time.monotonic() < until:
        started = time.perf_counter()
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
        body = await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        if not head.startswith(b"HTTP/1.1 200") or b'"changed":false' not in body.replace(b" ", b""):
            errors.append(head.split(b"\r\n")[0].decode() + " " + body[:80].decode())
        await asyncio.sleep(max(0.0, POLL_INTERVAL_S - (time.perf_counter() - started)))
    writer.close()


def poll_phase(url: str, pid: int, code: str, version: int, pollers: int, seconds: float) -> dict:
    host, port = re.match(r"http://([^:]+):(\d+)", url).groups()
    path = f"/kdviz/rooms/{code}?since={version}"
    latencies: list[float] = []
    errors: list[str] = []

    async def main():
        until = time.monotonic() + seconds
        await asyncio.gather(*(poller(host, int(port), path, until, latencies, errors) for _ in range(pollers)))

    before, mine, started = cpu_seconds(pid), time.process_time(), time.monotonic()
    asyncio.run(main())
    elapsed, spent = time.monotonic() - started, cpu_seconds(pid) - before
    generator = time.process_time() - mine
    return {"pollers": pollers, "seconds": round(elapsed, 1), "polls": len(latencies),
            "polls_per_s": round(len(latencies) / elapsed, 1), "errors": len(errors), "first_error": errors[:1],
            "server_cpu_s_per_s": round(spent / elapsed, 3),
            "generator_cpu_s_per_s": round(generator / elapsed, 3),
            "server_cpu_ms_per_poll": round(1000 * spent / max(1, len(latencies)), 3),
            "latency_p50_ms": round(1000 * percentile(latencies, 0.5), 2),
            "latency_p95_ms": round(1000 * percentile(latencies, 0.95), 2)}


def in_process_poll_cost() -> dict:
    """The route's own work (hub.poll_dict and its JSON body), timed here: what the server does beyond HTTP."""
    from starlette.responses import JSONResponse

    from kdviz.present import Hub

    hub = Hub()
    code = hub.start("f" * 32).code
    version = hub.get(code).version
    number = 20000
    seconds = timeit.timeit(lambda: JSONResponse(hub.poll_dict(code, version)), number=number)
    return {"route_work_us": round(1e6 * seconds / number, 2)}


def change_phase(url: str, times_path: Path, followers: int, changes: int) -> tuple[dict, str, int]:
    """A lecturer presents and moves `changes` steps; `followers` Chromium followers follow. Returns the measures, the
    room code and its version at the end (for the poll phase)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        lecturer = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
        lecturer.goto(f"{url}/lecture?step=1", wait_until="domcontentloaded")
        lecturer.get_by_role("button", name="Present").click()
        lecturer.wait_for_function("() => location.search.includes('room=')", timeout=60_000)
        code = re.search(r"room=([A-Z0-9]{5})", lecturer.url).group(1)
        pages = []
        for _ in range(followers):
            page = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
            page.goto(f"{url}/lecture?room={code}", wait_until="domcontentloaded")
            page.get_by_text("Following the lecturer").wait_for(timeout=60_000)
            pages.append(page)
        time.sleep(2)
        mark = time.time()
        lags, per_step = [], {}
        for step in range(2, 2 + changes):  # steps 2–4 and 6 draw in the browser; 7+ read runs: a realistic mix
            lecturer.get_by_role("button", name="Next").click()
            lecturer.get_by_text(f"Step {step} of 14").wait_for(timeout=60_000)
            shown = time.monotonic()
            for page in pages:
                page.get_by_text(f"Step {step} of 14").wait_for(timeout=60_000)
                lags.append(time.monotonic() - shown)
            per_step[step] = round(lags[-1], 2)
            time.sleep(1.0)
        browser.close()
    runs = [line.split("\t") for line in times_path.read_text().splitlines()]
    lecturer = runs[0][4]  # the first session on the server is the lecturer's
    follower_runs = [1000 * float(seconds) for end, seconds, kind, page, session in runs
                     if float(end) >= mark and page == "lecture" and kind == "full" and session != lecturer]
    return ({"followers": followers, "changes": changes, "script_runs": len(follower_runs),
             "run_ms_p50": round(percentile(follower_runs, 0.5), 1),
             "run_ms_p95": round(percentile(follower_runs, 0.95), 1),
             "follow_lag_s_p50": round(percentile(lags, 0.5), 2), "follow_lag_s_max": round(max(lags), 2),
             "last_follower_lag_s_by_step": per_step},
            code, changes + 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pollers", type=int, nargs="*", default=[50, 100, 300])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--followers", type=int, default=3)
    parser.add_argument("--changes", type=int, default=6)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.no_pin:
        os.sched_setaffinity(0, {1})
    home = Path(tempfile.mkdtemp(prefix="kdviz-follow-"))
    times = home / "script_times.tsv"
    prefix = [] if args.no_pin else ["taskset", "-c", "0"]
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    report = {"cpu": model, "cores": os.cpu_count(), "pinned": not args.no_pin, **in_process_poll_cost()}
    with server(home, home / "server.log", prefix=prefix, module="bench.hall_server",
                env={"KDVIZ_SCRIPT_TIMES": str(times), "KDVIZ_TOUR_RUNS": "off"}) as running:
        report["changes"], code, version = change_phase(running.url, times, args.followers, args.changes)
        report["polls"] = [poll_phase(running.url, running.pid, code, version, n, args.seconds)
                           for n in args.pollers]
    print(f"CPU: {model} ({os.cpu_count()} cores); server {'pinned to core 0' if not args.no_pin else 'unpinned'}")
    print(f"route work per poll (hub.poll_dict + JSON, in process): {report['route_work_us']} µs")
    change = report["changes"]
    print(f"on a change: {change['followers']} followers × {change['changes']} steps: follower page run "
          f"{change['run_ms_p50']} ms median, {change['run_ms_p95']} ms p95; followers showed the step "
          f"{change['follow_lag_s_p50']} s (median), {change['follow_lag_s_max']} s (worst) after the lecturer")
    print(f"   the last follower's lag at each step: {change['last_follower_lag_s_by_step']}")
    print(f"{'pollers':>8} {'polls/s':>8} {'server CPU/s':>13} {'CPU ms/poll':>12} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'errors':>7} {'generator CPU/s':>16}")
    for row in report["polls"]:
        print(f"{row['pollers']:>8} {row['polls_per_s']:>8} {row['server_cpu_s_per_s']:>13} "
              f"{row['server_cpu_ms_per_poll']:>12} {row['latency_p50_ms']:>8} {row['latency_p95_ms']:>8} "
              f"{row['errors']:>7} {row['generator_cpu_s_per_s']:>16}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
