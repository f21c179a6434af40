"""The label-smoothing experiment's figures and table without Streamlit: its students against T per ε, and its
teachers' class-similarity heatmaps side by side on one colour scale."""
from __future__ import annotations

import math

import plotly.graph_objects as go

from kdviz.views.charts import CLASS_COLORS, COLORS, bottom_legend, fast_figure, title_block, top_margin
from kdviz.views.charts import _cell_text  # the explorer's heatmap's cell text: one format for both


def smoothing_color(index: int) -> str:
    """One colour per ε, the same in every chart of the experiment."""
    return CLASS_COLORS[index % len(CLASS_COLORS)]


def students_chart(result: dict, lecture: bool = False) -> go.Figure:
    """Test accuracy of each ε teacher's KD student against T (log axis; ± std over seeds as error bars), the T chosen
    on validation ringed, and the hard-label student as a dashed line."""
    data = []
    chosen = {(row["smoothing"], row["temperature"]) for row in result["chosen"]}
    for index, smoothing in enumerate(sorted({row["smoothing"] for row in result["rows"]})):
        mine = sorted((r for r in result["rows"] if r["smoothing"] == smoothing), key=lambda r: r["temperature"])
        color = smoothing_color(index)
        data.append({"type": "scatter", "mode": "lines+markers", "name": f"KD from the ε = {smoothing:g} teacher",
                     "x": [r["temperature"] for r in mine], "y": [100 * r["accuracy"] for r in mine],
                     "error_y": {"type": "data", "array": [100 * (r["accuracy_std"] or 0) for r in mine],
                                 "visible": any(r["n_seeds"] > 1 for r in mine), "color": color},
                     "line": {"color": color}, "marker": {"size": 11 if lecture else 8, "color": color},
                     "hovertemplate": "T = %{x:g}: %{y:.2f} % test<extra>ε = " + f"{smoothing:g}</extra>"})
        picked = [r for r in mine if (smoothing, r["temperature"]) in chosen]
        data.append({"type": "scatter", "mode": "markers", "showlegend": False, "hoverinfo": "skip",
                     "x": [r["temperature"] for r in picked], "y": [100 * r["accuracy"] for r in picked],
                     "marker": {"size": 24 if lecture else 18, "color": "rgba(0,0,0,0)",
                                "line": {"color": color, "width": 3}}})
    hard, ticks = result["hard"], sorted({row["temperature"] for row in result["rows"]})
    if hard.get("accuracy") is not None and ticks:  # a trace, not a shape: the y axis makes room for it
        level = 100 * hard["accuracy"]
        data.append({"type": "scatter", "mode": "lines", "x": [ticks[0], ticks[-1]], "y": [level, level],
                     "name": "hard-label student", "line": {"color": COLORS["hard"], "dash": "dash"},
                     "hovertemplate": "%{y:.2f} % test<extra>hard-label student</extra>"})
    layout = {"title": title_block("Students' test accuracy against T", lecture),
              "margin": top_margin(lecture, bottom=110 if lecture else 90), "legend": bottom_legend(),
              "xaxis": {"title": {"text": "distillation temperature T (log scale)"}, "type": "log",
                        "tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]},
              "yaxis": {"title": {"text": "student's test accuracy (%)"}}}
    return fast_figure(data, layout, lecture, height=600 if lecture else 500)


def similarity_heatmaps(teachers: list[dict], classes, lecture: bool = False) -> list[go.Figure]:
    """One heatmap per ε teacher, all on ONE colour scale (separate scales would hide the flattening): row i, the
    teacher's mean probability of each wrong class over the validation images of class i, renormalised over the wrong
    classes (rows sum to 100 %; a flat row is 100/(C − 1) % everywhere); the diagonal is left out. A figure each, so
    that the page sets them side by side on a projector and one under another on a phone (Streamlit's columns)."""
    n = len(classes)
    grids = [[[None if i == j or not math.isfinite(float(t["matrix"][i][j])) else float(t["matrix"][i][j])
               for j in range(n)] for i in range(n)] for t in teachers]
    top = max((v for grid in grids for row in grid for v in row if v is not None), default=1.0)
    tick, axis_title = {"size": 16 if lecture else 12}, {"size": 18 if lecture else 14}  # every panel alike
    figures = []
    for index, (teacher, grid) in enumerate(zip(teachers, grids)):
        data = [{"type": "heatmap", "z": grid, "x": list(classes), "y": list(classes), "zmin": 0, "zmax": top,
                 "colorscale": [[0, "#FFFFFF"], [0.5, "#7FB8DE"], [1, COLORS["teacher"]]],  # the explorer's
                 "showscale": index == len(teachers) - 1, "xgap": 1, "ygap": 1, "hoverongaps": False,
                 "colorbar": {"title": {"text": "of wrong"}, "thickness": 14, "tickformat": ".0%"},
                 "text": [["" if v is None else _cell_text(v) for v in row] for row in grid],
                 "texttemplate": "%{text}" if n <= 12 else None, "textfont": {"size": 13 if lecture else 10},
                 "hovertemplate": "true class %{y}: %{z:.1%} of the wrong-class probability on %{x}"
                                  f"<extra>ε = {teacher['smoothing']:g}</extra>"}]
        layout = {"xaxis": {"type": "category", "tickfont": tick, "showgrid": False,
                            "title": {"text": "wrong class", "font": axis_title}},
                  "yaxis": {"type": "category", "tickfont": tick, "showgrid": False, "range": [n - 0.5, -0.5],
                            "title": {"text": "true class", "font": axis_title}},
                  "plot_bgcolor": "#F2F4F7", "showlegend": False, "margin": top_margin(lecture),
                  "title": title_block(f"ε = {teacher['smoothing']:g} · flatness {teacher['flatness']:.2f}", lecture)}
        figures.append(fast_figure(data, layout, lecture, height=520 if lecture else 420))
    return figures


def teachers_table(result: dict) -> list[dict]:
    """One row per ε: the teacher (validation and test accuracy, flatness, off-target mass) and its student at the T
    chosen on validation (that T, its validation and test accuracy, KD − hard-label on test)."""
    chosen = {row["smoothing"]: row for row in result["chosen"]}
    rows = []
    for teacher in result["teachers"]:
        student = chosen.get(teacher["smoothing"])
        rows.append({"ε": teacher["smoothing"], "teacher val %": 100 * teacher["val_accuracy"],
                     "teacher test %": 100 * teacher["accuracy"], "flatness": teacher["flatness"],
                     "off-target %": 100 * teacher["off_target_mass"],
                     "T (chosen on val)": student["temperature"] if student else None,
                     "student val %": 100 * student["val_accuracy"] if student else None,
                     "student test %": 100 * student["accuracy"] if student else None,
                     "KD − hard test": 100 * student["accuracy_gain"] if student and
                     student["accuracy_gain"] is not None else None})
    return rows
