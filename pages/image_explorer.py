"""Image explorer: test images (or yours) through the trained teacher and students; the teacher's dark knowledge."""
# pandas whole, first: plotly reads sys.modules["pandas"] without the import lock, so another script thread's first
# import of pandas could hand it a half-initialised module ("partially initialized module 'pandas'", seen once).
import pandas  # noqa: F401
import streamlit as st

from kdviz import ui
from kdviz.core.roles import ROLE_NAMES, STUDENT_ROLES
from kdviz.views import charts, explorer
from kdviz.views.query import TEMPERATURES

SECTIONS = {"gallery": ":material/photo_library: Gallery", "upload": ":material/upload: Your own image",
            "dark": ":material/grid_on: Dark knowledge"}

ui.require_router()
st.title(":material/image_search: Image explorer")
lecture = ui.lecture_mode()
st.markdown("Real test images through a **trained teacher** and its **students**. An untrained student says anything; "
            "the hard-label student learnt from one-hot labels; the KD student from the teacher's soft labels. Raise "
            "the **temperature T** to see what else the teacher knows: which classes look alike.")

datasets = explorer.explorable_datasets()
for notice in ui.explorer_state(datasets):
    st.warning(notice, icon=":material/link:")
top = st.columns([1.3, 3, 1.3], vertical_alignment="bottom", gap="large")
name = top[0].selectbox("Dataset", datasets, key="ie.dataset", on_change=ui.explorer_reset,
                        help="The offline datasets with a preset's teacher. Fashion-MNIST is one where Debian's "
                             "dataset-fashion-mnist is installed.")
temperature = top[1].select_slider("Temperature T", TEMPERATURES, key="ie.temperature", format_func="{:g}".format)
log_scale = top[2].toggle("Log scale", key="ie.log", help="Probabilities on a log scale: shows the tiny ones at T = 1.")

teacher = ui.explorer_teacher(name)
if teacher is None:
    st.stop()
teacher_model, teacher_logits = teacher
data, students = ui.dataset(name), ui.students(name)
labels, classes = data.test_y.numpy(), data.classes
image = ui.explorer_image(len(labels))
ui.explorer_sync_url(name, image, temperature)
if students.notice:
    st.warning(students.notice, icon=":material/warning:")
st.session_state.pop(ui.EXPLORER_PICKED, None)  # this run of the whole page already shows the pick
ui.seed("ie.section", "gallery")
section = st.segmented_control("Show", list(SECTIONS), format_func=SECTIONS.get, key="ie.section", required=True,
                               label_visibility="collapsed")


def prediction(label, logits: dict, key: str) -> None:
    """Teacher vs the chosen students at T on one image: softmax bars (full width) and the logits."""
    roles = [role for role in STUDENT_ROLES if role in logits]
    if st.session_state.get(f"ie.offered.{key}") != roles:  # new students (a run finished): show them all
        st.session_state[f"ie.offered.{key}"] = st.session_state[f"ie.roles.{key}"] = roles
    chosen = st.segmented_control("Compare the teacher with", roles, selection_mode="multi", key=f"ie.roles.{key}",
                                  format_func=ROLE_NAMES.get) or []
    ui.explorer_prediction(classes, label, logits["teacher"], {role: logits[role] for role in chosen},
                           temperature, log_scale, lecture, key)


@st.fragment
def thumbnails() -> None:
    """Filtering and ordering redraw only the gallery; picking an image redraws the page."""
    if st.session_state.pop(ui.EXPLORER_PICKED, False):
        st.rerun(scope="app")
    filters = st.columns(2)
    true_class = filters[0].selectbox("True class", [-1, *range(len(classes))], key="ie.class",
                                      format_func=lambda c: "all classes" if c < 0 else classes[c])
    order = filters[1].selectbox("Order", list(explorer.ORDERS), format_func=explorer.ORDERS.get, key="ie.order")
    shown = explorer.gallery(labels, teacher_logits, order, None if true_class < 0 else true_class)
    ui.explorer_gallery(name, shown, explorer.gallery_captions(shown, labels, teacher_logits, classes), image)


def gallery() -> None:
    left, right = st.columns([1, 1], gap="large")
    with left:
        thumbnails()
    logits = {"teacher": teacher_logits[image], **{role: z[image] for role, z in students.logits.items()}}
    with right:
        st.number_input("Image number in the test set", 0, len(labels) - 1, key="ie.image")
        ui.explorer_picked(name, image, teacher_logits[image], students)
        ui.explorer_summary(classes, int(labels[image]), logits, temperature)
    prediction(int(labels[image]), logits, "gallery")
    st.subheader("Watch the students converge")
    if students.run_id is None:
        ui.explorer_run_offer(name)
    else:
        ui.explorer_convergence(students, image, labels, teacher_logits[image], classes, temperature, lecture)


def upload(returning: bool) -> None:
    left, right = st.columns([1, 1], gap="large")
    with left:
        prepared = ui.explorer_upload(name, data.input_shape, returning)
        if prepared is None:
            return
        label = st.selectbox("What did you draw?", [-1, *range(len(classes))], key="ie.upload_label",
                             format_func=lambda c: "don't say" if c < 0 else classes[c],
                             help="Optional: shows the hard label next to the soft ones.")
    label = None if label < 0 else label
    logits = explorer.logits_of({"teacher": teacher_model, **students.models},
                                explorer.normalise(prepared.model_input, data))
    with right:
        ui.explorer_upload_preview(prepared, data.input_shape)
        ui.explorer_summary(classes, label, logits, temperature)
    prediction(label, logits, "upload")


def dark_knowledge() -> None:
    matrix = explorer.dark_knowledge(teacher_logits, labels, len(classes), temperature)
    left, right = st.columns([1.5, 1], gap="large")
    with right:
        show_diagonal = st.toggle("Show the diagonal (the true class)", key="ie.diagonal")
        pairs = ", ".join(f"**{classes[i]} ↔ {classes[j]}**" for i, j, _ in explorer.most_alike(matrix))
        st.markdown(f"At T = {temperature:g} the teacher gives on average **{explorer.off_diagonal_mass(matrix):.2%}** "
                    f"of its probability to wrong classes. The pairs it thinks most alike: {pairs}. Each row sums "
                    "to one; raise T and watch the structure appear.")
        cell = ui.explorer_cell_pickers(matrix, classes)
    with left:
        figure = charts.dark_knowledge_heatmap(matrix, classes, temperature, show_diagonal, cell, lecture)
        ui.explorer_heatmap(figure, classes)
    with right:
        shown, probabilities = explorer.cell_images(teacher_logits, labels, *cell, temperature)
        st.markdown(f"Test images of class **{classes[cell[0]]}** the teacher finds most like "
                    f"**{classes[cell[1]]}**, with its probability of {classes[cell[1]]} at T = {temperature:g}:")
        ui.explorer_gallery(name, shown, [f"{p:.0%}" if p >= 0.01 else f"{p:.1e}" for p in probabilities], image, 4)


returning = ui.explorer_enter(section)
if section == "upload":
    upload(returning)
else:
    {"gallery": gallery, "dark": dark_knowledge}[section]()
