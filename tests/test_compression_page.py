"""The compression & energy page (AppTest through app.py's router): the case study, a tiny run, a finished run's
students, bad inputs."""
from __future__ import annotations

import dataclasses
import pytest

from conftest import open_app_page, wait_run_completed, wait_until
from kdviz import ui
from kdviz.core.engine import DistillConfig, TeacherConfig
from kdviz.core.models import ModelSpec
from kdviz.experiments import compression
PAGE = "pages/compression.py"
TINY = DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 32, 1), epochs=1, batch_size=64, augment=0),
                     ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.5, epochs=1, batch_size=64, device="cpu")


@pytest.fixture
def page(monkeypatch):
    tiny = dataclasses.replace(compression.default_config(), distill=TINY, batch_sizes=(1, 16), min_run_time=0.02)
    monkeypatch.setattr(compression, "default_config", lambda: tiny)
    for_run = compression.config_for_run  # a finished run's students: the same short timings (not 5 × 0.2 s each)
    monkeypatch.setattr(compression, "config_for_run", lambda *args, **kwargs: dataclasses.replace(
        for_run(*args, **kwargs), batch_sizes=tiny.batch_sizes, min_run_time=tiny.min_run_time))
    yield from open_app_page(PAGE, timeout=90)


def run_button(page):
    return next(b for b in page.button if b.key == "exp.run.compression")


def completed(page):
    wait_run_completed(page, "the compression run to complete")


def test_the_case_study_is_computed_and_labelled(page):
    table = page.dataframe[0].value
    rows = {row["model"]: row for row in table.to_dict("records")}
    assert rows["ResNet-50"]["parameters"] == 25_557_032 and rows["ResNet-152"]["parameters"] == 60_192_808
    assert rows["ResNet-50"]["lecture, distilled (%)"] == "77.75"
    assert any("2.36×" in m.value for m in page.markdown)
    assert any("quoted from the lecture" in m.value for m in page.markdown)


@pytest.mark.parametrize("watts", [-5.0, 0.0])
def test_a_power_that_is_not_positive_gets_a_message_and_nothing_runs(page, watts):
    page.radio(key="comp.energy").set_value("power").run()
    page.number_input(key="comp.power").set_value(watts).run()
    assert not page.exception
    assert any("power" in e.value and f"{watts:g}" in e.value for e in page.error), [e.value for e in page.error]
    assert run_button(page).disabled and ui.run_manager().list_runs() == []


def test_a_finished_run_must_be_chosen_and_an_unknown_id_is_refused(page):
    page.radio(key="comp.source").set_value("run").run()
    assert any("choose one of your finished runs" in e.value for e in page.error) and run_button(page).disabled
    page.text_input(key="comp.run_id").set_value("20250101-120000-abcdef").run()
    assert any("no finished run" in e.value for e in page.error) and run_button(page).disabled


def test_a_tiny_run_measures_teacher_and_students_with_the_power_given(page):
    page.radio(key="comp.energy").set_value("power").run()
    page.number_input(key="comp.power").set_value(12.0).run()
    run_button(page).click().run()
    run_id = page.query_params["compression"]
    completed(page)
    titles = " ".join(str(chart.proto.spec) for chart in page.get("plotly_chart"))
    # "(estimated)", or "(estimated; shared with other runs: ...)" when another test's training stepped meanwhile
    assert "Size in memory" in titles and "Energy per million predictions (estimated" in titles
    assert any("fewer parameters" in s.value for s in page.success)
    assert any("12 W" in c.value and "the power you entered" in c.value for c in page.caption)
    models = ui.run_manager().get(run_id).summary["models"]
    assert [m["role"] for m in models] == ["teacher", "hard", "kd", "kd_int8"]
    assert all(m["power_watts"] == pytest.approx(12.0) and not m["energy_measured"] for m in models)


def test_the_students_of_my_finished_run_are_measured(page):
    manager = ui.run_manager()
    source = manager.submit(TINY, page.session_state["owner_id"])
    wait_until(lambda: manager.get(source).state == "completed", 60, what="the distillation run")
    page.run()
    page.radio(key="comp.source").set_value("run").run()
    page.selectbox(key="comp.run").set_value(source).run()
    page.radio(key="comp.energy").set_value("power").run()
    run_button(page).click().run()
    completed(page)
    summary = manager.get(page.query_params["compression"]).summary
    students = manager.get(source).summary
    kd = next(m for m in summary["models"] if m["role"] == "kd")
    assert summary["source_run"] == source and kd["accuracy"] == pytest.approx(students["kd"]["accuracy"])
