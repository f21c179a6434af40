"""The patient-and-consistent experiment (kdviz.experiments.patient_consistent): what its two runs are, that one long
run gives every epoch count, its report and choice on validation, its refusals, the CLI and its tab on the page."""
from __future__ import annotations

import dataclasses
import json

import pytest

from conftest import experiment_config, open_app_page, wait_run_completed
from kdviz.core.engine import DistillConfig, Diverged, Finished, TeacherConfig, distill, run_to_end, train_teacher
from kdviz.core.models import ModelSpec
from kdviz.experiments import patient_consistent as pc
from kdviz.experiments.events import Measured

TINY_TEACHER = TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0)
TINY = DistillConfig(TINY_TEACHER, ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.9, epochs=3, batch_size=64,
                     augment=1, train_subset=200, device="cpu")
CONFIG = pc.PatientConsistentConfig(TINY, epochs=(1, 3))


@pytest.fixture(scope="module")
def teacher():
    finished = run_to_end(train_teacher(TINY_TEACHER, "cpu"))
    assert finished.status == "completed"
    return finished.models["teacher"]


@pytest.fixture(scope="module")
def tiny_run(teacher):
    return list(pc.run(CONFIG, teacher))


def point(points, mode, epoch):
    return next(p for p in points if p["mode"] == mode and p["epoch"] == epoch)


# ---- the two runs ---------------------------------------------------------------------------------------------

def test_a_tiny_run_measures_every_epoch_of_both_runs(tiny_run):
    measured = [e for e in tiny_run if isinstance(e, Measured)]
    finished = tiny_run[-1]
    assert isinstance(finished, Finished) and finished.status == "completed"
    assert [(m.point["mode"], m.point["epoch"]) for m in measured] == [
        ("consistent", 1), ("fixed", 1), ("consistent", 2), ("fixed", 2), ("consistent", 3), ("fixed", 3)]
    assert [m.done for m in measured] == list(range(1, 7)) and {m.total for m in measured} == {6}
    points = finished.summary["points"]
    assert points == [m.point for m in measured]
    assert [p["reported"] for p in points if p["mode"] == "fixed"] == [True, False, True]
    assert all("hard_accuracy" in p for p in points if p["mode"] == "consistent")
    assert not any("hard_accuracy" in p for p in points if p["mode"] == "fixed")
    assert finished.summary["n_train"] == 200 and finished.summary["epochs"] == [1, 3]
    views = finished.summary["teacher_views"]
    assert views["kl"] > 0 and 0 < views["same_top_class"] <= 1 and views["n_images"] == 200
    assert 0 <= views["view_accuracy"] <= 1 and 0 <= views["image_accuracy"] <= 1
    json.dumps(finished.summary)


def test_the_fixed_teacher_changes_only_the_kd_student(teacher, tiny_run):
    """The fixed run's KD student differs from the consistent run's; the hard-label student is the consistent run's,
    and a fixed run that also trains one gets the very same one (same initial weights, batches and jitter)."""
    points = tiny_run[-1].summary["points"]
    assert any(point(points, "fixed", e)["kd_val_accuracy"] != point(points, "consistent", e)["kd_val_accuracy"]
               for e in (1, 2, 3))
    fixed_with_hard = run_to_end(distill(pc.run_config(CONFIG, "fixed"), teacher, students=("hard", "kd")))
    assert fixed_with_hard.summary["hard"]["val_accuracy"] == point(points, "consistent", 3)["hard_val_accuracy"]
    assert fixed_with_hard.summary["kd"]["val_accuracy"] == point(points, "fixed", 3)["kd_val_accuracy"]
    assert pc.run_config(CONFIG, "fixed") == dataclasses.replace(TINY, consistent_teacher=False)


def test_a_point_at_epoch_e_is_a_run_of_e_epochs(teacher, tiny_run):
    """The constant learning rate: the evaluation after epoch 2 of the 3-epoch runs is a 2-epoch run's result."""
    points = tiny_run[-1].summary["points"]
    for mode in pc.MODES:
        short = dataclasses.replace(pc.run_config(CONFIG, mode), epochs=2)
        summary = run_to_end(distill(short, teacher, students=("hard", "kd"))).summary
        here = point(points, mode, 2)
        assert (here["kd_accuracy"], here["kd_val_accuracy"]) == (summary["kd"]["accuracy"],
                                                                  summary["kd"]["val_accuracy"])


def test_a_tiny_run_is_reproducible(teacher, tiny_run):
    config = dataclasses.replace(CONFIG, epochs=(1,))
    again = list(pc.run(config, teacher))[-1].summary["points"]
    assert again == tiny_run[-1].summary["points"][:2]
    other = list(pc.run(dataclasses.replace(config, distill=dataclasses.replace(TINY, seed=1)), teacher))
    assert other[-1].summary["points"] != again


def test_a_stop_keeps_what_was_measured(teacher):
    seen = []
    events = []
    for event in pc.run(CONFIG, teacher, lambda: len(seen) >= 3):
        events.append(event)
        if isinstance(event, Measured):
            seen.append(event.point)
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.status == "cancelled"
    assert finished.summary["points"] == seen and len(seen) == 3
    assert [r["epoch"] for r in pc.by_epoch(seen)] == [1]  # epoch 2 of the fixed run was never measured


def test_a_diverged_run_ends_the_experiment_there(teacher):
    config = dataclasses.replace(CONFIG, distill=dataclasses.replace(TINY, learning_rate=1e30))
    events = list(pc.run(config, teacher))
    assert events[-1].status == "diverged" and any(isinstance(e, Diverged) for e in events)
    assert events[-1].summary["points"] == [e.point for e in events if isinstance(e, Measured)]


# ---- report, choice on validation, verdict --------------------------------------------------------------------

def fake_run(seed, cells):
    """A seed's points: cells are (epoch, consistent val, fixed val, hard val, consistent test, fixed test, hard
    test), all reported."""
    points = []
    for epoch, cv, fv, hv, ct, ft, ht in cells:
        points.append({"mode": "consistent", "epoch": epoch, "reported": True, "kd_val_accuracy": cv,
                       "kd_accuracy": ct, "hard_val_accuracy": hv, "hard_accuracy": ht})
        points.append({"mode": "fixed", "epoch": epoch, "reported": True, "kd_val_accuracy": fv, "kd_accuracy": ft})
    views = {"kl": 0.01, "same_top_class": 0.98, "view_accuracy": 0.97, "image_accuracy": 0.99, "temperature": 20.0,
             "draws": 5, "n_images": 1000}
    return {"seed": seed, "status": "completed", "points": points, "teacher": {"accuracy": 0.96, "val_accuracy": 0.97},
            "teacher_views": views, "seconds": 2.0, "epochs": [c[0] for c in cells], "n_train": 1000}


def test_report_means_over_seeds_and_chooses_on_validation():
    # validation is best at 10 epochs for the consistent student although test is best at 20
    runs = [fake_run(0, [(10, 0.90, 0.88, 0.85, 0.89, 0.88, 0.84), (20, 0.89, 0.86, 0.87, 0.93, 0.85, 0.86)]),
            fake_run(1, [(10, 0.92, 0.88, 0.85, 0.91, 0.86, 0.84), (20, 0.89, 0.90, 0.87, 0.93, 0.87, 0.86)])]
    result = pc.report(CONFIG, runs)
    json.dumps(result)
    assert set(result) >= {"experiment", "rows", "curves", "runs", "chosen_on_validation", "teacher", "epochs",
                           "seconds_per_seed"}
    assert result["experiment"] == "patient-consistent" and result["runs"] == runs
    first, second = result["rows"]
    assert (first["epoch"], first["n_seeds"]) == (10, 2)
    assert first["consistent_val_accuracy"] == pytest.approx(0.91) and first["consistent_val_accuracy_std"] > 0
    assert first["val_gap"] == pytest.approx(0.03) and first["gap"] == pytest.approx(0.03)
    assert first["consistent_val_wins"] == 2 and second["consistent_val_wins"] == 1
    assert second["val_fixed_vs_hard"] == pytest.approx(0.01) and first["val_fixed_vs_hard"] == pytest.approx(0.03)
    chosen = result["chosen_on_validation"]
    assert chosen["consistent"]["epoch"] == 10 and chosen["consistent"]["accuracy"] == pytest.approx(0.90)
    assert chosen["fixed"]["epoch"] == 10 and chosen["hard"]["epoch"] == 20  # fixed: tie at 0.88, fewer epochs
    assert (chosen["consistent_wins"], chosen["n_seeds"]) == (2, 2)
    text = pc.format_text(result)
    assert "Chosen on validation (means over 2 seeds): the consistent teacher's student at 10 epochs (90.00 % test)" \
        in text
    assert "consistent − fixed on test +3.00 points, consistent better on 2 of 2 seeds" in text
    assert "the gap does not grow with training" in text and "best on validation before the longest run" in text
    assert not pc.agrees(result["rows"], chosen)
    assert "KL(view ‖ image) 0.0100 nats, the same top class on 98.0 % of views" in text


def test_the_verdict_says_when_the_claim_holds_and_when_fixed_is_below_hard():
    holds = pc.summarise([fake_run(0, [(5, 0.85, 0.84, 0.86, 0.85, 0.84, 0.85),
                                       (50, 0.95, 0.90, 0.88, 0.94, 0.90, 0.88)])])
    text = pc.verdict(holds)
    assert pc.agrees(holds) and "The paper's claim holds here" in text
    assert "below the hard-label student on validation at 5 epochs" in text
    flat = pc.summarise([fake_run(0, [(5, 0.85, 0.86, 0.80, 0.85, 0.86, 0.80)])])
    assert "not better on test" in pc.verdict(flat) and "ahead on validation at only 0 of 1" in pc.verdict(flat)


# ---- refusals, budget, CLI, record ----------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"epochs": ()}, r"give at least one epoch count"),
    ({"epochs": (5, 3)}, r"ascending without repeats"),
    ({"epochs": (5, 5)}, r"ascending without repeats"),
    ({"epochs": (0, 5)}, r"integers in \[1, 1000\], got \(0, 5\)"),
    ({"epochs": (5, 2000)}, r"integers in \[1, 1000\]"),
    ({"epochs": (2.5,)}, r"integers in \[1, 1000\]"),
    ({"epochs": tuple(range(1, 30))}, r"at most 24 epoch counts"),
    ({"distill": dataclasses.replace(TINY, augment=0)}, r"needs jitter \(augment > 0\)"),
    ({"distill": dataclasses.replace(TINY, temperature=-1.0)}, r"temperature"),
])
def test_bad_input_is_a_one_line_value_error(changes, message):
    with pytest.raises(ValueError, match=message) as error:
        pc.check(dataclasses.replace(CONFIG, **changes))
    assert "\n" not in str(error.value)


def test_the_default_fits_the_default_budget_and_both_trainings_count():
    from kdviz import experiments
    from kdviz.core.budget import Budget, OverBudget, run_cost
    from kdviz.runs.settings import server_settings

    default = pc.default_config()
    assert default.distill.epochs == max(default.epochs) and default.distill.augment > 0
    experiments.check_budget(default, server_settings().budget, teacher_cached=False)
    consistent, fixed = (run_cost(c, True) for c in pc.budget_configs(default))
    assert fixed.work_flops < consistent.work_flops  # one student, the teacher's labels once
    each_fits = Budget(max_work_flops=1.01 * consistent.work_flops)
    with pytest.raises(OverBudget, match="in all"):
        experiments.check_budget(default, each_fits, teacher_cached=True)
    with pytest.raises(OverBudget):
        experiments.check_budget(dataclasses.replace(default, epochs=(1000,)), Budget(max_steps=5000), True)


def test_arguments_build_the_config_and_the_record_round_trips():
    from kdviz import experiments

    assert experiment_config(pc, ["--report-epochs", "1", "3"], TINY) == CONFIG
    assert experiment_config(pc, []) == pc.default_config()
    record = json.loads(json.dumps(experiments.to_record(CONFIG)))
    assert record["experiment"] == "patient-consistent" and experiments.from_record(record) == CONFIG


@pytest.mark.parametrize("argv, words", [(["--report-epochs", "5", "3"], "ascending"),
                                         (["--augment", "0"], "needs jitter"),
                                         (["--report-epochs", "five"], "invalid int value")])
def test_a_bad_cli_value_is_one_line(capsys, argv, words):
    from kdviz.cli import main

    code = main(["experiment", "patient-consistent", *argv])
    assert code != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and words in err.strip().splitlines()[-1]


def test_cli_runs_the_experiment(tmp_path, capsys):
    from kdviz.cli import main

    out = tmp_path / "pc.json"
    code = main(["experiment", "patient-consistent", "--dataset", "digits", "--teacher-width", "16",
                 "--teacher-depth", "1", "--teacher-epochs", "1", "--teacher-augment", "0", "--student-width", "8",
                 "--student-depth", "1", "--train-subset", "200", "--batch-size", "64", "--augment", "1",
                 "--device", "cpu", "--report-epochs", "1", "2", "--seeds", "0", "1", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "consistent wins val/test" in text and "Chosen on validation (means over 2 seeds)" in text
    result = json.loads(out.read_text())
    assert [(r["epoch"], r["n_seeds"]) for r in result["rows"]] == [(1, 2), (2, 2)]
    assert [run["seed"] for run in result["runs"]] == [0, 1] and result["config"]["epochs"] == [1, 2]


# ---- the page's tab -------------------------------------------------------------------------------------------

@pytest.fixture
def page(monkeypatch):
    tiny = pc.PatientConsistentConfig(TINY, epochs=(1, 2))
    monkeypatch.setattr(pc, "default_config", lambda: tiny)
    yield from open_app_page("pages/when_it_fails.py")


def test_the_tab_runs_the_experiment_and_draws_its_chart_and_verdict(page):
    from kdviz import ui

    next(b for b in page.button if b.key == "exp.run.patient-consistent").click().run()
    run_id = page.query_params["patient-consistent"]
    wait_run_completed(page, "the patient-consistent run")
    specs = [str(chart.proto.spec) for chart in page.get("plotly_chart")]
    assert any("whose labels" in s for s in specs) and any("fixed teacher (KD students)" in s for s in specs)
    assert any(s.value.startswith("Chosen on validation") for s in [*page.success, *page.warning])
    page.radio(key=f"pc.split.{run_id}").set_value("").run()
    assert not page.exception and any("test accuracy" in str(c.proto.spec) for c in page.get("plotly_chart"))
    assert len(ui.run_manager().get(run_id).summary["points"]) == 4


@pytest.mark.parametrize("key, value, words", [("pc.epochs", "3, 1", "ascending"),
                                                ("pc.epochs", "one", "not an integer"),
                                                ("pc.jitter", 0, "needs jitter")])
def test_bad_settings_get_a_message_and_nothing_runs(page, key, value, words):
    from kdviz import ui

    widget = page.text_input(key=key) if key == "pc.epochs" else page.number_input(key=key)
    widget.set_value(value).run()
    assert not page.exception
    assert any(words in e.value for e in page.error), [e.value for e in page.error]
    assert next(b for b in page.button if b.key == "exp.run.patient-consistent").disabled
    assert ui.run_manager().list_runs() == []
