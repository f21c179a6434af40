"""A lecture hall on one kdviz server, played by Streamlit-protocol clients (Locust users of bench/hall_locustfile.py,
no browser): N students, viewers of a run, followers of a presentation, or a lecture's mix, for S seconds.

    python bench/hall_load.py --scenario students --users 50 --seconds 30 --json /tmp/students.json
    python bench/hall_load.py --scenario viewers --users 25 --seconds 30      # a lecture-preset run, watched
    python bench/hall_load.py --scenario followers --users 100 --seconds 30   # a lecturer moves steps, asks, reveals
    python bench/hall_load.py --scenario lecture --users 50 --seconds 60      # followers, students, viewers, a runner

It starts the app server itself (tests/support/appserver.py, bench/hall_server.py timing every script run;
KDVIZ_TOUR_RUNS=off, a temporary KDVIZ_HOME unless --home), pinned to core 0 with taskset, and pins itself (the load
generator: Locust and every session's asyncio loop) to core 1 (--no-pin: both share every core). It warms the server up
(each page once; a run of the preset, which trains its teacher), prepares the scenario through the same protocol
(viewers: a run sized to last about S seconds alone, first run alone and then again under load; followers: a lecturer
who presses Present and then moves through LECTURE_SCRIPT), spawns the N users over --ramp seconds and keeps them S
seconds (under a run: also until it has ended and every viewer has shown its end, 30 s after the end at most).
Streamlit's XSRF protection stays on: the clients need no token (tests/support/st_client.py).

Written (JSON, and a summary on stdout): users, errors (exceptions, st.error, compile errors, timeouts, unacknowledged
guesses, wrong URLs), disconnects, p50_ms / p95_ms (every request's BackMsg → script_finished as the client saw it,
page loads included; by_kind and by_user split them), the server's CPU seconds per second (/proc/<pid>/stat) and
memory (VmRSS at the end, VmHWM over the phase), its script runs (inside the server), generator_cpu_s_per_s and the
generator's event-loop lag (a saturated generator shows here: ≥ 0.9 CPU s/s or a lag of 100 ms), and, where a run
trains, run_slowdown (its wall time ÷ the same config's alone).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import hall_users  # noqa: E402
from tests.support.appserver import server  # noqa: E402

MAX_USERS, MAX_SECONDS = 1000, 1800
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Locust user classes and their weights per scenario; the lecture's one runner is a fixed count
SCENARIOS = {"students": {"Student": 1}, "viewers": {"Viewer": 1}, "followers": {"Follower": 1},
             "lecture": {"Follower": 6, "Student": 2, "Viewer": 2}}
PAGES = {"students": ["soft_labels"], "viewers": ["live_distillation"], "followers": ["lecture"],
         "lecture": ["soft_labels", "live_distillation", "lecture"]}
RUN_SCENARIOS, LECTURER_SCENARIOS = ("viewers", "lecture"), ("followers", "lecture")
MAX_EPOCHS = 500  # the Live page's "Epochs" field
VIEWER_GRACE_S = 30.0  # how long the phase waits, after a watched run's end, for every viewer to have seen it


# ---- measuring -----------------------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


class Servers:
    """What the phase measures of the server side: one app server (its pid), or a hall of replicas (kdviz.hall: K
    app servers, HAProxy and a Ray head with its workers), measured as the machine's busy CPU time minus this
    generator's, and the replicas' memory summed."""

    def __init__(self, pids: list[int], whole_machine: bool):
        self.pids, self.whole_machine = pids, whole_machine

    def cpu(self) -> float:
        if not self.whole_machine:
            return sum(cpu_seconds(pid) for pid in self.pids)
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
        return busy / CLOCK_TICKS - _own_cpu()

    def memory(self, key: str) -> float:
        return round(sum(memory_mb(pid, key) for pid in self.pids), 1)

    def reset_peak(self) -> None:
        for pid in self.pids:
            reset_peak(pid)


def reset_peak(pid: int) -> None:
    """VmHWM from here on (clear_refs 5); without permission it stays the process's peak since it started."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def summary_ms(seconds: list[float]) -> dict:
    if not seconds:
        return {"count": 0, "p50_ms": None, "p95_ms": None}
    ordered = sorted(seconds)
    return {"count": len(ordered), "p50_ms": round(1000 * statistics.median(ordered), 1),
            "p95_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1)}


def script_times(path: Path, start: float, end: float) -> dict:
    """The server's own script runs in [start, end] (epoch s), from bench/hall_server.py's file, by kind."""
    rows = [line.split("\t") for line in path.read_text().splitlines()] if path.exists() else []
    runs = [(kind, float(seconds)) for end_time, seconds, kind, *_ in rows if start <= float(end_time) <= end]
    return {kind: summary_ms([s for k, s in runs if k == kind]) for kind in ("full", "fragment")}


async def loop_lag(samples: list[float], interval: float = 0.1) -> None:
    """How late the generator's event loop wakes up: a loop that cannot keep up is a saturated generator."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval)
        samples.append(time.perf_counter() - started - interval)


# ---- preparing: warm-up, runs, the lecturer ------------------------------------------------------------------------

def run_status(home: Path, run_id: str) -> dict:
    try:
        return json.loads((home / "runs" / run_id / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_run(home: Path, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run_status(home, run_id)
        if status.get("state") not in (None, *hall_users.LIVE_STATES):
            return status
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id} did not end within {timeout:.0f} s")


def epoch_seconds(home: Path, run_id: str) -> float:
    """Seconds per distillation epoch of a finished run, from its log's EpochEnd times."""
    ends = [event["t"] for event in map(json.loads, (home / "runs" / run_id / "events.jsonl").open())
            if event.get("event") == "EpochEnd" and event.get("phase") != "teacher"]
    return (ends[-1] - ends[0]) / max(1, len(ends) - 1)


async def start_owned_run(url: str, preset: str, epochs: int | None) -> str:
    """A browser of its own opens the Live page, starts the run and leaves (the run goes on)."""
    async with hall_users.tab(url, "setup", "live_distillation", auto_rerun=False) as session:
        return await hall_users.start_run(session, preset, epochs)


async def warm_up(url: str, pages: list[str]) -> None:
    """Each page once: a process's first run of a page pays its imports."""
    for page in pages:
        async with hall_users.tab(url, "setup", page, auto_rerun=False):
            pass


def prepare_run(loop, url: str, home: Path, preset: str, seconds: float) -> dict:
    """A warm-up run (trains and caches the teacher; gives the seconds per epoch), then the config sized to last
    about `seconds` alone, run alone: what the loaded run is compared with."""
    warm = loop.run(start_owned_run(url, preset, 3), 120)
    wait_run(home, warm, 900)
    epochs = max(1, min(MAX_EPOCHS, math.ceil(seconds / epoch_seconds(home, warm))))
    alone = loop.run(start_owned_run(url, preset, epochs), 120)
    status = wait_run(home, alone, 60 + 10 * seconds)
    return {"preset": preset, "epochs": epochs, "alone_id": alone,
            "alone_s": round(status["finished_at"] - status["started_at"], 2)}


# ---- the phase -----------------------------------------------------------------------------------------------------

def run_locust(url: str, scenario: str, users: int, ramp: float, until, max_seconds: float):
    """Locust, headless and in this process: the scenario's users, spawned over `ramp` seconds, until until() is true
    (checked every second) or max_seconds; returns Locust's environment (its statistics)."""
    import gevent
    from locust import events
    from locust.env import Environment

    from bench import hall_locustfile

    classes = []
    for name, weight in SCENARIOS[scenario].items():
        user_class = getattr(hall_locustfile, name)
        user_class.weight, user_class.host = weight, url
        classes.append(user_class)
    if scenario == "lecture" and users >= 10:  # one person starts runs of their own now and then: few, bounded
        hall_locustfile.Runner.fixed_count, hall_locustfile.Runner.host = 1, url
        classes.append(hall_locustfile.Runner)
    environment = Environment(user_classes=classes, events=events, host=url)
    runner = environment.create_local_runner()
    events.init.fire(environment=environment, runner=runner, web_ui=None)
    runner.start(users, spawn_rate=users / max(ramp, 0.1))
    started = time.monotonic()
    while time.monotonic() - started < max_seconds and not until(time.monotonic() - started):
        gevent.sleep(1.0)
    runner.quit()
    return environment


def phase(args, url: str, servers: Servers, home: Path, times: Path, loop) -> dict:
    """Prepare what the scenario needs, play it, and measure it."""
    report: dict = {}
    lecturer = room = run = None
    if args.scenario in RUN_SCENARIOS:
        run = prepare_run(loop, url, home, args.preset, args.seconds)
    if args.scenario in LECTURER_SCENARIOS:
        lecturer = loop.run(hall_users.open_tab(url, "lecturer", "lecture", "step=1"), 60)
        room = loop.run(hall_users.present(lecturer), 60)
        os.environ["KDVIZ_HALL_ROOM"] = room
    lags: list[float] = []
    lag_task = loop.submit(loop_lag(lags))
    servers.reset_peak()
    started_wall, started, server_cpu, generator_cpu = time.time(), time.monotonic(), servers.cpu(), _own_cpu()
    if run is not None:
        run["loaded_id"] = loop.run(start_owned_run(url, args.preset, run["epochs"]), 120)
        os.environ["KDVIZ_HALL_RUN"] = run["loaded_id"]
    lecture = loop.submit(hall_users.lecturer(lecturer, room, args.pace)) if lecturer is not None else None

    run_ended: list[float] = []

    def done(elapsed: float) -> bool:
        """S seconds and, under a run, its end seen by every viewer (each redraw of theirs after the end is a full
        page run: a burst), or VIEWER_GRACE_S after the end at most."""
        if run is not None and not run_ended and run_status(home, run["loaded_id"]).get("state") not in (
                None, *hall_users.LIVE_STATES):
            run_ended.append(elapsed)
        if elapsed < args.seconds or run is None:
            return elapsed >= args.seconds
        viewers = [seen for seen in hall_users.RECORD.viewers if seen["run"] == run["loaded_id"]]
        return bool(run_ended) and (all("ended_seen_at" in seen for seen in viewers)
                                    or elapsed >= run_ended[0] + VIEWER_GRACE_S)

    environment = run_locust(url, args.scenario, args.users, args.ramp, done, 3 * args.seconds + 120)
    elapsed, ended_wall = time.monotonic() - started, time.time()
    report.update(server_cpu_s_per_s=round((servers.cpu() - server_cpu) / elapsed, 3),
                  generator_cpu_s_per_s=round((_own_cpu() - generator_cpu) / elapsed, 3),
                  server_rss_mb=servers.memory("VmRSS"), server_peak_rss_mb=servers.memory("VmHWM"))
    for future in (lecture, lag_task):
        if future is not None:
            future.cancel()
    loop.run(hall_users.close_all(), 60)
    ended = time.monotonic()
    report.update(measure(started, ended, elapsed, lags))
    report["server_script_runs"] = script_times(times, started_wall, ended_wall)
    report["locust"] = {"requests": environment.stats.total.num_requests,
                        "failures": environment.stats.total.num_failures}
    if run is not None:
        status = run_status(home, run["loaded_id"])
        if status.get("finished_at"):
            run["loaded_s"] = round(status["finished_at"] - status["started_at"], 2)
            report["run_slowdown"] = round(run["loaded_s"] / run["alone_s"], 3)
            seen = sorted(viewer["ended_seen_at"] - status["finished_at"] for viewer in hall_users.RECORD.viewers
                          if viewer["run"] == run["loaded_id"] and "ended_seen_at" in viewer)
            if seen and "viewers" in report:  # how long after the run ended its viewers showed it
                report["viewers"]["end_seen_after_s"] = {"p50": round(statistics.median(seen), 2),
                                                         "max": round(seen[-1], 2)}
        run["loaded_state"] = status.get("state")
        report["run"] = run
    if room is not None:
        report["room"] = room
    return report


def _own_cpu() -> float:
    times = os.times()  # this whole process: Locust's greenlets and the sessions' asyncio thread
    return times.user + times.system


def split_by(requests: list[tuple], field: int) -> dict:
    """summary_ms of the requests grouped by one of their fields (1: the user, 2: the request's kind)."""
    return {name: summary_ms([entry[3] for entry in requests if entry[field] == name])
            for name in sorted({entry[field] for entry in requests})}


def measure(started: float, ended: float, elapsed: float, lags: list[float]) -> dict:
    """What the clients recorded between started and ended (monotonic), the lecturer apart."""
    record = hall_users.RECORD
    inside = [entry for entry in record.requests if started <= entry[0] <= ended]
    hall = [entry for entry in inside if entry[1] not in ("lecturer", "setup")]
    errors = [entry for entry in record.errors if started <= entry[0] <= ended]
    refusals = [entry for entry in record.refusals if started <= entry[0] <= ended]
    polls = [poll for poll in record.polls if started <= poll[0] <= ended]
    follow = sorted(lag for t, lag in record.follow_lags if started <= t <= ended)
    viewers = [seen for seen in record.viewers if seen["since"] <= ended]
    overall = summary_ms([entry[3] for entry in hall])
    result = {"seconds": round(elapsed, 1), "requests": overall.pop("count"), "errors": len(errors),
              "first_errors": sorted({f"{user}: {text}" for _, user, text in errors})[:5],
              "refusals": len(refusals),
              "first_refusals": sorted({f"{user}: {text}" for _, user, text in refusals})[:2],
              "disconnects": sum(1 for t, _ in record.disconnects if started <= t <= ended),
              **overall,
              "by_kind": split_by(hall, 2), "by_user": split_by(hall, 1),
              "generator_loop_lag_ms": {"p95": round(1000 * sorted(lags)[int(0.95 * len(lags))], 1) if lags else None,
                                        "max": round(1000 * max(lags), 1) if lags else None}}
    lecturer = [entry[3] for entry in inside if entry[1] == "lecturer"]
    if lecturer:
        result["lecturer"] = summary_ms(lecturer)
    if viewers:
        pushes = sum(1 for e in hall if e[1] == "viewer" and e[2] in ("auto", "redraw"))
        result["viewers"] = {"count": len(viewers), "pushes": pushes,
                             "pushes_per_viewer_per_s": round(pushes / len(viewers) / elapsed, 3),
                             "saw_progress": sum(1 for seen in viewers if seen["max_step"] > 0),
                             "saw_charts": sum(1 for seen in viewers if seen["charts"] > 0),
                             "saw_end": sum(1 for seen in viewers
                                            if seen["state"] not in (None, *hall_users.LIVE_STATES))}
    for kind in sorted({poll[2] for poll in polls}):  # a route's polls: rooms (followers), runs (viewers)
        mine = [poll for poll in polls if poll[2] == kind]
        result.setdefault("polls", {})[kind] = {
            "count": len(mine), "per_s": round(len(mine) / elapsed, 1), **summary_ms([poll[1] for poll in mine]),
            "kb_per_s": round(sum(poll[3] for poll in mine) / 1000 / elapsed, 1)}
    if follow:
        result["follow_lag_s"] = {"count": len(follow), "p50": round(statistics.median(follow), 3),
                                  "p95": round(follow[int(0.95 * len(follow))], 3), "max": round(follow[-1], 3)}
        result["guesses"] = record.guesses
    if record.runs:
        result["runner_runs"] = record.runs
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=list(SCENARIOS), required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which the users arrive")
    parser.add_argument("--preset", choices=["lecture", "quick"], default="lecture", help="the run viewers watch")
    parser.add_argument("--pace", type=float, default=4.0, help="seconds between the lecturer's moves")
    parser.add_argument("--release-every", type=float, help="a student lets go of T every S seconds on average "
                                                            "(uniform in 0.8 S to 1.2 S; default: 2 to 5 s)")
    parser.add_argument("--home", type=Path, help="KDVIZ_HOME to use (keeps trained teachers between invocations)")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--replicas", type=int, default=0,
                        help="0: one app server (make run's); K: a hall of K replicas behind HAProxy with a local Ray "
                             "(kdviz.hall, make hall), all on core 0 unless --no-pin; CPU is then the machine's busy "
                             "time minus the generator's")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not 1 <= args.users <= MAX_USERS or not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--users must be 1 to {MAX_USERS} and --seconds more than 0 and at most {MAX_SECONDS}")
    if args.release_every is not None:
        if not 0.5 <= args.release_every <= 60:
            parser.error("--release-every must be 0.5 to 60 seconds")
        hall_users.RELEASE_EVERY_S = (0.8 * args.release_every, 1.2 * args.release_every)
    if not args.no_pin and not {0, 1} <= os.sched_getaffinity(0):
        print("fewer than 2 cores (0 and 1) to pin to: server and generator share them", file=sys.stderr)
        args.no_pin = True
    home = args.home or Path(tempfile.mkdtemp(prefix="kdviz-hall-load-"))
    times = home / "script_times.tsv"
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    report = {"scenario": args.scenario, "users": args.users, "target_seconds": args.seconds, "cpu": model,
              "cores": os.cpu_count(), "pinned": not args.no_pin, "replicas": args.replicas,
              "release_every_s": list(hall_users.RELEASE_EVERY_S)}
    with contextlib.ExitStack() as stack:
        if args.replicas:  # a hall (kdviz.hall): its processes inherit core 0 from here, the generator takes core 1
            from kdviz.hall import Hall, HallConfig

            if not args.no_pin:
                os.sched_setaffinity(0, {0})
            hall = stack.enter_context(Hall(HallConfig(replicas=args.replicas, port=0, host="127.0.0.1", home=home,
                                                       env={"KDVIZ_TOUR_RUNS": "off"})))
            url, servers, logs = hall.url, Servers([r.pid for r in hall.replicas], whole_machine=True), \
                [r.log for r in hall.replicas]
        else:
            running = stack.enter_context(server(home, home / "server.log",
                                                 prefix=[] if args.no_pin else ["taskset", "-c", "0"],
                                                 module="bench.hall_server",
                                                 env={"KDVIZ_TOUR_RUNS": "off", "KDVIZ_SCRIPT_TIMES": str(times)}))
            url, servers, logs = running.url, Servers([running.pid], whole_machine=False), [home / "server.log"]
        if not args.no_pin:
            os.sched_setaffinity(0, {1})  # before the generator's threads start: they inherit it
        from bench.hall_locustfile import LOOP

        LOOP.run(warm_up(url, PAGES[args.scenario]), 120)
        report.update(phase(args, url, servers, home, times, LOOP))
        log = "".join(path.read_text(errors="replace") for path in logs if path.is_file())
    report["server_tracebacks"] = log.count("Traceback (most recent call last)")
    report["generator_saturated"] = bool(report["generator_cpu_s_per_s"] >= 0.9 or
                                         (report["generator_loop_lag_ms"]["p95"] or 0) >= 100)
    print(json.dumps({key: report[key] for key in ("scenario", "users", "seconds", "errors", "disconnects", "p50_ms",
                                                   "p95_ms", "server_cpu_s_per_s", "server_rss_mb",
                                                   "generator_cpu_s_per_s", "generator_saturated")
                      if key in report} | ({"run_slowdown": report["run_slowdown"]} if "run_slowdown" in report
                                           else {})))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
