"""Capacity gap (Cho & Hariharan 2019, "On the efficacy of knowledge distillation"): does the most accurate teacher
teach a small student best? One fixed small student, taught by teachers of growing width and by an early-stopped
teacher (the widest, trained for a few epochs).

The teachers: the base teacher (`distill.teacher`, its depth, epochs, batch, learning rate) with each width of
`teacher_widths`, and the early-stopped one: the widest width for `early_stop_epochs` epochs. All of one seed have
seed distill.teacher.seed + distill.seed, so five seeds are five independent sets of teachers and students; the
early-stopped teacher is then exactly the widest teacher's own training stopped early (same initial weights, same
batches: the engine's streams are per seed, and Adam's step size has no schedule). Each is cached on disk
(kdviz.core.teachers).

The students (one distill config: the same initial weights, the same batches): one hard-label student, and one KD
student per teacher and temperature of `temperatures`; each teacher's T is chosen on its KD student's **validation**
accuracy (ties: the lower T), which is fairer to a big, confident teacher than one T for all. Which teacher is the
most accurate, and which taught the best student, are chosen on validation too; test is only reported.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Iterator

from torch import nn

from kdviz.core.flags import flag
from kdviz.core.engine import (DistillConfig, Finished, Notice, StopCheck, TeacherConfig, check_config,
                               check_teacher_config, distill)
from kdviz.core.kd import check_temperature
from kdviz.experiments.events import Measured, relay

NAME = "capacity-gap"
MAX_TEACHERS = 8  # widths (the early-stopped teacher comes on top)
MAX_WIDTH = 4096
MAX_TEMPERATURES = 6


@dataclass(frozen=True)
class CapacityGapConfig:
    """The base distillation (`distill`: the student, its data, α, epochs, learning rate, seed; the base teacher's
    training settings) and the teachers: one per width of `teacher_widths`, plus the widest trained for only
    `early_stop_epochs` epochs (0: no early-stopped teacher). Each KD student's T is chosen on validation among
    `temperatures` (distill.temperature is not used: see config_from_flags)."""

    distill: DistillConfig
    teacher_widths: tuple[int, ...] = flag((16, 64, 256, 1024), "--teacher-widths",
                                           "widths of the fully trained teachers (default {default})", "W")
    early_stop_epochs: int = flag(2, "--early-stop-epochs", "epochs of the early-stopped teacher, the widest width "
                                  "(default {default}; 0: none)", "N")
    temperatures: tuple[float, ...] = flag((4.0, 20.0), "--temperatures", "the KD students' temperatures; each "
                                           "teacher's is chosen on validation (default {default})", "T")


def default_config() -> CapacityGapConfig:
    """The offline default (14 s a seed on one thread of a 2-core machine, its five teachers trained; 45-90 s while
    two other jobs share the cores): the quick preset's digits teachers (mlp ×2, 30 epochs, batch 64, Adam 1e-3, all
    1151 training images) at widths 16 to 1024, and the 1024×2 teacher stopped after 2 epochs; the quick preset's
    students' settings (100 images, α = 0.9, 80 epochs, AdamW 1e-2, batch 64) without jitter, like the capacity
    experiment's default, but a small student: mlp 16×1 (1,210 parameters, about the smallest teacher's 1,482), chosen
    before any run so that the widest teacher has ~930× its parameters, a wider gap than the paper's (on ImageNet, a
    ResNet-18 student and teachers up to ResNet-152). T ∈ {4, 20}: 20 is the quick preset's (chosen on validation for
    its 128×2 student), 4 a milder one."""
    from kdviz.core.models import ModelSpec
    from kdviz.core.presets import get_preset

    quick = get_preset("quick")
    return CapacityGapConfig(dataclasses.replace(quick, augment=0, student=ModelSpec("mlp", 16, 1)))


def config_from_flags(given: dict, distill_config: DistillConfig | None, device: str | None = None
                      ) -> CapacityGapConfig:
    """kdviz.experiments.config_from_flags, but --temperature (a distill flag) without --temperatures means that one
    T for every KD student: a flag the user gave is never ignored."""
    base = default_config()
    distill_config = distill_config or base.distill
    if "temperatures" not in given and distill_config.temperature != base.distill.temperature:
        given = {**given, "temperatures": (float(distill_config.temperature),)}
    return check(dataclasses.replace(base, distill=distill_config, **given))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check(config: CapacityGapConfig) -> CapacityGapConfig:
    """ValueError (one line, naming the value) for bad teacher widths, early-stop epochs, temperatures or base."""
    from kdviz.core.budget import dataset_facts

    widths = config.teacher_widths
    if not isinstance(widths, tuple):
        raise ValueError(f"teacher widths must be a tuple of integers, got {widths!r}")
    if not widths:
        raise ValueError("give at least one teacher width, got none")
    if len(set(widths)) > MAX_TEACHERS:
        raise ValueError(f"at most {MAX_TEACHERS} teacher widths, got {len(set(widths))}")
    for width in widths:
        if not (_is_int(width) and 1 <= width <= MAX_WIDTH):
            raise ValueError(f"teacher widths must be integers in [1, {MAX_WIDTH}], got {width!r}")
    epochs, full = config.early_stop_epochs, config.distill.teacher.epochs
    if not (_is_int(epochs) and 0 <= epochs):
        raise ValueError(f"early-stop epochs must be an integer >= 0 (0: no early-stopped teacher), got {epochs!r}")
    if epochs >= full:
        raise ValueError(f"early-stop epochs must be fewer than the teachers' {full} epochs, got {epochs}")
    temperatures = config.temperatures
    if not isinstance(temperatures, tuple) or not temperatures:
        raise ValueError(f"give at least one temperature, got {temperatures!r}")
    if len(set(temperatures)) > MAX_TEMPERATURES:
        raise ValueError(f"at most {MAX_TEMPERATURES} temperatures, got {len(set(temperatures))}")
    for temperature in temperatures:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise ValueError(f"temperatures must be numbers > 0, got {temperature!r}")
        check_temperature(temperature)
    check_config(config.distill)
    for teacher in teacher_configs(config):
        check_teacher_config(teacher)
    n_train = dataset_facts(config.distill.dataset).train
    if config.distill.train_subset > n_train:
        raise ValueError(f"train subset {config.distill.train_subset} is larger than {config.distill.dataset}'s "
                         f"training set ({n_train} images; 0 = all)")
    return config


# ---- the plan ---------------------------------------------------------------------------------------------------

def teacher_configs(config: CapacityGapConfig) -> list[TeacherConfig]:
    """The teachers in the order they run: the widths ascending (each once), then the early-stopped one (the widest
    width, early_stop_epochs epochs). Seed: distill.teacher.seed + distill.seed."""
    base = config.distill.teacher
    seed = base.seed + config.distill.seed
    widths = sorted(set(config.teacher_widths))
    out = [dataclasses.replace(base, seed=seed, model=dataclasses.replace(base.model, width=w)) for w in widths]
    if config.early_stop_epochs:
        out.append(dataclasses.replace(out[-1], epochs=config.early_stop_epochs))
    return out


def temperatures(config: CapacityGapConfig) -> tuple[float, ...]:
    """The KD students' temperatures, ascending, each once."""
    return tuple(sorted({float(t) for t in config.temperatures}))


def teacher_label(width: int, depth: int, epochs: int, early_stopped: bool) -> str:
    """How a table and a chart name a teacher: "256×2" or "1024×2 stopped at 2 epochs"."""
    return f"{width}×{depth}" + (f" stopped at {epochs} epoch{'s' if epochs != 1 else ''}" if early_stopped else "")


def kd_config(config: CapacityGapConfig, teacher: TeacherConfig, temperature: float) -> DistillConfig:
    """One KD student's config: the base with this teacher and T (the same seed: same initial weights, batches)."""
    return dataclasses.replace(config.distill, teacher=teacher, temperature=temperature)


# ---- the run ----------------------------------------------------------------------------------------------------

def _distill(config: DistillConfig, teacher: nn.Module, should_stop, students: tuple[str, ...]):
    """distill(), passing its Notice and Diverged events through; returns its Finished event (None if none)."""
    return (yield from relay(distill(config, teacher, should_stop, students)))


def _prepare(config: TeacherConfig, device: str, should_stop):
    """prepare_teacher, passing its Notice and Diverged events through; returns its Finished event."""
    from kdviz.core.teachers import prepare_teacher

    return (yield from relay(prepare_teacher(config, device, should_stop)))


def choose_temperature(by_temperature: list[dict]) -> dict:
    """The KD student with the highest validation accuracy (ties: the lower T)."""
    return max(by_temperature, key=lambda s: (s["val_accuracy"], -s["temperature"]))


def run(config: CapacityGapConfig, teacher: nn.Module, should_stop: StopCheck | None = None) -> Iterator:
    """Yield Measured after the hard-label student and after each teacher's row (its accuracy, its KD students, the
    T chosen on validation), the engine's Notice and Diverged events, then Finished with {"hard", "rows", ...}.
    `teacher` (the base teacher the caller prepared) only stands beside the hard-label student, which never asks it;
    the experiment's teachers are prepared here (cached). Stopping keeps the rows measured so far ("cancelled")."""
    check(config)
    started = time.perf_counter()
    summary: dict = {"seed": config.distill.seed, "temperatures": list(temperatures(config)), "rows": []}
    status = yield from _measure(config, teacher, should_stop, summary)
    summary["seconds"] = time.perf_counter() - started
    yield Finished(status, summary)


def _measure(config: CapacityGapConfig, teacher: nn.Module, should_stop, summary: dict):
    """run()'s steps, filling summary as each is measured; returns the status."""
    base, plan = config.distill, teacher_configs(config)
    total = 1 + len(plan)

    def stopped() -> bool:
        return should_stop is not None and bool(should_stop())

    if stopped():
        return "cancelled"
    finished = yield from _distill(base, teacher, should_stop, ("hard",))
    if finished is None or finished.status != "completed":
        return "cancelled" if finished is None else finished.status
    hard = finished.summary["hard"]
    summary["hard"] = {key: hard[key] for key in ("accuracy", "val_accuracy", "params")}
    summary["n_train"], summary["n_val"] = finished.summary["n_train"], finished.summary["n_val"]
    yield Measured(1, total, {"kind": "hard", **summary["hard"]})
    for done, teacher_config in enumerate(plan, 2):
        if stopped():
            return "cancelled"
        cell_started = time.perf_counter()
        prepared = yield from _prepare(teacher_config, base.device, should_stop)
        if prepared is None or prepared.status != "completed":
            status = "cancelled" if prepared is None else prepared.status
            if status == "diverged":
                yield Notice(f"the teacher of width {teacher_config.model.width} diverged while training; it has "
                             "no row")
            return status
        model, facts = prepared.models["teacher"], prepared.summary["teacher"]
        by_temperature = []
        for temperature in temperatures(config):
            finished = yield from _distill(kd_config(config, teacher_config, temperature), model, should_stop,
                                           ("kd",))
            if finished is None or finished.status != "completed":
                return "cancelled" if finished is None else finished.status
            kd = finished.summary["kd"]
            by_temperature.append({"temperature": temperature, "accuracy": kd["accuracy"],
                                   "val_accuracy": kd["val_accuracy"]})
        chosen = choose_temperature(by_temperature)
        early = bool(config.early_stop_epochs) and done == total
        row = {"teacher": teacher_label(teacher_config.model.width, teacher_config.model.depth,
                                        teacher_config.epochs, early),
               "width": teacher_config.model.width, "depth": teacher_config.model.depth,
               "epochs": teacher_config.epochs, "early_stopped": early, "teacher_seed": teacher_config.seed,
               "params": facts["params"], "teacher_accuracy": facts["accuracy"],
               "teacher_val_accuracy": facts["val_accuracy"], "temperature": chosen["temperature"],
               "kd_accuracy": chosen["accuracy"], "kd_val_accuracy": chosen["val_accuracy"],
               "hard_accuracy": summary["hard"]["accuracy"], "hard_val_accuracy": summary["hard"]["val_accuracy"],
               "by_temperature": by_temperature, "cached": bool(prepared.summary.get("cached")),
               "seconds": time.perf_counter() - cell_started}
        summary["rows"].append(row)
        yield Measured(done, total, {"kind": "teacher", **row})
    return "completed"


# ---- choices on validation --------------------------------------------------------------------------------------

def _order(row: dict) -> tuple:
    """Ties go to the cheaper teacher: fewer parameters, then fewer epochs."""
    return (-row["params"], -row["epochs"])


def best_teacher(rows: list[dict]) -> dict | None:
    """The most accurate teacher on validation (ties: the cheaper one)."""
    return max(rows, key=lambda r: (r["teacher_val_accuracy"], *_order(r)), default=None)


def best_student(rows: list[dict]) -> dict | None:
    """The teacher whose KD student is the most accurate on validation (ties: the cheaper teacher)."""
    return max(rows, key=lambda r: (r["kd_val_accuracy"], *_order(r)), default=None)


def best_teacher_taught_best(rows: list[dict]) -> bool:
    """Whether the most accurate teacher on validation taught a student as accurate on validation as any other."""
    return best_teacher(rows)["kd_val_accuracy"] >= best_student(rows)["kd_val_accuracy"]


# ---- the experiment's contract (kdviz.experiments): budget, report ----------------------------------------------

def budget_configs(config: CapacityGapConfig) -> list[DistillConfig]:
    """The trainings it does (for the server's budget): the hard-label student (beside the base teacher, which the
    caller prepares), then one KD student per teacher and temperature (their teachers in budget_teachers)."""
    return [config.distill] + [kd_config(config, teacher, t) for teacher in teacher_configs(config)
                               for t in temperatures(config)]


def budget_teachers(config: CapacityGapConfig) -> list[tuple[TeacherConfig, int]]:
    """The teachers it trains itself, each with the images it labels afterwards: per KD student, the students'
    training images once (no jitter, or a fixed teacher) or every epoch (a consistent teacher with jitter), and the
    validation and test parts."""
    from kdviz.core.budget import dataset_facts, train_images

    base = config.distill
    facts = dataset_facts(base.dataset)
    each = train_images(base) * (base.epochs if base.augment and base.consistent_teacher else 1) + facts.val + \
        facts.test
    return [(teacher, each * len(temperatures(config))) for teacher in teacher_configs(config)]


def summarise(runs: list[dict]) -> list[dict]:
    """Per teacher over the seeds that measured it: mean and std of its and its KD student's validation and test
    accuracy and of the hard-label student's, the T chosen on each seed."""
    from kdviz.core.results import mean_std

    groups: dict[tuple, list[dict]] = {}
    for result in runs:
        for row in result.get("rows", []):
            groups.setdefault((row["width"], row["epochs"]), []).append(row)
    out = []
    for rows in groups.values():
        first = rows[0]
        summary = {key: first[key] for key in ("teacher", "width", "depth", "epochs", "early_stopped", "params")}
        summary |= {"n_seeds": len(rows), "temperatures": [r["temperature"] for r in rows]}
        for key in ("teacher_accuracy", "teacher_val_accuracy", "kd_accuracy", "kd_val_accuracy", "hard_accuracy",
                    "hard_val_accuracy"):
            summary[key], summary[f"{key}_std"] = mean_std([r[key] for r in rows])
        out.append(summary)
    return sorted(out, key=lambda r: (r["early_stopped"], r["params"]))


def seed_agreement(runs: list[dict]) -> dict:
    """Over the seeds that measured every teacher: on how many the most accurate teacher on validation also taught
    a best student on validation (a tie with the best counts), of how many."""
    complete = [run for run in runs if run.get("rows") and len(run["rows"]) == max(len(r.get("rows", []))
                                                                                  for r in runs)]
    return {"agree": sum(best_teacher_taught_best(run["rows"]) for run in complete), "of": len(complete)}


def paired(runs: list[dict], first: dict, second: dict, key: str) -> dict | None:
    """Seed by seed, first's student minus second's on key ("kd_val_accuracy", "kd_accuracy"): their students share
    initial weights and batches, so the paired difference is the fair spread. {"mean", "std", "better", "tied", "n"}
    over the seeds that measured both; None if none did."""
    from kdviz.core.results import mean_std

    def of(run, row):
        return next((r for r in run.get("rows", []) if (r["width"], r["epochs"]) == (row["width"], row["epochs"])),
                    None)

    pairs = [(of(run, first), of(run, second)) for run in runs]
    gaps = [a[key] - b[key] for a, b in pairs if a is not None and b is not None]
    if not gaps:
        return None
    mean, std = mean_std(gaps)
    mean = round(mean, 7) + 0.0  # accuracies are float32 means: equal students differ by 1e-8, not "-0.00"
    return {"mean": mean, "std": std, "better": sum(g > 0 for g in gaps), "tied": sum(g == 0 for g in gaps),
            "n": len(gaps)}


def early_stopped_pair(rows: list[dict]) -> tuple[dict, dict] | None:
    """(the early-stopped teacher's row, the same teacher's fully trained row), if both were measured."""
    early = next((r for r in rows if r["early_stopped"]), None)
    full = next((r for r in rows if early and not r["early_stopped"] and r["width"] == early["width"]), None)
    return (early, full) if early and full else None


def report(config: CapacityGapConfig, runs: list[dict]) -> dict:
    """The JSON of `python -m kdviz experiment capacity-gap`: runs is [{"seed", **Finished.summary}]. "rows" are the
    per-teacher means over seeds (with _std keys), "runs" the per-seed rows; the choices are made on validation.
    "best_student_vs_best_teacher" and "early_stopped_vs_full" are paired per-seed differences of their students."""
    from kdviz.core.budget import dataset_facts, model_cost

    rows = summarise(runs)
    teacher, student = best_teacher(rows), best_student(rows)
    facts = dataset_facts(config.distill.dataset)
    early = early_stopped_pair(rows)
    result = {"experiment": NAME, "dataset": config.distill.dataset, "rows": rows, "runs": runs,
              "student": {"spec": dataclasses.asdict(config.distill.student),
                          "params": model_cost(config.distill.student, facts.input_shape, facts.num_classes).params},
              "temperatures": list(temperatures(config)),
              "best_teacher_on_validation": teacher, "best_student_on_validation": student,
              "seeds_best_teacher_taught_best": seed_agreement(runs),
              "claim_holds": bool(rows) and not best_teacher_taught_best(rows),
              "best_student_vs_best_teacher": {split: paired(runs, student, teacher, key) for split, key in
                                               (("val", "kd_val_accuracy"), ("test", "kd_accuracy"))} if rows else None,
              "early_stopped_vs_full": {split: paired(runs, *early, key) for split, key in
                                        (("val", "kd_val_accuracy"), ("test", "kd_accuracy"))} if early else None}
    result["verdict"] = verdict(result)
    return result


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def _difference(pair: dict | None) -> str:
    """A paired difference in words: "+0.91 ± 0.84 points (better on 3 of 5 seeds, worse on 1, tied on 1)"; one
    seed: no spread."""
    if pair is None:
        return ""
    if pair["n"] == 1:
        return f"{100 * pair['mean']:+.2f} points"
    worse = pair["n"] - pair["better"] - pair["tied"]
    rest = "".join(f", {word} on {count}" for word, count in (("worse", worse), ("tied", pair["tied"])) if count)
    return (f"{100 * pair['mean']:+.2f} ± {100 * pair['std']:.2f} points (better on {pair['better']} of "
            f"{pair['n']} seeds{rest})")


def verdict(result: dict) -> str:
    """Plain sentences: the most accurate teacher on validation, the teacher whose student is best on validation
    (its test accuracy reported), whether the paper's claim holds here and how clearly (the paired difference over
    seeds), what the early-stopped teacher did, and the hard-label student for scale."""
    rows = result["rows"]
    if not rows:
        return "No teacher was measured."
    n = max(row["n_seeds"] for row in rows)
    over = "" if n == 1 else f" (means over {n} seeds)"
    teacher, student = result["best_teacher_on_validation"], result["best_student_on_validation"]
    lines = [f"On validation{over} the most accurate teacher is {teacher['teacher']} "
             f"({_pct(teacher['teacher_val_accuracy'])}; test {_pct(teacher['teacher_accuracy'])}), and its student "
             f"reaches {_pct(teacher['kd_val_accuracy'])} (test {_pct(teacher['kd_accuracy'])})."]
    if not result["claim_holds"]:
        lines.append("No other teacher taught a better student on validation, so the paper's claim does not show "
                     "here: the best teacher also teaches best.")
    else:
        gaps = result["best_student_vs_best_teacher"]
        val, test = gaps["val"], gaps["test"]
        never_worse = val["better"] + val["tied"] == val["n"]
        lines.append(f"The best student on validation learnt from {student['teacher']}, a less accurate teacher "
                     f"({_pct(student['teacher_val_accuracy'])} on validation): {_pct(student['kd_val_accuracy'])} on "
                     f"validation, "
                     f"{_difference(val)}; on test {_pct(student['kd_accuracy'])}, {_difference(test)}. "
                     + ("So the paper's claim holds here: the most accurate teacher is not the best teacher."
                        if n == 1 or (never_worse and val["mean"] > val["std"]) else
                        "So the paper's claim holds here, though not on every seed: the most accurate teacher is not "
                        "the best teacher." if val["mean"] > val["std"] else
                        "So on validation the most accurate teacher is not the best teacher, but by less than the "
                        "spread of the paired difference over seeds: no clear sign of the paper's claim."))
        if test["mean"] <= 0:
            lines.append("Test does not confirm it: there the best teacher's student is as good or better.")
    agreement = result["seeds_best_teacher_taught_best"]
    if n > 1 and agreement["of"]:
        lines.append(f"Seed by seed, the most accurate teacher also taught a best student on {agreement['agree']} of "
                     f"{agreement['of']} seeds.")
    early = early_stopped_pair(rows)
    if early:
        stopped, full = early
        val = result["early_stopped_vs_full"]["val"]
        word = "taught better than" if val["mean"] > 0 else "taught worse than" if val["mean"] < 0 else \
            "taught as well as"
        lines.append(f"The early-stopped teacher ({stopped['teacher']}, {_pct(stopped['teacher_val_accuracy'])} on "
                     f"validation) {word} the same teacher fully trained: its student reaches "
                     f"{_pct(stopped['kd_val_accuracy'])} on validation (test {_pct(stopped['kd_accuracy'])} vs "
                     f"{_pct(full['kd_accuracy'])}), {_difference(val)} on validation.")
    hard = rows[0]
    lines.append(f"The hard-label student: {_pct(hard['hard_val_accuracy'])} on validation, "
                 f"{_pct(hard['hard_accuracy'])} on test.")
    return " ".join(lines)


def format_text(result: dict) -> str:
    rows = result["rows"]
    n = max((row["n_seeds"] for row in rows), default=1)
    w = 15 if n > 1 else 7

    def acc(row, key):
        return (f"{100 * row[key]:.2f}" + (f"±{100 * row[key + '_std']:.2f}" if n > 1 else "")).rjust(w)

    lines = [f"{'teacher':<26} {'params':>9} {'teacher val':>{w}} {'teacher test':>{w}} {'student val':>{w}} "
             f"{'student test':>{w}}  T chosen"]
    best, taught = result["best_teacher_on_validation"], result["best_student_on_validation"]
    for row in rows:
        marks = [word for word, chosen in (("best teacher", best), ("best student", taught))
                 if chosen is not None and chosen["teacher"] == row["teacher"]]
        chosen_t = ",".join(f"{t:g}" for t in row["temperatures"])
        lines.append(f"{row['teacher']:<26} {row['params']:>9,} {acc(row, 'teacher_val_accuracy')} "
                     f"{acc(row, 'teacher_accuracy')} {acc(row, 'kd_val_accuracy')} {acc(row, 'kd_accuracy')}  "
                     f"{chosen_t}" + (f"  ← {' and '.join(marks)} on validation" if marks else ""))
    if rows:
        hard = rows[0]
        lines.append(f"{'hard-label student':<26} {result['student']['params']:>9,} {'':>{w}} {'':>{w}} "
                     f"{acc(hard, 'hard_val_accuracy')} {acc(hard, 'hard_accuracy')}")
    seconds = [run["seconds"] for run in result["runs"] if run.get("seconds") is not None]
    if seconds:
        lines.append(f"{sum(seconds) / len(seconds):.1f} s a seed on average (teachers included unless cached)")
    lines += ["", result["verdict"], "Accuracies in %; every choice (T, best teacher, best student) is made on "
              "validation, test is only reported."]
    return "\n".join(lines)

