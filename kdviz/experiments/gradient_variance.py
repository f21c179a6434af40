"""Gradient variance: do soft targets give a student's gradients less variance than hard labels? (the lecture's third
reason why distillation works; Hinton, Vinyals & Dean 2015, §1: soft targets "provide much more information per
training case than hard targets and much less variance in the gradient between training cases").

At the same student parameters (the KD student after 0, 1, 5, 20 epochs of training), every training image's
gradient of the hard loss (cross-entropy) and of the soft loss (T²·KL(teacher_T ‖ student_T)) is computed with
torch.func (vmap of grad: per-example gradients, never stored all at once), and from them, for mini-batches of size
B drawn without replacement from the N training images,

    relative variance = E_b ‖g_b − ḡ‖² / ‖ḡ‖² = σ² · (N − B) / (B · (N − 1)) / ‖ḡ‖²,

where ḡ is the full-batch gradient and σ² = mean_i ‖g_i − ḡ‖² the per-example variance. A relative variance of 1
means a mini-batch's gradient is as far from the full-batch gradient as that gradient is long. The ratio
soft ÷ hard is what the lecture's claim is about: below 1, soft targets give less noisy gradients.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from kdviz.core.flags import flag
from kdviz.core.engine import DistillConfig, Finished, Notice, StopCheck, check_config, distill, initial_student
from kdviz.core.kd import check_temperature
from kdviz.experiments.events import Measured

NAME = "gradient-variance"
CHUNK = 256  # per-example gradients are computed this many images at a time (memory: CHUNK × parameters)


@dataclass(frozen=True)
class GradientVarianceConfig:
    """What to measure: the KD student of `distill` (its data, teacher, student, T for training, seed) at the given
    epochs of its training, for the soft term at each temperature, for mini-batches of batch_size."""

    distill: DistillConfig
    epochs: tuple[int, ...] = flag((0, 1, 5, 20), "--at-epochs", "epochs of the KD student's training at which to "
                                   "measure (default {default})", "E")
    temperatures: tuple[float, ...] = flag((1.0, 2.0, 4.0, 8.0, 20.0), "--temperatures",
                                           "temperatures of the soft term (default {default})", "T")
    batch_size: int = flag(64, "--measure-batch-size", "mini-batch size whose gradient variance is reported "
                           "(default {default})", "B")


def default_config() -> GradientVarianceConfig:
    """The offline default (seconds on a laptop): the quick preset's digits teacher and 128×2 student, trained on
    all 1151 training images without jitter (the gradients are measured on those very images)."""
    from kdviz.core.presets import get_preset

    base = get_preset("quick")
    return GradientVarianceConfig(dataclasses.replace(base, train_subset=0, augment=0, epochs=20))


def check(config: GradientVarianceConfig) -> GradientVarianceConfig:
    check_config(config.distill)
    if not config.epochs or any(not isinstance(e, int) or e < 0 for e in config.epochs):
        raise ValueError(f"epochs must be integers >= 0, got {config.epochs!r}")
    if len(config.epochs) > 12:
        raise ValueError(f"at most 12 points in training, got {len(config.epochs)}")
    if not config.temperatures or len(config.temperatures) > 12:
        raise ValueError(f"give 1 to 12 temperatures, got {len(config.temperatures)}")
    for temperature in config.temperatures:
        check_temperature(temperature)
    if not (isinstance(config.batch_size, int) and config.batch_size >= 1):
        raise ValueError(f"batch size must be an integer >= 1, got {config.batch_size!r}")
    return config


def hard_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, label: torch.Tensor, temperature: float):
    return F.cross_entropy(logits, label)


def soft_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, label: torch.Tensor, temperature: float):
    """T²·KL(teacher_T ‖ student_T), the KD loss's soft term (kdviz.core.kd.distillation_loss), for a batch."""
    log_q = F.log_softmax(logits / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * temperature**2


def gradient_statistics(model: nn.Module, loss, x: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor,
                        temperature: float = 1.0, chunk: int = CHUNK) -> dict:
    """Per-example gradients of loss(model(x_i), teacher_i, y_i) w.r.t. the model's parameters, reduced on the fly:
    {"n", "mean_norm2": ‖ḡ‖², "variance": mean_i ‖g_i − ḡ‖²} (float64 sums, so the difference is not lost)."""
    from torch.func import functional_call, grad, vmap

    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def one(params, xi, ti, yi):
        logits = functional_call(model, (params, buffers), (xi.unsqueeze(0),))
        return loss(logits, ti.unsqueeze(0), yi.unsqueeze(0), temperature)

    per_example = vmap(grad(one), in_dims=(None, 0, 0, 0))
    total = {name: torch.zeros_like(p, dtype=torch.float64) for name, p in params.items()}
    squares = torch.zeros((), dtype=torch.float64)
    was_training = model.training
    model.eval()  # the same function for every example: no dropout masks
    try:
        for start in range(0, len(x), chunk):
            grads = per_example(params, x[start:start + chunk], teacher_logits[start:start + chunk],
                                y[start:start + chunk])
            for name, g in grads.items():
                g = g.double()
                total[name] += g.sum(0)
                squares += g.flatten(1).pow(2).sum()
    finally:
        model.train(was_training)
    n = len(x)
    mean_norm2 = sum(float(t.div(n).pow(2).sum()) for t in total.values())
    return {"n": n, "mean_norm2": mean_norm2, "variance": max(float(squares) / n - mean_norm2, 0.0)}


def relative_variance(stats: dict, batch_size: int) -> float:
    """E‖g_b − ḡ‖² / ‖ḡ‖² for mini-batches of batch_size drawn without replacement (module docstring)."""
    n, b = stats["n"], min(batch_size, stats["n"])
    if stats["mean_norm2"] == 0:
        return math.inf
    spread = stats["variance"] * (n - b) / (b * (n - 1)) if n > 1 else 0.0
    return spread / stats["mean_norm2"]


def run(config: GradientVarianceConfig, teacher: nn.Module, should_stop: StopCheck | None = None) -> Iterator:
    """Yield Measured points (epochs × temperatures), then Finished with {"points": [...]}; stopping keeps what was
    measured (status "cancelled")."""
    from kdviz.core.data import load_dataset, stratified_subset

    check(config)
    base = config.distill
    dataset = load_dataset(base.dataset)
    index = stratified_subset(dataset.train_y, base.train_subset, base.seed) if base.train_subset else None
    x, y = (dataset.train_x, dataset.train_y) if index is None else (dataset.train_x[index], dataset.train_y[index])
    teacher = teacher.eval()
    with torch.no_grad():
        teacher_logits = torch.cat([teacher(x[i:i + 1024]) for i in range(0, len(x), 1024)])
    epochs = sorted(set(config.epochs))
    total, points, status = len(epochs) * len(config.temperatures), [], "completed"
    for epoch in epochs:
        if should_stop is not None and should_stop():
            status = "cancelled"
            break
        student = _kd_student_after(base, teacher, epoch, should_stop)
        if student is None:
            status = "cancelled"
            break
        hard = relative_variance(gradient_statistics(student, hard_loss, x, y, teacher_logits), config.batch_size)
        for temperature in config.temperatures:
            soft_stats = gradient_statistics(student, soft_loss, x, y, teacher_logits, float(temperature))
            point = {"epoch": epoch, "temperature": float(temperature), "batch_size": config.batch_size,
                     "hard_relative_variance": hard,
                     "soft_relative_variance": relative_variance(soft_stats, config.batch_size)}
            points.append(point)
            yield Measured(len(points), total, point)
    if len(points) < total and status == "completed":
        yield Notice("some points were not measured")
    yield Finished(status, {"points": points, "n_train": len(x), "seed": base.seed})


def _kd_student_after(config: DistillConfig, teacher: nn.Module, epochs: int, should_stop) -> nn.Module | None:
    """The KD student after `epochs` epochs (0: its initial weights); None when stopped first. The same seed draws
    the same batches, so the first e epochs of a longer run are exactly these."""
    from kdviz.core.data import load_dataset

    if epochs == 0:
        return initial_student(config, load_dataset(config.dataset))
    finished = None
    for event in distill(dataclasses.replace(config, epochs=epochs), teacher, should_stop, students=("kd",)):
        if isinstance(event, Finished):
            finished = event
    return finished.models["kd"] if finished is not None and finished.status == "completed" else None


def summarise(runs: list[dict]) -> list[dict]:
    """Per (epoch, temperature) over seeds: mean and std of both relative variances and of their ratio soft ÷ hard,
    and on how many seeds the soft term's was the lower."""
    from kdviz.core.results import mean_std

    groups: dict[tuple, list[dict]] = {}
    for result in runs:
        for point in result["points"]:
            groups.setdefault((point["epoch"], point["temperature"]), []).append(point)
    rows = []
    for (epoch, temperature), points in sorted(groups.items()):
        hard = [p["hard_relative_variance"] for p in points]
        soft = [p["soft_relative_variance"] for p in points]
        ratio = [s / h if h else math.inf for s, h in zip(soft, hard)]
        rows.append({"epoch": epoch, "temperature": temperature, "n_seeds": len(points),
                     "hard_mean": mean_std(hard)[0], "hard_std": mean_std(hard)[1],
                     "soft_mean": mean_std(soft)[0], "soft_std": mean_std(soft)[1],
                     "ratio_mean": mean_std(ratio)[0], "ratio_std": mean_std(ratio)[1],
                     "soft_lower": sum(s < h for s, h in zip(soft, hard))})
    return rows


# ---- the experiment's contract (kdviz.experiments): budget, command-line options, report -----------------------

def budget_configs(config: GradientVarianceConfig) -> list[DistillConfig]:
    """The trainings it does (for the server's budget): one KD student per measured epoch (0: none)."""
    return [dataclasses.replace(config.distill, epochs=e) for e in sorted(set(config.epochs)) if e > 0]


def budget_measurements(config: GradientVarianceConfig) -> list[tuple[str, "RunCost"]]:  # noqa: F821 — imported below
    """What measuring costs beyond the trainings (for the server's budget): [(what, RunCost)]. The memory is the
    process's peak while one point is measured, its work that of every point; gradient_statistics is the reference.

    Per-example gradients dwarf the training for any student beyond a toy: a chunk of CHUNK images holds CHUNK ×
    parameters float32 gradients at once (the lecture preset's 800×2 student: 1.3 GB), and each parameter's in turn
    is converted to float64 and squared (2 × CHUNK × its size × 8 bytes: 2.6 GB for its 784×800 layer)."""
    from kdviz.core.budget import (ALLOCATOR_SLACK, BACKWARD_FACTOR, RunCost, data_bytes, dataset_facts, model_cost,
                                   run_cost, train_images)

    check(config)
    base = config.distill
    facts = dataset_facts(base.dataset)
    student = model_cost(base.student, facts.input_shape, facts.num_classes)
    teacher = model_cost(base.teacher.model, facts.input_shape, facts.num_classes)
    n = train_images(base)
    chunk = min(CHUNK, n)
    memory = (data_bytes(base) + 4 * teacher.params + 4 * n * facts.num_classes  # data, teacher, its logits
              + (4 + 8) * student.params  # the student's weights and the float64 sums of the gradients
              + 2 * 4 * chunk * student.params  # one chunk's per-example gradients, all parameters at once, and
              # as much again in the heap: tensors under glibc's mmap threshold are not given back when freed
              + 2 * 8 * chunk * student.largest_parameter  # the largest one in float64, and its square
              + BACKWARD_FACTOR * chunk * student.activation_bytes_per_sample  # vmap's forward and backward
              + ALLOCATOR_SLACK)
    # Work: the hard loss's gradients and each temperature's, of every training image at every point (a forward and
    # a backward each), plus 3 FLOPs a gradient element to reduce them; the teacher labels the images once.
    passes = len(set(config.epochs)) * (1 + len(config.temperatures))
    work = passes * n * (BACKWARD_FACTOR * student.flops_per_sample + 3 * student.params)
    work += n * teacher.flops_per_sample
    # Training the students to the measured epochs while the measured images and their teacher's logits are held.
    training = run_cost(base, teacher_cached=True).memory_bytes + n * (4 * math.prod(facts.input_shape) + 8) \
        + 4 * n * facts.num_classes
    return [("Measuring the per-example gradients", RunCost(int(memory), float(work), 0)),
            ("Training while the measured images are held", RunCost(int(training), 0.0, 0))]


def report(config: GradientVarianceConfig, runs: list[dict]) -> dict:
    """The JSON of `python -m kdviz experiment gradient-variance`: runs is [{"seed", **Finished.summary}]."""
    return {"experiment": NAME, "points": [{"seed": run["seed"], **point} for run in runs for point in run["points"]],
            "runs": runs, "summary": summarise(runs)}


def verdict(rows: list[dict]) -> str:
    """One plain sentence on the lecture's claim, from the summary rows, saying where it does not hold."""
    lower = [row for row in rows if row["soft_lower"] == row["n_seeds"]]
    if len(lower) == len(rows):
        return ("Agrees with the claim: the soft term's gradients had the lower relative variance at every point "
                "measured, on every seed.")
    if all(row["soft_lower"] == 0 for row in rows):
        return "Disagrees with the claim: the soft term's gradients never had the lower relative variance."
    others = [row for row in rows if row["soft_lower"] < row["n_seeds"]]
    where = "; ".join(f"epoch {row['epoch']}, T = {row['temperature']:g} (lower on {row['soft_lower']} of "
                      f"{row['n_seeds']} seeds)" for row in others[:6])
    how = "Mostly agrees" if 2 * len(lower) > len(rows) else "Agrees only in part"
    return (f"{how}: the soft term's gradients had the lower relative variance on every seed at {len(lower)} of "
            f"{len(rows)} points; not at {where}.")


def format_text(result: dict) -> str:
    rows = result["summary"]
    lines = [f"{'epoch':>5} {'T':>5} {'hard rel. var.':>16} {'soft rel. var.':>16} {'soft ÷ hard':>12} "
             f"{'soft lower':>10}"]
    for row in rows:
        lines.append(f"{row['epoch']:>5} {row['temperature']:>5g} {row['hard_mean']:>16.3g} "
                     f"{row['soft_mean']:>16.3g} {row['ratio_mean']:>12.3f} "
                     f"{row['soft_lower']:>4}/{row['n_seeds']:<5}")
    lines.append(verdict(rows))
    return "\n".join(lines)
