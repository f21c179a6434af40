"""A run's events and summaries as the live page reads them: validation beside test, old runs without validation,
the sweep's choice made on validation only, the metrics CSV, the history label; and the charts drawn from them."""
from __future__ import annotations

import io
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from kdviz.views import run_charts, run_view
from kdviz.views.charts import COLORS


def epoch(n: int, test: dict, val: dict | None = None) -> dict:
    event = {"phase": "distill", "event": "EpochEnd", "epoch": n, "accuracy": test}
    if val is not None:
        event["val_accuracy"] = val
    return event


EVENTS = [epoch(0, {"teacher": 0.9, "hard": 0.1, "kd": 0.1}, {"teacher": 0.92, "hard": 0.12, "kd": 0.12}),
          epoch(1, {"teacher": 0.9, "hard": 0.6, "kd": 0.7}, {"teacher": 0.92, "hard": 0.65, "kd": 0.72}),
          {"phase": "teacher", "event": "EpochEnd", "epoch": 1, "accuracy": {"teacher": 0.5}}]  # not distillation
OLD_EVENTS = [epoch(0, {"teacher": 0.9, "hard": 0.1, "kd": 0.1}), epoch(1, {"teacher": 0.9, "hard": 0.6, "kd": 0.7})]


def test_accuracy_frame_has_validation_beside_test():
    frame = run_view.accuracy_frame(EVENTS)
    assert list(frame["epoch"]) == [0, 1]
    assert list(frame["kd"]) == [0.1, 0.7] and list(frame["kd_val"]) == [0.12, 0.72]
    assert list(frame["teacher_val"]) == [0.92, 0.92] and not run_view.lacks_validation(frame)


def test_accuracy_frame_of_old_events_without_validation_reads_as_missing():
    frame = run_view.accuracy_frame(OLD_EVENTS)
    assert list(frame["hard"]) == [0.1, 0.6] and frame["hard_val"].isna().all()
    assert run_view.lacks_validation(frame)
    assert not run_view.lacks_validation(run_view.accuracy_frame([]))  # no epoch yet: validation will come
    figure = run_charts.accuracy_chart(frame, split="test")  # the page offers only test for such a run
    assert [trace["name"] for trace in figure.to_dict()["data"]] == ["hard-label student", "KD student"]
    empty = run_charts.accuracy_chart(frame, split="validation")  # and never fails if asked for validation
    assert empty.to_dict()["data"] == [] or all(not trace["y"] for trace in empty.to_dict()["data"])


@pytest.mark.parametrize("split, title, kd", [("validation", "Validation accuracy", [12, 72]),
                                              ("test", "Test accuracy", [10, 70])])
def test_the_accuracy_chart_draws_the_split_asked_for(split, title, kd):
    figure = run_charts.accuracy_chart(run_view.accuracy_frame(EVENTS), split=split).to_dict()
    assert figure["layout"]["title"]["text"] == title
    traces = {trace["name"]: trace for trace in figure["data"]}
    assert list(traces["KD student"]["y"]) == pytest.approx(kd)
    assert traces["KD student"]["line"]["color"] == COLORS["kd"]
    assert traces["hard-label student"]["line"]["color"] == COLORS["hard"]
    teacher = 92.0 if split == "validation" else 90.0
    assert figure["layout"]["shapes"][0]["y0"] == pytest.approx(teacher)
    with pytest.raises(ValueError, match="split"):
        run_view.split_columns("train")


def test_metrics_csv_has_validation_and_test_accuracy():
    text = run_view.metrics_csv(EVENTS + [{"phase": "distill", "event": "StepLosses", "step": 1, "epoch": 1,
                                           "losses": {"hard": 1.0, "kd_total": 2.0}}])
    accuracy_part = text.split("# validation and test accuracy per epoch\n")[1]
    table = pd.read_csv(io.StringIO(accuracy_part))
    assert {"kd_val_accuracy", "kd_test_accuracy", "hard_val_accuracy", "teacher_test_accuracy"} <= set(table)
    assert list(table["kd_val_accuracy"]) == [0.12, 0.72] and list(table["kd_test_accuracy"]) == [0.1, 0.7]


def run(value, hard_val, kd_val, hard, kd, state="completed"):
    summary = {"hard": {"accuracy": hard, "val_accuracy": hard_val}, "kd": {"accuracy": kd, "val_accuracy": kd_val}}
    return SimpleNamespace(tags={"value": value}, state=state, summary=summary)


def test_the_sweep_picks_its_best_value_by_validation_even_when_test_would_pick_another():
    runs = [run(8.0, 0.80, 0.90, 0.80, 0.85), run(2.0, 0.80, 0.85, 0.80, 0.95),  # T = 2 is best on *test*
            run(20.0, 0.80, 0.88, 0.80, 0.90), run(4.0, 0.8, 0.99, 0.8, 0.99, state="cancelled")]
    frame = run_view.sweep_frame(runs)
    assert list(frame["value"]) == [2.0, 8.0, 20.0]  # sorted; the cancelled run is left out
    best = run_view.best_on_validation(frame)
    assert best["value"] == 8.0 and frame.loc[frame["kd"].idxmax(), "value"] == 2.0
    sentence = run_view.sweep_verdict(frame, "temperature")
    assert sentence.startswith("Best on validation: T = 8 ") and "85.0%" in sentence and "test" in sentence
    figure = run_charts.sweep_chart(frame, "temperature T", best=best["value"]).to_dict()
    assert figure["layout"]["shapes"][0]["x0"] == 8.0
    assert figure["layout"]["annotations"][0]["x"] == pytest.approx(math.log10(8.0))  # a log axis
    names = {trace["name"] for trace in figure["data"]}
    assert names == {"hard-label student: validation", "hard-label student: test", "KD student: validation",
                     "KD student: test"}


def test_a_sweep_of_old_runs_without_validation_chooses_nothing():
    old = [SimpleNamespace(tags={"value": v}, state="completed", summary={"hard": {"accuracy": 0.8},
                                                                          "kd": {"accuracy": a}})
           for v, a in ((1.0, 0.9), (4.0, 0.8))]
    frame = run_view.sweep_frame(old)
    assert frame["kd_val"].isna().all() and run_view.best_on_validation(frame) is None
    assert "no value is chosen" in run_view.sweep_verdict(frame, "alpha")
    assert {t["name"] for t in run_charts.sweep_chart(frame, "alpha").to_dict()["data"]} == {
        "hard-label student: test", "KD student: test"}


def test_history_label_shows_validation_and_test_and_tolerates_old_summaries():
    config = {"teacher": {"dataset": "digits"}, "student": {"arch": "mlp", "width": 128, "depth": 2, "dropout": 0.1},
              "temperature": 20.0, "alpha": 1.0, "epochs": 60, "train_subset": 100, "seed": 0, "weight_decay": 1e-4}
    summary = {"hard": {"accuracy": 0.9, "val_accuracy": 0.91}, "kd": {"accuracy": 0.95, "val_accuracy": 0.96}}
    label = run_view.run_label("20260101-000000-aaaaaa", "completed", config, summary)
    assert "KD val 96.0% / test 95.0%" in label and "hard-label val 91.0% / test 90.0%" in label
    assert "weight decay 0.0001" in label and "dropout 0.1" in label
    old = run_view.run_label("20260101-000000-aaaaaa", "completed", config,
                             {"hard": {"accuracy": 0.9}, "kd": {"accuracy": 0.95}})
    assert "KD val – / test 95.0%" in old
    assert run_view.run_label("20260101-000000-aaaaaa", "running", config, None).endswith("seed 0, weight decay "
                                                                                           "0.0001, dropout 0.1")


def test_the_case_study_shows_validation_beside_test_and_old_summaries_still_draw():
    facts = lambda acc, val: {"accuracy": acc, "errors": round((1 - acc) * 100), "val_accuracy": val,  # noqa: E731
                              "val_errors": round((1 - val) * 50), "params": 1000, "size_bytes": 4000}
    summary = {"teacher": facts(0.97, 0.98), "hard": facts(0.9, 0.92), "kd": facts(0.94, 0.96), "n_test": 100,
               "n_val": 50}
    table = run_view.case_study(summary, "student", "teacher")
    assert list(table["validation (%)"]) == pytest.approx([98.0, 92.0, 96.0])
    assert list(table["test (%)"]) == pytest.approx([97.0, 90.0, 94.0])
    old = {role: {k: v for k, v in row.items() if not k.startswith("val_")} for role, row in summary.items()
           if isinstance(row, dict)}
    old |= {"n_test": 100}  # a run from before the validation split
    table = run_view.case_study(old, "student", "teacher")
    assert table["validation (%)"].isna().all()
    assert list(table["test (%)"]) == pytest.approx([97.0, 90.0, 94.0])
    won, sentence = run_view.verdict(old)
    assert won and "6 test errors instead of 10" in sentence


def test_the_loss_chart_labels_only_powers_of_ten():
    """Minor log ticks (2, 5 between the powers) cluttered the axis in lecture mode's large font."""
    frame = pd.DataFrame({"step": [1, 2, 3], "epoch": [1, 1, 1], "series": ["hard"] * 3, "loss": [10, 1, 1e-3]})
    axis = run_charts.loss_chart(frame, lecture=True).to_dict()["layout"]["yaxis"]
    assert axis["type"] == "log" and axis["dtick"] == 1
