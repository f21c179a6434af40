"""kdviz's HTTP routes beside Streamlit's (app.py mounts them with st.App): what a browser fetches without a script
run, so that it costs the server next to nothing. No Streamlit script state is read here, only process-wide objects.

- GET /kdviz/rooms/{code}?since=N: a follower's poll of a presentation (kdviz.present): "live" with the view when it
  changed since version N, "ended" with why, or "unknown". Read-only: a room code never grants control.
- GET /kdviz/plotly.min.js: the plotly.js of the installed plotly package, for exporting a chart as a slide in the
  browser (offline; fetched only when someone exports, then cached by the browser).
"""
from __future__ import annotations

from pathlib import Path

PREFIX = "/kdviz"
PLOTLY_URL = f"{PREFIX}/plotly.min.js"
NO_STORE = {"Cache-Control": "no-store"}


def room_url(code: str) -> str:
    """Where a follower's browser polls room `code`."""
    from urllib.parse import quote

    return f"{PREFIX}/rooms/{quote(str(code), safe='')}"


def plotly_js_path() -> Path:
    """plotly.js as the installed plotly package ships it (the same version the server's figures are built for)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _since(text: str | None) -> int | None:
    """The version the browser has (a small whole number), or None when it sent none or nonsense."""
    return int(text) if text and text.isascii() and text.isdigit() and len(text) <= 12 else None


async def _room(request):
    from starlette.responses import JSONResponse

    from starlette.concurrency import run_in_threadpool

    from kdviz.present import hub, hub_made

    shared = hub() if hub_made() else await run_in_threadpool(hub)  # the first: maybe a connection to Ray
    code, since = request.path_params["code"], _since(request.query_params.get("since"))
    if getattr(shared, "remote", False):  # a Ray round trip must not block the server's event loop
        answer = await run_in_threadpool(shared.poll_dict, code, since)
    else:  # the process's hub: a dict lookup under a lock, cheaper than a thread hop
        answer = shared.poll_dict(code, since)
    return JSONResponse(answer, status_code=404 if answer["state"] == "unknown" else 200, headers=NO_STORE)


async def _plotly_js(request):
    from starlette.responses import FileResponse

    return FileResponse(plotly_js_path(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


def routes() -> list:
    from starlette.routing import Route

    return [Route(f"{PREFIX}/rooms/{{code}}", _room, methods=["GET"]),
            Route(PLOTLY_URL, _plotly_js, methods=["GET"])]
