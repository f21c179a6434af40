"""The why-it-works page: each of the lecture's reasons as an experiment that runs in the background through the run
manager (the caller's identity, the server's budget), with live progress, a stop that keeps what was measured, and
a shareable read-only link."""
from __future__ import annotations

import dataclasses

import streamlit as st

from kdviz.ui import core
from kdviz.ui.core import lecture_mode, owner_id
from kdviz.ui.runs import OWNER_REDRAW_S, VIEWER_REDRAW_S  # one redraw rate for every live run

LIST_HELP = "Comma-separated, e.g. 1, 2, 4."


def _numbers(text: str, kind, what: str) -> tuple:
    """'1, 2, 4' → (1, 2, 4); ValueError naming the bad entry."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            values.append(kind(part))
        except ValueError:
            raise ValueError(f"{what}: {part!r} is not a{'n integer' if kind is int else ' number'}") from None
    if not values:
        raise ValueError(f"{what}: give at least one value")
    return tuple(values)


def _seed(key: str, default: int) -> int:
    return int(st.number_input("Seed", 0, 2**31 - 1, default, key=key,
                               help="Initial weights and batches; the CLI with --seeds gives the same numbers."))


def gradient_variance_form(module):
    base = module.default_config()
    left, middle, right = st.columns(3)
    epochs = left.text_input("Measure after epochs", ", ".join(map(str, base.epochs)), key="why.gv.epochs",
                             help="Epochs of the KD student's training at which both gradients are measured "
                                  "(0: the untrained student). " + LIST_HELP)
    temperatures = middle.text_input("Temperatures T", ", ".join(f"{t:g}" for t in base.temperatures),
                                     key="why.gv.temperatures", help="Of the soft term T²·KL. " + LIST_HELP)
    batch = right.number_input("Mini-batch size", 1, 4096, base.batch_size, key="why.gv.batch",
                               help="The batch size whose gradient noise is reported (a control: noise ∝ 1/B).")
    seed = _seed("why.gv.seed", base.distill.seed)
    return dataclasses.replace(base, epochs=_numbers(epochs, int, "epochs"),
                               temperatures=_numbers(temperatures, float, "temperatures"), batch_size=int(batch),
                               distill=dataclasses.replace(base.distill, seed=seed))


def missing_class_form(module):
    base = module.default_config()
    left, right = st.columns(2)
    omitted = left.number_input("Digit left out of the students' training", -100, 100, base.omitted,
                                key="why.mc.omitted", help="Every training image of this digit is removed.")
    with right:
        seed = _seed("why.mc.seed", base.distill.seed)
    return dataclasses.replace(base, omitted=int(omitted), distill=dataclasses.replace(base.distill, seed=seed))


def capacity_form(module):
    base = module.default_config()
    left, right = st.columns(2)
    widths = left.text_input("Student widths", ", ".join(map(str, base.widths)), key="why.cap.widths",
                             help="Hidden units per layer of the students. " + LIST_HELP)
    subsets = right.text_input("Training images (0 = all)", ", ".join(map(str, base.train_subsets)),
                               key="why.cap.subsets", help=LIST_HELP)
    seed = _seed("why.cap.seed", base.distill.seed)
    return dataclasses.replace(base, widths=_numbers(widths, int, "widths"),
                               train_subsets=_numbers(subsets, int, "training images"),
                               distill=dataclasses.replace(base.distill, seed=seed))


FORMS = {"gradient-variance": gradient_variance_form, "missing-class": missing_class_form, "capacity": capacity_form}


def experiment_tab(name: str) -> None:
    """One experiment: its settings, a Run button (checked against the server's budget first), and its run."""
    from kdviz import experiments

    try:
        module = experiments.experiment(name)
    except ImportError:
        st.info("This experiment is not built yet.", icon=":material/construction:")
        return
    problem = None
    try:
        config = module.check(FORMS[name](module))
        core.run_manager().check(config)
    except ValueError as error:
        config, problem = None, f"This setting cannot run: {error}"
    if problem:
        st.error(problem, icon=":material/warning:")
    if st.button(":material/play_arrow: Run the experiment", key=f"why.run.{name}", type="primary",
                 disabled=config is None):
        try:
            st.query_params[name] = st.session_state[f"why.{name}"] = core.run_manager().submit(
                config, owner_id(), address=core.client_address())
        except ValueError as error:
            st.error(str(error), icon=":material/warning:")
    run_id = st.query_params.get(name) or st.session_state.get(f"why.{name}")
    if run_id:
        experiment_panel(name, run_id)
    _history(name, run_id)


def _history(name: str, shown: str | None) -> None:
    """The caller's earlier runs of this experiment (kept on disk, across restarts)."""
    runs = [run for run in core.run_manager().list_runs(owner_id()) if run.experiment == name and run.id != shown]
    if not runs:
        return
    with st.expander(f"Your earlier runs of this experiment ({len(runs)})"):
        for run in runs[:20]:
            left, right = st.columns([4, 1])
            left.markdown(f"`{run.id}` · {run.state}")
            if right.button("Open", key=f"why.open.{run.id}"):
                st.query_params[name] = st.session_state[f"why.{name}"] = run.id
                st.rerun()


def experiment_panel(name: str, run_id: str) -> None:
    manager = core.run_manager()
    run = manager.get(run_id)
    if run is None or run.experiment != name:
        st.warning(f"There is no {name} run {run_id!r} on this server.", icon=":material/search_off:")
        return
    if not run.live:
        _draw(name, run)
    elif manager.owns(run, owner_id()):
        _live_owner(name, run_id)
    else:
        _live_viewer(name, run_id)


def _live(name: str, run_id: str) -> None:
    run = core.run_manager().get(run_id)
    if run is None or not run.live:
        st.rerun()
    _draw(name, run)


@st.fragment(run_every=OWNER_REDRAW_S)
def _live_owner(name: str, run_id: str) -> None:
    _live(name, run_id)


@st.fragment(run_every=VIEWER_REDRAW_S)
def _live_viewer(name: str, run_id: str) -> None:
    _live(name, run_id)


def _stop(run_id: str) -> None:
    try:
        core.run_manager().cancel(run_id, owner_id())
    except PermissionError as error:
        st.session_state["why.refusal"] = str(error)


def _draw(name: str, run) -> None:
    from kdviz.views import why

    manager, lecture = core.run_manager(), lecture_mode()
    mine = manager.owns(run, owner_id())
    events = run.events
    st.subheader(f"Run {run.id}: {run.state}")
    if not mine:
        st.caption("Viewing a shared run (read-only).")
    if run.live:
        fraction, words = why.experiment_progress(events)
        position = manager.queue_position(run.id)
        st.progress(fraction, text=f"waiting in the queue: position {position}" if position else words)
        if mine:
            st.button(":material/stop: Stop (keeps what was measured)", key=f"why.stop.{run.id}", on_click=_stop,
                      args=(run.id,))
    elif run.message:
        (st.error if run.state == "failed" else st.info)(run.message)
    refusal = st.session_state.pop("why.refusal", None)
    if refusal:
        st.warning(refusal, icon=":material/block:")
    summary = run.summary if run.summary is not None and not run.live else None
    RESULTS[name](run, why.measured_points(events), summary, lecture)


def _gradient_variance(run, points, summary, lecture) -> None:
    from kdviz.experiments import gradient_variance
    from kdviz.views import why

    points = summary["points"] if summary else points
    if not points:
        return
    st.plotly_chart(why.gradient_variance_chart(points, lecture), key=f"why.gv.chart.{run.id}")
    if summary:
        rows = gradient_variance.summarise([summary])
        agrees = all(row["soft_lower"] == row["n_seeds"] for row in rows)
        (st.success if agrees else st.warning)(gradient_variance.verdict(rows), icon=":material/rule:")
    st.dataframe(why.gradient_variance_table(points), hide_index=True,
                 column_config={key: st.column_config.NumberColumn(format="%.3g")
                                for key in ("hard (CE)", "soft (T²·KL)", "soft ÷ hard")})
    st.caption("One seed here; `python -m kdviz experiment gradient-variance --seeds 0 1 2 3 4` gives the same "
               "numbers for this seed and the spread over five.")


def _missing_class(run, points, summary, lecture) -> None:
    from kdviz.views import why

    if not summary:
        return
    st.plotly_chart(why.missing_class_chart(summary, lecture), key=f"why.mc.chart.{run.id}")
    kd = summary.get("kd") or summary.get("hard")
    if kd and "val_curve" in kd:
        grid = kd["val_curve"]["shift"]
        shift = st.select_slider("Bias shift of the omitted digit (try it)", grid, value=min(
            grid, key=lambda s: abs(s - kd["bias_shift"])), key=f"why.mc.shift.{run.id}",
            format_func=lambda s: f"{s:+g}", help="Added to the omitted digit's logit; validation accuracies "
                                                   "below. The numbers reported on test use the shift chosen on "
                                                   "validation.")
        st.plotly_chart(why.missing_class_curves(summary, shift, lecture), key=f"why.mc.curves.{run.id}")
        words = []
        for role, name in (("hard", "hard-label"), ("kd", "KD")):
            if role in summary and "val_curve" in summary[role]:
                here = why.at_shift(summary[role]["val_curve"], shift)
                words.append(f"{name} student: digit {summary['omitted']} {here['omitted_accuracy']:.1%}, all "
                             f"digits {here['accuracy']:.1%}")
        st.caption(f"At a shift of {shift:+g} (validation): " + "; ".join(words) + ".")
    for role, name in (("hard", "hard-label student"), ("kd", "KD student")):
        facts = summary.get(role)
        if facts:
            st.markdown(f"**{name}**: digit {summary['omitted']} {facts['omitted_accuracy_before']:.1%} → "
                        f"{facts['omitted_accuracy_after']:.1%} of its test images right after raising its output "
                        f"bias by {facts['bias_shift']:+.2f} (chosen on validation); all digits "
                        f"{facts['accuracy_before']:.1%} → {facts['accuracy_after']:.1%}.")


def _capacity(run, points, summary, lecture) -> None:
    from kdviz.views import why

    rows = summary["rows"] if summary else points
    if not rows:
        return
    left, right = st.columns(2)
    size, data = why.capacity_charts(rows, (summary or {}).get("teacher"), lecture)
    left.plotly_chart(size, key=f"why.cap.size.{run.id}")
    right.plotly_chart(data, key=f"why.cap.data.{run.id}")
    st.dataframe(rows, hide_index=True)


RESULTS = {"gradient-variance": _gradient_variance, "missing-class": _missing_class, "capacity": _capacity}
