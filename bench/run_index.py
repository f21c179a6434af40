"""Listing one browser's runs with 10,000 runs on disk: the folder scan (every folder's config and status) against
the run index (kdviz.runs.index), side by side in one process, with the CPU it ran on.

It writes the run folders directly (as an older kdviz, without an index, would have left them) in a temporary
KDVIZ_HOME: `--runs` runs spread over `--browsers` browsers, all finished. A RunManager then starts on them (its start
builds the index: that time is printed too), and both listings of one browser's runs are timed `--repeats` times:
"folder scan" is what the manager does when the index cannot be read, "index" is list_runs. The manager's caches of
finished runs hold 1,024 runs, fewer than the server has: the scan reads most folders again on every listing, as it
did for a viewer refreshing every second.

    python bench/run_index.py [--runs 10000] [--browsers 500] [--repeats 20]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_folders(runs_root: Path, count: int, browsers: int) -> None:
    from kdviz.core.identity import owner_key

    owners = [owner_key(f"browser-{b}") for b in range(browsers)]
    config = {"dataset": "digits", "student": {"arch": "mlp", "width": 64, "depth": 1}, "temperature": 4.0,
              "alpha": 0.5, "epochs": 5, "batch_size": 64, "seed": 0}
    for n in range(count):
        folder = runs_root / f"20260101-{n // 60:04d}{n % 60:02d}-{n % 4096:06x}"
        folder.mkdir(parents=True)
        record = {"config": {**config, "seed": n}, "owner": owners[n % browsers], "created": 1.7e9 + n, "tags": {}}
        (folder / "config.json").write_text(json.dumps(record, indent=2))
        (folder / "status.json").write_text(json.dumps({"state": "completed", "summary": {"kd": {"accuracy": 0.9}},
                                                        "updated": 1.7e9 + n}))


def median_ms(action, repeats: int) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        found = len(action())
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--browsers", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if args.runs < 1 or args.browsers < 1 or args.repeats < 1:
        sys.exit("--runs, --browsers and --repeats must be at least 1")
    home = Path(tempfile.mkdtemp(prefix="kdviz-bench-index-"))
    os.environ["KDVIZ_HOME"] = str(home)
    try:
        from kdviz.core.budget import UNLIMITED
        from kdviz.runs.manager import RunManager
        from kdviz.runs.store import RunStore

        write_folders(home / "runs", args.runs, args.browsers)
        start = time.perf_counter()
        manager = RunManager(RunStore(home / "runs"), workers=1, budget=UNLIMITED)
        built_s = time.perf_counter() - start
        caller = "browser-7"
        scan = lambda: manager._runs_of(None, lambda run: manager.owns(run, caller))  # noqa: E731
        index = lambda: manager.list_runs(caller)  # noqa: E731
        assert [run.id for run in scan()] == [run.id for run in index()], "both listings agree"
        scan_ms, scanned = median_ms(scan, max(3, args.repeats // 4))
        index_ms, listed = median_ms(index, args.repeats)
        manager.shutdown()
        print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores), Python {platform.python_version()}")
        print(f"{args.runs:,} finished runs on disk, {args.browsers} browsers; one browser lists its {listed} runs")
        print(f"index built when the manager started (from the folders): {built_s:.2f} s")
        print(f"{'listing one browser':28}{'folder scan':>14}{'index':>14}{'ratio':>10}")
        print(f"{'median (ms)':28}{scan_ms:14.1f}{index_ms:14.2f}{scan_ms / index_ms:9.0f}x")
        assert scanned == listed
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
