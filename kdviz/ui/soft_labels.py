"""The soft-labels page's state (session + URL), its logits editor and the dataset-image source."""
from __future__ import annotations

import streamlit as st

from kdviz.ui.core import default_teacher_task, seed, sync_query_params

SOFT_LABELS_STATE = "soft_labels.state"
def soft_labels_state():
    """(state, notices): the page's state, parsed once per session from the URL (with a notice per bad value)."""
    from kdviz.views import soft_labels

    if SOFT_LABELS_STATE not in st.session_state:
        state, notices = soft_labels.parse_query(st.query_params.to_dict())
        st.session_state[SOFT_LABELS_STATE] = state
        return state, notices
    return st.session_state[SOFT_LABELS_STATE], []


def update_soft_labels_state(**changes):
    """Replace fields of the page's state, keep it for the session and mirror it in the URL."""
    import dataclasses

    from kdviz.views import soft_labels

    state = dataclasses.replace(st.session_state[SOFT_LABELS_STATE], **changes)
    st.session_state[SOFT_LABELS_STATE] = state
    sync_query_params(soft_labels.to_query(state))
    return state


def custom_logits_editor(state):
    """The editable logits table and the true class; returns the last valid Logits, with an error next to the table."""
    import dataclasses

    from kdviz.views import soft_labels

    if "sl.table_rows" not in st.session_state:  # the editor's base rows: fixed while the user edits them
        st.session_state["sl.table_rows"] = soft_labels.table_rows(state.custom)
        st.session_state["sl.table_version"] = st.session_state.get("sl.table_version", 0) + 1
    text = st.column_config.TextColumn
    rows = st.data_editor(
        st.session_state["sl.table_rows"], num_rows="dynamic", hide_index=True, width="stretch",
        key=f"sl.table.{st.session_state['sl.table_version']}",
        column_config={"class": text("class", help="A unique name without commas", max_chars=24),
                       "teacher logit": text("teacher logit", help="A number between -1e6 and 1e6, e.g. -3.5"),
                       "student logit": text("student logit", help="A number between -1e6 and 1e6, e.g. 2")})
    label_name = state.custom.classes[state.custom.label]
    try:
        logits = soft_labels.logits_from_rows(rows, label_name)
    except ValueError as error:
        st.error(soft_labels.escape_markdown(f"These logits cannot be used: {error}. The charts show the last valid "
                                             "logits."), icon="⚠️")
        logits = state.custom
    if st.session_state.get("sl.label") not in logits.classes:
        st.session_state["sl.label"] = logits.classes[logits.label]
    label = st.selectbox("True class (the hard label)", logits.classes, key="sl.label")
    logits = dataclasses.replace(logits, label=logits.classes.index(label))
    if st.button("Start again from the lecture example", icon=":material/undo:"):
        st.session_state.pop("sl.table_rows")
        st.session_state.pop("sl.label", None)
        update_soft_labels_state(custom=soft_labels.LECTURE)
        st.rerun()
    update_soft_labels_state(custom=logits)
    return logits


@st.cache_resource(show_spinner="Computing the teacher's and the student's logits on the test images…", max_entries=8)
def _image_logits(student_model: str, run_id: str | None):
    from kdviz.views.image_logits import load_image_logits

    return load_image_logits(student_model, run_id)


def image_logits(student_model: str):
    """Process-wide: the logits of every test image, computed once per student and run (torch is imported here)."""
    from kdviz.views.image_logits import latest_run

    return _image_logits(student_model, None if student_model == "untrained" else latest_run())


def image_example(state):
    """Pick a test image (thumbnail shown) and a student; returns (Logits, the student's name), or (None, None) with a
    message while no teacher is cached."""
    from kdviz.views import soft_labels
    from kdviz.views.image_logits import NoRunYet, teacher_ready
    from kdviz.core.teachers import CacheError

    if not teacher_ready():
        st.info("The default teacher (MLP 784-1200-1200-10 on mnist5k) is not trained yet. It trains once, in the "
                "background, and is then cached; the home page starts it too.", icon=":material/hourglass_top:")
        if st.session_state.get("sl.train_teacher") or st.button("Train the default teacher now"):
            st.session_state["sl.train_teacher"] = True
            _teacher_progress()
        return None, None
    try:
        data = image_logits(state.student_model)
    except NoRunYet as error:
        st.info(f"There is no trained student yet: {error}. Showing the untrained student.",
                icon=":material/info:")
        state = update_soft_labels_state(student_model="untrained")
        st.session_state["sl.student_model"] = "untrained"
        data = image_logits("untrained")
    except (CacheError, OSError, ValueError) as error:
        st.error(f"The cached teacher could not be used ({error}). Delete it from KDVIZ_HOME/teachers, or run "
                 "`python -m kdviz prepare` to train it again.")
        return None, None
    if state.image >= len(data):
        st.warning(f"There are only {len(data)} test images; showing image {len(data) - 1}.")
        state = update_soft_labels_state(image=len(data) - 1)
    seed("sl.image", state.image)
    seed("sl.student_model", state.student_model)
    picture, pickers = st.columns([1, 4], vertical_alignment="center")
    with pickers:
        index = st.number_input(f"Test image of {data.dataset} (0 to {len(data) - 1})", 0, len(data) - 1,
                                key="sl.image")
        student_model = st.selectbox("Student", list(soft_labels.STUDENT_MODELS), key="sl.student_model",
                                     format_func=soft_labels.STUDENT_MODELS.get,
                                     help="The trained students come from the latest finished run of the "
                                          "default teacher (Live distillation page).")
    example = data.example(index)
    with picture:
        st.image(data.thumbnail(index), caption=f"true class: {example.classes[example.label]}", width=140)
    update_soft_labels_state(image=int(index), student_model=student_model)
    return example, soft_labels.STUDENT_MODELS[student_model]


@st.fragment(run_every=1.0)
def _teacher_progress() -> None:
    task = default_teacher_task()
    if task.state == "completed":
        st.rerun(scope="app")
    elif task.done:
        st.error(f"The default teacher could not be trained ({task.error or task.state}). Run "
                 "`python -m kdviz prepare` in a terminal to see why.")
    else:
        st.progress(task.progress(), text="Training the default teacher (once; then it is cached)…")
