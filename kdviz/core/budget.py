"""A per-run compute budget for a shared lecture server: estimate a run's cost before it is queued and refuse one
that is over the server's limits, saying which limit and what would fit.

A run's cost (run_cost) is an estimate from the config alone, without data or weights: parameters and FLOPs are
counted on the meta device (nothing is allocated), dataset sizes come from a table of facts. It is meant to tell a
2-core lecture server's reasonable runs from the ones that would take it down (a 1-billion-parameter student, half a
million optimizer steps), not to predict a run's memory to the megabyte.

The limits a server applies (a Budget) are the operator's settings, read into kdviz.runs.settings.ServerSettings:
that module's docstring lists them.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from kdviz.core.data import check_dataset_name
from kdviz.core.engine import DistillConfig, TeacherConfig, check_config, check_teacher_config, student_roles
from kdviz.core.models import ModelSpec, check_spec, _REGISTRY as _MODELS

MB = 2**20
TFLOP = 1e12
EVAL_CHUNK = 1024  # predict_logits evaluates in chunks of this many images
BACKWARD_FACTOR = 3  # a training step costs about 3 forward passes (the backward pass is about twice the forward)
# What a run's resident set holds beyond its tensors: glibc keeps freed blocks below its mmap threshold (fixed at
# 32 MB in every kdviz process: engine.fix_allocator) in its heap, fragmented differently from one process to the
# next. bench/memory_peak.py measured the Fashion-MNIST CNN cases up to 34 MB over an estimate with 32 MB here
# (missing-class: 309 and 396 MB in two processes), on AMD EPYC (AVX2): 80 MB covers them.
ALLOCATOR_SLACK = 80 * MB


# ---- dataset facts ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetFacts:
    """What a cost estimate needs of a dataset, known without loading (or downloading) it."""

    input_shape: tuple[int, int, int]
    num_classes: int
    train: int
    val: int
    test: int


# The fixed splits of data.py (tests/test_budget.py checks the offline ones against the loaded data).
DATASET_FACTS: dict[str, DatasetFacts] = {
    "mnist5k": DatasetFacts((1, 28, 28), 10, 3200, 800, 1000),
    "digits": DatasetFacts((1, 8, 8), 10, 1151, 287, 359),
    "mnist": DatasetFacts((1, 28, 28), 10, 54000, 6000, 10000),
    "fashion-mnist": DatasetFacts((1, 28, 28), 10, 54000, 6000, 10000),
    "cifar10": DatasetFacts((3, 32, 32), 10, 45000, 5000, 10000),
    "cifar10-lecture": DatasetFacts((3, 32, 32), 4, 18000, 2000, 4000),
}


def dataset_facts(name: str) -> DatasetFacts:
    """The table's facts; a dataset missing from it is loaded (what its run would do anyway)."""
    check_dataset_name(name)
    if name in DATASET_FACTS:
        return DATASET_FACTS[name]
    from kdviz.core.data import load_dataset

    data = load_dataset(name)
    return DatasetFacts(data.input_shape, data.num_classes, len(data.train_y), len(data.val_y), len(data.test_y))


# ---- one model -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelCost:
    """A model's size and the cost of one forward pass, per image."""

    params: int
    flops_per_sample: float  # forward FLOPs (a multiply-add is 2)
    activation_bytes_per_sample: int  # every leaf module's output, float32: what backward keeps alive
    largest_activation_bytes_per_sample: int = 0  # the biggest single output: what inference holds at once
    largest_parameter: int = 0  # elements of the biggest parameter tensor (per-example gradients convert one at a time)


class _NoModuleTracking:
    """Stands in for FlopCounterMode's ModuleTracker, which installs *global* module hooks: they would also fire in
    the runs other threads are training meanwhile. Only the total is read here, so no per-module attribution."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def model_cost(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int, batch_size: int = 1) -> ModelCost:
    """Parameters, forward FLOPs and activation bytes per image of spec, from a forward pass on the meta device
    (no memory, no weights). Cached: a form asks again on every rerun."""
    check_spec(spec)
    return _model_cost(spec, tuple(int(s) for s in input_shape), int(num_classes), max(1, int(batch_size)))


@functools.lru_cache(maxsize=4096)
def _model_cost(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int, batch_size: int) -> ModelCost:
    with torch.device("meta"):
        model = _MODELS[spec.arch].builder(spec, input_shape, num_classes)
        x = torch.empty((batch_size, *input_shape))
    outputs: list[int] = []

    def record(module: nn.Module, inputs, output) -> None:
        if isinstance(output, torch.Tensor) and not any(output is i for i in inputs):  # an identity holds nothing
            outputs.append(output.numel())

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        flops = forward_flops(model, x)
    finally:
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in model.parameters())
    return ModelCost(params, flops / batch_size, 4 * sum(outputs) // batch_size,
                     4 * max(outputs, default=0) // batch_size, max((p.numel() for p in model.parameters()), default=0))


def forward_flops(model: nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward pass of model on x (the whole batch), counted by torch.utils.flop_counter's
    FlopCounterMode: a multiply-add is 2 FLOPs, so a Linear(i, o) costs 2·i·o per row (biases, activations and
    normalisation are not counted). The model is put in eval mode (BatchNorm takes a batch of one, dropout is the
    identity). Works on the meta device, where nothing is allocated: torchvision's ResNet-152 costs no memory."""
    from torch.utils.flop_counter import FlopCounterMode  # imports torch._dynamo (≈1.5 s): only when first needed

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    if hasattr(counter, "mod_tracker"):
        counter.mod_tracker = _NoModuleTracking()
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return float(counter.get_total_flops())


# ---- one run ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunCost:
    """The estimated cost of a distillation run (teacher included when it must be trained first)."""

    memory_bytes: int  # peak: the data, plus the larger of the teacher's training and the distillation
    work_flops: float  # training and evaluation FLOPs of the whole run
    steps: int  # the distillation's optimizer steps
    teacher_cached: bool = True
    disk_bytes: int = 0  # what the run keeps on disk when it ends: students.pt and its event log (estimate_disk)

    def describe(self) -> str:
        return f"≈{format_bytes(self.memory_bytes)} memory, {format_flops(self.work_flops)} of training, " \
               f"{self.steps:,} steps"


def train_images(config: DistillConfig) -> int:
    """How many images the students train on: the subset, else the dataset's training part."""
    train = dataset_facts(config.dataset).train
    return min(config.train_subset, train) if config.train_subset else train


def data_bytes(config: DistillConfig) -> int:
    """The dataset in float32 (+ int64 labels) as a run holds it, and the students' subset cut from it."""
    facts = dataset_facts(config.dataset)
    image_bytes = 4 * math.prod(facts.input_shape)
    subset = train_images(config) * (image_bytes + 8) if config.train_subset else 0
    return (facts.train + facts.val + facts.test) * (image_bytes + 8) + subset


def run_cost(config: DistillConfig, teacher_cached: bool | None = None) -> RunCost:
    """Estimate a run's peak memory, work and steps from its config alone (the comments below say what each
    counts). teacher_cached None: ask the teacher cache whether the teacher must be trained first."""
    check_config(config)
    if teacher_cached is None:
        from kdviz.core.teachers import is_cached

        teacher_cached = is_cached(config.teacher, config.device)
    facts = dataset_facts(config.dataset)
    shape, classes = facts.input_shape, facts.num_classes
    student = model_cost(config.student, shape, classes)
    teacher = model_cost(config.teacher.model, shape, classes)
    n = train_images(config)
    n_eval = facts.val + facts.test

    # Memory: the dataset in float32 (+ int64 labels), the students' subset cut from it, then the larger of the two
    # phases, and the allocator's slack. Distilling: per student 16 bytes a parameter (weights, gradients, AdamW's two
    # moments) and its activations ×3 (kept for backward) at the batch size, plus 4 bytes a parameter for the initial
    # weights both are copied from and 8 for AdamW's temporaries while one steps; the teacher's weights and one
    # inference at a time.
    data = data_bytes(config)
    eval_batch = min(EVAL_CHUNK, max(n, n_eval))
    count = len(student_roles(config))  # two, or three with a mistake (kdviz.core.kd.MISTAKES)
    students = count * (16 * student.params + BACKWARD_FACTOR * student.activation_bytes_per_sample * config.batch_size)
    students += (4 + 8) * student.params
    students_eval = count * student.largest_activation_bytes_per_sample * eval_batch
    per_batch = config.augment and config.consistent_teacher  # the teacher labels each batch's jittered view
    teacher_batch = config.batch_size if per_batch else eval_batch  # logits per batch, or once in chunks
    teacher_inference = 4 * teacher.params + 2 * teacher.largest_activation_bytes_per_sample * teacher_batch
    logits = 0 if per_batch else 4 * n * classes
    distilling = students + max(students_eval, teacher_inference) + logits
    teaching = 0 if teacher_cached else _teacher_training(config.teacher)[0]
    memory = data + max(distilling, teaching) + ALLOCATOR_SLACK  # the teacher's optimizer is gone before the students

    # Work: both students train and are evaluated every epoch (and before the first); the teacher labels the
    # training images once, or every epoch when they are jittered; an uncached teacher trains first.
    work = count * BACKWARD_FACTOR * student.flops_per_sample * config.epochs * n
    work += count * student.flops_per_sample * (n_eval + config.probe_size) * (config.epochs + 1)
    work += teacher.flops_per_sample * (n * (config.epochs if per_batch else 1) + n_eval)
    if config.mistake == "teacher-train-mode":  # the mistaken student's teacher labels every batch, in train mode
        work += teacher.flops_per_sample * n * config.epochs
    if not teacher_cached:
        work += _teacher_training(config.teacher)[1]
    steps = config.epochs * math.ceil(n / config.batch_size)
    teacher_steps = 0 if teacher_cached else config.teacher.epochs * math.ceil(facts.train / config.teacher.batch_size)
    disk = estimate_disk(student.params, steps + teacher_steps, config.epochs, config.probe_size, classes, count)
    return RunCost(int(memory), float(work), int(steps), bool(teacher_cached), disk)


STEP_LINE_BYTES = 160  # one StepLosses line of events.jsonl (four losses and a time, as JSON)
EPOCH_LINE_BYTES = 600  # an epoch's EpochEnd line (test and validation accuracies of three models)
LOGIT_BYTES = 21  # one probe logit in a Snapshot line (a float as JSON, and its separator)


def estimate_disk(student_params: int, steps: int, epochs: int, probe_size: int, classes: int, students: int = 2
                  ) -> int:
    """Bytes a distillation keeps: students.pt (the students' float32 weights, plus torch.save's framing) and its
    event log (a line per step of the teacher it trains and of the distillation; per epoch, the accuracies and the
    students' logits on the probe images). students: 2, or 3 with a mistake (its losses lengthen each step's line).
    A ceiling more than a forecast: the quota must not be overshot."""
    log = steps * STEP_LINE_BYTES * students // 2
    log += (epochs + 1) * (EPOCH_LINE_BYTES + students * probe_size * classes * LOGIT_BYTES)
    students = students * 4 * student_params + 64 * 1024
    return int(students + log + 8 * 1024)  # + config.json and status.json


def _teacher_training(config: TeacherConfig) -> tuple[int, float]:
    """(memory beyond the data, work) of training a teacher: 16 bytes a parameter (weights, gradients, AdamW's two
    moments) and its activations ×3 at its batch size; its epochs over the training part, and an evaluation of the
    validation and test parts after each."""
    facts = dataset_facts(config.dataset)
    teacher = model_cost(config.model, facts.input_shape, facts.num_classes)
    memory = 16 * teacher.params + BACKWARD_FACTOR * teacher.activation_bytes_per_sample * config.batch_size
    work = teacher.flops_per_sample * (BACKWARD_FACTOR * config.epochs * facts.train
                                       + config.epochs * (facts.val + facts.test))
    return int(memory), float(work)


def teacher_cost(config: TeacherConfig, label_images: int = 0) -> RunCost:
    """The cost of training one teacher on its own (an ensemble's further teachers), plus labelling label_images
    images with it afterwards; steps are the teacher's optimizer steps."""
    check_teacher_config(config)
    facts = dataset_facts(config.dataset)
    image_bytes = 4 * math.prod(facts.input_shape)
    data = (facts.train + facts.val + facts.test) * (image_bytes + 8)
    memory, work = _teacher_training(config)
    work += model_cost(config.model, facts.input_shape, facts.num_classes).flops_per_sample * label_images
    steps = config.epochs * math.ceil(facts.train / config.batch_size)
    return RunCost(int(data + memory), work, int(steps), False)


# ---- the budget ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """Per-run limits; None is unlimited. max_seconds is wall clock, enforced while running, not by check_budget."""

    max_memory_bytes: int | None = None
    max_work_flops: float | None = None
    max_steps: int | None = None
    max_seconds: float | None = None

    def exceeded(self, cost: RunCost) -> list[str]:
        """The limits cost is over, of "memory", "work" and "steps", in that order (the order they are reported)."""
        return [name for name, value, limit in (("memory", cost.memory_bytes, self.max_memory_bytes),
                                                ("work", cost.work_flops, self.max_work_flops),
                                                ("steps", cost.steps, self.max_steps))
                if limit is not None and value > limit]


UNLIMITED = Budget(None, None, None, None)


class OverBudget(ValueError):
    """A run over the server's budget: the message names the limit and the estimate, and says what would fit."""

    def __init__(self, message: str, limit: str, cost: RunCost, budget: Budget):
        super().__init__(message)
        self.limit, self.cost, self.budget = limit, cost, budget


def check_budget(config: DistillConfig, budget: Budget, teacher_cached: bool | None = None) -> RunCost:
    """The run's cost if it fits the budget; else raise OverBudget (a ValueError, so every caller's one-line error
    path reports it). Every "what would fit" suggestion is itself checked against the whole budget."""
    if teacher_cached is None:
        from kdviz.core.teachers import is_cached

        check_config(config)
        teacher_cached = is_cached(config.teacher, config.device)
    cost = run_cost(config, teacher_cached)
    exceeded = budget.exceeded(cost)
    if not exceeded:
        return cost
    limit = exceeded[0]
    message = {"memory": _memory_message, "work": _work_message, "steps": _steps_message}[limit]
    raise OverBudget(message(config, cost, budget, teacher_cached), limit, cost, budget)


def _fitting(config: DistillConfig, budget: Budget, teacher_cached: bool, knob: Callable[[int], DistillConfig],
             low: int, high: int, largest: bool, limits: tuple[str, ...]) -> int | None:
    """The largest (or smallest) value in [low, high] of one knob at which the run fits `limits`, found by bisection
    (each of them is monotone in the knob), and kept only if the run then fits the whole budget: the other limits
    move the other way or not at all, so where the extreme value does not fit, no value does."""
    def ok(value: int) -> bool:
        return not set(budget.exceeded(run_cost(knob(value), teacher_cached))) & set(limits)

    if high < low or not ok(low if largest else high):
        return None
    while low < high:
        if largest:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if ok(middle) else (low, middle - 1)
        else:
            middle = (low + high) // 2
            low, high = (low, middle) if ok(middle) else (middle + 1, high)
    return low if not budget.exceeded(run_cost(knob(low), teacher_cached)) else None


def _nothing_fits(cost: RunCost, budget: Budget, limit: str) -> str:
    """Why no change of this limit's knobs fits: another limit, or the part of the run the student does not size."""
    others = [name for name in budget.exceeded(cost) if name != limit]
    if others:
        return (f"nothing by changing this alone: the run is over the {' and '.join(others)} "
                f"limit{'s' * (len(others) > 1)} too.")
    if not cost.teacher_cached:
        return ("a smaller teacher, or a cached one: training the teacher is the larger part "
                "(`python -m kdviz prepare` caches the presets' teachers).")
    return "a smaller teacher or dataset: even the smallest student does not fit."


def _memory_message(config: DistillConfig, cost: RunCost, budget: Budget, teacher_cached: bool) -> str:
    spec = config.student
    search = functools.partial(_fitting, config, budget, teacher_cached, largest=True)
    width = search(lambda w: replace(config, student=replace(spec, width=w)), 1, spec.width - 1,
                   limits=("memory", "work"))
    depth = search(lambda d: replace(config, student=replace(spec, depth=d)), 1, spec.depth - 1,
                   limits=("memory", "work"))
    batch = search(lambda b: replace(config, batch_size=b), 1, config.batch_size - 1, limits=("memory",))
    options = ([f"student width ≤ {width:,} at depth {spec.depth}"] if width else []) + \
              ([f"depth ≤ {depth} at width {spec.width:,}"] if depth else []) + \
              ([f"batch size ≤ {batch:,}"] if batch else [])
    fit = ", or ".join(options) + ", or fewer/narrower layers." if options else _nothing_fits(cost, budget, "memory")
    return (f"This run needs ≈{format_bytes(cost.memory_bytes)} of memory; this server allows "
            f"{format_bytes(budget.max_memory_bytes)} per run. What would fit: {fit}")


def _work_message(config: DistillConfig, cost: RunCost, budget: Budget, teacher_cached: bool) -> str:
    epochs = _fitting(config, budget, teacher_cached, lambda e: replace(config, epochs=e), 1, config.epochs - 1,
                      largest=True, limits=("memory", "work", "steps"))
    fit = f"at most {_epochs(epochs)} at this size." if epochs else \
        _nothing_fits(cost, budget, "work")
    return (f"This run needs ≈{format_flops(cost.work_flops)} of training; this server allows "
            f"{format_flops(budget.max_work_flops)} per run. What would fit: {fit}")


def _steps_message(config: DistillConfig, cost: RunCost, budget: Budget, teacher_cached: bool) -> str:
    n = train_images(config)  # a batch of every image is one step an epoch: larger ones change nothing
    batch = _fitting(config, budget, teacher_cached, lambda b: replace(config, batch_size=b), config.batch_size + 1,
                     n, largest=False, limits=("steps",))
    epochs = _fitting(config, budget, teacher_cached, lambda e: replace(config, epochs=e), 1, config.epochs - 1,
                      largest=True, limits=("memory", "work", "steps"))
    options = ([f"batch size ≥ {batch:,} for {_epochs(config.epochs)}"] if batch else []) + \
              ([f"at most {_epochs(epochs)} at batch size {config.batch_size:,}"] if epochs else [])
    fit = ", or ".join(options) + "." if options else _nothing_fits(cost, budget, "steps")
    return (f"This run needs {cost.steps:,} optimizer steps (batch size {config.batch_size:,}); this server allows "
            f"{budget.max_steps:,} per run. What would fit: {fit}")


def _epochs(count: int) -> str:
    return f"{count:,} epoch{'s' * (count != 1)}"


def format_bytes(count: float) -> str:
    """1.3 GB, 640 MB, 12 KB (binary: 2048 MB is 2.0 GB)."""
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if count >= size:
            return f"{_number(count / size)} {unit}"
    return f"{int(count)} B"


def format_flops(count: float) -> str:
    """2.1 TFLOP, 40 TFLOP, 350 GFLOP."""
    for unit, size in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if count >= size:
            return f"{_number(count / size)} {unit}"
    return f"{count:,.0f} FLOP"


def _number(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"
