"""The why-it-works page (AppTest through app.py's router): run an experiment on a tiny setting, bad inputs."""
from __future__ import annotations

import dataclasses

import pytest

from conftest import open_app_page, wait_run_completed, wait_until
from kdviz import ui
from kdviz.core.engine import TeacherConfig
from kdviz.core.models import ModelSpec
from kdviz.experiments import gradient_variance
PAGE = "pages/why_it_works.py"
TINY_TEACHER = TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0)


@pytest.fixture
def page(monkeypatch):
    base = gradient_variance.default_config()
    tiny = dataclasses.replace(base, distill=dataclasses.replace(
        base.distill, teacher=TINY_TEACHER, student=ModelSpec("mlp", 8, 1), epochs=2))
    monkeypatch.setattr(gradient_variance, "default_config", lambda: tiny)
    yield from open_app_page(PAGE)


def test_the_gradient_variance_experiment_runs_and_draws_its_chart_and_verdict(page):
    page.text_input(key="why.gv.epochs").set_value("0, 1").run()
    page.text_input(key="why.gv.temperatures").set_value("1, 8").run()
    next(b for b in page.button if b.key == "exp.run.gradient-variance").click().run()
    run_id = page.query_params["gradient-variance"]
    assert run_id

    wait_run_completed(page, "the experiment to complete")
    assert any("Gradient noise" in str(chart.proto.spec) for chart in page.get("plotly_chart"))
    assert any(s.value.startswith(("Agrees", "Mostly", "Disagrees")) for s in [*page.success, *page.warning])
    run = ui.run_manager().get(run_id)
    assert len(run.summary["points"]) == 4 and ui.run_manager().owns(run, page.session_state["owner_id"])


@pytest.mark.parametrize("key, value, words", [("why.gv.temperatures", "0", "temperature"),
                                                ("why.gv.epochs", "one", "not an integer"),
                                                ("why.gv.epochs", "-1", "epochs")])
def test_bad_settings_get_a_message_and_nothing_runs(page, key, value, words):
    page.text_input(key=key).set_value(value).run()
    assert not page.exception
    assert any(words in e.value for e in page.error), [e.value for e in page.error]
    assert next(b for b in page.button if b.key == "exp.run.gradient-variance").disabled
    assert ui.run_manager().list_runs() == []


def test_earlier_runs_are_listed_and_reopened(page):
    page.text_input(key="why.gv.epochs").set_value("0").run()
    page.text_input(key="why.gv.temperatures").set_value("1").run()
    button = lambda: next(b for b in page.button if b.key == "exp.run.gradient-variance")  # noqa: E731
    button().click().run()
    first = page.query_params["gradient-variance"]
    wait_until(lambda: not ui.run_manager().get(first).live, 60, what="the first run")
    button().click().run()
    second = page.query_params["gradient-variance"]
    assert second != first
    wait_until(lambda: not ui.run_manager().get(second).live, 60, what="the second run")
    page.run()
    next(b for b in page.button if b.key == f"exp.open.{first}").click().run()
    assert page.query_params["gradient-variance"] == first and not page.exception


def test_the_capacity_experiment_draws_both_curves(page, monkeypatch):
    from kdviz.experiments import capacity

    base = capacity.default_config()
    tiny = dataclasses.replace(base, distill=dataclasses.replace(base.distill, teacher=TINY_TEACHER, epochs=2),
                               widths=(4, 8), train_subsets=(50, 0))
    monkeypatch.setattr(capacity, "default_config", lambda: tiny)
    page.run()
    next(b for b in page.button if b.key == "exp.run.capacity").click().run()
    run_id = page.query_params["capacity"]
    wait_until(lambda: not ui.run_manager().get(run_id).live, 120, what="the capacity run")
    page.run()
    assert not page.exception, [e.value for e in page.exception]
    specs = [str(chart.proto.spec) for chart in page.get("plotly_chart")]
    assert any("Student size" in s for s in specs) and any("Transfer-set size" in s for s in specs)
    assert ui.run_manager().get(run_id).state == "completed"


@pytest.mark.parametrize("key, value, words", [("why.cap.widths", "0", "width"), ("why.cap.subsets", "-5", "subset")])
def test_bad_capacity_settings_get_a_message(page, key, value, words):
    page.text_input(key=key).set_value(value).run()
    assert not page.exception
    assert any(words in e.value for e in page.error), [e.value for e in page.error]
    assert next(b for b in page.button if b.key == "exp.run.capacity").disabled


def test_the_missing_class_experiment_shows_its_bars_and_a_bias_slider(page, monkeypatch):
    from kdviz.experiments import missing_class

    base = missing_class.default_config()
    tiny = dataclasses.replace(base, distill=dataclasses.replace(
        base.distill, teacher=TINY_TEACHER, student=ModelSpec("mlp", 8, 1), epochs=2, augment=0))
    monkeypatch.setattr(missing_class, "default_config", lambda: tiny)
    page.run()
    next(b for b in page.button if b.key == "exp.run.missing-class").click().run()
    run_id = page.query_params["missing-class"]
    wait_until(lambda: not ui.run_manager().get(run_id).live, 120, what="the missing-class run")
    page.run()
    assert not page.exception, [e.value for e in page.exception]
    specs = [str(chart.proto.spec) for chart in page.get("plotly_chart")]
    assert any("never seen in training" in s for s in specs) and any("output bias" in s for s in specs)
    slider = page.select_slider(key=f"why.mc.shift.{run_id}")
    slider.set_value(ui.run_manager().get(run_id).summary["kd"]["val_curve"]["shift"][-1]).run()
    assert not page.exception and any("At a shift of" in c.value for c in page.caption)


def test_a_missing_class_not_in_the_dataset_gets_a_message(page):
    page.number_input(key="why.mc.omitted").set_value(42).run()
    assert not page.exception
    assert any("42" in e.value for e in page.error), [e.value for e in page.error]
    assert next(b for b in page.button if b.key == "exp.run.missing-class").disabled
