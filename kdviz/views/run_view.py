"""A run's event log turned into what the live page shows: loss and accuracy tables, progress, the case study.

Accuracies come in two splits: validation (what a choice reads: the sweep's best value) and test (reported). Old
runs' events and summaries may lack the validation keys: they read as missing (NaN, None), never as an error.
"""
from __future__ import annotations

import io
import math

import pandas as pd

from kdviz.core.roles import MISTAKE, ROLE_NAMES, STUDENTS

LOSS_SERIES = {"hard": "hard-label student: cross-entropy", "kd_total": "KD student: total loss",
               "kd_soft": "KD student: soft term T²·KL", "kd_hard": "KD student: hard term (CE)",
               "mistake_total": "KD with the mistake: total loss", "mistake_soft": "KD with the mistake: soft term",
               "mistake_hard": "KD with the mistake: hard term (CE)"}

# The lecture's case study (ImageNet top-1 as given in the lecture): ResNet-152 teacher → ResNet-50 student.
# Parameters are counted from torchvision's architectures (no weights are downloaded): see lecture_rows().
LECTURE_CASE = {"teacher_accuracy": 0.78, "hard_accuracy": 0.7632, "kd_accuracy": 0.7775}


def distill_events(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("phase", "distill") == "distill"]


def loss_frame(events: list[dict], max_points: int = 1500) -> pd.DataFrame:
    """Long table (step, epoch, series, loss) of the distillation phase; long runs are averaged into bins."""
    rows = [(e["step"], e["epoch"], key, value) for e in distill_events(events) if e["event"] == "StepLosses"
            for key, value in e["losses"].items()]
    frame = pd.DataFrame(rows, columns=["step", "epoch", "series", "loss"])
    steps = frame["step"].nunique()
    if steps > max_points:  # keep the chart light: mean over bins of consecutive steps
        width = -(-steps // max_points)
        frame = (frame.assign(bin=(frame["step"] - 1) // width)
                 .groupby(["bin", "series"], as_index=False).agg(step=("step", "max"), epoch=("epoch", "max"),
                                                                 loss=("loss", "mean")).drop(columns="bin"))
    return frame


ACCURACY_ROLES = ("teacher", *STUDENTS, MISTAKE)  # the mistake's columns are NaN in runs without one
SPLITS = {"validation": "_val", "test": ""}  # split → suffix of its columns in accuracy_frame


def split_columns(split: str) -> dict[str, str]:
    """{role: column of accuracy_frame} for "validation" or "test"."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    return {role: role + SPLITS[split] for role in ACCURACY_ROLES}


def accuracy_frame(events: list[dict]) -> pd.DataFrame:
    """One row per evaluated epoch (0 = before training): teacher, hard and KD test accuracy ("teacher", "hard",
    "kd") and validation accuracy ("teacher_val", "hard_val", "kd_val"; NaN for events that predate validation)."""
    columns = ["epoch", *split_columns("test").values(), *split_columns("validation").values()]
    rows = [{"epoch": e["epoch"], **e["accuracy"],
             **{f"{role}_val": value for role, value in (e.get("val_accuracy") or {}).items()}}
            for e in distill_events(events) if e["event"] == "EpochEnd"]
    return pd.DataFrame(rows, columns=columns, dtype=float).astype({"epoch": int})


def lacks_validation(frame: pd.DataFrame) -> bool:
    """Whether the run evaluated epochs without recording validation accuracies (runs from before the split); a run
    that has not evaluated an epoch yet will record them."""
    return bool(len(frame)) and not frame[list(split_columns("validation").values())].notna().any().any()


def progress(events: list[dict]) -> dict:
    """Phase, steps done in it, fraction, and an estimate of the seconds it has left (from the logged pace)."""
    phase, total, step, first = "waiting", 0, 0, None
    for event in events:
        if event["event"] == "Started":
            phase, total, step, first = event.get("phase", "distill"), event["total_steps"], 0, event
        elif event["event"] == "StepLosses":
            step = event["step"]
    fraction = min(step / total, 1.0) if total else 0.0
    last = events[-1] if events else None
    eta = None
    if first is not None and step >= 3 and "t" in first and "t" in last:
        eta = (last["t"] - first["t"]) / step * max(total - step, 0)
    device = first["device"] if first else None
    return {"phase": phase, "fraction": fraction, "step": step, "total": total, "eta": eta, "device": device}


# The case-study table's accuracy columns (short: nine columns must fit a projected page without scrolling).
VAL_COLUMN, TEST_COLUMN, GAIN_COLUMN = "validation (%)", "test (%)", "KD gain (test)"
# A student's fidelity to its teacher on the test images (Stanton et al. 2021): top-1 agreement, KL(teacher ‖ student).
AGREEMENT_COLUMN, KL_COLUMN = "agrees with teacher (%)", "KL(teacher‖student)"


def _case_row(role: str, architecture: str, params: int, size_bytes: int, val_accuracy: float | None,
              accuracy: float, teacher_params: int, gain: float | None) -> dict:
    """One row of a case-study table; the same columns for this run and for the lecture's ImageNet example."""
    return {"model": role, "architecture": architecture, "parameters": params, "size (MB)": size_bytes / 1e6,
            VAL_COLUMN: math.nan if val_accuracy is None else 100 * val_accuracy, TEST_COLUMN: 100 * accuracy,
            "smaller": "" if role == "teacher" else f"{teacher_params / params:.1f}×",
            GAIN_COLUMN: "" if gain is None else f"{100 * gain:+.2f} points"}


def _stats(summary: dict) -> tuple[dict, bool]:
    """(kdviz.core.results.seed_summary of this one run, whether it recorded validation). A summary from before the
    validation split has no val_ keys: the statistics are computed on a copy with test standing in, and the caller
    shows the validation figures as missing."""
    from kdviz.core.results import seed_summary

    roles = ("teacher", *STUDENTS) + ((MISTAKE,) if MISTAKE in summary else ())
    recorded = all("val_accuracy" in summary[role] for role in roles)
    if not recorded:
        summary = {**summary, **{role: {"val_accuracy": summary[role]["accuracy"], **summary[role]}
                                 for role in roles}}
    return seed_summary([summary], summary["n_test"], summary.get("n_val", 0), roles[1:]), recorded


def case_study(summary: dict, student_name: str, teacher_name: str) -> pd.DataFrame:
    """The lecture's table for this run: teacher / hard-label student / KD student, validation beside test, with
    test errors out of N (the rows of kdviz.core.results.case_rows, as the CLI prints them)."""
    from kdviz.core.results import case_rows

    stats, recorded = _stats(summary)
    teacher = summary["teacher"] if recorded else {"val_accuracy": None, **summary["teacher"]}
    rows = []
    for row in case_rows(teacher, summary["hard"], stats):
        name = teacher_name if row["role"] == "teacher" else student_name
        frame_row = _case_row(row["name"], name, row["params"], row["size_bytes"],
                              row["val_accuracy"] if recorded else None, row["accuracy"],
                              summary["teacher"]["params"], row["gain"])
        rows.append({**frame_row, "test errors": int(row["errors"]),
                     AGREEMENT_COLUMN: math.nan if row["agreement"] is None else 100 * row["agreement"],
                     KL_COLUMN: math.nan if row["kl_to_teacher"] is None else row["kl_to_teacher"]})
    return pd.DataFrame(rows)


def verdict(summary: dict) -> tuple[bool, str]:
    """(KD won?, one plain sentence on test errors) for one run — the page says so plainly when KD lost."""
    from kdviz.core.results import verdict as seeds_verdict

    return seeds_verdict(_stats(summary)[0])


def mistake_sentence(summary: dict, mistake: str) -> str:
    """One sentence on a run's third student, the one with the mistake, beside the correct KD student."""
    from kdviz.core.results import mistake_sentence as sentence

    return sentence(_stats(summary)[0], mistake)


def metrics_csv(events: list[dict]) -> str:
    """Per-step losses and per-epoch validation and test accuracies of the distillation phase, as one CSV."""
    losses = loss_frame(events, max_points=10**9).pivot_table(index=["step", "epoch"], columns="series",
                                                              values="loss").reset_index()
    frame = accuracy_frame(events)
    accuracies = pd.DataFrame({"epoch": frame["epoch"]} | {
        f"{role}_{split}_accuracy": frame[column] for split in ("val", "test")
        for role, column in split_columns("validation" if split == "val" else "test").items()
        if role != MISTAKE or frame[column].notna().any()})
    buffer = io.StringIO()
    buffer.write("# losses per step\n")
    losses.to_csv(buffer, index=False)
    buffer.write("# validation and test accuracy per epoch\n")
    accuracies.to_csv(buffer, index=False)
    return buffer.getvalue()


def lecture_rows() -> pd.DataFrame:
    """The lecture's ImageNet case study, with parameters counted from torchvision's ResNet definitions (the lecture
    gives no validation accuracy: that column is left out)."""
    from torchvision.models import resnet50, resnet152

    from kdviz.core.models import count_parameters

    teacher, student = count_parameters(resnet152()), count_parameters(resnet50())
    case = LECTURE_CASE
    return pd.DataFrame([
        _case_row("teacher", "ResNet-152", teacher, 4 * teacher, None, case["teacher_accuracy"], teacher, None),
        _case_row("hard-label student", "ResNet-50", student, 4 * student, None, case["hard_accuracy"], teacher, None),
        _case_row("KD student", "ResNet-50", student, 4 * student, None, case["kd_accuracy"], teacher,
                  case["kd_accuracy"] - case["hard_accuracy"]),
    ]).drop(columns=VAL_COLUMN)


# ---- sweeps -----------------------------------------------------------------------------------------------------

SWEEP_PARAMETERS = {"temperature": "temperature T", "alpha": "alpha (weight of the soft term)",
                    "student_width": "student width"}


def parse_sweep_values(parameter: str, text: str) -> list[float]:
    """'1, 2, 4, 8, 20' → [1.0, 2.0, ...]; ValueError naming the bad entry (2 to 12 distinct values)."""
    if parameter not in SWEEP_PARAMETERS:
        raise ValueError(f"cannot sweep over {parameter!r}: choose one of {', '.join(SWEEP_PARAMETERS)}")
    values = []
    for part in str(text).replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"sweep values must be numbers separated by commas, got {part!r}") from None
        if parameter == "student_width":
            if value != int(value) or value < 1:
                raise ValueError(f"student widths must be whole numbers >= 1, got {part!r}")
            value = int(value)
        values.append(value)
    values = list(dict.fromkeys(values))
    if not 2 <= len(values) <= 12:
        raise ValueError(f"a sweep needs 2 to 12 distinct values, got {len(values)}")
    return values


def sweep_configs(base, parameter: str, values: list[float]) -> list:
    """One DistillConfig per value (each validated), everything else as in base."""
    import dataclasses

    from kdviz.core.engine import check_config

    configs = []
    for value in values:
        if parameter == "student_width":
            config = dataclasses.replace(base, student=dataclasses.replace(base.student, width=int(value)))
        else:
            config = dataclasses.replace(base, **{parameter: float(value)})
        configs.append(check_config(config))
    return configs


def sweep_frame(runs: list) -> pd.DataFrame:
    """Final accuracies of a sweep's completed runs, one row per swept value (sorted): validation ("hard_val",
    "kd_val"; NaN for runs that predate it) and test ("hard", "kd")."""
    rows = [{"value": run.tags["value"], **{f"{role}_val": run.summary[role].get("val_accuracy", math.nan)
                                             for role in STUDENTS},
             **{role: run.summary[role]["accuracy"] for role in STUDENTS}}
            for run in runs if run.state == "completed" and run.summary and all(r in run.summary for r in STUDENTS)]
    columns = ["value", "hard_val", "kd_val", "hard", "kd"]
    return pd.DataFrame(rows, columns=columns, dtype=float).sort_values("value").reset_index(drop=True)


SWEEP_SYMBOLS = {"temperature": "T", "alpha": "α", "student_width": "student width"}


def best_on_validation(frame: pd.DataFrame) -> pd.Series | None:
    """The swept value whose KD student has the best validation accuracy (the first of ties), or None when no run
    recorded validation. Test accuracy never takes part: it is only reported for the value chosen."""
    scored = frame.dropna(subset=["kd_val"])
    return None if scored.empty else scored.loc[scored["kd_val"].idxmax()]


def sweep_verdict(frame: pd.DataFrame, parameter: str) -> str:
    """One sentence naming the value chosen on validation, then its test accuracy."""
    best = best_on_validation(frame)
    if best is None:
        return "These runs recorded no validation accuracy (they predate the validation split): no value is chosen."
    symbol, value = SWEEP_SYMBOLS[parameter], f"{best['value']:g}"
    return (f"Best on validation: {symbol} = {value} (KD student {best['kd_val']:.1%} validation accuracy). Its test "
            f"accuracy: KD student {best['kd']:.1%}, hard-label student {best['hard']:.1%} "
            f"({100 * (best['kd'] - best['hard']):+.2f} points).")


# ---- labels ----------------------------------------------------------------------------------------------------

def describe_config(config: dict) -> str:
    """A short human description of a saved run config (tolerates old records without the newer fields)."""
    student = config.get("student", {})
    subset = config.get("train_subset") or "all"
    extras = [f"weight decay {config['weight_decay']:g}" if config.get("weight_decay") else "",
              f"dropout {student['dropout']:g}" if student.get("dropout") else "",
              f"mistake: {config['mistake']}" if config.get("mistake", "none") != "none" else ""]
    return (f"{config.get('teacher', {}).get('dataset', '?')}, student {student.get('arch')} "
            f"{student.get('width')}×{student.get('depth')}, T={config.get('temperature')}, "
            f"α={config.get('alpha')}, {config.get('epochs')} epochs, {subset} images, seed {config.get('seed')}"
            + "".join(f", {extra}" for extra in extras if extra))


def _percent(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"


def run_label(run_id: str, state: str, config: dict, summary: dict | None) -> str:
    """A run in the history: id, state, config and, when it finished, both students' validation and test accuracy."""
    text = f"{run_id} · {state} · {describe_config(config)}"
    if summary and all(role in summary for role in STUDENTS):
        parts = [f"{ROLE_NAMES[role].split()[0]} val {_percent(summary[role].get('val_accuracy'))} / test "
                 f"{_percent(summary[role].get('accuracy'))}" for role in reversed(STUDENTS)]
        text += " · " + ", ".join(parts)
    return text
