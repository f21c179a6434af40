"""kdviz.experiments.missing_class: the bias shift and its two choices, the transfer set without the omitted class,
a tiny run end to end (keys, ranges, reproducibility), bad input, cancelling; and the engine's train_index."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from conftest import experiment_config
from kdviz.core.data import load_dataset, stratified_subset
from kdviz.core.engine import (DistillConfig, EpochEnd, Finished, Started, TeacherConfig, distill, generator,
                               predict_logits, run_to_end, train_teacher)
from kdviz.core.models import ModelSpec, create_model
from kdviz.experiments import missing_class as mc
from kdviz.experiments.events import Measured

TINY_TEACHER = TeacherConfig("digits", ModelSpec("mlp", 32, 1), epochs=3, batch_size=64, augment=0)
TINY = mc.MissingClassConfig(DistillConfig(TINY_TEACHER, ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.9,
                                           epochs=2, batch_size=64, learning_rate=1e-2, train_subset=200,
                                           device="cpu", probe_size=5), omitted=3, max_shift=5.0, shift_step=0.5)
FIGURES = {"omitted_accuracy_before", "omitted_accuracy_after", "accuracy_before", "accuracy_after", "bias_shift",
           "val_omitted_accuracy_before", "val_omitted_accuracy_after", "val_accuracy_before", "val_accuracy_after",
           "label_free_shift", "label_free_omitted_accuracy_after", "label_free_accuracy_after"}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> nn.Module:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDVIZ_HOME", str(tmp_path_factory.mktemp("missing-class-home")))
        return run_to_end(train_teacher(TINY_TEACHER, "cpu")).models["teacher"]


@pytest.fixture(scope="module")
def tiny_run(teacher) -> list:
    return list(mc.run(TINY, teacher))


# ---- the bias shift and its choices ----------------------------------------------------------------------------

def test_shifting_the_bias_moves_exactly_the_omitted_class_logit():
    logits = torch.randn(6, 10, generator=generator(0, "test"))
    shifted = mc.shift_logits(logits, 3, 2.5)
    assert torch.equal(shifted[:, 3], logits[:, 3] + 2.5)
    assert torch.equal(torch.cat([shifted[:, :3], shifted[:, 4:]], 1), torch.cat([logits[:, :3], logits[:, 4:]], 1))


def test_a_shifted_model_is_a_copy_whose_omitted_logit_alone_moves():
    model = create_model(ModelSpec("mlp", 8, 2), (1, 8, 8), 10, generator(0, "init"))
    x = torch.randn(5, 1, 8, 8, generator=generator(0, "x"))
    before = predict_logits(model, x)
    moved = predict_logits(mc.shifted_model(model, 3, 4.0), x)
    difference = moved - before
    assert torch.allclose(difference[:, 3], torch.full((5,), 4.0), atol=1e-5)
    assert torch.equal(torch.cat([difference[:, :3], difference[:, 4:]], 1), torch.zeros(5, 9))
    assert torch.equal(predict_logits(model, x), before)  # the trained model itself is unchanged


def test_predictions_after_each_shift_are_the_argmax_of_the_shifted_logits():
    logits = torch.randn(200, 10, generator=generator(1, "test")).mul(3).round()  # rounding makes ties happen
    shifts = torch.arange(0, 41, dtype=torch.float64) * 0.25
    predicted = mc.predictions_by_shift(logits, 3, shifts)
    for i, shift in enumerate(shifts.tolist()):
        assert torch.equal(predicted[i], mc.shift_logits(logits.double(), 3, shift).argmax(-1))


# Three classes, class 1 omitted. Image 0 (a 1) is right once the shift passes 2, image 1 (a 1) from 3 on (a tie
# with class 2 goes to the lower index, 1), image 2 (a 0) turns wrong past 4 (at 4 the tie goes to class 0), image 3
# (a 2) from 5.5 on.
HAND_LOGITS = torch.tensor([[2.0, 0, 0], [0, 0, 3], [4, 0, 0], [0, 0, 5.5]])
HAND_LABELS = torch.tensor([1, 1, 0, 2])
HAND_SHIFTS = torch.arange(0, 13, dtype=torch.float64) * 0.5  # 0, 0.5, ..., 6


def test_the_curve_on_hand_made_logits():
    figures = mc.curve(HAND_LOGITS, HAND_LABELS, 1, HAND_SHIFTS)
    by_shift = dict(zip(figures["shift"], zip(figures["accuracy"], figures["omitted_accuracy"],
                                              figures["omitted_share"])))
    assert by_shift[0.0] == by_shift[2.0] == (0.5, 0.0, 0.0)
    assert by_shift[2.5] == (0.75, 0.5, 0.25)
    assert by_shift[3.0] == by_shift[4.0] == (1.0, 1.0, 0.5)
    assert by_shift[4.5] == (0.75, 1.0, 0.75)
    assert by_shift[6.0] == (0.5, 1.0, 1.0)


def test_the_validation_choice_is_the_middle_of_the_best_plateau():
    figures = mc.curve(HAND_LOGITS, HAND_LABELS, 1, HAND_SHIFTS)
    assert mc.choose_on_validation(figures["accuracy"], figures["shift"]) == 3.5  # best (4/4) at 3, 3.5 and 4
    assert mc.choose_on_validation([0.1, 0.5, 0.5, 0.2, 0.5], [0, 1, 2, 3, 4]) == 1  # the first plateau, lower middle


def test_the_label_free_rule_matches_the_teachers_share():
    figures = mc.curve(HAND_LOGITS, HAND_LABELS, 1, HAND_SHIFTS)
    share, shifts = figures["omitted_share"], figures["shift"]
    assert mc.choose_label_free(share, 0.5, shifts) == 3.0  # the first shift at which half are predicted 1
    assert mc.choose_label_free(share, 0.3, shifts) == 2.5  # 0.25 is nearer 0.3 than 0.5 is
    assert mc.choose_label_free(share, 0.0, shifts) == 0.0


def test_the_shift_grid():
    assert mc.default_config().shifts.tolist() == [i * 0.25 for i in range(121)]  # 0 to 30 in steps of 0.25
    assert TINY.shifts.tolist() == [i * 0.5 for i in range(11)]


# ---- the transfer set ------------------------------------------------------------------------------------------

def test_the_transfer_set_has_no_omitted_image_and_keeps_every_other():
    labels = load_dataset("digits").train_y
    full = dataclasses.replace(TINY, distill=dataclasses.replace(TINY.distill, train_subset=0))
    index = mc.transfer_index(labels, full)
    assert not (labels[index] == 3).any()
    assert torch.equal(index, torch.nonzero(labels != 3).flatten())  # every other image, once


def test_with_a_train_subset_the_other_classes_keep_the_draws_images():
    labels = load_dataset("digits").train_y
    drawn = stratified_subset(labels, 200, TINY.distill.seed)
    index = mc.transfer_index(labels, TINY)
    assert not (labels[index] == 3).any()
    assert torch.equal(index, drawn[labels[drawn] != 3])
    assert len(index) == 180  # 20 of each of the nine other digits


def test_the_students_train_on_the_transfer_set(tiny_run):
    started = next(e for e in tiny_run if isinstance(e, Started))
    finished = tiny_run[-1]
    assert started.n_train == finished.summary["n_train"] == 180
    assert finished.summary["n_omitted_train"] == 0


# ---- the engine's train_index ----------------------------------------------------------------------------------

def test_the_engine_trains_on_exactly_the_given_images(teacher):
    config = dataclasses.replace(TINY.distill, train_subset=0, epochs=1)
    drawn = stratified_subset(load_dataset("digits").train_y, 200, config.seed)
    by_index = run_to_end(distill(config, teacher, train_index=drawn))
    by_subset = run_to_end(distill(dataclasses.replace(config, train_subset=200), teacher))
    assert by_index.summary["n_train"] == 200
    for role in ("hard", "kd"):  # the same images: the same students as train_subset's own draw
        assert by_index.summary[role]["accuracy"] == by_subset.summary[role]["accuracy"]
        for a, b in zip(by_index.models[role].parameters(), by_subset.models[role].parameters()):
            assert torch.equal(a, b)


@pytest.mark.parametrize("index, fragment", [
    (torch.tensor([], dtype=torch.long), "non-empty"),
    (torch.tensor([0.0, 1.0]), "integers"),
    (torch.tensor([0, 5000]), "[0, 1150]"),
    (torch.tensor([1, 1]), "distinct"),
])
def test_a_bad_train_index_is_a_value_error(teacher, index, fragment):
    config = dataclasses.replace(TINY.distill, train_subset=0)
    with pytest.raises(ValueError) as error:
        next(distill(config, teacher, train_index=index))
    assert fragment in str(error.value)


def test_train_index_and_train_subset_together_are_refused(teacher):
    with pytest.raises(ValueError, match="not both"):
        next(distill(TINY.distill, teacher, train_index=torch.arange(10)))


# ---- a tiny run ------------------------------------------------------------------------------------------------

def test_a_tiny_run_yields_progress_points_and_finished_with_every_figure(tiny_run):
    assert any(isinstance(e, EpochEnd) for e in tiny_run)  # the engine's events come through
    points = [e for e in tiny_run if isinstance(e, Measured)]
    assert [(p.done, p.total, p.point["student"]) for p in points] == [(1, 2, "hard"), (2, 2, "kd")]
    finished = tiny_run[-1]
    assert isinstance(finished, Finished) and finished.status == "completed"
    assert sum(isinstance(e, Finished) for e in tiny_run) == 1
    summary = finished.summary
    data = load_dataset("digits")
    assert summary["omitted"] == 3 and summary["n_omitted_test"] == int((data.test_y == 3).sum())
    for role in ("hard", "kd"):
        assert FIGURES <= set(summary[role])
        for key in FIGURES - {"bias_shift", "label_free_shift"}:
            assert 0.0 <= summary[role][key] <= 1.0, (role, key)
        assert summary[role]["bias_shift"] in TINY.shifts.tolist()
        assert summary[role]["label_free_shift"] in TINY.shifts.tolist()
    assert set(finished.models) == {"hard", "kd"}
    json.dumps(summary, allow_nan=False)


def test_the_figures_are_the_students_own_and_the_students_are_not_shifted(tiny_run):
    finished = tiny_run[-1]
    data = load_dataset("digits")
    for role in ("hard", "kd"):
        model, figures = finished.models[role], finished.summary[role]
        predicted = predict_logits(model, data.test_x).argmax(-1)
        assert figures["accuracy_before"] == pytest.approx(float((predicted == data.test_y).double().mean()))
        shifted = mc.shift_logits(predict_logits(model, data.test_x), 3, figures["bias_shift"]).argmax(-1)
        threes = data.test_y == 3
        assert figures["omitted_accuracy_after"] == pytest.approx(float((shifted[threes] == 3).double().mean()))


def test_the_same_config_gives_the_same_numbers(teacher, tiny_run):
    again = run_to_end(mc.run(TINY, teacher)).summary
    first = tiny_run[-1].summary
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in first.items() if k != "seconds"}


def test_report_and_text(tiny_run):
    runs = [{**tiny_run[-1].summary, "seed": 0}, {**tiny_run[-1].summary, "seed": 1}]
    result = mc.report(TINY, runs)
    assert result["omitted"] == 3 and [r["seed"] for r in result["runs"]] == [0, 1]
    assert FIGURES <= set(result["runs"][0]["kd"]) and "val_curve" not in result["runs"][0]["kd"]
    summary = result["summary"]
    for key in ("kd_omitted_after_mean", "kd_omitted_after_std", "hard_omitted_after_mean", "hard_omitted_after_std",
                "kd_omitted_before_mean", "hard_omitted_before_mean"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["kd_omitted_after_std"] == 0.0  # the same run twice
    json.dumps(result, allow_nan=False)
    text = mc.format_text(result)
    assert "kd" in text and "hard" in text and text.splitlines()[-1].startswith(("Meets", "Misses"))


def test_the_verdict_says_plainly_when_the_target_is_missed():
    summary = {"kd_omitted_after_mean": 0.5, "kd_omitted_before_mean": 0.2, "hard_omitted_after_mean": 0.0,
               "target_met": False}
    assert mc.verdict({"omitted": 3, "summary": summary}).startswith("Misses the target of 90%")
    summary |= {"kd_omitted_after_mean": 0.95, "target_met": True}
    assert mc.verdict({"omitted": 3, "summary": summary}).startswith("Meets the target of 90%")


# ---- bad input and cancelling ----------------------------------------------------------------------------------

@pytest.mark.parametrize("omitted", [10, -1, 3.0, True])
def test_an_omitted_class_not_in_the_dataset_is_a_value_error_naming_it_and_the_range(teacher, omitted):
    config = dataclasses.replace(TINY, omitted=omitted)
    with pytest.raises(ValueError, match=r"omitted class must be an integer in \[0, 9\]") as error:
        mc.check(config)
    assert f"got {omitted!r}" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ValueError):
        next(mc.run(config, teacher))  # the stream validates before it yields anything


@pytest.mark.parametrize("changes", [{"max_shift": 0}, {"shift_step": -0.5}, {"max_shift": float("nan")}])
def test_a_bad_shift_grid_is_a_value_error(changes):
    with pytest.raises(ValueError, match="got"):
        mc.check(dataclasses.replace(TINY, **changes))


def test_command_line_options():
    config = experiment_config(mc, ["--omitted", "5", "--max-shift", "8"], TINY.distill)
    assert (config.omitted, config.max_shift, config.distill) == (5, 8.0, TINY.distill)
    assert experiment_config(mc, []) == mc.default_config()
    with pytest.raises(ValueError, match="got 10"):
        experiment_config(mc, ["--omitted", "10"], TINY.distill)
    assert mc.budget_configs(TINY) == [TINY.distill]


def test_a_shift_at_the_grids_top_is_reported(teacher):
    figures = {"bias_shift": 5.0, "label_free_shift": 1.0}
    notices = list(mc._edge_notices("hard", figures, TINY))
    assert len(notices) == 1 and notices[0].message.startswith(
        "the hard-label student's validation-chosen shift is the grid's largest (5)")
    assert list(mc._edge_notices("kd", {"bias_shift": 1.0, "label_free_shift": 0.5}, TINY)) == []


def test_stopping_before_training_ends_cancelled(teacher):
    finished = run_to_end(mc.run(TINY, teacher, should_stop=lambda: True))
    assert finished.status == "cancelled"
    assert finished.summary["omitted"] == 3 and "kd" not in finished.summary


def test_stopping_between_the_students_keeps_what_was_measured(teacher):
    stop = []
    events = []
    for event in mc.run(TINY, teacher, should_stop=lambda: bool(stop)):
        events.append(event)
        if isinstance(event, Measured):
            stop.append(True)
    finished = events[-1]
    assert finished.status == "cancelled"
    assert "hard" in finished.summary and "kd" not in finished.summary
    result = mc.report(TINY, [finished.summary])
    assert "hard_omitted_after_mean" in result["summary"] and "kd_omitted_after_mean" not in result["summary"]
    assert mc.verdict(result).startswith("No KD student")
