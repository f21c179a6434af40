"""The lecture tour through AppTest (app.py's router): every step renders, bad links, a presentation with a lecturer
and followers (two AppTest sessions are two browsers), predict-then-reveal, and the runs its later steps show."""
from __future__ import annotations

import dataclasses
import re

import pytest
from streamlit.testing.v1 import AppTest

from conftest import APP, wait_for_run, wait_until
from kdviz import ui
from kdviz.present import hub, reset_hub
from kdviz.views import tour

PAGE = "pages/lecture.py"


@pytest.fixture(autouse=True)
def fresh_server(monkeypatch):
    """A fresh run manager, task table, presentation hub and tour caches per test; the tour starts no runs unless a
    test asks."""
    from kdviz.runs import tasks
    from kdviz.ui import tour as tour_ui

    monkeypatch.setenv("KDVIZ_TOUR_RUNS", "off")
    # no background task of an earlier test: a default teacher completed under another test's KDVIZ_HOME would be
    # "trained but unreadable" here (a flake seen under load); a server has one home, and this test's server is new
    monkeypatch.setattr(tasks, "_tasks", {})
    reset_hub()
    ui.run_manager.clear()
    for cached in (tour_ui._started, tour_ui._tour_runs_cached, tour_ui._tour_identity, tour_ui._tried):
        cached.clear()
    yield
    ui.run_manager().shutdown()
    tasks.stop_all_tasks()
    reset_hub()


def open_tour(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query or {})
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def heading(at: AppTest) -> str:
    return next(h.value for h in at.header)


def widgets(at: AppTest) -> list:
    """The soft-labels widgets on the page (the protos carry the JSON payload they draw)."""
    return [e.proto for e in at.get("bidi_component") if e.proto.component_name == "kdviz.soft_labels"]


def button(at: AppTest, label: str):
    return next(b for b in at.button if label in b.label)


def texts(at: AppTest) -> str:
    return " ".join(m.value for m in [*at.markdown, *at.caption, *at.info, *at.success, *at.warning])


def test_every_step_renders_without_an_exception_and_next_walks_the_tour():
    at = open_tour()
    for number in range(1, tour.STEP_COUNT + 1):
        if number > 1:
            button(at, "Next").click().run()
        assert not at.exception, (number, [e.value for e in at.exception])
        assert heading(at) == tour.step(number).title
        assert f"Step {number} of {tour.STEP_COUNT}" in texts(at)
        assert not at.error and not at.warning, (number, [e.value for e in [*at.error, *at.warning]])
        assert at.query_params["step"] == str(number)
    assert button(at, "Next").disabled


@pytest.mark.parametrize("step", ["0", "99", "abc", "-3", "1.5", "%00"])
def test_a_malformed_step_opens_the_first_step_with_a_notice(step):
    at = open_tour({"step": step})
    assert heading(at) == tour.step(1).title and at.query_params["step"] == "1"
    assert len(at.warning) == 1 and "showing step 1" in at.warning[0].value


@pytest.mark.parametrize("room", ["ZZZZZ", "abc", "../../etc", "A" * 300, "<b>x</b>"])
def test_a_room_that_does_not_exist_says_so_and_the_tour_goes_on(room):
    at = open_tour({"room": room, "step": "3"})
    assert any("There is no presentation" in w.value for w in at.warning)
    assert heading(at) == tour.step(3).title and "room" not in at.query_params


def test_next_back_and_the_step_buttons_move_and_write_the_link():
    at = open_tour({"step": "4"})
    button(at, "Next").click().run()
    assert heading(at) == tour.step(5).title and at.query_params["step"] == "5"
    button(at, "Back").click().run()
    button(at, "Back").click().run()
    assert heading(at) == tour.step(3).title
    at.segmented_control(key="tour.indicator").set_value(12).run()
    assert heading(at) == tour.step(12).title and at.query_params["step"] == "12"


def test_the_link_of_a_temperature_step_carries_t_and_alpha():
    at = open_tour({"step": "6", "T": "4", "alpha": "0.5"})
    assert at.query_params == {"step": "6", "T": "4", "alpha": "0.5"}
    (widget,) = widgets(at)
    assert '"temperature": 4.0' in widget.json and '"alpha": 0.5' in widget.json
    at.session_state["tour.widget.6"] = {"temperature": 10.0, "alpha": 0.5}  # the slider released at 10
    at.run()
    assert at.query_params["T"] == "10" and not at.exception


# ---- predict, then reveal, alone -------------------------------------------------------------------------------------

def test_alone_the_answer_shows_only_after_a_guess_with_how_far_off():
    at = open_tour({"step": "5", "T": "10"})
    assert not widgets(at)  # the chart would give the answer away
    at.slider(key="tour.guess.teacher-cat.widget").set_value(0.5).run()
    button(at, "Commit my guess").click().run()
    shown = texts(at)
    assert "Your guess: **0.50**" in shown and "Answer: 0.2121" in shown and "0.29 too high" in shown
    assert widgets(at)  # now the soft labels are drawn


def test_the_student_question_hides_the_softmax_until_guessed():
    at = open_tour({"step": "4"})
    assert '"bars"' not in widgets(at)[0].json
    at.radio(key="tour.guess.student-pick.widget").set_value("cat").run()
    button(at, "Commit my guess").click().run()
    assert "right" in texts(at) and '"bars"' in widgets(at)[0].json


# ---- a presentation ------------------------------------------------------------------------------------------------

def present(at: AppTest) -> str:
    button(at, "Present").click().run()
    assert not at.exception
    return at.query_params["room"]


def test_the_join_dialog_shows_the_room_code_the_follow_link_and_its_qr_code():
    lecturer = open_tour()
    code = present(lecturer)
    button(lecturer, "Join code").click().run()
    assert not lecturer.exception
    link = f"/lecture?room={code}"
    assert any(link in m.value for m in lecturer.markdown)
    assert any(f"Room `{code}`" in m.value for m in lecturer.markdown)
    url = re.search(r"(\S+" + re.escape(link) + ")", next(m.value for m in lecturer.markdown if link in m.value))[1]
    (qr,) = [image for image in lecturer.get("image") if f"QR code of {url.strip('*')}" in str(image.proto)]
    assert qr.proto.imgs[0].url  # the PNG itself, served by Streamlit



def test_the_hall_follows_the_lecturer_and_cannot_move_the_presentation():
    lecturer = open_tour({"step": "2"})
    code = present(lecturer)
    assert f"room `{code}`" in texts(lecturer)
    follower = open_tour({"room": code.lower()})  # typed on a phone
    assert "Following the lecturer" in texts(follower) and heading(follower) == tour.step(2).title
    assert not any("Next" in b.label for b in follower.button)  # no controls to move
    button(lecturer, "Next").click().run()
    follower.run()  # what the follower's poll triggers when the room's version changed
    assert heading(follower) == tour.step(3).title and follower.query_params == {"room": code}
    with pytest.raises(PermissionError):
        hub().move(code, follower.session_state["owner_id"], step=9)
    assert hub().get(code).view.step == 3


def test_a_follower_explores_alone_then_follows_again():
    lecturer = open_tour({"step": "6", "T": "4"})
    code = present(lecturer)
    follower = open_tour({"room": code})
    button(follower, "Explore on my own").click().run()
    assert "Exploring on your own" in texts(follower)
    button(follower, "Next").click().run()
    assert heading(follower) == tour.step(7).title and hub().get(code).view.step == 6  # the room did not move
    button(lecturer, "Next").click().run()
    button(lecturer, "Next").click().run()
    button(follower, "Follow again").click().run()
    assert heading(follower) == tour.step(8).title and "Following the lecturer" in texts(follower)


def test_a_lecturer_who_reloads_gets_the_presentation_back():
    lecturer = open_tour({"step": "9"})
    code = present(lecturer)
    identity = lecturer.session_state["owner_id"]
    again = AppTest.from_file(APP, default_timeout=60)
    again.session_state["owner_id"] = identity  # the same browser (its identity cookie) opens the bare page
    again.switch_page(PAGE).run()
    assert f"room `{code}`" in texts(again) and heading(again) == tour.step(9).title
    assert again.query_params["room"] == code


def test_ending_a_presentation_tells_its_followers():
    lecturer = open_tour()
    code = present(lecturer)
    follower = open_tour({"room": code})
    button(lecturer, "End").click().run()
    assert "room" not in lecturer.query_params and "Present" in [b.label.split(": ")[-1].strip() for b in
                                                                 lecturer.button if "Present" in b.label][0]
    follower.run()
    assert any("has ended" in w.value and "the lecturer ended it" in w.value for w in follower.warning)
    late = open_tour({"room": code})  # a follow link opened after the end says so too
    assert any("has ended" in w.value for w in late.warning)


def test_the_hall_guesses_the_lecturer_sees_a_histogram_then_reveals():
    lecturer = open_tour({"step": "4"})
    code = present(lecturer)
    followers = [open_tour({"room": code}) for _ in range(3)]
    assert "not asked this question yet" in texts(followers[0])
    button(lecturer, "Ask the hall").click().run()
    for follower, guess in zip(followers, ("cat", "cat", "dog")):
        follower.run()
        follower.radio(key="tour.follow_guess.student-pick").set_value(guess).run()
        button(follower, "Commit my guess").click().run()
        assert "Waiting for the lecturer" in texts(follower) and not follower.exception
    assert sorted(hub().guesses(code, "student-pick")) == ["cat", "cat", "dog"]
    lecturer.run()
    histogram = next(c for c in lecturer.get("plotly_chart") if "histogram" in c.proto.id or "guesses" in c.proto.spec)
    assert '"y":[1,2,0,0]' in histogram.proto.spec.replace(" ", "")  # dog 1, cat 2, car 0, ship 0
    assert "the answer" not in histogram.proto.spec  # hidden until revealed
    button(lecturer, "Reveal the answer").click().run()
    assert "Answer: cat" in texts(lecturer)
    followers[2].run()
    assert "wrong: it is cat" in texts(followers[2]) and '"bars"' in widgets(followers[2])[0].json


def test_step_seven_runs_live_for_the_hall_and_answers_its_question(monkeypatch):
    from kdviz.core import presets
    from tests.test_capacity import TINY

    monkeypatch.setitem(presets.PRESETS, "quick", ("tiny", dataclasses.replace(TINY, epochs=1)))
    lecturer = open_tour({"step": "7"})
    code = present(lecturer)
    follower = open_tour({"room": code})
    button(lecturer, "Ask the hall").click().run()
    button(lecturer, "Run it now").click().run()
    run_id = hub().get(code).view.run_id
    assert run_id and ui.run_manager().owns(ui.run_manager().get(run_id), lecturer.session_state["owner_id"])
    wait_for_run(ui.run_manager(), run_id)
    follower.run()
    assert any(f"Run {run_id}" in s.value for s in follower.subheader)  # the lecturer's run, read-only
    lecturer.run()
    button(lecturer, "Reveal the answer").click().run()
    assert "Answer: yes" in texts(lecturer) or "Answer: no" in texts(lecturer)


# ---- the runs behind the later steps -------------------------------------------------------------------------------

def test_opening_the_tour_starts_the_missing_runs_once_and_the_steps_show_them(monkeypatch):
    from kdviz.views import tour_results
    from tests.test_tour_results import TOUR  # noqa: F401 — the tiny configs' source
    from tests.test_capacity import CONFIG as CAPACITY

    monkeypatch.setenv("KDVIZ_TOUR_RUNS", "auto")
    monkeypatch.setattr(tour_results, "tour_configs", lambda: {"capacity": CAPACITY})
    first, second = open_tour({"step": "9"}), open_tour({"step": "1"})
    runs = ui.run_manager().list_runs()
    assert len(runs) == 1 and runs[0].tags == {"tour": "capacity"}  # two browsers, one run
    assert not ui.run_manager().owns(runs[0], first.session_state["owner_id"])  # nobody in the hall's
    wait_for_run(ui.run_manager(), runs[0].id, timeout=120)

    def shown():
        from kdviz.ui import tour as tour_ui

        tour_ui._tour_runs_cached.clear()
        first.run()
        return runs[0].id in texts(first)

    wait_until(shown, 30, what="step 9 to show the finished run")
    assert any("On this server the claim" in m.value for m in [*first.success, *first.warning])
    assert second.session_state["owner_id"] != first.session_state["owner_id"]
