"""The capacity experiment (kdviz.experiments.capacity): its grid, a tiny run, its report and its refusals."""
from __future__ import annotations

import dataclasses
import json

import pytest

from conftest import experiment_config
from kdviz.core.engine import DistillConfig, Finished, TeacherConfig, run_to_end, train_teacher
from kdviz.core.models import ModelSpec
from kdviz.experiments import capacity
from kdviz.experiments.events import Measured

TINY = DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0),
                     ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.5, epochs=2, batch_size=64, train_subset=200,
                     device="cpu")
CONFIG = capacity.CapacityConfig(TINY, widths=(4, 8), train_subsets=(50, 0))
ROW_KEYS = {"width", "train_subset", "params", "hard_accuracy", "kd_accuracy", "hard_val_accuracy",
            "kd_val_accuracy", "curve"}


@pytest.fixture(scope="module")
def teacher():
    finished = run_to_end(train_teacher(TINY.teacher, "cpu"))
    assert finished.status == "completed"
    return finished.models["teacher"]


def events_of(config, teacher, should_stop=None):
    events = list(capacity.run(config, teacher, should_stop))
    assert isinstance(events[-1], Finished) and not any(isinstance(e, Finished) for e in events[:-1])
    return events


def without_times(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


# ---- the grid -------------------------------------------------------------------------------------------------

def test_grid_has_both_curves_and_the_crossing_once():
    cells = capacity.cells(CONFIG)
    assert [(c["width"], c["train_subset"], c["curves"]) for c in cells] == [
        (4, 200, ("width",)), (8, 200, ("width", "data")),  # the width curve at the base's subset (200)
        (8, 50, ("data",)), (8, 0, ("data",))]  # the data curve at the base's width (8), all images last
    configs = capacity.grid(CONFIG)
    assert len(configs) == len({(c.student.width, c.train_subset) for c in configs}) == 4
    for config in configs:  # only the width and the subset differ from the base config
        assert dataclasses.replace(config, student=TINY.student, train_subset=TINY.train_subset) == TINY
        assert config.student == dataclasses.replace(TINY.student, width=config.student.width)
    assert capacity.budget_configs(CONFIG) == configs


def test_grid_puts_the_crossing_on_both_curves_even_when_not_listed():
    config = dataclasses.replace(CONFIG, widths=(4, 16), train_subsets=(0, 50, 50), width_subset=100, data_width=8)
    cells = [(c["width"], c["train_subset"], c["curves"]) for c in capacity.cells(config)]
    assert cells == [(4, 100, ("width",)), (8, 100, ("width", "data")), (16, 100, ("width",)),
                     (8, 50, ("data",)), (8, 0, ("data",))]


def test_default_config_is_offline_and_spans_the_teachers_width():
    config = capacity.check(capacity.default_config())
    base = config.distill
    assert base.dataset == "digits" and base.augment == 0
    assert min(config.widths) <= 10 and max(config.widths) == base.teacher.model.width
    assert 0 in config.train_subsets
    assert len(capacity.grid(config)) == len(config.widths) + len(config.train_subsets) - 1


# ---- a tiny run -----------------------------------------------------------------------------------------------

def test_tiny_run_yields_rows_with_the_json_keys(teacher):
    events = events_of(CONFIG, teacher)
    measured = [e for e in events if isinstance(e, Measured)]
    finished = events[-1]
    assert finished.status == "completed"
    assert [m.done for m in measured] == [1, 2, 3, 4] and {m.total for m in measured} == {4}
    rows = finished.summary["rows"]
    assert rows == [m.point for m in measured]
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["curve"] in ("width", "data")
        for key in ("hard_accuracy", "kd_accuracy", "hard_val_accuracy", "kd_val_accuracy"):
            assert 0.0 <= row[key] <= 1.0
    assert [r["n_train"] for r in rows] == [200, 200, 50, 1151]
    assert rows[0]["params"] < rows[1]["params"] == rows[2]["params"]  # 64·4+4+4·10+10 < 64·8+8+8·10+10
    assert rows[1]["params"] == 64 * 8 + 8 + 8 * 10 + 10
    assert set(finished.summary["teacher"]) >= {"params", "accuracy", "val_accuracy"}
    assert 0.0 <= finished.summary["teacher"]["accuracy"] <= 1.0
    json.dumps(finished.summary)  # the summary is plain JSON


def test_tiny_run_is_reproducible(teacher):
    config = dataclasses.replace(CONFIG, widths=(4,), train_subsets=(50,), data_width=4)
    first = events_of(config, teacher)[-1].summary["rows"]
    second = events_of(config, teacher)[-1].summary["rows"]
    assert without_times(first) == without_times(second)
    other_seed = events_of(dataclasses.replace(config, distill=dataclasses.replace(TINY, seed=1)), teacher)
    assert without_times(other_seed[-1].summary["rows"]) != without_times(first)


def test_cancel_keeps_the_rows_measured_so_far(teacher):
    seen = []

    def after_first_cell():
        return len(seen) >= 1

    events = []
    for event in capacity.run(CONFIG, teacher, after_first_cell):
        events.append(event)
        if isinstance(event, Measured):
            seen.append(event)
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.status == "cancelled"
    assert finished.summary["rows"] == [seen[0].point] and len(seen) == 1


def test_cancel_inside_a_cell_drops_only_that_cell(teacher):
    calls = []

    def during_the_second_cell():  # 1 call before the first cell, 2 epochs × 4 steps in it, then the second
        calls.append(1)
        return len(calls) > 12

    finished = events_of(CONFIG, teacher, during_the_second_cell)[-1]
    assert finished.status == "cancelled"
    assert [(r["width"], r["train_subset"]) for r in finished.summary["rows"]] == [(4, 200)]


def test_stopped_before_the_first_cell_is_cancelled_with_no_rows(teacher):
    finished = events_of(CONFIG, teacher, lambda: True)[-1]
    assert finished.status == "cancelled" and finished.summary["rows"] == []


# ---- bad input ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"widths": (0, 8)}, r"widths must be integers in \[1, 8192\], got 0"),
    ({"widths": (8, 8193)}, r"widths must be integers in \[1, 8192\], got 8193"),
    ({"data_width": 0}, r"widths must be integers in \[1, 8192\], got 0"),
    ({"widths": ()}, r"grid is empty: give at least one of widths"),
    ({"train_subsets": ()}, r"grid is empty: give at least one of train subsets"),
    ({"train_subsets": (50, -1)}, r"train subsets must be integers >= 0 \(0 = all images\), got -1"),
    ({"width_subset": -5}, r"got -5"),
    ({"train_subsets": (50, 5000)}, r"train subset 5000 is larger than digits's training set \(1151 images"),
    ({"widths": (8.5,)}, r"widths must be integers"),
    ({"widths": tuple(range(1, 30))}, r"at most 24 widths"),
    ({"widths": [4, 8]}, r"widths must be a tuple of integers, got \[4, 8\]"),
])
def test_bad_input_is_a_one_line_value_error(changes, message):
    with pytest.raises(ValueError, match=message) as error:
        capacity.check(dataclasses.replace(CONFIG, **changes))
    assert "\n" not in str(error.value)


def test_run_checks_before_training(teacher):
    with pytest.raises(ValueError, match="got 9000"):
        next(capacity.run(dataclasses.replace(CONFIG, widths=(9000,)), teacher))


# ---- the report, the CLI and the record -----------------------------------------------------------------------

def fake_run(seed, cells):
    """A run's summary with chosen accuracies: cells are (width, subset, hard val, KD val, hard test, KD test)."""
    rows = [{"width": w, "train_subset": s, "n_train": s or 1151, "params": 100 * w, "curve": "width",
             "curves": ["width"], "hard_val_accuracy": hv, "kd_val_accuracy": kv, "hard_accuracy": ht,
             "kd_accuracy": kt, "seconds": 0.1} for w, s, hv, kv, ht, kt in cells]
    return {"seed": seed, "status": "completed", "rows": rows,
            "teacher": {"params": 5000, "accuracy": 0.97, "val_accuracy": 0.96}}


def test_report_means_over_seeds_and_chooses_on_validation():
    runs = [fake_run(0, [(8, 100, 0.80, 0.90, 0.80, 0.82), (16, 100, 0.80, 0.85, 0.80, 0.95),
                         (32, 0, 0.97, 0.95, 0.96, 0.97)]),
            fake_run(1, [(8, 100, 0.82, 0.92, 0.80, 0.84), (16, 100, 0.80, 0.85, 0.80, 0.95),
                         (32, 0, 0.97, 0.95, 0.96, 0.96)])]
    result = capacity.report(CONFIG, runs)
    json.dumps(result)
    assert result["runs"] == runs and result["experiment"] == "capacity"
    rows = {(r["width"], r["train_subset"]): r for r in result["rows"]}
    assert set(rows) == {(8, 100), (16, 100), (32, 0)}
    first = rows[(8, 100)]
    assert {"width", "train_subset", "params", "hard_accuracy", "kd_accuracy"} <= set(first)
    assert first["hard_val_accuracy"] == pytest.approx(0.81) and first["hard_val_accuracy_std"] > 0
    assert first["kd_accuracy"] == pytest.approx(0.83) and first["n_seeds"] == 2
    assert first["val_gain"] == pytest.approx(0.10) and first["gain"] == pytest.approx(0.03)
    assert first["kd_val_wins"] == 2 and first["kd_wins"] == 2
    # chosen on validation (width 8: +10 points), although test gained most at width 16 (+15 points)
    assert (result["best_on_validation"]["width"], result["best_on_validation"]["train_subset"]) == (8, 100)
    assert [(r["width"], r["train_subset"]) for r in result["hurt_on_validation"]] == [(32, 0)]
    assert rows[(32, 0)]["kd_wins"] == 1  # test: better on seed 0 only
    text = capacity.format_text(result)
    assert "On validation (means over 2 seeds) KD helped most at width 8 (800 parameters) on 100 images: +10.00 " \
        "points (81.00 → 91.00 %, KD better on 2 of 2 seeds)" in text
    assert "on test there +3.00 points" in text
    assert "KD hurt on validation at width 32 (3,200 parameters) on all 1151 images (-2.00 points, test +0.50)" \
        in text
    assert "teacher: 5,000 parameters" in text


def test_verdict_says_so_when_kd_never_helps():
    rows = capacity.summarise([fake_run(0, [(8, 0, 0.97, 0.95, 0.96, 0.95), (16, 0, 0.98, 0.97, 0.97, 0.97)])])
    text = capacity.verdict(rows)
    assert text.startswith("On validation KD helped nowhere; its smallest loss was at width 16")
    assert "KD hurt on validation at width 8" in text


def test_arguments_build_the_config():
    config = experiment_config(capacity, ["--widths", "4", "8", "--subsets", "50", "0", "--width-subset", "0",
                                          "--data-width", "4"], TINY)
    assert config == capacity.CapacityConfig(TINY, (4, 8), (50, 0), width_subset=0, data_width=4)
    assert experiment_config(capacity, []) == capacity.default_config()
    with pytest.raises(ValueError, match="got 0"):
        experiment_config(capacity, ["--widths", "0"], TINY)


def test_the_record_round_trips():
    from kdviz import experiments

    config = dataclasses.replace(CONFIG, width_subset=0)
    record = json.loads(json.dumps(experiments.to_record(config)))
    assert record["experiment"] == "capacity"
    assert experiments.from_record(record) == config


def test_cli_runs_the_experiment(tmp_path, capsys):
    from kdviz.cli import main

    out = tmp_path / "capacity.json"
    code = main(["experiment", "capacity", "--dataset", "digits", "--teacher-width", "16", "--teacher-depth", "1",
                 "--teacher-epochs", "1", "--student-depth", "1", "--epochs", "1", "--train-subset", "100",
                 "--device", "cpu", "--widths", "4", "8", "--subsets", "50", "--data-width", "8",
                 "--seeds", "0", "1", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "KD wins val/test" in text and "On validation (means over 2 seeds) KD" in text
    result = json.loads(out.read_text())
    assert [(r["width"], r["train_subset"], r["n_seeds"]) for r in result["rows"]] == [
        (4, 100, 2), (8, 100, 2), (8, 50, 2)]
    assert [run["seed"] for run in result["runs"]] == [0, 1]
