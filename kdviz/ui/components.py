"""Browser-side widgets (Streamlit components v2, JavaScript from kdviz/ui/assets inlined, nothing fetched from a CDN):
the soft-labels widget, whose charts follow T and α while the slider moves and whose released value reaches the
server, and the live run, whose progress and charts the browser polls and draws (kdviz.routes)."""
from __future__ import annotations

import functools
from pathlib import Path

import streamlit as st

ASSETS = Path(__file__).parent / "assets"
# One ES module: the math (a mirror of kdviz.core.kd), the number formats, SVG helpers, the charts, then the widget.
SOFT_LABELS_JS = ("kd.js", "formats.js", "svg.js", "charts.js", "soft_labels.js")


@functools.cache
def inline_component(name: str, files: tuple[str, ...]):
    """A component whose JavaScript is the given asset files joined into one module, registered once per process:
    each mount then only sends its data. Not isolated in a shadow root: plotly.js styles the page's head."""
    js = "\n".join((ASSETS / file).read_text() for file in files)
    return st.components.v2.component(name, js=js, html="<span></span>", isolate_styles=False)


# How often a live run's browser asks for news: twice a second for its owner (the lecturer's projected run), every
# second for read-only viewers. A poll costs the server a lookup; a redraw's figures are built once per version for
# everyone (kdviz.views.run_live), so a hall of viewers costs about what one does.
OWNER_POLL_MS, VIEWER_POLL_MS = 500, 1000
# A hall of viewers sees the run end within one poll of each other, and each then reruns its page's run panel (the
# case study, the final charts): spread over this many ms, the server draws them one after another without a queue.
VIEWER_REDRAW_SPREAD_MS = 3000


def live_run(run, mine: bool, parts: tuple[str, ...], lecture: bool, split: str, queue_position: int | None,
             drawn: str) -> None:
    """Draw a live run's progress ("header" in parts) and charts ("charts") in the browser; the fragment this is
    drawn in reruns when the run's state or queue position changes (see assets/live_run.js). drawn: the redraw key
    (run_live.redraw_key) of what the fragment drew around it, read before it drew it: the browser reruns the
    fragment as soon as the server's differs."""
    from kdviz.routes import PLOTLY_URL, live_run_url
    from kdviz.views import run_live

    payload = run_live.shared().payload(run, queue_position, lecture, split)
    inline_component("kdviz.live_run", ("plotly_loader.js", "live_run.js"))(
        key=f"live-{run.id}", on_changed_change=lambda: None,
        data={"url": live_run_url(run.id), "payload": payload.body, "redraw": drawn, "split": split,
              "lecture": bool(lecture), "parts": list(parts), "plotly_url": PLOTLY_URL,
              "interval_ms": OWNER_POLL_MS if mine else VIEWER_POLL_MS,
              "spread_ms": 0 if mine else VIEWER_REDRAW_SPREAD_MS})


@functools.cache
def soft_labels_assets() -> tuple[str, str]:
    """(js, css) of the soft-labels widget, read once per process."""
    js = "\n".join((ASSETS / name).read_text() for name in SOFT_LABELS_JS)
    return js, (ASSETS / "soft_labels.css").read_text()


@functools.cache
def _soft_labels_component():
    js, css = soft_labels_assets()
    # isolate_styles: a shadow root, so that neither the page's CSS nor the widget's leaks across
    return st.components.v2.component("kdviz.soft_labels", js=js, css=css, isolate_styles=True)


def _released() -> None:
    """The state's callbacks (components v2 needs one per state name); the released value is read from the session
    state, before the widget is drawn, by whoever owns it (released_values)."""


def soft_labels_widget(payload: dict, key: str) -> tuple[float, float]:
    """Draw the soft-labels widget (payload: kdviz.views.soft_labels.widget_payload); returns the (T, α) its sliders
    were last released at, validated (T on the slider, α in steps of 0.01): the payload's until one is released."""
    from kdviz.views.soft_labels import read_released

    result = _soft_labels_component()(
        key=key, data=payload, default={"temperature": payload["temperature"], "alpha": payload["alpha"]},
        on_temperature_change=_released, on_alpha_change=_released)
    return read_released({name: result.get(name) for name in ("temperature", "alpha")}, payload["temperature"],
                         payload["alpha"])


def released_values(key: str, temperature: float, alpha: float) -> tuple[float, float]:
    """The (T, α) the widget under key was released at, read before it is drawn in this run (so that this very run
    shows them), validated; the given ones while it has none."""
    from kdviz.views.soft_labels import read_released

    value = st.session_state.get(key)
    return read_released(dict(value) if value else {}, temperature, alpha)
