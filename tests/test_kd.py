"""kdviz.core.kd: known values, invariants, an independent torch oracle, Hypothesis ranges and the KD loss contract."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from kdviz.core import kd
from tests.strategies import alphas, logit_batches, logit_pairs, logit_vectors, temperatures

LECTURE_TEACHER = [5.0, -3.0, -5.0, -7.0]  # the lecture's logits for dog, cat, car, ship
# Hypothesis tests run with deadline=None: torch's first calls and a busy 2-core CI machine can exceed 200 ms.


# ---- known values ---------------------------------------------------------------------------------------------

def test_lecture_example_at_temperature_1_is_almost_one_hot():
    probabilities = kd.softmax(LECTURE_TEACHER, 1.0)
    assert round(float(probabilities[0]), 4) == 0.9996
    assert probabilities.argmax() == 0


def test_lecture_example_at_temperature_10_reveals_dark_knowledge():
    probabilities = kd.softmax(LECTURE_TEACHER, 10.0)
    assert round(float(probabilities[0]), 4) == 0.4721  # dog
    assert round(float(probabilities[1]), 4) == 0.2121  # cat
    assert list(np.argsort(-probabilities)) == [0, 1, 2, 3]  # order of the logits is kept


def test_softmax_of_equal_logits_is_uniform():
    np.testing.assert_allclose(kd.softmax([3.0, 3.0, 3.0, 3.0], 0.5), [0.25] * 4)


def test_entropy_of_uniform_is_log_k_and_of_one_hot_is_zero():
    assert float(kd.entropy([0.0] * 5)) == pytest.approx(math.log(5))
    assert float(kd.entropy([1e6, 0.0, 0.0])) == pytest.approx(0.0, abs=1e-12)


def test_kl_of_identical_distributions_is_zero_and_positive_otherwise():
    assert float(kd.kl_divergence(LECTURE_TEACHER, LECTURE_TEACHER, 4.0)) == pytest.approx(0.0, abs=1e-15)
    assert float(kd.kl_divergence(LECTURE_TEACHER, [0.0, 0.0, 0.0, 0.0], 4.0)) > 0.01


# ---- invariants -----------------------------------------------------------------------------------------------

@settings(deadline=None)
@given(logit_batches(), temperatures())
def test_softmax_is_a_probability_distribution_without_nan_or_inf(logits, temperature):
    probabilities = kd.softmax(logits, temperature)
    assert probabilities.shape == logits.shape
    assert np.all(np.isfinite(probabilities))
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    # the largest logit gets the largest probability
    top = logits.argmax(axis=-1)
    assert np.all(probabilities[np.arange(len(logits)), top] == probabilities.max(axis=-1))


@settings(deadline=None)
@given(logit_vectors(bound=1e3), st.floats(-1e3, 1e3, allow_nan=False), temperatures())
def test_softmax_is_shift_invariant(logits, shift, temperature):
    np.testing.assert_allclose(kd.softmax(logits + shift, temperature), kd.softmax(logits, temperature),
                               rtol=1e-6, atol=1e-9)


@settings(deadline=None)
@given(logit_vectors(min_classes=2, bound=100.0))
def test_very_high_temperature_tends_to_uniform(logits):
    np.testing.assert_allclose(kd.softmax(logits, 1e6), 1 / len(logits), rtol=1e-3)


def test_higher_temperature_is_always_softer():
    entropies = [float(kd.entropy(LECTURE_TEACHER, t)) for t in (0.5, 1, 2, 4, 10, 100)]
    assert entropies == sorted(entropies) and entropies[0] < entropies[-1]
    assert entropies[-1] < math.log(4)


def test_low_temperature_tends_to_one_hot():
    np.testing.assert_array_equal(kd.softmax(LECTURE_TEACHER, 0.01), [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(kd.softmax([1.0, 1.01, 0.99], 0.001), [0.0, 1.0, 0.0], atol=1e-4)


def test_ties_at_low_temperature_share_the_mass():
    np.testing.assert_allclose(kd.softmax([2.0, 2.0, -1.0], 0.01), [0.5, 0.5, 0.0], atol=1e-12)


@settings(deadline=None)
@given(logit_pairs(bound=1e3), temperatures())
def test_soft_cross_entropy_is_kl_plus_teacher_entropy(pair, temperature):
    teacher, student = pair
    kl = kd.kl_divergence(teacher, student, temperature)
    cross_entropy = kd.soft_cross_entropy(teacher, student, temperature)
    entropy = kd.entropy(teacher, temperature)
    assert kl >= 0 and entropy >= -1e-12
    np.testing.assert_allclose(cross_entropy, kl + entropy, rtol=1e-9, atol=1e-9)
    assert cross_entropy >= entropy - 1e-9  # the soft cross-entropy never goes below the teacher's entropy


# ---- an independent oracle: torch ------------------------------------------------------------------------------

@settings(deadline=None)
@given(logit_batches(), temperatures())
def test_softmax_matches_torch(logits, temperature):
    expected = torch.softmax(torch.from_numpy(logits) / temperature, dim=-1).numpy()
    np.testing.assert_allclose(kd.softmax(logits, temperature), expected, rtol=1e-9, atol=1e-12)
    expected_log = torch.log_softmax(torch.from_numpy(logits) / temperature, dim=-1).numpy()
    np.testing.assert_allclose(kd.log_softmax(logits, temperature), expected_log, rtol=1e-9, atol=1e-9)


@settings(deadline=None)
@given(logit_pairs(bound=1e3), temperatures())
def test_kl_matches_torch_kl_div(pair, temperature):
    teacher, student = (torch.from_numpy(v) / temperature for v in pair)
    expected = F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), reduction="sum", log_target=True)
    np.testing.assert_allclose(kd.kl_divergence(*pair, temperature), max(float(expected), 0.0), rtol=1e-7, atol=1e-9)


# ---- Hypothesis over the extremes ------------------------------------------------------------------------------

@settings(deadline=None)
@given(logit_pairs(), temperatures(), st.integers(0, 11), alphas())
def test_every_term_is_finite_across_the_supported_range(pair, temperature, label, alpha):
    teacher, student = pair
    terms = kd.loss_terms(teacher, student, label % len(teacher), temperature, alpha)
    assert all(math.isfinite(value) for value in terms.values()), terms
    assert terms["kl"] >= 0 and terms["t2_kl"] == pytest.approx(temperature**2 * terms["kl"])
    gradient = kd.soft_gradient(teacher, student, temperature)
    assert np.all(np.isfinite(gradient))
    assert abs(float(gradient.sum())) <= 1e-9 * max(1.0, temperature)  # q - p sums to zero


@settings(max_examples=50, deadline=None)
@given(logit_batches(), temperatures())
def test_entropy_is_finite_and_bounded(logits, temperature):
    h = kd.entropy(logits, temperature)
    assert np.all(np.isfinite(h))
    assert np.all(h >= -1e-12) and np.all(h <= math.log(logits.shape[-1]) + 1e-9)


# ---- validation: ValueError naming the bad value -------------------------------------------------------------

@pytest.mark.parametrize("bad, shown", [(float("nan"), "nan"), (float("inf"), "inf"), (-float("inf"), "-inf")])
def test_non_finite_logits_are_rejected_by_name(bad, shown):
    for function in (kd.softmax, kd.log_softmax, kd.entropy):
        with pytest.raises(ValueError, match="logits") as error:
            function([1.0, bad, 2.0])
        assert shown in str(error.value)
    with pytest.raises(ValueError, match=shown):
        kd.kl_divergence([1.0, 2.0], [bad, 0.0])


@pytest.mark.parametrize("bad", [0, 0.0, -1, -0.5, float("nan"), float("inf"), "hot", None])
def test_bad_temperatures_are_rejected_by_name(bad):
    with pytest.raises(ValueError, match="temperature") as error:
        kd.softmax([1.0, 2.0], bad)
    assert repr(bad) in str(error.value)


@pytest.mark.parametrize("bad", [-0.1, 1.5, 2, float("nan"), "a lot"])
def test_alpha_outside_zero_one_is_rejected_by_name(bad):
    with pytest.raises(ValueError, match="alpha") as error:
        kd.loss_terms([1.0, 0.0], [0.0, 1.0], 0, 2.0, bad)
    assert repr(bad) in str(error.value)
    with pytest.raises(ValueError, match="alpha"):
        kd.distillation_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), 2.0, bad)


def test_empty_or_mismatched_logits_and_bad_labels_are_rejected():
    with pytest.raises(ValueError, match="non-empty"):
        kd.softmax([])
    with pytest.raises(ValueError, match="numbers"):
        kd.softmax(["a", "b"])
    with pytest.raises(ValueError, match="same shape"):
        kd.kl_divergence([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="label .*got 4"):
        kd.hard_cross_entropy([1.0, 2.0, 3.0, 4.0], 4)


def test_distillation_loss_rejects_bad_temperature():
    with pytest.raises(ValueError, match="temperature .*got 0"):
        kd.distillation_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), 0, 0.5)


# ---- the distillation loss contract ----------------------------------------------------------------------------

def _batch(seed: int, batch: int = 8, classes: int = 10, scale: float = 3.0):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, classes, generator=generator, dtype=torch.float64) * scale
    teacher = torch.randn(batch, classes, generator=generator, dtype=torch.float64) * scale
    labels = torch.randint(0, classes, (batch,), generator=generator)
    return student, teacher, labels


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 20.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_distillation_loss_contract(temperature, alpha):
    student, teacher, labels = _batch(seed=int(temperature * 10 + alpha * 100))
    out = kd.distillation_loss(student, teacher, labels, temperature, alpha)
    assert set(out) == {"loss", "soft", "hard"} and all(v.ndim == 0 for v in out.values())
    expected_soft = F.kl_div(F.log_softmax(student / temperature, -1), F.log_softmax(teacher / temperature, -1),
                             reduction="batchmean", log_target=True) * temperature**2
    torch.testing.assert_close(out["soft"], expected_soft)
    torch.testing.assert_close(out["hard"], F.cross_entropy(student, labels))
    torch.testing.assert_close(out["loss"], alpha * out["soft"] + (1 - alpha) * out["hard"])


def test_soft_term_is_t_squared_times_kl_teacher_to_student_averaged_over_the_batch():
    # written out by hand, without kl_div: p = teacher, q = student, sum_i p_i (log p_i - log q_i), mean over rows
    student, teacher, labels = _batch(seed=1)
    temperature = 4.0
    p = torch.softmax(teacher / temperature, -1)
    q = torch.softmax(student / temperature, -1)
    kl_teacher_student = (p * (p.log() - q.log())).sum(-1).mean()
    kl_student_teacher = (q * (q.log() - p.log())).sum(-1).mean()
    soft = kd.distillation_loss(student, teacher, labels, temperature, 1.0)["soft"]
    torch.testing.assert_close(soft, 16.0 * kl_teacher_student)
    # the keras-io bug (issue #257): KL(student ‖ teacher) and no T² — both are measurably different here
    assert abs(float(soft - 16.0 * kl_student_teacher)) > 0.1
    assert abs(float(soft - kl_teacher_student)) > 0.1
    # and the numpy page agrees with the torch loss, row by row
    numpy_kl = kd.kl_divergence(teacher.numpy(), student.numpy(), temperature)
    np.testing.assert_allclose(numpy_kl.mean() * 16.0, float(soft), rtol=1e-10)


def test_soft_term_does_not_depend_on_labels_and_hard_term_does_not_depend_on_the_teacher():
    student, teacher, labels = _batch(seed=2)
    a = kd.distillation_loss(student, teacher, labels, 3.0, 0.5)
    b = kd.distillation_loss(student, teacher, (labels + 1) % 10, 3.0, 0.5)
    c = kd.distillation_loss(student, teacher * 2 + 1, labels, 3.0, 0.5)
    torch.testing.assert_close(a["soft"], b["soft"])
    torch.testing.assert_close(a["hard"], c["hard"])
    assert float(a["hard"]) != float(b["hard"]) and float(a["soft"]) != float(c["soft"])


def test_distillation_loss_is_stable_for_extreme_logits():
    student = torch.tensor([[1e6, -1e6, 0.0]], dtype=torch.float32)
    teacher = torch.tensor([[-1e6, 1e6, 0.0]], dtype=torch.float32)
    out = kd.distillation_loss(student, teacher, torch.tensor([1]), 0.01, 0.5)
    assert all(torch.isfinite(v) for v in out.values()), out
    same = kd.distillation_loss(teacher, teacher, torch.tensor([1]), 0.01, 1.0)
    assert float(same["soft"]) == 0.0  # no 0 · log 0 = NaN where the teacher's probabilities underflow


# ---- the gradient: Hinton 2015 eq. 2, with the T² factor -------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(logit_pairs(bound=30.0), temperatures(0.1, 100.0))
def test_autograd_of_t2_kl_equals_soft_gradient(pair, temperature):
    teacher, student = pair
    z = torch.tensor(student, requires_grad=True)
    log_q = F.log_softmax(z / temperature, -1)
    log_p = F.log_softmax(torch.tensor(teacher) / temperature, -1)
    loss = temperature**2 * (log_p.exp() * (log_p - log_q)).sum()  # T² · KL(teacher ‖ student), one example
    loss.backward()
    expected = kd.soft_gradient(teacher, student, temperature)  # T (q - p)
    np.testing.assert_allclose(z.grad.numpy(), expected, rtol=1e-7, atol=1e-9 * max(1.0, temperature))


def test_unscaled_gradient_is_eq_2_of_the_soft_cross_entropy():
    teacher, student, temperature = np.array(LECTURE_TEACHER), np.array([1.0, 2.0, -1.0, 0.5]), 5.0
    z = torch.tensor(student, requires_grad=True)
    p = torch.softmax(torch.tensor(teacher) / temperature, -1)
    cross_entropy = -(p * F.log_softmax(z / temperature, -1)).sum()
    cross_entropy.backward()
    unscaled = kd.soft_gradient(teacher, student, temperature, scaled=False)  # (1/T)(q - p)
    np.testing.assert_allclose(z.grad.numpy(), unscaled, rtol=1e-10)
    np.testing.assert_allclose(kd.soft_gradient(teacher, student, temperature), temperature**2 * unscaled)


def test_engine_loss_gradient_pulls_the_student_towards_the_teacher():
    # the gradient of distillation_loss (alpha=1) on the student's logits is T (q - p) / B: the teacher is the target
    student, teacher, labels = _batch(seed=3, batch=4, classes=5)
    temperature = 2.5
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    kd.distillation_loss(student, teacher, labels, temperature, 1.0)["loss"].backward()
    expected = kd.soft_gradient(teacher.detach().numpy(), student.detach().numpy(), temperature) / len(student)
    np.testing.assert_allclose(student.grad.numpy(), expected, rtol=1e-8, atol=1e-12)
    # a swapped loss (student as the target) would give a different gradient on the student
    swapped = temperature * (torch.softmax(teacher / temperature, -1) - torch.softmax(student / temperature, -1))
    assert not np.allclose(student.grad.numpy(), swapped.detach().numpy() / len(student))
    # one gradient step moves the student's soft distribution closer to the teacher's
    before = kd.kl_divergence(teacher.detach().numpy(), student.detach().numpy(), temperature).sum()
    stepped = (student - 0.05 * student.grad).detach().numpy()
    assert kd.kl_divergence(teacher.detach().numpy(), stepped, temperature).sum() < before


def test_loss_terms_are_consistent():
    terms = kd.loss_terms(LECTURE_TEACHER, [1.0, 2.0, 0.0, -1.0], label=0, temperature=10.0, alpha=0.7)
    assert terms["t2_kl"] == pytest.approx(100 * terms["kl"])
    assert terms["soft_cross_entropy"] == pytest.approx(terms["kl"] + terms["teacher_entropy"])
    assert terms["total"] == pytest.approx(0.7 * terms["t2_kl"] + 0.3 * terms["hard_cross_entropy"])
    assert terms["hard_cross_entropy"] == pytest.approx(
        float(F.cross_entropy(torch.tensor([[1.0, 2.0, 0.0, -1.0]], dtype=torch.float64), torch.tensor([0]))))


def test_kd_module_does_not_import_torch():
    # the soft-labels page imports kd.py; torch costs seconds to import, so kd.py must not pull it in
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, kdviz.core.kd; kdviz.core.kd.softmax([1, 2], 3); print('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "False"


def test_agreement_and_kl_to_the_teacher_on_hand_made_logits():
    teacher = torch.tensor([[5.0, -3.0, -5.0, -7.0], [0.0, 2.0, 0.0, 0.0], [1.0, 0.0, 0.0, 3.0]])
    same_top = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 9.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert kd.teacher_agreement(teacher, same_top)["agreement"] == 1.0
    assert kd.teacher_agreement(teacher, teacher + 4.0)["kl_to_teacher"] == pytest.approx(0.0, abs=1e-12)
    flipped = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 9.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    result = kd.teacher_agreement(teacher, flipped)
    assert result["agreement"] == pytest.approx(2 / 3)
    expected = np.mean([kd.kl_divergence(t.numpy(), s.numpy()) for t, s in zip(teacher, flipped)])
    assert result["kl_to_teacher"] == pytest.approx(expected)  # the same KL as the soft-labels page's, at T = 1
    with pytest.raises(ValueError, match="same shape"):
        kd.teacher_agreement(teacher, flipped[:, :3])


def test_agreement_of_a_diverged_student_is_missing_not_nan():
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert kd.teacher_agreement(teacher, torch.tensor([[math.nan, 0.0], [0.0, 1.0]])) == \
        {"agreement": None, "kl_to_teacher": None}
