"""Ensembles: many teachers' knowledge in one student ("ten experts, but just one model")."""
import streamlit as st

from kdviz import ui

ui.require_router()

st.title(":material/groups: Ensembles: many teachers, one student")
st.markdown("An ensemble of teachers is more accurate than any one of them, but every prediction costs all of them. "
            "Distillation trains one small student on the ensemble's soft labels (Hinton et al. 2015, §1 and §4). "
            "First a worked example of how teachers are combined, then the experiment: N teachers trained from "
            "different seeds, their ensemble, and one student distilled three ways.")
lecture = ui.lecture_mode()
st.subheader("Combining teachers: which target?")
ui.ensemble_example(lecture)
st.subheader("The experiment")
st.markdown("Teachers with the base teacher's settings and seeds +0, +1, … (cached: a second run reuses them). The "
            "best single teacher is chosen on **validation**. Three students start from the same weights and see "
            "the same batches: one on hard labels, one distilled from the best teacher, one from the ensemble. "
            "Validation decides which is better; test is reported.")
ui.experiment_tab("ensemble")
