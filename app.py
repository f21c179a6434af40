"""kdviz router: registers every page with st.navigation and draws the shared sidebar; nothing else."""
import streamlit as st

from kdviz import ui

st.set_page_config(page_title="kdviz · knowledge distillation", page_icon="🎓", layout="wide")

pages = [st.Page(plan.path, title=plan.title, icon=plan.icon, default=plan.path == "pages/home.py")
         for plan in ui.PAGES if plan.built]
page = st.navigation(pages)
ui.sidebar()
page.run()
