"""The only kdviz module that imports streamlit: cached resources, shared widgets and state helpers."""
from __future__ import annotations

import streamlit as st

LECTURE_MODE_KEY = "lecture_mode"


class PagePlan:
    """A page of the app: where it lives, what it is called, what it shows, and whether it is built yet."""

    def __init__(self, path: str, title: str, icon: str, blurb: str, built: bool):
        self.path, self.title, self.icon, self.blurb, self.built = path, title, icon, blurb, built


PAGES = [
    PagePlan("pages/home.py", "Home", "🏠", "What knowledge distillation is, and what this app shows.", True),
    PagePlan("pages/soft_labels.py", "Soft labels & temperature", "🌡️",
             "Edit logits, move the temperature, watch softmax, KL, T²·KL and the gradient change.", False),
    PagePlan("pages/image_explorer.py", "Image explorer", "🖼️",
             "Real images, a trained teacher's and student's logits, and the teacher's dark knowledge.", False),
    PagePlan("pages/live_distillation.py", "Live distillation", "🏃",
             "Run teacher → student in front of the class: hard-label vs KD student, live.", False),
    PagePlan("pages/why_it_works.py", "Why it works", "💡",
             "Gradient variance, the missing-class experiment, student size.", False),
    PagePlan("pages/ensembles.py", "Ensembles", "👥", "Distil many teachers into one student.", False),
    PagePlan("pages/compression.py", "Compression & energy", "🔋",
             "Parameters, size, latency and the energy a smaller student saves.", False),
]


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


@st.cache_resource(show_spinner=False)
def _default_teacher_task():
    """Process-wide: the default teacher is trained once in the background, whichever browser asked first."""
    from kdviz import jobs
    from kdviz.presets import DEFAULT_TEACHER
    from kdviz.teachers import prepare_teacher

    return jobs.task_for("default-teacher", lambda should_stop: prepare_teacher(DEFAULT_TEACHER, "auto", should_stop))


def default_teacher_task():
    return _default_teacher_task()


@st.cache_resource(show_spinner=False)
def run_manager():
    """The process-wide run manager: runs outlive page switches, slider moves and browser reloads."""
    from kdviz.jobs import RunManager

    return RunManager()


def owner_id() -> str:
    """A per-browser-session id: a run is controlled by the session that started it, others may only view it."""
    import secrets

    if "owner_id" not in st.session_state:
        st.session_state["owner_id"] = secrets.token_hex(8)
    return st.session_state["owner_id"]
