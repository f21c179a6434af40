"""Compression & energy: what a smaller student saves every time it is used."""
import streamlit as st

from kdviz import ui

ui.require_router()

st.title(":material/bolt: Compression & energy")
st.markdown("A student trained by distillation keeps most of its teacher's accuracy at a fraction of its size. The "
            "size is paid once; the compute and the energy are paid at every prediction, \"millions of times\". "
            "Here both are counted and measured, for the lecture's case study and for the models on this server.")
lecture = ui.lecture_mode()
st.subheader("The lecture's case study: ResNet-152 → ResNet-50 on ImageNet")
ui.compression_case_study(lecture)
st.subheader("Teacher and students on this server")
st.markdown("Parameters, size in memory and on disk, FLOPs per image, latency at batch 1 and 256, throughput, and "
            "energy per prediction: measured where this machine can measure it, estimated where it cannot, and "
            "always labelled which.")
ui.experiment_tab("compression")
