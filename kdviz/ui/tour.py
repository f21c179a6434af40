"""The guided tour (pages/lecture.py): its state in the URL, the step navigation and the clicker, and each step's
view, built from the app's own views, widgets, runs and experiments (kdviz.views.tour holds the steps' words)."""
from __future__ import annotations

import dataclasses

import streamlit as st

from kdviz.ui import core, present
from kdviz.ui.core import lecture_mode, owner_id, sync_query_params, update_url_state, url_state

TOUR_STATE = "tour.state"


# ---- state ---------------------------------------------------------------------------------------------------------

def tour_state():
    """(state, notices): the tour's state, parsed once per session from the URL (a notice per bad value)."""
    from kdviz.views import tour

    return url_state(TOUR_STATE, tour.parse_query)


def update_tour_state(**changes):
    """Replace fields of the state, keep it for the session and mirror it in the URL."""
    from kdviz.views import tour

    return update_url_state(TOUR_STATE, tour.to_query, tour.QUERY_KEYS, **changes)


def _show(session: present.TourSession) -> None:
    """Write what the session shows into the URL (a follower's URL carries only the room: it follows)."""
    from kdviz.views import tour

    if session.role == "follower":
        sync_query_params({"room": session.state.room}, tour.QUERY_KEYS)
    else:
        st.session_state[TOUR_STATE] = session.state
        sync_query_params(tour.to_query(session.state), tour.QUERY_KEYS)


def session():
    """The session of this page run: its role in a presentation (if any) and what it shows; notices shown above."""
    state, notices = tour_state()
    resolved = present.resolve(state, notices)
    _show(resolved)
    return resolved, notices


def move(tour_session: present.TourSession, **changes) -> None:
    """Change this browser's view (a lecturer's goes to the room too); a follower's never changes."""
    if not tour_session.moves:
        return
    old = st.session_state[TOUR_STATE]
    state = update_tour_state(**changes)
    present.push(tour_session, state, step_changed=state.step != old.step)


# ---- navigation ----------------------------------------------------------------------------------------------------

def _go(tour_session, step: int) -> None:
    from kdviz.views import tour

    move(tour_session, step=min(max(step, 1), tour.STEP_COUNT))


def navigation(tour_session: present.TourSession) -> None:
    """Previous / next, the step indicator (each step a button), and the presenter's clicker (PageDown / PageUp)."""
    from kdviz.ui.tour_components import clicker
    from kdviz.views import tour

    current = tour_session.state.step
    if not tour_session.moves:  # a follower's steps are the lecturer's: no buttons to stare at
        clicker(enabled=False)
        st.progress(current / tour.STEP_COUNT)
        return
    moved = clicker(enabled=True)
    if moved:
        _go(tour_session, current + moved)
        st.rerun()
    back, indicator, forward = st.columns([1, 6, 1], vertical_alignment="center")
    back.button(":material/arrow_back: Back", key="tour.back", disabled=current == 1,
                on_click=_go, args=(tour_session, current - 1), width="stretch")
    forward.button("Next :material/arrow_forward:", key="tour.next", type="primary", width="stretch",
                   disabled=current == tour.STEP_COUNT, on_click=_go,
                   args=(tour_session, current + 1))
    with indicator:
        options = [s.number for s in tour.STEPS]
        st.session_state["tour.indicator"] = current
        st.segmented_control("Step", options, key="tour.indicator", label_visibility="collapsed", required=True,
                             on_change=_picked, args=(tour_session,),
                             format_func=lambda number: str(number))


def _picked(tour_session) -> None:
    _go(tour_session, int(st.session_state["tour.indicator"]))


# ---- the step ------------------------------------------------------------------------------------------------------

def draw_step(tour_session: present.TourSession) -> None:
    """The step's title, words and view (a follower's read-only)."""
    from kdviz.views import tour

    step = tour.step(tour_session.state.step)
    st.markdown(f"<p class='kdviz-step-count'>Step {step.number} of {tour.STEP_COUNT}</p>", unsafe_allow_html=True)
    st.header(step.title, anchor=step.slug)
    st.markdown(f"<div class='kdviz-step-text'>\n\n{tour.step_text(step.number)}\n\n</div>", unsafe_allow_html=True)
    VIEWS[step.view](tour_session, step)


TOUR_CSS = """<style>
.stMainBlockContainer { padding-top: 2.5rem; }
.stMainBlockContainer .kdviz-step-count { font-size: 1rem; color: #6B7280; margin-bottom: -0.6rem; }
.stMainBlockContainer .kdviz-step-text p { font-size: 1.35rem; line-height: 1.5; max-width: 62rem; }
.st-key-tour-clicker, .st-key-tour-follow, .st-key-tour-export { display: none; }  /* scripts, nothing to see */
@media (max-width: 640px) { .stMainBlockContainer .kdviz-step-text p { font-size: 1.1rem; } }
</style>"""


TOUR_LECTURE_CSS = """<style>
.stMainBlockContainer h2 { font-size: 2.8rem; }
.stMainBlockContainer .kdviz-step-text p { font-size: 1.75rem; max-width: 72rem; }
</style>"""


def style() -> None:
    """The tour's step text is for projecting: big even outside lecture mode, bigger in it."""
    st.html(TOUR_CSS + (TOUR_LECTURE_CSS if lecture_mode() else ""))


# ---- the steps' views ----------------------------------------------------------------------------------------------

def _soft_labels(tour_session, step, panels, series=("label", "teacher", "student"), controls=()) -> None:
    """The browser-side soft-labels widget on the lecture example (kdviz.ui.components): T and α follow the slider
    while it moves; the released value becomes this view's (and, for a lecturer, the room's)."""
    from kdviz import ui
    from kdviz.views import soft_labels as sl
    from kdviz.views import tour

    state = tour_session.state
    temperature = state.temperature if step.uses_temperature else 1.0
    payload = sl.widget_payload(sl.LECTURE, temperature, state.alpha, False, "untrained", "untrained student",
                                lecture_mode(), panels=list(panels), series=list(series), controls=list(controls),
                                readonly=not tour_session.moves,
                                caption=f"kdviz · step {step.number}: {step.title} · "
                                        f"{tour.link(core.app_url('lecture'), state)}")
    key = f"tour.widget.{step.number}"  # one key per step: the widget keeps its focus (and keyboard) across releases
    released = ui.soft_labels_widget(payload, key=key)
    # a release is a value the widget reports for the first time: its state outlives a T changed elsewhere (another
    # step's slider, a link), so only a new value moves the view
    if released != st.session_state.get(f"{key}.seen"):
        first = f"{key}.seen" not in st.session_state
        st.session_state[f"{key}.seen"] = released
        if not first and tour_session.moves and step.uses_temperature and released != (temperature, state.alpha):
            move(tour_session, temperature=released[0], alpha=released[1])
            st.rerun()


def _classroom(tour_session, step) -> None:
    from kdviz.core.budget import dataset_facts, model_cost
    from kdviz.core.presets import get_preset
    from kdviz.views import tour

    config = get_preset("quick")
    facts = dataset_facts(config.dataset)
    sizes, labels = [], []
    for name, spec in (("teacher", config.teacher.model), ("student", config.student)):
        params = model_cost(spec, facts.input_shape, facts.num_classes).params
        sizes.append([facts.input_shape[-1] ** 2] + [spec.width] * spec.depth + [facts.num_classes])
        labels.append(f"{name}: {spec.describe(facts.input_shape, facts.num_classes)}, {params:,} weights")
    st.plotly_chart(tour.classroom_figure(*sizes, *labels, lecture_mode()), key="tour.classroom")
    st.caption("The quick preset's teacher and student (8×8 digits): the two you will see train at step 7.")


def _hard_labels(tour_session, step) -> None:
    from kdviz.views.soft_labels import LECTURE

    _soft_labels(tour_session, step, ["bars"], series=["label"])
    rows = "\n".join(f"| {index} | {name} | [{', '.join('1' if i == index else '0' for i in range(4))}] |"
                     for index, name in enumerate(LECTURE.classes))
    st.markdown(f"| class id | class | one-hot label |\n|--:|:--|:--|\n{rows}")


def _teacher(tour_session, step) -> None:
    _soft_labels(tour_session, step, ["logits", "bars"], series=["label", "teacher"])


def _student(tour_session, step) -> None:
    from kdviz.views import tour

    shown = present.question_block(tour_session, tour.QUESTIONS[step.question])
    _soft_labels(tour_session, step, ["logits", "bars"] if shown else ["logits"],
                 series=["label", "teacher", "student"] if shown else ["teacher", "student"])


def _temperature(tour_session, step) -> None:
    from kdviz.views import tour

    if present.question_block(tour_session, tour.QUESTIONS[step.question]):
        _soft_labels(tour_session, step, ["bars", "curves", "entropy"], controls=["temperature"])


def _loss(tour_session, step) -> None:
    _soft_labels(tour_session, step, ["losses", "bars", "gradient"], controls=["temperature", "alpha"])


VIEWS = {"classroom": _classroom, "hard-labels": _hard_labels, "teacher": _teacher, "student": _student,
         "temperature": _temperature, "loss": _loss}


# ---- the steps backed by runs on this server -----------------------------------------------------------------------

TOUR_RUNS_VARIABLE = "KDVIZ_TOUR_RUNS"  # "auto" (default): opening the tour starts the runs it lacks; "off": it waits


def tour_runs_setting() -> str:
    import os

    value = os.environ.get(TOUR_RUNS_VARIABLE, "auto").strip().lower() or "auto"
    if value not in ("auto", "off"):
        raise ValueError(f"{TOUR_RUNS_VARIABLE} must be auto or off, got {value!r}")
    return value


@st.cache_resource(show_spinner=False)
def _tour_identity() -> str:
    """The tour's own identity on this server (a secret like a browser's): the runs it starts belong to nobody in the
    hall, so nobody's per-browser cap or history is used for them."""
    import secrets

    return secrets.token_hex(16)


@st.cache_resource(show_spinner=False)
def _tried() -> set:
    """The tour's runs this process has started (each at most once: see tour_results.start_missing)."""
    return set()


@st.cache_resource(ttl=30, show_spinner=False)
def _started() -> list[str]:
    """Start the tour's missing runs at most every 30 s, whichever browser opens the tour."""
    from kdviz.views import tour_results

    if tour_runs_setting() == "off":
        return []
    return tour_results.start_missing(core.run_manager(), _tour_identity(), tour_results.tour_configs(), _tried())


def start_tour_runs() -> None:
    """Opening the tour (or a presentation) starts, in the background, every run its steps need that this server
    has not done yet; a bad setting of the operator's says so."""
    try:
        _started()
    except ValueError as error:
        st.error(f"This server's settings cannot be used: {error}.", icon=":material/settings_alert:")


@st.cache_resource(ttl=2, show_spinner=False)
def _tour_runs_cached() -> dict:
    from kdviz.views import tour_results

    return tour_results.find_runs(core.run_manager().list_runs(), tour_results.tour_configs())


def tour_run(key: str):
    """The run behind a step (the newest finished one with the tour's settings, else a live one, else None); shared
    by every browser for 2 s, so a hall of followers lists the runs once, not once each."""
    return _tour_runs_cached().get(key)


def _claim_box(key: str, run) -> None:
    from kdviz.views import tour_results

    claim = tour_results.claim(key, run)
    if claim is None:
        return
    if claim.holds:
        st.success(f"**On this server the claim holds.** {claim.sentence}", icon=":material/check_circle:")
    else:
        st.warning(f"**On this server the claim does not fully hold.** {claim.sentence}", icon=":material/warning:")


def _experiment(tour_session, step) -> None:
    """An experiment step: which run it is, what it says about the claim, and the run's own results view."""
    from kdviz.ui.experiments import experiment_panel
    from kdviz.views import tour_results

    key = step.experiment
    run = tour_run(key)
    if run is None:
        _no_run_yet(tour_session, key)
        return
    st.caption(f"Computed on this server: {tour_results.describe(key, run)}.")
    _claim_box(key, run)
    experiment_panel(key, run.id)


def _no_run_yet(tour_session, key: str) -> None:
    """No run of this step's experiment on this server yet: say so, and offer to run it (the caller's own run, within
    the server's budget) unless the tour is starting one already."""
    from kdviz.views import tour_results

    page, _ = RUN_PAGES[key]
    if tour_runs_setting() == "auto":
        st.info("No run of this experiment has finished on this server yet: the tour has queued one, and its result "
                "appears here when it is done.", icon=":material/hourglass_top:")
        return
    st.info(f"No run of this experiment has finished on this server yet. Run it here with its default settings, or "
            f"with your own on [its page]({core.app_url(page)}).", icon=":material/hourglass_top:")
    if tour_session.moves and st.button(":material/play_arrow: Run it on this server", key=f"tour.run.{key}"):
        try:
            core.run_manager().submit(tour_results.tour_configs()[key], owner_id(), tags={"tour": key},
                                      address=core.client_address())
        except ValueError as error:
            st.error(f"It cannot run here: {error}", icon=":material/warning:")
            return
        _tour_runs_cached.clear()
        st.rerun()


def _step_run(tour_session):
    """The distillation run step 7 shows: the lecturer's (in a presentation), this browser's own, else the tour's."""
    view = tour_session.presentation.view if tour_session.presentation is not None and \
        tour_session.role != "detached" else None
    run_id = (view.run_id if view is not None else None) or st.session_state.get("tour.run")
    if run_id:
        return core.run_manager().get(run_id)
    return tour_run("live-run")


def _start_live_run(tour_session) -> None:
    from kdviz.core.presets import get_preset
    from kdviz.present import hub

    try:
        run_id = core.run_manager().submit(get_preset("quick"), owner_id(), address=core.client_address())
    except ValueError as error:
        st.session_state["tour.run_error"] = str(error)
        return
    st.session_state["tour.run"] = run_id
    if tour_session.role == "presenter":
        hub().move(tour_session.presentation.code, owner_id(), run_id=run_id)


def _live_run(tour_session, step) -> None:
    from kdviz.ui.runs import run_panel
    from kdviz.views import tour

    run = _step_run(tour_session)
    shown = present.question_block(tour_session, tour.QUESTIONS[step.question], run)
    in_room = tour_session.role in ("presenter", "follower")
    if tour_session.moves:
        st.button(":material/play_arrow: Run it now on this server (the quick preset: seconds)", key="tour.run_now",
                  on_click=_start_live_run, args=(tour_session,), disabled=not (shown or in_room),
                  help="Two students, one teacher: hard labels vs the teacher's soft labels, live.")
        error = st.session_state.pop("tour.run_error", None)
        if error:
            st.error(f"The run cannot start: {error}", icon=":material/warning:")
    if run is None:
        st.info("No run of the quick preset has finished on this server yet: start one.", icon=":material/info:")
    elif shown or in_room:
        run_panel(run.id, parts=("header", "charts"))


def _case_study(tour_session, step) -> None:
    from kdviz.ui.runs import lecture_case_table, run_panel
    from kdviz.views import tour
    from kdviz.views.run_view import LECTURE_CASE

    run = _step_run(tour_session)
    if run is None or run.state != "completed" or not run.summary:
        st.info("This server has not finished a run yet (step 7 starts one); the lecture's numbers as quoted:",
                icon=":material/info:")
        st.dataframe(lecture_case_table(), hide_index=True)
        return
    st.plotly_chart(tour.case_study_chart(LECTURE_CASE, run.summary, run.config["teacher"]["dataset"],
                                          lecture_mode()), key="tour.case")
    run_panel(run.id, parts=("case",))


def _dark_knowledge(tour_session, step) -> None:
    from kdviz.core.presets import DEFAULT_TEACHER
    from kdviz.ui import models
    from kdviz.views import charts, explorer, tour

    temperature = tour_session.state.temperature
    loaded = models.teacher(DEFAULT_TEACHER)
    if loaded is None:
        models.teacher_progress(DEFAULT_TEACHER)
    else:
        data = models.dataset(DEFAULT_TEACHER.dataset)
        matrix = explorer.dark_knowledge(loaded[1], data.test_y.numpy(), len(data.classes), temperature)
        left, right = st.columns([3, 2], gap="large")
        left.plotly_chart(charts.dark_knowledge_heatmap(matrix, data.classes, temperature, lecture=lecture_mode()),
                          key="tour.heatmap")
        with right:
            _temperature_slider(tour_session)
            pairs = ", ".join(f"**{data.classes[i]} ↔ {data.classes[j]}**" for i, j, _ in explorer.most_alike(matrix))
            st.markdown(f"At T = {temperature:g} the default teacher gives its wrong classes "
                        f"**{explorer.off_diagonal_mass(matrix):.1%}** of its probability on average; the pairs it "
                        f"finds most alike: {pairs}. Hard labels say none of this.")
    run = tour_run("missing-class")
    if present.question_block(tour_session, tour.QUESTIONS[step.question], run):
        _experiment(tour_session, step)


def _temperature_slider(tour_session) -> None:
    from kdviz.views.query import TEMPERATURES

    key = "tour.heatmap_temperature"
    st.session_state[key] = tour_session.state.temperature
    st.select_slider("Temperature T of the teacher's softmax", TEMPERATURES, key=key, format_func="{:g}".format,
                     disabled=not tour_session.moves,
                     on_change=lambda: move(tour_session, temperature=st.session_state[key]))


def _ensemble(tour_session, step) -> None:
    from kdviz.ui.ensembles import worked_example

    with st.expander("Why averaging the teachers' soft labels is the target (a worked example)"):
        worked_example(lecture_mode())
    _experiment(tour_session, step)


def _compression(tour_session, step) -> None:
    from kdviz.ui.compression import case_study

    _experiment(tour_session, step)
    with st.expander("The lecture's ResNet-152 and ResNet-50, counted here"):
        case_study(lecture_mode())


RUN_PAGES = {"live-run": ("live_distillation", "run"), "capacity": ("why_it_works", "capacity"),
             "missing-class": ("why_it_works", "missing-class"), "gradient-variance": ("why_it_works",
                                                                                       "gradient-variance"),
             "ensemble": ("ensembles", "ensemble"), "compression": ("compression", "compression")}


def _run_link(key: str, run_id: str) -> str:
    """The run's read-only link on its own page (the why-it-works tab opens from its parameter)."""
    page, parameter = RUN_PAGES[key]
    return f"{core.app_url(page)}?{parameter}={run_id}"


def _conclusion(tour_session, step) -> None:
    from kdviz.views import tour_results

    claims = {"live-run": (7, "A KD student beats its hard-label twin"),
              "capacity": (9, "A small student holds what the task needs; KD helps most with little data"),
              "missing-class": (10, "A digit never seen is learnt from soft labels alone"),
              "gradient-variance": (11, "Soft targets give steadier gradients"),
              "ensemble": (12, "An ensemble's student beats the best single teacher's"),
              "compression": (13, "A smaller student costs less per prediction")}
    rows = []
    for key, (number, words) in claims.items():
        run = tour_run(key)
        claim = tour_results.claim(key, run)
        verdict = ("no run yet" if run is None else "still computing" if run.live else f"no verdict: the run "
                   f"{run.state}" if claim is None else "✓ holds" if claim.holds else "✗ does not fully hold")
        rows.append({"step": number, "claim": words, "on this server": verdict,
                     "run": _run_link(key, run.id) if run else None})
    st.dataframe(rows, hide_index=True, column_config={
        "step": st.column_config.NumberColumn(width="small"),
        "run": st.column_config.LinkColumn(display_text=r"=([0-9a-f-]+)$", help="The run, read-only, on its page")})
    st.markdown("Every row links to a run on this server (the why-it-works, ensembles and compression pages show "
                "them whole; `python -m kdviz experiment NAME` gives the same numbers). Where a claim does not hold "
                "here, the step said why: a lecture's claims are worth checking, not only repeating.")


VIEWS |= {"live-run": _live_run, "case-study": _case_study, "capacity": _experiment,
          "dark-knowledge": _dark_knowledge, "gradient-variance": _experiment, "ensemble": _ensemble,
          "compression": _compression, "conclusion": _conclusion}


# ---- following and slides ------------------------------------------------------------------------------------------

BROWSER_DRAWN = ("temperature", "loss")  # the steps whose T and α a follower's browser applies without a rerun


def poll(tour_session) -> None:
    from kdviz.views import tour

    present.poll(tour_session, tour.step(tour_session.state.step).view in BROWSER_DRAWN)


def export(tour_session) -> None:
    """PNG / SVG slide buttons under every chart of the step, captioned with the step, its parameters and link."""
    from kdviz.ui.tour_components import slide_export
    from kdviz.views import tour

    state = tour_session.state
    step = tour.step(state.step)
    parts = [f"kdviz · step {step.number}: {step.title}"]
    if step.uses_temperature:
        parts.append(f"T = {state.temperature:g}, α = {state.alpha:g}")
    key = step.experiment or ("live-run" if step.view in ("live-run", "case-study") else None)
    run = _step_run(tour_session) if key == "live-run" else tour_run(key) if key else None
    if run is not None:
        parts.append(f"run {run.id} on {core.app_url()}")
    parts.append(tour.link(core.app_url("lecture"), dataclasses.replace(state, room=None)))
    slide_export(" · ".join(parts), f"kdviz-step{step.number}")
