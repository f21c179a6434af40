"""Soft labels & temperature: logits → softmax at T, the KD loss terms and the gradient (Hinton et al. 2015, §2)."""
import numpy as np
import streamlit as st

from kdviz import ui
from kdviz.views import charts, soft_labels as sl

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


def loss_panel(view: sl.View, temperature: float, alpha: float) -> None:
    """The loss terms at this T, and how they combine (nats)."""
    losses, fmt = view.losses, sl.format_value
    metrics = [("hard CE", losses["hard_cross_entropy"], "Cross-entropy of the student's softmax at T = 1 "
                "with the one-hot label: the hard term."),
               ("KL at T", losses["kl"], "KL(teacher ‖ student) between the softmaxes at T."),
               ("T²·KL", losses["t2_kl"], "The soft term of the KD loss (Hinton et al. 2015, §2)."),
               ("soft CE at T", losses["soft_cross_entropy"], "Soft cross-entropy −Σ p_i log q_i at T = KL + the "
                "teacher's entropy."),
               ("total", losses["total"], "α · T²·KL + (1 − α) · CE.")]
    for column, (label, value, help_text) in zip(st.columns(len(metrics)), metrics):
        column.metric(label, sl.format_metric(value), help=f"{help_text} In nats: {fmt(value)}.", border=True)
    st.markdown(f"Soft cross-entropy − KL = {fmt(losses['soft_cross_entropy'] - losses['kl'])} nats: exactly the "
                f"teacher's entropy at T = {temperature:g}. It does not depend on the student, so both losses have "
                "the same gradient, but only KL is 0 when the student matches the teacher.")
    st.latex(rf"\mathcal{{L}} = \alpha\,T^2\,\mathrm{{KL}} + (1-\alpha)\,\mathrm{{CE}} = {alpha:g} \times "
             rf"{fmt(losses['t2_kl'])} + {1 - alpha:.2g} \times {fmt(losses['hard_cross_entropy'])} = "
             rf"{fmt(losses['total'])}")


def explanations(logits: sl.Logits, view: sl.View, temperature: float, lecture: bool) -> None:
    """Why T > 1 and why T², in a few sentences each, with this example's numbers."""
    order = np.argsort(logits.teacher)[::-1]  # the teacher's ranking of the classes
    second, last = (sl.escape_markdown(logits.classes[i]) for i in (order[1], order[-1]))
    at_one = sl.explore(logits, 1.0, 0.5).teacher_probs[order[1]]
    negligible = ": too little to matter in a loss" if at_one < 0.01 else ""
    with st.expander("Why a temperature above 1 reveals which classes are alike", expanded=not lecture):
        st.markdown(f"Dividing the logits by $T$ shrinks the gaps between them, so the wrong classes' probabilities "
                    f"grow while their order stays. At $T = 1$ the teacher's second choice, **{second}**, gets "
                    f"{sl.format_probability(at_one)}{negligible}. At $T = {temperature:g}$ it gets "
                    f"{sl.format_probability(view.teacher_probs[order[1]])}, against "
                    f"{sl.format_probability(view.teacher_probs[order[-1]])} for **{last}**: which wrong answers are "
                    f"nearly right, the teacher's *dark knowledge*, now carries weight ({HINTON}).")
        st.latex(r"p_i = \frac{\exp(z_i/T)}{\sum_j \exp(z_j/T)}")
    with st.expander("Why the soft loss is multiplied by T²", expanded=not lecture):
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
    """Temperature, alpha and everything that depends on them: a slider move reruns only this."""
    state = ui.soft_labels_state()[0]
    for key, value in (("sl.temperature", state.temperature), ("sl.alpha", state.alpha), ("sl.log", state.log_scale)):
        ui.seed(key, value)
    controls = st.columns([4, 3, 2], vertical_alignment="bottom", gap="large")
    temperature = controls[0].select_slider(
        "Temperature T (log scale; T = 1 is the ordinary softmax)", sl.TEMPERATURES, key="sl.temperature",
        format_func=lambda t: f"{t:g}",
        help="Higher T softens both softmaxes. Hinton et al. used T = 20 on MNIST, and 2.5 to 4 for a much smaller "
             "student.")
    alpha = controls[1].slider("α, the weight of the soft loss", 0.0, 1.0, step=0.01, key="sl.alpha",
                               help="Total loss = α·T²·KL + (1 − α)·CE. Keras's KD example uses α the other "
                                    "way round, for the hard term.")
    log_scale = controls[2].toggle("Log scale", key="sl.log", help="Bars on a log scale: the tiny probabilities "
                                   "that carry the dark knowledge become visible.")
    alpha = round(alpha, 2)  # a browser's slider can send 0.29000000000000004
    ui.update_soft_labels_state(temperature=temperature, alpha=alpha, log_scale=log_scale)

    view, curves = sl.explore(logits, temperature, alpha), sl.curves(logits.teacher, logits.student)
    texts = {"teacher": [sl.format_probability(p) for p in view.teacher_probs],
             "student": [sl.format_probability(q) for q in view.student_probs]}
    st.plotly_chart(charts.soft_label_bars(logits.classes, view.hard_label, view.teacher_probs, view.student_probs,
                                           temperature, texts, log_scale, student_role, student_name, lecture),
                    width="stretch", key="sl.bars")
    left, right = st.columns(2, gap="large")
    left.plotly_chart(charts.temperature_curves(curves.temperatures, curves.teacher_probs, logits.classes,
                                                logits.label, temperature, lecture), width="stretch", key="sl.curves")
    right.plotly_chart(charts.entropy_curves(curves.temperatures, curves.teacher_entropy, curves.student_entropy,
                                             len(logits.classes), temperature, student_role, student_name, lecture),
                       width="stretch", key="sl.entropy")
    loss_panel(view, temperature, alpha)
    left, right = st.columns(2, gap="large")
    left.plotly_chart(charts.gradient_bars(logits.classes, view.update, [sl.format_value(g) for g in view.update],
                                           temperature, lecture), width="stretch", key="sl.gradient")
    with right:
        explanations(logits, view, temperature, lecture)
    with st.expander("The numbers", expanded=False):
        st.markdown(sl.numbers_table(logits, view, temperature, student_name))


explorer(logits, student_role, student_name, ui.lecture_mode())
