"""Missing class: a student that never saw one digit can still learn it from the teacher's soft labels (Hinton,
Vinyals & Dean 2015, §3: "Omitting all examples of the digit 3 from the transfer set ... the distilled model makes
206 test errors of which 133 are on the 1010 threes ... If the bias for the 3 is increased by 3.5 the distilled
model makes 109 errors of which 14 are on 3s", i.e. 98.6% of the threes right).

Both students train on the training set minus every image of the omitted class (after the config's train_subset
draw, so the other classes keep exactly the images the plain run would have). The hard-label student has no way
to know that class: its cross-entropy only ever pushes the class's logit down. The KD student sees it in the
teacher's soft labels on the other digits (a 3 is what some 5s and 8s look a little like). Because neither saw a
single 3 in training, the class's output bias is too low; raising it by a shift fixes much of that. The shift is
chosen twice, never on test:

  (a) on validation: the shift of the grid that maximises the student's overall validation accuracy;
  (b) label-free: the shift at which the share of validation images the student predicts as the omitted class
      matches the share the teacher predicts as it (no validation label is read).

Test accuracy on the omitted class and overall is reported before and after each.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from kdviz.core.flags import flag
from kdviz.core.engine import DistillConfig, Finished, Notice, StopCheck, check_config, distill, predict_logits
from kdviz.core.roles import ROLE_NAMES, STUDENTS
from kdviz.experiments.events import Measured

NAME = "missing-class"
TARGET = 0.90  # the target: the KD student gets at least this share of the omitted class right after (a)
HINTON = {"omitted": 3, "errors": 206, "omitted_errors": 133, "n_omitted_test": 1010, "bias_shift": 3.5,
          "omitted_accuracy_after": 0.986}


@dataclass(frozen=True)
class MissingClassConfig:
    """The distillation (`distill`: teacher, student, T, α, epochs, seed, train_subset ...) with class `omitted`
    taken out of the students' transfer set; the output-bias shifts searched are 0, shift_step, ..., max_shift."""

    distill: DistillConfig
    omitted: int = flag(3, "--omitted", "the class left out of the students' transfer set (default {default})",
                        "CLASS")
    # the hard-label student's label-free shift passes 15 (docs/experiments/MISSING_CLASS.md)
    max_shift: float = flag(30.0, "--max-shift", "the largest output-bias shift searched (default {default})", "B")
    shift_step: float = flag(0.25, "--shift-step", "the bias-shift grid's step (default {default})", "S")

    @property
    def shifts(self) -> torch.Tensor:
        """The bias-shift grid, in float64 so that 0.25-steps are exact."""
        count = int(round(self.max_shift / self.shift_step))
        return torch.arange(count + 1, dtype=torch.float64) * self.shift_step


def default_config() -> MissingClassConfig:
    """The offline default (about 40 s on one CPU thread): the lecture preset (mnist5k, the cached 1200×2 teacher,
    an 800×2 student, T = 20, ±2-pixel jitter) on all 3200 training images but the omitted digit's, with α = 0.5
    and 40 epochs: chosen by the KD student's validation accuracy on the omitted digit after the validation-chosen
    shift (docs/experiments/MISSING_CLASS.md)."""
    from kdviz.core.presets import get_preset

    base = get_preset("lecture")
    return MissingClassConfig(dataclasses.replace(base, train_subset=0, temperature=20.0, alpha=0.5, epochs=40))


def check(config: MissingClassConfig) -> MissingClassConfig:
    """Validate everything that can be checked without loading data; ValueError naming the bad value."""
    from kdviz.core.budget import dataset_facts

    check_config(config.distill)
    classes = dataset_facts(config.distill.dataset).num_classes
    if not isinstance(config.omitted, int) or isinstance(config.omitted, bool) or not 0 <= config.omitted < classes:
        raise ValueError(f"omitted class must be an integer in [0, {classes - 1}] for {config.distill.dataset}, "
                         f"got {config.omitted!r}")
    for name in ("max_shift", "shift_step"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 100):
            raise ValueError(f"{name.replace('_', ' ')} must be a number in (0, 100], got {value!r}")
    if config.max_shift / config.shift_step > 10_000:
        raise ValueError(f"at most 10000 shifts: max shift {config.max_shift} / step {config.shift_step} is too many")
    return config


# ---- the bias shift (pure functions of logits: what the page's slider calls) ----------------------------------

def shift_logits(logits: torch.Tensor, omitted: int, shift: float) -> torch.Tensor:
    """A copy of logits with the omitted class's column raised by shift: what raising that output bias does."""
    shifted = logits.clone()
    shifted[..., omitted] += shift
    return shifted


def shifted_model(model: nn.Module, omitted: int, shift: float) -> nn.Module:
    """A copy of model whose last Linear layer's bias for the omitted class is raised by shift; the trained model
    itself is never changed (runs and pages share it)."""
    copied = copy.deepcopy(model)
    last = [module for module in copied.modules() if isinstance(module, nn.Linear)]
    if not last or last[-1].bias is None:
        raise ValueError("the model has no last Linear layer with a bias to shift")
    with torch.no_grad():
        last[-1].bias[omitted] += shift
    return copied


def predictions_by_shift(logits: torch.Tensor, omitted: int, shifts: torch.Tensor) -> torch.Tensor:
    """(shifts, images) predicted classes after each shift, all at once (a shift only changes one column)."""
    rest = logits.double().clone()
    own = rest[:, omitted].clone()
    rest[:, omitted] = -torch.inf
    best, best_class = rest.max(-1)  # the strongest other class; argmax's tie rule: the lower index wins
    raised = own[None, :] + shifts[:, None]
    wins = (raised > best[None, :]) | ((raised == best[None, :]) & (omitted < best_class[None, :]))
    return torch.where(wins, torch.full_like(best_class, omitted)[None, :], best_class[None, :])


def curve(logits: torch.Tensor, labels: torch.Tensor, omitted: int, shifts: torch.Tensor) -> dict:
    """Accuracy, accuracy on the omitted class and share predicted as it, at every shift (lists, for the page)."""
    predicted = predictions_by_shift(logits, omitted, shifts)
    mine = labels == omitted
    correct = predicted == labels[None, :]
    return {"shift": shifts.tolist(), "accuracy": correct.double().mean(1).tolist(),
            "omitted_accuracy": (correct[:, mine].double().mean(1) if mine.any() else
                                 torch.zeros(len(shifts), dtype=torch.float64)).tolist(),
            "omitted_share": (predicted == omitted).double().mean(1).tolist()}


def choose_on_validation(accuracy: list[float], shifts: list[float]) -> float:
    """The shift with the best validation accuracy; on a plateau of equal bests, its middle (lower of two):
    the shift least sensitive to where the plateau's edges fall on other images. The first plateau on ties."""
    best = max(accuracy)
    start = accuracy.index(best)
    end = start
    while end + 1 < len(accuracy) and accuracy[end + 1] == best:
        end += 1
    return shifts[(start + end) // 2]


def choose_label_free(share: list[float], target_share: float, shifts: list[float]) -> float:
    """The shift whose predicted share of the omitted class is nearest the teacher's (the smallest on ties):
    needs the validation images, not their labels."""
    gaps = [abs(s - target_share) for s in share]
    return shifts[gaps.index(min(gaps))]


# ---- the transfer set ------------------------------------------------------------------------------------------

def transfer_index(train_y: torch.Tensor, config: MissingClassConfig) -> torch.Tensor:
    """Indices of the students' training images: the config's draw (all, or train_subset's class-balanced one)
    minus every image of the omitted class."""
    from kdviz.core.data import stratified_subset

    base = config.distill
    index = (stratified_subset(train_y, base.train_subset, base.seed) if base.train_subset
             else torch.arange(len(train_y)))
    return index[train_y[index] != config.omitted]


# ---- the experiment --------------------------------------------------------------------------------------------

def run(config: MissingClassConfig, teacher: nn.Module, should_stop: StopCheck | None = None) -> Iterator:
    """Yield the engine's events (progress), a Measured point per student, then Finished with the summary and the
    two students in models; stopping ends with status "cancelled" and what was measured."""
    from kdviz.core.data import load_dataset

    check(config)
    dataset = load_dataset(config.distill.dataset)
    index = transfer_index(dataset.train_y, config)
    summary = {"omitted": config.omitted, "seed": config.distill.seed, "n_train": len(index),
               "n_omitted_train": int((dataset.train_y[index] == config.omitted).sum()),
               "n_omitted_val": int((dataset.val_y == config.omitted).sum()),
               "n_omitted_test": int((dataset.test_y == config.omitted).sum()),
               "n_val": len(dataset.val_y), "n_test": len(dataset.test_y)}
    if summary["n_omitted_val"] == 0 or summary["n_omitted_test"] == 0:
        raise ValueError(f"class {config.omitted} has no validation or test image in {config.distill.dataset}")
    trained = None
    for event in distill(dataclasses.replace(config.distill, train_subset=0), teacher, should_stop,
                         train_index=index):
        if isinstance(event, Finished):
            trained = event
        else:
            yield event
    summary["seconds"] = trained.summary.get("seconds")
    if trained.status != "completed":
        yield Finished(trained.status, summary)
        return
    teacher_share = float((_logits(teacher, dataset.val_x).argmax(-1) == config.omitted).double().mean())
    summary |= {"teacher_val_omitted_share": teacher_share,
                "teacher_omitted_accuracy": _omitted_accuracy(teacher, dataset, config.omitted)}
    status = "completed"
    for done, role in enumerate(STUDENTS, 1):
        if should_stop is not None and should_stop():
            status = "cancelled"
            break
        summary[role] = measure(trained.models[role], dataset, config, teacher_share)
        yield from _edge_notices(role, summary[role], config)
        yield Measured(done, len(STUDENTS), {"student": role, **summary[role]})
    yield Finished(status, summary, dict(trained.models))


def _edge_notices(role: str, figures: dict, config: MissingClassConfig) -> Iterator[Notice]:
    """A shift at the grid's top may be clipped: say so, so that nobody reads it as the rule's own answer."""
    top = float(config.shifts[-1])
    for key, rule in (("bias_shift", "validation-chosen"), ("label_free_shift", "label-free")):
        if figures[key] == top:
            yield Notice(f"the {ROLE_NAMES[role]}'s {rule} shift is the grid's largest ({top:g}); "
                         f"a larger max_shift may choose another")


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's logits on CPU, wherever the model lives (a teacher handed over on a GPU)."""
    return predict_logits(model, x.to(next(model.parameters()).device)).cpu()


def _omitted_accuracy(model: nn.Module, dataset, omitted: int) -> float:
    mine = dataset.test_y == omitted
    return float((_logits(model, dataset.test_x[mine]).argmax(-1) == omitted).double().mean())


def measure(model: nn.Module, dataset, config: MissingClassConfig, teacher_share: float) -> dict:
    """One student's figures: the two shifts (chosen on validation), and test before and after each."""
    shifts, omitted = config.shifts, config.omitted
    val = curve(_logits(model, dataset.val_x), dataset.val_y, omitted, shifts)
    chosen = choose_on_validation(val["accuracy"], val["shift"])
    label_free = choose_label_free(val["omitted_share"], teacher_share, val["shift"])
    picked = torch.tensor([0.0, chosen, label_free], dtype=torch.float64)
    test = curve(_logits(model, dataset.test_x), dataset.test_y, omitted, picked)
    at = lambda key, shift: val[key][val["shift"].index(shift)]  # noqa: E731 — the validation curve at a shift
    return {"bias_shift": chosen,
            "omitted_accuracy_before": test["omitted_accuracy"][0],
            "omitted_accuracy_after": test["omitted_accuracy"][1],
            "accuracy_before": test["accuracy"][0], "accuracy_after": test["accuracy"][1],
            "val_omitted_accuracy_before": val["omitted_accuracy"][0],
            "val_omitted_accuracy_after": at("omitted_accuracy", chosen),
            "val_accuracy_before": val["accuracy"][0], "val_accuracy_after": at("accuracy", chosen),
            "label_free_shift": label_free,
            "label_free_omitted_accuracy_after": test["omitted_accuracy"][2],
            "label_free_accuracy_after": test["accuracy"][2],
            "label_free_val_omitted_share": at("omitted_share", label_free),
            "val_curve": val}


# ---- the experiment's contract (kdviz.experiments): budget, command-line options, report -----------------------

def budget_configs(config: MissingClassConfig) -> list[DistillConfig]:
    """The trainings it does (for the server's budget): one distillation of both students. Its transfer set is the
    config's minus one class, so this is an upper bound."""
    return [config.distill]


def budget_measurements(config: MissingClassConfig) -> list[tuple[str, "RunCost"]]:  # noqa: F821
    """The distillation's peak with its transfer set (for the server's budget): the students train on a copy of the
    training images without the omitted class (the engine cuts train_index from the dataset), which a plain
    distillation of the whole training part does not hold (for Fashion-MNIST, 157 MB: the difference measured by
    bench/memory_peak.py). Its work is the training's, already counted."""
    import math

    from kdviz.core.budget import dataset_facts, run_cost, train_images

    check(config)
    base = config.distill
    facts = dataset_facts(base.dataset)
    cost = run_cost(base, teacher_cached=True)
    copy = 0 if base.train_subset else train_images(base) * (4 * math.prod(facts.input_shape) + 8)
    return [("Distilling on the transfer set (the training images without one class)",
             dataclasses.replace(cost, memory_bytes=cost.memory_bytes + copy, work_flops=0.0))]


FIGURES = {"omitted_before": "omitted_accuracy_before", "omitted_after": "omitted_accuracy_after",
           "accuracy_before": "accuracy_before", "accuracy_after": "accuracy_after", "bias_shift": "bias_shift",
           "label_free_shift": "label_free_shift", "label_free_omitted_after": "label_free_omitted_accuracy_after",
           "label_free_accuracy_after": "label_free_accuracy_after",
           "val_omitted_after": "val_omitted_accuracy_after", "val_accuracy_after": "val_accuracy_after"}


def summarise(runs: list[dict]) -> dict:
    """Means and stds over the seeds of each student's figures (e.g. kd_omitted_after_mean), from the runs that
    measured that student, and whether the KD student met the target."""
    from kdviz.core.results import mean_std

    out: dict = {"n_seeds": len(runs), "target": TARGET}
    for role in STUDENTS:
        measured = [run[role] for run in runs if role in run]
        out[f"{role}_n_seeds"] = len(measured)
        for key, field in FIGURES.items():
            if measured:
                out[f"{role}_{key}_mean"], out[f"{role}_{key}_std"] = mean_std([m[field] for m in measured])
    out["target_met"] = out.get("kd_omitted_after_mean", 0.0) >= TARGET
    return out


def report(config: MissingClassConfig, runs: list[dict]) -> dict:
    """The JSON of `python -m kdviz experiment missing-class`: runs is [{"seed", **Finished.summary}]; each
    student's val_curve is left out (the page draws it from a single run)."""
    slim = [{**run, **{role: {k: v for k, v in run[role].items() if k != "val_curve"}
                       for role in STUDENTS if role in run}} for run in runs]
    return {"experiment": NAME, "omitted": config.omitted, "runs": slim, "summary": summarise(runs),
            "hinton_2015": HINTON}


def verdict(result: dict) -> str:
    """One plain sentence: did the KD student get the target share of the omitted class right after (a)?"""
    s, omitted = result["summary"], result["omitted"]
    if "kd_omitted_after_mean" not in s:
        return "No KD student was measured, so the target could not be checked."
    hard = f"{s['hard_omitted_after_mean']:.1%}" if "hard_omitted_after_mean" in s else "not measured"
    said = (f"the KD student got {s['kd_omitted_after_mean']:.1%} of the test {omitted}s right after the "
            f"validation-chosen bias shift (before: {s['kd_omitted_before_mean']:.1%}; hard-label student: {hard})")
    if s["target_met"]:
        return f"Meets the target of {TARGET:.0%}: {said}."
    return f"Misses the target of {TARGET:.0%}: {said}."


def format_text(result: dict) -> str:
    s = result["summary"]
    lines = [f"omitted class {result['omitted']}, {s['n_seeds']} seed(s); test accuracy, mean ± std",
             f"{'student':<10} {'omitted before':>15} {'omitted after':>15} {'all before':>15} {'all after':>15} "
             f"{'shift':>6} {'label-free shift → omitted':>27}"]
    pm = lambda role, key: f"{s[f'{role}_{key}_mean']:.1%} ± {s[f'{role}_{key}_std']:.1%}"  # noqa: E731
    for role in STUDENTS:
        if f"{role}_omitted_after_mean" in s:
            lines.append(f"{role:<10} {pm(role, 'omitted_before'):>15} {pm(role, 'omitted_after'):>15} "
                         f"{pm(role, 'accuracy_before'):>15} {pm(role, 'accuracy_after'):>15} "
                         f"{s[f'{role}_bias_shift_mean']:>6.2f} "
                         f"{s[f'{role}_label_free_shift_mean']:>8.2f} → {pm(role, 'label_free_omitted_after'):>15}")
    lines.append(verdict(result))
    return "\n".join(lines)
