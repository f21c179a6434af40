"""The preset sweep's baseline widening: a coordinate search that stops only at an interior optimum or a named end."""
from __future__ import annotations

import dataclasses
import math

import pytest

from sweeps import sweep_preset as sweep


class FakeRunner:
    """Scores a setting by a smooth bump (validation accuracy) instead of training: the search's logic, not torch."""

    def __init__(self, peak: dict, preset=sweep.LECTURE):
        self.preset, self.peak, self.ensured = preset, peak, []

    def score(self, setting) -> float:
        lr, wd = math.log2(setting.learning_rate / self.peak["learning_rate"]), \
            math.log10((setting.weight_decay + 1e-3) / (self.peak["weight_decay"] + 1e-3))
        return 0.95 - 0.01 * (lr ** 2 + wd ** 2 + (setting.augment - self.peak["augment"]) ** 2
                              + 10 * setting.dropout + ((setting.epochs - self.peak["epochs"]) / 30) ** 2)

    def ensure(self, requests):
        self.ensured += [setting for setting, _ in requests]

    def row(self, stage, setting, roles):
        return {"stage": stage, "config": setting.describe(self.preset, "hard"), "setting": dataclasses.asdict(setting),
                "seconds_per_seed": 1.0, "stats": {"hard_val_mean": self.score(setting), "hard_val_std": 0.0,
                                                   "hard_mean": 0.0, "hard_val_errors_mean": 0.0}}


def start():
    return dataclasses.replace(sweep.Setting(width=800, train_subset=1000, augment=2, learning_rate=5e-4,
                                             weight_decay=1.0), epochs=60)


def test_the_search_walks_past_the_old_grid_to_an_interior_optimum_and_names_the_ends_it_stops_at():
    runner = FakeRunner({"learning_rate": 2.5e-4, "weight_decay": 10.0, "augment": 2, "epochs": 70})
    result = sweep.widen_baseline(runner, start(), sweep.LECTURE.widening)
    chosen = result["chosen"]["setting"]
    assert (chosen["learning_rate"], chosen["weight_decay"], chosen["augment"], chosen["dropout"],
            chosen["epochs"]) == (2.5e-4, 10.0, 2, 0.0, 70)
    knobs = result["knobs"]
    for knob in ("learning_rate", "weight_decay", "augment"):  # a worse neighbour on each side
        assert knobs[knob]["before"]["status"] == knobs[knob]["after"]["status"] == "worse", knobs[knob]
    assert knobs["dropout"]["before"] == {"status": "end", "why": sweep.NO_DROPOUT}  # no dropout is the least there is
    assert knobs["dropout"]["after"]["status"] == "worse"
    assert knobs["epochs"]["status"] == "interior" and not result["budget_hit"]
    assert all(s.epochs == sweep.LECTURE.widening.horizon for s in runner.ensured)  # every probe runs to the horizon


def test_an_optimum_at_the_horizon_or_the_probe_budget_is_said_not_hidden():
    runner = FakeRunner({"learning_rate": 5e-4, "weight_decay": 1.0, "augment": 2, "epochs": 500})
    result = sweep.widen_baseline(runner, start(), sweep.LECTURE.widening, max_probes=3)
    assert result["budget_hit"] and result["probes"] == 3
    assert result["knobs"]["epochs"]["status"].startswith("at the horizon")
    assert any(k.get("after", {}).get("status", "").startswith("not probed") for k in result["knobs"].values())
    assert "stopped by --max-probes" in sweep.format_report({**result, "experiment": result["chosen"], "baseline":
                                                            result["chosen"], "report": {}}, sweep.LECTURE)


def test_a_start_off_its_ladder_is_refused():
    with pytest.raises(ValueError, match="weight_decay 0.5"):
        sweep.widen_baseline(FakeRunner({"learning_rate": 5e-4, "weight_decay": 1.0, "augment": 2, "epochs": 60}),
                             dataclasses.replace(start(), weight_decay=0.5), sweep.LECTURE.widening)


@pytest.mark.parametrize("name", list(sweep.PRESETS))
def test_each_sweep_widens_from_its_staged_choice_and_the_shipped_preset_is_expressible(name):
    from kdviz.core.presets import get_preset

    preset = sweep.PRESETS[name]
    kd = sweep.setting_of(get_preset(name), preset)  # raises if the sweep cannot rebuild the shipped preset
    start_setting = dataclasses.replace(kd, **preset.baseline_start)
    for ladder in preset.widening.ladders:
        assert getattr(start_setting, ladder.field) in ladder.values
        assert all(value * start_setting.learning_rate < 1 for value in sweep.WEIGHT_DECAYS.values)


def test_baseline_only_widens_from_the_staged_choice_and_reports_held_out_seeds_only():
    """--baseline-only: KD is the shipped preset; the report is KD vs its twin and vs the baseline on held-out seeds."""
    import json

    class Reporting(FakeRunner):
        seeds = [0, 1]

        def facts(self, setting, role, seed):
            accuracy = self.score(setting) + (0.01 if role == "kd" else 0.0)
            return {"val_accuracy": accuracy, "accuracy": accuracy - 0.001 * seed}

        def row(self, stage, setting, roles, seeds=None):
            row = super().row(stage, setting, roles)
            if stage == "report":  # the report reads both students' statistics over the seeds
                per_seed = [{role: self.facts(setting, role, seed) for role in roles} for seed in self.seeds]
                row.update(per_seed=per_seed, stats=sweep.seed_summary(per_seed, 1000, 800, roles))
            return row

    runner = Reporting({"learning_rate": 5e-4, "weight_decay": 1.0, "augment": 2, "epochs": 60})
    result = sweep.baseline_only(runner)
    assert result["chosen"]["config"] == sweep.setting_of(sweep.get_preset("lecture"), sweep.LECTURE).describe(
        sweep.LECTURE)
    result["report"] = sweep.report(runner, result["chosen"], result["baseline"], [10, 11], sweep_seeds=False)
    assert list(result["report"]) == ["held-out seeds"] and result["report"]["held-out seeds"]["seeds"] == [10, 11]
    assert runner.seeds == [0, 1]  # the sweep's seeds are restored after the report
    text = sweep.format_report(result, sweep.LECTURE)
    assert "held-out seeds 10-11" in text and "widening search" in text
    json.dumps(result)  # what --json writes
