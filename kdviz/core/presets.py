"""Named experiment presets; each is a DistillConfig whose fields command-line flags and widgets may override."""
from __future__ import annotations

import dataclasses
from typing import Iterable

from kdviz.core.engine import DistillConfig, TeacherConfig
from kdviz.core.models import ModelSpec

# The default teacher: Hinton 2015 §3's MNIST teacher, 784-1200-1200-10 trained on ±2-pixel jittered images.
DEFAULT_TEACHER = TeacherConfig("mnist5k", ModelSpec("mlp", 1200, 2), epochs=20, batch_size=128,
                                learning_rate=1e-3, augment=2, seed=0)

# Fashion-MNIST's teacher: a small CNN (16-32-64 channels, 24k parameters) on all 54000 training images, 6 epochs, not
# tuned (89.9 % validation, 89.0 % test; 144 s on one thread of the 2-core CI machine).
FASHION_TEACHER = TeacherConfig("fashion-mnist", ModelSpec("cnn", 16, 3), epochs=6, batch_size=128,
                                learning_rate=1e-3, augment=0, seed=0)

PRESETS: dict[str, tuple[str, DistillConfig]] = {
    # Chosen on validation by sweeps/sweep_preset.py --preset lecture (sweeps/SWEEP_LECTURE.md): the experiment (an
    # 800×2 student on 1000 images) where KD cuts validation errors most, then KD's own settings by the KD student's
    # validation accuracy, within a lecture's 15 s a seed.
    "lecture": ("Hinton's MNIST experiment in miniature (mnist5k, offline)",
                DistillConfig(DEFAULT_TEACHER, ModelSpec("mlp", 800, 2), temperature=20.0, alpha=0.9, epochs=30,
                              batch_size=128, learning_rate=2e-3, augment=2, train_subset=1000)),
    # Chosen the same way by sweeps/sweep_preset.py --preset quick (sweeps/SWEEP_QUICK.md).
    "quick": ("digits 8×8, seconds on a laptop (offline)",
              DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 256, 2), epochs=30, batch_size=64, augment=0),
                            ModelSpec("mlp", 128, 2), temperature=20.0, alpha=0.9, epochs=80, batch_size=64,
                            learning_rate=1e-2, augment=2, train_subset=100)),
    # Chosen on validation by sweeps/sweep_preset.py --preset fashion (sweeps/SWEEP_FASHION.md), a small sweep cut to a
    # CPU budget (2 seeds, ≤ 15 epochs): over the student (CNNs of 4 or 8 channels on 2000 or 6000 images; MLPs
    # 784-16-10 and 784-28-10 on 6000 or all 54000 images), T {2, 4, 8}, α {0.5, 0.9, 1}, learning rate {1e-3, 3e-3}
    # × epochs {5, 10, 15}. Not swept: the teacher (cnn 16x3, 6 epochs: a plausible setting), depth, batch size,
    # jitter, weight decay, dropout, KD's settings on all 54000 images. The student has fewer parameters than the
    # teacher (22.3k vs 24.2k) and ~85× fewer multiply-adds; it learns from 6000 images, the teacher from 54000.
    "fashion": ("Fashion-MNIST: a CNN teacher → a small MLP on 6000 images; ~10 s on one CPU thread once the teacher "
                "is trained (~2.5 min; offline with Debian's dataset-fashion-mnist)",
                DistillConfig(FASHION_TEACHER, ModelSpec("mlp", 28, 1), temperature=2.0, alpha=0.5, epochs=15,
                              batch_size=128, learning_rate=3e-3, augment=0, train_subset=6000)),
    # Not swept yet (it needs a network and a GPU): a plausible setting, not a chosen one.
    "cifar10-lecture": ("CIFAR-10's dog, cat, car, ship; ResNet-20 → ResNet-8 (download; meant for a GPU; untuned)",
                        DistillConfig(TeacherConfig("cifar10-lecture", ModelSpec("resnet", 16, 3), epochs=30,
                                                    batch_size=128, learning_rate=1e-3, augment=4),
                                      ModelSpec("resnet", 16, 1), temperature=4.0, alpha=0.9, epochs=30,
                                      batch_size=128, learning_rate=1e-3, augment=4)),
}


# The fair baseline of each swept preset: the hard-label student tuned on its own, on validation, over everything that
# is not distillation (jitter, learning rate, weight decay, dropout, epochs), by sweeps/sweep_preset.py's widening
# search until each knob's best value is interior or at a named end (sweeps/SWEEP_*.md). Each is a preset of its own,
# NAME-baseline (`python -m kdviz distill --preset lecture-baseline`): its hard-label student is the tuned baseline
# (the hard-label student does not depend on T or α; its KD student trains with settings not chosen for it).
BASELINES: dict[str, dict] = {
    "lecture": {"epochs": 60, "learning_rate": 5e-4, "weight_decay": 1.0, "augment": 2},
    "quick": {"epochs": 100, "learning_rate": 3e-3, "weight_decay": 1.0, "augment": 0, "dropout": 0.3},
    "fashion": {"epochs": 25, "learning_rate": 1e-3, "weight_decay": 0.1, "dropout": 0.1},
}
BASELINE_SUFFIX = "-baseline"

_BASELINE_WORDS = {"epochs": "{:g} epochs", "learning_rate": "learning rate {:g}", "weight_decay": "weight decay {:g}",
                   "augment": "jitter ±{:g} pixels", "dropout": "dropout {:g}"}


def baseline_settings(name: str) -> str:
    """The tuned baseline's settings in words ("60 epochs, learning rate 0.0005, …"): what differs from the preset."""
    return ", ".join("no jitter" if (field, value) == ("augment", 0) else
                     _BASELINE_WORDS.get(field, field + " {:g}").format(value)
                     for field, value in BASELINES[name].items())


def _with_baselines(presets: dict[str, tuple[str, DistillConfig]]) -> dict[str, tuple[str, DistillConfig]]:
    """Each swept preset followed by its baseline preset: the preset with BASELINES' settings (dropout is the
    student's)."""
    out = {}
    for name, (description, config) in presets.items():
        out[name] = (description, config)
        if name in BASELINES:
            changes = dict(BASELINES[name])
            student = dataclasses.replace(config.student, dropout=changes.pop("dropout", config.student.dropout))
            out[name + BASELINE_SUFFIX] = (f"the {name} preset's fair baseline: its hard-label student tuned alone "
                                           f"({baseline_settings(name)})",
                                           dataclasses.replace(config, student=student, **changes))
    return out


PRESETS = _with_baselines(PRESETS)


def baseline_name(name: str | None) -> str | None:
    """The baseline preset of a swept preset ("lecture" → "lecture-baseline"); None for any other name."""
    return name + BASELINE_SUFFIX if name in BASELINES else None


def baseline_of(name: str | None) -> str | None:
    """The swept preset a baseline preset belongs to ("lecture-baseline" → "lecture"); None for any other name."""
    if name and name.endswith(BASELINE_SUFFIX) and name[:-len(BASELINE_SUFFIX)] in BASELINES:
        return name[:-len(BASELINE_SUFFIX)]
    return None


def baseline_config(name: str) -> DistillConfig | None:
    """The preset's tuned baseline (the NAME-baseline preset); None for a preset that was never swept."""
    return get_preset(baseline_name(name)) if name in BASELINES else None


def preset_of(config: DistillConfig) -> str | None:
    """The preset a config is, whatever its seed and device (None when any other field was changed)."""
    plain = dataclasses.replace(config, seed=0, device="auto")
    return next((name for name, (_, preset) in PRESETS.items() if plain == preset), None)


def get_preset(name: str) -> DistillConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name][1]


# Presets whose teacher `python -m kdviz prepare` trains only when named: it takes minutes on a CPU (fashion's CNN on
# 54000 images: 2.5 min on one thread of the 2-core CI machine, where bench_live calls prepare), and the
# app trains it, with a progress bar, the first time a page needs it.
PREPARED_ON_REQUEST = frozenset({"fashion", "fashion" + BASELINE_SUFFIX})


def teachers_to_prepare(names: Iterable[str] | None = None) -> list[TeacherConfig]:
    """The teachers `python -m kdviz prepare` trains: by default those of the offline presets but the slow ones
    (PREPARED_ON_REQUEST); given names, exactly those presets' teachers. Offline is asked now: installing Debian's
    dataset-fashion-mnist makes the fashion preset offline."""
    from kdviz.core.data import offline_names

    if names is not None:
        configs = [get_preset(name).teacher for name in names]
    else:
        offline = offline_names()
        configs = [config.teacher for name, (_, config) in PRESETS.items()
                   if config.teacher.dataset in offline and name not in PREPARED_ON_REQUEST]
    return list(dict.fromkeys(configs))


def with_overrides(config: DistillConfig, **changes) -> DistillConfig:
    """Replace fields of config; teacher fields are given as teacher_<name>, e.g. teacher_epochs=5."""
    teacher_changes = {k[len("teacher_"):]: v for k, v in changes.items() if k.startswith("teacher_")}
    other = {k: v for k, v in changes.items() if not k.startswith("teacher_")}
    teacher = dataclasses.replace(config.teacher, **teacher_changes) if teacher_changes else config.teacher
    return dataclasses.replace(config, teacher=teacher, **other)
