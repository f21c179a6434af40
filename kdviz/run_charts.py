"""Figures of training runs: losses per step, accuracy per epoch, runs overlaid, and a sweep's summary."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from kdviz.charts import COLORS, ROLE_NAMES, style

LOSS_STYLES = {  # series → (colour, dash, legend name)
    "hard": (COLORS["hard"], "solid", "hard-label student: CE"),
    "kd_total": (COLORS["kd"], "solid", "KD student: total"),
    "kd_soft": (COLORS["kd"], "dot", "KD student: soft T²·KL"),
    "kd_hard": (COLORS["kd"], "dash", "KD student: hard CE"),
}
RUN_COLORS = ("#332288", "#CC6677", "#117733", "#AA4499", "#44AA99", "#882255", "#999933", "#88CCEE")


def loss_chart(frame: pd.DataFrame, lecture: bool = False) -> go.Figure:
    """Loss per optimiser step: the hard-label student's CE and the KD student's soft, hard and total terms."""
    fig = go.Figure()
    for series, (color, dash, name) in LOSS_STYLES.items():
        part = frame[frame["series"] == series]
        if len(part):
            fig.add_scatter(x=part["step"], y=part["loss"], name=name, mode="lines",
                            line={"color": color, "dash": dash})
    fig.update_layout(title="Training loss", xaxis_title="optimiser step", yaxis_title="loss (nats, log scale)")
    fig.update_yaxes(type="log", exponentformat="power")
    return _legend_below(style(fig, lecture))


def _legend_below(fig: go.Figure) -> go.Figure:
    """Four loss series make a tall legend: put it under the plot so it never covers the title."""
    fig.update_layout(legend={"orientation": "h", "y": -0.22, "yanchor": "top", "x": 0},
                      margin={"b": 10}, height=(fig.layout.height or 420) + 60)
    return fig


def accuracy_chart(frame: pd.DataFrame, lecture: bool = False) -> go.Figure:
    """Test accuracy per epoch of both students, with the teacher's as a reference line."""
    fig = go.Figure()
    if len(frame):
        teacher = float(frame["teacher"].iloc[-1])
        fig.add_hline(y=100 * teacher, line={"color": COLORS["teacher"], "dash": "dash", "width": 3},
                      annotation_text=f"teacher {100 * teacher:.1f}%", annotation_position="bottom right",
                      annotation_font={"color": COLORS["teacher"], "size": 20 if lecture else 15})
        for role in ("hard", "kd"):
            fig.add_scatter(x=frame["epoch"], y=100 * frame[role], name=ROLE_NAMES[role], mode="lines+markers",
                            line={"color": COLORS[role]}, marker={"size": 9 if lecture else 7})
    fig.update_layout(title="Test accuracy", xaxis_title="epoch", yaxis_title="test accuracy (%)")
    fig.update_yaxes(range=_accuracy_range(frame))
    return style(fig, lecture)


def _accuracy_range(frame: pd.DataFrame) -> list[float] | None:
    """Zoom on the interesting part: from a bit under the students' last-half accuracies to above the teacher."""
    if len(frame) < 2:
        return None
    later = frame[frame["epoch"] >= frame["epoch"].max() / 2]
    low = 100 * float(later[["hard", "kd"]].min().min())
    high = 100 * float(max(frame["teacher"].max(), later[["hard", "kd"]].max().max()))
    return [max(0.0, low - max(3.0, (high - low) * 0.5)), min(100.0, high + 1.5)]


def overlay_chart(runs: list[tuple[str, pd.DataFrame]], lecture: bool = False) -> go.Figure:
    """Several runs' accuracy curves: a colour per run, solid for the KD student, dashed for the hard-label one."""
    fig = go.Figure()
    for i, (label, frame) in enumerate(runs):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        for role, dash in (("kd", "solid"), ("hard", "dash")):
            fig.add_scatter(x=frame["epoch"], y=100 * frame[role], mode="lines", name=f"{label}: {ROLE_NAMES[role]}",
                            line={"color": color, "dash": dash})
    fig.update_layout(title="Runs compared (solid: KD student, dashed: hard-label student)", xaxis_title="epoch",
                      yaxis_title="test accuracy (%)")
    fig.update_layout(legend={"orientation": "v", "y": 0, "yanchor": "bottom", "x": 1.02})
    return style(fig, lecture)


def sweep_chart(frame: pd.DataFrame, parameter: str, lecture: bool = False) -> go.Figure:
    """Final test accuracy of both students against the swept value (log x for the temperature)."""
    fig = go.Figure()
    for role in ("hard", "kd"):
        fig.add_scatter(x=frame["value"], y=100 * frame[role], name=ROLE_NAMES[role], mode="lines+markers",
                        line={"color": COLORS[role]}, marker={"size": 11 if lecture else 9})
    fig.update_layout(title=f"Sweep over {parameter}", xaxis_title=parameter, yaxis_title="final test accuracy (%)")
    if parameter == "temperature":
        fig.update_xaxes(type="log")
    return style(fig, lecture)
