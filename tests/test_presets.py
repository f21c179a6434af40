"""Presets: what each swept preset is, its tuned baseline, and which preset a run's config is."""
from __future__ import annotations

import dataclasses

import pytest

from kdviz.core import presets
from kdviz.core.engine import check_config


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_is_a_valid_config(name):
    assert check_config(presets.get_preset(name)) is presets.get_preset(name)


@pytest.mark.parametrize("name", list(presets.BASELINES))
def test_a_tuned_baseline_changes_only_what_is_not_distillation(name):
    """The baseline shares the preset's experiment (teacher, student, data) and differs only in training settings."""
    preset, baseline = presets.get_preset(name), presets.baseline_config(name)
    check_config(baseline)
    changed = {f.name for f in dataclasses.fields(preset) if getattr(preset, f.name) != getattr(baseline, f.name)}
    assert changed and changed <= {"epochs", "learning_rate", "weight_decay", "augment"}
    assert (baseline.teacher, baseline.student.width, baseline.student.depth, baseline.train_subset) == \
        (preset.teacher, preset.student.width, preset.student.depth, preset.train_subset)


def test_preset_of_ignores_seed_and_device_but_nothing_else():
    quick = presets.get_preset("quick")
    assert presets.preset_of(dataclasses.replace(quick, seed=12, device="cpu")) == "quick"
    assert presets.preset_of(dataclasses.replace(quick, epochs=quick.epochs + 1)) is None
    assert presets.preset_of(presets.baseline_config("quick")) is None
    assert presets.baseline_config("cifar10-lecture") is None  # never swept: no baseline to offer
