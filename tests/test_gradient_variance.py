"""The gradient-variance experiment: the estimator on a case with a known answer, the soft term, a tiny run, the CLI."""
from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from kdviz.core.engine import DistillConfig, TeacherConfig, run_to_end, train_teacher
from kdviz.core.kd import distillation_loss
from kdviz.core.models import ModelSpec
from kdviz.experiments import gradient_variance as gv

TINY = DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0),
                     ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.9, epochs=2, batch_size=64, device="cpu")


def linear_sum_loss(logits, teacher_logits, label, temperature):
    return logits.sum()  # for f(x) = w · x the gradient of one example is exactly x


def test_per_example_statistics_and_the_mini_batch_formula_match_a_hand_computed_case():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=generator)
    model = nn.Linear(3, 1, bias=False)
    stats = gv.gradient_statistics(model, linear_sum_loss, x, torch.zeros(6, dtype=torch.long), torch.zeros(6, 1),
                                   chunk=4)  # two chunks
    g = x.double().numpy()
    mean = g.mean(0)
    assert stats["n"] == 6
    assert stats["mean_norm2"] == pytest.approx(float(mean @ mean))
    assert stats["variance"] == pytest.approx(float(((g - mean) ** 2).sum(1).mean()))
    for batch in (1, 2, 3, 6):  # every mini-batch of that size, drawn without replacement, exactly
        spread = np.mean([np.sum((g[list(b)].mean(0) - mean) ** 2) for b in itertools.combinations(range(6), batch)])
        assert gv.relative_variance(stats, batch) == pytest.approx(spread / float(mean @ mean))


def test_the_soft_term_is_the_kd_losss_soft_term():
    generator = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)
    labels = torch.tensor([0, 1, 2, 3, 0])
    for temperature in (1.0, 4.0, 20.0):
        expected = distillation_loss(student, teacher, labels, temperature, 0.5)["soft"]
        assert gv.soft_loss(student, teacher, labels, temperature) == pytest.approx(float(expected))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDVIZ_HOME", str(tmp_path_factory.mktemp("gv-home")))
        return run_to_end(train_teacher(TINY.teacher, "cpu")).models["teacher"]


def tiny(**changes) -> gv.GradientVarianceConfig:
    return dataclasses.replace(gv.GradientVarianceConfig(TINY, epochs=(0, 2), temperatures=(1.0, 8.0),
                                                         batch_size=32), **changes)


def test_a_tiny_run_measures_every_point_and_is_reproducible(teacher):
    events = list(gv.run(tiny(), teacher))
    measured = [e for e in events if isinstance(e, gv.Measured)]
    assert [e.done for e in measured] == [1, 2, 3, 4] and all(e.total == 4 for e in measured)
    finished = events[-1]
    assert finished.status == "completed"
    points = finished.summary["points"]
    assert [(p["epoch"], p["temperature"]) for p in points] == [(0, 1.0), (0, 8.0), (2, 1.0), (2, 8.0)]
    assert all(p["hard_relative_variance"] > 0 and p["soft_relative_variance"] > 0 for p in points)
    assert points[0]["hard_relative_variance"] == points[1]["hard_relative_variance"], "hard does not depend on T"
    assert run_to_end(gv.run(tiny(), teacher)).summary == finished.summary


def test_a_stop_keeps_the_points_measured_so_far(teacher):
    calls = []
    finished = run_to_end(gv.run(tiny(), teacher, lambda: calls.append(1) or len(calls) > 1))
    assert finished.status == "cancelled" and len(finished.summary["points"]) == 2  # epoch 0 was measured


@pytest.mark.parametrize("changes, message", [
    ({"temperatures": (0.0,)}, "temperature"), ({"epochs": (-1,)}, "epochs"), ({"batch_size": 0}, "batch size"),
    ({"temperatures": ()}, "temperatures")])
def test_bad_settings_are_refused_with_a_message(changes, message):
    with pytest.raises(ValueError, match=message):
        gv.check(tiny(**changes))


def test_the_summary_over_seeds_and_its_verdict():
    runs = [{"points": [{"epoch": 0, "temperature": 4.0, "hard_relative_variance": 2.0,
                         "soft_relative_variance": soft}]} for soft in (1.0, 3.0)]
    (row,) = gv.summarise(runs)
    assert row["soft_lower"] == 1 and row["ratio_mean"] == pytest.approx(1.0)
    assert "lower on 1 of 2 seeds" in gv.verdict([row])
    assert gv.verdict([{**row, "soft_lower": 2}]).startswith("Agrees")


def test_the_command_line_writes_the_points(tmp_path, capsys):
    from kdviz.cli import main

    out = tmp_path / "gv.json"
    code = main(["experiment", "gradient-variance", "--dataset", "digits", "--teacher-width", "16", "--teacher-depth",
                 "1", "--teacher-epochs", "1", "--student-width", "8", "--student-depth", "1", "--at-epochs", "0", "1",
                 "--temperatures", "1", "4", "--seeds", "0", "1", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert {"epoch", "temperature", "hard_relative_variance", "soft_relative_variance"} <= set(result["points"][0])
    assert len(result["points"]) == 8 and result["config"]["experiment"] == "gradient-variance"
    assert "soft rel. var." in capsys.readouterr().out
    assert main(["experiment", "gradient-variance", "--temperatures", "-1"]) == 2
