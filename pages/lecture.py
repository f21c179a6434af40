"""The lecture tour: the lecture's argument in fourteen steps, one idea and one live view each; present it and the
hall follows on their phones (kdviz.ui.tour, kdviz.ui.present; the steps' words in kdviz.views.tour)."""
import streamlit as st

from kdviz import ui

ui.require_router()
ui.tour_style()
tour, notices = ui.tour_session()
for notice in notices:
    st.warning(notice, icon=":material/link:")
ui.tour_presentation_bar(tour, ui.update_tour_state)
ui.tour_poll(tour)  # first: a follower's browser starts polling before the step's view has finished drawing
if tour.role != "follower":
    ui.start_tour_runs()  # what the later steps show is computed on this server, in the background
ui.tour_navigation(tour)
ui.tour_draw_step(tour)
ui.tour_export(tour)
