"""Soft labels & temperature: logits → softmax at T, the KD loss terms and the gradient (Hinton et al. 2015, §2)."""
import numpy as np
import streamlit as st

from kdviz import ui
from kdviz.views import soft_labels as sl

HINTON = "[Hinton et al. 2015, §2](https://arxiv.org/abs/1503.02531)"

ui.require_router()
st.title(":material/thermostat: Soft labels & temperature")
st.markdown("A network's logits $z_i$ become probabilities through a softmax at temperature $T$. At $T = 1$ a "
            "confident teacher says little more than *dog*; at a higher $T$ its small probabilities, how much more a "
            "dog looks like a cat than like a ship, become visible. These **soft labels** are what the student learns "
            "from. Move $T$ and $\\alpha$ and watch.")

state, notices = ui.soft_labels_state()
for notice in notices:
    st.warning(sl.escape_markdown(notice), icon="🔗")

ui.seed("sl.source", state.source)
source = st.radio("Logits from", list(sl.SOURCES), format_func=sl.SOURCES.get, horizontal=True, key="sl.source")
state = ui.update_soft_labels_state(source=source)
student_role, student_name = "untrained", "student"
if source == "lecture":
    logits, student_name = sl.LECTURE, "untrained student"
    st.caption("Classes dog, cat, car, ship; the true class is dog. Teacher logits [5, −3, −5, −7]; an untrained "
               "student's [−1, 3, 2, −3].")
elif source == "custom":
    logits = ui.custom_logits_editor(state)
else:
    picked = ui.image_example(state)
    if picked is None:
        st.stop()
    logits, student_role, student_name = picked  # a trained student is drawn in its own role's colour
if source != "custom":
    st.session_state.pop("sl.table_rows", None)  # the table restarts from the state's logits when shown again


def explanations(logits: sl.Logits, view: sl.View, temperature: float, lecture: bool) -> None:
    """Why T > 1 and why T², in a few sentences each, with this example's numbers."""
    order = np.argsort(logits.teacher)[::-1]  # the teacher's ranking of the classes
    second, last = (sl.escape_markdown(logits.classes[i]) for i in (order[1], order[-1]))
    at_one = sl.explore(logits, 1.0, 0.5).teacher_probs[order[1]]
    negligible = ": too little to matter in a loss" if at_one < 0.01 else ""
    left, right = st.columns(2, gap="large")
    with left.expander("Why a temperature above 1 reveals which classes are alike", expanded=not lecture):
        st.markdown(f"Dividing the logits by $T$ shrinks the gaps between them, so the wrong classes' probabilities "
                    f"grow while their order stays. At $T = 1$ the teacher's second choice, **{second}**, gets "
                    f"{sl.format_probability(at_one)}{negligible}. At $T = {temperature:g}$ it gets "
                    f"{sl.format_probability(view.teacher_probs[order[1]])}, against "
                    f"{sl.format_probability(view.teacher_probs[order[-1]])} for **{last}**: which wrong answers are "
                    f"nearly right, the teacher's *dark knowledge*, now carries weight ({HINTON}).")
        st.latex(r"p_i = \frac{\exp(z_i/T)}{\sum_j \exp(z_j/T)}")
    with right.expander("Why the soft loss is multiplied by T²", expanded=not lecture):
        largest = float(np.abs(view.update).max())
        st.markdown(f"The gradient of the soft cross-entropy on a student logit is $(q_i - p_i)/T$ (eq. 2), and for "
                    f"large $T$ about $(z_i - v_i)/(N T^2)$: it shrinks like $1/T^2$. Multiplying the soft term by "
                    f"$T^2$ keeps its gradients the same size whatever $T$, so $\\alpha$ keeps the same balance "
                    f"between soft and hard targets when you try another temperature ({HINTON}). Here the largest soft "
                    f"gradient is {sl.format_value(largest / temperature**2)} without $T^2$ and "
                    f"{sl.format_value(largest)} with it.")
        st.latex(r"\frac{\partial C}{\partial z_i} = \frac{1}{T}\,(q_i - p_i) \approx \frac{1}{N T^2}\,(z_i - v_i)")


@st.fragment
def explorer(logits: sl.Logits, student_role: str, student_name: str, lecture: bool) -> None:
    """The widget (T and α sliders, charts and losses that follow them in the browser) and what the server adds on
    release: the URL, the explanations and the numbers. A release reruns only this fragment."""
    state = ui.apply_released_controls()
    ui.seed("sl.log", state.log_scale)
    log_scale = st.toggle("Log scale", key="sl.log", help="Bars on a log scale: the tiny probabilities that carry "
                          "the dark knowledge become visible.")
    state = ui.update_soft_labels_state(log_scale=log_scale)
    st.caption("Drag T and α: the charts follow in your browser; the link and the tables below update when you let "
               "go. Higher T softens both softmaxes (Hinton et al. used T = 20 on MNIST, 2.5 to 4 for a much smaller "
               "student). α weighs the soft loss; Keras's KD example uses it the other way round, for the hard term.")
    ui.soft_labels_widget(sl.widget_payload(logits, state.temperature, state.alpha, log_scale, student_role,
                                            student_name, lecture, caption=ui.share_caption(state)),
                          key=ui.SOFT_LABELS_WIDGET)
    view = sl.explore(logits, state.temperature, state.alpha)
    explanations(logits, view, state.temperature, lecture)
    with st.expander("The numbers", expanded=False):
        st.markdown(sl.numbers_table(logits, view, state.temperature, student_name))
    ui.mistakes_panel(logits, state)


explorer(logits, student_role, student_name, ui.lecture_mode())
