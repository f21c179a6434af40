"""The app's frame: the page list and router, the shared sidebar and lecture mode, and process-wide resources."""
from __future__ import annotations

import streamlit as st

LECTURE_MODE_KEY = "lecture_mode"


class PagePlan:
    """A page of the app: where it lives, what it is called, what it shows, and whether it is built yet."""

    def __init__(self, path: str, title: str, icon: str, blurb: str, built: bool):
        self.path, self.title, self.icon, self.blurb, self.built = path, title, icon, blurb, built


PAGES = [
    PagePlan("pages/home.py", "Home", ":material/home:", "What knowledge distillation is, and what this app shows.", True),
    PagePlan("pages/soft_labels.py", "Soft labels & temperature", ":material/thermostat:",
             "Edit logits, move the temperature, watch softmax, KL, T²·KL and the gradient change.", True),
    PagePlan("pages/image_explorer.py", "Image explorer", ":material/image_search:",
             "Real images, a trained teacher's and student's logits, and the teacher's dark knowledge.", True),
    PagePlan("pages/live_distillation.py", "Live distillation", ":material/play_circle:",
             "Run teacher → student in front of the class: hard-label vs KD student, live.", True),
    PagePlan("pages/why_it_works.py", "Why it works", ":material/lightbulb:",
             "Gradient variance, the missing-class experiment, student size.", False),
    PagePlan("pages/ensembles.py", "Ensembles", ":material/groups:", "Distil many teachers into one student.", False),
    PagePlan("pages/compression.py", "Compression & energy", ":material/bolt:",
             "Parameters, size, latency and the energy a smaller student saves.", False),
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
    pages = [st.Page(plan.path, title=plan.title, icon=plan.icon, default=plan.path == "pages/home.py")
             for plan in PAGES if plan.built]
    page = st.navigation(pages)
    sidebar()
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


@st.cache_resource(show_spinner=False)
def _default_teacher_task():
    """Process-wide: the default teacher is trained once in the background, whichever browser asked first."""
    from kdviz.runs import tasks
    from kdviz.core.presets import DEFAULT_TEACHER
    from kdviz.core.teachers import prepare_teacher

    return tasks.task_for("default-teacher", lambda should_stop: prepare_teacher(DEFAULT_TEACHER, "auto", should_stop))


def default_teacher_task():
    return _default_teacher_task()


@st.cache_resource(show_spinner=False)
def run_manager():
    """The process-wide run manager: runs outlive page switches, slider moves and browser reloads."""
    from kdviz.runs.manager import RunManager

    return RunManager()


def owner_id() -> str:
    """A per-browser id: a run is controlled (and listed) by the browser that started it; others may only view it.

    It lives in the session and in the URL (?owner=), so a reload or a bookmark keeps the user's runs and controls.
    """
    import secrets

    if "owner_id" not in st.session_state:
        given = str(st.query_params.get("owner", ""))
        valid = len(given) == 16 and all(c in "0123456789abcdef" for c in given)
        st.session_state["owner_id"] = given if valid else secrets.token_hex(8)
    if st.query_params.get("owner") != st.session_state["owner_id"]:
        st.query_params["owner"] = st.session_state["owner_id"]
    return st.session_state["owner_id"]


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


def seed(key: str, value) -> None:
    """Give a widget its value from our own state unless it already has one (never pass value= as well)."""
    if key not in st.session_state:
        st.session_state[key] = value


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
