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
# is not distillation (jitter, learning rate, weight decay × dropout, epochs). Its numbers do not depend on T or α, so
# `python -m kdviz distill --preset NAME` with these overrides as flags reproduces its hard-label column.
BASELINES: dict[str, dict] = {
    "lecture": {"epochs": 60, "learning_rate": 5e-4, "weight_decay": 1.0, "augment": 2},
    "quick": {"epochs": 60, "learning_rate": 3e-3, "weight_decay": 1.0, "augment": 0},
    # tuned over learning rate × epochs only, KD's own grid there (SWEEP_FASHION.md: no weight decay, no jitter)
    "fashion": {"epochs": 15, "learning_rate": 1e-3},
}


def baseline_config(name: str) -> DistillConfig | None:
    """The preset with its tuned baseline's settings (None for a preset that was never swept)."""
    return with_overrides(get_preset(name), **BASELINES[name]) if name in BASELINES else None


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
PREPARED_ON_REQUEST = frozenset({"fashion"})


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
