"""Label smoothing: a teacher trained with smoothed labels, its dark knowledge, and its students at several T
(Müller, Kornblith & Hinton 2019, "When does label smoothing help?"; Chandrasegaran et al. 2022, "Revisiting label
smoothing and knowledge distillation compatibility").

The claim: a teacher trained on (1 − ε)·one-hot + ε/C targets is often more accurate, but it learns to give every
wrong class about the same probability, so its soft labels no longer say which classes look alike, and a student
distilled from it does worse. Chandrasegaran et al. report that such a teacher can still teach at a low T.

Per seed s, for every ε in `smoothings`, a teacher: the base teacher (`distill.teacher`) with label_smoothing ε and
seed base seed + s (five seeds are five independent sets of teachers; within a seed the teachers differ only in ε:
same initial weights, same batches). Each is cached on disk (kdviz.core.teachers). Per teacher, on validation:

* its accuracy (test beside it, only reported);
* its flatness at T = 1: the mean over images of the normalised entropy of its off-target distribution (the
  probabilities of the wrong classes, renormalised to sum to one; entropy / log(C − 1)): 1 when every wrong class gets
  the same probability (no class-similarity information), 0 when one wrong class takes all of it;
* the class × class matrix of that off-target distribution, averaged per true class (the heatmap).

Students (one distill config: the same initial weights, the same batches): ONE hard-label student, and a KD student
per (ε, T) for T in `temperatures`. Each teacher's T is chosen on its KD student's validation accuracy; the test
accuracy there is reported.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from torch import nn

from kdviz.core.engine import (DistillConfig, Finished, Notice, StopCheck, TeacherConfig, check_config,
                               check_teacher_config, distill, predict_logits)
from kdviz.core.flags import flag
from kdviz.experiments.events import Measured, relay

NAME = "label-smoothing"
MAX_SMOOTHINGS = 6
MAX_TEMPERATURES = 12
MAX_TEMPERATURE = 1000.0


@dataclass(frozen=True)
class LabelSmoothingConfig:
    """The base distillation (`distill`: the teacher every smoothed teacher is a copy of, the students, α, epochs,
    seed...; its temperature is not used), the teachers' label smoothings ε and the students' temperatures T."""

    distill: DistillConfig
    smoothings: tuple[float, ...] = flag((0.0, 0.1, 0.3), "--smoothings",
                                         "the teachers' label smoothing ε, each in [0, 1) (default {default})", "EPS")
    temperatures: tuple[float, ...] = flag((1.0, 2.0, 4.0, 8.0, 20.0), "--temperatures",
                                           "the KD students' temperatures T (default {default})", "T")


def default_config() -> LabelSmoothingConfig:
    """The offline default (about 10 s of one thread's CPU time a seed, its three teachers included, on a 2-core AMD
    EPYC; 19-40 s of wall time while that machine was shared: docs/PAPERS.md): the quick preset's digits teacher
    (mlp 256×2, 30 epochs) smoothed with ε 0, 0.1 and 0.3, and its students' settings (mlp 128×2 on 100 images,
    α = 0.9, 80 epochs, AdamW 1e-2, batch 64) without jitter, like the capacity experiment's default; KD students at
    T 1, 2, 4, 8 and 20 (20 is the preset's T, chosen on validation for the unsmoothed teacher with jitter:
    sweeps/SWEEP_QUICK.md)."""
    from kdviz.core.presets import get_preset

    return LabelSmoothingConfig(dataclasses.replace(get_preset("quick"), augment=0))


def smoothing_values(config: LabelSmoothingConfig) -> list[float]:
    """The distinct ε, ascending (the first is the baseline every verdict compares with)."""
    return sorted({float(e) for e in config.smoothings})


def temperature_values(config: LabelSmoothingConfig) -> list[float]:
    """The distinct T, ascending."""
    return sorted({float(t) for t in config.temperatures})


def teacher_config(config: LabelSmoothingConfig, smoothing: float) -> TeacherConfig:
    """The base teacher with label smoothing ε and seed base seed + distill.seed (ε = 0 at seed 0: the base teacher
    itself, which the caller has prepared)."""
    base = config.distill
    return dataclasses.replace(base.teacher, label_smoothing=float(smoothing), seed=base.teacher.seed + base.seed)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check(config: LabelSmoothingConfig) -> LabelSmoothingConfig:
    """ValueError (one line, naming the value) for a bad ε, T or base config."""
    from kdviz.core.budget import dataset_facts

    for name, values, most in (("label smoothings", config.smoothings, MAX_SMOOTHINGS),
                               ("temperatures", config.temperatures, MAX_TEMPERATURES)):
        if not isinstance(values, tuple):
            raise ValueError(f"{name} must be a tuple of numbers, got {values!r}")
        if not values:
            raise ValueError(f"give at least one of the {name}, got none")
        if len(set(values)) > most:
            raise ValueError(f"at most {most} {name}, got {len(set(values))}")
    for value in config.smoothings:
        if not (_is_number(value) and 0 <= value < 1):
            raise ValueError(f"label smoothing ε must be a number in [0, 1), got {value!r}")
    for value in config.temperatures:
        if not (_is_number(value) and 0 < value <= MAX_TEMPERATURE):
            raise ValueError(f"temperatures must be numbers > 0 and ≤ {MAX_TEMPERATURE:g}, got {value!r}")
    check_config(config.distill)
    for smoothing in smoothing_values(config):
        check_teacher_config(teacher_config(config, smoothing))
    facts = dataset_facts(config.distill.dataset)
    if facts.num_classes < 3:
        raise ValueError(f"the flatness of the wrong classes needs at least 3 classes, {config.distill.dataset} has "
                         f"{facts.num_classes}")
    if config.distill.train_subset > facts.train:
        raise ValueError(f"train subset {config.distill.train_subset} is larger than {config.distill.dataset}'s "
                         f"training set ({facts.train} images; 0 = all)")
    return config


# ---- how much class similarity a teacher's soft labels carry ----------------------------------------------------

def off_target_probabilities(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, C) → (N, C): each image's softmax at T over its wrong classes only (the true class left out, the rest
    renormalised to sum to one), with 0 at the true class. Computed from the wrong classes' logits, so a teacher
    that gives them 1e-12 in all still has a well-defined (and exact) off-target distribution."""
    from kdviz.core import kd

    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    n, classes = logits.shape
    wrong = ~np.eye(classes, dtype=bool)[labels]  # (N, C): True at the wrong classes
    out = np.zeros((n, classes))
    out[wrong] = kd.softmax(logits[wrong].reshape(n, classes - 1), temperature).ravel()
    return out


def flatness(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """The mean over images of the normalised entropy of the off-target distribution at T: H(q) / log(C − 1), with q
    the wrong classes' renormalised probabilities. 1: every wrong class equally likely (the soft label says nothing
    about which classes look alike); 0: one wrong class takes all the off-target probability."""
    from kdviz.core import kd

    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    n, classes = logits.shape
    if classes < 3:
        raise ValueError(f"flatness needs at least 3 classes, got {classes}")
    if n == 0:
        return math.nan
    wrong = logits[~np.eye(classes, dtype=bool)[labels]].reshape(n, classes - 1)
    return float((kd.entropy(wrong, temperature) / math.log(classes - 1)).mean())


def similarity_matrix(logits: np.ndarray, labels: np.ndarray, num_classes: int, temperature: float = 1.0
                      ) -> np.ndarray:
    """(C, C): row i is the mean off-target distribution (off_target_probabilities) over the images of true class i:
    the classes the teacher thinks class i looks like. The diagonal is 0; each row sums to one (NaN without images)."""
    q = off_target_probabilities(logits, labels, temperature)
    labels = np.asarray(labels)
    return np.stack([q[labels == c].mean(0) if (labels == c).any() else np.full(num_classes, np.nan)
                     for c in range(num_classes)])


# ---- the run ----------------------------------------------------------------------------------------------------

def _distill(config: DistillConfig, teacher: nn.Module, should_stop, students: tuple[str, ...]):
    """distill(), passing its Notice and Diverged events through; returns its Finished event (None if none)."""
    return (yield from relay(distill(config, teacher, should_stop, students)))


def _prepare(teacher: TeacherConfig, device: str, should_stop):
    """prepare_teacher(), passing its Notice and Diverged events through; returns its Finished event (None if none)."""
    from kdviz.core.teachers import prepare_teacher

    return (yield from relay(prepare_teacher(teacher, device, should_stop)))


def _accuracy(logits, labels) -> float:
    return float((logits.argmax(-1) == labels).float().mean())


def teacher_facts(model: nn.Module, dataset) -> dict:
    """A teacher's accuracies, and on validation its flatness, off-target mass and class-similarity matrix at T = 1
    (computed where the teacher is: a cached one is loaded on the CPU, a fresh one may be on the GPU)."""
    from kdviz.core import kd

    device = next(model.parameters()).device
    val_logits = predict_logits(model, dataset.val_x.to(device))
    test_logits = predict_logits(model, dataset.test_x.to(device))
    logits, labels = val_logits.double().cpu().numpy(), dataset.val_y.numpy()
    probabilities = kd.softmax(logits)
    return {"accuracy": _accuracy(test_logits.cpu(), dataset.test_y),
            "val_accuracy": _accuracy(val_logits.cpu(), dataset.val_y),
            "flatness": flatness(logits, labels),
            "off_target_mass": float(1 - probabilities[np.arange(len(labels)), labels].mean()),
            "matrix": similarity_matrix(logits, labels, dataset.num_classes).tolist()}


def run(config: LabelSmoothingConfig, teacher: nn.Module, should_stop: StopCheck | None = None) -> Iterator:
    """Yield Measured after the hard-label student, after each teacher and after each KD student, the engine's Notice
    and Diverged events, then Finished with the summary. `teacher` is distill.teacher (prepared by the caller): used as
    the ε = 0 teacher when it is that one, and for the hard-label student's run (which never asks it for labels).
    Stopping keeps what was measured (status "cancelled"); a divergence says so and ends the run."""
    check(config)
    started = time.perf_counter()
    summary: dict = {"seed": config.distill.seed, "smoothings": smoothing_values(config),
                     "temperatures": temperature_values(config), "hard": None, "teachers": [], "rows": []}
    status = yield from _measure(config, teacher, should_stop, summary)
    summary["seconds"] = time.perf_counter() - started
    yield Finished(status, summary)


def _measure(config: LabelSmoothingConfig, teacher: nn.Module, should_stop, summary: dict):
    """run()'s steps, filling summary as each is measured; returns the status."""
    from kdviz.core.data import load_dataset

    base = config.distill
    dataset = load_dataset(base.dataset)
    summary["classes"] = list(dataset.classes)
    smoothings, temperatures = summary["smoothings"], summary["temperatures"]
    total, done = 1 + len(smoothings) * (1 + len(temperatures)), 0

    def stopped() -> bool:
        return should_stop is not None and bool(should_stop())

    if stopped():
        return "cancelled"
    finished = yield from _distill(base, teacher, should_stop, ("hard",))
    if finished is None or finished.status != "completed":
        return (yield from _ended(finished, "the hard-label student"))
    summary["n_train"] = finished.summary["n_train"]
    summary["hard"] = {key: finished.summary["hard"][key] for key in ("accuracy", "val_accuracy")}
    done += 1
    yield Measured(done, total, {"kind": "hard", **summary["hard"], "classes": summary["classes"]})

    for smoothing in smoothings:
        if stopped():
            return "cancelled"
        wanted = teacher_config(config, smoothing)
        if wanted == base.teacher:
            model, cached = teacher, True  # the caller's: ready, whether it was trained for this run or not
        else:
            finished = yield from _prepare(wanted, base.device, should_stop)
            if finished is None or finished.status != "completed":
                return (yield from _ended(finished, f"the teacher with ε = {smoothing:g}"))
            model, cached = finished.models["teacher"], bool(finished.summary.get("cached"))
        facts = {"smoothing": smoothing, "seed": wanted.seed, **teacher_facts(model, dataset),
                 "cached": cached}
        summary["teachers"].append(facts)
        done += 1
        yield Measured(done, total, {"kind": "teacher", **facts})
        for temperature in temperatures:
            if stopped():
                return "cancelled"
            cell = dataclasses.replace(base, teacher=wanted, temperature=temperature)
            finished = yield from _distill(cell, model, should_stop, ("kd",))
            if finished is None or finished.status != "completed":
                what = f"the KD student of the ε = {smoothing:g} teacher at T = {temperature:g}"
                return (yield from _ended(finished, what))
            kd = finished.summary["kd"]
            row = {"smoothing": smoothing, "temperature": temperature, "accuracy": kd["accuracy"],
                   "val_accuracy": kd["val_accuracy"], "agreement": kd.get("agreement")}
            summary["rows"].append(row)
            done += 1
            yield Measured(done, total, {"kind": "kd", **row})
    return "completed"


def _ended(finished, what: str):
    """The status of a training that did not complete (a stop: "cancelled"), with a Notice when it was not a stop."""
    status = "cancelled" if finished is None else finished.status
    if status != "cancelled":
        yield Notice(f"{what} {status}; the run ends here with what it measured")
    return status


def summary_from_points(points: list[dict]) -> dict:
    """A live run's partial summary from its Measured points (what run() fills as it goes), for the page."""
    hard = next((p for p in points if p.get("kind") == "hard"), None)
    return {"classes": hard.get("classes") if hard else None,
            "hard": {k: hard[k] for k in ("accuracy", "val_accuracy")} if hard else None,
            "teachers": [{k: v for k, v in p.items() if k != "kind"} for p in points if p.get("kind") == "teacher"],
            "rows": [{k: v for k, v in p.items() if k != "kind"} for p in points if p.get("kind") == "kd"]}


# ---- the experiment's contract (kdviz.experiments): budget, report -----------------------------------------------

def budget_configs(config: LabelSmoothingConfig) -> list[DistillConfig]:
    """The trainings it does (for the server's budget): the hard-label student (the first: it may train the base
    teacher first), and a KD student per (ε, T). Each is costed as a two-student run: an overestimate by up to 2×."""
    base = config.distill
    return [base] + [dataclasses.replace(base, teacher=teacher_config(config, smoothing), temperature=temperature)
                     for smoothing in smoothing_values(config) for temperature in temperature_values(config)]


def budget_teachers(config: LabelSmoothingConfig) -> list[tuple[TeacherConfig, int]]:
    """The teachers it trains itself (all but distill.teacher), each with the images it labels afterwards: its own
    validation and test images, and in each KD student's run the training images and the validation and test parts
    again."""
    from kdviz.core.budget import dataset_facts, train_images

    base = config.distill
    facts = dataset_facts(base.dataset)
    runs = len(temperature_values(config))
    labelled = (facts.val + facts.test) * (1 + runs) + train_images(base) * (base.epochs if base.augment else 1) * runs
    return [(teacher, labelled) for teacher in (teacher_config(config, e) for e in smoothing_values(config))
            if teacher != base.teacher]


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    from kdviz.core.results import mean_std

    return mean_std(values) if values else (None, None)


def summarise(runs: list[dict]) -> dict:
    """Over seeds: the hard-label student, each teacher (accuracies, flatness, off-target mass, the mean matrix) and
    each (ε, T) KD student (validation and test, and its gain over the hard-label student of the same seed), as means
    with _std keys and n_seeds."""
    hard_runs = [run for run in runs if run.get("hard")]
    hard = {"n_seeds": len(hard_runs)}
    for key in ("accuracy", "val_accuracy"):
        hard[key], hard[f"{key}_std"] = _mean_std([run["hard"][key] for run in hard_runs])
    teachers: dict[float, list] = {}
    cells: dict[tuple, list] = {}
    for run in runs:
        for facts in run.get("teachers") or []:
            teachers.setdefault(facts["smoothing"], []).append(facts)
        for row in run.get("rows") or []:
            cells.setdefault((row["smoothing"], row["temperature"]), []).append((row, run.get("hard")))
    teacher_rows = []
    for smoothing in sorted(teachers):
        group = teachers[smoothing]
        out = {"smoothing": smoothing, "n_seeds": len(group),
               "matrix": np.nanmean(np.array([t["matrix"] for t in group], dtype=float), axis=0).tolist()}
        for key in ("accuracy", "val_accuracy", "flatness", "off_target_mass"):
            out[key], out[f"{key}_std"] = _mean_std([t[key] for t in group])
        teacher_rows.append(out)
    rows = []
    for (smoothing, temperature) in sorted(cells):
        group = cells[(smoothing, temperature)]
        out = {"smoothing": smoothing, "temperature": temperature, "n_seeds": len(group)}
        for key in ("accuracy", "val_accuracy"):
            out[key], out[f"{key}_std"] = _mean_std([row[key] for row, _ in group])
            gains = [row[key] - h[key] for row, h in group if h]
            out[f"{key}_gain"], out[f"{key}_gain_std"] = _mean_std(gains)
            out[f"{key}_wins"] = sum(g > 0 for g in gains)
        rows.append(out)
    return {"hard": hard, "teachers": teacher_rows, "rows": rows}


def choose_temperatures(rows: list[dict]) -> list[dict]:
    """Per ε, the KD student row with the highest mean validation accuracy (ties: the lower T): its T is chosen on
    validation; its test accuracy is what is reported."""
    best: dict[float, dict] = {}
    for row in rows:
        current = best.get(row["smoothing"])
        if current is None or (row["val_accuracy"], -row["temperature"]) > \
                (current["val_accuracy"], -current["temperature"]):
            best[row["smoothing"]] = row
    return [best[smoothing] for smoothing in sorted(best)]


def claims(summary: dict, chosen: list[dict]) -> dict:
    """The paper's claim part by part, the most smoothed teacher against the least (both measured): is it more
    accurate (validation), flatter, is its student worse at its chosen T (test), and does it still teach at the lowest
    T (its KD student beats the hard-label student on validation). None where a part cannot be told yet."""
    teachers, hard = summary["teachers"], summary["hard"]
    out = dict.fromkeys(("teacher_more_accurate", "flatter", "student_worse", "teaches_at_low_t"))
    if len(teachers) < 2:
        return out
    low, high = teachers[0], teachers[-1]
    out["teacher_more_accurate"] = high["val_accuracy"] > low["val_accuracy"]
    out["flatter"] = high["flatness"] > low["flatness"]
    picked = {row["smoothing"]: row for row in chosen}
    if low["smoothing"] in picked and high["smoothing"] in picked:
        out["student_worse"] = picked[high["smoothing"]]["accuracy"] < picked[low["smoothing"]]["accuracy"]
    lowest = [row for row in summary["rows"] if row["smoothing"] == high["smoothing"]]
    if lowest and hard.get("val_accuracy") is not None:
        coolest = min(lowest, key=lambda row: row["temperature"])
        out["teaches_at_low_t"] = coolest["val_accuracy"] > hard["val_accuracy"]
    return out


def _value(run: dict, smoothing: float, temperature: float | None, key: str) -> float | None:
    """One seed's value: its teacher's (temperature None) or its KD student's at T; None where not measured."""
    rows = run.get("teachers") if temperature is None else run.get("rows")
    found = [r[key] for r in rows or [] if r["smoothing"] == smoothing and
             (temperature is None or r["temperature"] == temperature)]
    return found[0] if found else None


def paired(runs: list[dict], low: tuple, high: tuple, key: str) -> dict | None:
    """high − low seed by seed (the same seed: the same initial weights and batches, only ε and T differ): low and
    high are (ε, T or None for the teacher). Mean and std of the differences, on how many seeds high was larger
    and smaller (of n); None where no seed has both."""
    from kdviz.core.results import mean_std

    pairs = [(_value(run, *low, key), _value(run, *high, key)) for run in runs]
    differences = [b - a for a, b in pairs if a is not None and b is not None]
    if not differences:
        return None
    mean, std = mean_std(differences)
    return {"mean": mean, "std": std, "n": len(differences), "larger": sum(d > 0 for d in differences),
            "smaller": sum(d < 0 for d in differences)}


def comparisons(runs: list[dict], summary: dict, chosen: list[dict]) -> dict:
    """The most smoothed teacher against the least, seed by seed: the teachers' validation accuracy, their students'
    test accuracy at each one's T chosen on validation, and their students' validation accuracy at the lowest T."""
    teachers = summary["teachers"]
    if len(teachers) < 2:
        return {}
    low, high = teachers[0]["smoothing"], teachers[-1]["smoothing"]
    out = {"teacher_val": paired(runs, (low, None), (high, None), "val_accuracy")}
    picked = {row["smoothing"]: row["temperature"] for row in chosen}
    if low in picked and high in picked:
        out["student_test"] = paired(runs, (low, picked[low]), (high, picked[high]), "accuracy")
    if summary["rows"]:
        coolest = min(row["temperature"] for row in summary["rows"])
        out["lowest_t_val"] = paired(runs, (low, coolest), (high, coolest), "val_accuracy")
    return out


def analyse(runs: list[dict]) -> dict:
    """What report() and the page show of runs ([{"seed", **Finished.summary}], or one live run's partial summary):
    "teachers" and "rows" as means over seeds (_std keys), "chosen" each ε's T chosen on validation with its test
    accuracy, "paired" the most against the least smoothed teacher seed by seed, "claims" the paper's claim part by
    part and "verdict" in words."""
    summary = summarise(runs)
    chosen = choose_temperatures(summary["rows"])
    found = claims(summary, chosen)
    pairs = comparisons(runs, summary, chosen)
    return {"classes": next((run["classes"] for run in runs if run.get("classes")), None), "hard": summary["hard"],
            "teachers": summary["teachers"], "rows": summary["rows"], "chosen": chosen, "paired": pairs,
            "claims": found, "verdict": verdict(summary, chosen, found, pairs)}


def report(config: LabelSmoothingConfig, runs: list[dict]) -> dict:
    """The JSON of `python -m kdviz experiment label-smoothing`: runs is [{"seed", "status", **Finished.summary}];
    analyse()'s keys, the settings and the per-seed runs."""
    return {"experiment": NAME, "dataset": config.distill.dataset, "smoothings": smoothing_values(config),
            "temperatures": temperature_values(config), **analyse(runs), "runs": runs}


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def _points(value: float) -> str:
    return f"{100 * value:+.2f} points"


def _seeds(pair: dict | None, larger: str, smaller: str) -> str:
    """"; worse on 4 of 5 seeds, seed by seed -2.28 points ± 2.02" for a seed-by-seed comparison of several seeds
    (the count in the direction of the mean difference)."""
    if not pair or pair["n"] < 2:
        return ""
    words, count = (larger, pair["larger"]) if pair["mean"] >= 0 else (smaller, pair["smaller"])
    text = f"; {words} on {count} of {pair['n']} seeds, seed by seed {_points(pair['mean'])} " \
           f"± {100 * pair['std']:.2f}"
    return text + (", a difference within its spread" if abs(pair["mean"]) <= pair["std"] else "")


def verdict(summary: dict, chosen: list[dict], found: dict, pairs: dict | None = None) -> str:
    """Plain sentences: the teacher's accuracy, its flatness, its student at the T chosen on validation, at the lowest
    T, and where the paper's claim does not hold here; pairs (comparisons()) adds the seed-by-seed counts."""
    teachers, hard, pairs = summary["teachers"], summary["hard"], pairs or {}
    if not teachers:
        return "No teacher was measured yet."
    n = max(t["n_seeds"] for t in teachers)
    over = "on 1 seed" if n == 1 else f"over {n} seeds (means)"
    if len(teachers) < 2:
        return f"Only the teacher with ε = {teachers[0]['smoothing']:g} was measured: nothing to compare yet."
    low, high = teachers[0], teachers[-1]
    name = f"ε = {high['smoothing']:g}"
    change = high["val_accuracy"] - low["val_accuracy"]
    lines = [f"Teacher, {over}: smoothing with {name} made it "
             f"{'more' if change > 0 else 'less' if change < 0 else 'no more'} accurate on validation "
             f"({_pct(low['val_accuracy'])} at ε = {low['smoothing']:g} → {_pct(high['val_accuracy'])}, "
             f"{_points(change)}{_seeds(pairs.get('teacher_val'), 'more accurate', 'less accurate')}; test "
             f"{_pct(low['accuracy'])} → {_pct(high['accuracy'])}).",
             f"Its dark knowledge {'flattened' if found['flatter'] else 'did not flatten'}: the flatness of the wrong "
             f"classes at T = 1 went from {low['flatness']:.3f} to {high['flatness']:.3f} (1 = all wrong classes "
             f"alike), while the probability on them went from {_pct(low['off_target_mass'])} to "
             f"{_pct(high['off_target_mass'])}."]
    picked = {row["smoothing"]: row for row in chosen}
    if low["smoothing"] in picked and high["smoothing"] in picked:
        a, b = picked[low["smoothing"]], picked[high["smoothing"]]
        diff = b["accuracy"] - a["accuracy"]
        lines.append(f"Students at the T chosen on validation: the ε = {low['smoothing']:g} teacher's at "
                     f"T = {a['temperature']:g} {_pct(a['accuracy'])} on test, the {name} teacher's at "
                     f"T = {b['temperature']:g} {_pct(b['accuracy'])} ({_points(diff)}"
                     f"{_seeds(pairs.get('student_test'), 'better', 'worse')} at each one's T); the hard-label "
                     f"student {_pct(hard['accuracy'])}.")
    coolest = min((row for row in summary["rows"] if row["smoothing"] == high["smoothing"]),
                  key=lambda row: row["temperature"], default=None)
    if coolest is not None and found["teaches_at_low_t"] is not None:
        same_t = next((row for row in summary["rows"] if row["smoothing"] == low["smoothing"]
                       and row["temperature"] == coolest["temperature"]), None)
        better, worse = (f"the {name} teacher's student {word}" for word in ("better", "worse"))
        beside = "" if same_t is None else (
            f"; the ε = {low['smoothing']:g} teacher's student there {_pct(same_t['val_accuracy'])}"
            f"{_seeds(pairs.get('lowest_t_val'), better, worse)}")
        lines.append(f"At the lowest T ({coolest['temperature']:g}) the {name} teacher's student "
                     f"{'still beat' if found['teaches_at_low_t'] else 'did not beat'} the hard-label student on "
                     f"validation ({_pct(coolest['val_accuracy'])} vs {_pct(hard['val_accuracy'])}{beside}).")
    failed = [words for key, words in (("teacher_more_accurate", "the smoothed teacher is not more accurate"),
                                       ("flatter", "its soft labels are not flatter"),
                                       ("student_worse", "its student is not worse at its best T"))
              if found[key] is False]
    if failed:
        lines.append("Where the claim does not hold here: " + "; ".join(failed) + ".")
    elif found["student_worse"] is None:
        lines.append("The students are not all measured yet.")
    else:
        lines.append("The paper's claim holds here in every part.")
    return " ".join(lines)


def format_text(result: dict) -> str:
    n = max((t["n_seeds"] for t in result["teachers"]), default=1)

    def cell(row, key, scale=100.0, digits=2):
        value = f"{scale * row[key]:.{digits}f}"
        return value + (f"±{scale * row[key + '_std']:.{digits}f}" if n > 1 else "")

    w = 13 if n > 1 else 7
    lines = [f"{'teacher ε':>9} {'val %':>{w}} {'test %':>{w}} {'flatness':>{w + 2}} {'off-target %':>{w}}"]
    for t in result["teachers"]:
        lines.append(f"{t['smoothing']:>9g} {cell(t, 'val_accuracy'):>{w}} {cell(t, 'accuracy'):>{w}} "
                     f"{cell(t, 'flatness', 1.0, 3):>{w + 2}} {cell(t, 'off_target_mass'):>{w}}")
    chosen = {(r["smoothing"], r["temperature"]) for r in result["chosen"]}
    lines += ["", f"{'KD from ε':>9} {'T':>5} {'val %':>{w}} {'test %':>{w}} {'KD−hard test':>{w}}"]
    for row in result["rows"]:
        mark = "  ← chosen on validation" if (row["smoothing"], row["temperature"]) in chosen else ""
        gain = "" if row["accuracy_gain"] is None else f"{100 * row['accuracy_gain']:+.2f}"
        lines.append(f"{row['smoothing']:>9g} {row['temperature']:>5g} {cell(row, 'val_accuracy'):>{w}} "
                     f"{cell(row, 'accuracy'):>{w}} {gain:>{w}}{mark}")
    hard = result["hard"]
    if hard.get("accuracy") is not None:
        lines.append(f"hard-label student: {cell(hard, 'val_accuracy')} % validation, {cell(hard, 'accuracy')} % "
                     "test")
    lines += ["", result["verdict"],
              "Flatness: the mean normalised entropy of the teacher's probabilities over the wrong classes at T = 1, "
              "on validation (1 = every wrong class alike). T is chosen on validation; test is only reported."]
    return "\n".join(lines)
