"""Soak with chaos: many tiny runs from many identities through the run manager's API, with random cancels, pauses,
resumes, deletes and pause time-outs, fired from several threads at once, and a restart half-way.

What a hall does to a server over a semester, compressed: 50 browsers (identities) submit 1,000 tiny runs (digits, a
16-unit teacher, an 8-unit student on 200 images for 1–3 epochs) while 8 threads act on random runs of theirs. The
server's paused-run time-out is short (--paused-timeout, default 2 s), so the reaper stops paused runs while their
owners press Resume. Half-way the manager shuts down and a new one starts on the same KDVIZ_HOME (a restart).

At the end it checks every run ever submitted:
- none lost: a deleted run has no folder and manager.get() says None; every other run has its folder, a final state
  (completed, cancelled, interrupted; "failed" counts as a fault and is listed), and status.json says the same as the
  manager;
- none stuck: every run ended within --settle seconds after the last action;
- records consistent: config.json names its owner's key, events.jsonl parses, a completed run kept students.pt
  unless retention removed it (it then says so), time never counted twice (active seconds ≤ wall time);
- memory flat after warm-up: RSS every 100 runs (gc first), the slope after the first 200 runs;
- disk within the quota (the server's max_disk_mb, when it has one).

    python bench/soak_chaos.py [--runs 1000] [--identities 50] [--actors 8] [--workers 2] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.soak_runs import fresh_home, open_handles, rss_mb, tiny_config  # noqa: E402  (the soaks' shared parts)

FINAL_OK = ("completed", "cancelled", "interrupted")
MEMORY_SLOPE_TARGET_MB = 5.0  # per 100 runs after warm-up


def folder_bytes(path: Path) -> int:
    """Bytes under path, counted while runs are written and deleted (a file or folder gone meanwhile counts 0)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class Chaos:
    """The hall: identities, their runs, and the actions fired at them (a seeded random.Random per actor)."""

    def __init__(self, args, tiny):
        self.args, self.tiny = args, tiny
        self.identities = [f"soak-identity-{i:02d}" for i in range(args.identities)]
        self.owner_of: dict[str, str] = {}
        self.deleted: set[str] = set()
        self.counts: dict[str, int] = {}
        self.refusals: dict[str, int] = {}
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.submitted = 0
        self.manager = None
        self.manager_lock = threading.RLock()  # held while the manager is swapped (the restart)

    def count(self, what: str, table: dict | None = None) -> None:
        with self.lock:
            table = self.counts if table is None else table
            table[what] = table.get(what, 0) + 1

    def submit(self, rng: random.Random) -> None:
        from kdviz.runs.manager import QueueFull

        with self.lock:
            if self.submitted >= self.args.runs:
                return
            self.submitted += 1
            seed = self.submitted
        who = rng.choice(self.identities)
        config = self.tiny(seed, rng.choice((1, 2, 3)))
        try:
            with self.manager_lock:
                run_id = self.manager.submit(config, who, address=f"10.0.0.{self.identities.index(who) % 7}")
        except QueueFull as error:
            with self.lock:
                self.submitted -= 1  # asked again later, as a browser would
            self.count(str(error).split(";")[0][:60], self.refusals)
            time.sleep(0.05)
            return
        except ValueError as error:  # over budget or quota: refused before it was queued
            with self.lock:
                self.submitted -= 1
            self.count(f"refused: {str(error)[:60]}", self.refusals)
            time.sleep(0.05)
            return
        with self.lock:
            self.owner_of[run_id] = who
        self.count("submit")

    def act(self, rng: random.Random) -> None:
        with self.lock:
            candidates = [r for r in self.owner_of if r not in self.deleted][-300:]  # recent runs
        if not candidates:
            return
        roll = rng.random()
        with self.manager_lock:
            manager = self.manager
            if roll < 0.03:  # a student cleans up: any run of theirs, live or not
                action, run_id = "delete", rng.choice(candidates)
            elif roll < 0.8:  # a student at a live run's controls
                live = [r for r in candidates if (run := manager.get(r)) is not None and run.live]
                if not live:
                    return
                run_id = rng.choice(live)
                action = rng.choices(("cancel", "pause", "resume"), weights=(1, 5, 4))[0]
            else:
                action, run_id = "look", rng.choice(candidates)
            who = self.owner_of[run_id]
            try:
                if action == "cancel":
                    manager.cancel(run_id, who)
                elif action == "pause":
                    manager.pause(run_id, who)
                elif action == "resume":
                    manager.resume_run(run_id, who)
                elif action == "delete":
                    manager.delete(run_id, who)
                    with self.lock:
                        self.deleted.add(run_id)
                else:
                    manager.list_runs(who)
                    manager.get(run_id)
            except ValueError as error:  # e.g. too many paused runs: a refusal the page shows
                self.count(f"{action} refused: {str(error)[:50]}", self.refusals)
                return
            except Exception as error:  # noqa: BLE001 — a fault to report, not to stop the soak
                with self.lock:
                    self.errors.append(f"{action} {run_id}: {type(error).__name__}: {error}")
                return
        self.count(action)

    def actor(self, index: int, stop: threading.Event) -> None:
        rng = random.Random(1000 + index)
        while not stop.is_set():
            if rng.random() < 0.35:
                self.submit(rng)
            else:
                self.act(rng)
            time.sleep(rng.uniform(0.0, 0.02))


def check(chaos: Chaos, manager, store, started_wall: float) -> dict:
    """Every run ever submitted, against what the manager and the disk say."""
    from kdviz.runs.store import FINAL_STATES

    lost, stuck, faults, mismatched = [], [], [], []
    states: dict[str, int] = {}
    removed = {notice["run_id"] for who in chaos.identities for notice in manager.removed_runs(who)}
    for run_id, who in chaos.owner_of.items():
        run = manager.get(run_id)
        if run is None and run_id in removed and run_id not in chaos.deleted:  # the disk quota made room: told
            states["removed by the disk quota"] = states.get("removed by the disk quota", 0) + 1
            continue
        if run_id in chaos.deleted:
            if run is not None or store.folder(run_id).exists():
                lost.append(f"{run_id}: deleted but still there ({run.state if run else 'folder'})")
            continue
        if run is None:
            lost.append(f"{run_id}: gone without a delete")
            continue
        states[run.state] = states.get(run.state, 0) + 1
        if run.live:
            stuck.append(f"{run_id}: {run.state}")
            continue
        if run.state not in FINAL_OK:
            faults.append(f"{run_id}: {run.state}: {run.message}")
        status = store.read_json(run_id, "status.json") or {}
        record = store.read_json(run_id, "config.json") or {}
        from kdviz.core.identity import owner_key

        if status.get("state") != run.state or status.get("state") not in FINAL_STATES:
            mismatched.append(f"{run_id}: status.json {status.get('state')} vs {run.state}")
        if record.get("owner") != owner_key(who):
            mismatched.append(f"{run_id}: config.json owner is not its submitter's key")
        try:
            list(store.iter_events(run_id))
        except Exception as error:  # noqa: BLE001
            mismatched.append(f"{run_id}: events.jsonl: {error}")
        if run.state == "completed" and not store.students_path(run_id).exists() and "removed" not in run.message:
            mismatched.append(f"{run_id}: completed without students.pt")
        if run.started_at and run.finished_at and (status.get("active_seconds") or 0) > (
                run.finished_at - run.started_at) + 0.5:
            mismatched.append(f"{run_id}: {status.get('active_seconds')} s active in "
                              f"{run.finished_at - run.started_at:.1f} s of wall time (counted twice)")
    return {"states": states, "lost": lost, "stuck": stuck, "faults": faults, "mismatched": mismatched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--identities", type=int, default=50)
    parser.add_argument("--actors", type=int, default=8, help="threads firing actions at once")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--paused-timeout", type=float, default=2.0)
    parser.add_argument("--warm", type=int, default=200, help="runs before memory is expected to be flat")
    parser.add_argument("--settle", type=float, default=300.0, help="seconds for every run to end after the chaos")
    parser.add_argument("--disk-mb", type=float, help="the server's disk quota (max_disk_mb; default: the server's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    home = fresh_home("kdviz-chaos-")
    import dataclasses
    import gc

    from kdviz.runs.manager import RunManager

    base = tiny_config(batch_size=32)  # 7 steps an epoch: room for a pause to land mid-run

    def tiny(seed: int, epochs: int):
        return dataclasses.replace(base, seed=seed, epochs=epochs)

    def new_manager():
        quota = {} if args.disk_mb is None else {"max_disk_bytes": int(args.disk_mb * 2**20)}
        return RunManager(workers=args.workers, paused_timeout_s=args.paused_timeout, max_queued=200,
                          max_live_per_browser=8, max_live_per_address=64, **quota)

    chaos = Chaos(args, tiny)
    chaos.manager = new_manager()
    stop = threading.Event()
    actors = [threading.Thread(target=chaos.actor, args=(i, stop), daemon=True) for i in range(args.actors)]
    started, started_wall = time.perf_counter(), time.time()
    points, restarted = [], False
    for thread in actors:
        thread.start()
    try:
        next_point = 0
        while chaos.submitted < args.runs:
            time.sleep(0.5)
            if not restarted and chaos.submitted >= args.runs // 2:
                with chaos.manager_lock:  # the restart: actors wait, then act on the new manager
                    chaos.manager.shutdown(timeout=30)
                    chaos.manager = new_manager()
                restarted = True
                print(f"restarted after {chaos.submitted} runs", flush=True)
            if chaos.submitted >= next_point:
                gc.collect()
                points.append({"runs": chaos.submitted, "rss_mb": rss_mb(), "open_handles": open_handles(),
                               "seconds": round(time.perf_counter() - started, 1),
                               "disk_mb": folder_bytes(home) / 2 ** 20})
                print(f"{chaos.submitted} runs: RSS {points[-1]['rss_mb']:.0f} MB, {points[-1]['open_handles']} "
                      f"handles, disk {points[-1]['disk_mb']:.1f} MB, {points[-1]['seconds']} s", flush=True)
                next_point += 100
        # the last actions land, then nothing more: every run must end on its own (cancels, time-outs, training)
        time.sleep(2.0)
        stop.set()
        for thread in actors:
            thread.join()
        manager = chaos.manager
        for run_id in [r for r in chaos.owner_of if r not in chaos.deleted]:  # resume nothing: time-outs end pauses
            deadline = time.monotonic() + args.settle
            while (run := manager.get(run_id)) is not None and run.live and time.monotonic() < deadline:
                time.sleep(0.05)
        seconds = time.perf_counter() - started
        gc.collect()
        points.append({"runs": chaos.submitted, "rss_mb": rss_mb(), "open_handles": open_handles(),
                       "seconds": round(seconds, 1), "disk_mb": folder_bytes(home) / 2 ** 20})
        result = check(chaos, manager, manager.store, started_wall)
        index_files = sum(f.stat().st_size for f in manager.store.root.glob("index.sqlite3*"))
        breakdown = {"runs": (folder_bytes(manager.store.root) - index_files) / 2**20, "index": index_files / 2**20,
                     "the rest (teachers, keys)": (folder_bytes(home) - folder_bytes(manager.store.root)) / 2**20}
        quota_bytes = manager.settings.max_disk_bytes
        quota = None if quota_bytes is None else quota_bytes / 2**20
    finally:
        chaos.manager.shutdown()
    warm = [p for p in points if p["runs"] >= args.warm]
    slope = ((warm[-1]["rss_mb"] - warm[0]["rss_mb"]) / max(1, warm[-1]["runs"] - warm[0]["runs"]) * 100
             if len(warm) >= 2 else float("nan"))
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"\n{chaos.submitted} runs from {args.identities} identities, {args.actors} actors, {args.workers} workers, "
          f"restart half-way: {seconds:.0f} s on {cpu} ({os.cpu_count()} cores)")
    print(f"actions: {dict(sorted(chaos.counts.items()))}")
    print(f"refusals: {dict(sorted(chaos.refusals.items()))}")
    print(f"end states: {result['states']}")
    for name in ("lost", "stuck", "faults", "mismatched"):
        print(f"{name}: {len(result[name])}" + "".join(f"\n  {line}" for line in result[name][:10]))
    print(f"errors raised by the API: {len(chaos.errors)}" + "".join(f"\n  {e}" for e in chaos.errors[:10]))
    print(f"RSS: {points[0]['rss_mb']:.0f} MB at start, {warm[0]['rss_mb'] if warm else float('nan'):.0f} MB after "
          f"{args.warm} runs, {points[-1]['rss_mb']:.0f} MB at the end: {slope:+.1f} MB per 100 runs after warm-up "
          f"(target ≤ {MEMORY_SLOPE_TARGET_MB:g}); open handles {points[0]['open_handles']} → "
          f"{points[-1]['open_handles']}")
    disk = points[-1]["disk_mb"]
    print(f"disk: {disk:.1f} MB in KDVIZ_HOME" + (f" (quota {quota:g} MB: {'within' if disk <= quota else 'OVER'})"
                                                  if quota else " (no quota set)"))
    print("  " + ", ".join(f"{name} {size:.2f} MB" for name, size in breakdown.items()))
    ok_disk = quota is None or breakdown["runs"] + breakdown["the rest (teachers, keys)"] <= quota  # the quota's own
    ok = ok_disk and not any(result[name] for name in ("lost", "stuck", "faults", "mismatched")) and not chaos.errors
    print("PASS" if ok and slope <= MEMORY_SLOPE_TARGET_MB else "FAIL")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "seconds": seconds,
                                         "cpu": cpu, "counts": chaos.counts, "refusals": chaos.refusals,
                                         "result": result, "errors": chaos.errors, "points": points,
                                         "slope_mb_per_100": slope}, indent=2))
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
