"""kdviz's HTTP routes beside Streamlit's (app.py mounts them with st.App): what a browser fetches without a script
run, so that it costs the server next to nothing. No Streamlit script state is read here, only process-wide objects.

- GET /kdviz/rooms/{code}?since=N: a follower's poll of a presentation (kdviz.present): "live" with the view when it
  changed since version N, "ended" with why, or "unknown". Read-only: a room code never grants control.
- GET /kdviz/runs/{id}/live?since=N&split=validation|test&lecture=0|1: a live run's progress and charts
  (kdviz.views.run_live: one payload per version of its log, built once for all its viewers), or only its state and
  version when the browser has the newest. Read-only, as the run's read-only link is: a run id never grants control.
- GET /kdviz/plotly.min.js: the plotly.js of the installed plotly package, for the live run's charts and for
  exporting a chart as a slide in the browser (offline; gzipped once, then cached by the browser for a day).
"""
from __future__ import annotations

import functools
import gzip
from pathlib import Path

PREFIX = "/kdviz"
PLOTLY_URL = f"{PREFIX}/plotly.min.js"
NO_STORE = {"Cache-Control": "no-store"}


_SERVED: dict = {}  # "runs": the process's run manager, handed over by kdviz.ui.core when it makes it


def serve_runs(manager) -> None:
    """Answer the live-run route from this run manager (the process's one; tests make fresh ones)."""
    _SERVED["runs"] = manager


def live_run_url(run_id: str) -> str:
    """Where a browser polls live run `run_id`."""
    from urllib.parse import quote

    return f"{PREFIX}/runs/{quote(str(run_id), safe='')}/live"


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


def _live_answer(run_id: str, since: int | None, lecture: bool, split: str, gzip: bool):
    from kdviz.views import run_live

    manager = _SERVED.get("runs")
    run = manager.get(run_id) if manager is not None else None
    if run is None:
        return None
    queue = manager.queue_position(run_id) if run.state == "queued" else None
    return run_live.shared().answer(run, queue, lecture, split, since, gzip)


async def _live_run(request):
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response

    query = request.query_params
    accepts_gzip = "gzip" in request.headers.get("accept-encoding", "")
    # a worker thread: a build (once per version, for everyone) must not hold up the event loop's other requests
    answer = await run_in_threadpool(_live_answer, request.path_params["run_id"], _since(query.get("since")),
                                     query.get("lecture") == "1", query.get("split", "validation"), accepts_gzip)
    if answer is None:
        return JSONResponse({"state": "unknown"}, status_code=404, headers=NO_STORE)
    body, gzipped = answer
    headers = {**NO_STORE, "Vary": "Accept-Encoding", **({"Content-Encoding": "gzip"} if gzipped else {})}
    return Response(body, media_type="application/json", headers=headers)


@functools.cache
def _plotly_js_gzipped() -> bytes:
    return gzip.compress(plotly_js_path().read_bytes(), 6)  # ~4.6 MB → ~1.4 MB for every phone in the hall


async def _plotly_js(request):
    from starlette.responses import FileResponse, Response

    cache = {"Cache-Control": "public, max-age=86400", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        from starlette.concurrency import run_in_threadpool

        body = await run_in_threadpool(_plotly_js_gzipped)
        return Response(body, media_type="text/javascript", headers={**cache, "Content-Encoding": "gzip"})
    return FileResponse(plotly_js_path(), media_type="text/javascript", headers=cache)


def routes() -> list:
    from starlette.routing import Route

    return [Route(f"{PREFIX}/rooms/{{code}}", _room, methods=["GET"]),
            Route(f"{PREFIX}/runs/{{run_id}}/live", _live_run, methods=["GET"]),
            Route(PLOTLY_URL, _plotly_js, methods=["GET"])]
