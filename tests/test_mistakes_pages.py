"""The common-mistakes switches through AppTest: the soft-labels page's numbers beside the correct loss (and its
link), and the live page's third student (form, run, charts, case study)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import wait_until
from kdviz import ui
from kdviz.core.presets import get_preset
from kdviz.runs import tasks
from tests.test_soft_labels_page import open_page as open_soft_labels

ROOT = Path(__file__).resolve().parents[1]
LIVE = "pages/live_distillation.py"


def mistake_table(at: AppTest) -> str | None:
    return next((m.value for m in at.markdown if m.value.startswith("| | correct loss |")), None)


def test_the_switch_shows_a_mistake_beside_the_correct_loss_and_the_link_keeps_it():
    at = open_soft_labels({"temperature": "4"})
    assert mistake_table(at) is None  # off by default
    at.selectbox(key="sl.mistake").set_value("mean-reduction").run()
    assert not at.exception
    table = mistake_table(at)
    assert "| soft term | 15.9497 | 3.9874 |" in table  # the lecture's logits at T = 4: 4 classes, 4 times smaller
    assert any("4 times smaller" in m.value for m in at.markdown)
    assert any("KL with reduction" in m.value and "C times" in m.value for m in at.markdown)  # the one sentence
    assert at.query_params["mistake"] == ["mean-reduction"] or at.query_params["mistake"] == "mean-reduction"


def test_the_naive_form_reads_nan_at_t_01_where_the_log_space_form_is_finite():
    at = open_soft_labels({"temperature": "0.1", "mistake": "naive-kl"})
    table = mistake_table(at)
    assert "| soft term | 0.4000 | nan |" in table
    assert any("gives nan where the log-space form gives 0.4000" in m.value for m in at.markdown)


def test_a_bad_mistake_in_a_link_gets_a_notice_and_the_correct_loss():
    at = open_soft_labels({"mistake": "T2"})
    assert any("Unknown mistake 'T2'" in w.value for w in at.warning)
    assert at.selectbox(key="sl.mistake").value == "none" and mistake_table(at) is None


@pytest.fixture
def live(cache_trained_teacher):
    cache_trained_teacher(get_preset("quick").teacher)  # these tests are about the students, not the teacher
    ui.run_manager.clear()  # a fresh run manager on this test's KDVIZ_HOME
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page(LIVE).run()
    assert not at.exception
    at.selectbox(key="preset").set_value("quick").run()
    at.number_input(key="quick:epochs").set_value(2).run()
    yield at
    ui.run_manager().shutdown()
    tasks.stop_all_tasks()


def test_the_teacher_in_training_mode_needs_teacher_dropout_in_the_form(live):
    live.selectbox(key="quick:mistake").set_value("teacher-train-mode").run()
    assert any("needs a teacher with dropout or batch norm" in e.value for e in live.error)
    assert next(b for b in live.button if "Start run" in b.label).disabled
    live.number_input(key="quick:t_dropout").set_value(0.2).run()
    assert not any("needs a teacher" in e.value for e in live.error)


def test_a_run_with_a_mistake_trains_a_third_student_beside_the_two(live):
    live.selectbox(key="quick:mistake").set_value("no-t-squared").run()
    assert any("T² left out" in c.value or "shrink like 1/T²" in c.value for c in live.caption)
    next(b for b in live.button if "Start run" in b.label).click().run()
    run_id = live.query_params["run"]
    run_id = run_id[0] if isinstance(run_id, list) else run_id
    assert ui.run_manager().get(run_id).config["mistake"] == "no-t-squared"

    def completed():  # drawn as a finished run: a header torn by the run ending mid-draw says "completed" before
        live.run()  # the case study is drawn, at the next rerun
        assert not live.exception, live.exception
        return any(": completed" in h.value for h in live.subheader) and len(live.dataframe) > 0

    wait_until(lambda: not ui.run_manager().get(run_id).live, 180, what="the run to end")  # the page is not redrawn
    wait_until(completed, 60, what="the page to draw the completed run", interval=0.5)  # while the students train
    assert any("makes a common mistake: T² left out" in i.value for i in live.info)
    table = live.dataframe[0].value
    assert list(table["model"]) == ["teacher", "hard-label student", "KD student", "KD with the mistake"]
    assert any("With the mistake “T² left out” the KD student made" in e.value for e in live.error)
    figures = [json.loads(chart.proto.spec) for chart in live.get("plotly_chart")]
    names = {trace.get("name") for figure in figures for trace in figure["data"]}
    assert {"KD with the mistake", "KD with the mistake: soft", "KD student: soft T²·KL"} <= names
