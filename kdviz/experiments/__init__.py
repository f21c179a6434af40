"""Experiments built on the core (why it works, ensembles, compression & energy): event streams like the engine.

Each experiment is a module with the same contract (kdviz.experiments.gradient_variance is the reference):
NAME; a frozen config dataclass with a `distill` field (its teacher, student, data and seed); default_config();
check(config); run(config, teacher, should_stop) → events ending with Finished(status, summary); budget_configs(config)
(the trainings it does, for the server's budget); add_arguments / config_from_args (the CLI); report(config, runs)
(the JSON) and format_text(report). The app's run manager, the CLI and the tests all go through this registry.
"""
from __future__ import annotations

import dataclasses
import importlib
import types

EXPERIMENTS = {  # name → (module, one line for `python -m kdviz list` and the page)
    "gradient-variance": ("kdviz.experiments.gradient_variance",
                          "do soft targets give the student lower-variance gradients than hard labels?"),
    "missing-class": ("kdviz.experiments.missing_class",
                      "a digit the student never sees, learnt from the teacher's soft labels alone (Hinton §3)"),
    "capacity": ("kdviz.experiments.capacity",
                 "hard-label and KD students against student size and against transfer-set size"),
}


def experiment(name: str) -> types.ModuleType:
    """The experiment's module; ValueError naming the known ones for an unknown name."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name][0])


def name_of(config) -> str | None:
    """The experiment a config belongs to (None for a plain DistillConfig)."""
    for name, (module, _) in EXPERIMENTS.items():
        if type(config).__module__ == module:
            return name
    return None


def to_record(config) -> dict:
    """What a run records (config.json) for an experiment: its name beside the config's fields."""
    return {"experiment": name_of(config), **dataclasses.asdict(config)}


def from_record(record: dict):
    """Rebuild an experiment's config from to_record's dict (lists back to tuples, the nested DistillConfig)."""
    from kdviz.core.engine import config_from_dict

    module = experiment(record.get("experiment", ""))
    cls = type(module.default_config())
    values = {}
    for field in dataclasses.fields(cls):
        if field.name not in record:
            continue
        value = record[field.name]
        values[field.name] = config_from_dict(value) if field.name == "distill" else \
            tuple(value) if isinstance(value, list) else value
    return module.check(cls(**values))


def check_budget(config, budget, teacher_cached: bool | None = None) -> None:
    """Every training the experiment does must fit the server's per-run budget, and so must their sum of work.

    The trainings are the module's budget_configs(config) (distillations: the first may have to train the base
    teacher first, the others find it cached) and, if the module has budget_teachers(config), the further teachers
    it trains itself: [(TeacherConfig, images each labels afterwards)], each counted unless it is cached already."""
    from kdviz.core.budget import OverBudget, check_budget as check_one, format_flops, teacher_cost
    from kdviz.core.teachers import is_cached

    module = experiment(name_of(config))
    module.check(config)
    total = 0.0
    for index, part in enumerate(module.budget_configs(config)):
        total += check_one(part, budget, teacher_cached if index == 0 else True).work_flops
    seen = {config.distill.teacher}
    for number, (teacher, label_images) in enumerate(getattr(module, "budget_teachers", lambda _: [])(config), 2):
        if teacher in seen:
            continue
        seen.add(teacher)
        cost = teacher_cost(teacher, label_images)
        if is_cached(teacher, config.distill.device):
            cost = dataclasses.replace(cost, memory_bytes=0, work_flops=0.0, steps=0)
        exceeded = [limit for limit in budget.exceeded(cost) if limit != "work"]
        if exceeded:
            raise OverBudget(f"Teacher {number} of this experiment needs {cost.describe()} to train; this server "
                             f"is over its {' and '.join(exceeded)} limit with it. What would fit: smaller or "
                             "fewer teachers.", exceeded[0], cost, budget)
        total += cost.work_flops
    if budget.max_work_flops is not None and total > budget.max_work_flops:
        cost = check_one(config.distill, dataclasses.replace(budget, max_work_flops=None), teacher_cached)
        raise OverBudget(f"This experiment needs {format_flops(total)} of training in all; this server allows "
                         f"{format_flops(budget.max_work_flops)} per run. What would fit: fewer points or smaller "
                         "settings.", "work", cost, budget)
