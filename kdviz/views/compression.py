"""The compression & energy page's model without Streamlit: a compression run's models and the lecture's case
study as figures and tables."""
from __future__ import annotations

import plotly.graph_objects as go

from kdviz.core.budget import format_bytes, format_flops
from kdviz.core.roles import ROLE_NAMES
from kdviz.experiments.compression import shared
from kdviz.views.charts import COLORS, fast_figure, title_block, top_margin

# (row key, chart title, axis title, scale to the axis's unit): less is better in each
METRICS = (("size_bytes", "Size in memory", "MB", 1 / 2**20),
           ("flops_per_image", "Compute per prediction", "MFLOP per image", 1e-6),
           ("latency_ms_batch1", "Latency, one image at a time", "ms per image (batch of 1)", 1.0),
           ("energy_j_per_million", "Energy per million predictions", "joules per 10⁶ predictions", 1.0))


def name_of(row: dict) -> str:
    return ROLE_NAMES.get(row.get("role"), row.get("name", "?"))


def _short(value: float) -> str:
    """3 significant digits without an exponent: 2400, 9.14, 0.208."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def metric_charts(models: list[dict], lecture: bool = False) -> list[go.Figure]:
    """One bar chart per metric on a linear axis from zero (the ratios are a few ×, and a bar's length should be
    its value), each bar labelled with its value and how many times less than the teacher's it is."""
    teacher = next((m for m in models if m.get("role") == "teacher"), None)
    figures = []
    for key, title, axis, scale in METRICS:
        rows = [m for m in models if isinstance(m.get(key), (int, float)) and m[key] > 0]
        if not rows:
            continue
        texts = []
        for m in rows:
            ratio = teacher[key] / m[key] if teacher and teacher.get(key) else None
            texts.append(_short(m[key] * scale) + ("" if m is teacher or ratio is None else f"<br>{ratio:.1f}× less"))
        data = [{"type": "bar", "x": [name_of(m) for m in rows], "y": [m[key] * scale for m in rows],
                 "showlegend": False, "marker": {"color": [COLORS.get(m.get("role"), COLORS["label"]) for m in rows]},
                 "text": texts, "textposition": "outside", "cliponaxis": False}]
        if key == "energy_j_per_million":
            measured = all(m.get("energy_measured") for m in rows)
            title = f"{title} ({'measured' if measured else 'estimated'}" + \
                ("; shared with other runs: not this student's own)" if any(shared(m) for m in rows) else ")")
        top = max(m[key] * scale for m in rows)
        layout = {"title": title_block(title, lecture), "margin": top_margin(lecture, bottom=20),
                  "yaxis": {"title": {"text": axis}, "range": [0, 1.25 * top]},
                  "xaxis": {"tickangle": 0 if len(rows) <= 3 else -20}}
        figures.append(fast_figure(data, layout, lecture, height=520 if lecture else 420))
    return figures


def model_rows(models: list[dict]) -> list[dict]:
    """The table under the charts, in units a person reads (MB, MFLOP, ms, J)."""
    rows = []
    for m in models:
        rows.append({
            "model": name_of(m), "parameters": m["params"], "in memory (fp32)": format_bytes(m["size_bytes"]),
            "on disk": format_bytes(m["disk_bytes"]), "FLOPs / image": format_flops(m["flops_per_image"]),
            "latency b=1 (ms)": m["latency_ms_batch1"], "latency b=256 (ms)": m.get("latency_ms_batch256"),
            "throughput (images/s)": m["throughput_per_s"],
            "test %": None if m.get("accuracy") is None else 100 * m["accuracy"],
            "J / prediction": m["energy_j_per_prediction"], "J / 10⁶ predictions": m["energy_j_per_million"],
            "energy": ("measured" if m.get("energy_measured") else "estimated")
            + (f", shared with {shared(m)} other run{'s' * (shared(m) > 1)}" if shared(m) else "")})
    return rows


def energy_sources(models: list[dict]) -> list[str]:
    """Each distinct power figure's source, with the watts it read or assumed ("12.3 W: estimated by ...")."""
    seen, out = set(), []
    for m in models:
        source = m.get("power_source")
        if source and source not in seen:
            seen.add(source)
            watts = m.get("power_watts")
            out.append((f"{watts:.3g} W" if isinstance(watts, (int, float)) else "?") + f" — {source}")
    return out


def case_rows(case_study: list[dict], lecture_numbers: dict | None) -> list[dict]:
    """The lecture's case study as computed rows (parameters and GFLOPs live, top-1 from torchvision's metadata),
    the lecture's own numbers beside them, labelled as quoted."""
    quoted = lecture_numbers or {}
    rows = []
    for row in case_study:
        is_teacher = "152" in row["name"]
        rows.append({
            "model": row["name"], "parameters": row["params"], "GFLOPs at 224×224": row["gflops_224"],
            "torchvision's GMACs": row.get("torchvision_gmacs"),
            "top-1 %, torchvision's weights": row.get("imagenet_top1"),
            "lecture, hard labels (%)": _quoted(quoted.get("teacher_top1" if is_teacher else "student_hard_top1")),
            "lecture, distilled (%)": "" if is_teacher else _quoted(quoted.get("student_kd_top1"))})
    return rows


def _quoted(value) -> str:
    """A number quoted from the lecture as text ("≈78" stays as it is): one type per table column."""
    return "" if value is None else f"{value:g}" if isinstance(value, (int, float)) else str(value)
