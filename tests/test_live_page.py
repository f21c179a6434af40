"""The live-distillation page through app.py's router (AppTest): start, watch, stop, diverge, history, sweeps."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import wait_until
from kdviz.runs import tasks
from kdviz.views import run_view

from kdviz import ui

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "pages/live_distillation.py"


@pytest.fixture
def app():
    ui.run_manager.clear()  # a fresh run manager on this test's KDVIZ_HOME
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(PAGE).run()
    assert not at.exception
    at.selectbox(key="preset").set_value("quick").run()
    at.number_input(key="quick:epochs").set_value(2).run()
    yield at
    ui.run_manager().shutdown()
    tasks.stop_all_tasks()  # the home page starts training the default teacher in the background


def run_until(at: AppTest, predicate, timeout: float = 120.0) -> AppTest:
    """Rerun the page until predicate(at) holds (the shared bounded wait); fails with the page's headers."""
    def rerun_and_check():
        at.run()
        assert not at.exception, at.exception
        return predicate(at)

    wait_until(rerun_and_check, timeout, what=lambda: f"the page; its headers: {[h.value for h in at.subheader]}",
               interval=0.3)
    return at


def state_is(word: str):
    return lambda at: any(f": {word}" in h.value for h in at.subheader)


def click(at: AppTest, label_part: str) -> AppTest:
    next(b for b in at.button if label_part in b.label).click()
    return at.run()


def test_a_run_shows_live_charts_then_the_case_study_table(app):
    click(app, "Start run")
    run_id = app.query_params["run"]
    assert run_id and not app.exception
    run_until(app, state_is("completed"))
    charts = app.get("plotly_chart")
    assert len(charts) >= 2, "loss and accuracy charts"
    tables = [frame.value for frame in app.dataframe]
    this_run = tables[0]
    assert list(this_run["model"]) == ["teacher", "hard-label student", "KD student"]
    assert {"parameters", "size (MB)", "test accuracy (%)"} <= set(this_run.columns)
    lecture = tables[1]
    assert list(lecture["architecture"]) == ["ResNet-152", "ResNet-50", "ResNet-50"]
    assert lecture["parameters"].iloc[0] == 60_192_808 and lecture["parameters"].iloc[1] == 25_557_032
    summary = ui.run_manager().get(run_id).summary
    hard_errors, kd_errors = summary["hard"]["errors"], summary["kd"]["errors"]
    won, sentence = run_view.verdict(summary)
    assert won == (kd_errors < hard_errors)
    if kd_errors < hard_errors:
        assert sentence.startswith("Distillation helped")
    elif kd_errors == hard_errors:
        assert sentence.startswith("Distillation made no difference")
    else:
        assert sentence.startswith("Distillation did NOT help")
    if kd_errors != hard_errors:  # both students' error counts are named
        numbers = re.findall(r"\d+(?:\.\d+)?", sentence)
        assert str(kd_errors) in numbers and str(hard_errors) in numbers, sentence
    shown, other = (app.success, app.warning) if won else (app.warning, app.success)
    assert [m.value for m in shown] == [sentence], "the page says plainly whether KD helped, in the right colour"
    assert not any(m.value.startswith("Distillation") for m in other)
    click(app, "Reset view")
    assert not app.subheader and "run" not in app.query_params, "reset closes the panel"
    assert ui.run_manager().get(run_id).state == "completed", "the run itself stays in the history"


def test_stop_keeps_what_was_measured(app):
    app.number_input(key="quick:epochs").set_value(300).run()
    click(app, "Start run")
    run_until(app, lambda at: any(b.label.endswith("Stop (keeps what was measured)") for b in at.button)
              and len(at.get("plotly_chart")) >= 2)
    click(app, "Pause")
    run_until(app, state_is("paused"))
    click(app, "Resume")
    run_until(app, state_is("running"))
    click(app, "Stop")
    run_until(app, state_is("cancelled"))
    assert len(app.get("plotly_chart")) >= 2, "the charts keep the data measured before the stop"


def test_a_diverging_learning_rate_says_so(app):
    app.number_input(key="quick:lr").set_value(10.0).run()
    click(app, "Start run")
    run_until(app, state_is("diverged"))
    assert any("diverged at step" in e.value for e in app.error)


def test_history_lists_past_runs_with_downloads(app):
    click(app, "Start run")
    run_until(app, state_is("completed"))
    compare = app.multiselect(key="compare")
    assert len(compare.options) == 1 and compare.options[0].startswith(app.query_params["run"])
    compare.set_value([app.query_params["run"]]).run()
    downloads = [button.proto.label for button in app.get("download_button")]
    assert downloads == ["Metrics (CSV)", "Students' weights"]
    assert any("Runs compared" in str(chart.proto.spec) for chart in app.get("plotly_chart"))


def test_a_shared_link_is_read_only_and_unknown_runs_get_a_message(app):
    click(app, "Start run")
    run_id = app.query_params["run"]
    run_until(app, state_is("completed"))
    viewer = AppTest.from_file(APP, default_timeout=60)
    viewer.query_params["run"] = run_id
    viewer.run()
    viewer.switch_page(PAGE).run()
    assert not viewer.exception
    assert any("read-only" in c.value for c in viewer.caption)
    assert any("Your runs will be listed here" in i.value for i in viewer.info), "others' runs are not listed"
    assert not any(b.label.endswith("Stop (keeps what was measured)") for b in viewer.button)
    missing = AppTest.from_file(APP, default_timeout=60)
    missing.query_params["run"] = "20200101-000000-000000"
    missing.run()
    missing.switch_page(PAGE).run()
    assert not missing.exception
    assert any("no run" in w.value for w in missing.warning)


def test_a_sweep_queues_runs_and_draws_the_summary(app):
    app.selectbox(key="sweep_parameter").set_value("temperature").run()
    app.text_input(key="sweep_values_temperature").set_value("1, 4").run()
    click(app, "Start sweep")
    assert app.query_params["sweep"]
    run_until(app, lambda at: any("Sweep over" in str(chart.proto.spec) for chart in at.get("plotly_chart"))
              and not ui.run_manager().list_runs()[0].live, timeout=180)
    table = next(frame.value for frame in app.dataframe if "temperature" in frame.value.columns)
    assert list(table["temperature"]) == [1.0, 4.0]


def test_bad_sweep_values_get_a_message(app):
    app.text_input(key="sweep_values_temperature").set_value("1, abc").run()
    click(app, "Start sweep")
    assert any("'abc'" in e.value for e in app.error)
    assert not app.query_params.get("sweep")


def test_a_download_dataset_offline_fails_with_a_clear_message_and_the_server_keeps_serving(app, offline):
    app.selectbox(key="preset").set_value("cifar10-lecture").run()
    click(app, "Start run")
    run_until(app, state_is("failed"))
    message = " ".join(e.value for e in app.error)
    assert "cifar10" in message and "mnist5k" in message and "digits" in message, message
    app.selectbox(key="preset").set_value("quick").run()
    app.number_input(key="quick:epochs").set_value(2).run()
    click(app, "Start run")
    run_until(app, state_is("completed"))
