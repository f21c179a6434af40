"""Named experiment presets; each is a DistillConfig whose fields command-line flags and widgets may override."""
from __future__ import annotations

import dataclasses

from kdviz.core.engine import DistillConfig, TeacherConfig
from kdviz.core.models import ModelSpec

# The default teacher: Hinton 2015 §3's MNIST teacher, 784-1200-1200-10 trained on ±2-pixel jittered images.
DEFAULT_TEACHER = TeacherConfig("mnist5k", ModelSpec("mlp", 1200, 2), epochs=20, batch_size=128,
                                learning_rate=1e-3, augment=2, seed=0)

PRESETS: dict[str, tuple[str, DistillConfig]] = {
    # Chosen by bench/sweep_preset.py --preset lecture; the sweep and its result are in bench/SWEEP_LECTURE.md
    # (seeds 0-9: KD wins 10/10, test errors 94.9 → 59.9 of 1000, 37% fewer).
    "lecture": ("Hinton's MNIST experiment in miniature (mnist5k, offline)",
                DistillConfig(DEFAULT_TEACHER, ModelSpec("mlp", 800, 2), temperature=20.0, alpha=0.5, epochs=40,
                              batch_size=128, learning_rate=1e-3, augment=0, train_subset=1000)),
    # Chosen by bench/sweep_preset.py --preset quick; the sweep and its result are in bench/SWEEP_QUICK.md (seeds 0-9:
    # KD wins 10/10, test errors 43.9 → 20.0 of 359, 54% fewer; well under a second per seed).
    "quick": ("digits 8×8, seconds on a laptop (offline)",
              DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 256, 2), epochs=30, batch_size=64, augment=0),
                            ModelSpec("mlp", 128, 2), temperature=20.0, alpha=1.0, epochs=60, batch_size=64,
                            learning_rate=3e-3, train_subset=100)),
    "cifar10-lecture": ("CIFAR-10's dog, cat, car, ship; ResNet-20 → ResNet-8 (download; meant for a GPU)",
                        DistillConfig(TeacherConfig("cifar10-lecture", ModelSpec("resnet", 16, 3), epochs=30,
                                                    batch_size=128, learning_rate=1e-3, augment=4),
                                      ModelSpec("resnet", 16, 1), temperature=4.0, alpha=0.9, epochs=30,
                                      batch_size=128, learning_rate=1e-3, augment=4)),
}


def get_preset(name: str) -> DistillConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name][1]


def teachers_to_prepare() -> list[TeacherConfig]:
    """The teachers `python -m kdviz prepare` trains: those of the offline presets."""
    from kdviz.core.data import offline_names

    configs = [config.teacher for _, config in PRESETS.values() if config.teacher.dataset in offline_names()]
    return list(dict.fromkeys(configs))


def with_overrides(config: DistillConfig, **changes) -> DistillConfig:
    """Replace fields of config; teacher fields are given as teacher_<name>, e.g. teacher_epochs=5."""
    teacher_changes = {k[len("teacher_"):]: v for k, v in changes.items() if k.startswith("teacher_")}
    other = {k: v for k, v in changes.items() if not k.startswith("teacher_")}
    teacher = dataclasses.replace(config.teacher, **teacher_changes) if teacher_changes else config.teacher
    return dataclasses.replace(config, teacher=teacher, **other)
