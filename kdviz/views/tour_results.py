"""What backs the tour's later steps: a run of each step's experiment on this server (the newest finished one with
the tour's settings, else one the tour starts in the background), and what that run says about the lecture's claim.

No number in the tour's experiment steps is typed in: each comes from a run in the run manager, named on the page.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass

# The step views whose result is a run, in the order the tour starts them (quick ones first: a hall reaches step 7
# within minutes; missing-class, the slowest, last).
KEYS = ("live-run", "ensemble", "capacity", "gradient-variance", "compression", "missing-class")


def tour_configs() -> dict:
    """{key: config}: the quick preset for the live run (seconds), each experiment's offline default otherwise."""
    from kdviz import experiments
    from kdviz.core.presets import get_preset

    configs = {"live-run": get_preset("quick")}
    for key in KEYS[1:]:
        configs[key] = experiments.experiment(key).default_config()
    return configs


def record_of(config) -> dict:
    """What a run of this config records (config.json's "config"), as JSON reads it back: tuples become lists."""
    import dataclasses

    from kdviz import experiments

    record = experiments.to_record(config) if experiments.name_of(config) else dataclasses.asdict(config)
    return _as_json(record)


def _as_json(record: dict) -> dict:
    """A live run keeps its record as built (tuples); one read from disk has lists: compare them as JSON."""
    return json.loads(json.dumps(record))


LIVE = ("queued", "running", "paused")


def _rank(run) -> int:
    """Which run a step shows: a completed one, else a live one (its progress), else one that ended otherwise (its
    message says why: failed, stopped, interrupted by a restart)."""
    return 0 if run.state == "completed" else 1 if run.state in LIVE else 2


def find_runs(runs, configs: dict) -> dict:
    """{key: run or None}: per config, the best-ranked run with exactly that config (anyone's: a run is public to
    view), the newest of that rank; None when this server has none. runs: newest first."""
    wanted = {key: record_of(config) for key, config in configs.items()}
    found: dict = {key: None for key in configs}
    for run in runs:
        better = [key for key in wanted if found[key] is None or _rank(run) < _rank(found[key])]
        if not better:
            continue
        record = _as_json(run.config)
        for key in better:
            if record == wanted[key]:
                found[key] = run
    return found


_starting = threading.Lock()  # two browsers opening the tour at once must not both start the same runs


def start_missing(manager, identity: str, configs: dict, tried: set) -> list[str]:
    """Queue a run of every config that has neither a finished nor a live run on this server, under identity (the
    tour's own, so that a hall of browsers starts each run once and nobody's budget pays for it). tried: the keys
    this process already started (the caller keeps it for the process): a run that failed or was stopped is not
    started again and again; after a restart the tour tries once more. Returns the ids; a config the server's
    budget refuses is skipped (its step says so)."""
    started = []
    with _starting:
        found = find_runs(manager.list_runs(), configs)
        for key, config in configs.items():
            run = found[key]
            if key in tried or (run is not None and _rank(run) < 2):
                continue
            tried.add(key)
            try:
                started.append(manager.submit(config, identity, tags={"tour": key}))
            except ValueError:
                continue
    return started


@dataclass(frozen=True)
class Claim:
    """What a finished run says about the step's claim: holds (True / False; None when it cannot say) and why."""

    holds: bool | None
    sentence: str


def claim(key: str, run) -> Claim | None:
    """The run's verdict on its step's claim, in the experiment's own words (its module's verdict); None while the
    run has not completed."""
    if run is None or run.state != "completed" or not run.summary:
        return None
    if key == "live-run":
        from kdviz.views.run_view import verdict

        won, sentence = verdict(run.summary)
        return Claim(won, sentence)
    from kdviz import experiments

    module = experiments.experiment(key)
    result = module.report(experiments.from_record(run.config), [{"seed": run.summary.get("seed"), **run.summary}])
    if key == "capacity":
        best = module.best_on_validation(result["rows"])
        return Claim(best["val_gain"] > 0, module.verdict(result["rows"]))
    if key == "gradient-variance":
        rows = result["summary"]
        return Claim(all(row["soft_lower"] == row["n_seeds"] for row in rows), module.verdict(rows))
    if key == "missing-class":
        return Claim(bool(result["summary"]["target_met"]), module.verdict(result))
    if key == "ensemble":
        return Claim(result["summary"].get("ensemble_beats_single_val", 0) > 0, result["verdict"])
    if key == "compression":
        savings = result.get("savings") or {}
        return Claim(bool(savings) and savings.get("params", 0) > 1, module.verdict(result))
    raise ValueError(f"unknown tour result {key!r}")


def describe(key: str, run) -> str:
    """Which run it is, in a few words for the step's caption."""
    import time

    what = "the quick preset's distillation" if key == "live-run" else f"the {key} experiment's default settings"
    when = f", finished {time.strftime('%H:%M', time.localtime(run.finished_at))}" if run.finished_at else ""
    return f"run `{run.id}` on this server ({what}{when})"
