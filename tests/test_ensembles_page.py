"""The ensembles page (AppTest through app.py's router): the worked example, a tiny ensemble run, bad inputs."""
from __future__ import annotations

import pytest

from conftest import open_app_page, wait_run_completed
from kdviz import ui

PAGE = "pages/ensembles.py"


@pytest.fixture
def page():
    yield from open_app_page(PAGE)


def run_button(page):
    return next(b for b in page.button if b.key == "exp.run.ensemble")


def test_the_worked_example_shows_both_targets_and_the_three_losses(page):
    assert any("Three teachers combined" in str(chart.proto.spec) for chart in page.get("plotly_chart"))
    table = next(d.value for d in page.dataframe if "loss" in d.value.columns)
    assert list(table["loss"]) == ["KL to the mean of the probabilities", "mean of the per-teacher KL terms",
                                   "KL to the softmax of the mean logits"]
    gradients = table[[c for c in table.columns if c.startswith("∂/∂z")]].to_numpy()
    assert abs(gradients[0] - gradients[1]).max() < 1e-9 < abs(gradients[0] - gradients[2]).max()
    page.slider(key="ens.example.t").set_value(1.0).run()
    assert not page.exception and "T = 1" in str(page.get("plotly_chart")[0].proto.spec)


@pytest.mark.parametrize("teachers", [0, 1, 11])
def test_too_few_or_too_many_teachers_get_a_message_and_nothing_runs(page, teachers):
    page.number_input(key="ens.n").set_value(teachers).run()
    assert not page.exception
    assert any("2 to 10 teachers" in e.value and str(teachers) in e.value for e in page.error), \
        [e.value for e in page.error]
    assert run_button(page).disabled and ui.run_manager().list_runs() == []


def test_the_lecture_setting_is_offered_with_its_teachers(page):
    page.radio(key="ens.base").set_value("lecture").run()
    assert not page.exception and not page.error and not run_button(page).disabled
    assert any("≈100 s" in r for r in page.radio(key="ens.base").options)


def test_bad_teacher_widths_get_a_message(page):
    page.text_input(key="ens.widths").set_value("64, wide").run()
    assert any("not an integer" in e.value for e in page.error) and run_button(page).disabled
    page.text_input(key="ens.widths").set_value("64, 64, 64").run()  # three widths for five teachers
    assert any("width" in e.value for e in page.error) and run_button(page).disabled


def test_a_two_teacher_ensemble_runs_and_draws_its_results(page):
    page.number_input(key="ens.n").set_value(2).run()
    page.radio(key="ens.combine").set_value("logits").run()
    run_button(page).click().run()
    run_id = page.query_params["ensemble"]

    wait_run_completed(page, "the ensemble run to complete")
    assert any("one student three ways" in str(chart.proto.spec) for chart in page.get("plotly_chart"))
    assert any("best single teacher" in s.value for s in [*page.success, *page.warning])
    summary = ui.run_manager().get(run_id).summary
    assert len(summary["teachers"]) == 2 and summary["combine"] == "logits"
    assert all(summary[role] for role in ("hard", "best_teacher_kd", "ensemble_kd"))
