"""Patient and consistent (Beyer et al. 2022, "Knowledge distillation: a good teacher is patient and consistent"): with
augmentation, should the teacher label the very jittered view the student sees, and does that matter more the longer
the student trains?

Two kdviz.core.engine.distill runs per seed, from the same teacher, with the same seed (so the same initial weights,
the same batches and the same jitter), advanced side by side one epoch at a time:

* consistent: consistent_teacher=True, the teacher labels each batch's jittered view; its run also trains the
  hard-label student (the baseline, on the same jittered batches);
* fixed: consistent_teacher=False, the teacher's logits are computed once on the unjittered images and reused for
  every jittered view (the cheap way: a "fixed teacher"); only its KD student trains.

The engine's learning rate is constant (AdamW, no schedule), so a run's evaluation after epoch E is exactly what a run
of E epochs gives: one long run per mode measures every epoch count. Every epoch is measured (the curves); the epoch
counts in `epochs` are the reported ones, where the table, the gaps and the choice on validation are read.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Iterator

from torch import nn

from kdviz.core.engine import (DistillConfig, Diverged, EpochEnd, Finished, Notice, StopCheck, check_config,
                               distill)
from kdviz.core.flags import flag
from kdviz.experiments.events import Measured

NAME = "patient-consistent"
MAX_EPOCHS = 1000
MAX_REPORTED = 24
MODES = ("consistent", "fixed")  # the two runs, in the order each epoch is measured
STUDENTS = ("consistent", "fixed", "hard")  # the three students compared: KD (consistent), KD (fixed), hard labels
VIEW_DRAWS = 5  # jitter draws over the training images when measuring how far the two teachers' labels are apart
STUDENT_NAMES = {"consistent": "KD, consistent teacher", "fixed": "KD, fixed teacher", "hard": "hard-label student"}


@dataclass(frozen=True)
class PatientConsistentConfig:
    """`distill` is the base config (teacher, student, data, T, α, lr, jitter, seed); its own `epochs` is replaced by
    the largest of `epochs`, the reported epoch counts (both runs last that long and are read at each of them)."""

    distill: DistillConfig
    epochs: tuple[int, ...] = flag((5, 15, 30, 60), "--report-epochs", "epoch counts at which both KD students and "
                                   "the hard-label student are compared, ascending; the runs last the largest "
                                   "(default {default})", "E")


def default_config() -> PatientConsistentConfig:
    """The lecture preset (mnist5k; its 1200×2 teacher trained with ±2-pixel jitter; an 800×2 student on 1000 images,
    T = 20, α = 0.9, AdamW 2e-3, batch 128, jitter ±2), read at 5, 15, 30 (the preset's own length) and 60 epochs."""
    from kdviz.core.presets import get_preset

    config = PatientConsistentConfig(get_preset("lecture"))
    return dataclasses.replace(config, distill=dataclasses.replace(config.distill, epochs=max(config.epochs)))


def check(config: PatientConsistentConfig) -> PatientConsistentConfig:
    """ValueError (one line, naming the value) for bad epoch counts or no jitter."""
    epochs = config.epochs
    if not isinstance(epochs, tuple) or not epochs:
        raise ValueError(f"give at least one epoch count to report, got {epochs!r}")
    if any(not isinstance(e, int) or isinstance(e, bool) or not 1 <= e <= MAX_EPOCHS for e in epochs):
        raise ValueError(f"epoch counts must be integers in [1, {MAX_EPOCHS}], got {epochs!r}")
    if any(a >= b for a, b in zip(epochs, epochs[1:])):
        raise ValueError(f"epoch counts must be ascending without repeats, e.g. 5, 15, 30, got {epochs!r}")
    if len(epochs) > MAX_REPORTED:
        raise ValueError(f"at most {MAX_REPORTED} epoch counts, got {len(epochs)}")
    if config.distill.augment == 0:
        raise ValueError("the comparison needs jitter (augment > 0): without it the consistent and the fixed teacher "
                         "give the very same labels")
    check_config(run_config(config, "consistent"))
    return config


def run_config(config: PatientConsistentConfig, mode: str) -> DistillConfig:
    """The DistillConfig of one mode's run: the base config, max(epochs) long, with its teacher consistent or fixed."""
    return dataclasses.replace(config.distill, epochs=max(config.epochs), consistent_teacher=mode == "consistent")


def _next_epoch(stream: Iterator):
    """Advance a distill stream to its next trained epoch; yields its Notice and Diverged events on the way and
    returns that EpochEnd, or the Finished event if the run ended first (None if the stream ran dry)."""
    for event in stream:
        if isinstance(event, Finished) or (isinstance(event, EpochEnd) and event.epoch > 0):
            return event
        if isinstance(event, (Notice, Diverged)):
            yield event
    return None


def _point(mode: str, end: EpochEnd, reported: tuple[int, ...]) -> dict:
    point = {"mode": mode, "epoch": end.epoch, "reported": end.epoch in reported,
             "kd_accuracy": end.accuracy["kd"], "kd_val_accuracy": end.val_accuracy["kd"]}
    if "hard" in end.accuracy:
        point |= {"hard_accuracy": end.accuracy["hard"], "hard_val_accuracy": end.val_accuracy["hard"]}
    return point


def teacher_views(config: PatientConsistentConfig, teacher: nn.Module, draws: int = VIEW_DRAWS) -> dict:
    """How far apart the two teachers' labels are, on the students' training images (the seed's subset, as the engine
    draws it) and `draws` jitter draws from the seed's own "views" stream: the mean KL(view ‖ image) in nats of the
    teacher's softened labels at T (what the consistent teacher gives a jittered view against what the fixed one
    reuses for it), how often its top class is the same, and its accuracy on the views and on the images."""
    import torch.nn.functional as F

    from kdviz.core.data import load_dataset, random_shift, stratified_subset
    from kdviz.core.engine import generator, predict_logits

    base = config.distill
    dataset = load_dataset(base.dataset)
    index = stratified_subset(dataset.train_y, base.train_subset, base.seed) if base.train_subset else None
    x = dataset.train_x if index is None else dataset.train_x[index]
    y = dataset.train_y if index is None else dataset.train_y[index]
    device = next(teacher.parameters()).device
    image = predict_logits(teacher, x.to(device)).cpu().float()
    image_labels = F.log_softmax(image / base.temperature, dim=-1)
    views = generator(base.seed, "views")
    kl, same, right = [], [], []
    for _ in range(draws):
        view = predict_logits(teacher, random_shift(x, base.augment, views, dataset.background).to(device))
        view = view.cpu().float()
        view_labels = F.log_softmax(view / base.temperature, dim=-1)
        kl.append(float(F.kl_div(image_labels, view_labels, reduction="batchmean", log_target=True)))
        same.append(float((view.argmax(-1) == image.argmax(-1)).float().mean()))
        right.append(float((view.argmax(-1) == y).float().mean()))
    return {"kl": sum(kl) / draws, "same_top_class": sum(same) / draws, "view_accuracy": sum(right) / draws,
            "image_accuracy": float((image.argmax(-1) == y).float().mean()), "temperature": base.temperature,
            "draws": draws, "n_images": len(x)}


def run(config: PatientConsistentConfig, teacher: nn.Module, should_stop: StopCheck | None = None) -> Iterator:
    """Yield Measured after every epoch of each run (consistent, then fixed, epoch by epoch), the engine's Notice and
    Diverged events, then Finished with {"points": [...], "teacher": {...}, ...}; a stop keeps the points measured so
    far (status "cancelled"), a diverged run ends the experiment there (status "diverged")."""
    check(config)
    teacher = teacher.eval()
    views = teacher_views(config, teacher)
    last = max(config.epochs)
    streams = {"consistent": distill(run_config(config, "consistent"), teacher, should_stop, students=("hard", "kd")),
               "fixed": distill(run_config(config, "fixed"), teacher, should_stop, students=("kd",))}
    points, facts, status, started = [], {}, "completed", time.perf_counter()
    for epoch in range(1, last + 1):
        for mode, stream in streams.items():
            if should_stop is not None and should_stop():
                status = "cancelled"
                break
            end = yield from _next_epoch(stream)
            if not isinstance(end, EpochEnd):
                status = end.status if isinstance(end, Finished) and end.status != "completed" else "cancelled"
                break
            facts = {"accuracy": end.accuracy["teacher"], "val_accuracy": end.val_accuracy["teacher"]}
            points.append(_point(mode, end, config.epochs))
            yield Measured(len(points), len(MODES) * last, points[-1])
        if status != "completed":
            break
    n_train = None
    for stream in streams.values():
        if status == "completed":  # the engine's own Finished (its summary: the final models' facts)
            finished = next((e for e in stream if isinstance(e, Finished)), None)
            n_train = finished.summary["n_train"] if finished is not None else n_train
        stream.close()
    yield Finished(status, {"points": points, "teacher": facts, "teacher_views": views, "seed": config.distill.seed,
                            "epochs": list(config.epochs), "n_train": n_train,
                            "seconds": time.perf_counter() - started})


# ---- per seed and over seeds ----------------------------------------------------------------------------------

SPLITS = ("val_", "")  # validation (what chooses), test (what is reported)


def by_epoch(points: list[dict]) -> list[dict]:
    """One seed's points as one row per epoch measured in both runs: {"epoch", "reported", and for each student of
    STUDENTS f"{student}_val_accuracy" and f"{student}_accuracy"}, ascending epochs."""
    runs = {mode: {p["epoch"]: p for p in points if p["mode"] == mode} for mode in MODES}
    rows = []
    for epoch in sorted(set(runs["consistent"]) & set(runs["fixed"])):
        consistent, fixed = runs["consistent"][epoch], runs["fixed"][epoch]
        row = {"epoch": epoch, "reported": bool(consistent.get("reported"))}
        for split in SPLITS:
            row[f"consistent_{split}accuracy"] = consistent[f"kd_{split}accuracy"]
            row[f"fixed_{split}accuracy"] = fixed[f"kd_{split}accuracy"]
            row[f"hard_{split}accuracy"] = consistent[f"hard_{split}accuracy"]
        rows.append(row)
    return rows


def summarise(runs: list[dict], reported_only: bool = True) -> list[dict]:
    """Per epoch over seeds (the reported epochs; all epochs with reported_only False, for the curves): mean and std
    of each student's validation and test accuracy, of consistent − fixed ("gap", "val_gap") and of fixed − hard
    ("fixed_vs_hard", "val_fixed_vs_hard"), and on how many seeds consistent was strictly better ("consistent_wins",
    "consistent_val_wins")."""
    from kdviz.core.results import mean_std

    groups: dict[int, list[dict]] = {}
    for result in runs:
        for row in by_epoch(result["points"]):
            if row["reported"] or not reported_only:
                groups.setdefault(row["epoch"], []).append(row)
    out = []
    for epoch, rows in sorted(groups.items()):
        summary = {"epoch": epoch, "n_seeds": len(rows), "reported": rows[0]["reported"]}
        for student in STUDENTS:
            for split in SPLITS:
                key = f"{student}_{split}accuracy"
                summary[key], summary[f"{key}_std"] = mean_std([r[key] for r in rows])
        for split in SPLITS:
            gaps = [r[f"consistent_{split}accuracy"] - r[f"fixed_{split}accuracy"] for r in rows]
            summary[f"{split}gap"], summary[f"{split}gap_std"] = mean_std(gaps)
            summary[f"consistent_{split}wins"] = sum(g > 0 for g in gaps)
            below = [r[f"fixed_{split}accuracy"] - r[f"hard_{split}accuracy"] for r in rows]
            summary[f"{split}fixed_vs_hard"], summary[f"{split}fixed_vs_hard_std"] = mean_std(below)
        out.append(summary)
    return out


def chosen_on_validation(rows: list[dict], runs: list[dict] | None = None) -> dict:
    """For each student, the reported epoch count with the best mean validation accuracy (ties: fewer epochs), its
    validation and test accuracy there; and, given the runs, on how many seeds the consistent teacher's student at
    its chosen epoch count beat the fixed teacher's at its own, on test ("consistent_wins")."""
    if not rows:
        return {}
    chosen = {}
    for student in STUDENTS:
        best = max(rows, key=lambda r: (r[f"{student}_val_accuracy"], -r["epoch"]))
        chosen[student] = {"epoch": best["epoch"], "val_accuracy": best[f"{student}_val_accuracy"],
                           "accuracy": best[f"{student}_accuracy"], "accuracy_std": best[f"{student}_accuracy_std"]}
    if runs:
        wins, n = 0, 0
        for result in runs:
            seed = {r["epoch"]: r for r in by_epoch(result["points"])}
            consistent, fixed = seed.get(chosen["consistent"]["epoch"]), seed.get(chosen["fixed"]["epoch"])
            if consistent and fixed:
                n += 1
                wins += consistent["consistent_accuracy"] > fixed["fixed_accuracy"]
        chosen["consistent_wins"], chosen["n_seeds"] = wins, n
    return chosen


# ---- the experiment's contract (kdviz.experiments): budget, report, text -----------------------------------------

def budget_configs(config: PatientConsistentConfig) -> list[DistillConfig]:
    """The trainings it does (for the server's budget): the consistent run (two students, the teacher on every
    batch) and the fixed run (one student; the engine's estimate counts both, and a fixed teacher's labels once)."""
    return [run_config(config, mode) for mode in MODES]


def report(config: PatientConsistentConfig, runs: list[dict]) -> dict:
    """The JSON of `python -m kdviz experiment patient-consistent`: runs is [{"seed", **Finished.summary}]. "rows"
    are the reported epochs' means over seeds (with _std keys), "curves" every epoch's, "runs" the per-seed points;
    "chosen_on_validation" each student's epoch count chosen on validation."""
    from kdviz.core.results import mean_std

    rows = summarise(runs)
    teachers = [r["teacher"] for r in runs if r.get("teacher")]
    teacher = {key: mean_std([t[key] for t in teachers])[0] for key in ("accuracy", "val_accuracy")} \
        if teachers else {}
    seen = [r["teacher_views"] for r in runs if r.get("teacher_views")]
    views = {key: mean_std([v[key] for v in seen])[0] for key in ("kl", "same_top_class", "view_accuracy",
                                                                   "image_accuracy")} if seen else {}
    if seen:
        views |= {"temperature": seen[0]["temperature"], "draws": seen[0]["draws"], "n_images": seen[0]["n_images"]}
    seconds = [r["seconds"] for r in runs if r.get("seconds") is not None]
    return {"experiment": NAME, "rows": rows, "curves": summarise(runs, reported_only=False), "runs": runs,
            "chosen_on_validation": chosen_on_validation(rows, runs), "teacher": teacher, "teacher_views": views,
            "epochs": list(config.epochs), "dataset": config.distill.dataset, "augment": config.distill.augment,
            "seconds_per_seed": mean_std(seconds)[0] if seconds else None}


def _points(value: float) -> str:
    return f"{100 * value:+.2f}"


def _list(epochs: list[int]) -> str:
    return ", ".join(map(str, epochs)) if epochs else "none"


def verdict(rows: list[dict], chosen: dict | None = None) -> str:
    """Plain sentences from the summary rows: the students chosen on validation and their test accuracy; at which
    epoch counts the consistent teacher beats the fixed one; whether that gap grows with epochs (patience); whether the
    fixed teacher's student falls below the hard-label student; and where the paper's claim does not hold here."""
    if not rows:
        return "No epoch was measured in both runs."
    chosen = chosen or chosen_on_validation(rows)
    n = rows[0]["n_seeds"]
    means = "" if n == 1 else f" (means over {n} seeds)"
    c, f, h = (chosen[s] for s in STUDENTS)
    wins = "" if "consistent_wins" not in chosen or chosen["n_seeds"] <= 1 else \
        f", consistent better on {chosen['consistent_wins']} of {chosen['n_seeds']} seeds"
    lines = [f"Chosen on validation{means}: the consistent teacher's student at {c['epoch']} epochs "
             f"({100 * c['accuracy']:.2f} % test), the fixed teacher's at {f['epoch']} ({100 * f['accuracy']:.2f} %), "
             f"the hard-label student at {h['epoch']} ({100 * h['accuracy']:.2f} %); consistent − fixed on test "
             f"{_points(c['accuracy'] - f['accuracy'])} points{wins}."]
    ahead = [r["epoch"] for r in rows if r["val_gap"] > 0]
    behind = [r["epoch"] for r in rows if r["val_gap"] < 0]
    first, final = rows[0], rows[-1]
    lines.append(f"On validation the consistent teacher's student is ahead at {len(ahead)} of {len(rows)} epoch counts "
                 f"({_list(ahead)})" + (f" and behind at {_list(behind)}" if behind else "") + "; the gap goes from "
                 f"{_points(first['val_gap'])} points at {first['epoch']} epochs to {_points(final['val_gap'])} at "
                 f"{final['epoch']} (test: {_points(first['gap'])} → {_points(final['gap'])}).")
    steady = all(b["val_gap"] >= a["val_gap"] for a, b in zip(rows, rows[1:]))
    below = [r["epoch"] for r in rows if r["val_fixed_vs_hard"] < 0]
    lines.append("The fixed teacher's student is below the hard-label student on validation at "
                 f"{_list(below)} epochs." if below else
                 "The fixed teacher's student is never below the hard-label student on validation.")
    claim = claim_failures(rows, chosen)
    if claim:
        lines.append("Where the paper's claim does not hold here: " + "; ".join(claim) + ".")
    else:
        lines.append("The paper's claim holds here: consistent beats fixed, the gap grows with epochs"
                     + (" (steadily)" if steady else " (not steadily)") + ", and the consistent student is best at the "
                     "longest run.")
    return " ".join(lines)


def claim_failures(rows: list[dict], chosen: dict | None = None) -> list[str]:
    """Where the paper's claim does not hold in these rows, in words (empty: it holds): the consistent teacher's student
    must beat the fixed one's (on test at the epoch counts chosen on validation, and on validation at most epoch
    counts), the validation gap must be larger at the longest run than at the shortest, and the consistent student
    must be best on validation at the longest run (patience)."""
    if not rows:
        return ["nothing was measured"]
    chosen = chosen or chosen_on_validation(rows)
    c, f, final = chosen["consistent"], chosen["fixed"], rows[-1]
    ahead = sum(r["val_gap"] > 0 for r in rows)
    failures = []
    if not c["accuracy"] > f["accuracy"]:
        failures.append("the consistent teacher's student is not better on test at the epoch counts chosen on "
                        "validation")
    if not ahead > len(rows) / 2:
        failures.append(f"the consistent teacher is ahead on validation at only {ahead} of {len(rows)} epoch counts")
    if len(rows) > 1 and not final["val_gap"] > rows[0]["val_gap"]:
        failures.append("the gap does not grow with training")
    if len(rows) > 1 and c["epoch"] != final["epoch"]:
        failures.append(f"the consistent teacher's student is best on validation before the longest run "
                        f"({c['epoch']} of {final['epoch']} epochs)")
    return failures


def agrees(rows: list[dict], chosen: dict | None = None) -> bool:
    """Whether the paper's claim holds here in full (what the page draws as a success)."""
    return not claim_failures(rows, chosen)


def views_words(views: dict) -> str:
    """teacher_views in one sentence: how different the fixed teacher's labels are from the consistent one's."""
    return (f"The two teachers' labels for a jittered view (T = {views['temperature']:g}, {views['draws']} jitter "
            f"draws of the {views['n_images']} training images): KL(view ‖ image) {views['kl']:.4f} nats, the same "
            f"top class on {100 * views['same_top_class']:.1f} % of views; the teacher is right on "
            f"{100 * views['view_accuracy']:.1f} % of views and {100 * views['image_accuracy']:.1f} % of the images.")


def format_text(result: dict) -> str:
    rows = result["rows"]
    n = rows[0]["n_seeds"] if rows else 1
    w = 13 if n > 1 else 7

    def value(row, key, sign=False):
        text = f"{100 * row[key]:{'+' if sign else ''}.2f}"
        return text + (f"±{100 * row[key + '_std']:.2f}" if n > 1 else "")

    lines = [f"{'epochs':>6} " + " ".join(f"{head:>{w}}" for head in (
        "consist. val", "fixed val", "hard val", "c−f val", "consist. test", "fixed test", "hard test", "c−f test"))
        + f" {'consistent wins val/test':>24}"]
    for row in rows:
        cells = [value(row, k) for k in ("consistent_val_accuracy", "fixed_val_accuracy", "hard_val_accuracy")]
        cells.append(value(row, "val_gap", True))
        cells += [value(row, k) for k in ("consistent_accuracy", "fixed_accuracy", "hard_accuracy")]
        cells.append(value(row, "gap", True))
        wins = f"{row['consistent_val_wins']}/{row['consistent_wins']} of {n}"
        lines.append(f"{row['epoch']:>6} " + " ".join(f"{cell:>{w}}" for cell in cells) + f" {wins:>24}")
    teacher = result.get("teacher") or {}
    if teacher:
        lines.append(f"teacher: {100 * teacher['val_accuracy']:.2f} % validation, {100 * teacher['accuracy']:.2f} % "
                     "test (the preset's, the same for every seed)")
    if result.get("teacher_views"):
        lines.append(views_words(result["teacher_views"]))
    lines.append(verdict(rows, result.get("chosen_on_validation")))
    lines.append("Accuracies in %; c−f: consistent − fixed teacher's KD student, in points; epoch counts chosen on "
                 "validation, test only reported.")
    return "\n".join(lines)
