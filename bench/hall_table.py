"""The hall's figures table (docs/HALL.md) from bench/hall_load.py's JSON files, so that no number is copied by hand.

    python bench/hall_table.py /tmp/hall/*.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ("students", "followers", "viewers", "lecture")


def row(report: dict) -> str:
    """One scenario at one N; "more": the run's slowdown (÷ alone), redraws a viewer got per second (asked: 0.5 with
    fragment redraws, 1 with browser-drawn runs), how long after its end a viewer's page showed it, and how long a
    lecturer's change took to show on a follower's page."""
    follow = report.get("viewers") or {}
    extra = []
    if report.get("run_slowdown"):
        extra.append(f"run slowdown {report['run_slowdown']:.2f}")
    if follow.get("pushes_per_viewer_per_s") is not None:
        extra.append(f"redraws {follow['pushes_per_viewer_per_s']:.2f}/viewer/s")
    if (follow.get("end_seen_after_s") or {}).get("max") is not None:
        extra.append(f"end shown ≤ {follow['end_seen_after_s']['max']:.1f} s after")
    lag = report.get("follow_lag_s") or {}
    if lag.get("p50") is not None:
        extra.append(f"follow lag p50/p95 {lag['p50']:.2f}/{lag['p95']:.2f} s")
    name = report["scenario"]
    if report.get("replicas"):  # a hall of replicas (kdviz.hall): on core 0, or on both cores beside the generator
        name += f", {report['replicas']} replica{'s' if report['replicas'] > 1 else ''}" + (
            "" if report.get("pinned", True) else ", 2 cores")
    if lag.get("p50") is None and report["scenario"] == "followers" and not report.get("by_kind", {}).get("rerun"):
        name += ", idle"  # the lecturer never moved (--pace beyond the phase)
    return (f"| {name} | {report['users']} | {report['p50_ms']:.0f} / {report['p95_ms']:.0f} | "
            f"{report['errors']} / {report['disconnects']} | {report['server_cpu_s_per_s']:.2f} | "
            f"{report['server_rss_mb']:.0f} | {report['generator_cpu_s_per_s']:.3f} | {'; '.join(extra)} |")


def main(paths: list[str]) -> int:
    reports = [json.loads(Path(path).read_text()) for path in paths]
    reports.sort(key=lambda r: (ORDER.index(r["scenario"]) if r["scenario"] in ORDER else 9, r.get("replicas", 0),
                                r["users"]))
    print("| scenario | users | p50 / p95 ms | errors / disconnects | server CPU s/s | server RSS MB | "
          "generator CPU s/s | more |")
    print("|---|--:|--:|--:|--:|--:|--:|---|")
    for report in reports:
        print(row(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
