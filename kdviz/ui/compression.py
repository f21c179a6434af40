"""The compression & energy page: the lecture's ResNet case study computed live, and the compression experiment
(teacher vs students: size, FLOPs, latency, energy) as a background run (kdviz.ui.experiments)."""
from __future__ import annotations

import dataclasses

import streamlit as st

from kdviz.ui import core
from kdviz.ui.core import owner_id
from kdviz.ui.experiments import register

SOURCES = ("train", "run")


@st.cache_data(show_spinner="Building ResNet-152 and ResNet-50 (no weights) and counting their FLOPs…")
def _case_study() -> tuple[list[dict], dict, float]:
    from kdviz.experiments import compression

    rows = compression.case_study()
    return rows, compression.lecture_numbers(), compression.size_ratio(rows)


def case_study(lecture: bool) -> None:
    from kdviz.views import compression as views

    rows, quoted, ratio = _case_study()
    st.dataframe(views.case_rows(rows, quoted), hide_index=True,
                 column_config={"parameters": st.column_config.NumberColumn(format="localized"),
                                "GFLOPs at 224×224": st.column_config.NumberColumn(format="%.2f")})
    st.markdown(f"ResNet-152 has **{ratio:.2f}×** the parameters of ResNet-50: \"more than a factor of two\". "
                "Parameters and FLOPs are computed here from torchvision's models built without weights "
                "(`torch.utils.flop_counter`, 2 FLOPs per multiply-add, which is why they are twice torchvision's "
                "GMACs); top-1 is torchvision's metadata for its `IMAGENET1K_V1` weights (nothing is downloaded). "
                "The two lecture columns are quoted from the lecture, not measured here.")


def _my_finished_runs() -> list:
    return [run for run in core.run_manager().list_runs(owner_id())
            if run.experiment is None and run.state == "completed"]


def compression_form(module):
    base = module.default_config()
    left, right = st.columns(2)
    with left:
        source = st.radio("Which students", SOURCES, key="comp.source", format_func=lambda s: {
            "train": "train the lecture preset's students now (about 15 s)",
            "run": "the students of a finished run"}[s])
        run_id = None
        if source == "run":
            runs = _my_finished_runs()
            picked = st.selectbox("Your finished runs", [run.id for run in runs], key="comp.run", index=None,
                                  placeholder="none yet" if not runs else "choose one")
            typed = st.text_input("or a run id (e.g. from a shared link)", "", key="comp.run_id").strip()
            run_id = typed or picked
    with right:
        energy = st.radio("Energy", ("codecarbon", "power"), key="comp.energy", format_func=lambda s: {
            "codecarbon": "CodeCarbon: measured where this machine allows it, else its estimate",
            "power": "estimate from a power figure I give"}[s])
        power = None
        if energy == "power":
            power = st.number_input("Power while predicting (W)", value=15.0, step=1.0, key="comp.power",
                                    help="E.g. a laptop CPU package: 10-30 W; one data-centre GPU: 300-700 W.")
        quantize = st.checkbox("Also quantise the KD student to int8", True, key="comp.quantize",
                               help="Dynamic int8 quantisation of its Linear layers (CPU); size and accuracy measured.")
    if source == "run" and not run_id:
        raise ValueError("choose one of your finished runs or type a run's id")
    config = module.config_for_run(run_id) if source == "run" else base  # every widget is drawn before this check
    return dataclasses.replace(config, power_watts=None if power is None else float(power), quantize=quantize)


def compression_results(run, points, summary, lecture) -> None:
    from kdviz import experiments
    from kdviz.views import compression as views

    models = (summary or {}).get("models") or [p for p in points if "role" in p]
    if not models:
        return
    figures = views.metric_charts(models, lecture)
    for index in range(0, len(figures), 2):
        columns = st.columns(2)
        for column, figure, number in zip(columns, figures[index:index + 2], range(index, index + 2)):
            column.plotly_chart(figure, key=f"comp.chart.{number}.{run.id}")
    if summary:
        module = experiments.experiment("compression")
        result = module.report(experiments.from_record(run.config), [{"seed": summary.get("seed"), **summary}])
        st.success(module.verdict(result), icon=":material/bolt:")
    st.dataframe(views.model_rows(models), hide_index=True,
                 column_config={"parameters": st.column_config.NumberColumn(format="localized"),
                                "latency b=1 (ms)": st.column_config.NumberColumn(format="%.3f"),
                                "latency b=256 (ms)": st.column_config.NumberColumn(format="%.2f"),
                                "throughput (images/s)": st.column_config.NumberColumn(format="%.0f"),
                                "test %": st.column_config.NumberColumn(format="%.2f"),
                                "J / prediction": st.column_config.NumberColumn(format="%.3g"),
                                "J / 10⁶ predictions": st.column_config.NumberColumn(format="%.3g")})
    for line in views.energy_sources(models):
        st.caption(f"Power: {line}")
    warning = experiments.experiment("compression").shared_warning(models)
    if warning:
        st.warning(warning, icon=":material/groups:")
    st.caption("Latency and throughput: the median of repeated timings after a warm-up (`torch.utils.benchmark`), "
               "on this server, which other users may share; FLOPs from `torch.utils.flop_counter` (the int8 "
               "model's are its float model's).")


register("compression", compression_form, compression_results)
