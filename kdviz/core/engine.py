"""Training as a stream of events: a teacher on hard labels, then a hard-label and a KD student side by side.

Models train on the dataset's training part; every epoch both the validation and the test accuracy are reported
(validation is what anything that chooses reads; test is only shown). Randomness comes from explicit generators
seeded from the config, never from torch's global RNG: runs share a process (threads of the app's server).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from kdviz.core.activity import Training
from kdviz.core.device import DeviceOptions, StepLog, handed_back, has_convolutions, placed, plan_for
from kdviz.core.device import PRECISIONS, SYNC_EVERY, SYNC_SECONDS  # noqa: F401 — part of the engine's surface
from kdviz.core.distributed import SINGLE, Shard, plain_batch_norm, sync_batch_norm
from kdviz.core.events import (Diverged, EpochEnd, Event, Finished, Notice, Snapshot, Started,  # noqa: F401
                               StepLosses, event_to_dict)
from kdviz.core.data import Dataset, check_dataset_name, load_dataset, random_shift, stratified_subset
from kdviz.core.events import diverged as is_diverged
from kdviz.core.kd import check_alpha, check_mistake, check_temperature, distillation_loss, get_mistake, \
    teacher_agreement
from kdviz.core.roles import MISTAKE, STUDENTS
from kdviz.core.models import (ModelSpec, changes_in_training_mode, check_spec, count_parameters, create_model,
                               seed_dropout, size_bytes)

DEVICES = ("auto", "cpu", "cuda", "mps")  # the engine's events are in kdviz.core.events, its GPU plan in core.device
def generator(seed: int, stream: str, device: str | torch.device = "cpu") -> torch.Generator:
    """An explicit generator for one stream of randomness of a run ("init", "batches", "dropout-kd", ...).

    Each stream gets its own seed, derived from (seed, stream) by a hash, so drawing more from one stream (another
    batch size, augmentation on or off) never changes another (the initial weights)."""
    digest = hashlib.sha256(f"{int(seed)}:{stream}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


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
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    # Label smoothing ε of the teacher's hard labels (Müller, Kornblith & Hinton 2019): its targets are
    # (1 − ε)·one-hot + ε/C. 0 leaves the teacher's identity in the cache as it was before the field existed.
    label_smoothing: float = 0.0


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
    weight_decay: float = 0.0  # AdamW's decoupled weight decay, the same for both students
    augment: int = 0
    train_subset: int = 0  # 0: the whole training set; n: a class-balanced subset of n images drawn with the seed
    seed: int = 0
    device: str = "auto"
    probe_size: int = 30  # test images whose logits are snapshotted every epoch: probe_indices() picks them
    mistake: str = "none"  # kd.MISTAKE_NAMES: a third student learns with this mistake, beside the two (same batches)
    # With jitter (augment > 0): True, the teacher labels the very view the student sees, each batch (Beyer et al.
    # 2022's "consistent" teaching); False, its logits are computed once on the unjittered images and reused every
    # epoch (a "fixed teacher", the cheap way). Without jitter both are the same: the logits are cached once.
    consistent_teacher: bool = True

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


def _check_training(epochs, batch_size, learning_rate, augment, weight_decay) -> None:
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch size must be an integer >= 1, got {batch_size!r}")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning rate must be a finite number > 0, got {learning_rate!r}")
    if not (isinstance(augment, int) and 0 <= augment <= 8):
        raise ValueError(f"augment (jitter in pixels) must be an integer in [0, 8], got {augment!r}")
    # AdamW shrinks every weight by lr × wd each step (decoupled decay): at 1 or more it zeroes or flips them
    if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight decay must be a number >= 0, got {weight_decay!r}")
    if learning_rate * weight_decay >= 1:
        raise ValueError(f"learning rate × weight decay must be < 1 (AdamW shrinks every weight by that fraction each "
                         f"step), got {learning_rate!r} × {weight_decay!r}")


def check_teacher_config(config: TeacherConfig) -> TeacherConfig:
    check_dataset_name(config.dataset)
    check_spec(config.model)
    _check_training(config.epochs, config.batch_size, config.learning_rate, config.augment, config.weight_decay)
    smoothing = config.label_smoothing
    if not (isinstance(smoothing, (int, float)) and not isinstance(smoothing, bool) and 0 <= smoothing < 1):
        raise ValueError(f"label smoothing must be a number in [0, 1), got {smoothing!r}")
    return config


def check_config(config: DistillConfig) -> DistillConfig:
    """Validate everything that can be checked without loading data; raise ValueError naming the bad value."""
    check_teacher_config(config.teacher)
    check_spec(config.student)
    check_temperature(config.temperature)
    check_alpha(config.alpha)
    _check_training(config.epochs, config.batch_size, config.learning_rate, config.augment, config.weight_decay)
    if not (isinstance(config.train_subset, int) and config.train_subset >= 0):
        raise ValueError(f"train subset must be an integer >= 0 (0 = all images), got {config.train_subset!r}")
    if not (isinstance(config.probe_size, int) and 0 <= config.probe_size <= 256):
        raise ValueError(f"probe size must be an integer in [0, 256], got {config.probe_size!r}")
    resolve_device(config.device)
    check_mistake(config.mistake)
    if not isinstance(config.consistent_teacher, bool):
        raise ValueError(f"consistent teacher must be true or false, got {config.consistent_teacher!r}")
    if config.mistake == "teacher-train-mode" and not changes_in_training_mode(config.teacher.model):
        raise ValueError(f"the teacher-train-mode mistake needs a teacher with dropout or batch norm (training mode "
                         f"changes nothing else): this {config.teacher.model.arch} teacher has neither; give it "
                         f"dropout, e.g. teacher dropout 0.2")
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


def thread_count() -> int:
    """The CPU thread count every run uses: KDVIZ_THREADS, else half the cores (at least 1); see configure_threads."""
    value = os.environ.get("KDVIZ_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else max(1, (os.cpu_count() or 2) // 2)


_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # blocks from 32 MB up are mapped, and unmapped when freed; smaller ones reuse the heap
_allocator_fixed: bool | None = None


def fix_allocator() -> bool:
    """Fix glibc's mmap threshold at 32 MB, once per process; True when it is fixed (by this call or an earlier one).

    glibc serves a block of at least its mmap threshold with a fresh mapping that it gives back when the block is
    freed, and smaller blocks from its heap, which keeps what is freed for reuse. Left dynamic, the threshold starts
    at 128 KB and grows to the largest block freed so far (up to 32 MB), at moments that vary from one process to the
    next: the same Fashion-MNIST distillation peaked 339 to 464 MB in different processes, so a memory estimate could
    not be trusted. Fixed at 32 MB from the start (the dynamic threshold's ceiling), the same run takes the same memory
    (308 MB each time) at no cost in speed; fixed at 1 MB it also took the same memory (327 MB) but trained 1.4x
    slower (every large activation a fresh mapping the kernel zero-fills). bench/memory_peak.py --allocator both
    measures it; docs/HALL.md has the figures. Left alone where the user set glibc's own MALLOC_MMAP_THRESHOLD_,
    where KDVIZ_MALLOC=default asks for glibc's dynamic threshold (the benchmark's other side), and off glibc."""
    global _allocator_fixed
    if _allocator_fixed is None:
        _allocator_fixed = False
        if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and os.environ.get("KDVIZ_MALLOC", "") != "default":
            try:
                import ctypes
                libc = ctypes.CDLL(None)
                _allocator_fixed = bool(libc.gnu_get_libc_version and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
            except (OSError, AttributeError):  # not glibc
                pass
    return _allocator_fixed


def configure_threads() -> int:
    """Set and return torch's CPU thread count: KDVIZ_THREADS, else half the cores (at least 1).

    Every run goes through here, so the app and the CLI always use the same count: results depend on it (the order
    of floating-point sums), and "every number on screen can be reproduced from the CLI" needs identical numbers.
    Half the cores, because a run shares the machine with the app's server and the browser: on a busy 2-core machine
    two OpenMP threads spin-wait on each other and ran several times slower than one (bench/bench_engine.py).
    """
    fix_allocator()
    threads = thread_count()
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


# ---- small building blocks (a DDP wrapper can replace each) ----------------------------------------------------

def epoch_batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu"
                  ) -> list[torch.Tensor]:
    """One epoch's shuffled index batches, drawn from an explicit generator (never the global RNG), on `device`.

    The order is drawn on the CPU, so it is the same on every device and every rank; on CUDA it travels to the GPU
    once per epoch, asynchronously (pinned memory), never once per batch."""
    order = torch.randperm(n, generator=generator)
    if torch.device(device).type == "cuda":
        order = order.pin_memory().to(device, non_blocking=True)
    elif torch.device(device).type != "cpu":
        order = order.to(device)
    return list(order.split(batch_size))


def training_batches(data: Dataset, batch_size: int, augment: int, batches: torch.Generator, device: torch.device,
                     jitter: torch.Generator | None = None, shard: Shard = SINGLE
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
    """One epoch of (index, x, y, global batch size): this rank's slice of each global batch (all of it in one
    process). The order and the jitter come from `batches`, the run's one stream for them, so every model trained in
    the same run sees the same batches in the same order. jitter: the generator the shifts are drawn from instead
    (a generator on the GPU, so drawing them never waits for the host). Under DDP every rank draws the shifts of the
    whole global batch, the same numbers on every rank, and keeps its slice."""
    for index in epoch_batches(len(data.train_x), batch_size, batches, device):
        start, end = shard.bounds(len(index))
        if augment:
            x = random_shift(data.train_x[index], augment, jitter or batches, data.background)[start:end]
        else:
            x = data.train_x[index[start:end]]
        yield index[start:end], x, data.train_y[index[start:end]], len(index)


def make_optimizer(model: nn.Module, learning_rate: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay (AdamW; with weight_decay 0 it is plain Adam); on CUDA the fused kernel, a
    launch or two per step instead of a few per parameter tensor (the CPU keeps torch's default implementation)."""
    fused = True if next(model.parameters()).is_cuda else None
    return torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay, fused=fused)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + chunk]) for i in range(0, len(x), chunk)]) if len(x) else x.new_zeros(0)
    model.train(was_training)
    return out


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict_logits(model, x).argmax(-1) == y).float().mean())


def model_facts(model: nn.Module, test_accuracy: float, val_accuracy: float, n_test: int, n_val: int) -> dict:
    """What a summary says about one model: test accuracy ("accuracy", reported) beside validation (for choices)."""
    return {"accuracy": test_accuracy, "errors": int(round((1 - test_accuracy) * n_test)),
            "val_accuracy": val_accuracy, "val_errors": int(round((1 - val_accuracy) * n_val)),
            "params": count_parameters(model), "size_bytes": size_bytes(model)}


def _on_device(dataset: Dataset, device: torch.device, train_index: torch.Tensor | None = None) -> Dataset:
    """The dataset's tensors on the run's device, the training part cut to train_index (a subset) if given."""
    train_x, train_y = dataset.train_x, dataset.train_y
    if train_index is not None:
        train_x, train_y = train_x[train_index], train_y[train_index]
    moved = {name: tensor.to(device) for name, tensor in (("train_x", train_x), ("train_y", train_y),
             ("val_x", dataset.val_x), ("val_y", dataset.val_y), ("test_x", dataset.test_x),
             ("test_y", dataset.test_y))}
    return dataclasses.replace(dataset, **moved)


def evaluate(models: dict[str, nn.Module], data: Dataset) -> tuple[dict, dict]:
    """({role: test accuracy}, {role: validation accuracy})."""
    return ({role: accuracy(model, data.test_x, data.test_y) for role, model in models.items()},
            {role: accuracy(model, data.val_x, data.val_y) for role, model in models.items()})


def initial_student(config: "DistillConfig", dataset: Dataset) -> nn.Module:
    """The student as both students of a run start: drawn from the config's seed (the "untrained student")."""
    return create_model(config.student, dataset.input_shape, dataset.num_classes, generator(config.seed, "init"))


def jitter_generator(seed: int, batches: torch.Generator, device: torch.device) -> torch.Generator:
    """Where the shifts are drawn: `batches` itself on the CPU (order and shifts one stream, as always), a generator on
    the device elsewhere (a CPU draw would have to be copied to the GPU every batch, waiting for it)."""
    return batches if device.type == "cpu" else generator(seed, "jitter", device)


StopCheck = Callable[[], bool]


# ---- teacher ---------------------------------------------------------------------------------------------------

def train_teacher(config: TeacherConfig, device: str = "auto", should_stop: StopCheck | None = None,
                  options: DeviceOptions | None = None) -> Iterator[Event]:
    """Train a model on hard labels; the last event is Finished, carrying the trained model as models["teacher"].

    options: how to use a GPU (DeviceOptions; no effect on CPU)."""
    check_teacher_config(config)
    torch_device = resolve_device(device)
    threads = configure_threads()
    dataset = load_dataset(config.dataset)
    data = _on_device(dataset, torch_device)
    model = create_model(config.model, dataset.input_shape, dataset.num_classes, generator(config.seed, "init"))
    plan = plan_for(options, torch_device, model)
    model = placed(model, torch_device, plan)
    seed_dropout(model, generator(config.seed, "dropout-teacher", torch_device))
    optimizer = make_optimizer(model, config.learning_rate, config.weight_decay)
    train = torch.compile(model) if plan.compile else model
    batches = generator(config.seed, "batches")
    jitter = jitter_generator(config.seed, batches, torch_device)
    steps_per_epoch = math.ceil(len(data.train_x) / config.batch_size)
    yield Started("teacher", steps_per_epoch * config.epochs, steps_per_epoch, str(torch_device),
                  len(data.train_x), len(data.test_x), n_val=len(data.val_x))
    started, step, status = time.perf_counter(), 0, "completed"
    test_accuracy, val_accuracy = {"teacher": 0.0}, {"teacher": 0.0}
    log = StepLog(("teacher",), plan, torch_device)
    diverged, training = None, Training()  # energy measurements meanwhile learn that this one trained
    evaluated_at = 0  # the step whose weights test_accuracy and val_accuracy describe
    for epoch in range(1, config.epochs + 1):
        model.train()
        for _, x, y, _ in training_batches(data, config.batch_size, config.augment, batches, torch_device, jitter):
            if should_stop is not None and should_stop():
                status = "cancelled"
                break
            with plan.autocast():
                loss = F.cross_entropy(train(x), y, label_smoothing=float(config.label_smoothing))
            step += 1
            log.add(step, epoch, {"teacher": loss})
            events, diverged, _ = log.read(("teacher",)) if log.due() else ([], None, False)
            if diverged is not None:
                yield from events
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            training.step()
            yield from events
        if diverged is None and log.rows:  # the steps since the last read (on a GPU)
            events, diverged, _ = log.read(("teacher",))
            yield from events
        if diverged is not None:
            status = "diverged"
            bad_step, _, value = diverged
            step = bad_step
            yield Diverged(bad_step, "teacher", f"diverged at step {bad_step}: the teacher's loss reached {value:.3g}; "
                                                f"lower the learning rate (now {config.learning_rate:g})")
        if status != "completed":
            break
        test_accuracy, val_accuracy = evaluate({"teacher": model}, data)
        evaluated_at = step
        yield EpochEnd(epoch, test_accuracy, val_accuracy)
    if status == "cancelled" and step != evaluated_at:  # stopped mid-epoch: the summary describes the weights it
        test_accuracy, val_accuracy = evaluate({"teacher": model}, data)  # returns, not the last epoch's (as distill)
    optimizer.zero_grad(set_to_none=True)  # the cached teacher carries no gradients around
    seed_dropout(model, None)  # a generator is no weight: the cached or shared teacher does not carry one
    summary = {"teacher": model_facts(model, test_accuracy["teacher"], val_accuracy["teacher"], len(data.test_x),
                                      len(data.val_x)),
               "n_test": len(data.test_x), "n_val": len(data.val_x), "n_train": len(data.train_x),
               "split": dataset.split, "device": str(torch_device), "threads": threads,
               "seconds": time.perf_counter() - started, "steps": step, "precision": plan.precision}
    yield Finished(status, summary, {"teacher": handed_back(model, plan)})


# ---- distillation ----------------------------------------------------------------------------------------------

LOSS_KEYS = {"hard": ("hard",), "kd": ("kd_soft", "kd_hard", "kd_total"),
             MISTAKE: ("mistake_soft", "mistake_hard", "mistake_total")}
OPTIMISED = {"hard": "hard", "kd": "kd_total", MISTAKE: "mistake_total"}  # the loss each student's optimiser follows
WATCHED = ("hard", "kd_total")  # either one diverging ends the run; the mistaken student's stops only that student


def student_roles(config: DistillConfig) -> tuple[str, ...]:
    """The students a distillation trains: the hard-label and the KD student, and a third one, the KD student with
    the config's mistake (roles.MISTAKE), when it names one."""
    return STUDENTS + ((MISTAKE,) if config.mistake != "none" else ())


def _student_losses(train: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, teacher_logits, config,
                    mistaken_teacher_logits=None) -> dict[str, torch.Tensor]:
    """Each student's loss terms on this batch (shard): {"hard"}, {"kd_soft", "kd_hard", "kd_total"}, and the
    mistaken student's {"mistake_soft", "mistake_hard", "mistake_total"} (its teacher's logits: mistaken_teacher_logits
    when the mistake is the teacher's, a teacher in training mode).

    An empty shard (a global batch smaller than the world) still runs the models, so that DDP's all-reduce of their
    zero gradients meets the other ranks'; its losses are 0 (a mean over no images would be NaN)."""
    losses = {}
    if "hard" in train:
        logits = train["hard"](x)
        losses["hard"] = F.cross_entropy(logits, y) if len(y) else logits.sum() * 0.0
    for role, mistake in (("kd", "none"), (MISTAKE, config.mistake)):
        if role not in train:
            continue
        logits = train[role](x)
        soft_key, hard_key, total_key = LOSS_KEYS[role]
        if len(y):
            target = mistaken_teacher_logits if role == MISTAKE and mistaken_teacher_logits is not None \
                else teacher_logits
            kd = distillation_loss(logits, target, y, config.temperature, config.alpha, mistake)
            losses |= {soft_key: kd["soft"], hard_key: kd["hard"], total_key: kd["loss"]}
        else:
            losses |= dict.fromkeys(LOSS_KEYS[role], logits.sum() * 0.0)
    return losses


def _training_mode_teacher(teacher: nn.Module, config: DistillConfig, device: torch.device, shard: Shard
                           ) -> nn.Module:
    """The teacher-train-mode mistake's teacher: a copy (never the shared teacher) in train(), its dropout drawn from
    the run's own stream, so that its soft labels change at every call and the run stays reproducible."""
    noisy = copy.deepcopy(teacher).train()
    seed_dropout(noisy, generator(config.seed, "dropout-teacher" if shard.single else f"dropout-teacher:{shard.rank}",
                                  device))
    return noisy


def _mistake_failure(events: list, config: DistillConfig) -> tuple[list, Notice | None]:
    """(events, a Notice or None): when the mistaken student's loss diverged in these steps, the events with its
    non-finite values left out (a log is JSON) and a Notice that says so; the caller stops training that student."""
    bad = next((event for event in events if is_diverged(event.losses.get("mistake_total", 0.0))), None)
    if bad is None:
        return events, None
    value = bad.losses["mistake_total"]
    cleaned = [dataclasses.replace(event, losses={k: v for k, v in event.losses.items() if math.isfinite(v)})
               for event in events]
    return cleaned, Notice(f"The {MISTAKE_WORDS} ({get_mistake(config.mistake).label}) diverged at step {bad.step}: "
                           f"its loss reached {value:.3g}. It stops training there (its accuracy stays where it was); "
                           "the hard-label and KD students go on.")


MISTAKE_WORDS = "KD student with the mistake"


def distill(config: DistillConfig, teacher: nn.Module, should_stop: StopCheck | None = None,
            students: tuple[str, ...] | None = None, train_index: torch.Tensor | None = None,
            options: DeviceOptions | None = None, shard: Shard = SINGLE) -> Iterator[Event]:
    """Train a hard-label student and a KD student from the same initial weights on the same batches.

    The only difference between the two is the loss, which makes the comparison a fair experiment. Without
    augmentation (or with config.consistent_teacher False) the teacher's logits are computed once for the unjittered
    training set and reused (offline distillation); with it the teacher labels each batch's jittered view.
    students: the roles to train (default: student_roles(config)); a sweep that tunes only the hard-label baseline
    passes ("hard",). With config.mistake, a third student (roles.MISTAKE) learns with that mistake in its KD loss,
    from the same initial weights on the same batches: the mistake beside the correct loss, in one run. When its
    loss diverges (NaN) it stops training, with a Notice; the run goes on.
    train_index: the training images to use (indices into the training part), in place of train_subset's
    class-balanced draw: a transfer set that is not balanced, e.g. one without a class (experiments/missing_class).
    options: how to use a GPU (DeviceOptions; no effect on CPU).
    shard: this process's part of a data-parallel run under torchrun (kdviz.core.distributed); every rank runs
    this same stream, evaluates the same weights and yields the same events; only rank 0's consumer should speak.
    """
    check_config(config)
    allowed = student_roles(config)
    students = allowed if students is None else tuple(students)
    if not students or not set(students) <= set(allowed):
        raise ValueError(f"students must be some of {', '.join(allowed)}, got {students!r}")
    device = resolve_device(config.device)
    threads = configure_threads()
    dataset = load_dataset(config.dataset)
    subset = stratified_subset(dataset.train_y, config.train_subset, config.seed) if config.train_subset else None
    if train_index is not None:
        subset = _check_train_index(train_index, len(dataset.train_y), config.train_subset)
    data = _on_device(dataset, device, subset)
    initial = initial_student(config, dataset)
    plan = plan_for(options, device, initial, shard.single)
    if next(teacher.parameters()).device != device or (plan.channels_last and has_convolutions(teacher)):
        teacher = placed(copy.deepcopy(teacher), device, plan)  # never move a teacher that other runs share
    teacher.eval()
    initial = placed(initial, device, plan)
    models = {role: copy.deepcopy(initial) for role in allowed if role in students}  # identical initial weights
    for role, model in models.items():  # the same dropout masks for both students (each rank its own stream)
        seed_dropout(model, generator(config.seed, "dropout" if shard.single else f"dropout:{shard.rank}", device))
        models[role] = sync_batch_norm(model, device, shard)
    optimizers = {role: make_optimizer(model, config.learning_rate, config.weight_decay)
                  for role, model in models.items()}
    train = {role: shard.wrap(model, device) for role, model in models.items()}  # what the steps call
    if plan.compile:
        train = {role: torch.compile(model) for role, model in train.items()}
    batches = generator(config.seed, "batches")
    jitter = jitter_generator(config.seed, batches, device)
    needs_teacher = "kd" in models or MISTAKE in models  # a baseline trained alone never asks the teacher
    cached = needs_teacher and (not config.augment or not config.consistent_teacher)  # a fixed teacher's logits
    cached_teacher_logits = predict_logits(teacher, data.train_x) if cached else None
    noisy_teacher = _training_mode_teacher(teacher, config, device, shard) \
        if MISTAKE in models and config.mistake == "teacher-train-mode" else None
    probe = probe_indices(dataset.test_y, config.probe_size)
    probe_x = data.test_x[torch.as_tensor(probe, dtype=torch.long, device=data.test_x.device)]
    steps_per_epoch = math.ceil(len(data.train_x) / config.batch_size)
    yield Started("distill", steps_per_epoch * config.epochs, steps_per_epoch, str(device), len(data.train_x),
                  len(data.test_x), probe, n_val=len(data.val_x))
    if not shard.single and device.type == "cpu" and plain_batch_norm(initial):
        yield Notice("batch norm normalises each rank's shard on its own on CPU (SyncBatchNorm needs GPUs): this run "
                     "is close to, not the same as, a single-process run")

    teacher_logits_test = predict_logits(teacher, data.test_x)  # frozen: once, for accuracy and agreement
    teacher_test = {"teacher": float((teacher_logits_test.argmax(-1) == data.test_y).float().mean())}
    teacher_val = {"teacher": accuracy(teacher, data.val_x, data.val_y)}
    test_accuracy, val_accuracy = evaluate(models, data)
    yield EpochEnd(0, {**teacher_test, **test_accuracy}, {**teacher_val, **val_accuracy})
    yield _snapshot(0, models, probe_x)
    started, step, status = time.perf_counter(), 0, "completed"
    evaluated_step = 0  # the step whose weights test_accuracy / val_accuracy are of
    log = StepLog(tuple(key for role in models for key in LOSS_KEYS[role]), plan, device, shard)
    diverged, stop, training = None, False, Training()  # energy measurements meanwhile learn that this one trained
    for epoch in range(1, config.epochs + 1):
        for model in models.values():
            model.train()
        for index, x, y, batch in training_batches(data, config.batch_size, config.augment, batches, device, jitter,
                                                   shard):
            if should_stop is not None and should_stop():
                if shard.single:
                    status = "cancelled"
                    break
                log.stop = True  # every rank stops at the same step: agreed at the next read
            with plan.autocast():
                if cached_teacher_logits is not None:
                    teacher_logits = cached_teacher_logits[index]
                elif needs_teacher:
                    with torch.no_grad():
                        teacher_logits = teacher(x)
                else:
                    teacher_logits = None
                mistaken_teacher_logits = None
                if noisy_teacher is not None and MISTAKE in train:
                    with torch.no_grad():
                        mistaken_teacher_logits = noisy_teacher(x)  # new dropout masks at every call
                losses = _student_losses(train, x, y, teacher_logits, config, mistaken_teacher_logits)
            step += 1
            log.add(step, epoch, losses, len(y) / batch)
            events, diverged, stop = log.read(WATCHED) if log.due() else ([], None, False)
            events, log = _stop_mistake(events, log, train, config, plan, device, shard)
            if diverged is not None:  # found before this step's update (on CPU: this step)
                yield from events
                break
            weight = 1.0 if shard.single else shard.weight(len(y), batch)
            for role, key in OPTIMISED.items():
                if role in train:
                    optimizers[role].zero_grad(set_to_none=True)
                    (losses[key] if shard.single else losses[key] * weight).backward()
                    optimizers[role].step()
            training.step()
            yield from events
            if stop:
                break
        if diverged is None and log.rows:  # the steps since the last read (on a GPU), or before a cancel
            events, diverged, stop = log.read(WATCHED)
            events, log = _stop_mistake(events, log, train, config, plan, device, shard)
            yield from events
        if diverged is not None:
            status = "diverged"
            step, bad, value = diverged
            which = "hard-label student" if bad == "hard" else "KD student"
            yield Diverged(step, which, f"diverged at step {step}: the {which}'s loss reached {value:.3g}; "
                                        f"lower the learning rate (now {config.learning_rate:g})")
        elif stop:
            status = "cancelled"
        if status != "completed":
            break
        test_accuracy, val_accuracy = evaluate(models, data)
        evaluated_step = step
        yield EpochEnd(epoch, {**teacher_test, **test_accuracy}, {**teacher_val, **val_accuracy})
        yield _snapshot(epoch, models, probe_x)

    if evaluated_step != step:
        # Stopped (or diverged) mid-epoch: the weights moved since the last epoch's evaluation. The summary describes
        # the models it hands back, so their accuracy is measured again here, on the same final weights as agreement
        # and KL below (the last epoch's accuracy stays in its EpochEnd event). Evaluating the final weights, not
        # keeping the last epoch's: the returned models are what a user saves, measures or distils further.
        test_accuracy, val_accuracy = evaluate(models, data)
    n_test, n_val = len(data.test_x), len(data.val_x)
    summary = {
        "teacher": model_facts(teacher, teacher_test["teacher"], teacher_val["teacher"], n_test, n_val),
        **{role: {**model_facts(model, test_accuracy[role], val_accuracy[role], n_test, n_val),
                  **teacher_agreement(teacher_logits_test, predict_logits(model, data.test_x))}
           for role, model in models.items()},
        "n_test": n_test, "n_val": n_val, "n_train": len(data.train_x), "split": dataset.split,
        "device": str(device), "threads": threads, "seconds": time.perf_counter() - started, "steps": step,
        "precision": plan.precision, "world_size": shard.world_size,
    }
    for model in models.values():
        seed_dropout(model, None)
    rebuild = lambda: create_model(config.student, dataset.input_shape, dataset.num_classes)  # noqa: E731
    yield Finished(status, summary, {role: handed_back(model, plan, rebuild) for role, model in models.items()})


def _stop_mistake(events: list, log: StepLog, train: dict, config: DistillConfig, plan, device, shard
                  ) -> tuple[list, StepLog]:
    """When the mistaken student's loss diverged in these steps: stop training it (it leaves `train`; it is still
    evaluated) and log without its losses from now on. Returns the events to yield and the log to use."""
    if MISTAKE not in train:
        return events, log
    events, notice = _mistake_failure(events, config)
    if notice is None:
        return events, log
    del train[MISTAKE]
    kept = tuple(key for key in log.keys if key not in LOSS_KEYS[MISTAKE])  # log.rows is empty: it was just read
    return [*events, notice], StepLog(kept, plan, device, shard)


def _check_train_index(index, n_train: int, train_subset: int) -> torch.Tensor:
    """train_index as a long tensor of distinct indices of the training part; ValueError otherwise."""
    if train_subset:
        raise ValueError(f"give train_index or train_subset, not both (train_subset is {train_subset})")
    index = torch.as_tensor(index)
    if index.ndim != 1 or len(index) == 0 or index.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"train_index must be a non-empty 1-D tensor of integers, got shape {tuple(index.shape)} "
                         f"of {index.dtype}")
    if int(index.min()) < 0 or int(index.max()) >= n_train or len(index.unique()) != len(index):
        raise ValueError(f"train_index must hold distinct indices in [0, {n_train - 1}]")
    return index.long()


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
