"""Plotly figure builders: data in, figure out; one colour per role everywhere, fonts that read from the back row."""
from __future__ import annotations

import plotly.graph_objects as go

from kdviz.core.roles import ROLE_NAMES  # noqa: F401  (re-exported: charts name roles as the rest of kdviz)

# One colour per role, on every page (colour-blind safe: Okabe–Ito).
COLORS = {
    "teacher": "#0072B2",   # blue
    "hard": "#E69F00",      # orange: the hard-label student
    "kd": "#009E73",        # green: the KD student
    "label": "#555555",     # grey: the one-hot hard label
    "untrained": "#CC79A7", # purple: a student before training
    "ensemble": "#56B4E9",  # sky blue: an ensemble of teachers
    "best_teacher_kd": "#009E73",  # green, as the KD student: distilled from the best single teacher
    "ensemble_kd": "#D55E00",  # vermillion: distilled from the ensemble
    "kd_int8": "#555555",   # grey: the KD student quantised to int8
    "mistake": "#882255",   # wine (Tol's palette): the KD student with a common mistake in its loss
}


def style(fig: go.Figure, lecture: bool = False, height: int | None = None) -> go.Figure:
    """Apply kdviz's figure style; lecture mode makes every font and line bigger for a projector."""
    base = 20 if lecture else 15
    fig.update_layout(
        # No plotly template: a template is ~25 kB that Streamlit re-validates and re-sends on every redraw (25 ms a
        # figure; the live charts redraw twice a second next to a training run). The few settings we want are here.
        template="none", paper_bgcolor="white", plot_bgcolor="white", hoverlabel={"font": {"size": base}},
        font={"size": base, "family": "Inter, Helvetica, Arial, sans-serif", "color": "#1F2937"},
        title_font={"size": base + 4},
        legend={"font": {"size": base}, "orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        margin={"l": 10, "r": 10, "t": 60 if fig.layout.title.text else 30, "b": 10},
        height=height or (520 if lecture else 420),
    )
    axes = {"title_font": {"size": base + 1}, "tickfont": {"size": base - 1}, "linecolor": "#9CA3AF",
            "zerolinecolor": "#D1D5DB", "automargin": True}
    fig.update_xaxes(showgrid=False, showline=True, ticks="outside", tickcolor="#9CA3AF", **axes)
    fig.update_yaxes(gridcolor="#E5E7EB", showline=False, **axes)
    fig.update_traces(selector={"type": "scatter"}, line={"width": 4 if lecture else 2.5})
    return fig


# ---- figures that redraw often (the image explorer's bars, live charts) ---------------------------------------------
# Built from plain dicts without plotly's per-property validation (style() alone costs ~6 ms a call); style() is applied
# once per mode and its layout reused. The soft-labels page draws its charts in the browser (kdviz/ui/assets/), from
# these palettes (kdviz.views.soft_labels.widget_payload passes them).

import copy  # noqa: E402
import functools  # noqa: E402
import math  # noqa: E402


CLASS_COLORS = ("#332288", "#CC6677", "#117733", "#AA4499", "#44AA99", "#882255", "#999933", "#88CCEE",
                "#DDCC77", "#555555")  # Paul Tol's "muted" scheme: one line per class on the curves over T
DIRECTION_COLORS = {"up": "#56B4E9", "down": "#D55E00"}  # Okabe–Ito sky blue / vermillion: the soft-labels page
# only (the ensembles page gives these hues to its roles; no chart shows both)
MARK_COLORS = {"current": "#C0392B", "one": "#6B7280"}  # the current temperature, and T = 1
TEMPERATURE_TICKS = [0.1, 0.3, 1, 3, 10, 30, 100]
LOG_FLOOR = 1e-12  # log-scale bars: probabilities below this are not drawn (the axis would span 300 decades)


@functools.lru_cache(maxsize=8)
def _styled_layout(lecture: bool, height: int | None) -> tuple[dict, float]:
    """style()'s layout (with a title) and scatter line width for this mode, computed once."""
    reference = style(go.Figure(go.Scatter(x=[0], y=[0]), layout={"title": {"text": "-"}}), lecture, height)
    layout = reference.layout.to_plotly_json()
    layout.pop("title", None)
    layout.pop("template", None)
    return layout, reference.data[0].line.width


def _merge(base: dict, extra: dict) -> dict:
    """Deep-merge extra into a copy of base (extra wins)."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def fast_figure(data: list[dict], layout: dict, lecture: bool, height: int | None = None, plain: bool = False):
    """A styled figure from plain trace and layout dicts, skipping plotly's per-property validation (~10× faster
    than building with go.Figure(...).update_*; for charts that redraw on every slider move or twice a second).
    plain: the figure as the {"data", "layout"} dict plotly.js draws, without a go.Figure (which copies it twice)."""
    base, line_width = _styled_layout(lecture, height)
    for trace in data:
        if trace.get("type") == "scatter":
            trace["line"] = {"width": line_width, **trace.get("line", {})}
    layout = _merge(base, layout)
    layout["template"] = "none"  # see style(): no template to re-validate on every slider move
    if plain:
        return {"data": data, "layout": layout}
    return go.Figure(data=data, layout=layout, _validate=False)


def title_block(text: str, lecture: bool) -> dict:
    """A title in the top band of the figure; the legend (if any) sits in the band below it, above the plot."""
    return {"text": text, "x": 0.01, "xanchor": "left", "y": 0.985, "yanchor": "top", "yref": "container",
            "font": {"size": 24 if lecture else 19}}


def top_margin(lecture: bool, bottom: int = 10) -> dict:
    return {"t": 110 if lecture else 90, "l": 10, "r": 25, "b": bottom}


def bottom_legend() -> dict:
    """A legend under the x axis: the band above the plot holds the T = 1 and current-T labels."""
    return {"orientation": "h", "x": 0, "xanchor": "left", "y": 0, "yanchor": "bottom", "yref": "container"}


def soft_label_bars(classes, hard_label, teacher_probs, student_probs, temperature: float, labels: dict,
                    log_scale: bool = False, student_role: str = "untrained", student_name: str | None = None,
                    lecture: bool = False) -> go.Figure:
    """Grouped bars per class: the one-hot hard label, the teacher's and the student's softmax at T.

    labels: {"teacher": [...], "student": [...]} the formatted probabilities shown on and over the bars.
    """
    show_text = len(classes) <= 6
    font = {"size": 17 if lecture else 13}
    series = [("label", ROLE_NAMES["label"], hard_label, ["1" if v else "0" for v in hard_label]),
              ("teacher", ROLE_NAMES["teacher"], teacher_probs, labels["teacher"]),
              (student_role, student_name or ROLE_NAMES[student_role], student_probs, labels["student"])]
    data = []
    for role, name, values, texts in series:
        values = [float(v) for v in values]
        shown = [v if v >= LOG_FLOOR else None for v in values] if log_scale else values
        data.append({"type": "bar", "name": name, "x": list(classes), "y": shown, "customdata": list(texts),
                     "marker": {"color": COLORS[role]},
                     "hovertemplate": "%{x}: %{customdata}<extra>" + name + "</extra>",
                     "text": list(texts) if show_text and role != "label" else None, "textposition": "outside",
                     "textangle": 0 if len(classes) <= 4 else -90, "textfont": font, "cliponaxis": False})
    if log_scale:
        smallest = min([v for v in [*teacher_probs, *student_probs] if v >= LOG_FLOOR] or [1.0])
        lowest = min(max(10 ** math.floor(math.log10(smallest)), LOG_FLOOR), 1e-2)
        yaxis = {"type": "log", "range": [math.log10(lowest), 0.35], "title": {"text": "probability (log scale)"},
                 "dtick": 1, "exponentformat": "power"}
    else:
        yaxis = {"range": [0, 1.18], "title": {"text": "probability"}, "tickvals": [0, 0.25, 0.5, 0.75, 1]}
    layout = {"barmode": "group", "bargap": 0.25, "bargroupgap": 0.05, "yaxis": yaxis, "margin": top_margin(lecture),
              "xaxis": {"title": {"text": "class"}, "tickfont": {"size": 22 if lecture else 16}, "type": "category"},
              "title": title_block(f"Hard label vs soft labels at T = {temperature:g}", lecture)}
    return fast_figure(data, layout, lecture)


# ---- the image explorer -----------------------------------------------------------------------------------------
# Same look as the soft-labels page (plain dicts through fast_figure, one colour per role), for several students.

def _names(names: dict | None) -> dict:
    return {**ROLE_NAMES, **(names or {})}


LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0, "xanchor": "left"}


def _class_axis(lecture: bool) -> dict:
    return {"title": {"text": ""}, "tickfont": {"size": 22 if lecture else 16}, "type": "category"}


def _probability_axis(values, log_scale: bool) -> dict:
    if log_scale:
        smallest = min([v for v in values if v >= LOG_FLOOR] or [1.0])
        lowest = min(max(10 ** math.floor(math.log10(smallest)), LOG_FLOOR), 1e-2)
        return {"type": "log", "range": [math.log10(lowest), 0.35], "title": {"text": "probability (log scale)"},
                "exponentformat": "power"}
    return {"range": [0, 1.05], "title": {"text": "probability"}, "tickvals": [0, 0.25, 0.5, 0.75, 1]}


def _probability_bar(role: str, name: str, classes, values, log_scale: bool) -> dict:
    values = [float(v) for v in values]
    return {"type": "bar", "name": name, "x": list(classes), "marker": {"color": COLORS[role]},
            "y": [v if v >= LOG_FLOOR else None for v in values] if log_scale else values,
            "customdata": [f"{v:.4f}" if v >= 1e-3 else f"{v:.2e}" for v in values],
            "hovertemplate": "%{x}: %{customdata}<extra>" + name + "</extra>"}


def model_softmax_bars(classes, hard_label, teacher_probs, students: dict, temperature: float,
                       log_scale: bool = False, names: dict | None = None, title: str | None = None,
                       lecture: bool = False, height: int | None = None) -> go.Figure:
    """Grouped bars per class: the hard label (if known), the teacher's and each student's softmax at T.

    students: {role: (C,) probabilities}, roles from COLORS ("untrained", "hard", "kd"). hard_label: (C,) or None.
    """
    names = _names(names)
    data = []
    if hard_label is not None:
        data.append({**_probability_bar("label", names["label"], classes, hard_label, log_scale),
                     "hovertemplate": "%{x}: %{y:.0f}<extra>hard label</extra>"})
    data.append(_probability_bar("teacher", names["teacher"], classes, teacher_probs, log_scale))
    data += [_probability_bar(role, names[role], classes, probs, log_scale) for role, probs in students.items()]
    values = [float(v) for v in teacher_probs] + [float(v) for probs in students.values() for v in probs]
    layout = {"barmode": "group", "bargap": 0.2, "bargroupgap": 0.04, "xaxis": _class_axis(lecture),
              "yaxis": _probability_axis(values, log_scale), "legend": LEGEND_BELOW,
              "title": title_block(title or f"Softmax at T = {temperature:g}", lecture)}
    return fast_figure(data, layout, lecture, height)


def logit_bars(classes, logits: dict, names: dict | None = None, lecture: bool = False,
               height: int | None = None) -> go.Figure:
    """Grouped bars of raw logits z (T does not change them): {role: (C,) logits}, teacher first."""
    names = _names(names)
    data = [{"type": "bar", "name": names[role], "x": list(classes), "y": [float(v) for v in values],
             "marker": {"color": COLORS[role]}, "hovertemplate": "%{x}: z = %{y:.3f}<extra>" + names[role] + "</extra>"}
            for role, values in logits.items()]
    layout = {"barmode": "group", "bargap": 0.2, "bargroupgap": 0.04, "xaxis": _class_axis(lecture),
              "yaxis": {"title": {"text": "logit z"}, "zeroline": True, "zerolinewidth": 2,
                        "zerolinecolor": "#111827"}, "legend": LEGEND_BELOW,
              "title": title_block("Logits (before the softmax)", lecture)}
    return fast_figure(data, layout, lecture, height or (420 if lecture else 330))


def convergence_animation(classes, hard_label, teacher_probs, epochs, students: dict, temperature: float,
                          names: dict | None = None, lecture: bool = False) -> go.Figure:
    """The students' softmax at T on one image at each epoch, approaching the teacher's: a slider and a play button.

    students: {role: (E, C) probabilities at each of the epochs (E,)}. Animated in the browser (no reruns).
    """
    names = _names(names)
    roles = list(students)
    last = len(epochs) - 1
    data = [{**_probability_bar("label", names["label"], classes, hard_label, False),
             "hovertemplate": "%{x}: %{y:.0f}<extra>hard label</extra>"},
            _probability_bar("teacher", names["teacher"], classes, teacher_probs, False)]
    data += [_probability_bar(role, names[role], classes, students[role][last], False) for role in roles]
    student_traces = list(range(2, 2 + len(roles)))
    frames = [{"name": str(epoch), "traces": student_traces,
               "data": [_probability_bar(role, names[role], classes, students[role][e], False) for role in roles]}
              for e, epoch in enumerate(epochs)]
    font = {"size": 18 if lecture else 14}
    play = {"frame": {"duration": 350, "redraw": False}, "transition": {"duration": 250}, "fromcurrent": True,
            "mode": "immediate"}
    jump = {"frame": {"duration": 0, "redraw": False}, "transition": {"duration": 0}, "mode": "immediate"}
    layout = {"barmode": "group", "bargap": 0.2, "bargroupgap": 0.04, "xaxis": _class_axis(lecture),
              "yaxis": _probability_axis([], False),
              "title": title_block(f"Softmax at T = {temperature:g}, epoch by epoch", lecture),
              # the legend above the plot, not beside it: the bars and the epoch slider get the whole width
              "margin": {**top_margin(lecture), "b": 130}, "legend": {"orientation": "h", "x": 0, "y": 1.02,
                                                                      "yanchor": "bottom"},
              "updatemenus": [{"type": "buttons", "direction": "left", "x": 0, "y": -0.22, "xanchor": "left",
                               "yanchor": "top", "pad": {"r": 10, "t": 10}, "showactive": False, "font": font,
                               "buttons": [{"label": "▶ play", "method": "animate", "args": [None, play]},
                                           {"label": "pause", "method": "animate", "args": [[None], jump]}]}],
              "sliders": [{"active": last, "x": 0.3, "len": 0.7, "y": -0.16, "yanchor": "top", "font": font,
                           # the current epoch at the slider's right end, clear of the play and pause buttons
                           "currentvalue": {"prefix": "epoch ", "font": font, "xanchor": "right"},
                           "steps": [{"label": str(epoch), "method": "animate", "args": [[str(epoch)], jump]}
                                     for epoch in epochs]}]}
    figure = fast_figure(data, layout, lecture, 560 if lecture else 470)
    figure.frames = frames
    return figure


def kl_curves(epochs, kl: dict, temperature: float, names: dict | None = None, lecture: bool = False
              ) -> go.Figure:
    """KL(teacher ‖ student) at T on one image over the epochs, one line per student: {role: (E,)} in nats."""
    names = _names(names)
    data = [{"type": "scatter", "mode": "lines+markers", "name": names[role], "x": list(epochs),
             "y": [float(v) for v in values], "line": {"color": COLORS[role]},
             "hovertemplate": "epoch %{x}: %{y:.4f} nats<extra>" + names[role] + "</extra>"}
            for role, values in kl.items()]
    layout = {"xaxis": {"title": {"text": "epoch"}, "dtick": max(1, len(epochs) // 8)},
              "legend": bottom_legend(), "margin": top_margin(lecture, bottom=110 if lecture else 90),
              "yaxis": {"title": {"text": "KL(teacher ‖ student), nats"}, "rangemode": "tozero"},
              "title": title_block(f"KL from the teacher at T = {temperature:g}", lecture)}
    return fast_figure(data, layout, lecture, 560 if lecture else 470)  # as tall as the animation beside it


def _cell_text(p: float) -> str:
    """A cell's probability in percent, short enough for a 10×10 grid: 14, 7.1, 0.3."""
    if not math.isfinite(p):
        return ""
    percent = 100 * p
    return f"{percent:.0f}" if percent >= 9.95 else f"{percent:.1f}"


def dark_knowledge_heatmap(matrix, classes, temperature: float, show_diagonal: bool = False,
                           selected: tuple[int, int] | None = None, lecture: bool = False) -> go.Figure:
    """Rows: true class; columns: the teacher's mean softmax at T over that class's test images (rows sum to one).

    With the diagonal hidden the colour scale spans the off-diagonal values: the classes the teacher thinks alike.
    """
    n = len(classes)
    z = [[None if (i == j and not show_diagonal) or not math.isfinite(float(matrix[i][j])) else float(matrix[i][j])
          for j in range(n)] for i in range(n)]
    text = [["" if z[i][j] is None else _cell_text(z[i][j]) for j in range(n)] for i in range(n)]
    shown = [v for row in z for v in row if v is not None]
    data = [{"type": "heatmap", "z": z, "x": list(classes), "y": list(classes), "text": text,
             "texttemplate": "%{text}" if n <= 12 else None, "textfont": {"size": 17 if lecture else 13},
             "colorscale": [[0, "#FFFFFF"], [0.5, "#7FB8DE"], [1, COLORS["teacher"]]], "zmin": 0,
             "zmax": max(shown) if shown else 1, "xgap": 1, "ygap": 1, "hoverongaps": False,
             "colorbar": {"title": {"text": "mean p"}, "thickness": 14,
                          "tickformat": ".0%" if shown and max(shown) >= 0.1 else ".1%"},
             "hoverinfo": "skip"}]
    # Heatmap cells cannot be selected in Streamlit (streamlit#8760): an invisible marker on each cell takes the click.
    cells = [(i, j) for i in range(n) for j in range(n)]
    data.append({"type": "scatter", "mode": "markers", "x": [classes[j] for _, j in cells],
                 "y": [classes[i] for i, _ in cells], "showlegend": False,
                 "marker": {"symbol": "square", "size": 34 if n <= 12 else 12, "color": "rgba(0,0,0,0)"},
                 "selected": {"marker": {"opacity": 0}}, "unselected": {"marker": {"opacity": 0}},
                 "customdata": [float(matrix[i][j]) for i, j in cells],
                 "hovertemplate": "true class %{y}: teacher's mean p(%{x}) = %{customdata:.4g}<br>click to see the "
                                  "images<extra></extra>"})
    shapes = []
    if selected is not None:
        i, j = selected
        shapes.append({"type": "rect", "x0": j - 0.5, "x1": j + 0.5, "y0": i - 0.5, "y1": i + 0.5,
                       "line": {"color": MARK_COLORS["current"], "width": 4 if lecture else 3}})
    tick = {"size": 20 if lecture else 15}
    # explicit ranges: the click markers must not pad the axes; row 0 on top
    layout = {"xaxis": {"title": {"text": "class the teacher gives probability to"}, "type": "category",
                        "tickfont": tick, "side": "bottom", "showgrid": False, "range": [-0.5, n - 0.5]},
              "yaxis": {"title": {"text": "true class"}, "type": "category", "tickfont": tick,
                        "range": [n - 0.5, -0.5], "showgrid": False},
              "shapes": shapes, "showlegend": False, "plot_bgcolor": "#F2F4F7",
              "title": title_block(f"Teacher's mean soft label per true class, T = {temperature:g} (%)", lecture)}
    return fast_figure(data, layout, lecture, 680 if lecture else 580)
