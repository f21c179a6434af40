"""Live distillation: configure a run, watch a hard-label and a KD student learn side by side, read the result."""
import pandas as pd
import streamlit as st

from kdviz import ui
from kdviz.core.presets import PRESETS
from kdviz.views import run_charts, run_view

ui.require_router()

st.title(":material/play_circle: Live distillation")
st.markdown("Two students with the **same initial weights** see the **same batches in the same order**; only the "
            "loss differs: the **hard-label student** learns from one-hot labels, the **KD student** from the "
            "teacher's soft labels at temperature T (weight α) plus the hard labels (weight 1 − α). "
            "A run keeps going when you switch pages or reload, and this browser keeps its controls; a copied link "
            "shows the run read-only.")

manager, owner = ui.run_manager(), ui.owner_id()
if not st.query_params.get("run") and st.session_state.get("current_run"):
    st.query_params["run"] = st.session_state["current_run"]  # back from another page: re-attach to the run
# Someone else's run through its read-only link (a hall watching the lecturer's run): the run first, and the form of
# ~25 widgets only when asked for, which makes the page a third as dear to draw for each of a hall's viewers.
shown = st.query_params.get("run")
viewing = bool(shown) and not manager.owns(manager.get(shown), owner) and not st.session_state.get("live.configure")
run_tab, history_tab, sweep_tab = st.tabs(["Run", "History & comparison", "Sweeps"])

with run_tab:
    config = None
    if viewing:
        st.button(":material/tune: Configure a run of my own", key="live.configure_button",
                  on_click=lambda: st.session_state.update({"live.configure": True}),
                  help="The presets and every option of a run, started as your own (queued and budgeted).")
    else:
        names = list(PRESETS)
        preset = st.selectbox("Preset", names, index=names.index(st.session_state.get("chosen_preset", names[0])),
                              format_func=lambda name: PRESETS[name][0], key="preset")
        st.session_state["chosen_preset"] = preset  # widget state is dropped on a page switch; this is not
        config, problem = ui.distill_config_form(preset)
        if problem:
            st.error(problem, icon=":material/warning:")
        if st.button(":material/play_arrow: Start run", type="primary", disabled=config is None):
            try:
                st.query_params["run"] = st.session_state["current_run"] = manager.submit(
                    config, owner, address=ui.client_address())
            except ValueError as error:
                st.error(str(error), icon=":material/warning:")
    if st.query_params.get("run"):
        ui.run_panel(st.query_params["run"])


def _label(run) -> str:
    return run_view.run_label(run.id, run.state, run.config, run.summary)


with history_tab:
    ui.removed_runs_notice()  # what the disk quota removed, if anything
    runs = [run for run in manager.list_runs(owner) if run.experiment is None]  # experiments: their own pages
    if not runs:
        st.info("Your runs will be listed here; they are kept on disk and survive a server restart.")
    else:
        by_id = {run.id: run for run in runs}
        # the options' labels never change (Streamlit keeps a multiselect's choice by label): state and accuracies
        # are in each chosen run's box below
        picked = st.multiselect("Runs to compare", list(by_id), default=list(by_id)[:1], key="compare",
                                format_func=lambda run: f"{run} · {run_view.describe_config(by_id[run].config)}")
        chosen = [by_id[run_id] for run_id in picked]
        frames = [(run.id[-6:], ui.run_frames(run)[2]) for run in chosen]
        if frames:
            split = ui.split_choice("overlay_split", pd.concat([frame for _, frame in frames]))
            st.plotly_chart(run_charts.overlay_chart(frames, ui.lecture_mode(), split), key="overlay")
        for run in chosen:
            with st.container(border=True):
                st.markdown(f"**{_label(run)}**")
                ui.run_actions(run)

with sweep_tab:
    st.markdown("Queue one run per value of a parameter, everything else as configured in the **Run** tab, and "
                "compare both students' final validation and test accuracy: the best value is the one with the best "
                "validation accuracy. The runs wait in the queue and finish one by one.")
    parameter = st.selectbox("Parameter", list(run_view.SWEEP_PARAMETERS),
                             format_func=run_view.SWEEP_PARAMETERS.get, key="sweep_parameter")
    defaults = {"temperature": "1, 2, 4, 8, 20", "alpha": "0, 0.5, 0.9, 1", "student_width": "30, 100, 300, 800"}
    text = st.text_input("Values (comma-separated)", defaults[parameter], key=f"sweep_values_{parameter}")
    if viewing:
        st.caption("A sweep starts from your own configuration: **Configure a run of my own** in the Run tab first.")
    if st.button(":material/play_arrow: Start sweep", disabled=config is None):
        try:
            st.query_params["sweep"] = ui.start_sweep(manager, owner, config, parameter, text,
                                                          ui.client_address())
        except ValueError as error:
            st.error(str(error), icon=":material/warning:")
    if st.query_params.get("sweep"):
        ui.sweep_panel(st.query_params["sweep"])
