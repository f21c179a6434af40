"""kdviz router: registers every page with st.navigation and draws the shared sidebar (see kdviz.ui.run_app)."""
from kdviz import ui

ui.run_app()
