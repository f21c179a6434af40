"""The ensembles page's worked example and result tables (kdviz.views.ensembles), without Streamlit."""
from __future__ import annotations

import numpy as np
import pytest

from kdviz.core import kd
from kdviz.views import ensembles as views


def test_the_per_teacher_kl_terms_have_the_averaged_probabilities_gradient_and_logits_do_not():
    example = views.worked_example(views.EXAMPLE_TEACHERS, views.EXAMPLE_STUDENT, 4.0)
    losses = example["losses"]
    np.testing.assert_allclose(losses["kl-terms"]["gradient"], losses["probabilities"]["gradient"], atol=1e-12)
    assert np.abs(losses["logits"]["gradient"] - losses["probabilities"]["gradient"]).max() > 1e-3
    # the two losses differ by the teachers' own disagreement, which does not depend on the student
    assert losses["kl-terms"]["loss"] - losses["probabilities"]["loss"] == pytest.approx(example["disagreement"])
    other = views.worked_example(views.EXAMPLE_TEACHERS, (0.0, 0.0, 0.0, 0.0), 4.0)
    assert other["disagreement"] == pytest.approx(example["disagreement"])


def test_the_targets_are_the_mean_and_the_normalised_geometric_mean_of_the_teachers():
    example = views.worked_example(views.EXAMPLE_TEACHERS, views.EXAMPLE_STUDENT, 2.0)
    p = np.array([kd.softmax(t, 2.0) for t in views.EXAMPLE_TEACHERS])
    np.testing.assert_allclose(example["targets"]["probabilities"], p.mean(axis=0), atol=1e-12)
    geometric = np.exp(np.log(p).mean(axis=0))
    np.testing.assert_allclose(example["targets"]["logits"], geometric / geometric.sum(), atol=1e-12)
    rows = views.example_table(example)
    assert [row["loss"] for row in rows] == list(views.LOSS_NAMES.values())
    assert views.example_chart(example).data  # draws


@pytest.mark.parametrize("teachers, student, words", [
    ([[1.0, 2.0, 3.0, 4.0]], [0.0] * 4, "at least two"),
    ([[1.0, 2.0, 3.0, 4.0]] * 2, [0.0] * 3, "needs 4 logits"),
    ([[1.0, float("nan"), 3.0, 4.0]] * 2, [0.0] * 4, "finite"),
])
def test_bad_example_logits_are_refused_with_a_message(teachers, student, words):
    with pytest.raises(ValueError, match=words):
        views.worked_example(teachers, student, 4.0)


def test_a_live_runs_points_make_a_partial_summary():
    points = [{"kind": "teacher", "index": 0, "seed": 0, "width": 8, "params": 10, "flops_per_image": 20.0,
               "accuracy": 0.8, "val_accuracy": 0.7, "cached": True},
              {"kind": "teacher", "index": 1, "seed": 1, "width": 8, "params": 10, "flops_per_image": 20.0,
               "accuracy": 0.7, "val_accuracy": 0.9, "cached": False}]
    summary = views.summary_from_points(points)
    assert [t["index"] for t in summary["teachers"]] == [0, 1] and "ensemble" not in summary
    summary = views.summary_from_points(points + [{"kind": "ensemble", "accuracy": 0.85, "val_accuracy": 0.9,
                                                    "params": 20, "flops_per_image": 40.0}])
    assert summary["best_teacher"] == 1  # chosen on validation, not on test
    assert views.accuracy_chart(summary).data and views.cost_rows(summary)[0]["parameters"] == 20
