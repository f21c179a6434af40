"""Statistics over seeds (kdviz.core.results.seed_summary): what every table, verdict and sweep ranks by."""
from __future__ import annotations

import pytest

from kdviz.core.results import seed_summary


def facts(accuracy, val_accuracy, agreement=None):
    return {"accuracy": accuracy, "val_accuracy": val_accuracy, "agreement": agreement, "kl_to_teacher": None}


def test_both_splits_have_wins_and_a_relative_error_reduction():
    runs = [{"hard": facts(0.90, 0.80, 0.9), "kd": facts(0.95, 0.90, 0.97)},
            {"hard": facts(0.90, 0.80, 0.9), "kd": facts(0.85, 0.85, 0.93)}]
    out = seed_summary(runs, n_test=100, n_val=100)
    assert out["relative_error_reduction"] == pytest.approx((10 - 10) / 10)  # 10 errors → 5 and 15
    assert out["val_relative_error_reduction"] == pytest.approx((20 - 12.5) / 20)
    assert (out["kd_wins"], out["kd_val_wins"]) == (1, 2)
    assert out["kd_agreement_mean"] == pytest.approx(0.95) and "kd_kl_to_teacher_mean" not in out


def test_a_baseline_trained_alone_has_no_wins_and_no_reduction():
    out = seed_summary([{"hard": facts(0.9, 0.8)}], n_test=10, n_val=10, roles=("hard",))
    assert out["hard_mean"] == pytest.approx(0.9) and "kd_wins" not in out
    assert "relative_error_reduction" not in out and "val_relative_error_reduction" not in out
