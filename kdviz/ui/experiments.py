"""Experiments as background runs, for every page that has them (why it works, ensembles, compression): a form
checked against the server's budget, a Run button, the run's live progress (owner every OWNER_REDRAW_S, viewers every
VIEWER_REDRAW_S), a Stop that keeps what was measured, a read-only `?<experiment>=<run id>` link and the caller's
earlier runs. Each page family registers its experiments' form and results drawer with `register`."""
from __future__ import annotations

from typing import Callable

import streamlit as st

from kdviz.ui import core
from kdviz.ui.core import lecture_mode, owner_id
from kdviz.ui.runs import OWNER_REDRAW_S, VIEWER_REDRAW_S  # one redraw rate for every live run

FORMS: dict[str, Callable] = {}  # experiment name → form(module) → config (may raise ValueError)
RESULTS: dict[str, Callable] = {}  # experiment name → draw(run, points, summary, lecture)


def register(name: str, form: Callable, results: Callable) -> None:
    FORMS[name], RESULTS[name] = form, results


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
    if st.button(":material/play_arrow: Run the experiment", key=f"exp.run.{name}", type="primary",
                 disabled=config is None):
        try:
            st.query_params[name] = st.session_state[f"exp.{name}"] = core.run_manager().submit(
                config, owner_id(), address=core.client_address())
        except ValueError as error:
            st.error(str(error), icon=":material/warning:")
    run_id = st.query_params.get(name) or st.session_state.get(f"exp.{name}")
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
            if right.button("Open", key=f"exp.open.{run.id}"):
                st.query_params[name] = st.session_state[f"exp.{name}"] = run.id
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
        st.session_state["exp.refusal"] = str(error)


def _draw(name: str, run) -> None:
    from kdviz.views import experiments as views

    manager, lecture = core.run_manager(), lecture_mode()
    mine = manager.owns(run, owner_id())
    events = run.events
    st.subheader(f"Run {run.id}: {run.state}")
    if not mine:
        st.caption("Viewing a shared run (read-only).")
    if run.live:
        fraction, words = views.experiment_progress(events)
        position = manager.queue_position(run.id)
        st.progress(fraction, text=f"waiting in the queue: position {position}" if position else words)
        if mine:
            st.button(":material/stop: Stop (keeps what was measured)", key=f"exp.stop.{run.id}", on_click=_stop,
                      args=(run.id,))
    elif run.message:
        (st.error if run.state == "failed" else st.info)(run.message)
    refusal = st.session_state.pop("exp.refusal", None)
    if refusal:
        st.warning(refusal, icon=":material/block:")
    summary = run.summary if run.summary is not None and not run.live else None
    RESULTS[name](run, views.measured_points(events), summary, lecture)
