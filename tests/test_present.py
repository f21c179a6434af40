"""kdviz.present: presentations a hall follows — every state and refusal, time-outs on a fake clock, bounds, threads,
and a Hypothesis state machine against a simple model."""
from __future__ import annotations

import itertools
import json
import threading
import timeit

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, precondition, rule

from kdviz.core.identity import owner_key
from kdviz.present import (
    CODE_ALPHABET,
    GuessBook,
    Hub,
    HubSettings,
    NoSuchPresentation,
    NotPresenter,
    Presentation,
    PresentationEnded,
    PresenterCannotGuess,
    TooManyGuesses,
    TooManyPresentations,
    View,
    check_guess,
    hub,
    normalize_code,
    reset_hub,
    settings_from_environment,
)
from tests.strategies import guess_values, malformed_codes, presentation_views, room_codes

LECTURER, OTHER_LECTURER = "lecturer-secret-1", "lecturer-secret-2"
STUDENTS = [f"student-secret-{i}" for i in range(5)]
HOUR = 3600.0


class FakeClock:
    """time.time for tests: it moves only when told."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def codes_from(*codes: str):
    """A new_code that hands out these codes in order (to make a collision happen on purpose)."""
    return iter(codes).__next__


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_hub(clock):
    def make(**overrides) -> Hub:
        return Hub(clock=clock, **overrides)
    return make


@pytest.fixture
def room(make_hub):
    """A hub with one presentation of LECTURER's at step 1: (hub, code)."""
    presentations = make_hub()
    return presentations, presentations.start(LECTURER).code


# ---- starting ------------------------------------------------------------------------------------------------------

def test_a_presentation_starts_with_a_short_unambiguous_code_and_the_view(make_hub, clock):
    presentation = make_hub().start(LECTURER, View(step=3, temperature=4, alpha=0.5))
    assert len(presentation.code) == 5 and set(presentation.code) <= set(CODE_ALPHABET)
    assert not set("01IOL") & set(CODE_ALPHABET)
    assert presentation.view == View(step=3, temperature=4.0, alpha=0.5)
    assert (presentation.version, presentation.guess_version, presentation.live) == (1, 0, True)
    assert presentation.created == presentation.last_change == clock.now
    assert presentation.presenter_key == owner_key(LECTURER) and LECTURER not in repr(presentation)
    assert presentation.presented_by(LECTURER) and not presentation.presented_by(OTHER_LECTURER)


def test_codes_are_unique_over_many_starts(make_hub):
    presentations = make_hub(max_rooms=3000)
    codes = [presentations.start(f"lecturer-{i}").code for i in range(3000)]
    assert len(set(codes)) == len(codes)
    assert all(normalize_code(code) == code for code in codes)


def test_a_code_in_use_or_remembered_is_never_drawn_again(make_hub):
    presentations = make_hub(new_code=codes_from("AAAAA", "AAAAA", "BBBBB", "AAAAA", "BBBBB", "CCCCC"))
    assert presentations.start(LECTURER).code == "AAAAA"
    assert presentations.start(OTHER_LECTURER).code == "BBBBB"  # AAAAA is live
    presentations.end("AAAAA", LECTURER)
    presentations.end("BBBBB", OTHER_LECTURER)
    assert presentations.start(LECTURER).code == "CCCCC"  # AAAAA and BBBBB are remembered as ended


def test_a_code_source_that_only_repeats_itself_is_reported(make_hub):
    presentations = make_hub(new_code=lambda: "AAAAA")
    presentations.start(LECTURER)
    with pytest.raises(RuntimeError, match="free room code"):
        presentations.start(OTHER_LECTURER)


@pytest.mark.parametrize("identity", [None, "", 42])
def test_presenting_needs_an_identity(make_hub, identity):
    with pytest.raises(ValueError, match="identity"):
        make_hub().start(identity)


def test_start_takes_only_a_view(make_hub):
    with pytest.raises(ValueError, match="view must be a View"):
        make_hub().start(LECTURER, {"step": 1})


# ---- the view ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value", [
    ("step", 0), ("step", 1000), ("step", 1.5), ("step", True), ("step", "3"), ("step", None),
    ("temperature", 0), ("temperature", -1.0), ("temperature", float("nan")), ("temperature", float("inf")),
    ("temperature", "4"), ("temperature", True),
    ("alpha", -0.1), ("alpha", 1.01), ("alpha", float("nan")), ("alpha", None),
    ("question", ""), ("question", "Teacher-Cat"), ("question", "../x"), ("question", "q" * 41), ("question", 3),
    ("run_id", "run 1"), ("run_id", "r" * 41), ("run_id", b"run"),
    ("revealed", "yes"), ("revealed", 1),
])
def test_a_bad_view_value_is_refused_by_name(name, value):
    with pytest.raises(ValueError, match=name):
        View(**{name: value, "question": "q"} if name == "revealed" else {name: value})


def test_revealed_needs_a_question():
    with pytest.raises(ValueError, match="revealed needs an open question"):
        View(revealed=True)


def test_a_view_takes_numbers_of_any_kind_and_keeps_plain_python_ones():
    view = View(step=np.int64(4), temperature=np.float32(2.5), alpha=1)
    assert (view.step, view.temperature, view.alpha) == (4, 2.5, 1.0)
    assert [type(value) for value in (view.step, view.temperature, view.alpha)] == [int, float, float]
    assert json.loads(json.dumps(view.to_dict())) == view.to_dict()


@given(presentation_views())
def test_every_valid_view_round_trips_through_json(view):
    assert View(**json.loads(json.dumps(view.to_dict()))) == view


# ---- moving, and followers polling ---------------------------------------------------------------------------------

def test_a_move_bumps_the_version_and_the_poll_sees_it(room):
    presentations, code = room
    nothing_new = presentations.poll(code, 1)
    assert (nothing_new.state, nothing_new.version, nothing_new.changed, nothing_new.view) == ("live", 1, False, None)
    moved = presentations.move(code, LECTURER, step=5, temperature=4.0)
    assert (moved.version, moved.view.step, moved.view.temperature) == (2, 5, 4.0)
    poll = presentations.poll(code, 1)
    assert poll.changed and poll.version == 2 and poll.view == moved.view.to_dict()
    assert not presentations.poll(code, 2).changed and presentations.poll(code, 2).view is None


def test_a_first_poll_gets_the_whole_view(room):
    presentations, code = room
    poll = presentations.poll(code)
    assert poll.changed and poll.view == View().to_dict()


def test_a_move_that_changes_nothing_keeps_the_version(room, clock):
    presentations, code = room
    clock.advance(10)
    presentations.move(code, LECTURER, step=1)
    presentation = presentations.get(code)
    assert presentation.version == 1 and presentation.last_change == clock.now  # the lecturer is there, though


def test_a_bad_move_is_refused_and_changes_nothing(room):
    presentations, code = room
    for changes in ({"step": 0}, {"temperature": -1}, {"alpha": 2}, {"run_id": "Run!"}):
        with pytest.raises(ValueError, match=next(iter(changes))):
            presentations.move(code, LECTURER, **changes)
    assert presentations.get(code).version == 1 and presentations.get(code).view == View()


def test_a_run_is_shown_and_hidden_again(room):
    presentations, code = room
    assert presentations.move(code, LECTURER, run_id="run-7").view.run_id == "run-7"
    assert presentations.move(code, LECTURER, step=2).view.run_id == "run-7"  # not named: kept
    assert presentations.move(code, LECTURER, run_id=None).view.run_id is None
    assert presentations.get(code).version == 4


def test_move_takes_only_the_view_fields_it_names(room):
    presentations, code = room
    with pytest.raises(TypeError):
        presentations.move(code, LECTURER, question="kd-wins")  # a question is opened with ask()


def test_followers_find_it_by_code_in_any_case_and_with_spaces(room):
    presentations, code = room
    for typed in (code, code.lower(), f"  {code[:2]} {code[2:].lower()}  ", f"{code}\n"):
        assert presentations.get(typed).code == code
        assert presentations.poll(typed, 1).state == "live"


@pytest.mark.parametrize("code", ["", "abc", "../x", "A" * 100, None, 12345, "ABCD0", "AAAAAA", "ZZZZZ"])
def test_a_malformed_or_unknown_code_is_unknown(room, code):
    presentations, _ = room
    assert presentations.get(code) is None
    poll = presentations.poll(code, 3)
    assert (poll.state, poll.version, poll.changed, poll.view) == ("unknown", 0, True, None)
    assert not presentations.poll(code, 0).changed
    assert json.loads(json.dumps(presentations.poll_dict(code, 3)))["state"] == "unknown"
    assert presentations.guesses(code, "kd-wins") == [] and presentations.my_guess(code, STUDENTS[0], "q") is None
    with pytest.raises(NoSuchPresentation, match="no presentation"):
        presentations.move(code, LECTURER, step=2)


@given(malformed_codes())
def test_no_input_makes_a_poll_raise(code):
    assert Hub().poll(code, 0).state == "unknown"


@given(room_codes())
def test_a_code_typed_in_lower_case_with_spaces_is_the_code(code):
    assert normalize_code(" ".join(code.lower())) == code


def test_poll_dict_is_json_with_the_view_when_it_changed(room):
    presentations, code = room
    answer = json.loads(json.dumps(presentations.poll_dict(code, 0)))
    assert answer == {"state": "live", "version": 1, "changed": True, "view": View().to_dict(), "end_reason": None}


# ---- only the presenter moves it -----------------------------------------------------------------------------------

OPERATIONS = {
    "move": lambda presentations, code, identity: presentations.move(code, identity, step=2),
    "ask": lambda presentations, code, identity: presentations.ask(code, identity, "kd-wins"),
    "reveal": lambda presentations, code, identity: presentations.reveal(code, identity),
    "end": lambda presentations, code, identity: presentations.end(code, identity),
}


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("identity", [OTHER_LECTURER, STUDENTS[0], None, ""])
def test_nobody_but_the_presenter_changes_it(room, operation, identity):
    presentations, code = room
    presentations.ask(code, LECTURER, "kd-wins")
    before = presentations.get(code)
    with pytest.raises(NotPresenter, match=f"only the lecturer who started presentation {code} can change it; "
                                           "you are following it"):
        OPERATIONS[operation](presentations, code, identity)
    assert presentations.get(code) == before


def test_refusals_are_the_builtin_kinds_a_page_catches():
    assert issubclass(NotPresenter, PermissionError) and issubclass(TooManyPresentations, ValueError)
    assert all(issubclass(refusal, ValueError) for refusal in (PresenterCannotGuess, TooManyGuesses))
    assert all(issubclass(refusal, LookupError) and issubclass(refusal, ValueError)
               for refusal in (NoSuchPresentation, PresentationEnded))


# ---- the presenter's reload, and several presentations -------------------------------------------------------------

def test_a_lecturer_who_reloads_gets_their_presentation_back(room, clock):
    presentations, code = room
    presentations.move(code, LECTURER, step=6)
    assert presentations.presenting(LECTURER).code == code
    assert presentations.presenting(OTHER_LECTURER) is None and presentations.presenting(None) is None
    clock.advance(60)
    again = presentations.start(LECTURER, View(step=1))  # one live presentation per lecturer: the same one
    assert again.code == code and again.view.step == 6 and again.version == 2 and again.last_change == clock.now


def test_several_presentations_run_at_once(make_hub):
    presentations = make_hub()
    first, second = presentations.start(LECTURER), presentations.start(OTHER_LECTURER)
    assert first.code != second.code
    presentations.move(first.code, LECTURER, step=4)
    presentations.move(second.code, OTHER_LECTURER, temperature=8.0)
    with pytest.raises(NotPresenter):
        presentations.move(first.code, OTHER_LECTURER, step=9)
    assert presentations.get(first.code).view == View(step=4)
    assert presentations.get(second.code).view == View(temperature=8.0)
    assert presentations.presenting(OTHER_LECTURER).code == second.code


# ---- questions and guesses -----------------------------------------------------------------------------------------

def test_one_guess_per_follower_per_question_replaced_until_the_reveal(room):
    presentations, code = room
    presentations.ask(code, LECTURER, "teacher-cat")
    assert presentations.guess(code, STUDENTS[0], "teacher-cat", 0.25) == 0.25
    presentations.guess(code, STUDENTS[1], "teacher-cat", 0.5)
    presentations.guess(code, STUDENTS[0], "teacher-cat", 0.125)  # changed their mind
    assert sorted(presentations.guesses(code, "teacher-cat")) == [0.125, 0.5]
    assert presentations.my_guess(code, STUDENTS[0], "teacher-cat") == 0.125
    assert presentations.my_guess(code, STUDENTS[2], "teacher-cat") is None
    revealed = presentations.reveal(code, LECTURER)
    assert revealed.view.revealed and revealed.view.question == "teacher-cat"
    with pytest.raises(ValueError, match="the answer is already revealed"):
        presentations.guess(code, STUDENTS[1], "teacher-cat", 0.9)
    with pytest.raises(ValueError, match="the answer is already revealed"):
        presentations.guess(code, STUDENTS[3], "teacher-cat", 0.9)
    assert sorted(presentations.guesses(code, "teacher-cat")) == [0.125, 0.5]


def test_guesses_are_anonymous_and_kept_per_question(room):
    presentations, code = room
    presentations.ask(code, LECTURER, "student-pick")
    presentations.guess(code, STUDENTS[0], "student-pick", "cat")
    presentations.ask(code, LECTURER, "kd-wins")
    presentations.guess(code, STUDENTS[0], "kd-wins", " yes ")
    assert presentations.guesses(code, "student-pick") == ["cat"]
    assert presentations.guesses(code, "kd-wins") == ["yes"]
    assert presentations.guesses(code, "never-asked") == []
    assert owner_key(STUDENTS[0]) not in json.dumps(presentations.guesses(code, "kd-wins"))


def test_a_guess_at_a_question_that_is_not_open_is_refused(room):
    presentations, code = room
    with pytest.raises(ValueError, match="is not open.*none"):
        presentations.guess(code, STUDENTS[0], "kd-wins", "yes")
    presentations.ask(code, LECTURER, "student-pick")
    with pytest.raises(ValueError, match="question kd-wins is not open.*student-pick"):
        presentations.guess(code, STUDENTS[0], "kd-wins", "yes")
    presentations.ask(code, LECTURER, None)
    with pytest.raises(ValueError, match="not open"):
        presentations.guess(code, STUDENTS[0], "student-pick", "cat")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, None, "", "   ", "x" * 41, "a\x00b", [1], {}])
def test_a_bad_guess_is_refused(room, value):
    presentations, code = room
    presentations.ask(code, LECTURER, "kd-wins")
    with pytest.raises(ValueError, match="a guess must be a finite number or a text"):
        presentations.guess(code, STUDENTS[0], "kd-wins", value)
    assert presentations.guesses(code, "kd-wins") == []


@given(guess_values())
def test_every_acceptable_guess_is_kept_as_checked(value):
    presentations = Hub()
    code = presentations.start(LECTURER).code
    presentations.ask(code, LECTURER, "q")
    assert presentations.guess(code, STUDENTS[0], "q", value) == check_guess(value)
    assert presentations.guesses(code, "q") == [check_guess(value)]


@pytest.mark.parametrize("identity", [None, ""])
def test_a_guess_needs_a_follower(room, identity):
    presentations, code = room
    presentations.ask(code, LECTURER, "kd-wins")
    with pytest.raises(ValueError, match="identity"):
        presentations.guess(code, identity, "kd-wins", "yes")


def test_the_lecturer_cannot_guess_at_their_own_question(room):
    presentations, code = room
    presentations.ask(code, LECTURER, "kd-wins")
    with pytest.raises(PresenterCannotGuess, match="lecturer knows the answer"):
        presentations.guess(code, LECTURER, "kd-wins", "yes")
    assert presentations.guesses(code, "kd-wins") == []


def test_a_question_takes_at_most_max_guesses_followers(make_hub):
    presentations = make_hub(max_guesses_per_question=3)
    code = presentations.start(LECTURER).code
    presentations.ask(code, LECTURER, "q")
    for student in STUDENTS[:3]:
        presentations.guess(code, student, "q", 1.0)
    with pytest.raises(TooManyGuesses, match="already has 3 guesses"):
        presentations.guess(code, STUDENTS[3], "q", 2.0)
    presentations.guess(code, STUDENTS[0], "q", 5.0)  # one who guessed may still change it
    assert sorted(presentations.guesses(code, "q")) == [1.0, 1.0, 5.0]


def test_a_guess_bumps_guess_version_not_version(room):
    presentations, code = room
    version = presentations.ask(code, LECTURER, "q").version
    for number, student in enumerate(STUDENTS, start=1):
        presentations.guess(code, student, "q", 0.5)
        presentation = presentations.get(code)
        assert (presentation.version, presentation.guess_version) == (version, number)
    assert not presentations.poll(code, version).changed  # followers do not rerun on other people's guesses


def test_reveal_needs_an_open_question(room):
    presentations, code = room
    with pytest.raises(ValueError, match="no question is open"):
        presentations.reveal(code, LECTURER)


def test_ask_takes_only_a_question_id(room):
    presentations, code = room
    with pytest.raises(ValueError, match="question"):
        presentations.ask(code, LECTURER, "Which class?")


def test_a_revealed_question_asked_again_stays_revealed(room):
    presentations, code = room
    presentations.ask(code, LECTURER, "q")
    presentations.guess(code, STUDENTS[0], "q", 0.5)
    presentations.reveal(code, LECTURER)
    presentations.ask(code, LECTURER, "r")
    assert not presentations.get(code).view.revealed
    assert presentations.ask(code, LECTURER, "q").view.revealed  # the hall has seen the answer
    with pytest.raises(ValueError, match="already revealed"):
        presentations.guess(code, STUDENTS[1], "q", 0.5)
    assert presentations.guesses(code, "q") == [0.5]


def test_asking_the_open_question_again_changes_nothing(room):
    presentations, code = room
    version = presentations.ask(code, LECTURER, "q").version
    assert presentations.ask(code, LECTURER, "q").version == version
    assert presentations.reveal(code, LECTURER).version == version + 1
    assert presentations.reveal(code, LECTURER).version == version + 1


def test_a_presentation_keeps_the_guesses_of_its_last_questions_only(make_hub):
    presentations = make_hub(max_questions=2)
    code = presentations.start(LECTURER).code
    for question in ("q-1", "q-2", "q-3"):
        presentations.ask(code, LECTURER, question)
        presentations.guess(code, STUDENTS[0], question, 1.0)
    assert [presentations.guesses(code, question) for question in ("q-1", "q-2", "q-3")] == [[], [1.0], [1.0]]


def test_guess_book_round_trips_through_json():
    book = GuessBook(max_per_question=10, max_questions=4)
    book.ask("q")
    book.add("q", "follower-a", 0.5)
    book.add("q", "follower-b", "cat")
    book.reveal("q")
    copy = GuessBook.from_dict(json.loads(json.dumps(book.to_dict())), 10, 4)
    assert copy.to_dict() == book.to_dict() and copy.values("q") == [0.5, "cat"]


# ---- ending --------------------------------------------------------------------------------------------------------

def test_the_lecturer_ends_it_and_the_hall_is_told_why(room, clock):
    presentations, code = room
    presentations.ask(code, LECTURER, "q")
    presentations.guess(code, STUDENTS[0], "q", 0.5)
    clock.advance(5)
    ended = presentations.end(code, LECTURER)
    assert (ended.live, ended.ended_at, ended.end_reason, ended.version) == (False, clock.now, "the lecturer ended it",
                                                                             3)
    poll = presentations.poll(code, 2)
    assert (poll.state, poll.version, poll.changed, poll.view, poll.end_reason) == \
        ("ended", 3, True, None, "the lecturer ended it")
    assert presentations.poll_dict(code.lower(), 3) == {"state": "ended", "version": 3, "changed": False,
                                                        "view": None, "end_reason": "the lecturer ended it"}
    assert presentations.get(code) == ended and presentations.presenting(LECTURER) is None
    assert presentations.guesses(code, "q") == [] and presentations.my_guess(code, STUDENTS[0], "q") is None
    for operation in ("move", "ask", "reveal"):
        with pytest.raises(PresentationEnded, match="has ended: the lecturer ended it"):
            OPERATIONS[operation](presentations, code, LECTURER)
    with pytest.raises(PresentationEnded):
        presentations.guess(code, STUDENTS[0], "q", 0.5)
    assert presentations.end(code, LECTURER) == ended  # a second click is harmless
    with pytest.raises(NotPresenter):
        presentations.end(code, STUDENTS[0])
    assert presentations.start(LECTURER).code != code  # a new presentation, with a new code


def test_ending_an_unknown_presentation_says_so(make_hub):
    with pytest.raises(NoSuchPresentation, match="no presentation ZZZZZ"):
        make_hub().end("zzzzz", LECTURER)


# ---- time-outs -----------------------------------------------------------------------------------------------------

def test_a_presentation_times_out_after_two_hours_without_a_change(room, clock):
    presentations, code = room
    started = clock.now
    clock.advance(HOUR)
    presentations.move(code, LECTURER, step=2)  # the lecturer is still there
    clock.advance(2 * HOUR - 1)
    assert presentations.poll(code, 2).state == "live"
    presentations.ask(code, LECTURER, "q")
    clock.advance(HOUR)
    for student in STUDENTS:  # the hall's guesses do not keep it alive
        presentations.guess(code, student, "q", 0.5)
    clock.advance(HOUR)
    poll = presentations.poll(code, 3)
    assert (poll.state, poll.end_reason) == ("ended", "it timed out after 2 h without a change")
    assert presentations.get(code).ended_at == started + 5 * HOUR - 1  # when it timed out, not when someone looked
    assert presentations.presenting(LECTURER) is None


def test_a_presentation_ends_after_ten_hours_however_busy(room, clock):
    presentations, code = room
    started = clock.now
    for step in range(2, 12):
        clock.advance(HOUR - 1)
        presentations.move(code, LECTURER, step=step)
    clock.advance(10)
    ended = presentations.get(code)
    assert (ended.live, ended.ended_at) == (False, started + 10 * HOUR)
    assert ended.end_reason == "it ran for 10 h, the longest one may run"
    with pytest.raises(PresentationEnded, match="10 h"):
        presentations.move(code, LECTURER, step=1)


def test_expire_sweeps_every_presentation_whose_time_is_up(make_hub, clock):
    presentations = make_hub(idle_timeout_s=100)
    first, second = presentations.start(LECTURER), presentations.start(OTHER_LECTURER)
    clock.advance(50)
    presentations.move(second.code, OTHER_LECTURER, step=2)
    clock.advance(50)
    assert presentations.expire() == [first.code]
    assert presentations.get(first.code).end_reason == "it timed out after 1.67 min without a change"
    clock.advance(60)
    assert presentations.expire() == [second.code] and presentations.expire() == []


def test_a_timed_out_presentation_frees_its_place_and_its_lecturer(make_hub, clock):
    presentations = make_hub(max_rooms=1, idle_timeout_s=60)
    first = presentations.start(LECTURER)
    clock.advance(60)
    second = presentations.start(OTHER_LECTURER)  # the start sweeps first: the timed-out one takes no place
    assert presentations.get(first.code).end_reason.startswith("it timed out")
    clock.advance(60)
    assert presentations.start(LECTURER).code not in (first.code, second.code)


# ---- bounds --------------------------------------------------------------------------------------------------------

def test_the_server_runs_at_most_max_rooms_presentations(make_hub):
    presentations = make_hub(max_rooms=3)
    codes = [presentations.start(f"lecturer-{i}").code for i in range(3)]
    with pytest.raises(TooManyPresentations, match="3 presentations are running"):
        presentations.start(OTHER_LECTURER)
    assert presentations.start("lecturer-0").code == codes[0]  # a reload still finds its own
    presentations.end(codes[1], "lecturer-1")
    assert presentations.start(OTHER_LECTURER).live


def test_ended_presentations_are_remembered_in_a_bounded_lru(make_hub):
    presentations = make_hub(remembered_ended=3)
    codes = []
    for number in range(5):
        code = presentations.start(LECTURER).code
        presentations.end(code, LECTURER)
        codes.append(code)
        if number == 2:
            presentations.poll(codes[0], 0)  # someone still opens the first link: it stays remembered
    assert [presentations.poll(code, 0).state for code in codes] == ["ended", "unknown", "unknown", "ended", "ended"]


@pytest.mark.parametrize("overrides, message", [
    ({"max_rooms": 0}, "max_rooms must be an integer >= 1, got 0"),
    ({"max_rooms": 2.5}, "max_rooms must be an integer >= 1"),
    ({"idle_timeout_s": -1}, "idle_timeout_s must be a number > 0, got -1"),
    ({"max_lifetime_s": float("inf")}, "max_lifetime_s must be a number > 0"),
    ({"remembered_ended": True}, "remembered_ended"),
    ({"max_guesses_per_question": "many"}, "max_guesses_per_question"),
])
def test_bad_settings_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        HubSettings(**overrides)


# ---- the process's hub ---------------------------------------------------------------------------------------------

@pytest.fixture
def fresh_hub():
    reset_hub()
    yield
    reset_hub()


def test_the_process_has_one_hub_read_from_the_environment(fresh_hub, monkeypatch):
    monkeypatch.setenv("KDVIZ_PRESENT_IDLE_TIMEOUT_S", " 600 ")
    monkeypatch.setenv("KDVIZ_PRESENT_MAX_ROOMS", "8")
    assert hub() is hub()
    assert (hub().settings.idle_timeout_s, hub().settings.max_rooms) == (600.0, 8)
    code = hub().start(LECTURER).code
    reset_hub()
    assert hub().get(code) is None


def test_defaults_without_the_environment(monkeypatch):
    monkeypatch.delenv("KDVIZ_PRESENT_IDLE_TIMEOUT_S", raising=False)
    monkeypatch.delenv("KDVIZ_PRESENT_MAX_ROOMS", raising=False)
    assert settings_from_environment() == HubSettings(idle_timeout_s=2 * HOUR, max_rooms=64)


@pytest.mark.parametrize("variable, raw", [("KDVIZ_PRESENT_IDLE_TIMEOUT_S", "two hours"),
                                           ("KDVIZ_PRESENT_IDLE_TIMEOUT_S", "0"),
                                           ("KDVIZ_PRESENT_MAX_ROOMS", "1.5"), ("KDVIZ_PRESENT_MAX_ROOMS", "-3")])
def test_a_bad_environment_variable_is_named(variable, raw):
    with pytest.raises(ValueError, match=f"{variable} must be .*got '{raw}'"):
        settings_from_environment({variable: raw})


def test_a_presentation_round_trips_through_json(room):
    presentations, code = room
    presentations.move(code, LECTURER, step=4, run_id="run-1")
    presentation = presentations.get(code)
    assert Presentation.from_dict(json.loads(json.dumps(presentation.to_dict()))) == presentation


# ---- threads -------------------------------------------------------------------------------------------------------

def test_threads_moving_guessing_and_polling_at_once():
    presentations = Hub(max_rooms=100)
    code = presentations.start(LECTURER).code
    presentations.ask(code, LECTURER, "q")
    errors: list[BaseException] = []
    moving = threading.Event()

    def guarded(work):
        def run():
            try:
                work()
            except BaseException as error:  # noqa: BLE001 (reported by the test below)
                errors.append(error)
        return threading.Thread(target=run)

    def lecturer():
        for number in range(2000):
            presentations.move(code, LECTURER, step=number % 999 + 1, temperature=1.0 + number % 2)
        moving.set()

    def follower():
        seen = 0
        while not moving.is_set():
            poll = presentations.poll(code, seen)
            assert poll.state == "live" and poll.version >= seen
            assert (poll.view is not None) == (poll.version != seen)
            seen = poll.version

    def guesser(student):
        for number in range(300):
            presentations.guess(code, student, "q", float(number))

    def other_lecturers():
        for number in range(300):
            identity = f"lecturer-{number % 7}"
            other = presentations.start(identity).code
            presentations.move(other, identity, step=2)
            presentations.end(other, identity)

    threads = [guarded(lecturer), guarded(other_lecturers)] + [guarded(follower) for _ in range(6)] + \
        [guarded(lambda student=student: guesser(student)) for student in STUDENTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    final = presentations.get(code)
    assert final.version == 2001 and final.guess_version == 300 * len(STUDENTS)
    assert sorted(presentations.guesses(code, "q")) == [299.0] * len(STUDENTS)


# ---- the cost of a poll (reported, not asserted) ------------------------------------------------------------------

def test_the_cost_of_a_poll_that_finds_nothing_new_is_reported(capsys):
    presentations = Hub()
    code = presentations.start(LECTURER).code
    calls = 100_000
    seconds = timeit.timeit(lambda: presentations.poll(code, 1), number=calls)
    as_json = timeit.timeit(lambda: presentations.poll_dict(code, 1), number=calls)
    with capsys.disabled():
        print(f"\nkdviz.present: one poll that finds nothing new costs {1e6 * seconds / calls:.2f} µs "
              f"({1e6 * as_json / calls:.2f} µs as a dict), over {calls} calls")
    assert not presentations.poll(code, 1).changed


# ---- random sequences against a model ------------------------------------------------------------------------------

IDENTITIES = ["lecturer-a", "lecturer-b", "lecturer-c", "student-a", "student-b", "student-c"]
QUESTIONS = ["q-1", "q-2"]
IDLE_S, LIFETIME_S, ROOMS, CAP = 300.0, 400.0, 2, 2


class ModelRoom:
    """What the hub should hold for one presentation, in the plainest terms."""

    def __init__(self, presenter: str, now: float):
        self.presenter, self.created, self.last_change = presenter, now, now
        self.view = View()
        self.version, self.guess_version = 1, 0
        self.ended_at: float | None = None
        self.reason = ""
        self.guesses: dict[str, dict[str, object]] = {}
        self.revealed: set[str] = set()

    def deadline(self) -> tuple[float, str]:
        idle, lifetime = self.last_change + IDLE_S, self.created + LIFETIME_S
        return (idle, "it timed out") if idle <= lifetime else (lifetime, "it ran for")

    def change(self, view: View, now: float) -> None:
        self.version += view != self.view
        self.view, self.last_change = view, now


class PresentationMachine(RuleBasedStateMachine):
    """Random starts, moves, questions, guesses, reveals, ends and clock jumps; the hub must agree with the model."""

    codes = Bundle("codes")

    def __init__(self):
        super().__init__()
        self.clock = FakeClock()
        drawn = ("".join(letters) for letters in itertools.product(CODE_ALPHABET, repeat=5))
        self.hub = Hub(clock=self.clock, new_code=drawn.__next__, idle_timeout_s=IDLE_S, max_lifetime_s=LIFETIME_S,
                       max_rooms=ROOMS, max_guesses_per_question=CAP)
        self.rooms: dict[str, ModelRoom] = {}
        self.seen: dict[str, int] = {}

    def live(self) -> dict[str, ModelRoom]:
        return {code: room for code, room in self.rooms.items() if room.ended_at is None}

    def expected_refusal(self, code: str, identity: str) -> type[Exception] | None:
        room = self.rooms.get(code)
        if room is None:
            return NoSuchPresentation
        if room.ended_at is not None:
            return PresentationEnded
        return None if identity == room.presenter else NotPresenter

    def caller(self, code: str, identity: str, as_presenter: bool) -> str:
        """The presenter (half the time, so that calls get through), or anyone."""
        return self.rooms[code].presenter if as_presenter and code in self.rooms else identity

    def attempt(self, expected: type[Exception] | None, call):
        try:
            result = call()
        except Exception as error:  # noqa: BLE001 (compared with what the model expects)
            assert type(error) is expected, f"expected {expected}, got {error!r}"
            return None
        assert expected is None, f"expected {expected}, the call was accepted"
        return result

    @initialize(target=codes)
    def a_lecture_with_an_open_question(self):
        """Most sequences start in the middle of a lecture, so that guesses get through."""
        code = self.start("lecturer-a")
        self.ask(code, "lecturer-a", True, QUESTIONS[0])
        return code

    @rule(target=codes, identity=st.sampled_from(IDENTITIES))
    def start(self, identity):
        mine = [code for code, room in self.live().items() if room.presenter == identity]
        if mine:
            self.rooms[mine[0]].last_change = self.clock.now
            assert self.hub.start(identity).code == mine[0]
            return multiple()
        if len(self.live()) >= ROOMS:
            self.attempt(TooManyPresentations, lambda: self.hub.start(identity))
            return multiple()
        code = self.hub.start(identity).code
        assert code not in self.rooms
        self.rooms[code] = ModelRoom(identity, self.clock.now)
        return code

    @rule(code=codes, identity=st.sampled_from(IDENTITIES), as_presenter=st.booleans(), step=st.integers(1, 3),
          temperature=st.sampled_from([1.0, 4.0]))
    def move(self, code, identity, as_presenter, step, temperature):
        identity = self.caller(code, identity, as_presenter)
        expected = self.expected_refusal(code, identity)
        self.attempt(expected, lambda: self.hub.move(code, identity, step=step, temperature=temperature))
        if expected is None:
            room = self.rooms[code]
            view = View(step, temperature, room.view.alpha, room.view.question, room.view.revealed)
            room.change(view, self.clock.now)

    @precondition(lambda self: self.rooms)
    @rule(identity=st.sampled_from(IDENTITIES))
    def move_an_unknown_presentation(self, identity):
        self.attempt(NoSuchPresentation, lambda: self.hub.move("ZZZZZ", identity, step=2))

    @rule(code=codes, identity=st.sampled_from(IDENTITIES), as_presenter=st.booleans(),
          question=st.sampled_from([*QUESTIONS, None]))
    def ask(self, code, identity, as_presenter, question):
        identity = self.caller(code, identity, as_presenter)
        expected = self.expected_refusal(code, identity)
        self.attempt(expected, lambda: self.hub.ask(code, identity, question))
        if expected is None:
            room = self.rooms[code]
            if question is not None:
                room.guesses.setdefault(question, {})
            revealed = question in room.revealed
            room.change(View(room.view.step, room.view.temperature, room.view.alpha, question, revealed),
                        self.clock.now)

    @rule(code=codes, identity=st.sampled_from(IDENTITIES), as_presenter=st.booleans())
    def reveal(self, code, identity, as_presenter):
        identity = self.caller(code, identity, as_presenter)
        expected = self.expected_refusal(code, identity)
        if expected is None and self.rooms[code].view.question is None:
            expected = ValueError
        self.attempt(expected, lambda: self.hub.reveal(code, identity))
        if expected is None:
            room = self.rooms[code]
            room.revealed.add(room.view.question)
            room.change(View(room.view.step, room.view.temperature, room.view.alpha, room.view.question, True),
                        self.clock.now)

    @rule(code=codes, identity=st.sampled_from(IDENTITIES), question=st.sampled_from([*QUESTIONS, "the-open-one"]),
          value=st.sampled_from([0.25, 0.5, "cat"]))
    def guess(self, code, identity, question, value):
        if question == "the-open-one":  # most guesses in a hall are at the open question
            question = self.rooms[code].view.question or QUESTIONS[0]
        room, expected = self.rooms.get(code), self.expected_refusal(code, identity)
        if expected is NotPresenter:  # a follower: the guess's own refusals
            guesses = room.guesses.get(question, {})
            if room.view.question != question or question in room.revealed:
                expected = ValueError
            elif identity not in guesses and len(guesses) >= CAP:
                expected = TooManyGuesses
        elif expected is None:
            expected = PresenterCannotGuess
        self.attempt(expected if expected is not NotPresenter else None,
                     lambda: self.hub.guess(code, identity, question, value))
        if expected is NotPresenter:
            room.guesses[question][identity] = value
            room.guess_version += 1

    @rule(code=codes, identity=st.sampled_from(IDENTITIES), as_presenter=st.sampled_from([True, False, False]))
    def end(self, code, identity, as_presenter):
        identity = self.caller(code, identity, as_presenter)
        room = self.rooms[code]
        expected = None if identity == room.presenter else NotPresenter
        self.attempt(expected, lambda: self.hub.end(code, identity))
        if expected is None and room.ended_at is None:
            room.ended_at, room.reason, room.guesses = self.clock.now, "the lecturer ended it", {}
            room.version += 1

    @rule(seconds=st.sampled_from([1.0, 30.0, 120.0, 299.0, 300.0, 500.0]))
    def advance_clock(self, seconds):
        self.clock.advance(seconds)
        for room in self.live().values():
            deadline, reason = room.deadline()
            if self.clock.now >= deadline:
                room.ended_at, room.reason, room.guesses = deadline, reason, {}
                room.version += 1

    @invariant()
    def the_hub_agrees_with_the_model(self):
        for code, room in self.rooms.items():
            poll = self.hub.poll(code, None)
            assert poll.version >= self.seen.get(code, 0)  # versions never go back
            self.seen[code] = poll.version
            assert poll.version == room.version
            if room.ended_at is None:
                assert poll.state == "live" and poll.view == room.view.to_dict()
                assert self.hub.get(code).guess_version == room.guess_version
            else:  # ended stays ended, with its reason
                assert poll.state == "ended" and poll.end_reason.startswith(room.reason)
                assert self.hub.get(code).ended_at == room.ended_at

    @invariant()
    def guesses_are_the_followers_last_ones(self):
        for code, room in self.live().items():
            for question in QUESTIONS:
                expected = room.guesses.get(question, {})
                assert sorted(map(str, self.hub.guesses(code, question))) == sorted(map(str, expected.values()))
                assert len(expected) <= min(CAP, len(IDENTITIES) - 1)  # at most one per follower
                assert room.presenter not in expected

    @invariant()
    def each_lecturer_finds_their_own(self):
        presented = {room.presenter: code for code, room in self.live().items()}
        for identity in IDENTITIES:
            found = self.hub.presenting(identity)
            assert (found.code if found else None) == presented.get(identity)


PresentationMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_presentations_agree_with_the_model = PresentationMachine.TestCase
