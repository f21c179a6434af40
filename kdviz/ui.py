"""The only kdviz module that imports streamlit: cached resources, shared widgets and state helpers."""
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
    from kdviz import jobs
    from kdviz.presets import DEFAULT_TEACHER
    from kdviz.teachers import prepare_teacher

    return jobs.task_for("default-teacher", lambda should_stop: prepare_teacher(DEFAULT_TEACHER, "auto", should_stop))


def default_teacher_name() -> str:
    """E.g. "MLP 784-1200-1200-10 on mnist5k", read from the default teacher's config."""
    from kdviz.data import load_dataset
    from kdviz.presets import DEFAULT_TEACHER

    dataset = load_dataset(DEFAULT_TEACHER.dataset)
    return f"{DEFAULT_TEACHER.model.describe(dataset.input_shape, dataset.num_classes)} on {DEFAULT_TEACHER.dataset}"


def default_teacher_task():
    return _default_teacher_task()


@st.cache_resource(show_spinner=False)
def run_manager():
    """The process-wide run manager: runs outlive page switches, slider moves and browser reloads."""
    from kdviz.jobs import RunManager

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


# ---- the soft-labels page: its state (session + URL), its inputs, the dataset-image source ------------------------
SOFT_LABELS_STATE = "soft_labels.state"
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


def sync_query_params(query: dict[str, str]) -> None:
    """Write the page's state into the URL, so that a lecturer can copy the link; only when it changed."""
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)


def soft_labels_state():
    """(state, notices): the page's state, parsed once per session from the URL (with a notice per bad value)."""
    from kdviz import soft_labels

    if SOFT_LABELS_STATE not in st.session_state:
        state, notices = soft_labels.parse_query(st.query_params.to_dict())
        st.session_state[SOFT_LABELS_STATE] = state
        return state, notices
    return st.session_state[SOFT_LABELS_STATE], []


def update_soft_labels_state(**changes):
    """Replace fields of the page's state, keep it for the session and mirror it in the URL."""
    import dataclasses

    from kdviz import soft_labels

    state = dataclasses.replace(st.session_state[SOFT_LABELS_STATE], **changes)
    st.session_state[SOFT_LABELS_STATE] = state
    sync_query_params(soft_labels.to_query(state))
    return state


def custom_logits_editor(state):
    """The editable logits table and the true class; returns the last valid Logits, with an error next to the table."""
    import dataclasses

    from kdviz import soft_labels

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


@st.cache_resource(show_spinner="Computing the teacher's and the student's logits on the test images…")
def image_logits(student_model: str):
    """Process-wide: the logits of every test image, computed once (torch is imported here, not before)."""
    from kdviz.image_logits import load_image_logits

    return load_image_logits(student_model)


def image_example(state):
    """Pick a test image (thumbnail shown); returns its Logits, or None (with a message) while no teacher is cached."""
    from kdviz import soft_labels
    from kdviz.image_logits import teacher_ready
    from kdviz.teachers import CacheError

    if not teacher_ready():
        st.info("The default teacher (MLP 784-1200-1200-10 on mnist5k) is not trained yet. It trains once, in the "
                "background, and is then cached; the home page starts it too.", icon=":material/hourglass_top:")
        if st.session_state.get("sl.train_teacher") or st.button("Train the default teacher now"):
            st.session_state["sl.train_teacher"] = True
            _teacher_progress()
        return None
    try:
        data = image_logits(state.student_model)
    except (CacheError, OSError, ValueError) as error:
        st.error(f"The cached teacher could not be used ({error}). Delete it from KDVIZ_HOME/teachers, or run "
                 "`python -m kdviz prepare` to train it again.")
        return None
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
                                     help="Trained hard-label and KD students arrive with the run history.")
    example = data.example(index)
    with picture:
        st.image(data.thumbnail(index), caption=f"true class: {example.classes[example.label]}", width=140)
    update_soft_labels_state(image=int(index), student_model=student_model)
    return example


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


# ---- live distillation: the run form, the live panel, history actions, sweeps -------------------------------------

def describe_config(config: dict) -> str:
    """A short human description of a saved run config."""
    student = config.get("student", {})
    subset = config.get("train_subset") or "all"
    return (f"{config.get('teacher', {}).get('dataset', '?')}, student {student.get('arch')} "
            f"{student.get('width')}×{student.get('depth')}, T={config.get('temperature')}, "
            f"α={config.get('alpha')}, {config.get('epochs')} epochs, {subset} images, seed {config.get('seed')}")


def distill_config_form(preset: str):
    """Widgets for every engine option, prefilled from the preset; returns (DistillConfig or None, problem)."""
    import dataclasses

    from kdviz.data import list_datasets
    from kdviz.engine import available_devices, check_config
    from kdviz.models import ModelSpec, list_models
    from kdviz.presets import get_preset

    base = get_preset(preset)
    key = lambda name: f"{preset}:{name}"  # noqa: E731 — a new preset starts from its own defaults
    archs = [info.name for info in list_models()]
    datasets = {info.name: info for info in list_datasets()}
    with st.expander("Configuration", expanded=not st.query_params.get("run")):
        left, middle, right = st.columns(3)
        with left:
            st.markdown("**Data & teacher**")
            dataset = st.selectbox("Dataset", list(datasets), index=list(datasets).index(base.dataset),
                                   format_func=lambda n: n + ("" if datasets[n].offline else " (download)"),
                                   key=key("dataset"), help="Download datasets need a network the first time.")
            teacher_arch = st.selectbox("Teacher", archs, index=archs.index(base.teacher.model.arch),
                                        key=key("teacher_arch"))
            teacher_width = st.number_input("Teacher width", 1, 8192, base.teacher.model.width, key=key("t_width"))
            teacher_depth = st.number_input("Teacher depth", 1, 16, base.teacher.model.depth, key=key("t_depth"))
            st.caption("A teacher is trained once on first use (progress shown), then cached.")
        with middle:
            st.markdown("**Student & distillation**")
            student_arch = st.selectbox("Student", archs, index=archs.index(base.student.arch), key=key("s_arch"))
            student_width = st.number_input("Student width", 1, 8192, base.student.width, key=key("s_width"))
            student_depth = st.number_input("Student depth", 1, 16, base.student.depth, key=key("s_depth"))
            temperature = st.number_input("Temperature T", 0.01, 1000.0, float(base.temperature), key=key("T"))
            alpha = st.slider("α: weight of the soft term", 0.0, 1.0, float(base.alpha), 0.05, key=key("alpha"),
                              help="kdviz weighs the soft (KD) term by α and the hard term by 1 − α. "
                                   "Keras's KD example uses the opposite convention.")
        with right:
            st.markdown("**Training**")
            epochs = st.number_input("Epochs", 1, 500, base.epochs, key=key("epochs"))
            batch_size = st.number_input("Batch size", 1, 4096, base.batch_size, key=key("batch"))
            learning_rate = st.number_input("Learning rate (Adam)", 1e-6, 10.0, base.learning_rate,
                                            format="%.5f", key=key("lr"))
            subset = st.number_input("Training images (0 = all)", 0, 100_000, base.train_subset, key=key("subset"))
            augment = st.number_input("Jitter augmentation (pixels)", 0, 8, base.augment, key=key("augment"))
            seed = st.number_input("Seed", 0, 2**31 - 1, base.seed, key=key("seed"))
            devices = ["auto"] + available_devices()
            device = st.selectbox("Device", devices, key=key("device"))
            missing = [d for d in ("cuda", "mps") if d not in devices]
            if missing:
                st.caption(f"Not available here: {', '.join(missing)} (PyTorch sees no such device).")
    teacher = dataclasses.replace(base.teacher, dataset=dataset, model=ModelSpec(
        teacher_arch, int(teacher_width), int(teacher_depth), base.teacher.model.dropout))
    config = dataclasses.replace(
        base, teacher=teacher, student=ModelSpec(student_arch, int(student_width), int(student_depth)),
        temperature=float(temperature), alpha=float(alpha), epochs=int(epochs), batch_size=int(batch_size),
        learning_rate=float(learning_rate), train_subset=int(subset), augment=int(augment), seed=int(seed),
        device=device)
    try:
        return check_config(config), None
    except ValueError as error:
        return None, f"This configuration cannot run: {error}."


@st.cache_data(show_spinner=False)
def lecture_case_table():
    from kdviz import runview

    return runview.lecture_rows()


def run_panel(run_id: str) -> None:
    """The chosen run: live (redrawn twice a second) while it is queued or running, static once it ended."""
    run = run_manager().get(run_id)
    if run is None:
        st.warning(f"There is no run {run_id!r} on this server (it may have been deleted).", icon=":material/search_off:")
        return
    if run.live:
        _live_run(run_id)
    else:
        _draw_run(run)


@st.fragment(run_every=0.5)
def _live_run(run_id: str) -> None:
    run = run_manager().get(run_id)
    if run is None or not run.live:
        st.rerun()  # the run ended (or vanished): redraw the page once, statically
    _draw_run(run)


def _draw_run(run) -> None:
    from kdviz import run_charts, runview

    manager, lecture = run_manager(), lecture_mode()
    state = runview.progress(run.events)
    mine = run.owner == owner_id()
    badge = {"queued": ":material/hourglass_top:", "running": ":material/directions_run:",
             "paused": ":material/pause_circle:", "completed": ":material/check_circle:",
             "cancelled": ":material/stop_circle:", "diverged": ":material/error:", "failed": ":material/error:",
             "interrupted": ":material/power_off:"}.get(run.state, "")
    st.subheader(f"{badge} Run {run.id}: {run.state}")
    st.caption(describe_config(run.config) + ("" if mine else " · viewing a shared run (read-only)"))
    if mine:
        share = f"{str(st.context.url or '').split('?')[0]}?run={run.id}"
        st.caption(f"Read-only link to share this run: `{share}`")
    if run.state == "queued":
        st.info(f"Waiting in the queue: position {manager.queue_position(run.id) or '–'}. "
                "Runs on this server go one at a time so that nobody's freezes.", icon=":material/hourglass_top:")
    elif run.live:
        import time

        elapsed = time.time() - run.started_at if run.started_at else 0.0
        eta = f", about {state['eta']:.0f} s left" if state["eta"] is not None else ""
        phase = "training the teacher (once; then cached)" if state["phase"] == "teacher" else "distilling"
        st.progress(state["fraction"], text=f"{phase}: step {state['step']} of {state['total']} on "
                                            f"{state['device']}, {elapsed:.0f} s elapsed{eta}")
    elif run.started_at and run.finished_at:
        st.caption(f"Ran for {run.finished_at - run.started_at:.1f} s on {state['device'] or 'the CPU'}.")
    for notice in (e["message"] for e in run.events if e["event"] == "Notice"):
        st.warning(notice, icon=":material/info:")
    if run.message:
        (st.error if run.state in ("diverged", "failed") else st.info)(run.message)
    if mine:
        _run_controls(run)
    losses, accuracies = runview.loss_frame(run.events), runview.accuracy_frame(run.events)
    if len(accuracies):
        left, right = st.columns(2)
        left.plotly_chart(run_charts.loss_chart(losses, lecture), key=f"loss-{run.id}")
        right.plotly_chart(run_charts.accuracy_chart(accuracies, lecture), key=f"accuracy-{run.id}")
    if run.summary and "hard" in run.summary:
        _case_study(run)


def _run_controls(run) -> None:
    manager = run_manager()
    pause, stop, reset = st.columns([1, 1, 1])
    reset.button(":material/restart_alt: Reset view", key=f"reset-{run.id}", on_click=_detach, args=(run.id,),
                 help="Close this run's panel to configure a new one; the run itself stays in the history.")
    if not run.live:
        return
    if run.state == "paused":
        pause.button(":material/play_arrow: Resume", key=f"resume-{run.id}", on_click=manager.resume_run,
                     args=(run.id,))
    elif run.state == "running":
        pause.button(":material/pause: Pause", key=f"pause-{run.id}", on_click=manager.pause, args=(run.id,))
    stop.button(":material/stop: Stop (keeps what was measured)", key=f"stop-{run.id}", on_click=manager.cancel,
                args=(run.id,))


def _detach(run_id: str) -> None:
    st.session_state.pop("current_run", None)
    if st.query_params.get("run") == run_id:
        del st.query_params["run"]


def _case_study(run) -> None:
    from kdviz import runview
    from kdviz.data import load_dataset
    from kdviz.engine import config_from_dict

    config = config_from_dict(run.config)
    try:
        dataset = load_dataset(config.dataset)
        names = [spec.describe(dataset.input_shape, dataset.num_classes)
                 for spec in (config.student, config.teacher.model)]
    except ValueError:
        names = [config.student.describe(), config.teacher.model.describe()]
    won, sentence = runview.verdict(run.summary)
    if run.state != "completed":
        epoch = max((e["epoch"] for e in run.events if e["event"] == "EpochEnd"), default=0)
        sentence = f"When the run was {run.state} (after epoch {epoch}): {sentence[0].lower()}{sentence[1:]}"
    (st.success if won else st.warning)(sentence, icon=":material/school:" if won else ":material/warning:")
    columns = {"parameters": st.column_config.NumberColumn(format="localized"),
               "size (MB)": st.column_config.NumberColumn(format="%.2f"),
               "test accuracy (%)": st.column_config.NumberColumn(format="%.2f")}
    st.markdown(f"**This run** ({config.dataset}, {run.summary['n_test']} test images)")
    st.dataframe(runview.case_study(run.summary, *names), hide_index=True, column_config=columns)
    st.markdown("**The lecture's case study** (ImageNet top-1 as given in the lecture; parameters counted from "
                "torchvision's ResNet definitions, 4 bytes each)")
    st.dataframe(lecture_case_table(), hide_index=True, column_config=columns)


def run_actions(run) -> None:
    """Open, download (metrics CSV, students' weights) and delete one run of the history."""
    from kdviz import runview

    manager = run_manager()
    open_, csv, weights, delete = st.columns(4)
    if open_.button("Open", key=f"open-{run.id}"):
        st.query_params["run"] = run.id
        st.rerun()
    csv.download_button("Metrics (CSV)", runview.metrics_csv(run.events), f"kdviz-{run.id}.csv", "text/csv",
                        key=f"csv-{run.id}", on_click="ignore")
    students = manager.store.students_path(run.id)
    if students.is_file():
        weights.download_button("Students' weights", students.read_bytes(), f"kdviz-{run.id}-students.pt",
                                key=f"weights-{run.id}", on_click="ignore")
    else:
        weights.caption("weights: only for completed runs")
    if delete.button("Delete", key=f"delete-{run.id}"):
        manager.delete(run.id)
        if st.query_params.get("run") == run.id:
            del st.query_params["run"]
        st.rerun()


def start_sweep(manager, owner: str, config, parameter: str, text: str) -> str:
    """Queue one run per value; returns the sweep id (every run is tagged with it)."""
    import secrets

    from kdviz import runview

    configs = runview.sweep_configs(config, parameter, runview.parse_sweep_values(parameter, text))
    sweep_id = secrets.token_hex(4)
    for value, sweep_config in zip(runview.parse_sweep_values(parameter, text), configs):
        manager.submit(sweep_config, owner, tags={"sweep": sweep_id, "parameter": parameter, "value": value})
    return sweep_id


def sweep_panel(sweep_id: str) -> None:
    runs = [run for run in run_manager().list_runs() if run.tags.get("sweep") == sweep_id]
    if any(run.live for run in runs):
        _live_sweep(sweep_id)
    else:
        _draw_sweep(runs)


@st.fragment(run_every=1.0)
def _live_sweep(sweep_id: str) -> None:
    runs = [run for run in run_manager().list_runs() if run.tags.get("sweep") == sweep_id]
    if not any(run.live for run in runs):
        st.rerun()
    _draw_sweep(runs)


def _draw_sweep(runs) -> None:
    from kdviz import run_charts, runview

    if not runs:
        st.warning("This sweep has no runs on this server.")
        return
    parameter = runs[0].tags["parameter"]
    done = sum(not run.live for run in runs)
    st.progress(done / len(runs), text=f"sweep over {runview.SWEEP_PARAMETERS[parameter]}: {done} of {len(runs)} "
                                       "runs finished")
    frame = runview.sweep_frame(runs)
    if len(frame):
        st.plotly_chart(run_charts.sweep_chart(frame, runview.SWEEP_PARAMETERS[parameter], lecture_mode()),
                        key="sweep-chart")
        table = frame.assign(hard=100 * frame["hard"], kd=100 * frame["kd"], gain=100 * (frame["kd"] - frame["hard"]))
        st.dataframe(table.rename(columns={"value": parameter, "hard": "hard-label student (%)",
                                           "kd": "KD student (%)", "gain": "KD − hard (points)"}),
                     hide_index=True)


# ---- the image explorer: cached models and logits, the URL, waiting for a teacher or a run -------------------------
EXPLORER_PARSED = "ie.parsed"
EXPLORER_PICKED = "ie.picked"
EXPLORER_KEPT = ("ie.image", "ie.class", "ie.order", "ie.diagonal", "ie.cell_true", "ie.cell_other", "ie.log",
                 "ie.roles.gallery", "ie.roles.upload", "ie.upload_label")


def explorer_state(datasets: list[str]) -> list[str]:
    """Seed the explorer's widgets from the URL once per session; return a notice per ignored URL value."""
    from kdviz import explorer

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
    """Mirror dataset, image and T in the URL (only our keys: other pages' and the owner id stay)."""
    from kdviz.soft_labels import format_number

    for key, value in (("dataset", dataset), ("image", str(image)), ("temperature", format_number(temperature))):
        if st.query_params.get(key) != value:
            st.query_params[key] = value


@st.cache_resource(show_spinner=False)
def explorer_dataset(name: str):
    from kdviz.data import load_dataset

    return load_dataset(name)


@st.cache_resource(show_spinner="Computing the teacher's logits on the test images…")
def _explorer_teacher(file_key: str, _config):
    """(teacher model, (N, C) test logits), once per teacher file (its path and modification time)."""
    from kdviz import explorer
    from kdviz.teachers import load_cached

    model, _ = load_cached(_config)
    return model, explorer.test_logits(model, explorer_dataset(_config.dataset))


def _explorer_loaded_teacher(config):
    """(teacher, test logits) from the cache, or None when the file is missing or unusable."""
    from kdviz.teachers import CacheError, is_cached, teacher_path

    if not is_cached(config):
        return None
    path = teacher_path(config)
    try:
        return _explorer_teacher(f"{path}:{path.stat().st_mtime_ns}", config)
    except (CacheError, OSError):
        return None  # damaged: the background task reports it and trains the teacher again


def explorer_teacher(dataset: str):
    """The dataset's trained teacher and its test logits, or None after drawing the progress of its training."""
    from kdviz import explorer

    config = explorer.teacher_for(dataset)
    teacher = _explorer_loaded_teacher(config)
    if teacher is None:
        _explorer_teacher_wait(config)
    return teacher


def explorer_teacher_task(config):
    """The background task preparing this teacher: the home page's for the default teacher, else its own."""
    from kdviz import jobs, presets
    from kdviz.teachers import prepare_teacher, teacher_key

    if config == presets.DEFAULT_TEACHER:
        return default_teacher_task()
    return jobs.task_for(f"teacher-{teacher_key(config)}",
                         lambda should_stop: prepare_teacher(config, "auto", should_stop))


@st.fragment(run_every=1.0)
def _explorer_teacher_wait(config) -> None:
    task = explorer_teacher_task(config)
    for notice in task.notices:
        st.warning(notice, icon=":material/build:")
    if task.state == "completed" and _explorer_loaded_teacher(config) is not None:
        st.rerun()  # the whole page, now with its teacher
    elif task.state == "completed":
        st.error("The teacher was trained but its cache file cannot be read; restart the server to train it again.",
                 icon=":material/error:")
    elif task.state in ("pending", "running"):
        epoch = task.last_epoch
        detail = f" Epoch {epoch.epoch}: {epoch.accuracy['teacher']:.1%} test accuracy." if epoch else ""
        data = explorer_dataset(config.dataset)
        st.info(f"The {config.dataset} teacher ({config.model.describe(data.input_shape, data.num_classes)}) is "
                "being trained once, in the "
                "background; it is then cached and this page fills in by itself." + detail,
                icon=":material/hourglass_top:")
        st.progress(task.progress())
    else:
        st.error(f"The teacher could not be trained ({task.error or task.state}); reload the page to try again, or "
                 "run `python -m kdviz prepare` in a terminal to see why.", icon=":material/error:")


@st.cache_resource(show_spinner="Loading the students and their logits on the test images…", max_entries=8)
def _explorer_students(dataset: str, run_id: str | None, runs_root: str):
    from kdviz import explorer
    from kdviz.runstore import RunStore

    return explorer.load_students(explorer_dataset(dataset), run_id, RunStore(runs_root))


def explorer_students(dataset: str):
    """The untrained student and, from the newest completed run on this dataset, the hard-label and KD students."""
    from kdviz import explorer
    from kdviz.paths import runs_dir

    return _explorer_students(dataset, explorer.latest_completed_run(dataset), str(runs_dir()))


@st.cache_resource(show_spinner=False)
def explorer_thumbnails(dataset: str, scale: int) -> list[bytes]:
    """Every test image as a small PNG (enlarged with crisp pixels), rendered once per dataset."""
    from kdviz import images

    data = explorer_dataset(dataset)
    return [images.to_png(pixels, scale) for pixels in data.to_pixels(data.test_x)]


def explorer_run_offer(dataset: str) -> None:
    """No finished run yet: offer to start the dataset's preset, then follow it until its students exist."""
    from kdviz import explorer
    from kdviz.presets import PRESETS

    preset = explorer.preset_for(dataset)
    key = f"ie.run.{dataset}"
    if st.session_state.get(key):
        _explorer_run_wait(st.session_state[key], key)
        return
    st.info(f"No finished distillation run on {dataset} yet: the hard-label and KD students come from one. "
            f"The {preset!r} preset ({PRESETS[preset][0]}) makes them.", icon=":material/school:")
    if st.button(f"Run the {preset!r} preset", icon=":material/play_arrow:", key="ie.run_preset"):
        try:
            st.session_state[key] = run_manager().submit(explorer.run_config_for(dataset), owner_id())
        except ValueError as error:
            st.error(str(error), icon=":material/warning:")
            return
        st.rerun()


@st.fragment(run_every=1.0)
def _explorer_run_wait(run_id: str, key: str) -> None:
    from kdviz import runview

    run = run_manager().get(run_id)
    if run is None or run.state in ("cancelled", "diverged", "failed", "interrupted"):
        st.warning(f"Run {run_id} did not finish ({run.state if run else 'deleted'}"
                   f"{': ' + run.message if run and run.message else ''}).", icon=":material/warning:")
        if st.button("Try again", key="ie.run_retry"):
            st.session_state.pop(key, None)
            st.rerun()
        return
    if run.state == "completed" and run_manager().store.students_path(run_id).is_file():
        st.rerun()  # the whole page, now with the run's students
    elif run.state == "completed":
        st.warning(f"Run {run_id} finished but its students could not be saved.", icon=":material/warning:")
        return
    state = runview.progress(run.events)
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
    from kdviz import explorer

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
                          help=f"test image #{index}")


def explorer_picked(dataset: str, image: int, teacher_logits, students) -> None:
    """The chosen image, large, with what the teacher says about it and where the students come from."""
    import dataclasses

    from kdviz import images, kd

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
    """Softmax at T of the teacher and the chosen students (with one student, the soft-labels page's own chart),
    then the logits."""
    import numpy as np

    from kdviz import charts, kd
    from kdviz.soft_labels import format_probability

    teacher = kd.softmax(teacher_logits, temperature)
    probs = {role: kd.softmax(z, temperature) for role, z in students.items()}
    hard_label = None if label is None else np.eye(len(classes))[label]
    if len(probs) == 1 and label is not None:
        (role, student), = probs.items()
        texts = {"teacher": [format_probability(p) for p in teacher], "student": [format_probability(p) for p in student]}
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
    from kdviz import charts, explorer

    rows = explorer.summary_rows(tuple(classes), logits["teacher"],
                                 {role: z for role, z in logits.items() if role != "teacher"}, label, temperature,
                                 charts.ROLE_NAMES)
    st.dataframe(rows, hide_index=True, column_config={
        "model": st.column_config.TextColumn(width="medium"),
        "guess": st.column_config.TextColumn(help="The class with the highest probability (at this T).", width="small"),
        "p(true class)": st.column_config.NumberColumn(format="percent"),
        "KL from teacher": st.column_config.NumberColumn(format="%.4f", help="KL(teacher ‖ model) at this T, in "
                                                                              "nats: 0 means the same soft labels.")})


def explorer_convergence(students, image: int, labels, teacher_logits, classes, temperature: float,
                         lecture: bool) -> None:
    """The run's students on this image at every epoch, approaching the teacher (for the run's probe images)."""
    import numpy as np

    from kdviz import charts, explorer, kd

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


def _explorer_upload_changed() -> None:
    if st.session_state.get("ie.upload") is None:  # the user removed the file: forget it
        st.session_state.pop(EXPLORER_LAST_UPLOAD, None)


def explorer_upload(dataset: str, input_shape):
    """The uploader, and the upload turned into the dataset's input; None after showing why not (one sentence).

    The last good upload (a small copy) is remembered for the session, so switching sections does not lose it.
    """
    from kdviz import images

    uploaded = st.file_uploader("Upload a picture of a digit", type=images.EXTENSIONS, key="ie.upload",
                                on_change=_explorer_upload_changed,
                                help="PNG, JPEG, WebP, BMP or GIF (its first frame), up to 10 MB. It is read in "
                                     "memory, never saved.")
    if uploaded is not None:
        try:
            prepared = images.prepare(uploaded.getvalue(), dataset, input_shape)
        except images.ImageRejected as error:
            st.session_state.pop(EXPLORER_LAST_UPLOAD, None)
            st.error(str(error), icon=":material/broken_image:")
            return None
        st.session_state[EXPLORER_LAST_UPLOAD] = (dataset, uploaded.name, images.shrunk(prepared))
        return prepared
    last = st.session_state.get(EXPLORER_LAST_UPLOAD)
    if last is not None and last[0] == dataset:
        st.caption(f"Showing your last upload, {last[1]}.")
        return last[2]
    st.caption("Draw a digit on paper or in any paint program and upload a photo or screenshot of it.")
    return None


def explorer_upload_preview(prepared, input_shape) -> None:
    """The upload beside what the model sees."""
    from kdviz import images

    original, processed = st.container(border=True).columns(2, vertical_alignment="center")
    original.image(images.preview_png(prepared.original), caption="your image")
    side = input_shape[-1]
    note = ", inverted to light ink on black" if prepared.inverted else ""
    processed.image(images.to_png(images.input_to_pixels(prepared.model_input), _scale(side, 168)),
                    caption=f"what the model sees: {side}×{side}{note}")


def explorer_cell_pickers(matrix, classes) -> tuple[int, int]:
    """A heatmap cell chosen with two selectboxes (a click on the heatmap sets them too); starts at the most
    alike pair."""
    from kdviz import explorer

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
