"""The soft-labels page's state (session + URL), its logits editor and the dataset-image source."""
from __future__ import annotations

import streamlit as st

from kdviz.ui import models
from kdviz.ui.core import seed, update_url_state, url_state

SOFT_LABELS_STATE = "soft_labels.state"
SOFT_LABELS_WIDGET = "sl.widget"  # the browser-side widget with the T and α sliders (kdviz.ui.components)


def soft_labels_state():
    """(state, notices): the page's state, parsed once per session from the URL (with a notice per bad value)."""
    from kdviz.views import soft_labels

    return url_state(SOFT_LABELS_STATE, soft_labels.parse_query)


def update_soft_labels_state(**changes):
    """Replace fields of the page's state, keep it for the session and mirror it in the URL."""
    from kdviz.views import soft_labels

    return update_url_state(SOFT_LABELS_STATE, soft_labels.to_query, soft_labels.QUERY_KEYS, **changes)


def apply_released_controls():
    """The page's state with the T and α the widget's sliders were released at, mirrored in the URL; read before the
    widget is drawn, so that this very run's payload, explanations and table show them."""
    from kdviz.ui.components import released_values

    state = st.session_state[SOFT_LABELS_STATE]
    temperature, alpha = released_values(SOFT_LABELS_WIDGET, state.temperature, state.alpha)
    return update_soft_labels_state(temperature=temperature, alpha=alpha)


def share_caption(state) -> str:
    """The line under a slide exported from the widget: the page, and the link that restores this view."""
    from urllib.parse import urlencode

    from kdviz.views import soft_labels

    url = str(st.context.url or "").split("?")[0]
    link = f"{url}?{urlencode(soft_labels.to_query(state), safe=',')}" if url else ""
    return " · ".join(part for part in ("kdviz · soft labels", link) if part)


def mistakes_panel(logits, state) -> None:
    """The common-mistakes switch: one mistake's loss beside the correct one, for these logits at the page's T and α
    (numpy, kdviz.core.kd.mistake_terms: the numbers the engine's loss gives these logits)."""
    from kdviz.core.kd import get_mistake
    from kdviz.views import soft_labels

    with st.container(border=True):
        seed("sl.mistake", state.mistake)
        mistake = st.selectbox("Common mistakes", list(soft_labels.MISTAKE_CHOICES), key="sl.mistake",
                               format_func=soft_labels.MISTAKE_CHOICES.get,
                               help="A KD loss written the wrong way, beside the correct one, at this T and α. "
                                    "The Live distillation page trains a student with it.")
        update_soft_labels_state(mistake=mistake)
        if mistake == "none":
            st.caption("Pick a mistake to see its numbers beside the correct loss's.")
            return
        st.markdown(f"**{get_mistake(mistake).label}.** {soft_labels.escape_markdown(get_mistake(mistake).sentence)}")
        view = soft_labels.mistake_view(logits, state.temperature, state.alpha, mistake)
        st.markdown(view.headline)
        st.markdown(soft_labels.mistake_table(logits, view))


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


def image_logits(student_model: str):
    """The default teacher's and one student's logits on every test image (None while the teacher is not cached), from
    the models the image explorer shows (kdviz.ui.models): the same teacher file, loaded once, and the same students.

    Raises NoRunYet when a trained student is asked for and no run of the default teacher has finished.
    """
    from kdviz.core.presets import DEFAULT_TEACHER
    from kdviz.views.image_logits import image_logits as build

    loaded = models.teacher(DEFAULT_TEACHER)
    if loaded is None:
        return None
    name = DEFAULT_TEACHER.dataset
    return build(models.dataset(name), models.test_pixels(name), loaded[1], models.students(name), student_model)


def image_example(state):
    """Pick a test image (thumbnail shown) and a student; returns (Logits, the student's role, its name), or None
    with a message while no teacher is cached."""
    from kdviz.core.presets import DEFAULT_TEACHER
    from kdviz.views import soft_labels
    from kdviz.views.image_logits import NoRunYet

    seed("sl.student_model", state.student_model)
    try:  # the selectbox's value: a student chosen in this very rerun is the one whose logits are shown
        data = image_logits(st.session_state["sl.student_model"])
    except NoRunYet as error:
        st.info(f"There is no trained student yet: {error}. Showing the untrained student.",
                icon=":material/info:")
        state = update_soft_labels_state(student_model="untrained")
        st.session_state["sl.student_model"] = "untrained"
        data = image_logits("untrained")
    if data is None:
        if st.session_state.get("sl.train_teacher"):
            models.teacher_progress(DEFAULT_TEACHER)
            return None
        st.info(f"The default teacher ({models.teacher_name(DEFAULT_TEACHER)}) is not trained yet (or its cache file "
                "cannot be used). It trains once, in the background, and is then cached; the home page starts it "
                "too.", icon=":material/hourglass_top:")
        if st.button("Train the default teacher now"):
            st.session_state["sl.train_teacher"] = True
            st.rerun()
        return None
    if state.image >= len(data):
        st.warning(f"There are only {len(data)} test images; showing image {len(data) - 1}.")
        state = update_soft_labels_state(image=len(data) - 1)
    seed("sl.image", state.image)
    picture, pickers = st.columns([1, 4], vertical_alignment="center")
    with pickers:
        index = st.number_input(f"Test image of {data.dataset} (0 to {len(data) - 1})", 0, len(data) - 1,
                                key="sl.image")
        student_model = st.selectbox("Student", list(soft_labels.STUDENT_MODELS), key="sl.student_model",
                                     format_func=soft_labels.STUDENT_MODELS.get,
                                     help="The trained students come from the latest finished run of the "
                                          "default teacher (Live distillation page), as on the image explorer.")
    example = data.example(index)
    with picture:
        st.image(data.thumbnail(index), caption=f"true class: {example.classes[example.label]}", width=140)
    update_soft_labels_state(image=int(index), student_model=student_model)
    return example, student_model, soft_labels.STUDENT_MODELS[student_model]
