"""The capacity-gap experiment's figure and table without Streamlit: each teacher beside the student it taught."""
from __future__ import annotations

import plotly.graph_objects as go

from kdviz.views.charts import COLORS, bottom_legend, fast_figure, title_block, top_margin


def _params(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 1e6 else f"{count / 1e3:.1f}k" if count >= 1e3 else str(count)


def teacher_tick(row: dict) -> str:
    """A teacher's label on the x axis: its size, its parameters, and "stopped at N epochs" for the early one."""
    size = f"{row['width']}×{row['depth']}"
    stop = f"<br>stopped at {row['epochs']} ep." if row["early_stopped"] else ""
    return f"{size}<br>{_params(row['params'])} params{stop}"


def gap_chart(rows: list[dict], best_teacher: dict | None, best_student: dict | None,
              lecture: bool = False) -> go.Figure:
    """Test accuracy of each teacher (blue) and of the KD student it taught (green), teachers by size and the
    early-stopped one last (open markers, not joined: it is no point on the size curve), the hard-label student as a
    dashed line; the teacher and the student chosen on validation are labelled. rows: report()'s summary rows."""
    ticks = [teacher_tick(r) for r in rows]
    size = 14 if lecture else 11
    data, hard = [], None
    for role, key, name in (("teacher", "teacher_accuracy", "teacher"), ("kd", "kd_accuracy", "its KD student")):
        for early in (False, True):
            mine = [(tick, r) for tick, r in zip(ticks, rows) if r["early_stopped"] == early]
            if not mine:
                continue
            data.append({"type": "scatter", "mode": "markers" if early else "lines+markers",
                         "x": [tick for tick, _ in mine], "y": [100 * r[key] for _, r in mine],
                         "name": f"{name} (early-stopped teacher)" if early else name,
                         "showlegend": not early, "line": {"color": COLORS[role]},
                         "marker": {"size": size, "color": "white" if early else COLORS[role],
                                    "symbol": "diamond" if early else "circle",
                                    "line": {"color": COLORS[role], "width": 3}},
                         "hovertemplate": f"%{{y:.2f}} % test<extra>{name}</extra>"})
    if rows:
        hard = 100 * rows[0]["hard_accuracy"]
        data.append({"type": "scatter", "mode": "lines", "x": [ticks[0], ticks[-1]], "y": [hard, hard],
                     "name": "hard-label student", "line": {"color": COLORS["hard"], "dash": "dash"}})
    notes = []
    for chosen, key, text, shift in ((best_teacher, "teacher_accuracy", "best teacher (validation)", -1),
                                     (best_student, "kd_accuracy", "best student (validation)", 1)):
        if chosen is None:
            continue
        notes.append({"x": teacher_tick(chosen), "y": 100 * chosen[key], "text": text, "showarrow": True,
                      "arrowhead": 2, "ax": 0, "ay": 40 * shift if lecture else 32 * shift,
                      "font": {"size": 18 if lecture else 14}})
    layout = {"title": title_block("Does the most accurate teacher teach best? Test accuracy", lecture),
              "margin": top_margin(lecture, bottom=110 if lecture else 90), "legend": bottom_legend(),
              "annotations": notes,
              "xaxis": {"title": {"text": "teacher (mlp width × depth)"}, "type": "category"},
              "yaxis": {"title": {"text": "test accuracy (%)"}}}
    return fast_figure(data, layout, lecture, height=620 if lecture else 520)


def table_rows(rows: list[dict]) -> list[dict]:
    """One row per teacher for a table: its size, both accuracies, its student's, and the T chosen on validation
    (one per seed)."""
    return [{"teacher": r["teacher"], "parameters": r["params"],
             "teacher validation %": 100 * r["teacher_val_accuracy"], "teacher test %": 100 * r["teacher_accuracy"],
             "student validation %": 100 * r["kd_val_accuracy"], "student test %": 100 * r["kd_accuracy"],
             "T (chosen on validation)": ", ".join(f"{t:g}" for t in r["temperatures"])} for r in rows]
