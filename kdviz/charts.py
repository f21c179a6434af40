"""Plotly figure builders: data in, figure out; one colour per role everywhere, fonts that read from the back row."""
from __future__ import annotations

import plotly.graph_objects as go

# One colour per role, on every page (colour-blind safe: Okabe–Ito).
COLORS = {
    "teacher": "#0072B2",   # blue
    "hard": "#E69F00",      # orange: the hard-label student
    "kd": "#009E73",        # green: the KD student
    "label": "#555555",     # grey: the one-hot hard label
    "untrained": "#CC79A7", # purple: a student before training
}
ROLE_NAMES = {"teacher": "teacher", "hard": "hard-label student", "kd": "KD student", "label": "hard label",
              "untrained": "untrained student"}


def style(fig: go.Figure, lecture: bool = False, height: int | None = None) -> go.Figure:
    """Apply kdviz's figure style; lecture mode makes every font and line bigger for a projector."""
    base = 20 if lecture else 15
    fig.update_layout(
        template="plotly_white",
        font={"size": base, "family": "Inter, Helvetica, Arial, sans-serif"},
        title_font={"size": base + 4},
        legend={"font": {"size": base}, "orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        margin={"l": 10, "r": 10, "t": 60 if fig.layout.title.text else 30, "b": 10},
        height=height or (520 if lecture else 420),
    )
    fig.update_xaxes(title_font={"size": base + 1}, tickfont={"size": base - 1}, showgrid=False)
    fig.update_yaxes(title_font={"size": base + 1}, tickfont={"size": base - 1}, gridcolor="#E5E7EB")
    fig.update_traces(selector={"type": "scatter"}, line={"width": 4 if lecture else 2.5})
    return fig
