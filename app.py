"""kdviz's entry point, in two roles: `streamlit run app.py` imports it and finds `app`, Streamlit's ASGI server plus
kdviz's few HTTP routes (kdviz.routes); Streamlit then runs this same file as the script of every page view, which
registers the pages with st.navigation and draws the shared sidebar (kdviz.ui.run_app)."""
import streamlit as st

if __name__ == "__main__":  # a page view (also AppTest): the router
    from kdviz import ui

    ui.run_app()
else:  # imported by `streamlit run` (uvicorn): the server
    from kdviz.routes import routes

    app = st.App("app.py", routes=routes())
