"""The ensembles page's model without Streamlit: a worked example of combining teachers, and an ensemble run's
results as figures and tables."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from kdviz.core import kd
from kdviz.core.roles import ROLE_NAMES
from kdviz.views.charts import CLASS_COLORS, COLORS, fast_figure, title_block, top_margin

# the legend in the figure's bottom band, under the class names (the margin leaves it room on a phone)
BOTTOM_LEGEND = {"orientation": "h", "x": 0, "xanchor": "left", "y": 0, "yanchor": "bottom", "yref": "container"}

# The lecture's four classes; teacher A is the lecture's teacher, B and C two more that disagree with it a little.
EXAMPLE_CLASSES = ("dog", "cat", "car", "ship")
EXAMPLE_TEACHERS = ((5.0, -3.0, -5.0, -7.0), (2.0, 3.0, -4.0, -6.0), (4.0, 1.0, -6.0, -2.0))
EXAMPLE_STUDENT = (-1.0, 3.0, 2.0, -3.0)  # the lecture's untrained student
COMBINE_NAMES = {"probabilities": "mean of the probabilities", "logits": "softmax of the mean logits"}
STUDENT_ROLES = ("hard", "best_teacher_kd", "ensemble_kd")


def check_example(teachers, student) -> tuple[np.ndarray, np.ndarray]:
    """The worked example's logits as arrays; ValueError naming what is wrong (too few teachers, a non-number)."""
    teachers = np.asarray(teachers, dtype=np.float64)
    student = np.asarray(student, dtype=np.float64)
    if teachers.ndim != 2 or len(teachers) < 2:
        raise ValueError("give at least two teachers' logits")
    if student.shape != teachers.shape[1:]:
        raise ValueError(f"the student needs {teachers.shape[1]} logits, got {student.shape}")
    for name, values in (("teacher", teachers), ("student", student)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"every {name} logit must be a finite number")
    return teachers, student


def combined_targets(teachers, temperature: float) -> dict[str, np.ndarray]:
    """Each way of combining the teachers as the distribution the student is trained towards at T:
    {"probabilities": mean_i p_i, "logits": softmax(mean_i z_i / T)} (kdviz.experiments.ensemble.combine_logits,
    the function the experiment trains with)."""
    import torch

    from kdviz.experiments.ensemble import COMBINES, combine_logits

    stack = torch.tensor(np.array(teachers, dtype=np.float64))[:, None, :]
    return {mode: kd.softmax(combine_logits(stack, temperature, mode)[0].numpy(), temperature) for mode in COMBINES}


def worked_example(teachers, student, temperature: float) -> dict:
    """What the page shows for hand-made logits: each teacher's p_i at T, the two combined targets, and for each of
    three losses its value and its gradient on the student's logits (T²-scaled, as the engine trains):
    KL to the mean of the probabilities, the mean of the per-teacher KL terms, and KL to the mean logits' softmax.
    The first two have the same gradient (their values differ by a constant, the teachers' mean KL from their mean
    distribution); the third is a different target."""
    teachers, student = check_example(teachers, student)
    temperature = kd.check_temperature(temperature)
    targets = combined_targets(teachers, temperature)
    log_q = kd.log_softmax(student, temperature)
    mean_p = targets["probabilities"]

    def kl(p):  # T²·KL(p ‖ q) with q the student's softmax at T
        return float(temperature**2 * np.sum(p * (np.log(np.maximum(p, 1e-300)) - log_q)))

    q = np.exp(log_q)
    per_teacher = [kd.softmax(t, temperature) for t in teachers]
    losses = {
        "probabilities": {"loss": kl(mean_p), "gradient": temperature * (q - mean_p)},
        "kl-terms": {"loss": float(np.mean([kl(p) for p in per_teacher])),
                     "gradient": np.mean([kd.soft_gradient(t, student, temperature) for t in teachers], axis=0)},
        "logits": {"loss": kl(targets["logits"]), "gradient": temperature * (q - targets["logits"])},
    }
    spread = float(np.mean([kl_pair(p, mean_p) for p in per_teacher])) * temperature**2
    return {"teachers": per_teacher, "targets": targets, "student": q, "losses": losses,
            "disagreement": spread, "temperature": temperature}


def kl_pair(p: np.ndarray, r: np.ndarray) -> float:
    """KL(p ‖ r) of two distributions, in nats."""
    p, r = np.maximum(p, 1e-300), np.maximum(r, 1e-300)
    return float(np.sum(p * (np.log(p) - np.log(r))))


LOSS_NAMES = {"probabilities": "KL to the mean of the probabilities",
              "kl-terms": "mean of the per-teacher KL terms",
              "logits": "KL to the softmax of the mean logits"}


def example_table(example: dict, classes=EXAMPLE_CLASSES) -> list[dict]:
    """Rows: each loss, its value (T²·KL) and its gradient on each of the student's logits."""
    return [{"loss": LOSS_NAMES[mode], "value (T²·KL)": facts["loss"],
             **{f"∂/∂z {c}": float(g) for c, g in zip(classes, facts["gradient"])}}
            for mode, facts in example["losses"].items()]


def example_chart(example: dict, classes=EXAMPLE_CLASSES, lecture: bool = False) -> go.Figure:
    """Grouped bars per class: each teacher's probabilities at T (light), the two combined targets (strong)."""
    data = []
    for index, p in enumerate(example["teachers"]):
        data.append({"type": "bar", "name": f"teacher {chr(65 + index)}", "x": list(classes), "y": list(p),
                     "marker": {"color": CLASS_COLORS[(index + 4) % len(CLASS_COLORS)], "opacity": 0.45}})
    for mode, color in (("probabilities", COLORS["ensemble"]), ("logits", COLORS["teacher"])):
        p = example["targets"][mode]
        data.append({"type": "bar", "name": COMBINE_NAMES[mode], "x": list(classes), "y": list(p),
                     "marker": {"color": color, "line": {"color": "#1F2937", "width": 1.5}},
                     "hovertemplate": "%{y:.3f}"})
    layout = {"title": title_block(f"Three teachers combined at T = {example['temperature']:g}", lecture),
              "margin": top_margin(lecture, bottom=130 if lecture else 110), "barmode": "group",
              "legend": BOTTOM_LEGEND, "yaxis": {"title": {"text": "probability"}, "range": [0, 1.02]}}
    return fast_figure(data, layout, lecture, height=620 if lecture else 540)


# ---- an ensemble run --------------------------------------------------------------------------------------------

def accuracy_chart(summary: dict, lecture: bool = False) -> go.Figure:
    """Test accuracy of every teacher, the ensemble, and the three students, as bars with the value on each; the
    best teacher (chosen on validation) is marked."""
    teachers = summary.get("teachers") or []
    best = summary.get("best_teacher")
    short = len(teachers) > 5  # up to 15 bars: "T3" keeps the labels horizontal and readable on a projector
    names = [(f"T{t['index'] + 1}" if short else f"teacher {t['index'] + 1}") + ("<br>(best val.)" if t["index"] == best
                                                                                else "") for t in teachers]
    values = [100 * t["accuracy"] for t in teachers]
    colors = [COLORS["teacher"]] * len(teachers)
    if summary.get("ensemble"):
        names.append("ensemble")
        values.append(100 * summary["ensemble"]["accuracy"])
        colors.append(COLORS["ensemble"])
    for role, label in (("hard", "hard<br>labels"), ("best_teacher_kd", "KD from<br>best teacher"),
                        ("ensemble_kd", "KD from<br>ensemble")):
        if summary.get(role):
            names.append(label)
            values.append(100 * summary[role]["accuracy"])
            colors.append(COLORS[role])
    low = min(values, default=0)
    data = [{"type": "bar", "x": names, "y": values, "marker": {"color": colors}, "showlegend": False,
             "text": [f"{v:.1f}%" for v in values], "textposition": "outside", "cliponaxis": False}]
    layout = {"title": title_block("Test accuracy: teachers, their ensemble, one student three ways", lecture),
              "margin": top_margin(lecture, bottom=20),
              "yaxis": {"title": {"text": "test accuracy (%)"}, "range": [max(0, low - 8), 101]},
              "xaxis": {"tickangle": 0}}
    return fast_figure(data, layout, lecture, height=600 if lecture else 500)


def cost_rows(summary: dict) -> list[dict]:
    """Parameters and forward FLOPs per prediction of the ensemble, one teacher, and the student."""
    rows = []
    if summary.get("ensemble"):
        rows.append({"model": f"ensemble of {len(summary.get('teachers') or [])} teachers",
                     "parameters": summary["ensemble"]["params"],
                     "FLOPs per prediction": summary["ensemble"]["flops_per_image"]})
    best = summary.get("best_teacher")
    for teacher in summary.get("teachers") or []:
        if teacher["index"] == best:
            rows.append({"model": f"best teacher (teacher {best + 1})", "parameters": teacher["params"],
                         "FLOPs per prediction": teacher["flops_per_image"]})
    student = summary.get("ensemble_kd") or summary.get("hard")
    if student:
        rows.append({"model": "one student", "parameters": student["params"],
                     "FLOPs per prediction": student["flops_per_image"]})
    if rows and student:
        for row in rows:
            row["× student"] = row["parameters"] / student["params"]
    return rows


def teacher_rows(summary: dict) -> list[dict]:
    """One row per teacher: its seed and width, size and accuracies (validation chooses the best one)."""
    best = summary.get("best_teacher")
    return [{"teacher": t["index"] + 1, "seed": t["seed"], "width": t["width"], "parameters": t["params"],
             "validation %": 100 * t["val_accuracy"], "test %": 100 * t["accuracy"],
             "best (val.)": t["index"] == best} for t in summary.get("teachers") or []]


def student_rows(summary: dict) -> list[dict]:
    """The three students side by side: validation (what decides), test (reported), agreement with their teacher."""
    rows = []
    for role in STUDENT_ROLES:
        facts = summary.get(role)
        if facts:
            rows.append({"student": ROLE_NAMES[role], "validation %": 100 * facts["val_accuracy"],
                         "test %": 100 * facts["accuracy"],
                         "agrees with its teacher %": None if facts.get("agreement") is None
                         else 100 * facts["agreement"]})
    return rows


def summary_from_points(points: list[dict]) -> dict:
    """A live run's partial summary from its measured points (the same keys as the finished summary's)."""
    summary: dict = {"teachers": []}
    for point in points:
        kind = point.get("kind")
        facts = {k: v for k, v in point.items() if k != "kind"}
        if kind == "teacher":
            summary["teachers"].append(facts)
        elif kind == "ensemble":
            summary["ensemble"] = facts
        elif kind == "students":
            summary["hard"], summary["ensemble_kd"] = facts.get("hard"), facts.get("ensemble_kd")
        elif kind == "best_teacher_kd":
            summary["best_teacher_kd"] = facts
            summary["best_teacher"] = facts.get("teacher_index")
    if "best_teacher" not in summary and summary.get("ensemble") and summary["teachers"]:
        summary["best_teacher"] = max(summary["teachers"], key=lambda t: (t["val_accuracy"], -t["index"]))["index"]
    return summary
