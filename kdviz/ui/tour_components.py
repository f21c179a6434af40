"""The tour's browser-side pieces (Streamlit components v2, inline JavaScript from kdviz/ui/assets, nothing fetched
from a CDN): the presenter's clicker, a follower's cheap poll, and slide-ready chart export."""
from __future__ import annotations

FOLLOW_INTERVAL_MS = 500  # a follower sees the lecturer's change within this plus one page run (the issue: 1.5 s)


PRELUDES = {"slide_export": ("plotly_loader.js",)}  # asset files a component's module needs before its own


def _component(name: str):
    """A component from assets/<name>.js (after its PRELUDES), registered once per process."""
    from kdviz.ui.components import inline_component

    return inline_component(f"kdviz_{name}", (*PRELUDES.get(name, ()), f"{name}.js"))


def clicker(enabled: bool, key: str = "tour.clicker") -> int:
    """+1 or −1 when PageDown / PageUp (or the arrow keys) was pressed since the last run, else 0."""
    result = _component("clicker")(data={"enabled": bool(enabled)}, key=key, on_move_change=lambda: None,
                                   height=0)
    move = result.get("move")
    return int(move) if move in (1, -1) else 0


def follow_poll(room: str, version: int, view: dict, browser_follows: bool, key: str = "tour.follow") -> None:
    """Poll the room through kdviz's HTTP route (kdviz.routes) and rerun this page when the lecturer changed the step
    or a question; a new T or α on a step drawn in the browser (browser_follows) is applied there without a rerun."""
    from kdviz.routes import room_url

    _component("follow")(data={"room": room, "version": version, "view": view, "url": room_url(room),
                               "interval_ms": FOLLOW_INTERVAL_MS, "browser_follows": browser_follows},
                         key=key, on_changed_change=lambda: None, height=0)


def slide_export(caption: str, prefix: str, key: str = "tour.export") -> None:
    """PNG and SVG buttons under every Plotly chart of the page: a 1920×1080 slide with this caption."""
    from kdviz.routes import PLOTLY_URL

    _component("slide_export")(data={"caption": caption, "prefix": prefix, "plotly_url": PLOTLY_URL}, key=key,
                               height=0)
