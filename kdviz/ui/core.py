"""The app's frame: the page list and router, the shared sidebar and lecture mode, and process-wide resources."""
from __future__ import annotations

import streamlit as st

LECTURE_MODE_KEY = "lecture_mode"


class PagePlan:
    """A page of the app: where it lives, what it is called, what it shows, and whether it is built yet."""

    def __init__(self, path: str, title: str, icon: str, blurb: str, built: bool):
        self.path, self.title, self.icon, self.blurb, self.built = path, title, icon, blurb, built


PAGES = [
    PagePlan("pages/home.py", "Home", ":material/home:", "What knowledge distillation is, and what this app shows.",
             True),
    PagePlan("pages/lecture.py", "Lecture tour", ":material/co_present:",
             "The lecture in 14 steps: present it, and the hall follows on their phones and answers.", True),
    PagePlan("pages/soft_labels.py", "Soft labels & temperature", ":material/thermostat:",
             "Edit logits, move the temperature, watch softmax, KL, T²·KL and the gradient change.", True),
    PagePlan("pages/image_explorer.py", "Image explorer", ":material/image_search:",
             "Real images, a trained teacher's and student's logits, and the teacher's dark knowledge.", True),
    PagePlan("pages/live_distillation.py", "Live distillation", ":material/play_circle:",
             "Run teacher → student in front of the class: hard-label vs KD student, live.", True),
    PagePlan("pages/why_it_works.py", "Why it works", ":material/lightbulb:",
             "Gradient variance, the missing-class experiment, student size.", True),
    PagePlan("pages/ensembles.py", "Ensembles", ":material/groups:", "Distil many teachers into one student.", True),
    PagePlan("pages/compression.py", "Compression & energy", ":material/bolt:",
             "Parameters, size, latency and the energy a smaller student saves.", True),
    PagePlan("pages/when_it_fails.py", "When it fails", ":material/report:",
             "Common KD mistakes, and three later papers (capacity gap, label smoothing, patient teacher) re-run.",
             True),
]


def require_router() -> None:
    """Make sure this page runs inside app.py's st.navigation router; every page calls this first.

    On a fresh server whose first request is a page's URL (a shared link), Streamlit finds the pages/ folder and
    runs that file alone in its legacy multipage mode: no router, no sidebar, no page config. Turning the legacy
    flag off and rerunning hands the request to app.py, which routes it to the same page.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        run_app()  # route this very script run (a rerun would drop the click that started it)
        st.stop()


def run_app() -> None:
    """app.py's body: page config, the router over every built page, the shared sidebar, then the page."""
    st.set_page_config(page_title="kdviz · knowledge distillation", page_icon="🎓", layout="wide")
    # made anew each run: a StreamlitPage carries per-run state (which page st.navigation let run), so pages shared
    # between sessions would race
    pages = [st.Page(plan.path, title=plan.title, icon=plan.icon, default=plan.path == "pages/home.py")
             for plan in PAGES if plan.built]
    page = st.navigation(pages)
    sidebar()
    owner_id()  # every page: this browser's identity cookie is set on its first page, an old ?owner= dropped
    page.run()


def lecture_mode() -> bool:
    """Whether the app-wide lecture mode (bigger fonts, thicker lines, collapsed explanations) is on."""
    return bool(st.session_state.get(LECTURE_MODE_KEY, False))


def sidebar() -> None:
    """The sidebar every page shares (drawn by app.py before the page runs)."""
    with st.sidebar:
        st.toggle("Lecture mode", key=LECTURE_MODE_KEY,
                  help="Bigger fonts and thicker chart lines for a projector; explanations collapse.")
        st.caption("kdviz · Hinton, Vinyals & Dean (2015), *Distilling the Knowledge in a Neural Network*, "
                   "[arXiv:1503.02531](https://arxiv.org/abs/1503.02531)")
    lecture_style()


TEACHER_RETRY_S = 10.0  # a teacher task that failed is started again this long after (pages poll it every second)


def _default_teacher_task():
    """Process-wide: the default teacher is trained once in the background, whichever browser asked first; after a
    failure it is tried again (kdviz.runs.tasks.task_for), never stuck on the first failure."""
    from kdviz.runs import tasks
    from kdviz.core import presets
    from kdviz.core.teachers import prepare_teacher, teacher_path

    teacher = presets.DEFAULT_TEACHER
    return tasks.task_for("default-teacher", lambda should_stop: prepare_teacher(teacher, "auto", should_stop),
                          retry_after=TEACHER_RETRY_S, makes=lambda: teacher_path(teacher))


def default_teacher_task():
    return _default_teacher_task()


@st.cache_resource(show_spinner=False)
def _run_manager():
    from kdviz.routes import serve_runs
    from kdviz.runs.remote import make_run_manager

    manager = make_run_manager()  # KDVIZ_RUN_SERVICE=ray: the hall's (kdviz.runs.remote)
    serve_runs(manager)  # the live-run route (kdviz.routes) answers from the same manager as the pages
    return manager


def run_manager():
    """The process-wide run manager: runs outlive page switches, slider moves and browser reloads. A bad server
    setting (KDVIZ_* or KDVIZ_HOME/server.toml) stops the page with the operator's message instead of a traceback."""
    try:
        return _run_manager()
    except ValueError as error:
        st.error(f"This server's settings cannot be used: {error}. Fix them and restart the server.",
                 icon=":material/settings_alert:")
        st.stop()


run_manager.clear = _run_manager.clear  # tests start a fresh manager on their own KDVIZ_HOME


@st.cache_resource(show_spinner=False)
def _access(folder: str):
    """Process-wide, per KDVIZ_HOME (folder): the identity ledger (identities minted per address, kept there and
    shared by a hall's replicas: kdviz.core.identity) and the trusted proxies, from the server's settings (read once,
    as the run manager's are)."""
    from pathlib import Path

    from kdviz.core.identity import IdentityLedger, parse_trusted_proxies
    from kdviz.core.settings import setting_values  # torch-free: the soft-labels page never imports torch

    values = {name: value for name, (value, _) in setting_values().items()}
    ledger = IdentityLedger(values["max_identities_per_address"], path=Path(folder) / "identity_mints.sqlite3")
    return ledger, parse_trusted_proxies(values["trusted_proxies"])


def access():
    """(ledger, trusted proxies); a bad server setting stops the page with the operator's message."""
    from kdviz.core.paths import home

    try:
        return _access(str(home()))
    except ValueError as error:
        st.error(f"This server's settings cannot be used: {error}. Fix them and restart the server.",
                 icon=":material/settings_alert:")
        st.stop()


access.clear = _access.clear  # tests set other limits


def _request_origin() -> tuple[str | None, str | None]:
    """(the connection's address, its X-Forwarded-For headers joined) of this session's request; (None, None) outside
    a script run. Streamlit gives None for a loopback connection."""
    try:
        peer = st.context.ip_address
        forwarded = ", ".join(st.context.headers.get_all("X-Forwarded-For"))
    except Exception:  # noqa: BLE001 — outside a script run (tests) there is no connection
        return None, None
    return peer, forwarded or None


def network_address() -> str | None:
    """The browser's network address (None for this machine): the connection's, or behind a trusted reverse proxy
    (the trusted_proxies setting) the client it names in X-Forwarded-For. Kept in memory only, never on disk."""
    from kdviz.core.identity import client_address as address_of

    peer, forwarded = _request_origin()
    return address_of(peer, forwarded, access()[1])


def client_address() -> str | None:
    """The address a run is submitted from, for the per-address caps: every submit passes it, so it is also the gate
    for a browser that was refused an identity (IdentityRefused, a ValueError: each submit shows its message)."""
    from kdviz.core.identity import IdentityRefused

    refusal = st.session_state.get("identity_refused")
    if refusal:
        raise IdentityRefused(refusal)
    return network_address()


IDENTITY_COOKIE = "kdviz_identity"
_IDENTITY_SCRIPT = """<style>.stElementContainer:has(.kdviz-identity) {{ display: none; }}</style>
<span class="kdviz-identity"></span>
<script>(function () {{
  var name = "{name}", present = document.cookie.split("; ").some(function (pair) {{
    return pair.indexOf(name + "=") === 0 && /^[0-9a-f]{{64}}$/.test(pair.slice(name.length + 1));
  }});
  if (!present) {{
    document.cookie = name + "={token}; path=/; max-age=31536000; SameSite=Strict"
                      + (location.protocol === "https:" ? "; Secure" : "");
  }}
  if (document.currentScript) document.currentScript.remove();
}})();</script>"""


def _logged_in_user() -> str | None:
    """The identity of a user the hall's identity provider logged in (st.login; .streamlit/secrets.toml [auth]),
    or None: without one configured (or logged in), the cookie is the identity."""
    from kdviz.core.identity import user_identity

    try:
        if not st.user.is_logged_in:
            return None
        return user_identity(st.user.get("iss"), st.user.get("sub"))
    except Exception:  # noqa: BLE001 — no [auth] configured, or outside a script run
        return None


def owner_id() -> str:
    """This browser's identity: a run is controlled (and listed) by the browser that started it; others only view it.

    The identity is a random secret signed by the server (kdviz.core.identity), kept in a cookie, kdviz_identity,
    never in the URL: a link is copied, bookmarked, projected and pasted into chats, and whoever opened a link that
    carried the identity would control (pause, stop, delete) the runs of whoever copied it. A link (?run=...) only
    ever shows a run. Where the hall has an identity provider and the user logged in (st.login), the identity is the
    provider's user instead, the same on every browser and device.

    The server reads the cookie with st.context.cookies (sent with the websocket handshake, so a reload sees it).
    Without a valid one the session is minted a new identity, keeps it in st.session_state["owner_id"] (within a
    session it wins over any cookie read later) and sets the cookie once, with a script in the page, so that a
    reload or a new tab of this browser keeps the same identity. A browser that refuses cookies gets an identity for
    this session only: after a reload its runs go on, but it can no longer control them or see them in its history.

    Minting is capped per network address (max_identities_per_address an hour), or private windows and cleared
    cookies would get round the per-browser caps and crowd the fair queue. A browser over the cap gets an identity
    for this session that starts no runs (client_address refuses, with the message kept here); it can still watch
    runs and follow a lecture. An ?owner= parameter from an older link is never trusted: it is dropped from the URL.
    """
    from kdviz.core.identity import is_identity

    if "owner" in st.query_params:
        del st.query_params["owner"]
    user = _logged_in_user()
    if user:
        st.session_state["owner_id"] = user
        return user
    token = st.session_state.get("owner_id")
    if not is_identity(token):
        cookie = st.context.cookies.get(IDENTITY_COOKIE)
        token = st.session_state["owner_id"] = cookie if is_identity(cookie) else _mint()
    if st.context.cookies.get(IDENTITY_COOKIE) != token and not st.session_state.get("owner_id_cookie_sent") \
            and not st.session_state.get("identity_refused"):
        st.session_state["owner_id_cookie_sent"] = True
        # a hidden element (its style hides its own container, so it leaves no gap); the script sets the cookie
        # unless another tab of this browser already did, then removes itself; the token is never shown
        st.html(_IDENTITY_SCRIPT.format(name=IDENTITY_COOKIE, token=token), unsafe_allow_javascript=True)
    return token


def _mint() -> str:
    """A new identity for this browser, or, over the address's cap, a session-only one that starts no runs."""
    from kdviz.core.identity import new_identity

    ledger, address = access()[0], network_address()
    token = ledger.mint(address)
    if token is not None:
        return token
    minutes = max(1, round(ledger.wait_s(address) / 60))
    st.session_state["identity_refused"] = (
        f"this network address was given {ledger.limit} new browser identities in the last hour (the server's "
        f"max_identities_per_address), so this browser cannot start runs: use the browser you used here before, or "
        f"try again in about {minutes} minute{'s' * (minutes != 1)}; you can still watch runs and follow the lecture")
    return new_identity()


LECTURE_CSS = """<style>
.stMainBlockContainer p, .stMainBlockContainer li, .stMainBlockContainer label p { font-size: 1.3rem; }
.stMainBlockContainer h1 { font-size: 3.2rem; }
.stMainBlockContainer [data-testid="stMetricValue"], .stMainBlockContainer [data-testid="stMetricValue"] p {
  font-size: 2.25rem; }
.stMainBlockContainer [data-testid="stMetricLabel"] p { font-size: 1.2rem; }
</style>"""


def lecture_style() -> None:
    """In lecture mode, enlarge the page's text for the back row (charts are enlarged by charts.style)."""
    if lecture_mode():
        st.html(LECTURE_CSS)


def app_url(page: str = "") -> str:
    """The absolute URL of one of the app's pages (its url path: "lecture", "live_distillation"; "" for home), as
    this browser reached the server: what a copied or projected link needs."""
    from urllib.parse import urlsplit

    parts = urlsplit(str(st.context.url or "http://localhost:8501/"))
    base = f"{parts.scheme}://{parts.netloc}" if parts.netloc else "http://localhost:8501"
    return f"{base}/{page}"


def seed(key: str, value) -> None:
    """Give a widget its value from our own state unless it already has one (never pass value= as well)."""
    if key not in st.session_state:
        st.session_state[key] = value


def url_state(key: str, parse_query):
    """(state, notices): a page's state, parsed from the URL once per session (parse_query(params) → (state, notices):
    a notice per value it changed) and kept under key; later runs get the kept state and no notices."""
    if key not in st.session_state:
        state, notices = parse_query(st.query_params.to_dict())
        st.session_state[key] = state
        return state, notices
    return st.session_state[key], []


def update_url_state(key: str, to_query, query_keys, **changes):
    """Replace fields of the state kept under key, keep it for the session and mirror it in the URL (to_query(state):
    the page's parameters; query_keys: all it may write)."""
    import dataclasses

    state = dataclasses.replace(st.session_state[key], **changes)
    st.session_state[key] = state
    sync_query_params(to_query(state), query_keys)
    return state


def sync_query_params(query: dict[str, str], keys) -> None:
    """Write the page's state into the URL, so that a lecturer can copy the link: every page writes its URL here.

    keys: the parameters this page owns. Those in query are set (only when changed), the others of keys removed;
    every other parameter (the owner id, the live page's run) is left as it is.
    """
    unknown = set(query) - set(keys)
    if unknown:
        raise ValueError(f"the page does not own the URL parameters {sorted(unknown)}")
    for key in keys:
        if key in query:
            if st.query_params.get(key) != query[key]:
                st.query_params[key] = query[key]
        elif key in st.query_params:
            del st.query_params[key]
