"""Named experiment presets; each is a DistillConfig whose fields command-line flags and widgets may override."""
from __future__ import annotations

import dataclasses

from kdviz.core.engine import DistillConfig, TeacherConfig
from kdviz.core.models import ModelSpec

# The default teacher: Hinton 2015 §3's MNIST teacher, 784-1200-1200-10 trained on ±2-pixel jittered images.
DEFAULT_TEACHER = TeacherConfig("mnist5k", ModelSpec("mlp", 1200, 2), epochs=20, batch_size=128,
                                learning_rate=1e-3, augment=2, seed=0)

PRESETS: dict[str, tuple[str, DistillConfig]] = {
    # Chosen on validation by bench/sweep_preset.py --preset lecture (bench/SWEEP_LECTURE.md): the experiment (an
    # 800×2 student on 1000 images) where KD cuts validation errors most, then KD's own settings by the KD student's
    # validation accuracy, within a lecture's 15 s a seed.
    "lecture": ("Hinton's MNIST experiment in miniature (mnist5k, offline)",
                DistillConfig(DEFAULT_TEACHER, ModelSpec("mlp", 800, 2), temperature=20.0, alpha=0.9, epochs=30,
                              batch_size=128, learning_rate=2e-3, augment=2, train_subset=1000)),
    # Chosen the same way by bench/sweep_preset.py --preset quick (bench/SWEEP_QUICK.md).
    "quick": ("digits 8×8, seconds on a laptop (offline)",
              DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 256, 2), epochs=30, batch_size=64, augment=0),
                            ModelSpec("mlp", 128, 2), temperature=20.0, alpha=0.9, epochs=80, batch_size=64,
                            learning_rate=1e-2, augment=2, train_subset=100)),
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
