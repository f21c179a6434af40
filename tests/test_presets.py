"""Presets: what each swept preset is, its tuned baseline, and which preset a run's config is."""
from __future__ import annotations

import dataclasses
from pathlib import Path

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
    assert changed and changed <= {"epochs", "learning_rate", "weight_decay", "augment", "student"}
    assert dataclasses.replace(baseline.student, dropout=0.0) == dataclasses.replace(preset.student, dropout=0.0)
    assert (baseline.teacher, baseline.train_subset, baseline.temperature, baseline.alpha) == \
        (preset.teacher, preset.train_subset, preset.temperature, preset.alpha)


def test_preset_of_ignores_seed_and_device_but_nothing_else():
    quick = presets.get_preset("quick")
    assert presets.preset_of(dataclasses.replace(quick, seed=12, device="cpu")) == "quick"
    assert presets.preset_of(dataclasses.replace(quick, epochs=quick.epochs + 1)) is None
    assert presets.preset_of(presets.baseline_config("quick")) == "quick-baseline"
    assert presets.baseline_config("cifar10-lecture") is None  # never swept: no baseline to offer


@pytest.mark.parametrize("name", list(presets.BASELINES))
def test_each_tuned_baseline_is_a_preset_of_its_own_listed_after_its_preset(name):
    """`--preset NAME-baseline`, the pages' preset pickers and `prepare` all read PRESETS: the baseline is one."""
    names = list(presets.PRESETS)
    assert names[names.index(name) + 1] == f"{name}-baseline" == presets.baseline_name(name)
    assert presets.get_preset(f"{name}-baseline") == presets.baseline_config(name)
    assert presets.baseline_of(f"{name}-baseline") == name and presets.baseline_of(name) is None
    assert presets.preset_of(dataclasses.replace(presets.baseline_config(name), seed=7)) == f"{name}-baseline"
    assert presets.baseline_settings(name) in presets.PRESETS[f"{name}-baseline"][0]  # the picker's label says how
    # the baseline's teacher is its preset's: `prepare --preset NAME-baseline` trains that one, and only when asked
    # for when the preset's is
    assert presets.teachers_to_prepare([f"{name}-baseline"]) == [presets.get_preset(name).teacher]
    assert (name in presets.PREPARED_ON_REQUEST) == (f"{name}-baseline" in presets.PREPARED_ON_REQUEST)
    assert presets.baseline_name(f"{name}-baseline") is None  # a baseline has no baseline of its own


def _write_up(name: str) -> str:
    """The sweep's write-up in sweeps/."""
    return (Path(__file__).resolve().parents[1] / "sweeps" / f"SWEEP_{name.upper()}.md").read_text()


@pytest.mark.parametrize("name", list(presets.BASELINES))
def test_each_baseline_preset_is_the_setting_its_write_up_reports(name):
    """The write-up names the chosen settings in the words the app shows, and the one flag that reruns them."""
    text = _write_up(name)
    assert f"--preset {name}-baseline" in text
    assert f"**{presets.baseline_settings(name)}**" in text, presets.baseline_settings(name)
