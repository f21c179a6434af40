"""Figures of training runs: losses per step, accuracy per epoch (validation or test), runs overlaid, a sweep's summary.

The live charts redraw twice a second beside a training run that shares the GIL with them, so every figure is built
from plain dicts (charts.fast_figure), not with plotly's validating builders: ~9 ms instead of ~50 ms a figure.
"""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from kdviz.core.roles import MISTAKE, ROLE_NAMES, STUDENTS
from kdviz.views.charts import COLORS, MARK_COLORS, bottom_legend, fast_figure, title_block, top_margin
from kdviz.views.run_view import split_columns

LOSS_STYLES = {  # series → (colour, dash, legend name)
    "hard": (COLORS["hard"], "solid", "hard-label student: CE"),
    "kd_total": (COLORS["kd"], "solid", "KD student: total"),
    "kd_soft": (COLORS["kd"], "dot", "KD student: soft T²·KL"),
    "kd_hard": (COLORS["kd"], "dash", "KD student: hard CE"),
    "mistake_total": (COLORS[MISTAKE], "solid", "KD with the mistake: total"),
    "mistake_soft": (COLORS[MISTAKE], "dot", "KD with the mistake: soft"),
    "mistake_hard": (COLORS[MISTAKE], "dash", "KD with the mistake: hard CE"),
}
CHART_STUDENTS = (*STUDENTS, MISTAKE)  # the accuracy chart's students: a run with a mistake has a third
RUN_COLORS = ("#332288", "#CC6677", "#117733", "#AA4499", "#44AA99", "#882255", "#999933", "#88CCEE")


def _axes(x_title: str, y_title: str, **y) -> dict:
    return {"xaxis": {"title": {"text": x_title}}, "yaxis": {"title": {"text": y_title}, **y}}


def _line(x, y, name: str, color: str, dash: str = "solid", markers: bool = False, lecture: bool = False) -> dict:
    trace = {"type": "scatter", "x": list(x), "y": list(y), "name": name, "line": {"color": color, "dash": dash},
             "mode": "lines+markers" if markers else "lines"}
    if markers:
        trace["marker"] = {"size": 9 if lecture else 7, "color": color}
    return trace


def loss_chart(frame: pd.DataFrame, lecture: bool = False, plain: bool = False) -> go.Figure:
    """Loss per optimiser step: the hard-label student's CE and the KD student's soft, hard and total terms (plain:
    as a dict, charts.fast_figure)."""
    data = [_line(part["step"], part["loss"], name, color, dash)
            for series, (color, dash, name) in LOSS_STYLES.items()
            if len(part := frame[frame["series"] == series])]
    layout = {"title": title_block("Training loss", lecture), "margin": top_margin(lecture, bottom=10),
              **_axes("optimiser step", "loss (nats, log scale)", type="log", exponentformat="power", dtick=1),
              # four series make a tall legend: below the plot it never covers the title
              "legend": {"orientation": "h", "y": -0.25, "yanchor": "top", "x": 0}}
    height = 580 if lecture else 480
    if any(trace["name"].startswith(ROLE_NAMES[MISTAKE]) for trace in data):  # seven series: the legend gets its
        layout["legend"] = bottom_legend()  # own band at the bottom, a row each, and the plot keeps its height
        height += 160 if lecture else 130
    return fast_figure(data, layout, lecture, height=height, plain=plain)


SPLIT_TITLES = {"validation": "Validation accuracy", "test": "Test accuracy"}


def accuracy_chart(frame: pd.DataFrame, lecture: bool = False, split: str = "validation", plain: bool = False
                   ) -> go.Figure:
    """Accuracy per epoch on one split (validation or test) of both students, the teacher's as a dashed line (plain:
    as a dict, charts.fast_figure)."""
    columns = split_columns(split)
    data, shapes, notes = [], [], []
    if len(frame) and frame[columns["teacher"]].notna().any():
        teacher = 100 * float(frame[columns["teacher"]].dropna().iloc[-1])
        line = {"color": COLORS["teacher"], "dash": "dash", "width": 3}
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": teacher, "y1": teacher, "line": line})
        notes.append({"xref": "paper", "x": 1, "y": teacher, "yanchor": "bottom", "xanchor": "right",
                      "showarrow": False, "text": f"teacher {teacher:.1f}%",
                      "font": {"color": COLORS["teacher"], "size": 20 if lecture else 15}})
    if len(frame):
        data = [_line(frame["epoch"], 100 * frame[columns[role]], ROLE_NAMES[role], COLORS[role], markers=True,
                      lecture=lecture) for role in CHART_STUDENTS if frame[columns[role]].notna().any()]
    title = SPLIT_TITLES[split]
    layout = {"title": title_block(title, lecture), "margin": top_margin(lecture),
              "shapes": shapes, "annotations": notes,
              **_axes("epoch", f"{title.lower()} (%)", range=_accuracy_range(frame, columns))}
    height = 580 if lecture else 480
    if len(data) > len(STUDENTS):  # a third student: three names do not fit the band above the plot
        layout["legend"] = bottom_legend()
        height += 160 if lecture else 130  # as the loss chart beside it: the two stay level
    return fast_figure(data, layout, lecture, height=height, plain=plain)


def _accuracy_range(frame: pd.DataFrame, columns: dict[str, str]) -> list[float] | None:
    """Zoom on the interesting part: from a bit under the students' last-half accuracies to above the teacher."""
    students = [columns[role] for role in CHART_STUDENTS if frame[columns[role]].notna().any()]
    if not students or len(frame) < 2 or frame[students].isna().all().all():
        return None
    later = frame[frame["epoch"] >= frame["epoch"].max() / 2]
    low = 100 * float(later[students].min().min())
    high = 100 * float(pd.concat([frame[columns["teacher"]], later[students].max()]).max())
    return [max(0.0, low - max(3.0, (high - low) * 0.5)), min(100.0, high + 1.5)]


def overlay_chart(runs: list[tuple[str, pd.DataFrame]], lecture: bool = False, split: str = "validation"
                  ) -> go.Figure:
    """Several runs' accuracy curves on one split: a colour per run, solid for the KD student, dashed for the
    hard-label one."""
    columns = split_columns(split)
    data = [_line(frame["epoch"], 100 * frame[columns[role]], f"{label}: {ROLE_NAMES[role]}",
                  RUN_COLORS[i % len(RUN_COLORS)], dash)
            for i, (label, frame) in enumerate(runs) for role, dash in (("kd", "solid"), ("hard", "dash"))]
    title = SPLIT_TITLES[split]
    layout = {"title": title_block(f"Runs compared, {title.lower()} (solid: KD student, dashed: hard-label student)",
                                   lecture),
              "margin": top_margin(lecture), **_axes("epoch", f"{title.lower()} (%)"),
              "legend": {"orientation": "v", "y": 0, "yanchor": "bottom", "x": 1.02}}
    return fast_figure(data, layout, lecture)


def sweep_chart(frame: pd.DataFrame, parameter: str, lecture: bool = False, best: float | None = None
                ) -> go.Figure:
    """Final accuracy of both students against the swept value: validation solid, test dotted (one colour per role),
    the value chosen on validation marked; log x for the temperature."""
    data = [_line(frame["value"], 100 * frame[column], f"{ROLE_NAMES[role]}: {split}", COLORS[role], dash,
                  markers=True, lecture=lecture)
            for role in STUDENTS for split, column, dash in (("validation", f"{role}_val", "solid"),
                                                             ("test", role, "dot"))
            if frame[column].notna().any()]
    shapes, notes = [], []
    if best is not None:
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": best, "x1": best, "y0": 0, "y1": 1,
                       "line": {"color": MARK_COLORS["current"], "dash": "dash", "width": 3 if lecture else 2}})
        notes.append({"xref": "x", "yref": "paper", "x": math.log10(best) if parameter.startswith("temperature")
                      else best, "y": 1, "yanchor": "bottom", "showarrow": False, "text": "best on validation",
                      "font": {"color": MARK_COLORS["current"], "size": 20 if lecture else 15}})
    layout = {"title": title_block(f"Sweep over {parameter}: validation (solid) and test (dotted)", lecture),
              "margin": top_margin(lecture, bottom=10), "shapes": shapes, "annotations": notes,
              **_axes(parameter, "final accuracy (%)"),
              "legend": {"orientation": "h", "y": -0.22, "yanchor": "top", "x": 0}}
    values = [float(v) for v in frame["value"]]
    layout["xaxis"] |= {"tickvals": values, "ticktext": [f"{v:g}" for v in values]}  # ticks at the values swept
    if parameter.startswith("temperature"):
        layout["xaxis"]["type"] = "log"
    return fast_figure(data, layout, lecture, height=(600 if lecture else 500))
