"""Ensemble: "ten experts, but just one model". N teachers, each trained on hard labels, are combined into one
target and distilled into a single student (Hinton, Vinyals & Dean 2015, §1 and §4: their speech system distilled
an ensemble of 10 acoustic models into one model of the same size). Is the ensemble's student better than the
student of the best single teacher?

The teachers: teacher i is the base teacher (`distill.teacher`) with seed base seed + i and, if `teacher_widths` is
given, width teacher_widths[i]. Teacher 0 is the base teacher itself (the one the run manager and the CLI have
already prepared) unless teacher_widths[0] changes its width. Every teacher is cached on disk (kdviz.core.teachers)
and none depends on `distill.seed`, the students' seed: over several seeds the same cached ensemble is reused, and
only the students change.

Three students of the same architecture, one distill run's config (same initial weights, same batches, same
dropout masks: only the targets differ):

* hard: hard labels only (its agreement and KL are measured against the ensemble);
* ensemble_kd: KD towards the ensemble (T, α, epochs... the base config's);
* best_teacher_kd: KD towards the best single teacher, chosen by **validation** accuracy (ties: the lower index);
  its test accuracy is only reported.

The ensemble is one teacher module (EnsembleTeacher) whose logits are the combined target's, so the engine's
distill() trains towards it unchanged. With p_i = softmax(z_i / T) teacher i's probabilities at T, the two ways of
combining (combine_logits):

* "probabilities": m = (1/n) Σ_i p_i, the mean of the teachers' probabilities (Hinton 2015 §4's ensemble). Its
  logits are T · log m, since softmax(T · log m / T) = m / Σ m = m.
* "logits": the mean logits z̄ = (1/n) Σ_i z_i; softmax(z̄ / T) ∝ Π_i p_i^(1/n), the normalised geometric mean of the
  teachers' probabilities, which punishes a class that any one teacher rules out.

Averaging the per-teacher KL terms instead is *not* a third target: with q = softmax(s / T) the student's,

    (1/n) Σ_i KL(p_i ‖ q) = (1/n) Σ_i Σ_c p_ic log p_ic − Σ_c m_c log q_c
                          = KL(m ‖ q) + [H(m) − (1/n) Σ_i H(p_i)]
                          = KL(m ‖ q) + (1/n) Σ_i KL(p_i ‖ m),

and the bracket, the teachers' mean divergence from their mean (a generalised Jensen–Shannon divergence), does not
depend on the student. Both losses have the same gradient on the student's logits, T²·(1/T)(q − m) = T (q − m):
averaging the KL terms *is* distilling the averaged probabilities (per_teacher_kl; tests/test_ensemble.py checks it
with autograd). Only averaging logits changes the target: its gradient is T (q − g), g the geometric mean.

The ensemble's own prediction (its accuracy, and the students' agreement with it) is the argmax of its target at
the distillation temperature T: for "probabilities" the argmax of the mean probabilities at T (at T = 20 close to
averaging logits, as T → 0 a majority vote), for "logits" the argmax of the mean logits at any T.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from kdviz.core.flags import flag
from kdviz.core.engine import (DistillConfig, Diverged, Finished, Notice, StopCheck, TeacherConfig, check_config,
                               check_teacher_config, distill, predict_logits, resolve_device)
from kdviz.core.kd import check_temperature, distillation_loss
from kdviz.core.roles import ROLE_NAMES
from kdviz.experiments.events import Measured, relay

NAME = "ensemble"
MIN_TEACHERS = 2
MAX_TEACHERS = 10
MAX_WIDTH = 8192
COMBINES = ("probabilities", "logits")
COMBINE_WORDS = {"probabilities": "the mean of their probabilities at T = {T:g}", "logits": "their mean logits"}
ROLES = ("hard", "best_teacher_kd", "ensemble_kd")  # the three students, in the order every table shows them
STUDENT_FACTS = ("accuracy", "val_accuracy", "params", "agreement", "kl_to_teacher")  # + flops_per_image


@dataclass(frozen=True)
class EnsembleConfig:
    """The base distillation (`distill`: teacher 0 is exactly distill.teacher; the students, T, α, epochs, seed...
    are its) and the ensemble: n_teachers teachers (2 to 10) with seeds distill.teacher.seed + i, widths
    teacher_widths (() = every teacher has the base teacher's width, else one width per teacher), combined by
    the mean of their probabilities at T or by their mean logits. The teachers do not depend on distill.seed (the
    students' seed): over several seeds the same cached ensemble is reused."""

    distill: DistillConfig
    n_teachers: int = flag(5, "--teachers", f"teachers in the ensemble, {MIN_TEACHERS} to {MAX_TEACHERS} (default "
                           "{default}; with --teacher-widths: one per width)", "N")
    teacher_widths: tuple[int, ...] = flag((), "--teacher-widths", "one width per teacher (default: every teacher has "
                                           "the base teacher's width)", "W")
    combine: str = flag("probabilities", "--combine", "the target: the mean of the teachers' probabilities at T "
                        "(default), or their mean logits", choices=COMBINES)


def default_config() -> EnsembleConfig:
    """The offline default (on one thread of a 2-core machine: 3 s for a seed that trains the four further
    teachers, under 1 s a seed once they are cached, 8.5 s for the whole command on a fresh KDVIZ_HOME): five of the
    quick preset's digits teachers (mlp 256×2, 30 epochs, seeds 0-4) and its students' settings (mlp 128×2 on 100
    images, T = 20, α = 0.9, 80 epochs, batch 64, AdamW 1e-2) without jitter, like the capacity experiment's default.
    T, α and the epochs were chosen on validation for single-teacher KD with jitter (sweeps/SWEEP_QUICK.md): if they
    favour anyone it is the best single teacher's student. Five teachers is a lecture's choice, not a tuned one."""
    from kdviz.core.presets import get_preset

    return EnsembleConfig(dataclasses.replace(get_preset("quick"), augment=0), n_teachers=5)


def widths(config: EnsembleConfig) -> tuple[int, ...]:
    """Every teacher's width: teacher_widths, or the base teacher's width n_teachers times."""
    return config.teacher_widths or (config.distill.teacher.model.width,) * config.n_teachers


def teacher_configs(config: EnsembleConfig) -> list[TeacherConfig]:
    """Teacher i: the base teacher with seed + i and width widths(config)[i]; teacher 0 is distill.teacher when its
    width is the base width. None depends on distill.seed (the students' seed)."""
    base = config.distill.teacher
    return [dataclasses.replace(base, seed=base.seed + i, model=dataclasses.replace(base.model, width=width))
            for i, width in enumerate(widths(config))]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check(config: EnsembleConfig) -> EnsembleConfig:
    """ValueError (one line, naming the value) for a bad number of teachers, widths, combine or base config."""
    from kdviz.core.budget import dataset_facts

    n = config.n_teachers
    if not (_is_int(n) and MIN_TEACHERS <= n <= MAX_TEACHERS):
        raise ValueError(f"the ensemble needs {MIN_TEACHERS} to {MAX_TEACHERS} teachers, got {n!r}")
    given = config.teacher_widths
    if not isinstance(given, tuple):
        raise ValueError(f"teacher widths must be a tuple of integers, got {given!r}")
    for width in given:
        if not (_is_int(width) and 1 <= width <= MAX_WIDTH):
            raise ValueError(f"teacher widths must be integers in [1, {MAX_WIDTH}], got {width!r}")
    if given and len(given) != n:
        raise ValueError(f"give one teacher width per teacher: {n} teachers, got {len(given)} widths {given!r}")
    if not isinstance(config.combine, str) or config.combine not in COMBINES:
        raise ValueError(f"combine must be one of {', '.join(COMBINES)}, got {config.combine!r}")
    check_config(config.distill)
    for teacher in teacher_configs(config):
        check_teacher_config(teacher)
    n_train = dataset_facts(config.distill.dataset).train
    if config.distill.train_subset > n_train:
        raise ValueError(f"train subset {config.distill.train_subset} is larger than {config.distill.dataset}'s "
                         f"training set ({n_train} images; 0 = all)")
    return config


# ---- the ensemble as one teacher --------------------------------------------------------------------------------

def combine_logits(logits: torch.Tensor, temperature: float, combine: str) -> torch.Tensor:
    """logits: [n_teachers, batch, classes] → [batch, classes] logits whose softmax at T is the ensemble's target.

    "probabilities": T · log(mean_i softmax(z_i / T)); softmax(that / T) is exactly the mean of the teachers'
    probabilities at T. Computed as T · (logsumexp_i log_softmax(z_i / T) − log n): stable for any finite logits.
    "logits": mean_i z_i; its softmax at T is the normalised geometric mean of the teachers' probabilities at T."""
    if not isinstance(combine, str) or combine not in COMBINES:
        raise ValueError(f"combine must be one of {', '.join(COMBINES)}, got {combine!r}")
    temperature = check_temperature(temperature)
    if logits.ndim < 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must be [teachers, ..., classes] with at least one teacher, got shape "
                         f"{tuple(logits.shape)}")
    if combine == "logits":
        return logits.mean(dim=0)
    log_p = F.log_softmax(logits / temperature, dim=-1)
    return temperature * (torch.logsumexp(log_p, dim=0) - math.log(logits.shape[0]))


class EnsembleTeacher(nn.Module):
    """Teachers as one module: forward(x) = combine_logits(each teacher's logits on x), so distill() trains towards
    the ensemble unchanged and counts its parameters as the sum of the teachers' (they sit in an nn.ModuleList).
    The teachers are not copied: the module only holds them."""

    def __init__(self, teachers, temperature: float, combine: str = "probabilities"):
        super().__init__()
        teachers = list(teachers)
        if not teachers:
            raise ValueError("an ensemble needs at least one teacher, got none")
        if not isinstance(combine, str) or combine not in COMBINES:
            raise ValueError(f"combine must be one of {', '.join(COMBINES)}, got {combine!r}")
        self.teachers = nn.ModuleList(teachers)
        self.temperature = check_temperature(temperature)
        self.combine = combine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return combine_logits(torch.stack([teacher(x) for teacher in self.teachers]), self.temperature, self.combine)


def per_teacher_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over the teachers of T² · KL(p_i ‖ q) (batch mean): distillation_loss's soft term towards each teacher
    of teacher_logits [n_teachers, batch, classes], averaged. Its gradient on the student's logits equals that of the
    soft term towards combine_logits(teacher_logits, T, "probabilities"); the values differ by a constant (module
    docstring)."""
    labels = torch.zeros(student_logits.shape[0], dtype=torch.long, device=student_logits.device)  # soft term: unread
    return torch.stack([distillation_loss(student_logits, logits, labels, temperature, 1.0)["soft"]
                        for logits in teacher_logits]).mean()


# ---- the run ----------------------------------------------------------------------------------------------------

def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of logits already computed (engine.accuracy, without computing them again)."""
    return float((logits.argmax(-1) == labels).float().mean())


def _on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on device, copied if it is elsewhere: a teacher that other runs share is never moved."""
    if next(model.parameters()).device != device:
        model = copy.deepcopy(model).to(device)
    return model.eval()


def _flops(spec, dataset) -> float:
    from kdviz.core.budget import model_cost

    return model_cost(spec, dataset.input_shape, dataset.num_classes).flops_per_sample


def _student_facts(facts: dict, flops: float) -> dict:
    return {**{key: facts[key] for key in STUDENT_FACTS}, "flops_per_image": flops}


def best_teacher(teachers: list[dict]) -> int:
    """The index of the teacher with the highest validation accuracy (ties: the lower index)."""
    return max(teachers, key=lambda t: (t["val_accuracy"], -t["index"]))["index"]


def run(config: EnsembleConfig, teacher: nn.Module, should_stop: StopCheck | None = None) -> Iterator:
    """Yield Measured after each teacher, the ensemble, the hard-label and ensemble-KD students, and the best
    teacher's KD student (n_teachers + 3 points), the engine's Notice and Diverged events, then Finished with the
    summary. `teacher` is teacher 0 (distill.teacher, prepared by the caller); the others are prepared here
    (cached). Stopping keeps what was measured (status "cancelled"); a divergence says so and ends the run
    ("diverged")."""
    check(config)
    started = time.perf_counter()
    summary: dict = {"seed": config.distill.seed, "combine": config.combine,
                     "temperature": float(config.distill.temperature), "teachers": []}
    status = yield from _measure(config, teacher, should_stop, summary)
    summary["seconds"] = time.perf_counter() - started
    yield Finished(status, summary)


def _distill(config: DistillConfig, teacher: nn.Module, should_stop, students: tuple[str, ...]):
    """distill(), passing its Notice and Diverged events through; returns its Finished event (None if none)."""
    return (yield from relay(distill(config, teacher, should_stop, students)))


def _measure(config: EnsembleConfig, teacher: nn.Module, should_stop, summary: dict):
    """run()'s steps, filling summary as each is measured; returns the status."""
    from kdviz.core.data import load_dataset
    from kdviz.core.models import count_parameters
    from kdviz.core.teachers import prepare_teacher

    base = config.distill
    device = resolve_device(base.device)
    dataset = load_dataset(base.dataset)
    summary |= {"n_train": base.train_subset or len(dataset.train_y), "n_test": len(dataset.test_y),
                "n_val": len(dataset.val_y)}
    val_x, val_y, test_x, test_y = (t.to(device) for t in (dataset.val_x, dataset.val_y, dataset.test_x,
                                                           dataset.test_y))
    configs = teacher_configs(config)
    total, done = len(configs) + 3, 0

    def stopped() -> bool:
        return should_stop is not None and bool(should_stop())

    # 1. the teachers, each measured on validation and test
    models, val_logits, test_logits = [], [], []
    for index, teacher_config in enumerate(configs):
        if stopped():
            return "cancelled"
        if index == 0 and teacher_config == base.teacher:
            model, cached = teacher, True  # the caller's: ready, whether it was trained for this run or not
        else:
            finished = None
            for event in prepare_teacher(teacher_config, base.device, should_stop):
                if isinstance(event, Finished):
                    finished = event
                elif isinstance(event, (Notice, Diverged)):
                    yield event
            if finished is None or finished.status != "completed":
                status = finished.status if finished is not None else "cancelled"
                if status == "diverged":
                    yield Notice(f"teacher {index} (seed {teacher_config.seed}) diverged while training; the "
                                 "ensemble is not measured")
                return status
            model, cached = finished.models["teacher"], bool(finished.summary.get("cached"))
        model = _on_device(model, device)
        models.append(model)
        val_logits.append(predict_logits(model, val_x))
        test_logits.append(predict_logits(model, test_x))
        point = {"index": index, "seed": teacher_config.seed, "width": teacher_config.model.width,
                 "params": count_parameters(model), "flops_per_image": _flops(teacher_config.model, dataset),
                 "accuracy": _accuracy(test_logits[-1], test_y), "val_accuracy": _accuracy(val_logits[-1], val_y),
                 "cached": cached}
        summary["teachers"].append(point)
        done += 1
        yield Measured(done, total, {"kind": "teacher", **point})

    # 2. the ensemble: the argmax of its combined logits
    temperature = float(base.temperature)
    ensemble = EnsembleTeacher(models, temperature, config.combine)
    combined_val = combine_logits(torch.stack(val_logits), temperature, config.combine)
    combined_test = combine_logits(torch.stack(test_logits), temperature, config.combine)
    summary["ensemble"] = {"n_teachers": len(models), "accuracy": _accuracy(combined_test, test_y),
                           "val_accuracy": _accuracy(combined_val, val_y), "params": count_parameters(ensemble),
                           "flops_per_image": sum(t["flops_per_image"] for t in summary["teachers"]),
                           "combine": config.combine, "temperature": temperature}
    done += 1
    yield Measured(done, total, {"kind": "ensemble", **summary["ensemble"]})

    # 3. the best single teacher, on validation
    best = best_teacher(summary["teachers"])
    summary["best_teacher"] = best
    student_flops = _flops(base.student, dataset)

    # 4. the hard-label and the ensemble's KD student (one distill run: same weights, same batches)
    if stopped():
        return "cancelled"
    finished = yield from _distill(base, ensemble, should_stop, ("hard", "kd"))
    if finished is None or finished.status == "cancelled":
        return "cancelled"
    if finished.status != "completed":
        yield Notice(f"the hard-label and ensemble KD students {finished.status}; the best teacher's KD student is "
                     "not trained")
        return finished.status
    summary["n_train"] = finished.summary["n_train"]
    summary["hard"] = _student_facts(finished.summary["hard"], student_flops)
    summary["ensemble_kd"] = _student_facts(finished.summary["kd"], student_flops)
    done += 1
    yield Measured(done, total, {"kind": "students", "hard": summary["hard"], "ensemble_kd": summary["ensemble_kd"]})

    # 5. the best single teacher's KD student: the same config, so the same initial weights and batches
    if stopped():
        return "cancelled"
    finished = yield from _distill(base, models[best], should_stop, ("kd",))
    if finished is None or finished.status == "cancelled":
        return "cancelled"
    if finished.status != "completed":
        yield Notice(f"the best teacher's KD student {finished.status}")
        return finished.status
    summary["best_teacher_kd"] = {**_student_facts(finished.summary["kd"], student_flops), "teacher_index": best}
    done += 1
    yield Measured(done, total, {"kind": "best_teacher_kd", **summary["best_teacher_kd"]})
    return "completed"


# ---- the experiment's contract (kdviz.experiments): budget, command-line options, report -----------------------

def budget_configs(config: EnsembleConfig) -> list[DistillConfig]:
    """The trainings it does (for the server's budget): the distillation towards the ensemble (the first: it may
    train the base teacher first; the other teachers' training and labelling are in budget_teachers), and the best
    teacher's, costed with the most expensive teacher since which one is best is known only after training."""
    from kdviz.core.budget import dataset_facts, model_cost

    facts = dataset_facts(config.distill.dataset)
    costliest = max(teacher_configs(config),
                    key=lambda t: model_cost(t.model, facts.input_shape, facts.num_classes).flops_per_sample)
    return [config.distill, dataclasses.replace(config.distill, teacher=costliest)]


def budget_teachers(config: EnsembleConfig) -> list[tuple[TeacherConfig, int]]:
    """The teachers it trains itself (all but distill.teacher), each with the images it labels afterwards: the
    students' training images (every epoch when they are jittered), and the validation and test parts twice (the
    teacher's own accuracy, and the ensemble's in the distillation)."""
    from kdviz.core.budget import dataset_facts, train_images

    base = config.distill
    facts = dataset_facts(base.dataset)
    labelled = train_images(base) * (base.epochs if base.augment else 1) + 2 * (facts.val + facts.test)
    return [(teacher, labelled) for teacher in teacher_configs(config) if teacher != base.teacher]


def config_from_flags(given: dict, distill_config: DistillConfig | None, device: str | None = None) -> EnsembleConfig:
    """kdviz.experiments.config_from_flags, but --teacher-widths also says how many teachers (unless --teachers
    says otherwise, which check then refuses)."""
    if given.get("teacher_widths"):
        given = {"n_teachers": len(given["teacher_widths"]), **given}
    base = default_config()
    return check(dataclasses.replace(base, distill=distill_config or base.distill, **given))


def _most_teachers(runs: list[dict]) -> dict | None:
    """The first run with the most teachers measured (teachers do not depend on the students' seed)."""
    with_teachers = [run for run in runs if run.get("teachers")]
    return max(with_teachers, key=lambda run: len(run["teachers"])) if with_teachers else None


def summarise(runs: list[dict]) -> dict:
    """Over the seeds that trained all three students (n_seeds; n_runs counts all): each student's mean and std
    on test and validation, ensemble KD − best-teacher KD (its mean and std; on how many seeds strictly better,
    tied), and on how many seeds each KD student beat the hard-label one."""
    from kdviz.core.results import mean_std

    complete = [run for run in runs if all(run.get(role) for role in ROLES)]
    out: dict = {"n_seeds": len(complete), "n_runs": len(runs)}
    for split, key in (("test", "accuracy"), ("val", "val_accuracy")):
        for role in ROLES:
            values = [run[role][key] for run in complete]
            out[f"{role}_{key}_mean"], out[f"{role}_{key}_std"] = mean_std(values) if values else (None, None)
        gains = [run["ensemble_kd"][key] - run["best_teacher_kd"][key] for run in complete]
        out[f"ensemble_gain_{split}_mean"], out[f"ensemble_gain_{split}_std"] = mean_std(gains) if gains \
            else (None, None)
        out[f"ensemble_beats_single_{split}"] = sum(g > 0 for g in gains)
        out[f"ensemble_ties_single_{split}"] = sum(g == 0 for g in gains)
        for role in ("ensemble_kd", "best_teacher_kd"):
            out[f"{role}_beats_hard_{split}"] = sum(run[role][key] > run["hard"][key] for run in complete)
    return out


def report(config: EnsembleConfig, runs: list[dict]) -> dict:
    """The JSON of `python -m kdviz experiment ensemble`: runs is [{"seed", "status", **Finished.summary}]. The
    teachers and the ensemble come from the first run that has them all (they do not depend on the students' seed);
    "runs" holds each seed's three students; "summary" their means over the seeds that trained all three."""
    from kdviz.core.budget import dataset_facts, model_cost

    source = _most_teachers(runs)
    teachers = [{k: v for k, v in t.items() if k != "cached"} for t in source["teachers"]] if source else []
    ensemble = next((run["ensemble"] for run in runs if run.get("ensemble")), None)
    best = next((run["best_teacher"] for run in runs if run.get("best_teacher") is not None), None)
    chosen = next((dict(t) for t in teachers if t["index"] == best), None)
    facts = dataset_facts(config.distill.dataset)
    student = model_cost(config.distill.student, facts.input_shape, facts.num_classes)
    summary = summarise(runs)
    summary["compression"] = ensemble["params"] / student.params if ensemble else None
    summary["flops_ratio"] = ensemble["flops_per_image"] / student.flops_per_sample if ensemble else None
    slim = [{"seed": run.get("seed"), "status": run.get("status", "completed"), "seconds": run.get("seconds"),
             **{role: run[role] for role in ROLES if run.get(role)}} for run in runs]
    return {"experiment": NAME, "n_teachers": config.n_teachers, "combine": config.combine,
            "temperature": float(config.distill.temperature), "teachers": teachers, "ensemble": ensemble,
            "best_teacher": chosen, "student": {"params": student.params, "flops_per_image": student.flops_per_sample},
            "runs": slim, "summary": summary, "verdict": verdict(summary), "dataset": config.distill.dataset}


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def _points(value: float) -> str:
    return f"{100 * value:+.2f} points"


def verdict(summary: dict) -> str:
    """Plain sentences: did the ensemble's student beat the best single teacher's on validation (what decides) and
    on test (reported), over how many seeds, and is the difference larger than its spread; did KD beat hard labels."""
    n = summary["n_seeds"]
    if n == 0:
        return "No seed trained all three students, so the ensemble's student cannot be compared yet."
    over = "on 1 seed" if n == 1 else f"over {n} seeds (means)"

    def compare(split: str, key: str) -> str:
        gain, std = summary[f"ensemble_gain_{split}_mean"], summary[f"ensemble_gain_{split}_std"]
        wins, ties = summary[f"ensemble_beats_single_{split}"], summary[f"ensemble_ties_single_{split}"]
        word = "beat" if gain > 0 else "lost to" if gain < 0 else "tied with"
        seeds = "" if n == 1 else f"; better on {wins} of {n} seeds, tied on {ties}"
        text = (f"the ensemble's student {word} the best single teacher's: "
                f"{_pct(summary[f'ensemble_kd_{key}_mean'])} vs {_pct(summary[f'best_teacher_kd_{key}_mean'])} "
                f"({_points(gain)}{seeds})")
        if n > 1 and gain != 0 and abs(gain) <= std:
            text += f", a difference within its spread over seeds (± {100 * std:.2f} points), so not a clear one"
        return text

    lines = [f"On validation (what decides), {over}, {compare('val', 'val_accuracy')}.",
             f"On test (only reported), {compare('test', 'accuracy')}."]
    val_gain, test_gain = summary["ensemble_gain_val_mean"], summary["ensemble_gain_test_mean"]
    if (val_gain > 0) != (test_gain > 0) or (val_gain < 0) != (test_gain < 0):
        lines.append("Test does not confirm validation here.")
    hard = summary["hard_val_accuracy_mean"]
    kd = [f"KD from the {name} {_points(summary[f'{role}_val_accuracy_mean'] - hard)}"
          + ("" if n == 1 else f" (better on {summary[f'{role}_beats_hard_val']} of {n} seeds)")
          for role, name in (("ensemble_kd", "ensemble"), ("best_teacher_kd", "best teacher"))]
    helped = [name for role, name in (("ensemble_kd", "the ensemble's"), ("best_teacher_kd", "the best teacher's"))
              if summary[f"{role}_val_accuracy_mean"] > hard]
    said = "both KD students beat" if len(helped) == 2 else "neither KD student beat" if not helped else \
        f"only {helped[0]} KD student beat"
    lines.append(f"Against hard labels ({_pct(hard)} on validation) {said} them: {' and '.join(kd)}.")
    return " ".join(lines)


def format_text(result: dict) -> str:
    from kdviz.core.budget import format_flops

    lines = []
    teachers, ensemble, best = result["teachers"], result["ensemble"], result["best_teacher"]
    if teachers:
        lines.append(f"{'teacher':<9} {'seed':>4} {'width':>6} {'params':>10} {'FLOPs/image':>12} {'val %':>7} "
                     f"{'test %':>7}")
        for t in teachers:
            mark = "  ← best on validation" if best and t["index"] == best["index"] else ""
            lines.append(f"{t['index']:<9} {t['seed']:>4} {t['width']:>6} {t['params']:>10,} "
                         f"{format_flops(t['flops_per_image']):>12} {100 * t['val_accuracy']:>7.2f} "
                         f"{100 * t['accuracy']:>7.2f}{mark}")
    if ensemble:
        lines.append(f"{'ensemble':<9} {'':>4} {'':>6} {ensemble['params']:>10,} "
                     f"{format_flops(ensemble['flops_per_image']):>12} {100 * ensemble['val_accuracy']:>7.2f} "
                     f"{100 * ensemble['accuracy']:>7.2f}  ({ensemble['n_teachers']} teachers: "
                     f"{COMBINE_WORDS[ensemble['combine']].format(T=ensemble['temperature'])})")
    s, student = result["summary"], result["student"]
    if s.get("compression") is not None:
        lines.append(f"one student: {student['params']:,} parameters, {format_flops(student['flops_per_image'])} "
                     f"an image: the ensemble is {s['compression']:.1f}× its parameters and {s['flops_ratio']:.1f}× "
                     "its FLOPs")
    names = {"hard": "hard", "best_teacher_kd": "best-teacher KD", "ensemble_kd": "ensemble KD"}
    header = f"{'seed':>6} " + " ".join(f"{names[r] + ' val':>19}" for r in ROLES) + " " + \
        " ".join(f"{names[r] + ' test':>20}" for r in ROLES)
    lines += ["", header]
    for run in result["runs"]:
        cells = [f"{100 * run[r][k]:>{w}.2f}" if run.get(r) else f"{'—':>{w}}"
                 for k, w in (("val_accuracy", 19), ("accuracy", 20)) for r in ROLES]
        status = "" if run["status"] == "completed" else f"  ({run['status']})"
        lines.append(f"{run['seed']!s:>6} " + " ".join(cells) + status)
    n = s["n_seeds"]
    if n > 1:
        cells = [f"{100 * s[f'{r}_{k}_mean']:.2f}±{100 * s[f'{r}_{k}_std']:.2f}".rjust(w)
                 for k, w in (("val_accuracy", 19), ("accuracy", 20)) for r in ROLES]
        lines.append(f"{'mean':>6} " + " ".join(cells))
    lines += ["", result["verdict"],
              f"Accuracies in %; the {ROLE_NAMES['hard']}'s agreement is with the ensemble; the best teacher is "
              "chosen on validation, test is only reported."]
    return "\n".join(lines)
