"""The label-smoothing experiment (kdviz.experiments.label_smoothing): its flatness measure against hand-computed
values, a tiny run, a stop, the report's choices on validation, its refusals, the CLI, the budget and its page."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from conftest import experiment_config, open_app_page, wait_run_completed
from tests.test_cli import _one_error_line
from kdviz.core.engine import DistillConfig, Finished, Notice, TeacherConfig, run_to_end, train_teacher
from kdviz.core.models import ModelSpec
from kdviz.experiments import label_smoothing as ls
from kdviz.experiments.events import Measured

TINY_TEACHER = TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=3, batch_size=64, augment=0)
TINY = DistillConfig(TINY_TEACHER, ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.9, epochs=2, batch_size=64,
                     learning_rate=1e-2, train_subset=100, device="cpu")
CONFIG = ls.LabelSmoothingConfig(TINY, smoothings=(0.0, 0.3), temperatures=(1.0, 4.0))


@pytest.fixture(scope="module")
def teacher():
    finished = run_to_end(train_teacher(TINY_TEACHER, "cpu"))
    assert finished.status == "completed"
    return finished.models["teacher"]


def events_of(config, teacher, should_stop=None):
    events = list(ls.run(config, teacher, should_stop))
    assert isinstance(events[-1], Finished) and not any(isinstance(e, Finished) for e in events[:-1])
    return events


def comparable(summary: dict) -> dict:
    """A summary without what may differ between two identical runs: times, and whether a teacher was cached."""
    return {**{k: v for k, v in summary.items() if k != "seconds"},
            "teachers": [{k: v for k, v in t.items() if k != "cached"} for t in summary["teachers"]]}


# ---- the flatness of the wrong classes -------------------------------------------------------------------------

def test_flatness_is_one_for_equal_wrong_classes_and_zero_for_one_taking_all():
    labels = np.array([0, 2])
    equal = np.array([[9.0, 1.0, 1.0, 1.0], [-3.0, -3.0, 5.0, -3.0]])  # the true class's logit does not matter
    assert ls.flatness(equal, labels) == pytest.approx(1.0)
    one = np.array([[9.0, 0.0, -1000.0, -1000.0], [-1000.0, -1000.0, 0.0, 3.0]])
    assert ls.flatness(one, labels) == pytest.approx(0.0, abs=1e-12)


def test_flatness_against_a_hand_computed_value():
    # wrong classes with probabilities 1/2, 1/4, 1/4: entropy 1.5·ln 2, over ln 3 for the 3 wrong classes
    logits = np.array([[30.0, math.log(2.0), 0.0, 0.0]])
    assert ls.flatness(logits, np.array([0])) == pytest.approx(1.5 * math.log(2) / math.log(3))
    assert ls.flatness(2 * logits, np.array([0]), temperature=2.0) == pytest.approx(1.5 * math.log(2) / math.log(3))
    # a teacher so sure that its wrong classes' probabilities are 1e-13 still has a well-defined flatness
    assert ls.flatness(np.array([[60.0, math.log(2.0), 0.0, 0.0]]), np.array([0])) == \
        pytest.approx(1.5 * math.log(2) / math.log(3))
    with pytest.raises(ValueError, match="at least 3 classes"):
        ls.flatness(np.array([[1.0, 0.0]]), np.array([0]))


def test_the_similarity_matrix_is_the_mean_off_target_distribution_per_true_class():
    logits = np.array([[5.0, math.log(3.0), 0.0], [5.0, 0.0, math.log(3.0)], [0.0, 0.0, 9.0]])
    labels = np.array([0, 0, 2])
    q = ls.off_target_probabilities(logits, labels)
    assert np.allclose(q, [[0, 0.75, 0.25], [0, 0.25, 0.75], [0.5, 0.5, 0]])
    matrix = ls.similarity_matrix(logits, labels, 3)
    assert matrix[0].tolist() == pytest.approx([0, 0.5, 0.5]) and matrix[2].tolist() == pytest.approx([0.5, 0.5, 0])
    assert np.isnan(matrix[1]).all()  # no image of class 1


# ---- a tiny run -------------------------------------------------------------------------------------------------

def test_tiny_run_measures_the_hard_student_each_teacher_and_each_kd_student(teacher):
    events = events_of(CONFIG, teacher)
    measured = [e for e in events if isinstance(e, Measured)]
    finished = events[-1]
    assert finished.status == "completed"
    assert [m.point["kind"] for m in measured] == ["hard", "teacher", "kd", "kd", "teacher", "kd", "kd"]
    assert [m.done for m in measured] == list(range(1, 8)) and {m.total for m in measured} == {7}
    summary = finished.summary
    assert summary["smoothings"] == [0.0, 0.3] and summary["temperatures"] == [1.0, 4.0]
    assert [(t["smoothing"], t["seed"]) for t in summary["teachers"]] == [(0.0, 0), (0.3, 0)]
    assert summary["teachers"][0]["cached"]  # ε = 0 at seed 0: the caller's teacher itself
    for facts in summary["teachers"]:
        assert 0 <= facts["flatness"] <= 1 and 0 <= facts["off_target_mass"] <= 1
        matrix = np.array(facts["matrix"])
        assert matrix.shape == (10, 10) and np.allclose(matrix.sum(1), 1) and np.allclose(np.diag(matrix), 0)
    assert [(r["smoothing"], r["temperature"]) for r in summary["rows"]] == [(0.0, 1.0), (0.0, 4.0), (0.3, 1.0),
                                                                              (0.3, 4.0)]
    assert ls.summary_from_points([m.point for m in measured]) == {
        k: summary[k] for k in ("classes", "hard", "teachers", "rows")}
    json.dumps(summary)  # plain JSON


def test_tiny_run_is_reproducible_and_each_seed_has_its_own_teachers(teacher):
    first = events_of(CONFIG, teacher)[-1].summary
    second = events_of(CONFIG, teacher)[-1].summary
    assert comparable(first) == comparable(second)
    other = events_of(dataclasses.replace(CONFIG, distill=dataclasses.replace(TINY, seed=1)), teacher)[-1].summary
    assert [t["seed"] for t in other["teachers"]] == [1, 1]  # base teacher seed + distill seed
    assert not other["teachers"][0]["cached"]  # not the caller's (seed 0): trained for this seed
    assert other["teachers"][0]["flatness"] != first["teachers"][0]["flatness"]


def test_a_stop_keeps_what_was_measured(teacher):
    seen = []
    events = []
    for event in ls.run(CONFIG, teacher, lambda: len(seen) >= 3):
        events.append(event)
        if isinstance(event, Measured):
            seen.append(event.point)
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.status == "cancelled"
    assert [p["kind"] for p in seen] == ["hard", "teacher", "kd"]
    assert len(finished.summary["teachers"]) == 1 and len(finished.summary["rows"]) == 1
    assert not any(isinstance(e, Notice) for e in events)  # a stop is no failure
    report = ls.report(CONFIG, [{"seed": 0, "status": "cancelled", **finished.summary}])
    assert "Only the teacher with ε = 0 was measured" in report["verdict"]


def test_stopped_before_anything_is_cancelled_and_empty(teacher):
    finished = events_of(CONFIG, teacher, lambda: True)[-1]
    assert finished.status == "cancelled" and finished.summary["teachers"] == [] and finished.summary["hard"] is None


# ---- the report: means over seeds, T chosen on validation --------------------------------------------------------

def fake_run(seed, hard, teachers, rows):
    """A run's summary: hard (val, test); teachers {ε: (val, test, flatness)}; rows {(ε, T): (val, test)}."""
    matrix = (np.full((3, 3), 0.5) - 0.5 * np.eye(3)).tolist()
    return {"seed": seed, "status": "completed", "classes": ["a", "b", "c"],
            "hard": {"val_accuracy": hard[0], "accuracy": hard[1]},
            "teachers": [{"smoothing": e, "seed": seed, "val_accuracy": v, "accuracy": t, "flatness": f,
                          "off_target_mass": 0.1 + e, "matrix": matrix} for e, (v, t, f) in teachers.items()],
            "rows": [{"smoothing": e, "temperature": temperature, "val_accuracy": v, "accuracy": t}
                     for (e, temperature), (v, t) in rows.items()]}


RUNS = [fake_run(0, (0.80, 0.78), {0.0: (0.90, 0.90, 0.3), 0.3: (0.93, 0.92, 0.9)},
                 {(0.0, 1.0): (0.82, 0.95), (0.0, 4.0): (0.88, 0.86), (0.3, 1.0): (0.85, 0.84),
                  (0.3, 4.0): (0.84, 0.83)}),
        fake_run(1, (0.82, 0.80), {0.0: (0.92, 0.90, 0.5), 0.3: (0.95, 0.94, 0.9)},
                 {(0.0, 1.0): (0.84, 0.95), (0.0, 4.0): (0.90, 0.88), (0.3, 1.0): (0.87, 0.82),
                  (0.3, 4.0): (0.84, 0.83)})]


def test_report_chooses_t_on_validation_not_on_test():
    result = ls.report(CONFIG, RUNS)
    json.dumps(result)
    assert {"experiment", "dataset", "smoothings", "temperatures", "classes", "hard", "teachers", "rows", "chosen",
            "claims", "verdict", "runs"} <= set(result)
    assert result["experiment"] == "label-smoothing" and result["runs"] == RUNS
    # ε = 0: T = 4 is best on validation (0.89) although T = 1 is best on test (0.95)
    assert [(r["smoothing"], r["temperature"]) for r in result["chosen"]] == [(0.0, 4.0), (0.3, 1.0)]
    chosen = result["chosen"][0]
    assert chosen["val_accuracy"] == pytest.approx(0.89) and chosen["accuracy"] == pytest.approx(0.87)
    assert chosen["accuracy_gain"] == pytest.approx(0.08) and chosen["accuracy_wins"] == 2
    teacher = result["teachers"][0]
    assert teacher["flatness"] == pytest.approx(0.4) and teacher["flatness_std"] == pytest.approx(math.sqrt(0.02))
    assert teacher["n_seeds"] == 2 and np.allclose(teacher["matrix"], RUNS[0]["teachers"][0]["matrix"])
    assert result["hard"]["accuracy"] == pytest.approx(0.79)
    assert result["claims"] == {"teacher_more_accurate": True, "flatter": True, "student_worse": True,
                                "teaches_at_low_t": True}
    # seed by seed (the same seed's students start from the same weights): −2 and −6 points at each one's chosen T
    student, teachers = result["paired"]["student_test"], result["paired"]["teacher_val"]
    assert student["mean"] == pytest.approx(-0.04)
    assert (student["n"], student["smaller"], student["larger"]) == (2, 2, 0)
    assert teachers["mean"] == pytest.approx(0.03) and teachers["larger"] == 2
    text = ls.format_text(result)
    assert "worse on 2 of 2 seeds, seed by seed -4.00 points ± 2.83 at each one's T" in text
    assert "smoothing with ε = 0.3 made it more accurate on validation (91.00 % at ε = 0 → 94.00 %" in text
    assert "went from 0.400 to 0.900" in text
    assert "the ε = 0 teacher's at T = 4 87.00 % on test, the ε = 0.3 teacher's at T = 1 83.00 %" in text
    assert "still beat the hard-label student on validation" in text
    assert "The paper's claim holds here in every part." in text
    assert "← chosen on validation" in text


def test_ties_on_validation_go_to_the_lower_temperature():
    rows = [{"smoothing": 0.1, "temperature": t, "val_accuracy": 0.9, "accuracy": a} for t, a in ((8.0, 0.5),
                                                                                                   (2.0, 0.4))]
    assert ls.choose_temperatures(rows)[0]["temperature"] == 2.0


def test_the_verdict_says_where_the_claim_does_not_hold():
    runs = [fake_run(0, (0.80, 0.78), {0.0: (0.95, 0.95, 0.3), 0.3: (0.93, 0.92, 0.2)},
                     {(0.0, 1.0): (0.82, 0.80), (0.3, 1.0): (0.85, 0.84)})]
    result = ls.report(CONFIG, runs)
    assert result["claims"]["teacher_more_accurate"] is False and result["claims"]["student_worse"] is False
    assert "Where the claim does not hold here: the smoothed teacher is not more accurate; its soft labels are not " \
        "flatter; its student is not worse at its best T." in result["verdict"]


# ---- refusals, the CLI, the record, the budget -------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"smoothings": (0.0, 1.0)}, r"label smoothing ε must be a number in \[0, 1\), got 1.0"),
    ({"smoothings": (-0.1,)}, r"label smoothing ε must be a number in \[0, 1\), got -0.1"),
    ({"smoothings": ()}, r"give at least one of the label smoothings"),
    ({"temperatures": ()}, r"give at least one of the temperatures"),
    ({"temperatures": (0.0, 2.0)}, r"temperatures must be numbers > 0 .*got 0.0"),
    ({"temperatures": (float("nan"),)}, r"temperatures must be numbers > 0"),
    ({"temperatures": tuple(float(t) for t in range(1, 15))}, r"at most 12 temperatures, got 14"),
    ({"smoothings": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)}, r"at most 6 label smoothings, got 7"),
    ({"smoothings": [0.0]}, r"label smoothings must be a tuple of numbers"),
    ({"distill": dataclasses.replace(TINY, train_subset=5000)}, r"train subset 5000 is larger"),
])
def test_bad_settings_are_one_line_value_errors(changes, message):
    with pytest.raises(ValueError, match=message) as error:
        ls.check(dataclasses.replace(CONFIG, **changes))
    assert "\n" not in str(error.value)


def test_flags_build_the_config_and_the_record_round_trips():
    from kdviz import experiments

    config = experiment_config(ls, ["--smoothings", "0", "0.2", "--temperatures", "1", "3"], TINY)
    assert config == dataclasses.replace(CONFIG, smoothings=(0.0, 0.2), temperatures=(1.0, 3.0))
    assert experiment_config(ls, []) == ls.default_config()
    record = json.loads(json.dumps(experiments.to_record(config)))
    assert record["experiment"] == "label-smoothing" and experiments.from_record(record) == config


@pytest.mark.parametrize("flags, words", [(["--smoothings", "1.5"], "label smoothing ε must be a number in [0, 1)"),
                                          (["--temperatures", "-2"], "temperatures must be numbers > 0")])
def test_the_cli_refuses_a_bad_value_in_one_line(flags, words, capsys):
    from kdviz.cli import main

    assert main(["experiment", "label-smoothing", "--device", "cpu", *flags]) != 0
    assert words in _one_error_line(capsys)


def test_the_cli_runs_the_experiment(tmp_path, capsys):
    from kdviz.cli import main

    out = tmp_path / "label-smoothing.json"
    code = main(["experiment", "label-smoothing", "--dataset", "digits", "--teacher-width", "16", "--teacher-depth",
                 "1", "--teacher-epochs", "2", "--student-width", "8", "--student-depth", "1", "--epochs", "1",
                 "--train-subset", "100", "--device", "cpu", "--smoothings", "0", "0.2", "--temperatures", "2",
                 "--seeds", "0", "1", "--json", str(out)])
    assert code == 0
    assert "over 2 seeds (means)" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert [run["seed"] for run in result["runs"]] == [0, 1] and result["config"]["smoothings"] == [0.0, 0.2]
    assert [t["n_seeds"] for t in result["teachers"]] == [2, 2]


def test_the_default_fits_the_default_budget_and_counts_every_teacher(monkeypatch):
    from kdviz import experiments
    from kdviz.runs.settings import server_settings

    for name in ("KDVIZ_MAX_RUN_MEMORY_MB", "KDVIZ_MAX_RUN_TFLOP", "KDVIZ_MAX_RUN_STEPS", "KDVIZ_MAX_RUN_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    default = ls.default_config()
    experiments.check_budget(default, server_settings().budget, teacher_cached=False)  # nothing cached yet
    assert [t.label_smoothing for t, _ in ls.budget_teachers(default)] == [0.1, 0.3]  # ε = 0 is distill.teacher
    seed_one = dataclasses.replace(default, distill=dataclasses.replace(default.distill, seed=1))
    assert [(t.label_smoothing, t.seed) for t, _ in ls.budget_teachers(seed_one)] == [(0.0, 1), (0.1, 1), (0.3, 1)]
    assert len(ls.budget_configs(default)) == 1 + 3 * 5
    assert experiments.experiment_cost(seed_one, False).work_flops > experiments.experiment_cost(default, False) \
        .work_flops  # one more teacher to train


def test_an_oversized_setting_is_refused():
    from kdviz import experiments
    from kdviz.core.budget import Budget, OverBudget

    default = ls.default_config()
    work = experiments.experiment_cost(default, teacher_cached=False).work_flops
    experiments.check_budget(default, Budget(max_work_flops=1.01 * work), teacher_cached=False)
    more = dataclasses.replace(default, temperatures=tuple(float(t) for t in range(1, 13)))
    with pytest.raises(OverBudget, match="in all") as refused:
        experiments.check_budget(more, Budget(max_work_flops=1.01 * work), teacher_cached=False)
    assert "\n" not in str(refused.value)


# ---- the page ---------------------------------------------------------------------------------------------------

PAGE = "pages/when_it_fails.py"


@pytest.fixture
def page(monkeypatch):
    tiny = dataclasses.replace(CONFIG, distill=dataclasses.replace(TINY, device="auto"))
    monkeypatch.setattr(ls, "default_config", lambda: tiny)
    yield from open_app_page(PAGE)


def test_the_page_runs_the_experiment_and_draws_its_charts_and_verdict(page):
    from kdviz import ui

    next(b for b in page.button if b.key == "exp.run.label-smoothing").click().run()
    run_id = page.query_params["label-smoothing"]
    assert run_id
    wait_run_completed(page, "the label-smoothing run")
    specs = [str(chart.proto.spec) for chart in page.get("plotly_chart")]
    assert any("Students' test accuracy against T" in s for s in specs)
    assert sum("flatness" in s for s in specs) == len(CONFIG.smoothings)  # a heatmap per teacher
    assert any("Which wrong classes each teacher thinks alike" in m.value for m in page.markdown)
    assert any(s.value.startswith("Teacher, on 1 seed") for s in [*page.success, *page.warning])
    run = ui.run_manager().get(run_id)
    assert run.state == "completed" and len(run.summary["rows"]) == 4


@pytest.mark.parametrize("key, value, words", [("ls.smoothings", "0, 1", "label smoothing"),
                                                ("ls.temperatures", "hot", "not a number")])
def test_a_bad_setting_on_the_page_gets_a_message(page, key, value, words):
    from kdviz import ui

    page.text_input(key=key).set_value(value).run()
    assert not page.exception
    assert any(words in e.value for e in page.error), [e.value for e in page.error]
    assert next(b for b in page.button if b.key == "exp.run.label-smoothing").disabled
    assert ui.run_manager().list_runs() == []


def test_the_heatmaps_are_one_figure_per_teacher_on_one_colour_scale():
    """Side by side on a projector, stacked on a phone: a figure each, but one scale (separate scales would hide the
    flattening), the diagonal left out."""
    from kdviz.views.label_smoothing import similarity_heatmaps

    peaked = [[0.0, 0.9, 0.1], [0.5, 0.0, 0.5], [0.2, 0.8, 0.0]]
    flat = [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]
    figures = similarity_heatmaps([{"smoothing": 0.0, "flatness": 0.4, "matrix": peaked},
                                   {"smoothing": 0.3, "flatness": 1.0, "matrix": flat}], ["a", "b", "c"])
    assert len(figures) == 2
    heatmaps = [figure.data[0] for figure in figures]
    assert {h.zmax for h in heatmaps} == {0.9} and {h.zmin for h in heatmaps} == {0}
    assert all(h.z[i][i] is None for h in heatmaps for i in range(3))
    assert "ε = 0.3" in figures[1].layout.title.text and "flatness 1.00" in figures[1].layout.title.text
