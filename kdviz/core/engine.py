"""Training as a stream of events: a teacher on hard labels, then a hard-label and a KD student side by side."""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from kdviz.core.data import Dataset, check_dataset_name, load_dataset, random_shift, stratified_subset
from kdviz.core.kd import check_alpha, check_temperature, distillation_loss
from kdviz.core.models import ModelSpec, check_spec, count_parameters, create_model, size_bytes

DEVICES = ("auto", "cpu", "cuda", "mps")
# A loss above this many nats has diverged even if still finite: cross-entropy starts at ln(classes) ≈ 2.3 and
# Adam bounds each step, so with a huge learning rate the loss explodes to ~1e4–1e8 long before it overflows.
DIVERGED_LOSS = 1e4


def _diverged(value: float) -> bool:
    return not math.isfinite(value) or value > DIVERGED_LOSS


# ---- configs ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TeacherConfig:
    """A teacher is trained on hard labels; this config (without the device) is its identity in the cache."""

    dataset: str = "mnist5k"
    model: ModelSpec = ModelSpec("mlp", 1200, 2)
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    augment: int = 2  # jitter: shift each image by up to this many pixels (Hinton 2015 §3 trains on jittered MNIST)
    seed: int = 0


@dataclass(frozen=True)
class DistillConfig:
    """One distillation experiment: a hard-label student and a KD student, same init, same batches."""

    teacher: TeacherConfig = TeacherConfig()
    student: ModelSpec = ModelSpec("mlp", 800, 2)
    temperature: float = 4.0
    alpha: float = 0.9  # weight of the soft term (Keras's example uses alpha for the hard term)
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    augment: int = 0
    train_subset: int = 0  # 0: the whole training set; n: a class-balanced subset of n images drawn with the seed
    seed: int = 0
    device: str = "auto"
    probe_size: int = 30  # test images whose logits are snapshotted every epoch: probe_indices() picks them

    @property
    def dataset(self) -> str:
        return self.teacher.dataset


def config_from_dict(data: dict) -> DistillConfig:
    """Rebuild a DistillConfig from dataclasses.asdict() output (a saved run, a shared link, a JSON file)."""
    try:
        teacher = dict(data["teacher"])
        teacher["model"] = ModelSpec(**teacher["model"])
        rest = {k: v for k, v in data.items() if k not in ("teacher", "student")}
        return DistillConfig(teacher=TeacherConfig(**teacher), student=ModelSpec(**data["student"]), **rest)
    except (KeyError, TypeError) as error:
        raise ValueError(f"not a distillation config ({error})") from None


def _check_training(epochs, batch_size, learning_rate, augment) -> None:
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch size must be an integer >= 1, got {batch_size!r}")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning rate must be a finite number > 0, got {learning_rate!r}")
    if not (isinstance(augment, int) and 0 <= augment <= 8):
        raise ValueError(f"augment (jitter in pixels) must be an integer in [0, 8], got {augment!r}")


def check_teacher_config(config: TeacherConfig) -> TeacherConfig:
    check_dataset_name(config.dataset)
    check_spec(config.model)
    _check_training(config.epochs, config.batch_size, config.learning_rate, config.augment)
    return config


def check_config(config: DistillConfig) -> DistillConfig:
    """Validate everything that can be checked without loading data; raise ValueError naming the bad value."""
    check_teacher_config(config.teacher)
    check_spec(config.student)
    check_temperature(config.temperature)
    check_alpha(config.alpha)
    _check_training(config.epochs, config.batch_size, config.learning_rate, config.augment)
    if not (isinstance(config.train_subset, int) and config.train_subset >= 0):
        raise ValueError(f"train subset must be an integer >= 0 (0 = all images), got {config.train_subset!r}")
    if not (isinstance(config.probe_size, int) and 0 <= config.probe_size <= 256):
        raise ValueError(f"probe size must be an integer in [0, 256], got {config.probe_size!r}")
    resolve_device(config.device)
    return config


def resolve_device(name: str) -> torch.device:
    """auto → CUDA, then MPS, then CPU; an explicit device that is missing is a ValueError."""
    available = available_devices()
    if name == "auto":
        return torch.device(available[0])
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}")
    if name not in available:
        raise ValueError(f"device {name!r} is not available on this machine; available: {', '.join(available)}")
    return torch.device(name)


def configure_threads() -> int:
    """Set and return torch's CPU thread count: KDVIZ_THREADS, else half the cores (at least 1).

    Every run goes through here, so the app and the CLI always use the same count: results depend on it (the order
    of floating-point sums), and "every number on screen can be reproduced from the CLI" needs identical numbers.
    Half the cores, because a run shares the machine with the app's server and the browser: on a busy 2-core machine
    two OpenMP threads spin-wait on each other and ran several times slower than one (bench/bench_engine.py).
    """
    value = os.environ.get("KDVIZ_THREADS", "").strip()
    threads = int(value) if value.isdigit() and int(value) > 0 else max(1, (os.cpu_count() or 2) // 2)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def available_devices() -> list[str]:
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found + ["cpu"]


# ---- events ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Started:
    kind: str  # "teacher" or "distill"
    total_steps: int
    steps_per_epoch: int
    device: str
    n_train: int
    n_test: int
    probe_indices: tuple[int, ...] = ()


@dataclass(frozen=True)
class StepLosses:
    step: int  # 1-based, counts optimiser steps
    epoch: int
    losses: dict  # teacher: {"teacher"}; distill: {"hard", "kd_soft", "kd_hard", "kd_total"}


@dataclass(frozen=True)
class EpochEnd:
    epoch: int  # 0 is before training
    accuracy: dict  # test accuracy per model: {"teacher"} or {"teacher", "hard", "kd"}


@dataclass(frozen=True)
class Snapshot:
    epoch: int
    logits: dict  # {"hard": [[...]], "kd": [[...]]}: the students' logits on the probe images


@dataclass(frozen=True)
class Diverged:
    step: int
    model: str
    message: str


@dataclass(frozen=True)
class Notice:
    message: str  # something the user should read, e.g. "the cached teacher was corrupt and is retrained"


@dataclass(frozen=True)
class Finished:
    status: str  # "completed", "cancelled" or "diverged"
    summary: dict
    models: dict = field(default_factory=dict, repr=False, compare=False)  # trained models by role; never logged


Event = Started | StepLosses | EpochEnd | Snapshot | Diverged | Notice | Finished


def event_to_dict(event) -> dict:
    """A JSON-ready dict of an event (without the model objects), with its type name under "event"."""
    payload = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "models"}
    if "probe_indices" in payload:
        payload["probe_indices"] = list(payload["probe_indices"])
    return {"event": type(event).__name__, **payload}


# ---- small building blocks (a DDP wrapper can replace each) ----------------------------------------------------

def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch's shuffled index batches, drawn from an explicit generator (never the global RNG)."""
    return list(torch.randperm(n, generator=generator).split(batch_size))


def make_optimizer(model: nn.Module, learning_rate: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=learning_rate)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + chunk]) for i in range(0, len(x), chunk)]) if len(x) else x.new_zeros(0)
    model.train(was_training)
    return out


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict_logits(model, x).argmax(-1) == y).float().mean())


def model_facts(model: nn.Module, accuracy_value: float, n_test: int) -> dict:
    return {"accuracy": accuracy_value, "errors": int(round((1 - accuracy_value) * n_test)),
            "params": count_parameters(model), "size_bytes": size_bytes(model)}


def _on_device(dataset: Dataset, device: torch.device, train_index: torch.Tensor | None = None):
    train_x, train_y = dataset.train_x, dataset.train_y
    if train_index is not None:
        train_x, train_y = train_x[train_index], train_y[train_index]
    return (train_x.to(device), train_y.to(device), dataset.test_x.to(device), dataset.test_y.to(device))


StopCheck = Callable[[], bool]


# ---- teacher ---------------------------------------------------------------------------------------------------

def train_teacher(config: TeacherConfig, device: str = "auto", should_stop: StopCheck | None = None
                  ) -> Iterator[Event]:
    """Train a model on hard labels; the last event is Finished, carrying the trained model as models["teacher"]."""
    check_teacher_config(config)
    torch_device = resolve_device(device)
    threads = configure_threads()
    dataset = load_dataset(config.dataset)
    train_x, train_y, test_x, test_y = _on_device(dataset, torch_device)
    torch.manual_seed(config.seed)
    model = create_model(config.model, dataset.input_shape, dataset.num_classes).to(torch_device)
    optimizer = make_optimizer(model, config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    yield Started("teacher", steps_per_epoch * config.epochs, steps_per_epoch, str(torch_device),
                  len(train_x), len(test_x))
    started, step, status, test_accuracy = time.perf_counter(), 0, "completed", 0.0
    for epoch in range(1, config.epochs + 1):
        model.train()
        for index in epoch_batches(len(train_x), config.batch_size, generator):
            if should_stop is not None and should_stop():
                status = "cancelled"
                break
            index = index.to(torch_device)
            x = random_shift(train_x[index], config.augment, generator)
            loss = F.cross_entropy(model(x), train_y[index])
            value = float(loss.detach())
            step += 1
            if _diverged(value):
                status = "diverged"
                yield Diverged(step, "teacher", f"diverged at step {step}: the teacher's loss reached {value:.3g}; "
                                                f"lower the learning rate (now {config.learning_rate:g})")
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            yield StepLosses(step, epoch, {"teacher": value})
        if status != "completed":
            break
        test_accuracy = accuracy(model, test_x, test_y)
        yield EpochEnd(epoch, {"teacher": test_accuracy})
    optimizer.zero_grad(set_to_none=True)  # the cached teacher carries no gradients around
    summary = {"teacher": model_facts(model, test_accuracy, len(test_x)), "n_test": len(test_x),
               "device": str(torch_device), "threads": threads, "seconds": time.perf_counter() - started,
               "steps": step}
    yield Finished(status, summary, {"teacher": model.cpu().eval()})


# ---- distillation ----------------------------------------------------------------------------------------------

def distill(config: DistillConfig, teacher: nn.Module, should_stop: StopCheck | None = None) -> Iterator[Event]:
    """Train a hard-label student and a KD student from the same initial weights on the same batches.

    The only difference between the two is the loss, which makes the comparison a fair experiment. Without
    augmentation the teacher's logits are computed once for the training set and reused (offline distillation).
    """
    check_config(config)
    device = resolve_device(config.device)
    threads = configure_threads()
    dataset = load_dataset(config.dataset)
    subset = stratified_subset(dataset.train_y, config.train_subset, config.seed) if config.train_subset else None
    train_x, train_y, test_x, test_y = _on_device(dataset, device, subset)
    if next(teacher.parameters()).device != device:  # never move a teacher that other runs share
        teacher = copy.deepcopy(teacher).to(device)
    teacher.eval()
    torch.manual_seed(config.seed)
    hard_student = create_model(config.student, dataset.input_shape, dataset.num_classes).to(device)
    kd_student = copy.deepcopy(hard_student)  # identical initial weights
    students = {"hard": hard_student, "kd": kd_student}
    optimizers = {name: make_optimizer(model, config.learning_rate) for name, model in students.items()}
    generator = torch.Generator().manual_seed(config.seed)
    cached_teacher_logits = None if config.augment else predict_logits(teacher, train_x)
    probe = probe_indices(dataset.test_y, config.probe_size)
    probe_x = test_x[torch.as_tensor(probe, dtype=torch.long, device=test_x.device)]
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    yield Started("distill", steps_per_epoch * config.epochs, steps_per_epoch, str(device), len(train_x),
                  len(test_x), probe)

    teacher_accuracy = accuracy(teacher, test_x, test_y)
    accuracies = {name: accuracy(model, test_x, test_y) for name, model in students.items()}
    yield EpochEnd(0, {"teacher": teacher_accuracy, **accuracies})
    yield _snapshot(0, students, probe_x)
    started, step, status = time.perf_counter(), 0, "completed"
    for epoch in range(1, config.epochs + 1):
        for model in students.values():
            model.train()
        for index in epoch_batches(len(train_x), config.batch_size, generator):
            if should_stop is not None and should_stop():
                status = "cancelled"
                break
            index = index.to(device)
            x, y = random_shift(train_x[index], config.augment, generator), train_y[index]
            if cached_teacher_logits is None:
                with torch.no_grad():
                    teacher_logits = teacher(x)
            else:
                teacher_logits = cached_teacher_logits[index]
            hard_loss = F.cross_entropy(hard_student(x), y)
            kd = distillation_loss(kd_student(x), teacher_logits, y, config.temperature, config.alpha)
            values = torch.stack([hard_loss, kd["soft"], kd["hard"], kd["loss"]]).detach().tolist()  # one sync
            step += 1
            if any(_diverged(v) for v in values):
                status = "diverged"
                which = "hard-label student" if _diverged(values[0]) else "KD student"
                worst = values[0] if _diverged(values[0]) else values[3]
                yield Diverged(step, which, f"diverged at step {step}: the {which}'s loss reached {worst:.3g}; "
                                            f"lower the learning rate (now {config.learning_rate:g})")
                break
            for loss, name in ((hard_loss, "hard"), (kd["loss"], "kd")):
                optimizers[name].zero_grad(set_to_none=True)
                loss.backward()
                optimizers[name].step()
            yield StepLosses(step, epoch, dict(zip(("hard", "kd_soft", "kd_hard", "kd_total"), values)))
        if status != "completed":
            break
        accuracies = {name: accuracy(model, test_x, test_y) for name, model in students.items()}
        yield EpochEnd(epoch, {"teacher": teacher_accuracy, **accuracies})
        yield _snapshot(epoch, students, probe_x)

    summary = {
        "teacher": model_facts(teacher, teacher_accuracy, len(test_x)),
        **{name: model_facts(model, accuracies[name], len(test_x)) for name, model in students.items()},
        "n_test": len(test_x), "n_train": len(train_x), "device": str(device), "threads": threads,
        "seconds": time.perf_counter() - started, "steps": step,
    }
    yield Finished(status, summary, {name: model.cpu().eval() for name, model in students.items()})


def probe_indices(test_labels: torch.Tensor, size: int) -> tuple[int, ...]:
    """The probe set: `size` test images, class-balanced and deterministic (no RNG), in ascending index order.

    Round-robin over the classes, taking each class's test images in index order: with 10 classes and size 30,
    the first 3 test images of every class. The image explorer shows these images' softmax at every epoch.
    """
    labels = test_labels.tolist()
    per_class = [[i for i, y in enumerate(labels) if y == c] for c in sorted(set(labels))]
    picked: list[int] = []
    for rank in range(max((len(p) for p in per_class), default=0)):
        picked += [p[rank] for p in per_class if rank < len(p)]
    return tuple(sorted(picked[:size]))


def _snapshot(epoch: int, students: dict, probe_x: torch.Tensor) -> Snapshot:
    return Snapshot(epoch, {name: predict_logits(model, probe_x).cpu().tolist() for name, model in students.items()})


def run_to_end(events: Iterator[Event]) -> Finished:
    """Consume a stream and return its Finished event (for scripts and tests that only want the result)."""
    last = None
    for last in events:
        pass
    assert isinstance(last, Finished), "every event stream ends with Finished"
    return last
