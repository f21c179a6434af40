"""The capacity-gap experiment (kdviz.experiments.capacity_gap): its teachers, a tiny run, its report and verdict,
its refusals, the CLI, the budget, and its tab on the When it fails page."""
from __future__ import annotations

import dataclasses
import json

import pytest

from conftest import experiment_config, open_app_page, wait_run_completed
from kdviz import ui
from kdviz.core.engine import DistillConfig, Finished, TeacherConfig, run_to_end, train_teacher
from kdviz.core.models import ModelSpec
from kdviz.experiments import capacity_gap
from kdviz.experiments.events import Measured

TINY = DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=2, batch_size=64, augment=0),
                     ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.9, epochs=2, batch_size=64, train_subset=100,
                     device="cpu")
CONFIG = capacity_gap.CapacityGapConfig(TINY, teacher_widths=(16, 8), early_stop_epochs=1, temperatures=(4.0, 2.0))
ROW_KEYS = {"teacher", "width", "depth", "epochs", "early_stopped", "params", "teacher_accuracy",
            "teacher_val_accuracy", "kd_accuracy", "kd_val_accuracy", "hard_accuracy", "hard_val_accuracy",
            "temperature", "by_temperature"}


@pytest.fixture(scope="module")
def teacher():
    finished = run_to_end(train_teacher(TINY.teacher, "cpu"))
    assert finished.status == "completed"
    return finished.models["teacher"]


def events_of(config, teacher, should_stop=None):
    events = list(capacity_gap.run(config, teacher, should_stop))
    assert isinstance(events[-1], Finished) and not any(isinstance(e, Finished) for e in events[:-1])
    return events


def without_times(rows):
    return [{k: v for k, v in row.items() if k not in ("seconds", "cached")} for row in rows]


# ---- the plan -------------------------------------------------------------------------------------------------

def test_teachers_grow_then_the_widest_stops_early_and_seeds_follow_the_students_seed():
    seeded = dataclasses.replace(CONFIG, distill=dataclasses.replace(TINY, seed=3))
    teachers = capacity_gap.teacher_configs(seeded)
    assert [(t.model.width, t.epochs) for t in teachers] == [(8, 2), (16, 2), (16, 1)]
    assert {t.seed for t in teachers} == {TINY.teacher.seed + 3}
    for t in teachers:  # only the width and (the early-stopped one) the epochs differ from the base teacher
        assert dataclasses.replace(t, model=TINY.teacher.model, epochs=2, seed=0) == TINY.teacher
    assert len(capacity_gap.teacher_configs(dataclasses.replace(CONFIG, early_stop_epochs=0))) == 2
    configs = capacity_gap.budget_configs(CONFIG)
    assert configs[0] == TINY and len(configs) == 1 + 3 * 2
    assert {(c.teacher.model.width, c.teacher.epochs, c.temperature) for c in configs[1:]} == {
        (w, e, t) for w, e in ((8, 2), (16, 2), (16, 1)) for t in (2.0, 4.0)}
    assert all(dataclasses.replace(c, teacher=TINY.teacher, temperature=4.0) == TINY for c in configs)


def test_default_config_is_offline_with_a_small_student_and_fits_the_default_budget():
    from kdviz import experiments
    from kdviz.runs.settings import server_settings

    config = capacity_gap.check(capacity_gap.default_config())
    base = config.distill
    assert base.dataset == "digits" and base.augment == 0 and base.student == ModelSpec("mlp", 16, 1)
    assert config.teacher_widths == (16, 64, 256, 1024) and 0 < config.early_stop_epochs < base.teacher.epochs
    budget = server_settings().budget
    experiments.check_budget(config, budget, teacher_cached=False)  # nothing cached: every teacher trains
    cost = experiments.experiment_cost(config, teacher_cached=False)
    assert cost.work_flops < budget.max_work_flops / 10 and cost.memory_bytes < budget.max_memory_bytes / 2


def test_an_oversized_setting_is_refused():
    from kdviz import experiments
    from kdviz.core.budget import OverBudget
    from kdviz.runs.settings import server_settings

    base = capacity_gap.default_config()
    long = dataclasses.replace(base, distill=dataclasses.replace(
        base.distill, teacher=dataclasses.replace(base.distill.teacher, epochs=6000)))  # 108,000 steps a teacher
    with pytest.raises(OverBudget, match="steps"):
        experiments.check_budget(long, server_settings().budget, teacher_cached=True)


# ---- a tiny run -----------------------------------------------------------------------------------------------

def test_tiny_run_measures_the_hard_student_then_each_teacher(teacher):
    events = events_of(CONFIG, teacher)
    measured = [e for e in events if isinstance(e, Measured)]
    finished = events[-1]
    assert finished.status == "completed"
    assert [m.done for m in measured] == [1, 2, 3, 4] and {m.total for m in measured} == {4}
    assert measured[0].point["kind"] == "hard" and {m.point["kind"] for m in measured[1:]} == {"teacher"}
    rows = finished.summary["rows"]
    assert [{k: v for k, v in m.point.items() if k != "kind"} for m in measured[1:]] == rows
    assert [(r["teacher"], r["early_stopped"]) for r in rows] == [
        ("8×1", False), ("16×1", False), ("16×1 stopped at 1 epoch", True)]
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert [s["temperature"] for s in row["by_temperature"]] == [2.0, 4.0]
        chosen = capacity_gap.choose_temperature(row["by_temperature"])  # chosen on validation
        assert (row["temperature"], row["kd_val_accuracy"], row["kd_accuracy"]) == (
            chosen["temperature"], chosen["val_accuracy"], chosen["accuracy"])
        assert row["hard_accuracy"] == finished.summary["hard"]["accuracy"]
        for key in ("teacher_accuracy", "teacher_val_accuracy", "kd_accuracy", "kd_val_accuracy"):
            assert 0.0 <= row[key] <= 1.0
    assert rows[0]["params"] == 64 * 8 + 8 + 8 * 10 + 10 and rows[1]["params"] == rows[2]["params"]
    assert finished.summary["hard"]["params"] == 64 * 8 + 8 + 8 * 10 + 10  # the student, mlp 8×1
    json.dumps(finished.summary)


def test_choose_temperature_prefers_validation_then_the_lower_t():
    students = [{"temperature": 2.0, "val_accuracy": 0.9, "accuracy": 0.99},
                {"temperature": 4.0, "val_accuracy": 0.95, "accuracy": 0.80},
                {"temperature": 8.0, "val_accuracy": 0.95, "accuracy": 0.85}]
    assert capacity_gap.choose_temperature(students)["temperature"] == 4.0


def test_tiny_run_is_reproducible(teacher):
    config = dataclasses.replace(CONFIG, teacher_widths=(8,), early_stop_epochs=0, temperatures=(4.0,))
    first = events_of(config, teacher)[-1].summary
    second = events_of(config, teacher)[-1].summary  # its teacher from the cache: the same weights
    assert without_times(first["rows"]) == without_times(second["rows"]) and first["hard"] == second["hard"]
    other = events_of(dataclasses.replace(config, distill=dataclasses.replace(TINY, seed=1)), teacher)[-1].summary
    assert without_times(other["rows"]) != without_times(first["rows"])


def test_a_stop_keeps_the_rows_measured_so_far(teacher):
    seen = []

    def after_the_first_teacher():
        return any(m.point["kind"] == "teacher" for m in seen)

    events = []
    for event in capacity_gap.run(CONFIG, teacher, after_the_first_teacher):
        events.append(event)
        if isinstance(event, Measured):
            seen.append(event)
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.status == "cancelled"
    assert len(seen) == 2 and finished.summary["rows"] == [{k: v for k, v in seen[1].point.items() if k != "kind"}]
    assert finished.summary["hard"]
    stopped_at_once = events_of(CONFIG, teacher, lambda: True)[-1]
    assert stopped_at_once.status == "cancelled" and stopped_at_once.summary["rows"] == []


# ---- bad input ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"teacher_widths": ()}, r"give at least one teacher width"),
    ({"teacher_widths": (0, 8)}, r"teacher widths must be integers in \[1, 4096\], got 0"),
    ({"teacher_widths": (8, 5000)}, r"got 5000"),
    ({"teacher_widths": (8.5,)}, r"teacher widths must be integers"),
    ({"teacher_widths": tuple(range(1, 11))}, r"at most 8 teacher widths, got 10"),
    ({"teacher_widths": [8, 16]}, r"teacher widths must be a tuple of integers"),
    ({"early_stop_epochs": -1}, r"early-stop epochs must be an integer >= 0"),
    ({"early_stop_epochs": 2}, r"early-stop epochs must be fewer than the teachers' 2 epochs, got 2"),
    ({"temperatures": ()}, r"give at least one temperature"),
    ({"temperatures": (0.0,)}, r"temperature"),
    ({"temperatures": ("hot",)}, r"temperatures must be numbers > 0, got 'hot'"),
])
def test_bad_input_is_a_one_line_value_error(changes, message):
    with pytest.raises(ValueError, match=message) as error:
        capacity_gap.check(dataclasses.replace(CONFIG, **changes))
    assert "\n" not in str(error.value)


def test_run_checks_before_training(teacher):
    with pytest.raises(ValueError, match="got 9000"):
        next(capacity_gap.run(dataclasses.replace(CONFIG, teacher_widths=(9000,)), teacher))


# ---- the report and its verdict -------------------------------------------------------------------------------

def fake_run(seed, cells, hard=(0.80, 0.78)):
    """A run's summary: cells are (width, epochs, teacher val, teacher test, student val, student test)."""
    rows = [{"teacher": capacity_gap.teacher_label(w, 2, e, e < 30), "width": w, "depth": 2, "epochs": e,
             "early_stopped": e < 30, "params": 100 * w, "teacher_val_accuracy": tv, "teacher_accuracy": tt,
             "kd_val_accuracy": sv, "kd_accuracy": st, "hard_val_accuracy": hard[0], "hard_accuracy": hard[1],
             "temperature": 4.0, "by_temperature": [], "seconds": 0.1} for w, e, tv, tt, sv, st in cells]
    return {"seed": seed, "status": "completed", "rows": rows, "seconds": 1.0,
            "hard": {"val_accuracy": hard[0], "accuracy": hard[1], "params": 50}}


def test_the_verdict_chooses_on_validation_where_test_disagrees():
    # validation: the widest teacher is best, but the 16-wide one's student is; test says the opposite of both
    runs = [fake_run(0, [(16, 30, 0.90, 0.97, 0.95, 0.85), (64, 30, 0.97, 0.90, 0.90, 0.96),
                         (64, 2, 0.85, 0.85, 0.88, 0.88)]),
            fake_run(1, [(16, 30, 0.92, 0.97, 0.93, 0.85), (64, 30, 0.97, 0.90, 0.93, 0.96),
                         (64, 2, 0.85, 0.85, 0.88, 0.88)])]
    result = capacity_gap.report(CONFIG, runs)
    json.dumps(result)
    assert {"experiment", "rows", "runs", "best_teacher_on_validation", "best_student_on_validation",
            "seeds_best_teacher_taught_best", "claim_holds", "verdict", "student", "temperatures"} <= set(result)
    assert result["experiment"] == "capacity-gap" and result["runs"] == runs
    assert [(r["width"], r["epochs"], r["n_seeds"]) for r in result["rows"]] == [(16, 30, 2), (64, 30, 2), (64, 2, 2)]
    first = result["rows"][0]
    assert first["teacher_val_accuracy"] == pytest.approx(0.91) and first["teacher_val_accuracy_std"] > 0
    assert result["best_teacher_on_validation"]["width"] == 64 and result["best_student_on_validation"]["width"] == 16
    assert result["claim_holds"] and result["seeds_best_teacher_taught_best"] == {"agree": 1, "of": 2}  # seed 1: tie
    verdict = result["verdict"]
    assert "the most accurate teacher is 64×2 (97.00 %; test 90.00 %)" in verdict
    assert "The best student on validation learnt from 16×2, a less accurate teacher (91.00 % on validation): " \
        "94.00 % on validation, +2.50 ± 3.54 points (better on 1 of 2 seeds, tied on 1); on test 85.00 %, " \
        "-11.00 ± 0.00 points (better on 0 of 2 seeds, worse on 2)" in verdict  # paired: the same seeds
    assert "by less than the spread of the paired difference over seeds: no clear sign of the paper's claim" \
        in verdict
    assert "Test does not confirm it" in verdict and "a best student on 1 of 2 seeds" in verdict
    assert "The early-stopped teacher (64×2 stopped at 2 epochs, 85.00 % on validation) taught worse than the same " \
        "teacher fully trained" in verdict
    assert result["early_stopped_vs_full"]["val"]["mean"] == pytest.approx(-0.035)
    text = capacity_gap.format_text(result)
    assert "best teacher on validation" in text and "best student on validation" in text
    assert "64×2 stopped at 2 epochs" in text and "hard-label student" in text


def test_the_verdict_says_plainly_when_the_claim_does_not_hold():
    result = capacity_gap.report(CONFIG, [fake_run(0, [(16, 30, 0.90, 0.90, 0.90, 0.90),
                                                       (64, 30, 0.97, 0.96, 0.93, 0.92)])])
    assert not result["claim_holds"]
    assert "the paper's claim does not show here: the best teacher also teaches best" in result["verdict"]


# ---- the command line and the record --------------------------------------------------------------------------

def test_flags_build_the_config():
    config = experiment_config(capacity_gap, ["--teacher-widths", "16", "8", "--early-stop-epochs", "1",
                                              "--temperatures", "4", "2"], TINY)
    assert config == CONFIG
    assert experiment_config(capacity_gap, []) == capacity_gap.default_config()
    hotter = dataclasses.replace(capacity_gap.default_config().distill, temperature=8.0)  # --temperature 8
    assert experiment_config(capacity_gap, [], hotter).temperatures == (8.0,)


def test_the_record_round_trips():
    from kdviz import experiments

    record = json.loads(json.dumps(experiments.to_record(CONFIG)))
    assert record["experiment"] == "capacity-gap" and experiments.from_record(record) == CONFIG


def test_cli_runs_the_experiment_and_refuses_a_bad_value_in_one_line(tmp_path, capsys):
    from kdviz.cli import main
    from tests.test_cli import _one_error_line

    flags = ["experiment", "capacity-gap", "--teacher-width", "16", "--teacher-depth", "1", "--teacher-epochs", "2",
             "--student-width", "8", "--epochs", "1", "--device", "cpu"]
    assert main([*flags, "--teacher-widths", "0"]) != 0
    assert "teacher widths must be integers in [1, 4096], got 0" in _one_error_line(capsys)
    out = tmp_path / "gap.json"
    code = main([*flags, "--teacher-widths", "8", "--early-stop-epochs", "1", "--temperatures", "4",
                 "--seeds", "0", "1", "--json", str(out)])
    assert code == 0
    assert "(means over 2 seeds)" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert [(r["teacher"], r["n_seeds"]) for r in result["rows"]] == [("8×1", 2), ("8×1 stopped at 1 epoch", 2)]
    assert [run["seed"] for run in result["runs"]] == [0, 1]


# ---- the page -------------------------------------------------------------------------------------------------

@pytest.fixture
def page(monkeypatch):
    tiny = dataclasses.replace(CONFIG, distill=dataclasses.replace(TINY, device="auto"), temperatures=(4.0,))
    monkeypatch.setattr(capacity_gap, "default_config", lambda: tiny)
    yield from open_app_page("pages/when_it_fails.py")


def test_the_tab_runs_the_experiment_and_draws_its_chart_verdict_and_table(page):
    next(b for b in page.button if b.key == "exp.run.capacity-gap").click().run()
    run_id = page.query_params["capacity-gap"]
    assert run_id
    wait_run_completed(page, "the capacity-gap run")
    assert any("Does the most accurate teacher teach best" in str(c.proto.spec) for c in page.get("plotly_chart"))
    assert any("the most accurate teacher is" in s.value for s in [*page.success, *page.warning])
    run = ui.run_manager().get(run_id)
    assert run.state == "completed" and len(run.summary["rows"]) == 3


@pytest.mark.parametrize("key, value, words", [("gap.widths", "0", "teacher widths"),
                                                ("gap.widths", "wide", "not an integer"),
                                                ("gap.temperatures", "-1", "temperature")])
def test_bad_settings_get_a_message_and_nothing_runs(page, key, value, words):
    page.text_input(key=key).set_value(value).run()
    assert not page.exception
    assert any(words in e.value for e in page.error), [e.value for e in page.error]
    assert next(b for b in page.button if b.key == "exp.run.capacity-gap").disabled
