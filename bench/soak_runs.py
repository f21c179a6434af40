"""Soak: 200 tiny runs through one RunManager in this process; does memory or the count of open files grow?

The manager is the app's (kdviz.runs.manager.RunManager) with its own temporary KDVIZ_HOME, set in the environment
before kdviz is imported. The runs are tiny (digits, a 16-unit teacher for one epoch, an 8-unit student for one
epoch on 200 images), submitted in small groups (the manager caps how many runs one caller may have waiting) and
each awaited. After 20 runs and after 200 runs (gc.collect() first) it reads the process's RSS (VmRSS in
/proc/self/status), its open file handles (/proc/self/fd), the size of the manager's in-memory structures and the
time manager.list_runs() takes; then it prints the differences against the targets: memory within 5 MB, file
handles flat (at most +2).

    python bench/soak_runs.py [--runs 200] [--warm 20] [--group 4] [--json PATH]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MEMORY_TARGET_MB, HANDLES_TARGET = 5.0, 2
LIVE_STATES = ("queued", "running", "paused")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_handles() -> int:
    return len(os.listdir("/proc/self/fd"))


def deep_size(root, limit: int = 2_000_000) -> int:
    """Bytes of root and everything it holds (containers, instances' __dict__ and __slots__), each object once;
    modules, classes, functions, threads and locks are not followed."""
    import threading
    import types

    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
            threading.Thread, type(threading.Lock()), type(threading.RLock()), threading.Condition, threading.Event)
    seen, todo, total = set(), [root], 0
    while todo and len(seen) < limit:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj, 0)
        if isinstance(obj, dict):
            todo += list(obj.keys()) + list(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)) or type(obj).__name__ in ("deque", "OrderedDict"):
            todo += list(obj)
        else:
            if hasattr(obj, "__dict__"):
                todo.append(vars(obj))
            for name in getattr(type(obj), "__slots__", ()):
                if hasattr(obj, name):
                    todo.append(getattr(obj, name))
    return total


def manager_structures(manager) -> dict:
    """The lengths of the manager's containers and the deep size of its per-run state (store and threads aside)."""
    sizes = {name: len(value) for name, value in vars(manager).items()
             if isinstance(value, (dict, list, set, tuple)) or type(value).__name__ in ("deque", "OrderedDict")}
    held = {name: value for name, value in vars(manager).items() if name not in ("store", "settings", "_threads",
                                                                                  "_workers", "_lock", "_wakeup")}
    return {"lengths": sizes, "deep_bytes": deep_size(held)}


def time_list_runs(manager, repeats: int = 5) -> dict:
    times, count = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = len(manager.list_runs())
        times.append(time.perf_counter() - start)
    return {"median_ms": 1000 * statistics.median(times), "max_ms": 1000 * max(times), "runs_listed": count}


def measure(manager, done: int) -> dict:
    gc.collect()
    return {"runs": done, "rss_mb": rss_mb(), "open_handles": open_handles(),
            "manager": manager_structures(manager), "list_runs": time_list_runs(manager)}


def wait_finished(manager, run_ids: list[str], timeout: float = 120.0) -> list[str]:
    deadline = time.monotonic() + timeout
    states = {}
    for run_id in run_ids:
        while True:
            run = manager.get(run_id)
            if run is not None and run.state not in LIVE_STATES:
                states[run_id] = run.state
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f} s "
                                   f"(state {run.state if run else None!r})")
            time.sleep(0.01)
    return [states[run_id] for run_id in run_ids]


def fresh_home(prefix: str) -> Path:
    """A temporary KDVIZ_HOME, set in the environment before kdviz is imported (every path it uses is under it); one
    torch thread per run (the soaks measure the manager, not the arithmetic)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["KDVIZ_HOME"] = str(home)
    os.environ.setdefault("KDVIZ_THREADS", "1")
    return home


def tiny_config(batch_size: int = 64):
    """The soaks' run: digits, a 16-unit teacher for one epoch, an 8-unit student for one epoch on 200 images."""
    from kdviz.core.engine import DistillConfig, TeacherConfig
    from kdviz.core.models import ModelSpec

    return DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0),
                         ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.5, epochs=1, batch_size=batch_size,
                         train_subset=200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warm", type=int, default=20, help="runs before the first measurement")
    parser.add_argument("--group", type=int, default=4, help="runs submitted before waiting for them")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    home = fresh_home("kdviz-soak-")
    import dataclasses

    from kdviz.runs.manager import QueueFull, RunManager

    tiny = tiny_config()
    manager = RunManager()
    started, states, points = time.perf_counter(), {}, []
    try:
        done, seed = 0, 0
        while done < args.runs:
            ids = []
            for _ in range(min(args.group, args.runs - done)):
                while True:
                    try:
                        ids.append(manager.submit(dataclasses.replace(tiny, seed=seed), "soak"))
                        seed += 1
                        break
                    except QueueFull:  # the per-caller cap: wait for the group so far
                        wait_finished(manager, ids)
            for state in wait_finished(manager, ids):
                states[state] = states.get(state, 0) + 1
            before, done = done, done + len(ids)
            if before < args.warm <= done or done == args.runs:
                points.append(measure(manager, done))
                print(f"after {done} runs: RSS {points[-1]['rss_mb']:.1f} MB, {points[-1]['open_handles']} open "
                      f"handles, list_runs {points[-1]['list_runs']['median_ms']:.1f} ms, manager "
                      f"{points[-1]['manager']}", flush=True)
    finally:
        manager.shutdown()
        shutil.rmtree(home, ignore_errors=True)
    seconds = time.perf_counter() - started
    first, last = points[0], points[-1]
    memory, handles = last["rss_mb"] - first["rss_mb"], last["open_handles"] - first["open_handles"]
    structures = last["manager"]["deep_bytes"] - first["manager"]["deep_bytes"]
    import subprocess

    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout  # noqa: E731
    print(f"\n{args.runs} tiny runs in {seconds:.0f} s ({seconds / args.runs:.2f} s a run); states {states}; "
          f"kdviz at commit {git('rev-parse', '--short', 'HEAD').strip()} + "
          f"{len(git('status', '--porcelain').splitlines())} uncommitted paths")
    print(f"{'':32}{'after ' + str(first['runs']):>14}{'after ' + str(last['runs']):>14}{'difference':>14}")
    print(f"{'RSS (MB)':32}{first['rss_mb']:14.1f}{last['rss_mb']:14.1f}{memory:+14.1f}")
    print(f"{'open file handles':32}{first['open_handles']:14d}{last['open_handles']:14d}{handles:+14d}")
    print(f"{'manager structures (KB, deep)':32}{first['manager']['deep_bytes'] / 1024:14.1f}"
          f"{last['manager']['deep_bytes'] / 1024:14.1f}{structures / 1024:+14.1f}")
    for name in sorted(set(first["manager"]["lengths"]) | set(last["manager"]["lengths"])):
        a, b = first["manager"]["lengths"].get(name, 0), last["manager"]["lengths"].get(name, 0)
        print(f"{'  len(manager.' + name + ')':32}{a:14d}{b:14d}{b - a:+14d}")
    print(f"{'list_runs() median (ms)':32}{first['list_runs']['median_ms']:14.1f}{last['list_runs']['median_ms']:14.1f}"
          f"{last['list_runs']['median_ms'] - first['list_runs']['median_ms']:+14.1f}")
    print(f"{'  runs it listed':32}{first['list_runs']['runs_listed']:14d}{last['list_runs']['runs_listed']:14d}")
    print("\ntargets:")
    print(f"  memory growth {memory:+.1f} MB (target ≤ {MEMORY_TARGET_MB:g} MB): "
          f"{'PASS' if memory <= MEMORY_TARGET_MB else 'FAIL'}")
    print(f"  file handles {handles:+d} (target ≤ +{HANDLES_TARGET}): "
          f"{'PASS' if handles <= HANDLES_TARGET else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps({"runs": args.runs, "seconds": seconds, "states": states, "points": points},
                                        indent=2))


if __name__ == "__main__":
    main()
