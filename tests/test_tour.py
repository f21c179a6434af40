"""The guided tour's model: its steps, the link of each step and its round trip, questions, answers and histograms,
and the runs behind the later steps (found, started once, and their verdicts)."""
from __future__ import annotations

import dataclasses
import math
import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdviz.core import kd
from kdviz.views import tour
from kdviz.views.query import TEMPERATURES
from kdviz.views.soft_labels import LECTURE


def test_the_tour_has_the_lectures_fourteen_steps_in_order():
    assert [s.number for s in tour.STEPS] == list(range(1, 15))
    assert len({s.slug for s in tour.STEPS}) == 14
    assert tour.step(5).view == "temperature" and tour.step(8).view == "case-study"
    for s in tour.STEPS:
        words = tour.step_text(s.number)
        sentences = [part for part in words.replace("e.g.", "eg").split(". ") if part.strip()]
        assert 2 <= len(sentences) <= 5, (s.number, words)  # two to four sentences (a colon may join two)
        assert "{" not in words  # every placeholder filled


def test_the_steps_numbers_come_from_kd_not_from_the_text():
    assert "99.96 %" in tour.step_text(3)  # softmax([5, -3, -5, -7])[0]
    assert f"{100 * kd.softmax(LECTURE.teacher, 1.0)[1]:.2g} %" in tour.step_text(5)
    # a step with a question never gives its answer away before the guess
    assert "21" not in tour.step_text(5) and "cat" not in tour.step(4).title + tour.step_text(4).split("?")[0]
    assert "76.32 %" in tour.step_text(8) and "77.75 %" in tour.step_text(8) and "quoted" in tour.step_text(8)


states = st.builds(tour.TourState, step=st.integers(1, 14), temperature=st.sampled_from(TEMPERATURES),
                   alpha=st.integers(0, 100).map(lambda a: a / 100),
                   room=st.none() | st.text("ABCDEFGHJKMNPQRSTUVWXYZ23456789", min_size=5, max_size=5))


@given(states)
def test_a_steps_link_opens_exactly_that_view(state):
    query = tour.to_query(state)
    parsed, notices = tour.parse_query(query)
    assert not notices
    if not tour.step(state.step).uses_temperature:  # T and α are only in the link where they change the view
        state = dataclasses.replace(state, temperature=parsed.temperature, alpha=parsed.alpha)
        assert "T" not in query and "alpha" not in query
    assert parsed == state


def test_the_issues_example_link():
    state, notices = tour.parse_query({"step": "5", "T": "4"})
    assert state == tour.TourState(step=5, temperature=4.0) and not notices
    assert tour.link("http://hall:8501/lecture", state) == "http://hall:8501/lecture?step=5&T=4&alpha=0.9"


@pytest.mark.parametrize("step", ["0", "15", "-1", "2.5", "abc", "", "1e400", "nan", "5" * 40])
def test_a_malformed_step_gives_the_first_step_with_a_notice(step):
    state, notices = tour.parse_query({"step": step, "T": "4"})
    assert state.step == 1 and len(notices) == 1 and "showing step 1" in notices[0]


@pytest.mark.parametrize("text, shown", [("abc", 0.9), ("-1", 0.0), ("2", 1.0), ("0.333", 0.33)])
def test_a_bad_alpha_is_clamped_with_a_notice(text, shown):
    state, notices = tour.parse_query({"step": "6", "alpha": text})
    assert state.alpha == shown and len(notices) == 1


def test_a_room_code_is_read_as_typed_on_a_phone():
    assert tour.parse_query({"room": " k7mq2 "})[0].room == "K7MQ2"
    assert tour.parse_query({"room": "x" * 500})[0].room == "X" * 16  # bounded; the hub says it does not exist


# ---- questions -----------------------------------------------------------------------------------------------------

def test_at_least_three_steps_ask_before_they_answer():
    asked = [s for s in tour.STEPS if s.question]
    assert len(asked) >= 3
    for s in asked:
        assert tour.QUESTIONS[s.question].step == s.number


def test_the_math_questions_answers_are_kds():
    cat = tour.answer(tour.QUESTIONS["teacher-cat"])
    assert cat.value == pytest.approx(0.2121, abs=5e-5) and cat.value == float(kd.softmax(LECTURE.teacher, 10)[1])
    assert tour.answer(tour.QUESTIONS["student-pick"]).value == "cat"


def _run(summary, state="completed", run_id="20261203-120000-abcdef"):
    return types.SimpleNamespace(id=run_id, state=state, summary=summary)


def test_a_run_questions_answer_waits_for_its_run_then_reads_it():
    question = tour.QUESTIONS["kd-wins"]
    assert tour.answer(question) is None and tour.answer(question, _run(None, "running")) is None
    won = {"hard": {"accuracy": 0.80, "val_accuracy": 0.8}, "kd": {"accuracy": 0.85, "val_accuracy": 0.86},
           "n_test": 359, "teacher": {"accuracy": 0.95}}
    lost = {**won, "kd": {"accuracy": 0.75, "val_accuracy": 0.7}}
    assert tour.answer(question, _run(won)).value == "yes"
    assert tour.answer(question, _run(lost)).value == "no"
    missing = tour.QUESTIONS["missing-digit"]
    answer = tour.answer(missing, _run({"omitted": 3, "kd": {"omitted_accuracy_after": 0.944, "bias_shift": 3.5}}))
    assert answer.value == 0.944 and "3s" in answer.source and "+3.50" in answer.source


def test_guesses_are_checked_and_snapped():
    number, choice = tour.QUESTIONS["teacher-cat"], tour.QUESTIONS["student-pick"]
    assert tour.check_guess(number, 0.2149) == 0.21 and tour.check_guess(number, "0.5") == 0.5
    assert tour.check_guess(choice, "cat") == "cat"
    for bad in (-0.1, 1.5, "abc", math.nan, None):
        with pytest.raises(ValueError):
            tour.check_guess(number, bad)
    with pytest.raises(ValueError, match="choose one of dog, cat, car, ship"):
        tour.check_guess(choice, "horse")


def test_how_far_a_guess_was():
    number, choice = tour.QUESTIONS["teacher-cat"], tour.QUESTIONS["student-pick"]
    truth = tour.answer(number)
    assert tour.how_far(number, 0.21, truth) == "spot on"
    assert tour.how_far(number, 0.5, truth) == "0.29 too high" and tour.how_far(number, 0.1, truth) == "0.11 too low"
    assert tour.how_far(choice, "cat", tour.answer(choice)) == "right"
    assert tour.how_far(choice, "dog", tour.answer(choice)) == "wrong: it is cat"
    share = tour.QUESTIONS["missing-digit"]
    assert tour.how_far(share, 0.5, tour.Answer(0.944, "")) == "44 points too low"


def test_the_halls_histogram():
    number, choice = tour.QUESTIONS["teacher-cat"], tour.QUESTIONS["kd-wins"]
    labels, counts = tour.histogram(number, [0.0, 0.05, 0.21, 0.25, 0.99, 1.0])
    assert len(labels) == tour.HISTOGRAM_BINS and labels[2] == "0.2–0.3" and sum(counts) == 6
    assert counts[0] == 2 and counts[2] == 2 and counts[-1] == 2  # 1.0 falls in the last bin
    assert tour.histogram(choice, ["yes", "no", "yes"]) == (["yes", "no"], [2, 1])
    assert tour.histogram_bin(number, 0.2121) == 2 and tour.histogram_bin(choice, "no") == 1
    figure = tour.histogram_chart(number, labels, counts, marked=2)
    assert figure.data[0].marker.color[2] != figure.data[0].marker.color[0]  # the answer's bar stands out
    assert "the answer" in [a.text for a in figure.layout.annotations]
    hidden = tour.histogram_chart(number, labels, counts, marked=None)
    assert len(set(hidden.data[0].marker.color)) == 1 and not hidden.layout.annotations
