"""The runs behind the tour's later steps: found on this server (the newest finished one with the tour's settings),
started once when missing however many browsers open the tour, and read for each step's verdict on its claim."""
from __future__ import annotations

import dataclasses
import threading

import pytest

from conftest import wait_for_run
from kdviz.core.budget import UNLIMITED, Budget
from kdviz.views import tour_results
from tests.test_capacity import CONFIG as CAPACITY
from tests.test_compression import CONFIG as COMPRESSION
from tests.test_ensemble import CONFIG as ENSEMBLE
from tests.test_gradient_variance import TINY as GRADIENT_DISTILL
from tests.test_missing_class import TINY as MISSING_CLASS

TOUR = "a" * 32  # the tour's identity in these tests (a browser-like secret)


@pytest.fixture
def configs():
    from kdviz.experiments import gradient_variance

    return {"live-run": dataclasses.replace(CAPACITY.distill, epochs=1), "ensemble": ENSEMBLE,
            "capacity": CAPACITY, "compression": COMPRESSION, "missing-class": MISSING_CLASS,
            "gradient-variance": gradient_variance.GradientVarianceConfig(GRADIENT_DISTILL, epochs=(0, 1),
                                                                          temperatures=(1.0, 4.0))}


def test_the_tours_settings_are_each_experiments_default_and_the_quick_preset():
    from kdviz import experiments
    from kdviz.core.presets import get_preset

    configs = tour_results.tour_configs()
    assert list(configs) == list(tour_results.KEYS) and configs["live-run"] == get_preset("quick")
    for key in tour_results.KEYS[1:]:
        assert configs[key] == experiments.experiment(key).default_config()


def test_missing_runs_start_once_and_are_then_found(make_manager, configs):
    manager = make_manager(workers=1, budget=UNLIMITED)
    assert tour_results.find_runs(manager.list_runs(), configs) == dict.fromkeys(configs)
    started: list[list[str]] = []
    tried: set = set()
    threads = [threading.Thread(target=lambda: started.append(tour_results.start_missing(manager, TOUR, configs,
                                                                                         tried)))
               for _ in range(4)]  # four browsers open the tour at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(ids) for ids in started) == [0, 0, 0, len(configs)]
    found = tour_results.find_runs(manager.list_runs(), configs)
    assert all(run is not None and (run.live or run.state == "completed") for run in found.values())
    assert {run.tags["tour"] for run in found.values()} == set(configs)
    for run in found.values():
        wait_for_run(manager, run.id, timeout=300)
    done = tour_results.find_runs(manager.list_runs(), configs)
    assert all(run.state == "completed" for run in done.values())
    assert tour_results.start_missing(manager, TOUR, configs, set()) == []  # nothing is started twice
    for key, run in done.items():
        claim = tour_results.claim(key, run)
        assert isinstance(claim.holds, bool) and len(claim.sentence) > 20, (key, claim)
        assert run.id in tour_results.describe(key, run)


def test_only_runs_with_exactly_the_tours_settings_count_and_finished_ones_win(make_manager, configs):
    manager = make_manager(workers=1, budget=UNLIMITED)
    live_run = configs["live-run"]
    other_seed = manager.submit(dataclasses.replace(live_run, seed=1), "b" * 32)
    wait_for_run(manager, other_seed)
    assert tour_results.find_runs(manager.list_runs(), {"live-run": live_run})["live-run"] is None
    finished = manager.submit(live_run, "c" * 32)  # anyone's finished run is public to view
    wait_for_run(manager, finished)
    waiting = manager.submit(live_run, "d" * 32)  # a live run of the same settings must not hide the finished one
    found = tour_results.find_runs(manager.list_runs(), {"live-run": live_run})["live-run"]
    assert found.id == finished and found.state == "completed"
    wait_for_run(manager, waiting)


def test_a_config_over_the_servers_budget_is_skipped_not_fatal(make_manager, configs):
    manager = make_manager(workers=1, budget=Budget(None, 1e6, None, None))  # 1 MFLOP of training: nothing fits
    assert tour_results.start_missing(manager, TOUR, configs, set()) == []
    assert manager.list_runs() == []


def test_a_run_that_was_stopped_is_shown_and_started_again_only_after_a_restart(make_manager, configs):
    manager = make_manager(workers=1, budget=UNLIMITED)
    live_run = {"live-run": dataclasses.replace(configs["live-run"], epochs=200)}
    tried: set = set()
    (run_id,) = tour_results.start_missing(manager, TOUR, live_run, tried)
    manager.cancel(run_id, TOUR)
    stopped = wait_for_run(manager, run_id)
    assert stopped.state == "cancelled"
    assert tour_results.find_runs(manager.list_runs(), live_run)["live-run"].id == run_id  # its message says why
    assert tour_results.start_missing(manager, TOUR, live_run, tried) == []  # not again and again in one process
    assert tour_results.claim("live-run", stopped) is None
    (again,) = tour_results.start_missing(manager, TOUR, live_run, set())  # a restarted server tries once more
    manager.cancel(again, TOUR)
    wait_for_run(manager, again)


def test_no_verdict_before_a_run_completes():
    import types

    running = types.SimpleNamespace(id="x", state="running", summary=None, finished_at=None)
    assert tour_results.claim("capacity", running) is None and tour_results.claim("live-run", None) is None
