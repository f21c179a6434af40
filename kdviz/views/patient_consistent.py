"""The patient-and-consistent experiment as figures and a table: accuracy against epochs of the KD student taught
by a consistent teacher, by a fixed teacher and of the hard-label student, and the consistent − fixed gap."""
from __future__ import annotations

import plotly.graph_objects as go

from kdviz.views.charts import COLORS, bottom_legend, fast_figure, title_block, top_margin

# One colour per role: both KD students are green (the consistent one solid, the fixed one dashed with open marks).
LINES = {"consistent": ("KD, consistent teacher", COLORS["kd"], "solid", "circle"),
         "fixed": ("KD, fixed teacher", COLORS["kd"], "dash", "circle-open"),
         "hard": ("hard-label student", COLORS["hard"], "solid", "square")}
SPLIT_WORDS = {"val_": "validation", "": "test"}


def _marker_sizes(rows: list[dict], lecture: bool) -> list[int]:
    """Bigger marks at the reported epoch counts, small ones (or none) between them."""
    big, small = (13, 0) if lecture else (10, 0)
    return [big if r.get("reported") else small for r in rows]


def accuracy_chart(rows: list[dict], split: str = "val_", lecture: bool = False) -> go.Figure:
    """Accuracy (%) of the three students against epochs; rows are by-epoch rows (one seed, or means over seeds:
    kdviz.experiments.patient_consistent.by_epoch / summarise), split "val_" (validation) or "" (test)."""
    rows = sorted(rows, key=lambda r: r["epoch"])
    epochs, sizes = [r["epoch"] for r in rows], _marker_sizes(rows, lecture)
    data = []
    for student, (name, color, dash, symbol) in LINES.items():
        data.append({"type": "scatter", "mode": "lines+markers", "x": epochs, "name": name,
                     "y": [100 * r[f"{student}_{split}accuracy"] for r in rows],
                     "line": {"color": color, "dash": dash},
                     "marker": {"size": sizes, "color": color, "symbol": symbol, "line": {"width": 2, "color": color}}})
    words = SPLIT_WORDS[split]
    layout = {"title": title_block(f"With jitter: whose labels, and how long ({words})", lecture),
              "margin": top_margin(lecture, bottom=100 if lecture else 80), "legend": bottom_legend(),
              "xaxis": {"title": {"text": "epochs of the students' training"}, "tickformat": "d"},
              "yaxis": {"title": {"text": f"{words} accuracy (%)"}}}
    return fast_figure(data, layout, lecture, height=600 if lecture else 500)


def gap_chart(rows: list[dict], lecture: bool = False) -> go.Figure:
    """Consistent − fixed teacher's KD student, in accuracy points, against epochs: validation (solid) and test
    (dotted), a zero line; above zero the consistent teacher is ahead."""
    rows = sorted(rows, key=lambda r: r["epoch"])
    epochs, sizes = [r["epoch"] for r in rows], _marker_sizes(rows, lecture)
    data = [{"type": "scatter", "mode": "lines+markers", "x": epochs, "name": f"{words}",
             "y": [100 * (r[f"consistent_{split}accuracy"] - r[f"fixed_{split}accuracy"]) for r in rows],
             "line": {"color": COLORS["kd"], "dash": "solid" if split else "dot"},
             "marker": {"size": sizes, "color": COLORS["kd"]}}
            for split, words in SPLIT_WORDS.items()]
    layout = {"title": title_block("Consistent − fixed teacher (KD students)", lecture),
              "margin": top_margin(lecture, bottom=100 if lecture else 80), "legend": bottom_legend(),
              "shapes": [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 0, "y1": 0,
                          "line": {"color": COLORS["label"], "width": 2}}],
              "xaxis": {"title": {"text": "epochs of the students' training"}, "tickformat": "d"},
              "yaxis": {"title": {"text": "accuracy difference (points)"}, "zeroline": False}}
    return fast_figure(data, layout, lecture, height=600 if lecture else 500)


def table(rows: list[dict]) -> list[dict]:
    """Rows for a table at the reported epochs: each student's validation and test accuracy (%) and the gap."""
    out = []
    for r in rows:
        if not r.get("reported"):
            continue
        line = {"epochs": r["epoch"]}
        for split, words in SPLIT_WORDS.items():
            for student, (name, *_) in LINES.items():
                line[f"{name} ({words}, %)"] = round(100 * r[f"{student}_{split}accuracy"], 2)
            line[f"consistent − fixed ({words}, points)"] = round(
                100 * (r[f"consistent_{split}accuracy"] - r[f"fixed_{split}accuracy"]), 2)
        out.append(line)
    return out
