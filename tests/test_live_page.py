"""The live-distillation page through app.py's router (AppTest): start, watch, stop, diverge, history, sweeps."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import rerun_until, wait_until
from kdviz.runs import tasks
from kdviz.views import run_view

from kdviz import ui

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "pages/live_distillation.py"


@pytest.fixture
def fresh_app():
    """The page with the quick preset chosen (2 epochs), on a fresh server: its first run trains the teacher too."""
    ui.run_manager.clear()  # a fresh run manager on this test's KDVIZ_HOME
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page(PAGE).run()  # before the first run: the home page would start training the default teacher
    assert not at.exception
    at.selectbox(key="preset").set_value("quick").run()
    at.number_input(key="quick:epochs").set_value(2).run()
    yield at
    ui.run_manager().shutdown()
    tasks.stop_all_tasks()  # a page may have started a teacher in the background


@pytest.fixture
def app(fresh_app, cache_trained_teacher):
    """fresh_app on a server that has trained the quick preset's teacher before (it is cached, as after a first run;
    the session trains it once): the runs train their students only. The first test trains its teacher in its run."""
    from kdviz.core.presets import get_preset

    cache_trained_teacher(get_preset("quick").teacher)
    return fresh_app


def run_until(at: AppTest, predicate, timeout: float = 120.0) -> AppTest:
    """Rerun the page until predicate(at) holds (the shared bounded wait); fails with the page's headers."""
    rerun_until(at, predicate, timeout, what=lambda: f"the page; its headers: {[h.value for h in at.subheader]}")
    return at


def live_charts(at: AppTest) -> set[str]:
    """The charts a live run's browser draws: the figures of the payload its live-run component is mounted with
    (kdviz.ui.components.live_run; the browser then polls for newer ones)."""
    for element in at.get("bidi_component"):
        if element.proto.component_name == "kdviz.live_run":
            return set(json.loads(json.loads(element.proto.json)["payload"])["figures"])
    return set()


def state_is(word: str):
    return lambda at: any(f": {word}" in h.value for h in at.subheader)


def click(at: AppTest, label_part: str) -> AppTest:
    next(b for b in at.button if label_part in b.label).click()
    return at.run()


def test_a_run_shows_live_charts_then_the_case_study_table(fresh_app):
    app = fresh_app
    click(app, "Start run")
    run_id = app.query_params["run"]
    assert run_id and not app.exception
    run_until(app, state_is("completed"))
    charts = app.get("plotly_chart")
    assert len(charts) >= 2, "loss and accuracy charts"
    tables = [frame.value for frame in app.dataframe]
    this_run = tables[0]
    assert list(this_run["model"]) == ["teacher", "hard-label student", "KD student"]
    assert {"parameters", "size (MB)", "validation (%)", "test (%)"} <= set(this_run.columns)
    assert this_run["validation (%)"].notna().all()
    lecture = tables[1]
    assert list(lecture["architecture"]) == ["ResNet-152", "ResNet-50", "ResNet-50"]
    assert lecture["parameters"].iloc[0] == 60_192_808 and lecture["parameters"].iloc[1] == 25_557_032
    summary = ui.run_manager().get(run_id).summary
    assert list(this_run["validation (%)"]) == pytest.approx(
        [100 * summary[role]["val_accuracy"] for role in ("teacher", "hard", "kd")])
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


def accuracy_chart(at: AppTest, run_id: str) -> dict:
    import json

    return json.loads(next(chart for chart in at.get("plotly_chart") if chart.key == f"accuracy-{run_id}").proto.spec)


def test_the_accuracy_chart_shows_validation_then_test(app):
    click(app, "Start run")
    run_id = app.query_params["run"]
    run_until(app, state_is("completed"))
    split = app.segmented_control(key=f"split-{run_id}")
    assert split.value == "validation" and list(split.options) == ["validation", "test"]
    figure = accuracy_chart(app, run_id)
    assert figure["layout"]["title"]["text"] == "Validation accuracy"
    events = ui.run_manager().get(run_id).events
    last = [e for e in events if e["event"] == "EpochEnd" and e.get("phase") == "distill"][-1]
    kd = next(trace for trace in figure["data"] if trace["name"] == "KD student")
    assert kd["y"][-1] == pytest.approx(100 * last["val_accuracy"]["kd"])
    split.set_value("test").run()
    figure = accuracy_chart(app, run_id)
    assert figure["layout"]["title"]["text"] == "Test accuracy"
    assert figure["layout"]["shapes"][0]["y0"] == pytest.approx(100 * last["accuracy"]["teacher"])


def test_the_form_offers_weight_decay_and_student_dropout(app):
    app.number_input(key="quick:wd").set_value(0.001).run()
    app.number_input(key="quick:s_dropout").set_value(0.2).run()
    click(app, "Start run")
    run = ui.run_manager().get(app.query_params["run"])
    assert run.config["weight_decay"] == pytest.approx(0.001) and run.config["student"]["dropout"] == pytest.approx(0.2)
    run_until(app, state_is("completed"))
    assert any("weight decay 0.001" in c.value and "dropout 0.2" in c.value for c in app.caption)


def test_stop_keeps_what_was_measured(app):
    app.number_input(key="quick:epochs").set_value(300).run()
    click(app, "Start run")
    run_until(app, lambda at: any(b.label.endswith("Stop (keeps what was measured)") for b in at.button)
              and live_charts(at) == {"loss", "accuracy"})
    click(app, "Pause")
    run_until(app, state_is("paused"))
    click(app, "Resume")
    run_until(app, state_is("running"))
    click(app, "Stop")
    run_until(app, state_is("cancelled"))
    assert len(app.get("plotly_chart")) >= 2, "the charts keep the data measured before the stop"
    run = ui.run_manager().get(app.query_params["run"])
    last = max(e["epoch"] for e in run.events if e["event"] == "EpochEnd" and e.get("phase") == "distill")
    verdicts = [m.value for m in [*app.success, *app.warning] if "Distillation" in m.value or "distillation" in m.value]
    assert verdicts and all(f"(after epoch {last})" in v for v in verdicts), (verdicts, last)  # not the teacher's


def live_redraw_key(at: AppTest) -> str | None:
    """The redraw key the live-run component is mounted with: what the page around its charts shows."""
    for element in at.get("bidi_component"):
        if element.proto.component_name == "kdviz.live_run":
            return json.loads(element.proto.json)["redraw"]
    return None


def test_a_run_that_ends_while_its_header_is_drawn_is_redrawn(app, monkeypatch):
    """The run's worker ends it while the page draws its header (a stop, a server limit): the header says "running",
    so the browser must be told that is what was drawn; the server's "cancelled" then differs and the browser reruns
    the panel, instead of showing a run that ended as running for ever (seen in CI as a Stop that never said so)."""
    from kdviz.ui import runs as ui_runs
    from kdviz.views import run_live

    app.number_input(key="quick:epochs").set_value(300).run()
    click(app, "Start run")
    run_until(app, state_is("running"))
    manager = ui.run_manager()
    run = manager.get(app.query_params["run"])
    draw_header = ui_runs._run_header

    def header_then_the_run_ends(run_, state, mine):
        draw_header(run_, state, mine)
        manager.cancel(run_.id, ui_runs.owner_id())  # the page's own identity: its Stop button
        wait_until(lambda: not run_.live, 60, what="the run to end")

    monkeypatch.setattr(ui_runs, "_run_header", header_then_the_run_ends)
    app.run()
    assert state_is("running")(app) and run.state == "cancelled"
    assert live_redraw_key(app) == "running:"  # what the page shows, not what the run became meanwhile
    monkeypatch.setattr(ui_runs, "_run_header", draw_header)
    polled = json.loads(run_live.shared().answer(run, None, False, "validation", 0, False)[0])
    assert polled["redraw"] == "cancelled:" != live_redraw_key(app)  # so the browser's next poll reruns the panel
    app.run()
    assert state_is("cancelled")(app) and live_redraw_key(app) is None


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
    assert compare.value == [app.query_params["run"]], "the latest run stays chosen after it finished"
    compare.set_value([app.query_params["run"]]).run()
    summary = ui.run_manager().get(app.query_params["run"]).summary
    shown = f"KD val {summary['kd']['val_accuracy']:.1%} / test {summary['kd']['accuracy']:.1%}"
    assert any(shown in m.value for m in app.markdown), "the run's box names both students' validation and test"
    downloads = [button.proto.label for button in app.get("download_button")]
    assert downloads == ["Metrics (CSV)", "Students' weights"]
    assert any("Runs compared, validation accuracy" in str(chart.proto.spec) for chart in app.get("plotly_chart"))
    app.segmented_control(key="overlay_split").set_value("test").run()
    assert any("Runs compared, test accuracy" in str(chart.proto.spec) for chart in app.get("plotly_chart"))


def test_a_shared_link_is_read_only_and_unknown_runs_get_a_message(app):
    click(app, "Start run")
    run_id = app.query_params["run"]
    run_until(app, state_is("completed"))
    viewer = AppTest.from_file(APP, default_timeout=60)
    viewer.query_params["run"] = run_id
    viewer.switch_page(PAGE).run()
    assert not viewer.exception
    assert any("read-only" in c.value for c in viewer.caption)
    assert any("Your runs will be listed here" in i.value for i in viewer.info), "others' runs are not listed"
    assert not any(b.label.endswith("Stop (keeps what was measured)") for b in viewer.button)
    assert not [box for box in viewer.selectbox if box.key == "preset"], "a viewer gets the run, not the form"
    click(viewer, "Configure a run of my own")  # until asked for
    assert viewer.selectbox(key="preset").value == "lecture" and any("Start run" in b.label for b in viewer.button)
    assert any("read-only" in c.value for c in viewer.caption), "the run stays on the page below the form"
    missing = AppTest.from_file(APP, default_timeout=60)
    missing.query_params["run"] = "20200101-000000-000000"
    missing.switch_page(PAGE).run()
    assert not missing.exception
    assert any("no run" in w.value for w in missing.warning)


def test_a_sweep_queues_runs_and_draws_the_summary(app):
    app.selectbox(key="sweep_parameter").set_value("temperature").run()
    app.text_input(key="sweep_values_temperature").set_value("1, 4").run()
    click(app, "Start sweep")
    assert app.query_params["sweep"]
    run_until(app, lambda at: any("Sweep over" in str(chart.proto.spec) for chart in at.get("plotly_chart"))
              and not any(run.live for run in ui.run_manager().list_runs()), timeout=180)  # both runs, in any order
    table = next(frame.value for frame in app.dataframe if "temperature" in frame.value.columns)
    assert list(table["temperature"]) == [1.0, 4.0]
    assert {"hard-label, validation (%)", "KD, validation (%)", "hard-label, test (%)", "KD, test (%)"} <= set(table)
    runs = {run.tags["value"]: run for run in ui.run_manager().list_runs() if run.tags.get("sweep")}
    best = max(runs, key=lambda value: runs[value].summary["kd"]["val_accuracy"])  # the first of ties: the lowest
    best = min(v for v in runs if runs[v].summary["kd"]["val_accuracy"] == runs[best].summary["kd"]["val_accuracy"])
    sentence = next(m.value for m in app.success if m.value.startswith("Best on validation"))
    assert sentence.startswith(f"Best on validation: T = {best:g} ")
    assert f"KD student {runs[best].summary['kd']['accuracy']:.1%}" in sentence


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


def test_a_preset_run_offers_its_tuned_hard_label_baseline_and_runs_it(app):
    """The twin shares KD's settings; a swept preset's run offers the baseline tuned on its own (on validation)."""
    import dataclasses

    from kdviz.core import presets
    from kdviz.core.engine import config_from_dict

    app.number_input(key="quick:epochs").set_value(presets.get_preset("quick").epochs).run()  # the preset as swept
    click(app, "Start run")
    first = app.query_params["run"]
    run_until(app, state_is("completed"))
    texts = " ".join(m.value for m in app.markdown)
    for words in ("A fair baseline", "twin", presets.baseline_settings("quick"), "'quick-baseline' preset"):
        assert words in texts, words
    click(app, "Run the fair baseline (quick-baseline)")
    second = app.query_params["run"]
    assert second != first
    run_until(app, state_is("completed"))
    run = ui.run_manager().get(second)
    expected = dataclasses.replace(presets.get_preset("quick-baseline"), seed=0)  # the preset, this run's seed
    assert config_from_dict(run.config) == expected and run.owner == ui.run_manager().get(first).owner
    assert presets.preset_of(config_from_dict(run.config)) == "quick-baseline"
    assert not any(b for b in app.button if "fair baseline" in b.label)  # the baseline offers nothing
    assert run.tags == {"baseline_of": "quick"}
    assert any("tuned hard-label baseline of the 'quick' preset" in i.value for i in app.info)


def test_the_baseline_preset_in_the_picker_is_the_same_run_as_the_button(app):
    """Picking quick-baseline fills the form with the tuned baseline's settings; its run says what it is."""
    from kdviz.core import presets
    from kdviz.core.engine import config_from_dict

    app.selectbox(key="preset").set_value("quick-baseline").run()
    baseline = presets.get_preset("quick-baseline")
    assert app.number_input(key="quick-baseline:wd").value == baseline.weight_decay
    assert app.number_input(key="quick-baseline:lr").value == baseline.learning_rate
    assert app.number_input(key="quick-baseline:epochs").value == baseline.epochs
    click(app, "Start run")
    run_until(app, state_is("completed"))
    run = ui.run_manager().get(app.query_params["run"])
    assert config_from_dict(run.config) == dataclasses.replace(baseline, device="auto")
    assert any("tuned hard-label baseline of the 'quick' preset" in i.value for i in app.info)
    assert not any("fair baseline" in b.label for b in app.button)


def test_an_over_budget_configuration_says_which_limit_and_queues_nothing(app):
    app.number_input(key="quick:s_width").set_value(8192).run()
    app.number_input(key="quick:s_depth").set_value(16).run()
    message = next(e.value for e in app.error if "budget" in e.value)
    assert "memory" in message and "What would fit" in message, message
    assert all(b.disabled for b in app.button if "Start run" in b.label or "Start sweep" in b.label)
    assert ui.run_manager().list_runs() == [] and not app.query_params.get("run")
    app.number_input(key="quick:s_width").set_value(128).run()
    app.number_input(key="quick:s_depth").set_value(2).run()
    assert not any("budget" in e.value for e in app.error), "a configuration that fits may start"


def test_others_cannot_control_a_run_even_through_the_page_callbacks(app):
    """Control is checked in the run manager: a session that is not the owner gets a refusal, not a stopped run."""
    app.number_input(key="quick:epochs").set_value(300).run()
    click(app, "Start run")
    run_id = app.query_params["run"]
    run_until(app, state_is("running"))
    manager = ui.run_manager()
    with pytest.raises(PermissionError, match="belongs to someone else"):
        manager.cancel(run_id, "a-session-that-only-has-the-link")
    assert manager.get(run_id).state == "running"
    click(app, "Stop")
    run_until(app, state_is("cancelled"))


def test_a_viewer_can_run_the_shared_configuration_as_their_own(app):
    click(app, "Start run")
    run_id = app.query_params["run"]
    run_until(app, state_is("completed"))
    viewer = AppTest.from_file(APP, default_timeout=60)
    viewer.query_params["run"] = run_id
    viewer.switch_page(PAGE).run()
    click(viewer, "Run this configuration myself")
    copy_id = viewer.query_params["run"]
    assert copy_id != run_id and not viewer.exception
    manager = ui.run_manager()
    copy, original = manager.get(copy_id), manager.get(run_id)
    assert copy.config == original.config and copy.owner != original.owner
    run_until(viewer, state_is("completed"))
    assert manager.get(copy_id).summary["kd"]["accuracy"] == original.summary["kd"]["accuracy"]


def test_a_bad_server_setting_gets_the_operator_a_message_not_a_traceback(monkeypatch):
    monkeypatch.setenv("KDVIZ_WORKERS", "two")
    ui.run_manager.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page(PAGE).run()
    assert not at.exception
    assert any("KDVIZ_WORKERS" in e.value and "restart the server" in e.value for e in at.error), \
        [e.value for e in at.error]
    monkeypatch.delenv("KDVIZ_WORKERS")
    ui.run_manager.clear()
    tasks.stop_all_tasks()


def test_the_history_says_which_runs_the_disk_quota_removed(app):
    import dataclasses

    from kdviz.core.identity import owner_key
    from kdviz.core.presets import PRESETS

    manager = ui.run_manager()
    estimate = manager.check(PRESETS["quick"][1]).disk_bytes
    manager.settings = dataclasses.replace(manager.settings, max_disk_per_browser_bytes=3 * estimate)
    old = "20260101-000000-abcdef"
    manager.store.create(old, {"config": dataclasses.asdict(PRESETS["quick"][1]), "created": 1.0,
                               "owner": owner_key(app.session_state["owner_id"])})
    manager.store.students_path(old).write_bytes(b"\0" * 10 * estimate)
    manager.store.write_status(old, {"state": "completed"})
    click(app, "Start run")
    assert not app.exception and not manager.store.exists(old), "the old run made room for the new one"
    notice = [w.value for w in app.warning if old in w.value]
    assert notice and "1 of your oldest finished run were removed" in notice[0]
    click(app, "Dismiss")
    assert not any(old in w.value for w in app.warning)
