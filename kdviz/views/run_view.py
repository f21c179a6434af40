"""A run's event log turned into what the live page shows: loss and accuracy tables, progress, the case study."""
from __future__ import annotations

import io

import pandas as pd

LOSS_SERIES = {"hard": "hard-label student: cross-entropy", "kd_total": "KD student: total loss",
               "kd_soft": "KD student: soft term T²·KL", "kd_hard": "KD student: hard term (CE)"}

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


def accuracy_frame(events: list[dict]) -> pd.DataFrame:
    """One row per evaluated epoch (0 = before training): teacher, hard and KD test accuracy."""
    rows = [{"epoch": e["epoch"], **e["accuracy"]} for e in distill_events(events) if e["event"] == "EpochEnd"]
    return pd.DataFrame(rows, columns=["epoch", "teacher", "hard", "kd"])


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


def _case_row(role: str, architecture: str, params: int, size_bytes: int, val_accuracy: float | None,
              accuracy: float, teacher_params: int, gain: float | None) -> dict:
    """One row of a case-study table; the same columns for this run and for the lecture's ImageNet example."""
    return {"model": role, "architecture": architecture, "parameters": params, "size (MB)": size_bytes / 1e6,
            "validation accuracy (%)": None if val_accuracy is None else 100 * val_accuracy,
            "test accuracy (%)": 100 * accuracy,
            "smaller than teacher": "" if role == "teacher" else f"{teacher_params / params:.1f}×",
            "vs hard-label (test)": "" if gain is None else f"{100 * gain:+.2f} points"}


def case_study(summary: dict, student_name: str, teacher_name: str) -> pd.DataFrame:
    """The lecture's table for this run: teacher / hard-label student / KD student, validation beside test, with
    test errors out of N (the rows of kdviz.core.results.case_rows, as the CLI prints them)."""
    from kdviz.core.results import case_rows, seed_summary

    n_test = summary["n_test"]
    stats = seed_summary([summary], n_test, summary.get("n_val", 0))
    rows = []
    for row in case_rows(summary["teacher"], summary["hard"], stats):
        name = teacher_name if row["role"] == "teacher" else student_name
        frame_row = _case_row(row["name"], name, row["params"], row["size_bytes"], row["val_accuracy"],
                              row["accuracy"], summary["teacher"]["params"], row["gain"])
        rows.append({**frame_row, f"test errors / {n_test}": int(row["errors"])})
    return pd.DataFrame(rows)


def verdict(summary: dict) -> tuple[bool, str]:
    """(KD won?, one plain sentence) for one run — the page says so plainly when KD lost."""
    from kdviz.core.results import seed_summary, verdict as seeds_verdict

    return seeds_verdict(seed_summary([summary], summary["n_test"], summary.get("n_val", 0)))


def metrics_csv(events: list[dict]) -> str:
    """Per-step losses and per-epoch accuracies of the distillation phase, as one CSV."""
    losses = loss_frame(events, max_points=10**9).pivot_table(index=["step", "epoch"], columns="series",
                                                              values="loss").reset_index()
    accuracies = accuracy_frame(events).rename(columns=lambda c: c if c == "epoch" else f"{c}_test_accuracy")
    buffer = io.StringIO()
    buffer.write("# losses per step\n")
    losses.to_csv(buffer, index=False)
    buffer.write("# test accuracy per epoch\n")
    accuracies.to_csv(buffer, index=False)
    return buffer.getvalue()


def lecture_rows() -> pd.DataFrame:
    """The lecture's ImageNet case study, with parameters counted from torchvision's ResNet definitions."""
    from torchvision.models import resnet50, resnet152

    from kdviz.core.models import count_parameters

    teacher, student = count_parameters(resnet152()), count_parameters(resnet50())
    case = LECTURE_CASE
    return pd.DataFrame([
        _case_row("teacher", "ResNet-152", teacher, 4 * teacher, None, case["teacher_accuracy"], teacher, None),
        _case_row("hard-label student", "ResNet-50", student, 4 * student, None, case["hard_accuracy"], teacher, None),
        _case_row("KD student", "ResNet-50", student, 4 * student, None, case["kd_accuracy"], teacher,
                  case["kd_accuracy"] - case["hard_accuracy"]),
    ])


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
    """Final accuracies of a sweep's completed runs, one row per swept value (sorted)."""
    rows = [{"value": run.tags["value"], "hard": run.summary["hard"]["accuracy"], "kd": run.summary["kd"]["accuracy"]}
            for run in runs if run.state == "completed" and run.summary]
    return pd.DataFrame(rows, columns=["value", "hard", "kd"]).sort_values("value").reset_index(drop=True)
