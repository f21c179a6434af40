"""The common mistakes of distillation (kdviz.core.kd.MISTAKES): each loss against hand-computed values, the page's
numpy numbers against torch's autograd, and the engine's third student (same weights, same batches, its own loss)."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from kdviz.core import kd
from kdviz.core.engine import (DistillConfig, EpochEnd, Notice, StepLosses, TeacherConfig, check_config,
                               config_from_dict, distill, event_to_dict, run_to_end, train_teacher)
from kdviz.core.models import ModelSpec

TEACHER, STUDENT, LABEL = [5.0, -3.0, -5.0, -7.0], [-1.0, 3.0, 2.0, -3.0], 0  # the lecture's dog, cat, car, ship


# ---- hand-computed values (plain Python math: an oracle independent of numpy and torch) ----------------------

def _probabilities(logits, temperature):
    exps = [math.exp(z / temperature) for z in logits]
    return [e / sum(exps) for e in exps]


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def _hand(temperature: float, alpha: float) -> dict:
    p, q = _probabilities(TEACHER, temperature), _probabilities(STUDENT, temperature)
    hard = -math.log(_probabilities(STUDENT, 1.0)[LABEL])
    soft = temperature**2 * _kl(p, q)
    return {"soft": soft, "hard": hard, "reverse": temperature**2 * _kl(q, p),
            "total": alpha * soft + (1 - alpha) * hard}


def _torch_loss(mistake: str, temperature: float, alpha: float, dtype=torch.float64) -> dict:
    out = kd.distillation_loss(torch.tensor([STUDENT], dtype=dtype), torch.tensor([TEACHER], dtype=dtype),
                               torch.tensor([LABEL]), temperature, alpha, mistake)
    return {key: float(value) for key, value in out.items()}


@pytest.mark.parametrize("temperature", [1.0, 4.0, 20.0])
def test_each_mistake_against_hand_computed_values(temperature):
    alpha, hand = 0.9, _hand(temperature, 0.9)
    expected_soft = {"none": hand["soft"], "mean-reduction": hand["soft"] / 4,  # C = 4 classes
                     "no-t-squared": hand["soft"] / temperature**2, "naive-kl": hand["soft"],
                     "reverse-kl": hand["reverse"], "teacher-train-mode": hand["soft"], "alpha-swapped": hand["soft"]}
    for mistake, soft in expected_soft.items():
        weight = 1 - alpha if mistake == "alpha-swapped" else alpha
        for loss in (_torch_loss(mistake, temperature, alpha), kd.mistake_terms(TEACHER, STUDENT, LABEL, temperature,
                                                                                   alpha, mistake)):
            assert loss["soft"] == pytest.approx(soft, rel=1e-6), mistake
            assert loss["hard"] == pytest.approx(hand["hard"], rel=1e-9), mistake
            total = loss["loss"] if "loss" in loss else loss["total"]
            assert total == pytest.approx(weight * soft + (1 - weight) * hand["hard"], rel=1e-6), mistake


def test_the_lecture_numbers_at_t4():
    """The numbers docs/MISTAKES.md quotes: T = 4, α = 0.9, the lecture's logits."""
    assert _torch_loss("none", 4.0, 0.9)["soft"] == pytest.approx(15.9497, abs=1e-4)
    assert _torch_loss("mean-reduction", 4.0, 0.9)["soft"] == pytest.approx(3.9874, abs=1e-4)
    assert _torch_loss("no-t-squared", 4.0, 0.9)["soft"] == pytest.approx(0.9969, abs=1e-4)
    assert _torch_loss("reverse-kl", 4.0, 0.9)["soft"] == pytest.approx(15.0941, abs=1e-4)
    assert _torch_loss("alpha-swapped", 4.0, 0.9)["loss"] == pytest.approx(5.4905, abs=1e-4)


def test_naive_kl_is_nan_at_t_01_in_float32_where_the_log_space_form_is_finite():
    """At T = 0.1 the teacher's ship probability, exp(-120), underflows to 0 in float32: 0 · log 0 = NaN."""
    naive, correct = _torch_loss("naive-kl", 0.1, 0.9, torch.float32), _torch_loss("none", 0.1, 0.9, torch.float32)
    assert math.isnan(naive["soft"]) and math.isnan(naive["loss"])
    assert correct["soft"] == pytest.approx(0.4, rel=1e-5)  # T² · KL = 0.01 · (50 - (-10)) · ... = 0.4: finite
    page = kd.mistake_terms(TEACHER, STUDENT, LABEL, 0.1, 0.9, "naive-kl")
    assert math.isnan(page["soft"]) and math.isnan(page["total"])
    assert math.isfinite(kd.mistake_terms(TEACHER, STUDENT, LABEL, 0.1, 0.9)["soft"])


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 20.0])
@pytest.mark.parametrize("mistake", kd.MISTAKE_NAMES)
def test_the_pages_update_is_autograds(mistake, temperature):
    """mistake_terms's update (the page's arrows) is -∂loss/∂z of distillation_loss, the engine's loss."""
    student = torch.tensor([STUDENT], dtype=torch.float64, requires_grad=True)
    loss = kd.distillation_loss(student, torch.tensor([TEACHER], dtype=torch.float64), torch.tensor([LABEL]),
                                temperature, 0.9, mistake)["loss"]
    (gradient,) = torch.autograd.grad(loss, student)
    page = kd.mistake_terms(TEACHER, STUDENT, LABEL, temperature, 0.9, mistake)
    np.testing.assert_allclose(page["update"], -gradient[0].numpy(), atol=1e-9)


def test_alpha_means_what_it_says_only_without_the_mistakes():
    """The soft term's share of the push: α's meaning shifts with mean reduction (÷ C), without T² (÷ T², so with T)
    and with α swapped."""
    share = lambda mistake, temperature=4.0: kd.mistake_terms(  # noqa: E731
        TEACHER, STUDENT, LABEL, temperature, 0.9, mistake)["soft_share"]
    assert share("mean-reduction") < share("none")
    assert share("alpha-swapped") < 0.5 < share("none")
    assert share("no-t-squared", 20.0) < share("no-t-squared", 4.0) < share("none", 4.0)
    assert share("none", 20.0) == pytest.approx(share("none", 4.0), abs=0.01)  # with T², T leaves the balance alone


def test_reverse_kl_barely_pushes_towards_a_class_the_student_rules_out():
    """At T = 1 the student gives dog 1.3 %: KL(teacher ‖ student) pulls dog up by 0.99 (α = 1), the reversed KL by
    0.16, weighted by the student's own small probability (mode-seeking)."""
    forward = kd.mistake_terms(TEACHER, STUDENT, LABEL, 1.0, 1.0)["update"]
    reverse = kd.mistake_terms(TEACHER, STUDENT, LABEL, 1.0, 1.0, "reverse-kl")["update"]
    assert forward[0] == pytest.approx(0.9864, abs=1e-4) and reverse[0] == pytest.approx(0.1596, abs=1e-4)


def test_unknown_mistakes_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown mistake 'T2'.*none, mean-reduction"):
        kd.check_mistake("T2")
    with pytest.raises(ValueError, match="unknown mistake"):
        _torch_loss("T2", 4.0, 0.9)
    with pytest.raises(ValueError, match="not a mistake"):
        kd.get_mistake("none")


def test_every_mistake_has_a_label_and_one_sentence():
    names = [mistake.name for mistake in kd.MISTAKES]
    assert len(set(names)) == len(names) == len(kd.MISTAKE_NAMES) - 1
    for mistake in kd.MISTAKES:
        assert mistake.label and mistake.sentence.endswith(".") and mistake.sentence.count(". ") == 0


# ---- the engine: a third student with the mistake, beside the correct ones ----------------------------------

DROPOUT_TEACHER = TeacherConfig("digits", ModelSpec("mlp", 32, 1, dropout=0.3), epochs=3, batch_size=64, augment=0)
TINY = DistillConfig(DROPOUT_TEACHER, ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.9, epochs=2, batch_size=32,
                     learning_rate=1e-2, train_subset=96, device="cpu", probe_size=5)  # 3 steps per epoch


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> nn.Module:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDVIZ_HOME", str(tmp_path_factory.mktemp("mistakes-home")))
        return run_to_end(train_teacher(DROPOUT_TEACHER, "cpu")).models["teacher"]


def _steps(events) -> list[dict]:
    return [event.losses for event in events if isinstance(event, StepLosses)]


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [tensor.detach().clone() for tensor in model.state_dict().values()]


def test_a_mistake_adds_a_third_student_and_changes_nothing_else(teacher):
    """Same seed, same batches, same initial weights: the hard-label and KD students of a run with a mistake are
    those of the run without it, number for number; the third starts as they do (its first hard CE is theirs)."""
    plain = list(distill(TINY, teacher))
    mistaken = list(distill(dataclasses.replace(TINY, mistake="no-t-squared"), teacher))
    correct_keys = ("hard", "kd_soft", "kd_hard", "kd_total")
    assert [{k: s[k] for k in correct_keys} for s in _steps(mistaken)] == _steps(plain)
    assert set(mistaken[-1].models) == {"hard", "kd", "mistake"} and set(plain[-1].models) == {"hard", "kd"}
    for role in ("hard", "kd"):
        assert mistaken[-1].summary[role] == plain[-1].summary[role]
        assert all(torch.equal(a, b) for a, b in zip(_weights(mistaken[-1].models[role]),
                                                     _weights(plain[-1].models[role])))
    first = _steps(mistaken)[0]
    assert first["mistake_hard"] == first["hard"] == first["kd_hard"]
    assert first["mistake_soft"] == pytest.approx(first["kd_soft"] / 16, rel=1e-5)  # T² = 16
    epochs = [event for event in mistaken if isinstance(event, EpochEnd)]
    assert epochs[0].accuracy["mistake"] == epochs[0].accuracy["kd"]  # the same initial weights
    assert {"hard", "kd", "mistake"} <= set(epochs[-1].val_accuracy)


@pytest.mark.parametrize("mistake, check", [
    ("mean-reduction", lambda s: s["mistake_soft"] == pytest.approx(s["kd_soft"] / 10, rel=1e-5)),  # 10 digits
    ("alpha-swapped", lambda s: s["mistake_total"] == pytest.approx(0.1 * s["kd_soft"] + 0.9 * s["kd_hard"], rel=1e-5)),
    ("naive-kl", lambda s: s["mistake_soft"] == pytest.approx(s["kd_soft"], rel=1e-4)),  # finite at T = 4
])
def test_each_loss_mistake_trains_the_third_student_on_its_own_loss(teacher, mistake, check):
    events = list(distill(dataclasses.replace(TINY, mistake=mistake), teacher))
    assert check(_steps(events)[0])
    assert events[-1].status == "completed" and "mistake" in events[-1].summary


class _Sharpened(nn.Module):
    """The tiny teacher with its logits × 50: a confident teacher, whose probabilities underflow at T = 0.1."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher = teacher

    def forward(self, x):
        return 50 * self.teacher(x)


def test_naive_kl_at_low_temperature_stops_only_the_mistaken_student(teacher):
    config = dataclasses.replace(TINY, mistake="naive-kl", temperature=0.1)
    events = list(distill(config, _Sharpened(teacher).eval()))
    notices = [event.message for event in events if isinstance(event, Notice)]
    assert len(notices) == 1 and "diverged at step 1" in notices[0] and "nan" in notices[0]
    steps = _steps(events)
    assert "mistake_total" not in steps[0] and all("mistake_total" not in s for s in steps[1:])
    assert all(math.isfinite(s["kd_total"]) for s in steps)  # the log-space KD student trains on
    finished = events[-1]
    assert finished.status == "completed" and len(steps) == 6
    epochs = [event for event in events if isinstance(event, EpochEnd)]
    assert epochs[-1].accuracy["mistake"] == epochs[0].accuracy["mistake"]  # never updated: still its initial weights
    for event in events:
        json.dumps(event_to_dict(event), allow_nan=False)  # a run's log and the live payloads are JSON


def test_the_teacher_in_training_mode_gives_other_labels_at_every_call_reproducibly(teacher):
    config = dataclasses.replace(TINY, mistake="teacher-train-mode")
    first, again = list(distill(config, teacher)), list(distill(config, teacher))
    assert _steps(first) == _steps(again)  # its dropout comes from the run's seed
    step = _steps(first)[0]
    assert step["mistake_hard"] == step["kd_hard"] and step["mistake_soft"] != step["kd_soft"]
    assert not teacher.training  # the shared teacher was not switched to training mode
    other_seed = list(distill(dataclasses.replace(config, seed=1), teacher))
    assert _steps(other_seed)[0]["mistake_soft"] != step["mistake_soft"]


def test_the_teacher_in_training_mode_needs_a_teacher_with_dropout():
    config = dataclasses.replace(TINY, teacher=dataclasses.replace(DROPOUT_TEACHER, model=ModelSpec("mlp", 32, 1)),
                                 mistake="teacher-train-mode")
    with pytest.raises(ValueError, match="needs a teacher with dropout or batch norm"):
        check_config(config)
    cnn = dataclasses.replace(config, teacher=dataclasses.replace(DROPOUT_TEACHER, model=ModelSpec("cnn", 4, 1)))
    assert check_config(cnn) is cnn  # batch norm: training mode uses each batch's statistics


def test_a_mistake_is_part_of_the_config_a_run_records():
    config = dataclasses.replace(TINY, mistake="reverse-kl")
    recorded = json.loads(json.dumps(dataclasses.asdict(config)))
    assert recorded["mistake"] == "reverse-kl" and config_from_dict(recorded) == config
    del recorded["mistake"]  # a run recorded before mistakes existed
    assert config_from_dict(recorded).mistake == "none"
    with pytest.raises(ValueError, match="unknown mistake 'T2'"):
        check_config(dataclasses.replace(TINY, mistake="T2"))


# ---- the command line and the budget ---------------------------------------------------------------------------

TINY_RUN = ["distill", "--preset", "quick", "--epochs", "1", "--teacher-epochs", "1", "--train-subset", "100"]


def test_the_cli_runs_a_mistake_beside_the_correct_loss(capsys, tmp_path):
    from kdviz import cli

    out = tmp_path / "m.json"
    assert cli.main([*TINY_RUN, "--mistake", "no-t-squared", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "KD with the mistake" in printed and "With the mistake “T² left out” the KD student made" in printed
    result = json.loads(out.read_text())
    assert result["config"]["mistake"] == "no-t-squared" and "mistake" in result["runs"][0]
    assert "mistake_mean" in result["summary"] and "kd_wins" in result["summary"]
    assert cli.main([*TINY_RUN, "--json", str(tmp_path / "plain.json")]) == 0  # the same seed without the mistake
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert plain["runs"][0]["kd"] == result["runs"][0]["kd"] and "mistake" not in plain["runs"][0]


@pytest.mark.parametrize("argv, fragment", [
    (["--mistake", "T2"], "unknown mistake 'T2': choose one of none, mean-reduction"),
    (["--mistake", "teacher-train-mode"], "needs a teacher with dropout or batch norm"),
    (["--teacher-dropout", "1.5"], "dropout must be in [0, 1), got 1.5"),
])
def test_bad_mistakes_are_one_line(argv, fragment, capsys):
    from kdviz import cli

    assert cli.main(["distill", "--preset", "quick", *argv]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1 and fragment in err, err


def test_a_third_student_costs_more_in_the_budget():
    from kdviz.core.budget import run_cost

    plain = run_cost(TINY, teacher_cached=True)
    third = run_cost(dataclasses.replace(TINY, mistake="reverse-kl"), teacher_cached=True)
    noisy = run_cost(dataclasses.replace(TINY, mistake="teacher-train-mode"), teacher_cached=True)
    assert third.work_flops > plain.work_flops and third.memory_bytes > plain.memory_bytes
    assert third.disk_bytes > plain.disk_bytes and noisy.work_flops > third.work_flops
