"""The image explorer: its URL, the gallery, uploads, the heatmap, waiting for a run (models: kdviz.ui.models)."""
from __future__ import annotations

import streamlit as st

from kdviz.ui import core, models
from kdviz.ui.core import owner_id, seed, sync_query_params
from kdviz.ui.models import dataset as explorer_dataset

EXPLORER_PARSED = "ie.parsed"
EXPLORER_PICKED = "ie.picked"
EXPLORER_KEPT = ("ie.image", "ie.class", "ie.order", "ie.diagonal", "ie.cell_true", "ie.cell_other", "ie.log",
                 "ie.roles.gallery", "ie.roles.upload", "ie.upload_label")


def explorer_state(datasets: list[str]) -> list[str]:
    """Seed the explorer's widgets from the URL once per session; return a notice per ignored URL value."""
    from kdviz.views import explorer

    for key in EXPLORER_KEPT:  # widgets of a hidden section would lose their value (Streamlit's widget clean-up)
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    if EXPLORER_PARSED in st.session_state:
        return []
    query, notices = explorer.parse_query(st.query_params.to_dict(), datasets)
    st.session_state[EXPLORER_PARSED] = True
    for key, value in (("ie.dataset", query.dataset), ("ie.image", query.image),
                       ("ie.temperature", query.temperature)):
        st.session_state.setdefault(key, value)
    return notices


def explorer_sync_url(dataset: str, image: int, temperature: float) -> None:
    """Mirror dataset, image and T in the URL (only this page's keys: the owner id and others stay)."""
    from kdviz.views import explorer

    sync_query_params(explorer.to_query(dataset, image, temperature), explorer.QUERY_KEYS)


def explorer_teacher(dataset: str):
    """The dataset's trained teacher and its test logits, or None after drawing the progress of its training."""
    from kdviz.views import explorer

    config = explorer.teacher_for(dataset)
    loaded = models.teacher(config)
    if loaded is None:
        models.teacher_progress(config)
    return loaded


@st.cache_resource(show_spinner=False)
def explorer_thumbnails(dataset: str, scale: int) -> list[bytes]:
    """Every test image as a small PNG (enlarged with crisp pixels), rendered once per dataset."""
    from kdviz.views import images

    return [images.to_png(pixels, scale) for pixels in models.test_pixels(dataset)]


def explorer_run_offer(dataset: str) -> None:
    """No finished run yet: offer to start the dataset's preset, then follow it until its students exist."""
    from kdviz.views import explorer
    from kdviz.core.presets import PRESETS

    preset = explorer.preset_for(dataset)
    key = f"ie.run.{dataset}"
    if st.session_state.get(key):
        _explorer_run_wait(st.session_state[key], key)
        return
    st.info(f"No finished distillation run of this teacher ({models.teacher_name(explorer.teacher_for(dataset))}) "
            "yet: the hard-label and KD students come from one, and are only shown beside the teacher they learnt "
            f"from. The {preset!r} preset ({PRESETS[preset][0]}) makes them.", icon=":material/school:")
    if st.button(f"Run the {preset!r} preset", icon=":material/play_arrow:", key="ie.run_preset"):
        try:
            st.session_state[key] = core.run_manager().submit(explorer.run_config_for(dataset), owner_id(),
                                                                address=core.client_address())
        except ValueError as error:
            st.error(str(error), icon=":material/warning:")
            return
        st.rerun()


@st.fragment(run_every=1.0)
def _explorer_run_wait(run_id: str, key: str) -> None:
    from kdviz.views import run_view

    run = core.run_manager().get(run_id)
    if run is None or run.state in ("cancelled", "diverged", "failed", "interrupted"):
        st.warning(f"Run {run_id} did not finish ({run.state if run else 'deleted'}"
                   f"{': ' + run.message if run and run.message else ''}).", icon=":material/warning:")
        if st.button("Try again", key="ie.run_retry"):
            st.session_state.pop(key, None)
            st.rerun()
        return
    if run.state == "completed" and core.run_manager().store.students_path(run_id).is_file():
        st.rerun()  # the whole page, now with the run's students
    elif run.state == "completed":
        st.warning(f"Run {run_id} finished but its students could not be saved.", icon=":material/warning:")
        return
    state = run_view.progress(run.events)
    phase = "training the teacher" if state["phase"] == "teacher" else "distilling"
    st.progress(state["fraction"], text=f"Run {run_id}: {run.state}, {phase}…")
    st.caption(f"[Watch it on the live distillation page](live_distillation?run={run_id}); this page fills in "
               "when it finishes.")


def explorer_reset() -> None:
    """Another dataset: start from its first image, all classes, and a fresh heatmap cell."""
    st.session_state["ie.image"] = 0
    for key in ("ie.class", "ie.cell_true", "ie.cell_other", "ie.upload_label"):
        st.session_state.pop(key, None)


def explorer_image(n_images: int) -> int:
    """The chosen test image, clamped to the test set (a link may name one that does not exist)."""
    from kdviz.views import explorer

    image, message = explorer.clamp_image(int(st.session_state.get("ie.image", 0)), n_images)
    if message:
        st.warning(message, icon=":material/link:")
    st.session_state["ie.image"] = image
    return image


def _explorer_pick(image: int) -> None:
    st.session_state["ie.image"] = image
    st.session_state["ie.section"] = "gallery"
    st.session_state[EXPLORER_PICKED] = True  # the gallery's fragment turns its own rerun into the page's


def _scale(side: int, pixels: int) -> int:
    """How many times to enlarge an image of `side` pixels so it is about `pixels` wide (crisp, no blur)."""
    return max(1, pixels // side)


def explorer_gallery(dataset: str, shown, captions: list[str], selected: int, columns: int = 5) -> None:
    """Thumbnails with a button each to pick the image; cached PNGs, so 60 of them draw in milliseconds."""
    if not len(shown):
        st.info("No test image matches: try another class or order.", icon=":material/filter_alt_off:")
        return
    side = explorer_dataset(dataset).input_shape[-1]
    thumbnails = explorer_thumbnails(dataset, _scale(side, 84))
    with st.container(height=520 if len(shown) > 3 * columns else "content", border=False):
        cells = st.columns(columns)
        for k, (index, caption) in enumerate(zip(shown, captions)):
            with cells[k % columns]:
                st.image(thumbnails[index], width="stretch")
                st.button(caption, key=f"ie.pick.{columns}.{index}", on_click=_explorer_pick, args=(int(index),),
                          type="primary" if index == selected else "secondary", width="stretch",
                          help=f"{caption} · test image #{index}")  # the whole caption when the button cuts it


def explorer_picked(dataset: str, image: int, teacher_logits, students) -> None:
    """The chosen image, large, with what the teacher says about it and where the students come from."""
    import dataclasses

    from kdviz.core import kd
    from kdviz.views import images
    from kdviz.views.run_view import describe_config

    data = explorer_dataset(dataset)
    pixels = data.to_pixels(data.test_x[image])
    label, probs = int(data.test_y[image]), kd.softmax(teacher_logits, 1.0)
    guess = int(probs.argmax())
    verdict = "right" if guess == label else "**wrong**"
    picture, facts = st.columns([1, 3], vertical_alignment="center")
    picture.image(images.to_png(pixels, _scale(pixels.shape[0], 168)), caption=f"test image #{image}")
    facts.markdown(f"True class **{data.classes[label]}**. At T = 1 the teacher says **{data.classes[guess]}** "
                   f"({probs[guess]:.1%}, {verdict}); its entropy is {float(kd.entropy(teacher_logits)):.3f} nats.")
    if students.run_id:
        facts.caption(f"Hard-label and KD students from run `{students.run_id}`: "
                      f"{describe_config(dataclasses.asdict(students.config))}. The untrained student has their "
                      "initial weights.")
    else:
        facts.caption("Only the untrained student so far: the hard-label and KD students come from a finished run "
                      "(below).")


def explorer_prediction(classes, label, teacher_logits, students: dict, temperature: float, log_scale: bool,
                        lecture: bool, key: str) -> None:
    """Softmax at T of the teacher and the chosen students (with one student, hard label vs teacher vs student, as
    the soft-labels page's widget draws them), then the logits."""
    import numpy as np

    from kdviz.core import kd
    from kdviz.views import charts
    from kdviz.views.soft_labels import format_probability

    teacher = kd.softmax(teacher_logits, temperature)
    probs = {role: kd.softmax(z, temperature) for role, z in students.items()}
    hard_label = None if label is None else np.eye(len(classes))[label]
    if len(probs) == 1 and label is not None:
        (role, student), = probs.items()
        texts = {"teacher": [format_probability(p) for p in teacher],
                 "student": [format_probability(p) for p in student]}
        figure = charts.soft_label_bars(classes, hard_label, teacher, student, temperature, texts, log_scale,
                                        student_role=role, lecture=lecture)
    else:
        figure = charts.model_softmax_bars(classes, hard_label, teacher, probs, temperature, log_scale, lecture=lecture,
                                           title=f"Teacher and students at T = {temperature:g}")
    st.plotly_chart(figure, key=f"ie.softmax.{key}")
    with st.expander("Logits: the numbers before the softmax, the same at every T", expanded=False):
        st.plotly_chart(charts.logit_bars(classes, {"teacher": teacher_logits, **students}, lecture=lecture),
                        key=f"ie.logits.{key}")


def explorer_summary(classes, label, logits: dict, temperature: float) -> None:
    """Every model's guess, probability of the true class and KL from the teacher at T."""
    from kdviz.core.roles import ROLE_NAMES
    from kdviz.views import explorer

    rows = explorer.summary_rows(tuple(classes), logits["teacher"],
                                 {role: z for role, z in logits.items() if role != "teacher"}, label, temperature,
                                 ROLE_NAMES)
    st.dataframe(rows, hide_index=True, column_config={
        "guess": st.column_config.TextColumn(help="The class with the highest probability (at this T)."),
        "p(true class)": st.column_config.NumberColumn(format="percent"),
        "KL from teacher": st.column_config.NumberColumn(format="%.4f", help="KL(teacher ‖ model) at this T, in "
                                                                              "nats: 0 means the same soft labels.")})


def explorer_convergence(students, image: int, labels, teacher_logits, classes, temperature: float,
                         lecture: bool) -> None:
    """The run's students on this image at every epoch, approaching the teacher (for the run's probe images)."""
    import numpy as np

    from kdviz.core import kd
    from kdviz.views import charts, explorer

    history = students.history
    if history is None:
        st.info(f"Run {students.run_id} recorded no per-epoch snapshots.", icon=":material/history:")
        return
    position = history.position(image)
    if position is None:
        label = int(labels[image])
        st.info(f"Every run records the students' logits at every epoch on {len(history.probe_indices)} probe "
                f"images (the first few of each class in the test set), not on image #{image}. "
                f"Jump to a probe image of class {classes[label]}:", icon=":material/history:")
        with st.container(horizontal=True):
            for index in explorer.nearest_probes(history, labels, label):
                st.button(f"#{index}", key=f"ie.jump.{index}", on_click=_explorer_pick, args=(index,),
                          icon=":material/arrow_forward:")
        return
    st.markdown("This is done over and over again with lots of images: here is one of them, epoch by epoch. Press "
                "**▶ play** or drag the slider: the KD student's softmax moves towards the teacher's.")
    probs = {role: kd.softmax(z[:, position], temperature) for role, z in history.logits.items()}
    left, right = st.columns([3, 2], gap="large")
    left.plotly_chart(charts.convergence_animation(classes, np.eye(len(classes))[labels[image]],
                                                   kd.softmax(teacher_logits, temperature), history.epochs, probs,
                                                   temperature, lecture=lecture), key="ie.convergence")
    right.plotly_chart(charts.kl_curves(history.epochs, explorer.kl_over_epochs(teacher_logits, history, position,
                                                                                temperature), temperature,
                                        lecture=lecture), key="ie.kl")


EXPLORER_LAST_UPLOAD = "ie.last_upload"
EXPLORER_SHOWN = "ie.shown"  # the section the latest script run started to draw


def explorer_enter(section: str) -> bool:
    """Record the section this script run draws; True when the previous run drew another one (a section switch)."""
    previous = st.session_state.get(EXPLORER_SHOWN)
    st.session_state[EXPLORER_SHOWN] = section
    return previous != section


def _explorer_upload_changed() -> None:
    # The user removed the file: forget it. Only when the uploader was on screen in the previous run: coming back from
    # another section the browser may mount an empty uploader (a change to None) that is no removal. Under load the
    # section switch's run can be interrupted before Streamlit drops the hidden uploader's state, so this happens.
    if st.session_state.get("ie.upload") is None and st.session_state.get(EXPLORER_SHOWN) == "upload":
        st.session_state.pop(EXPLORER_LAST_UPLOAD, None)


# What to upload: the digit sets crop, centre and (on a light background) invert the ink (kdviz.views.images); other
# sets are resized as they are, so their hint asks for a picture that already looks like the dataset's images.
UPLOAD_HINTS = {"fashion-mnist": ("a piece of clothing, a shoe or a bag",
                                  "Photograph a T-shirt, a shoe or a bag on a dark background, filling the frame: "
                                  "it is resized to 28×28 as it is (Fashion-MNIST's pictures are light on black).")}
DIGIT_HINT = ("a digit", "Draw a digit on paper or in any paint program and upload a photo or screenshot of it.")


def explorer_upload(dataset: str, input_shape, returning: bool = False):
    """The uploader, and the upload turned into the dataset's input; None after showing why not (one sentence).

    The last good upload (a small copy) is remembered for the session, so switching sections does not lose it.
    returning: this run switched to the upload section (explorer_enter); the uploader is then empty in the browser, or
    (when the switch's run was interrupted) still holds the same file: both show the last upload, said so.
    """
    from kdviz.views import images

    subject, hint = UPLOAD_HINTS.get(dataset, DIGIT_HINT)
    uploaded = st.file_uploader(f"Upload a picture of {subject}", type=images.EXTENSIONS, key="ie.upload",
                                on_change=_explorer_upload_changed,
                                help="PNG, JPEG, WebP, BMP or GIF (its first frame), up to 10 MB. It is read in "
                                     "memory, never saved.")
    last = st.session_state.get(EXPLORER_LAST_UPLOAD)
    last = last if last is not None and last[0] == dataset else None
    if uploaded is not None and not (returning and last is not None and last[2] == uploaded.file_id):
        try:
            prepared = images.prepare(uploaded.getvalue(), dataset, input_shape)
        except images.ImageRejected as error:
            st.session_state.pop(EXPLORER_LAST_UPLOAD, None)
            st.error(str(error), icon=":material/broken_image:")
            return None
        st.session_state[EXPLORER_LAST_UPLOAD] = (dataset, uploaded.name, uploaded.file_id, images.shrunk(prepared))
        return prepared
    if last is not None:
        st.caption(f"Showing your last upload, {last[1]}.")
        return last[3]
    st.caption(hint)
    return None


def explorer_upload_preview(prepared, input_shape) -> None:
    """The upload beside what the model sees."""
    from kdviz.views import images

    original, processed = st.container(border=True).columns(2, vertical_alignment="center")
    original.image(images.preview_png(prepared.original), caption="your image")
    side = input_shape[-1]
    note = ", inverted to light ink on black" if prepared.inverted else ""
    processed.image(images.to_png(images.input_to_pixels(prepared.model_input), _scale(side, 168)),
                    caption=f"what the model sees: {side}×{side}{note}")


def explorer_cell_pickers(matrix, classes) -> tuple[int, int]:
    """A heatmap cell chosen with two selectboxes (a click on the heatmap sets them too); starts at the most
    alike pair."""
    from kdviz.views import explorer

    pair = explorer.most_alike(matrix, 1)
    seed("ie.cell_true", pair[0][0] if pair else 0)
    seed("ie.cell_other", pair[0][1] if pair else 0)
    true_column, other_column = st.columns(2)
    options = list(range(len(classes)))
    true_class = true_column.selectbox("True class", options, format_func=classes.__getitem__, key="ie.cell_true")
    other = other_column.selectbox("Teacher's probability for", options, format_func=classes.__getitem__,
                                   key="ie.cell_other")
    return true_class, other


def _explorer_cell_clicked(classes) -> None:
    points = st.session_state["ie.heatmap"].selection.points
    if points and str(points[0].get("y")) in classes and str(points[0].get("x")) in classes:
        st.session_state["ie.cell_true"] = classes.index(str(points[0]["y"]))
        st.session_state["ie.cell_other"] = classes.index(str(points[0]["x"]))


def explorer_heatmap(figure, classes) -> None:
    import functools

    st.plotly_chart(figure, key="ie.heatmap", on_select=functools.partial(_explorer_cell_clicked, list(classes)),
                    selection_mode="points", config={"displayModeBar": False})
