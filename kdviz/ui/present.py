"""Presenting the tour: who this browser is in it (alone, the lecturer, a follower, a follower exploring on their own),
the room's join link and QR code, a follower's poll, and predict-then-reveal questions with the hall's histogram."""
from __future__ import annotations

import dataclasses

import streamlit as st

from kdviz.ui import core
from kdviz.ui.core import lecture_mode, owner_id

DETACHED = "tour.detached"  # a follower exploring on their own: {room code: True}
HISTOGRAM_REDRAW_S = 1.0  # the lecturer's live histogram (one browser: cheap)


@dataclasses.dataclass(frozen=True)
class TourSession:
    """What this browser shows and may do: role is "alone", "presenter", "follower" or "detached" (a follower
    exploring on their own); state is the view shown (a follower's is the lecturer's); presentation the room."""

    role: str
    state: object  # kdviz.views.tour.TourState
    presentation: object = None  # kdviz.present.Presentation

    @property
    def moves(self) -> bool:
        """Whether this browser's controls change what it shows (a follower's are read-only)."""
        return self.role != "follower"


def resolve(state, notices: list[str]) -> TourSession:
    """The session's role from the URL's room (if any) and this browser's identity; a lecturer who reloads the page
    finds their presentation again. A room that does not exist or has ended adds a notice and the tour goes on alone."""
    from kdviz.present import hub
    from kdviz.views.tour import TourState

    identity = owner_id()
    try:
        presentation = hub().get(state.room) if state.room else hub().presenting(identity)
    except ValueError as error:  # the hall's shared hub is on a Ray cluster that cannot be reached or refuses us
        notices.append(f"Presenting is unavailable on this server ({error}). Showing the tour on your own.")
        return TourSession("alone", dataclasses.replace(state, room=None))
    if state.room and presentation is None:
        notices.append(f"There is no presentation {state.room!r} on this server: check the code on the lecturer's "
                       "screen. Showing the tour on your own.")
        return TourSession("alone", dataclasses.replace(state, room=None))
    if presentation is None:
        return TourSession("alone", state)
    if not presentation.live:
        notices.append(f"Presentation {presentation.code} has ended ({presentation.end_reason}). You can go on with "
                       "the tour on your own.")
        return TourSession("alone", dataclasses.replace(state, room=None))
    if presentation.presented_by(identity):
        if state.room != presentation.code or state.step != presentation.view.step:  # a reload: the room's view
            view = presentation.view
            state = TourState(view.step, view.temperature, view.alpha, presentation.code)
        return TourSession("presenter", state, presentation)
    if st.session_state.get(DETACHED, {}).get(presentation.code):
        return TourSession("detached", dataclasses.replace(state, room=presentation.code), presentation)
    view = presentation.view
    return TourSession("follower", TourState(view.step, view.temperature, view.alpha, presentation.code), presentation)


def start(state) -> None:
    """Start presenting this view (or pick up this browser's live presentation)."""
    from kdviz.present import View, hub

    try:
        core.client_address()  # a browser refused an identity (too many from its address) starts nothing here either
        presentation = hub().start(owner_id(), View(state.step, state.temperature, state.alpha))
    except ValueError as error:  # TooManyPresentations too
        st.session_state["tour.present_error"] = str(error)
        return
    st.session_state["tour.room"] = presentation.code


def push(session: TourSession, state, step_changed: bool) -> None:
    """The lecturer's new view goes to the room (a new step closes the question that was open)."""
    from kdviz.present import hub

    if session.role != "presenter":
        return
    code, identity = session.presentation.code, owner_id()
    hub().move(code, identity, step=state.step, temperature=state.temperature, alpha=state.alpha)
    if step_changed and session.presentation.view.question is not None:
        hub().ask(code, identity, None)


def follow_link(code: str) -> str:
    return f"{core.app_url('lecture')}?room={code}"


def presentation_bar(session: TourSession, state_setter) -> None:
    """The line above the tour: Present (alone), the room and its join link (lecturer), Explore on my own or Follow
    again (a follower)."""
    if session.role == "alone":
        left, right = st.columns([3, 1], vertical_alignment="center")
        left.caption("Presenting puts this tour on every phone in the hall: they follow your step, T and α, and answer "
                     "your questions.")
        if right.button(":material/cast: Present", key="tour.present", width="stretch",
                        help="Start a presentation: a room code, a follow link and its QR code for the screen."):
            start(session.state)
            st.rerun()
        error = st.session_state.pop("tour.present_error", None)
        if error:
            st.error(f"Cannot start a presentation: {error}.", icon=":material/cancel_presentation:")
        return
    code = session.presentation.code
    if session.role == "presenter":
        left, middle, right = st.columns([3, 1, 1], vertical_alignment="center")
        left.markdown(f":material/cast: **Presenting · room `{code}`** · the hall follows {follow_link(code)}")
        if middle.button(":material/qr_code_2: Join code", key="tour.join", width="stretch"):
            join_dialog(code)
        if right.button(":material/stop_circle: End", key="tour.end", width="stretch",
                        help="End the presentation: the follow link then says it has ended."):
            from kdviz.present import hub

            hub().end(code, owner_id())
            state_setter(room=None)
            st.rerun()
        return
    left, right = st.columns([3, 1], vertical_alignment="center")
    if session.role == "follower":
        left.markdown(f":material/sensors: **Following the lecturer** · room `{code}` · step {session.state.step}")
        if right.button(":material/explore: Explore on my own", key="tour.detach", width="stretch",
                        help="Your own controls, from this step; the lecturer's screen does not change."):
            st.session_state.setdefault(DETACHED, {})[code] = True
            state_setter(step=session.state.step, temperature=session.state.temperature, alpha=session.state.alpha)
            st.rerun()
    else:
        left.markdown(f":material/explore: **Exploring on your own** · room `{code}` is at step "
                      f"{session.presentation.view.step}")
        if right.button(":material/sensors: Follow again", key="tour.reattach", width="stretch"):
            st.session_state.setdefault(DETACHED, {}).pop(code, None)
            st.rerun()


@st.dialog("Follow this lecture on your phone", width="large")
def join_dialog(code: str) -> None:
    """The room code, the follow link and its QR code, big enough to read from the back of the hall."""
    import segno

    import io

    link = follow_link(code)
    png = io.BytesIO()
    segno.make(link, error="m").save(png, kind="png", scale=12, border=2, dark="#111827")  # segno's own PNG writer
    left, right = st.columns([1, 1], vertical_alignment="center")
    left.image(png.getvalue(), caption=f"QR code of {link}", width=420)
    right.markdown(f"Room `{code}`")  # the code big enough for the back row (our alphabet: nothing to escape)
    right.markdown(f"<p style='font-size:4.5rem;font-weight:700;letter-spacing:.18em;margin:0;line-height:1.1'>"
                   f"{code}</p>", unsafe_allow_html=True)
    right.markdown(f"Scan the code, or open\n\n**{link}**")
    right.caption("A follow link only shows: only this browser moves the presentation.")


def poll(session: TourSession, browser_follows: bool) -> None:
    """A follower's page reruns when the lecturer changes the step or a question (kdviz.routes polls the room)."""
    from kdviz.ui.tour_components import follow_poll

    if session.role == "follower":
        view = session.presentation.view
        follow_poll(session.presentation.code, session.presentation.version, view.to_dict(), browser_follows)


# ---- predict, then reveal ------------------------------------------------------------------------------------------

def _guess_control(question, key: str):
    """The guess widget, usable by touch: the options as a horizontal radio, a number on a slider (a share as 0–100 %);
    None until an option is picked."""
    if question.kind == "choice":
        return st.radio("Your guess", question.options, key=key, horizontal=True, index=None)
    if question.percent:
        return st.slider("Your guess (% of them)", 0, 100, 50, step=1, key=key) / 100
    return st.slider("Your guess", question.low, question.high, (question.low + question.high) / 2,
                     step=question.resolution, key=key, format="%.2f")


def question_block(session: TourSession, question, run=None) -> bool:
    """The step's question, before its answer shows: alone, the guess and then the answer beside it; in a
    presentation, the hall's guesses as a live histogram for the lecturer, revealed when the lecturer reveals it.
    Returns whether the answer may show (the step's view that gives it away is drawn only then)."""
    from kdviz.views import tour

    truth = tour.answer(question, run)
    with st.container(border=True, key=f"tour-question-{question.id}"):
        st.markdown(f"#### :material/psychology_alt: Predict: {question.prompt}")
        if session.role == "detached" and _seen_in_room(session, question):
            from kdviz.present import hub

            _answer_line(question, hub().my_guess(session.presentation.code, owner_id(), question.id), truth)
            return True
        if session.role in ("alone", "detached"):
            return _alone(question, truth)
        if session.role == "presenter":
            return _presenter(session, question, truth)
        return _follower(session, question, truth)


def _seen_in_room(session: TourSession, question) -> bool:
    """Whether a follower exploring on their own has already seen this question's answer revealed in the room."""
    view = session.presentation.view
    return view.question == question.id and view.revealed


def _alone(question, truth) -> bool:
    from kdviz.views import tour

    key = f"tour.guess.{question.id}"
    committed = st.session_state.get(key)
    if committed is None:
        value = _guess_control(question, f"{key}.widget")
        left, right = st.columns([1, 1])
        if left.button("Commit my guess", key=f"{key}.commit", type="primary", disabled=value is None,
                       width="stretch"):
            st.session_state[key] = tour.check_guess(question, value)
            st.rerun()
        if right.button("Skip: show me", key=f"{key}.skip", width="stretch"):
            st.session_state[key] = "skipped"
            st.rerun()
        return False
    _answer_line(question, None if committed == "skipped" else committed, truth)
    return True


def _answer_line(question, guess, truth) -> None:
    from kdviz.views import tour

    if truth is None:
        shown = "" if guess is None else f"Your guess: **{tour.format_guess(question, guess)}**. "
        st.info(f"{shown}The answer comes from a run on this server that has not finished yet.",
                icon=":material/hourglass_top:")
        return
    answer = f"**Answer: {tour.format_guess(question, truth.value, exact=True)}** ({truth.source})"
    if guess is None:
        st.success(answer, icon=":material/check:")
        return
    verdict = tour.how_far(question, guess, truth)
    right = verdict in ("right", "spot on")
    (st.success if right else st.warning)(f"Your guess: **{tour.format_guess(question, guess)}** · {answer} · "
                                          f"{verdict}", icon=":material/check:" if right else ":material/close:")


def _presenter(session: TourSession, question, truth) -> bool:
    from kdviz.present import hub

    view, code = session.presentation.view, session.presentation.code
    if view.question != question.id:
        st.caption("Ask the hall first: their guesses appear here as they come in; the answer stays hidden until "
                   "you reveal it.")
        if st.button(":material/campaign: Ask the hall", key=f"tour.ask.{question.id}", type="primary"):
            hub().ask(code, owner_id(), question.id)
            st.rerun()
        return False
    if view.revealed:
        _histogram(code, question, truth, revealed=True)
        _answer_line(question, None, truth)
        return True
    _live_histogram(code, question.id)
    if st.button(":material/visibility: Reveal the answer", key=f"tour.reveal.{question.id}", type="primary",
                 disabled=truth is None, help=None if truth else "The run that gives the answer has not finished."):
        hub().reveal(code, owner_id())
        st.rerun()
    return False


def _follower(session: TourSession, question, truth) -> bool:
    from kdviz.present import hub
    from kdviz.views import tour

    view, code, identity = session.presentation.view, session.presentation.code, owner_id()
    if view.question != question.id:
        st.caption("The lecturer has not asked this question yet: you will guess when they do.")
        return False
    mine = hub().my_guess(code, identity, question.id)
    if view.revealed:
        _answer_line(question, mine, truth)
        _histogram(code, question, truth, revealed=True)
        return True
    if mine is not None:
        st.info(f"Your guess: **{tour.format_guess(question, mine)}**. Waiting for the lecturer to reveal the answer "
                "(you can still change it).", icon=":material/hourglass_top:")
    value = _guess_control(question, f"tour.follow_guess.{question.id}")
    if st.button("Commit my guess" if mine is None else "Change my guess", key=f"tour.send.{question.id}",
                 type="primary", disabled=value is None, width="stretch"):
        try:
            hub().guess(code, identity, question.id, tour.check_guess(question, value))
        except ValueError as error:
            st.error(f"Your guess was not counted: {error}.", icon=":material/block:")
        else:
            st.rerun()
    return False


@st.fragment(run_every=HISTOGRAM_REDRAW_S)
def _live_histogram(code: str, question_id: str) -> None:
    from kdviz.present import hub
    from kdviz.views import tour

    presentation = hub().get(code)
    if presentation is None or not presentation.live or presentation.view.revealed:
        st.rerun()
    _histogram(code, tour.QUESTIONS[question_id], None, revealed=False)


def _histogram(code: str, question, truth, revealed: bool) -> None:
    from kdviz.present import hub
    from kdviz.views import tour

    guesses = hub().guesses(code, question.id)
    labels, counts = tour.histogram(question, guesses)
    marked = tour.histogram_bin(question, truth.value) if revealed and truth is not None else None
    st.plotly_chart(tour.histogram_chart(question, labels, counts, marked, lecture_mode()),
                    key=f"tour.histogram.{question.id}.{'revealed' if revealed else 'live'}",
                    config={"displayModeBar": False})  # its slide buttons are kdviz's own (tour_components)
    st.caption(f"{len(guesses)} guess{'es' if len(guesses) != 1 else ''} from the hall (anonymous, one per follower)"
               + ("" if revealed else "; the answer is hidden until you reveal it."))
