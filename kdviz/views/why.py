"""The why-it-works page's model without Streamlit: an experiment run's points and results as figures and words."""
from __future__ import annotations

import plotly.graph_objects as go

from kdviz.views.charts import CLASS_COLORS, COLORS, bottom_legend, fast_figure, title_block, top_margin



def gradient_variance_chart(points: list[dict], lecture: bool = False) -> go.Figure:
    """Relative variance of mini-batch gradients against T (both log axes): per measured epoch, the soft term's
    curve (solid) and the hard loss's level (dashed: it does not depend on T)."""
    data = []
    epochs = sorted({p["epoch"] for p in points})
    for index, epoch in enumerate(epochs):
        mine = sorted((p for p in points if p["epoch"] == epoch), key=lambda p: p["temperature"])
        color = CLASS_COLORS[index % len(CLASS_COLORS)]
        temperatures = [p["temperature"] for p in mine]
        data.append({"type": "scatter", "mode": "lines+markers", "x": temperatures, "name": f"epoch {epoch}: soft",
                     "y": [p["soft_relative_variance"] for p in mine], "line": {"color": color},
                     "marker": {"size": 10 if lecture else 8, "color": color}})
        data.append({"type": "scatter", "mode": "lines", "x": temperatures, "name": f"epoch {epoch}: hard",
                     "y": [p["hard_relative_variance"] for p in mine], "line": {"color": color, "dash": "dash"}})
    batch = points[0]["batch_size"] if points else "B"
    layout = {"title": title_block(f"Gradient noise: mini-batches of {batch}, soft (solid) vs hard (dashed)", lecture),
              "margin": top_margin(lecture, bottom=110 if lecture else 90), "legend": bottom_legend(),
              "xaxis": {"title": {"text": "temperature T of the soft term (log scale)"}, "type": "log",
                        "tickvals": (ticks := sorted({p["temperature"] for p in points})),
                        "ticktext": [f"{t:g}" for t in ticks]},
              "yaxis": {"title": {"text": "relative variance E‖g_b − ḡ‖² / ‖ḡ‖² (log)"}, "type": "log",
                        "dtick": 1}}
    return fast_figure(data, layout, lecture, height=640 if lecture else 540)


def gradient_variance_table(points: list[dict]) -> list[dict]:
    """Rows for a table: epoch, T, both relative variances and soft ÷ hard."""
    return [{"epoch": p["epoch"], "T": p["temperature"], "hard (CE)": p["hard_relative_variance"],
             "soft (T²·KL)": p["soft_relative_variance"],
             "soft ÷ hard": p["soft_relative_variance"] / p["hard_relative_variance"]
             if p["hard_relative_variance"] else float("nan")} for p in points]


def capacity_charts(rows: list[dict], teacher: dict | None, lecture: bool = False) -> list[go.Figure]:
    """Test accuracy of both students against student parameters (log) and against training images."""
    figures = []
    for curve, x_key, x_title, log in (("width", "params", "student parameters (log scale)", True),
                                       ("data", "train_subset", "training images of the students", False)):
        mine = sorted((r for r in rows if curve in r.get("curves", (curve,))), key=lambda r: r[x_key] or r["n_train"])
        data = [{"type": "scatter", "mode": "lines+markers", "x": [r[x_key] or r["n_train"] for r in mine],
                 "y": [100 * r[f"{role}_accuracy"] for r in mine], "name": name, "line": {"color": COLORS[role]},
                 "marker": {"size": 10 if lecture else 8, "color": COLORS[role]}}
                for role, name in (("hard", "hard-label student"), ("kd", "KD student"))]
        shapes = []
        if teacher and curve == "width":
            level = 100 * teacher["accuracy"]
            shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": level, "y1": level,
                           "line": {"color": COLORS["teacher"], "dash": "dash", "width": 3}})
        title = "Student size" if curve == "width" else "Transfer-set size"
        layout = {"title": title_block(f"{title}: test accuracy", lecture), "margin": top_margin(lecture),
                  "shapes": shapes, "xaxis": {"title": {"text": x_title}, **({"type": "log"} if log else {})},
                  "yaxis": {"title": {"text": "test accuracy (%)"}}}
        figures.append(fast_figure(data, layout, lecture, height=560 if lecture else 460))
    return figures


def missing_class_chart(summary: dict, lecture: bool = False) -> go.Figure:
    """The omitted digit's and all digits' test accuracy of both students, before and after the bias shift."""
    groups = [("omitted digit, before", "omitted_accuracy_before"), ("omitted digit, after", "omitted_accuracy_after"),
              ("all digits, before", "accuracy_before"), ("all digits, after", "accuracy_after")]
    data = [{"type": "bar", "name": name, "x": [g for g, _ in groups], "marker": {"color": COLORS[role]},
             "y": [100 * summary[role][key] for _, key in groups],
             "text": [f"{100 * summary[role][key]:.1f}%" for _, key in groups], "textposition": "outside"}
            for role, name in (("hard", "hard-label student"), ("kd", "KD student")) if role in summary]
    layout = {"title": title_block(f"Digit {summary.get('omitted', '?')} never seen in training", lecture),
              "margin": top_margin(lecture), "barmode": "group",
              "yaxis": {"title": {"text": "test accuracy (%)"}, "range": [0, 109]}}
    return fast_figure(data, layout, lecture, height=560 if lecture else 460)


def missing_class_curves(summary: dict, shift: float, lecture: bool = False) -> go.Figure:
    """Validation accuracy on the omitted digit (solid) and on all digits (dotted) of both students against the
    omitted class's bias shift, with the slider's shift as a vertical line: what the shift trades."""
    data = []
    for role, name in (("hard", "hard-label"), ("kd", "KD")):
        facts = summary.get(role)
        if not facts or "val_curve" not in facts:
            continue
        curve = facts["val_curve"]
        for key, label, dash in (("omitted_accuracy", f"digit {summary['omitted']}", "solid"),
                                 ("accuracy", "all digits", "dot")):
            data.append({"type": "scatter", "mode": "lines", "x": curve["shift"],
                         "y": [100 * v for v in curve[key]], "name": f"{name}: {label}",
                         "line": {"color": COLORS[role], "dash": dash}})
    layout = {"title": title_block("Raising the omitted digit's output bias (validation)", lecture),
              "margin": top_margin(lecture, bottom=110 if lecture else 90), "legend": bottom_legend(),
              "shapes": [{"type": "line", "x0": shift, "x1": shift, "yref": "paper", "y0": 0, "y1": 1,
                          "line": {"color": "#C0392B", "width": 2}}],
              "xaxis": {"title": {"text": "bias shift added to the omitted digit's logit"}},
              "yaxis": {"title": {"text": "validation accuracy (%)"}, "range": [0, 102]}}
    return fast_figure(data, layout, lecture, height=560 if lecture else 480)


def at_shift(curve: dict, shift: float) -> dict:
    """The validation curve's values at the grid shift nearest to `shift`."""
    index = min(range(len(curve["shift"])), key=lambda i: abs(curve["shift"][i] - shift))
    return {key: values[index] for key, values in curve.items()}
