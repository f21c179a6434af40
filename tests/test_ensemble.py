"""The ensemble experiment (kdviz.experiments.ensemble): combining teachers, the per-teacher KL identity, a tiny run,
its report, the CLI, the budget and the run manager."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import experiment_config, wait_for_run

from kdviz.core.engine import (DistillConfig, Diverged, Finished, Notice, TeacherConfig, accuracy, distill,
                               run_to_end, train_teacher)
from kdviz.core.kd import distillation_loss
from kdviz.core.models import ModelSpec, count_parameters, create_model
from kdviz.experiments import ensemble
from kdviz.experiments.events import Measured

TINY = DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0),
                     ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.5, epochs=2, batch_size=64, train_subset=200,
                     device="cpu")
CONFIG = ensemble.EnsembleConfig(TINY, n_teachers=3)
FACT_KEYS = {"accuracy", "val_accuracy", "params", "flops_per_image", "agreement", "kl_to_teacher"}
TWO = torch.tensor([[[5.0, -3.0, -5.0, -7.0]], [[-3.0, 5.0, -5.0, -7.0]]], dtype=torch.float64)  # [2, 1, 4]


@pytest.fixture(scope="module")
def teacher():
    finished = run_to_end(train_teacher(TINY.teacher, "cpu"))
    assert finished.status == "completed"
    return finished.models["teacher"]


def events_of(config, teacher, should_stop=None):
    events = list(ensemble.run(config, teacher, should_stop))
    assert isinstance(events[-1], Finished) and not any(isinstance(e, Finished) for e in events[:-1])
    return events


def without(summary, *keys):
    """The summary without run-dependent keys (also inside the teacher points)."""
    out = {k: v for k, v in summary.items() if k not in keys}
    out["teachers"] = [{k: v for k, v in t.items() if k not in keys} for t in summary["teachers"]]
    return out


def soft_gradient(student, target_logits, temperature):
    """The gradient on the student's logits of distillation_loss's soft term towards target_logits."""
    student = student.clone().requires_grad_(True)
    labels = torch.zeros(len(student), dtype=torch.long)
    distillation_loss(student, target_logits, labels, temperature, 1.0)["soft"].backward()
    return student.grad


# ---- combining the teachers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_probabilities_target_is_the_mean_of_the_teachers_probabilities(temperature):
    combined = ensemble.combine_logits(TWO, temperature, "probabilities")
    assert combined.shape == (1, 4)
    mean = F.softmax(TWO / temperature, dim=-1).mean(dim=0)
    assert torch.allclose(F.softmax(combined / temperature, dim=-1), mean, atol=1e-12)
    by_logits = F.softmax(ensemble.combine_logits(TWO, temperature, "logits") / temperature, dim=-1)
    assert not torch.allclose(by_logits, mean, atol=1e-3), "averaging logits is a different target"
    if temperature == 1.0:  # the two confident teachers disagree: the mean keeps both classes at ≈ 0.5
        assert mean[0, :2].tolist() == pytest.approx([0.5, 0.5], abs=1e-3)
        assert by_logits[0, :2].tolist() == pytest.approx([0.5, 0.5], abs=1e-3)
        assert by_logits[0, 2] > 10 * mean[0, 2], "the geometric mean spreads onto classes neither teacher chose"


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_logits_target_is_the_normalised_geometric_mean(temperature):
    combined = ensemble.combine_logits(TWO, temperature, "logits")
    assert torch.equal(combined, TWO.mean(dim=0))
    p = F.softmax(TWO / temperature, dim=-1)
    geometric = p.prod(dim=0).sqrt()
    assert torch.allclose(F.softmax(combined / temperature, dim=-1), geometric / geometric.sum(-1, keepdim=True),
                          atol=1e-12)


def test_combining_is_stable_for_huge_logits():
    huge = torch.tensor([[[1e4, -1e4, 0.0]], [[-1e4, 1e4, 0.0]]])  # float32
    for temperature in (1.0, 20.0):
        combined = ensemble.combine_logits(huge, temperature, "probabilities")
        assert torch.isfinite(combined).all()
        assert F.softmax(combined / temperature, -1)[0].tolist() == pytest.approx([0.5, 0.5, 0.0], abs=1e-6)
        assert torch.isfinite(ensemble.combine_logits(huge, temperature, "logits")).all()


def test_one_teacher_is_its_own_ensemble():
    z = torch.randn(1, 5, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for combine in ensemble.COMBINES:
        combined = ensemble.combine_logits(z, 3.0, combine)
        assert torch.allclose(F.softmax(combined / 3.0, -1), F.softmax(z[0] / 3.0, -1), atol=1e-12)
        assert torch.allclose(F.softmax(combined, -1), F.softmax(z[0], -1), atol=1e-12)  # at T = 1 as well


@pytest.mark.parametrize("call, message", [
    (lambda: ensemble.combine_logits(TWO, 1.0, "median"), r"combine must be one of probabilities, logits, got "
                                                          r"'median'"),
    (lambda: ensemble.combine_logits(TWO, 0.0, "logits"), r"temperature must be a finite number > 0, got 0.0"),
    (lambda: ensemble.combine_logits(torch.zeros(0, 2, 3), 1.0, "logits"), r"at least one teacher, got shape "
                                                                           r"\(0, 2, 3\)"),
    (lambda: ensemble.EnsembleTeacher([], 1.0), r"at least one teacher, got none"),
])
def test_bad_combine_input_is_a_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---- averaging KL terms is distilling the averaged probabilities ----------------------------------------------

def test_per_teacher_kl_has_the_gradient_of_the_probabilities_ensemble():
    generator = torch.Generator().manual_seed(1)
    teachers = 3 * torch.randn(4, 6, 10, generator=generator, dtype=torch.float64)
    student = torch.randn(6, 10, generator=generator, dtype=torch.float64)
    temperature = 4.0
    mine = student.clone().requires_grad_(True)
    ensemble.per_teacher_kl(mine, teachers, temperature).backward()
    by_probabilities = soft_gradient(student, ensemble.combine_logits(teachers, temperature, "probabilities"),
                                     temperature)
    by_logits = soft_gradient(student, ensemble.combine_logits(teachers, temperature, "logits"), temperature)
    assert torch.allclose(mine.grad, by_probabilities, atol=1e-12)
    assert not torch.allclose(mine.grad, by_logits, atol=1e-4)


def test_per_teacher_kl_differs_from_kl_to_the_mean_by_the_teachers_divergence():
    generator = torch.Generator().manual_seed(2)
    teachers = 2 * torch.randn(3, 5, 7, generator=generator, dtype=torch.float64)
    temperature = 2.0
    mean_logits = ensemble.combine_logits(teachers, temperature, "probabilities")
    labels = torch.zeros(5, dtype=torch.long)
    log_p = F.log_softmax(teachers / temperature, -1)
    log_m = F.log_softmax(mean_logits / temperature, -1)
    divergence = temperature**2 * (log_p.exp() * (log_p - log_m)).sum(-1).mean()  # mean_i T²·KL(p_i ‖ m)
    for _ in range(3):  # whatever the student: the same constant
        student = 5 * torch.randn(5, 7, generator=generator, dtype=torch.float64)
        gap = ensemble.per_teacher_kl(student, teachers, temperature) - \
            distillation_loss(student, mean_logits, labels, temperature, 1.0)["soft"]
        assert float(gap) == pytest.approx(float(divergence), rel=1e-9)
    assert float(divergence) > 0


def test_the_ensemble_module_holds_the_teachers():
    generator = torch.Generator().manual_seed(3)
    teachers = [create_model(ModelSpec("mlp", w, 1), (1, 8, 8), 10, generator) for w in (4, 6, 8)]
    module = ensemble.EnsembleTeacher(teachers, 4.0, "probabilities")
    assert count_parameters(module) == sum(count_parameters(t) for t in teachers)
    x = torch.randn(5, 1, 8, 8, generator=generator)
    stacked = torch.stack([t(x) for t in teachers])
    assert torch.allclose(module(x), ensemble.combine_logits(stacked, 4.0, "probabilities"))
    assert torch.equal(ensemble.EnsembleTeacher(teachers, 4.0, "logits")(x), stacked.mean(0))


# ---- the config ---------------------------------------------------------------------------------------------

def test_teacher_configs_start_from_the_base_teacher():
    configs = ensemble.teacher_configs(CONFIG)
    assert configs[0] == TINY.teacher
    assert [c.seed for c in configs] == [0, 1, 2]
    assert all(dataclasses.replace(c, seed=0) == TINY.teacher for c in configs)
    other_seed = dataclasses.replace(CONFIG, distill=dataclasses.replace(TINY, seed=7))
    assert ensemble.teacher_configs(other_seed) == configs, "teachers do not depend on the students' seed"
    mixed = ensemble.teacher_configs(dataclasses.replace(CONFIG, teacher_widths=(16, 8, 32)))
    assert mixed[0] == TINY.teacher and [c.model.width for c in mixed] == [16, 8, 32]
    assert ensemble.teacher_configs(dataclasses.replace(CONFIG, teacher_widths=(8, 8, 8)))[0] != TINY.teacher


def test_default_config_is_the_quick_preset_without_jitter():
    from kdviz.core.presets import get_preset

    config = ensemble.check(ensemble.default_config())
    assert config.distill == dataclasses.replace(get_preset("quick"), augment=0)
    assert config.n_teachers == 5 and config.teacher_widths == () and config.combine == "probabilities"


@pytest.mark.parametrize("changes, message", [
    ({"n_teachers": 0}, r"the ensemble needs 2 to 10 teachers, got 0"),
    ({"n_teachers": 1}, r"the ensemble needs 2 to 10 teachers, got 1"),
    ({"n_teachers": 11}, r"the ensemble needs 2 to 10 teachers, got 11"),
    ({"n_teachers": True}, r"the ensemble needs 2 to 10 teachers, got True"),
    ({"n_teachers": 2.5}, r"the ensemble needs 2 to 10 teachers, got 2.5"),
    ({"teacher_widths": (16, 8)}, r"one teacher width per teacher: 3 teachers, got 2 widths \(16, 8\)"),
    ({"teacher_widths": (16, 0, 8)}, r"teacher widths must be integers in \[1, 8192\], got 0"),
    ({"teacher_widths": (16, 8, 9000)}, r"got 9000"),
    ({"teacher_widths": [16, 8, 8]}, r"teacher widths must be a tuple of integers, got \[16, 8, 8\]"),
    ({"combine": "median"}, r"combine must be one of probabilities, logits, got 'median'"),
    ({"distill": dataclasses.replace(TINY, temperature=-1.0)}, r"temperature must be .*got -1.0"),
    ({"distill": dataclasses.replace(TINY, train_subset=5000)}, r"train subset 5000 is larger than digits"),
])
def test_bad_input_is_a_one_line_value_error(changes, message):
    with pytest.raises(ValueError, match=message) as error:
        ensemble.check(dataclasses.replace(CONFIG, **changes))
    assert "\n" not in str(error.value)


def test_run_checks_before_training(teacher):
    with pytest.raises(ValueError, match="got 11"):
        next(ensemble.run(dataclasses.replace(CONFIG, n_teachers=11), teacher))


# ---- a tiny run -----------------------------------------------------------------------------------------------

def test_tiny_run_measures_teachers_ensemble_and_three_students(teacher):
    events = events_of(CONFIG, teacher)
    measured = [e for e in events if isinstance(e, Measured)]
    assert [m.point["kind"] for m in measured] == ["teacher"] * 3 + ["ensemble", "students", "best_teacher_kd"]
    assert [m.done for m in measured] == list(range(1, 7)) and {m.total for m in measured} == {6}
    assert all(isinstance(e, (Measured, Notice, Diverged)) for e in events[:-1])
    finished = events[-1]
    assert finished.status == "completed"
    s = finished.summary
    json.dumps(s)  # plain JSON: the run manager records it
    assert set(s) == {"seed", "combine", "temperature", "teachers", "ensemble", "best_teacher", "hard",
                      "best_teacher_kd", "ensemble_kd", "n_train", "n_test", "n_val", "seconds"}
    assert (s["n_train"], s["n_val"], s["n_test"]) == (200, 287, 359) and s["combine"] == "probabilities"
    assert s["teachers"] == [{k: v for k, v in m.point.items() if k != "kind"} for m in measured[:3]]
    assert [t["index"] for t in s["teachers"]] == [0, 1, 2] and [t["seed"] for t in s["teachers"]] == [0, 1, 2]
    assert [t["cached"] for t in s["teachers"]] == [True, False, False]  # teacher 0 is the caller's, ready
    teacher_params = count_parameters(teacher)
    assert all(t["params"] == teacher_params and t["width"] == 16 for t in s["teachers"])
    assert s["ensemble"]["params"] == 3 * teacher_params
    assert s["ensemble"]["flops_per_image"] == pytest.approx(3 * s["teachers"][0]["flops_per_image"])
    assert s["teachers"][0]["flops_per_image"] == 2 * (64 * 16 + 16 * 10)  # a multiply-add is 2 FLOPs
    for role in ("hard", "ensemble_kd"):
        assert set(s[role]) == FACT_KEYS
    assert set(s["best_teacher_kd"]) == FACT_KEYS | {"teacher_index"}
    assert s["best_teacher_kd"]["teacher_index"] == s["best_teacher"]
    assert s["hard"]["params"] == 64 * 8 + 8 + 8 * 10 + 10 and s["hard"]["flops_per_image"] == 2 * (64 * 8 + 80)
    # the ensemble's accuracy is that of the module the students were distilled from
    from kdviz.core.data import load_dataset
    from kdviz.core.teachers import get_teacher

    data = load_dataset("digits")
    models = [teacher] + [get_teacher(c, "cpu")[0] for c in ensemble.teacher_configs(CONFIG)[1:]]
    module = ensemble.EnsembleTeacher(models, TINY.temperature, "probabilities")
    assert s["ensemble"]["accuracy"] == accuracy(module, data.test_x, data.test_y)
    assert s["ensemble"]["val_accuracy"] == accuracy(module, data.val_x, data.val_y)
    for index, model in enumerate(models):
        assert s["teachers"][index]["val_accuracy"] == accuracy(model, data.val_x, data.val_y)


def test_the_best_teacher_is_chosen_on_validation(teacher):
    s = events_of(CONFIG, teacher)[-1].summary
    values = [t["val_accuracy"] for t in s["teachers"]]
    assert s["best_teacher"] == values.index(max(values))  # the first of the best: ties go to the lower index
    teachers = [{"index": 0, "val_accuracy": 0.90, "accuracy": 0.99}, {"index": 1, "val_accuracy": 0.95,
                "accuracy": 0.90}, {"index": 2, "val_accuracy": 0.95, "accuracy": 0.97}]
    assert ensemble.best_teacher(teachers) == 1  # not 0 (best on test), not 2 (a tie, higher index)


def test_all_three_students_share_initial_weights_and_batches(teacher):
    """The best teacher's KD student trained alone is the KD student of a two-student run with that teacher, and
    the hard-label student does not depend on the teacher: the three differ only by their targets."""
    from kdviz.core.teachers import get_teacher

    s = events_of(CONFIG, teacher)[-1].summary
    best = s["best_teacher"]
    model = teacher if best == 0 else get_teacher(ensemble.teacher_configs(CONFIG)[best], "cpu")[0]
    both = run_to_end(distill(TINY, model, students=("hard", "kd"))).summary
    assert both["kd"]["accuracy"] == s["best_teacher_kd"]["accuracy"]
    assert both["kd"]["val_accuracy"] == s["best_teacher_kd"]["val_accuracy"]
    assert both["kd"]["agreement"] == s["best_teacher_kd"]["agreement"]
    assert (both["hard"]["accuracy"], both["hard"]["val_accuracy"]) == (s["hard"]["accuracy"],
                                                                        s["hard"]["val_accuracy"])


def test_tiny_run_is_reproducible_with_cached_teachers(teacher):
    first = events_of(CONFIG, teacher)[-1].summary
    second = events_of(CONFIG, teacher)[-1].summary
    assert [t["cached"] for t in second["teachers"]] == [True, True, True]
    assert without(first, "seconds", "cached") == without(second, "seconds", "cached")
    other_seed = events_of(dataclasses.replace(CONFIG, distill=dataclasses.replace(TINY, seed=1)), teacher)
    other = other_seed[-1].summary
    assert other["teachers"] == second["teachers"] and other["ensemble"] == second["ensemble"]
    assert other["ensemble_kd"] != second["ensemble_kd"], "the students' seed changes only the students"


def test_logits_combine_runs_and_says_so(teacher):
    s = events_of(dataclasses.replace(CONFIG, n_teachers=2, combine="logits"), teacher)[-1].summary
    assert s["combine"] == "logits" and s["ensemble"]["combine"] == "logits"
    assert len(s["teachers"]) == 2 and s["ensemble_kd"]["accuracy"] >= 0


def test_a_different_first_width_prepares_teacher_zero_too(teacher):
    config = dataclasses.replace(CONFIG, n_teachers=2, teacher_widths=(8, 16))
    s = events_of(config, teacher)[-1].summary
    first = s["teachers"][0]
    assert (first["width"], first["cached"]) == (8, False)
    assert first["params"] == 64 * 8 + 8 + 8 * 10 + 10 != count_parameters(teacher)
    assert s["teachers"][1]["width"] == 16 and s["teachers"][1]["seed"] == 1
    assert [c for c, _ in ensemble.budget_teachers(config)] == ensemble.teacher_configs(config)


def test_stop_after_the_first_point_keeps_the_teacher_measured(teacher):
    seen = []
    events = []
    for event in ensemble.run(CONFIG, teacher, lambda: len(seen) >= 1):
        events.append(event)
        if isinstance(event, Measured):
            seen.append(event)
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.status == "cancelled" and len(seen) == 1
    assert finished.summary["teachers"] == [{k: v for k, v in seen[0].point.items() if k != "kind"}]
    assert not {"ensemble", "best_teacher", "hard", "ensemble_kd", "best_teacher_kd"} & set(finished.summary)
    json.dumps(finished.summary)


def test_stop_during_the_students_keeps_the_ensemble(teacher):
    seen, state = [], {"calls": 0, "after": None}

    def during_the_distillation():  # the first call after the ensemble is before distill; then one a step
        state["calls"] += 1
        if state["after"] is None and seen and seen[-1].point["kind"] == "ensemble":
            state["after"] = state["calls"]
        return state["after"] is not None and state["calls"] > state["after"] + 3

    events = []
    for event in ensemble.run(CONFIG, teacher, during_the_distillation):
        events.append(event)
        if isinstance(event, Measured):
            seen.append(event)
    finished = events[-1]
    assert finished.status == "cancelled" and [m.point["kind"] for m in seen][-1] == "ensemble"
    assert {"teachers", "ensemble", "best_teacher"} <= set(finished.summary)
    assert "hard" not in finished.summary and "best_teacher_kd" not in finished.summary


def test_stopped_before_anything_is_cancelled_with_no_teachers(teacher):
    finished = events_of(CONFIG, teacher, lambda: True)[-1]
    assert finished.status == "cancelled" and finished.summary["teachers"] == []


def test_a_diverging_distillation_says_so(teacher):
    config = dataclasses.replace(CONFIG, n_teachers=2, distill=dataclasses.replace(TINY, learning_rate=1e30))
    events = events_of(config, teacher)
    finished = events[-1]
    assert finished.status == "diverged"
    assert any(isinstance(e, Diverged) for e in events)
    assert any(isinstance(e, Notice) and "diverged" in e.message for e in events)
    assert "ensemble" in finished.summary and "hard" not in finished.summary


# ---- the report, the CLI, the budget and the record -----------------------------------------------------------

def facts(val, test, params=610):
    return {"accuracy": test, "val_accuracy": val, "params": params, "flops_per_image": 1184.0, "agreement": 0.9,
            "kl_to_teacher": 0.1}


def fake_run(seed, hard, single, ens, status="completed"):
    """A run's summary: hard, single, ens are (val, test) of the three students."""
    teachers = [{"index": i, "seed": i, "width": 16, "params": 1210, "flops_per_image": 2368.0,
                 "accuracy": 0.80 + 0.01 * i, "val_accuracy": v, "cached": True}
                for i, v in enumerate((0.80, 0.85, 0.83))]
    return {"seed": seed, "status": status, "combine": "probabilities", "temperature": 4.0, "teachers": teachers,
            "ensemble": {"n_teachers": 3, "accuracy": 0.9, "val_accuracy": 0.91, "params": 3630,
                         "flops_per_image": 7104.0, "combine": "probabilities", "temperature": 4.0},
            "best_teacher": 1, "hard": facts(*hard), "ensemble_kd": facts(*ens),
            "best_teacher_kd": {**facts(*single), "teacher_index": 1},
            "n_train": 200, "n_test": 359, "n_val": 287, "seconds": 1.0}


def test_report_has_the_keys_and_chooses_on_validation():
    runs = [fake_run(0, (0.80, 0.79), (0.88, 0.90), (0.90, 0.86)),
            fake_run(1, (0.82, 0.81), (0.86, 0.90), (0.89, 0.87))]
    result = ensemble.report(CONFIG, runs)
    json.dumps(result)
    assert {"experiment", "teachers", "ensemble", "best_teacher", "runs", "summary", "verdict", "dataset"} <= \
        set(result)
    assert result["experiment"] == "ensemble" and result["dataset"] == "digits"
    assert len(result["teachers"]) == 3
    for t in result["teachers"]:
        assert {"accuracy", "val_accuracy", "params", "flops_per_image", "seed", "width"} <= set(t)
    assert {"accuracy", "val_accuracy", "params", "flops_per_image", "combine"} <= set(result["ensemble"])
    assert result["best_teacher"]["index"] == 1 and result["best_teacher"]["val_accuracy"] == 0.85
    assert [r["seed"] for r in result["runs"]] == [0, 1]
    for run in result["runs"]:
        for role in ("hard", "best_teacher_kd", "ensemble_kd"):
            assert {"accuracy", "val_accuracy"} <= set(run[role])
    s = result["summary"]
    for role in ("hard", "best_teacher_kd", "ensemble_kd"):
        for key in ("accuracy", "val_accuracy"):
            assert {f"{role}_{key}_mean", f"{role}_{key}_std"} <= set(s)
    assert s["n_seeds"] == 2
    assert s["ensemble_kd_val_accuracy_mean"] == pytest.approx(0.895)
    assert s["best_teacher_kd_accuracy_mean"] == pytest.approx(0.90) and s["best_teacher_kd_accuracy_std"] == 0
    assert s["ensemble_beats_single_val"] == 2 and s["ensemble_beats_single_test"] == 0
    assert s["compression"] == pytest.approx(3630 / 610) and s["flops_ratio"] == pytest.approx(7104 / 1184)
    text = result["verdict"]
    assert text.startswith("On validation (what decides), over 2 seeds (means), the ensemble's student beat the best "
                           "single teacher's: 89.50 % vs 87.00 % (+2.50 points; better on 2 of 2 seeds")
    assert "On test (only reported), the ensemble's student lost to the best single teacher's: 86.50 % vs 90.00 %" \
        in text
    assert "Test does not confirm validation here." in text
    assert "both KD students beat" in text
    printed = ensemble.format_text(result)
    assert text in printed and "← best on validation" in printed and "mean" in printed


def test_verdict_is_honest_about_a_loss_a_tie_and_noise():
    lost = ensemble.report(CONFIG, [fake_run(0, (0.9, 0.9), (0.88, 0.9), (0.86, 0.85))])["verdict"]
    assert "on 1 seed, the ensemble's student lost to the best single teacher's: 86.00 % vs 88.00 %" in lost
    assert "neither KD student beat" in lost
    tied = ensemble.report(CONFIG, [fake_run(0, (0.8, 0.8), (0.88, 0.9), (0.88, 0.9))])["verdict"]
    assert "tied with the best single teacher's" in tied and "both KD students beat" in tied
    noisy = ensemble.report(CONFIG, [fake_run(0, (0.8, 0.8), (0.88, 0.9), (0.90, 0.9)),
                                     fake_run(1, (0.8, 0.8), (0.88, 0.9), (0.87, 0.9))])["verdict"]
    assert "within its spread over seeds" in noisy and "better on 1 of 2 seeds" in noisy


def test_report_of_an_unfinished_run_has_no_means():
    partial = fake_run(0, (0.8, 0.8), (0.88, 0.9), (0.9, 0.9), status="cancelled")
    del partial["best_teacher_kd"]
    result = ensemble.report(CONFIG, [partial])
    assert result["summary"]["n_seeds"] == 0 and result["summary"]["ensemble_kd_accuracy_mean"] is None
    assert result["verdict"].startswith("No seed trained all three students")
    assert "(cancelled)" in ensemble.format_text(result)
    empty = ensemble.report(CONFIG, [{"seed": 0, "status": "cancelled", "teachers": []}])  # no "status" needed
    assert empty["teachers"] == [] and empty["ensemble"] is None and empty["best_teacher"] is None
    ensemble.format_text(empty)


def test_arguments_build_the_config():
    config = experiment_config(ensemble, ["--teachers", "4", "--combine", "logits"], TINY)
    assert config == ensemble.EnsembleConfig(TINY, n_teachers=4, combine="logits")
    widths = experiment_config(ensemble, ["--teacher-widths", "8", "16"], TINY)
    assert (widths.n_teachers, widths.teacher_widths) == (2, (8, 16))
    assert experiment_config(ensemble, []) == ensemble.default_config()
    with pytest.raises(ValueError, match="2 teachers, got 3 widths"):
        experiment_config(ensemble, ["--teachers", "2", "--teacher-widths", "8", "8", "8"], TINY)


def test_the_record_round_trips():
    from kdviz import experiments

    config = dataclasses.replace(CONFIG, teacher_widths=(16, 8, 32), combine="logits")
    record = json.loads(json.dumps(experiments.to_record(config)))
    assert record["experiment"] == "ensemble"
    assert experiments.from_record(record) == config


def test_cli_runs_the_experiment(tmp_path, capsys):
    from kdviz.cli import main

    out = tmp_path / "ensemble.json"
    code = main(["experiment", "ensemble", "--dataset", "digits", "--teacher-width", "16", "--teacher-depth", "1",
                 "--teacher-epochs", "1", "--student-width", "8", "--student-depth", "1", "--epochs", "1",
                 "--train-subset", "100", "--device", "cpu", "--teachers", "2", "--seeds", "0", "1",
                 "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "On validation (what decides), over 2 seeds" in text and "ensemble KD val" in text
    result = json.loads(out.read_text())
    assert {"experiment", "teachers", "ensemble", "best_teacher", "runs", "summary", "verdict", "dataset",
            "config"} <= set(result)
    assert [r["seed"] for r in result["runs"]] == [0, 1] and len(result["teachers"]) == 2
    assert result["summary"]["n_seeds"] == 2 and result["config"]["n_teachers"] == 2


@pytest.mark.parametrize("flags, message", [
    (["--teachers", "11"], "kdviz: error: the ensemble needs 2 to 10 teachers, got 11"),
    (["--teachers", "3", "--teacher-widths", "8", "8"], "kdviz: error: give one teacher width per teacher"),
    (["--combine", "median"], "invalid choice: 'median'"),
])
def test_cli_refuses_bad_flags_in_one_line(flags, message, capsys):
    from kdviz.cli import main

    code = main(["experiment", "ensemble", "--device", "cpu", *flags])
    assert code != 0
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_budget_counts_the_further_teachers():
    from kdviz import experiments
    from kdviz.core.budget import Budget, OverBudget, check_budget, teacher_cost
    from kdviz.core.teachers import get_teacher, is_cached

    ten = dataclasses.replace(CONFIG, n_teachers=10)
    base_work = sum(check_budget(part, Budget(), True).work_flops for part in ensemble.budget_configs(ten))
    further = ensemble.budget_teachers(ten)
    assert [c.seed for c, _ in further] == list(range(1, 10))
    assert {n for _, n in further} == {200 + 2 * (287 + 359)}
    one = teacher_cost(*further[0]).work_flops
    budget = Budget(max_work_flops=base_work + 3.5 * one)
    experiments.check_budget(dataclasses.replace(CONFIG, n_teachers=2), budget, teacher_cached=True)  # 1 more fits
    with pytest.raises(OverBudget, match="in all"):
        experiments.check_budget(ten, budget, teacher_cached=True)  # 9 more do not
    for config, _ in further:  # cache them: then they cost nothing
        get_teacher(config, "cpu")
        assert is_cached(config, "cpu")
    experiments.check_budget(ten, budget, teacher_cached=True)


def ensemble_memory(config) -> int:
    """The first distillation's memory plus every further teacher's float32 weights (what check_budget adds)."""
    from kdviz.core.budget import dataset_facts, model_cost, run_cost

    facts = dataset_facts(config.distill.dataset)
    held = sum(4 * model_cost(t.model, facts.input_shape, facts.num_classes).params
               for t in ensemble.teacher_configs(config)[1:])
    return run_cost(ensemble.budget_configs(config)[0], True).memory_bytes + held


def test_the_budget_refuses_a_teacher_over_a_limit():
    from kdviz import experiments
    from kdviz.core.budget import ALLOCATOR_SLACK, Budget, OverBudget

    steps = Budget(max_steps=10)  # the distillation takes 2 × 4 steps, each further teacher 1 × 18
    with pytest.raises(OverBudget, match=r"The teacher with seed 1 and width 16 needs .*18 steps to train; that is "
                                         r"over this server's steps limit"):
        experiments.check_budget(CONFIG, steps, teacher_cached=True)
    memory = Budget(max_memory_bytes=ALLOCATOR_SLACK + 8 * 2**20)  # the tiny ensemble: about 1 MB over the slack
    experiments.check_budget(CONFIG, memory, teacher_cached=True)
    wide = dataclasses.replace(CONFIG, teacher_widths=(16, 16, 8192))
    with pytest.raises(OverBudget, match="memory"):
        experiments.check_budget(wide, memory, teacher_cached=True)
    deep = dataclasses.replace(TINY, teacher=dataclasses.replace(TINY.teacher, model=ModelSpec("mlp", 16, 3)))
    few = dataclasses.replace(CONFIG, distill=deep, n_teachers=10, teacher_widths=(16,) + (600,) * 9)  # each fits
    each = Budget(max_memory_bytes=ensemble_memory(few) - 1)
    with pytest.raises(OverBudget, match="all 10 teachers at once"):
        experiments.check_budget(few, each, teacher_cached=True)
    costed = ensemble.budget_configs(wide)
    assert costed[0] == TINY and costed[1].teacher.model.width == 8192, "the best teacher may be the costliest"


def test_the_run_manager_runs_it(make_manager):
    from kdviz import experiments

    manager = make_manager(workers=1)
    config = dataclasses.replace(CONFIG, n_teachers=2)

    run = wait_for_run(manager, manager.submit(config, "alice"))
    assert run.state == "completed" and run.experiment == "ensemble"
    assert experiments.from_record(run.config) == config, "the run's record rebuilds its config"
    kinds = [e["point"]["kind"] for e in run.events if e["event"] == "Measured"]
    assert kinds == ["teacher", "teacher", "ensemble", "students", "best_teacher_kd"]
    assert {"teachers", "ensemble", "hard", "ensemble_kd", "best_teacher_kd"} <= set(run.summary)
    result = ensemble.report(config, [{"seed": run.summary["seed"], **run.summary}])  # as the page calls it
    assert result["summary"]["n_seeds"] == 1 and math.isfinite(result["summary"]["compression"])
