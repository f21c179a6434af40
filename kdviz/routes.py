"""kdviz's HTTP routes beside Streamlit's (app.py mounts them with st.App): what a browser fetches without a script
run, so that it costs the server next to nothing. No Streamlit script state is read here, only process-wide objects.

- GET /kdviz/plotly.min.js: the plotly.js of the installed plotly package, for exporting a chart as a slide in the
  browser (offline; fetched only when someone exports, then cached by the browser).
"""
from __future__ import annotations

from pathlib import Path

PREFIX = "/kdviz"


def plotly_js_path() -> Path:
    """plotly.js as the installed plotly package ships it (the same version the server's figures are built for)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


async def _plotly_js(request):
    from starlette.responses import FileResponse

    return FileResponse(plotly_js_path(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


def routes() -> list:
    from starlette.routing import Route

    return [Route(f"{PREFIX}/plotly.min.js", _plotly_js, methods=["GET"])]
