"""Experiments built on the core (why it works, ensembles, compression & energy): event streams like the engine.

Each experiment is a module with the same contract (kdviz.experiments.gradient_variance is the reference):
NAME; a frozen config dataclass with a `distill` field (its teacher, student, data and seed); default_config();
check(config); run(config, teacher, should_stop) → events ending with Finished(status, summary); budget_configs(config)
(the trainings it does, for the server's budget; optionally budget_teachers and budget_measurements, see
check_budget); its config's command-line flags declared on its fields (kdviz.core.flags; config_from_flags below
builds the config from them, or the module's own config_from_flags where a flag means more than its field);
report(config, runs) (the JSON) and format_text(report). The app's run manager, the CLI and the tests all go through
this registry.
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
    "ensemble": ("kdviz.experiments.ensemble",
                 "an ensemble of N teachers distilled into one student, against the best single teacher's student"),
    "compression": ("kdviz.experiments.compression",
                    "what a smaller student saves: parameters, FLOPs, latency and energy per prediction"),
    "capacity-gap": ("kdviz.experiments.capacity_gap",
                     "one small student taught by teachers of growing size and an early-stopped one: does the best "
                     "teacher teach best? (Cho & Hariharan 2019)"),
    "label-smoothing": ("kdviz.experiments.label_smoothing",
                        "a teacher trained with label smoothing ε: flatter dark knowledge, a worse student? "
                        "(Müller et al. 2019)"),
    "patient-consistent": ("kdviz.experiments.patient_consistent",
                           "with jitter, a teacher labelling the student's own view vs logits cached once, at growing "
                           "epochs (Beyer et al. 2022)"),
}


def experiment(name: str) -> types.ModuleType:
    """The experiment's module; ValueError naming the known ones for an unknown name."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name][0])


def config_from_flags(module: types.ModuleType, given: dict, distill_config=None, device: str | None = None):
    """An experiment's config from the command line: its default config, with distill_config (the preset and its
    flags; None: the experiment's own) and the flags of its fields the user gave ({field: value}, from
    kdviz.core.flags.given_flags) on top, checked; device: --device if given. ValueError naming a bad value."""
    own = getattr(module, "config_from_flags", None)
    if own is not None:
        return own(given, distill_config, device)
    base = module.default_config()
    return module.check(dataclasses.replace(base, distill=distill_config or base.distill, **given))


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
    it trains itself: [(TeacherConfig, images each labels afterwards)], each counted unless it is cached already; and,
    if the module has budget_measurements(config), what it measures beyond training: [(what, RunCost)] whose memory is
    the process's whole peak meanwhile (gradient-variance's per-example gradients)."""
    from kdviz.core.budget import (OverBudget, check_budget as check_one, dataset_facts, format_bytes, format_flops,
                                   model_cost, teacher_cost)
    from kdviz.core.teachers import is_cached

    module = experiment(name_of(config))
    module.check(config)
    total, first = 0.0, None
    for index, part in enumerate(module.budget_configs(config)):
        cost = check_one(part, budget, teacher_cached if index == 0 else True)
        first = first or cost
        total += cost.work_flops
    facts = dataset_facts(config.distill.dataset)
    seen, held = {config.distill.teacher}, 0
    for teacher, label_images in getattr(module, "budget_teachers", lambda _: [])(config):
        if teacher in seen:
            continue
        seen.add(teacher)
        held += 4 * model_cost(teacher.model, facts.input_shape, facts.num_classes).params  # all held at once
        cost = teacher_cost(teacher, label_images)
        if is_cached(teacher, config.distill.device):
            cost = dataclasses.replace(cost, memory_bytes=0, work_flops=0.0, steps=0)
        exceeded = [limit for limit in budget.exceeded(cost) if limit != "work"]
        if exceeded:
            raise OverBudget(f"The teacher with seed {teacher.seed} and width {teacher.model.width:,} needs "
                             f"{cost.describe()} to train; that is over this server's {' and '.join(exceeded)} "
                             "limit. What would fit: smaller or fewer teachers.", exceeded[0], cost, budget)
        total += cost.work_flops
    for what, cost in getattr(module, "budget_measurements", lambda _: [])(config):
        if budget.max_memory_bytes is not None and cost.memory_bytes > budget.max_memory_bytes:
            raise OverBudget(f"{what} needs ≈{format_bytes(cost.memory_bytes)} of memory; this server allows "
                             f"{format_bytes(budget.max_memory_bytes)} per run. What would fit: a smaller student "
                             "(its memory grows with the student's parameters).", "memory", cost, budget)
        total += cost.work_flops
    if held and first is not None and budget.max_memory_bytes is not None \
            and first.memory_bytes + held > budget.max_memory_bytes:
        cost = dataclasses.replace(first, memory_bytes=first.memory_bytes + held)
        raise OverBudget(f"Distilling from all {len(seen)} teachers at once needs ≈{format_bytes(cost.memory_bytes)} "
                         f"of memory; this server allows {format_bytes(budget.max_memory_bytes)} per run. What would "
                         "fit: smaller or fewer teachers.", "memory", cost, budget)
    if budget.max_work_flops is not None and total > budget.max_work_flops:
        cost = check_one(config.distill, dataclasses.replace(budget, max_work_flops=None), teacher_cached)
        raise OverBudget(f"This experiment needs {format_flops(total)} of training in all; this server allows "
                         f"{format_flops(budget.max_work_flops)} per run. What would fit: fewer points or smaller "
                         "settings.", "work", cost, budget)


def experiment_cost(config, teacher_cached: bool | None = None) -> "RunCost":  # noqa: F821 — kdviz.core.budget.RunCost, imported lazily
    """The whole experiment's estimate, as check_budget counts it: memory, the largest peak of its parts (a training,
    a further teacher's, a measurement; the first distillation with every further teacher held); work, their sum;
    steps, the most of one training (the steps limit is per training). For reports and for the memory test."""
    from kdviz.core.budget import RunCost, dataset_facts, model_cost, run_cost, teacher_cost
    from kdviz.core.teachers import is_cached

    module = experiment(name_of(config))
    module.check(config)
    if teacher_cached is None:
        teacher_cached = is_cached(config.distill.teacher, config.distill.device)
    parts = [run_cost(part, teacher_cached if index == 0 else True)
             for index, part in enumerate(module.budget_configs(config))]
    facts = dataset_facts(config.distill.dataset)
    seen, held = {config.distill.teacher}, 0
    for teacher, label_images in getattr(module, "budget_teachers", lambda _: [])(config):
        if teacher not in seen:
            seen.add(teacher)
            held += 4 * model_cost(teacher.model, facts.input_shape, facts.num_classes).params
            if not is_cached(teacher, config.distill.device):
                parts.append(teacher_cost(teacher, label_images))
    if held and module.budget_configs(config):
        parts[0] = dataclasses.replace(parts[0], memory_bytes=parts[0].memory_bytes + held)
    parts += [cost for _, cost in getattr(module, "budget_measurements", lambda _: [])(config)]
    return RunCost(max((p.memory_bytes for p in parts), default=0), sum(p.work_flops for p in parts),
                   max((p.steps for p in parts), default=0), bool(teacher_cached))
