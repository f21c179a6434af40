"""Live distillation: the run form, the live run panel, history actions and sweeps."""
from __future__ import annotations

import streamlit as st

from kdviz.ui import core
from kdviz.ui.core import lecture_mode, owner_id

SPLIT_LABELS = {"validation": "validation", "test": "test"}
SPLIT_HELP = ("Validation: images held out of training, what choices (the sweep's best value) read. Test: held out "
              "of everything, only reported.")


def split_choice(key: str, frame) -> str:
    """A small "validation | test" switch for an accuracy chart (validation first); runs from before the validation
    split only have test."""
    from kdviz.views import run_view

    options = ["test"] if run_view.lacks_validation(frame) else list(run_view.SPLITS)
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    return st.segmented_control("Accuracy on", options, key=key, required=True, format_func=SPLIT_LABELS.get,
                                help=SPLIT_HELP)


def distill_config_form(preset: str):
    """Widgets for every engine option, prefilled from the preset; returns (DistillConfig or None, problem)."""
    import dataclasses

    from kdviz.core.data import list_datasets
    from kdviz.core.engine import available_devices, check_config
    from kdviz.core.models import ModelSpec, list_models
    from kdviz.core.presets import get_preset

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
            teacher_dropout = st.number_input("Teacher dropout", 0.0, 0.9, float(base.teacher.model.dropout), 0.05,
                                              key=key("t_dropout"), help="Dropout on the teacher's hidden layers "
                                              "while it trains (a new teacher, trained once and cached).")
            st.caption("A teacher is trained once on first use (progress shown), then cached.")
        with middle:
            st.markdown("**Student & distillation**")
            student_arch = st.selectbox("Student", archs, index=archs.index(base.student.arch), key=key("s_arch"))
            student_width = st.number_input("Student width", 1, 8192, base.student.width, key=key("s_width"))
            student_depth = st.number_input("Student depth", 1, 16, base.student.depth, key=key("s_depth"))
            dropout = st.number_input("Student dropout", 0.0, 0.9, float(base.student.dropout), 0.05,
                                      key=key("s_dropout"), help="Dropout on the students' hidden layers; both "
                                      "students draw the same masks (seeded).")
            temperature = st.number_input("Temperature T", 0.01, 1000.0, float(base.temperature), key=key("T"))
            alpha = st.slider("α: weight of the soft term", 0.0, 1.0, float(base.alpha), 0.05, key=key("alpha"),
                              help="kdviz weighs the soft (KD) term by α and the hard term by 1 − α. "
                                   "Keras's KD example uses the opposite convention.")
            mistake = mistake_select(base.mistake, key("mistake"))
        with right:
            st.markdown("**Training**")
            epochs = st.number_input("Epochs", 1, 500, base.epochs, key=key("epochs"))
            batch_size = st.number_input("Batch size", 1, 4096, base.batch_size, key=key("batch"))
            learning_rate = st.number_input("Learning rate (AdamW)", 1e-6, 10.0, base.learning_rate,
                                            format="%.5f", key=key("lr"))
            weight_decay = st.number_input("Weight decay (AdamW)", 0.0, 1.0, float(base.weight_decay), 1e-4,
                                           format="%.5f", key=key("wd"),
                                           help="Decoupled weight decay, the same for both students.")
            subset = st.number_input("Training images (0 = all)", 0, 100_000, base.train_subset, key=key("subset"))
            augment = st.number_input("Jitter augmentation (pixels)", 0, 8, base.augment, key=key("augment"))
            seed = st.number_input("Seed", 0, 2**31 - 1, base.seed, key=key("seed"))
            devices = ["auto"] + available_devices()
            device = st.selectbox("Device", devices, key=key("device"))
            missing = [d for d in ("cuda", "mps") if d not in devices]
            if missing:
                st.caption(f"Not available here: {', '.join(missing)} (PyTorch sees no such device).")
    teacher = dataclasses.replace(base.teacher, dataset=dataset, model=ModelSpec(
        teacher_arch, int(teacher_width), int(teacher_depth), round(float(teacher_dropout), 4)))
    config = dataclasses.replace(
        base, teacher=teacher,
        student=ModelSpec(student_arch, int(student_width), int(student_depth), round(float(dropout), 4)),
        temperature=float(temperature), alpha=float(alpha), epochs=int(epochs), batch_size=int(batch_size),
        learning_rate=float(learning_rate), weight_decay=float(weight_decay), train_subset=int(subset),
        augment=int(augment), seed=int(seed), device=device, mistake=mistake)
    try:
        check_config(config)
    except ValueError as error:
        return None, f"This configuration cannot run: {error}."
    try:
        core.run_manager().check(config)  # the server's budget, before anything is queued
    except ValueError as error:
        return None, f"This configuration is over this server's budget. {error}"
    return config, None


def mistake_select(current: str, key: str) -> str:
    """The common-mistakes switch of the run form: "none", or a mistake a third student makes beside the two."""
    from kdviz.core.kd import MISTAKE_NAMES, MISTAKES

    labels = {"none": "none: two students"} | {item.name: item.label for item in MISTAKES}
    name = st.selectbox("Common mistake (a third student)", MISTAKE_NAMES, index=MISTAKE_NAMES.index(current),
                        format_func=labels.get, key=key,
                        help="Trains a third student, from the same weights on the same batches, whose KD loss "
                             "makes this mistake, beside the hard-label and the correct KD student.")
    if name != "none":
        st.caption(next(item.sentence for item in MISTAKES if item.name == name))
    return name


def mistake_notice(config: dict) -> None:
    """Above a run's charts: which mistake its third student makes, what goes wrong and where to see it."""
    from kdviz.core.kd import MISTAKE_NAMES, get_mistake

    name = config.get("mistake", "none")
    if name in MISTAKE_NAMES and name != "none":
        item = get_mistake(name)
        st.info(f"**The wine-coloured student makes a common mistake: {item.label}.** {item.sentence}",
                icon=":material/report:")


@st.cache_data(show_spinner=False)
def lecture_case_table():
    from kdviz.views import run_view

    return run_view.lecture_rows()


# How often an experiment's live panel (kdviz.ui.experiments) reruns: twice a second for its owner, every 2 s for
# read-only viewers. A distillation run's charts are polled and drawn in the browser instead (components.live_run).
OWNER_REDRAW_S, VIEWER_REDRAW_S = 0.5, 2.0

PARTS = ("header", "charts", "case")  # what a run panel shows: state and controls, the live charts, the case study


def run_panel(run_id: str, parts: tuple[str, ...] = PARTS) -> None:
    """The chosen run: live while it is queued, running or paused (its progress and charts drawn and redrawn in the
    browser, components.live_run), static once it ended. parts: which of PARTS to show (the tour shows a run's charts
    at one step and its case study at the next)."""
    run = core.run_manager().get(run_id)
    if run is None:
        st.warning(f"There is no run {run_id!r} on this server (it may have been deleted).",
                   icon=":material/search_off:")
        return
    if run.live:
        _live_run(run_id, parts)
    else:
        _draw_run(run, parts)


@st.fragment
def _live_run(run_id: str, parts: tuple[str, ...] = PARTS) -> None:
    """A live run: the state and controls drawn here; progress and charts by the browser, which reruns this fragment
    when the run's state or place in the queue changes; once it ended, this fragment draws it statically."""
    from kdviz.ui.components import live_run

    manager = core.run_manager()
    run = manager.get(run_id)
    if run is None or st.query_params.get("run", run_id) != run_id:
        st.rerun()  # deleted meanwhile, or this browser started a copy of it: the page draws what is asked now
    if not run.live:  # it ended: drawn statically here, without rerunning the whole page (a hall of viewers sees
        _draw_run(run, parts)  # the end at once: each pays this panel, not the page's form)
        return
    from kdviz.views.run_live import redraw_key

    # What this draw shows, read before drawing it: the run's worker changes its state meanwhile (a stop ends it while
    # the header is drawn), and the browser compares this with what it polls, so a draw torn by that change is
    # redrawn at its next poll instead of saying "running" for ever.
    queue = manager.queue_position(run.id) if run.state == "queued" else None
    drawn = redraw_key(run, queue)
    state, _, accuracies = run_frames(run)
    mine = manager.owns(run, owner_id())
    if "header" in parts:
        _run_header(run, state, mine)
    if "charts" in parts:
        mistake_notice(run.config)
    split = split_choice(f"split-{run.id}", accuracies) if "charts" in parts else "validation"
    live_run(run, mine, parts, lecture_mode(), split, queue, drawn)


@st.cache_resource(max_entries=64, show_spinner=False)
def _frames(run_id: str, version: int, _events: list) -> tuple:
    """(progress, loss frame, accuracy frame) of one version of a run's log: every viewer of a live run shares
    them, and each is rebuilt only when the run has logged something new."""
    from kdviz.views import run_view

    return run_view.progress(_events), run_view.loss_frame(_events), run_view.accuracy_frame(_events)


@st.cache_resource(max_entries=64, show_spinner=False)
def _charts(run_id: str, version: int, lecture: bool, split: str, _losses, _accuracies) -> tuple:
    """The loss and accuracy figures of one version of a run's log, built once for all its viewers (st.plotly_chart
    copies a figure before it serialises it, so sharing one is safe)."""
    from kdviz.views import run_charts

    return run_charts.loss_chart(_losses, lecture), run_charts.accuracy_chart(_accuracies, lecture, split)


def run_frames(run) -> tuple:
    events = run.events  # load first: a run read from disk gets its version when its log is loaded
    return _frames(run.id, run.events_version, events)


def _control(action, run_id: str) -> None:
    """A run button's callback: the manager checks that the caller owns the run; a refusal is shown, not raised."""
    try:
        action(run_id, owner_id())
    except (PermissionError, ValueError) as error:
        st.session_state["run_refusal"] = str(error)


def _copy_run(config: dict) -> None:
    """A viewer of someone else's run starts its configuration under their own identity (queued, budgeted)."""
    from kdviz.core.engine import config_from_dict

    try:
        run_id = core.run_manager().submit(config_from_dict(config), owner_id(), address=core.client_address())
    except ValueError as error:
        st.session_state["run_refusal"] = str(error)
        return
    st.query_params["run"] = st.session_state["current_run"] = run_id


def _draw_run(run, parts: tuple[str, ...] = PARTS) -> None:
    manager, lecture = core.run_manager(), lecture_mode()
    state, losses, accuracies = run_frames(run)
    mine = manager.owns(run, owner_id())
    if "header" in parts:
        _run_header(run, state, mine)
    if "charts" in parts:
        mistake_notice(run.config)
    if "charts" in parts and len(accuracies):
        split = split_choice(f"split-{run.id}", accuracies)  # above both charts, so that they stay level
        left, right = st.columns(2)
        loss, accuracy = _charts(run.id, run.events_version, lecture, split, losses, accuracies)
        left.plotly_chart(loss, key=f"loss-{run.id}")
        right.plotly_chart(accuracy, key=f"accuracy-{run.id}")
    if "case" in parts and run.summary and "hard" in run.summary:
        _case_study(run)


def _run_header(run, state: dict, mine: bool) -> None:
    """The run's state, its progress and, for its owner, its controls (for others: run it myself)."""
    import time

    from kdviz.views import run_view

    manager = core.run_manager()
    badge = {"queued": ":material/hourglass_top:", "running": ":material/directions_run:",
             "paused": ":material/pause_circle:", "completed": ":material/check_circle:",
             "cancelled": ":material/stop_circle:", "diverged": ":material/error:", "failed": ":material/error:",
             "interrupted": ":material/power_off:"}.get(run.state, "")
    st.subheader(f"{badge} Run {run.id}: {run.state}")
    st.caption(run_view.describe_config(run.config) + ("" if mine else " · viewing a shared run (read-only)"))
    if mine:
        share = f"{core.app_url('live_distillation')}?run={run.id}"
        st.caption(f"Read-only link to share this run: `{share}`")
    if run.state == "queued":
        workers = manager.settings.workers
        st.info(f"Waiting in the queue: position {manager.queue_position(run.id) or '–'}. This server trains "
                f"{'one run' if workers == 1 else f'{workers} runs'} at a time, taking turns between browsers, so "
                "that nobody's freezes.", icon=":material/hourglass_top:")
    elif run.state == "paused":
        left = max(0.0, (run.pause_deadline or time.time()) - time.time())
        st.info(f"Paused at step {state['step']} of {state['total']}: its worker trains other runs meanwhile. "
                f"Unless resumed it is stopped in {left / 60:.0f} min {left % 60:.0f} s, keeping what it measured.",
                icon=":material/pause_circle:")
    elif run.started_at and run.finished_at:
        st.caption(f"Ran for {run.finished_at - run.started_at:.1f} s on {state['device'] or 'the CPU'}.")
    for notice in (e["message"] for e in run.events if e["event"] == "Notice"):
        st.warning(notice, icon=":material/info:")
    if run.message:
        (st.error if run.state in ("diverged", "failed") else st.info)(run.message)
    if mine:
        refusal = st.session_state.pop("run_refusal", None)
        if refusal:
            st.warning(refusal, icon=":material/block:")
        _run_controls(run, state["phase"])
    else:
        st.button(":material/content_copy: Run this configuration myself", key=f"copy-{run.id}", on_click=_copy_run,
                  args=(run.config,), help="A shared run is read-only: this starts the same configuration (and "
                                           "seed, so the same numbers) as a run of your own.")
        refusal = st.session_state.pop("run_refusal", None)
        if refusal:
            st.warning(refusal, icon=":material/block:")


def _run_controls(run, phase: str) -> None:
    manager = core.run_manager()
    pause, stop, reset = st.columns([1, 1, 1])
    reset.button(":material/restart_alt: Reset view", key=f"reset-{run.id}", on_click=_detach, args=(run.id,),
                 help="Close this run's panel to configure a new one; the run itself stays in the history.")
    if not run.live:
        return
    if run.state == "paused":
        pause.button(":material/play_arrow: Resume", key=f"resume-{run.id}", on_click=_control,
                     args=(manager.resume_run, run.id), help="It goes back in the queue and continues where it "
                                                              "stopped, with the same numbers.")
    elif run.state == "running" and phase == "distill":
        pause.button(":material/pause: Pause", key=f"pause-{run.id}", on_click=_control, args=(manager.pause, run.id),
                     help="Its worker trains other runs meanwhile; resume within "
                          f"{manager.settings.paused_timeout_s / 60:g} min or it is stopped, keeping what it "
                          "measured.")
    stop.button(":material/stop: Stop (keeps what was measured)", key=f"stop-{run.id}", on_click=_control,
                args=(manager.cancel, run.id))


def _detach(run_id: str) -> None:
    st.session_state.pop("current_run", None)
    if st.query_params.get("run") == run_id:
        del st.query_params["run"]


def _case_study(run) -> None:
    from kdviz.views import run_view
    from kdviz.core.data import load_dataset
    from kdviz.core.engine import config_from_dict

    config = config_from_dict(run.config)
    try:
        dataset = load_dataset(config.dataset)
        names = [spec.describe(dataset.input_shape, dataset.num_classes)
                 for spec in (config.student, config.teacher.model)]
    except ValueError:
        names = [config.student.describe(), config.teacher.model.describe()]
    won, sentence = run_view.verdict(run.summary)
    if run.state != "completed":
        epoch = max((e["epoch"] for e in run_view.distill_events(run.events) if e["event"] == "EpochEnd"),
                    default=0)  # the distillation's epochs, not the teacher's
        sentence = f"When the run was {run.state} (after epoch {epoch}): {sentence[0].lower()}{sentence[1:]}"
    (st.success if won else st.warning)(sentence, icon=":material/school:" if won else ":material/warning:")
    if "mistake" in run.summary and config.mistake != "none":
        st.error(run_view.mistake_sentence(run.summary, config.mistake), icon=":material/report:")
    columns = {"parameters": st.column_config.NumberColumn(format="localized"),
               "size (MB)": st.column_config.NumberColumn(format="%.2f"),
               run_view.VAL_COLUMN: st.column_config.NumberColumn(
                   format="%.2f", help="Accuracy on images held out of training: what choices read."),
               run_view.TEST_COLUMN: st.column_config.NumberColumn(
                   format="%.2f", help="Accuracy on images held out of everything: only reported."),
               "smaller": st.column_config.TextColumn(help="How many times fewer parameters than the teacher."),
               run_view.GAIN_COLUMN: st.column_config.TextColumn(
                   help="The KD student's test accuracy minus the hard-label student's."),
               run_view.AGREEMENT_COLUMN: st.column_config.NumberColumn(
                   format="%.1f", help="Test images on which the student's top class is the teacher's (Stanton et "
                                       "al. 2021): KD can raise it without raising accuracy."),
               run_view.KL_COLUMN: st.column_config.NumberColumn(
                   format="%.3f", help="Mean KL divergence from the teacher's to the student's softmax at T = 1 on "
                                       "the test images, in nats: 0 means the same predictions.")}
    n_val = run.summary.get("n_val")
    held_out = f"{n_val} validation and " if n_val else ""
    st.markdown(f"**This run** ({config.dataset}: {held_out}{run.summary['n_test']} test images)")
    st.dataframe(run_view.case_study(run.summary, *names), hide_index=True, column_config=columns)
    if run.tags.get("baseline_of"):
        st.info(f"This run is the tuned hard-label baseline of the {run.tags['baseline_of']!r} preset: compare its "
                "hard-label student with the preset's KD student. (Its KD student trains with the baseline's "
                "settings, which were not chosen for it.)", icon=":material/balance:")
    else:
        _fair_baseline(config)
    st.markdown("**The lecture's case study** (ImageNet top-1 as given in the lecture; parameters counted from "
                "torchvision's ResNet definitions, 4 bytes each)")
    st.dataframe(lecture_case_table(), hide_index=True, column_config=columns)


def _fair_baseline(config) -> None:
    """Under a swept preset's run: its twin shares KD's settings; offer the hard-label student tuned on its own."""
    import dataclasses

    from kdviz.core import presets

    name = presets.preset_of(config)
    if name is None or name not in presets.BASELINES:
        return
    baseline = dataclasses.replace(presets.baseline_config(name), seed=config.seed, device=config.device)
    if config == baseline:
        return
    words = {"epochs": "{:g} epochs", "learning_rate": "learning rate {:g}", "weight_decay": "weight decay {:g}",
             "augment": "jitter ±{:g} pixels"}
    settings = ", ".join(words.get(field, field + " {:g}").format(value)
                         for field, value in presets.BASELINES[name].items())
    with st.container(border=True):
        st.markdown(f"**A fair baseline.** The hard-label student above is the KD student's *twin*: it trains with "
                    f"the settings chosen for the KD student. The sweep that chose the {name!r} preset also tuned a "
                    f"hard-label student on its own, on validation ({settings}); compare the KD student with it too "
                    f"(the sweep's results over 20 seeds: sweeps/SWEEP_{name.upper()}.md).")
        if st.button(":material/balance: Run the tuned hard-label baseline", key=f"baseline-{name}-{config.seed}",
                     help="Queues one run with the baseline's settings and this seed; its hard-label student is "
                          "the tuned baseline (it does not depend on T or α)."):
            try:
                st.query_params["run"] = st.session_state["current_run"] = core.run_manager().submit(
                    baseline, owner_id(), tags={"baseline_of": name}, address=core.client_address())
            except ValueError as error:
                st.error(str(error), icon=":material/warning:")
                return
            st.rerun()


def run_actions(run) -> None:
    """Open, download (metrics CSV, students' weights) and delete one run of the history."""
    from kdviz.views import run_view

    manager = core.run_manager()
    open_, csv, weights, delete = st.columns(4)
    if open_.button("Open", key=f"open-{run.id}"):
        st.query_params["run"] = run.id
        st.rerun()
    csv.download_button("Metrics (CSV)", lambda: run_view.metrics_csv(manager.store.read_events(run.id)),
                        f"kdviz-{run.id}.csv", "text/csv", key=f"csv-{run.id}", on_click="ignore",
                        help="Every step and epoch from the run's full log on disk.")
    students = manager.store.students_path(run.id)
    if students.is_file():
        weights.download_button("Students' weights", students.read_bytes, f"kdviz-{run.id}-students.pt",
                                key=f"weights-{run.id}", on_click="ignore")  # read only when clicked
    else:
        weights.caption("weights: only for completed runs")
    if delete.button("Delete", key=f"delete-{run.id}", disabled=not manager.owns(run, owner_id()),
                     help="Stops the run if it is live, then deletes it and its files."):
        try:
            manager.delete(run.id, owner_id())
        except PermissionError as error:
            st.error(str(error), icon=":material/block:")
            return
        if st.query_params.get("run") == run.id:
            del st.query_params["run"]
        st.rerun()


def removed_runs_notice() -> None:
    """Which of this browser's finished runs the server's disk quota removed (to make room for newer runs), until
    the browser dismisses the notice."""
    import time

    from kdviz.views import run_view

    manager = core.run_manager()
    removed = manager.removed_runs(owner_id())
    if not removed:
        return
    lines = "\n".join(f"- `{notice['run_id']}` · {run_view.describe_config(notice['config'])} "
                      f"(removed {time.strftime('%Y-%m-%d %H:%M', time.localtime(notice['removed_at']))})"
                      for notice in removed)
    with st.container(border=True):
        st.warning(f"This server keeps a limited amount of disk, so {len(removed)} of your oldest finished "
                   f"run{'s' * (len(removed) != 1)} were removed to make room for newer ones:\n{lines}\n\n"
                   "Download a run's metrics or weights from this list to keep them.", icon=":material/delete_sweep:")
        if st.button("Dismiss", key="removed_runs.dismiss"):
            manager.dismiss_removed(owner_id())
            st.rerun()


def start_sweep(manager, owner: str, config, parameter: str, text: str, address: str | None = None) -> str:
    """Queue one run per value, all or none (a refusal names the limit); returns the sweep id (every run is tagged
    with it)."""
    import secrets

    from kdviz.views import run_view

    values = run_view.parse_sweep_values(parameter, text)
    configs = run_view.sweep_configs(config, parameter, values)
    sweep_id = secrets.token_hex(4)
    manager.submit_many([(sweep_config, {"sweep": sweep_id, "parameter": parameter, "value": value})
                         for value, sweep_config in zip(values, configs)], owner, address)
    return sweep_id


def sweep_panel(sweep_id: str) -> None:
    runs = core.run_manager().runs_tagged("sweep", sweep_id)
    if any(run.live for run in runs):
        _live_sweep(sweep_id)
    else:
        _draw_sweep(runs)


@st.fragment(run_every=1.0)
def _live_sweep(sweep_id: str) -> None:
    runs = core.run_manager().runs_tagged("sweep", sweep_id)
    if not any(run.live for run in runs):
        st.rerun()
    _draw_sweep(runs)


def _draw_sweep(runs) -> None:
    from kdviz.views import run_charts, run_view

    if not runs:
        st.warning("This sweep has no runs on this server.")
        return
    parameter = runs[0].tags["parameter"]
    name = run_view.SWEEP_PARAMETERS[parameter]
    done = sum(not run.live for run in runs)
    st.progress(done / len(runs), text=f"sweep over {name}: {done} of {len(runs)} runs finished")
    frame = run_view.sweep_frame(runs)
    if not len(frame):
        return
    best = run_view.best_on_validation(frame)
    st.plotly_chart(run_charts.sweep_chart(frame, name, lecture_mode(), None if best is None else best["value"]),
                    key="sweep-chart")
    (st.info if best is None else st.success)(run_view.sweep_verdict(frame, parameter), icon=":material/rule:")
    table = frame.assign(**{column: 100 * frame[column] for column in ("hard_val", "kd_val", "hard", "kd")},
                         gain=100 * (frame["kd"] - frame["hard"]))
    st.dataframe(table.rename(columns={"value": parameter, "hard_val": "hard-label, validation (%)",
                                       "kd_val": "KD, validation (%)", "hard": "hard-label, test (%)",
                                       "kd": "KD, test (%)", "gain": "KD − hard, test (points)"}),
                 hide_index=True, column_config={column: st.column_config.NumberColumn(format="%.2f") for column in (
                     "hard-label, validation (%)", "KD, validation (%)", "hard-label, test (%)", "KD, test (%)",
                     "KD − hard, test (points)")})
    st.caption("The best value is chosen on validation only; its test accuracy is what to report.")
