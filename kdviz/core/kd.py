"""The mathematics of knowledge distillation: temperature softmax, entropy, KL and the distillation loss.

Everything but `distillation_loss` is numpy-only so that the soft-labels page never pays torch's import cost.
Reference: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015, §2 (eq. 1 and 2).
"""
from __future__ import annotations

import math

import numpy as np

MIN_TEMPERATURE = 1e-6


def check_temperature(temperature: float) -> float:
    """Return temperature as a float, or raise ValueError naming the bad value."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return value


def check_alpha(alpha: float) -> float:
    """alpha is the weight of the soft (distillation) term; it must lie in [0, 1]."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    return value


def _as_logits(logits) -> np.ndarray:
    try:
        array = np.asarray(logits, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"logits must be numbers, got {logits!r}") from None
    if array.ndim == 0 or array.shape[-1] == 0:
        raise ValueError(f"logits must be a non-empty vector, got {logits!r}")
    if not np.all(np.isfinite(array)):
        bad = array[~np.isfinite(array)].ravel()[0]
        raise ValueError(f"logits must be finite numbers, got {bad!r}")
    return array


def log_softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """log softmax(logits / T) over the last axis, stable for |logits| up to 1e6 and T down to 0.01."""
    temperature = check_temperature(temperature)
    scaled = _as_logits(logits) / temperature
    shifted = scaled - scaled.max(axis=-1, keepdims=True)  # the largest entry becomes 0: exp never overflows
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Probabilities q_i = exp(z_i / T) / sum_j exp(z_j / T) over the last axis (Hinton 2015, eq. 1)."""
    return np.exp(log_softmax(logits, temperature))


def entropy(logits, temperature: float = 1.0) -> np.ndarray:
    """Entropy in nats of softmax(logits / T); 0 * log 0 counts as 0."""
    log_p = log_softmax(logits, temperature)
    return -(np.exp(log_p) * log_p).sum(axis=-1)


def kl_divergence(teacher_logits, student_logits, temperature: float = 1.0) -> np.ndarray:
    """KL(teacher ‖ student) in nats between the two softmaxes at temperature T, computed in log space."""
    log_p = log_softmax(teacher_logits, temperature)
    log_q = log_softmax(student_logits, temperature)
    _check_same_shape(log_p, log_q)
    return np.maximum((np.exp(log_p) * (log_p - log_q)).sum(axis=-1), 0.0)


def soft_cross_entropy(teacher_logits, student_logits, temperature: float = 1.0) -> np.ndarray:
    """-sum_i p_i log q_i at temperature T; equals KL(p ‖ q) + H(p), so it never goes below the teacher's entropy."""
    log_p = log_softmax(teacher_logits, temperature)
    log_q = log_softmax(student_logits, temperature)
    _check_same_shape(log_p, log_q)
    return -(np.exp(log_p) * log_q).sum(axis=-1)


def hard_cross_entropy(student_logits, label: int) -> float:
    """Cross-entropy of the student's softmax at T = 1 with a one-hot label."""
    log_q = log_softmax(student_logits, 1.0)
    if not (0 <= int(label) < log_q.shape[-1]):
        raise ValueError(f"label must be a class index in [0, {log_q.shape[-1] - 1}], got {label!r}")
    return float(-log_q[..., int(label)])


def soft_gradient(teacher_logits, student_logits, temperature: float = 1.0, scaled: bool = True) -> np.ndarray:
    """Gradient of the soft loss on the student's logits z_i.

    Hinton 2015, eq. 2: dC/dz_i = (1/T)(q_i - p_i) for the soft cross-entropy C (the same for KL, since the teacher's
    entropy does not depend on z). Multiplying the loss by T² (scaled=True) makes it T (q_i - p_i), which keeps the
    soft term's gradient magnitude steady as T changes. Positive entries are pushed down by the next update.
    """
    temperature = check_temperature(temperature)
    p = softmax(teacher_logits, temperature)
    q = softmax(student_logits, temperature)
    _check_same_shape(p, q)
    factor = temperature if scaled else 1.0 / temperature
    return factor * (q - p)


def loss_terms(teacher_logits, student_logits, label: int, temperature: float, alpha: float) -> dict[str, float]:
    """Every term the soft-labels page shows, for one example (vectors of logits)."""
    temperature, alpha = check_temperature(temperature), check_alpha(alpha)
    kl = float(kl_divergence(teacher_logits, student_logits, temperature))
    hard = hard_cross_entropy(student_logits, label)
    soft = temperature**2 * kl
    return {
        "hard_cross_entropy": hard,
        "kl": kl,
        "t2_kl": soft,
        "soft_cross_entropy": float(soft_cross_entropy(teacher_logits, student_logits, temperature)),
        "teacher_entropy": float(entropy(teacher_logits, temperature)),
        "total": alpha * soft + (1 - alpha) * hard,
    }


def _check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"teacher and student logits must have the same shape, got {a.shape} and {b.shape}")


def distillation_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float) -> dict:
    """The one KD loss of kdviz (torch tensors in, dict of scalar tensors out).

    soft = T² · KL(teacher ‖ student) at temperature T, mean over the batch. Hinton et al. 2015 §2: the gradients of
    the soft term scale as 1/T², so multiplying by T² keeps its weight steady when T changes. Computed in log space
    (log_target=True) so that tiny teacher probabilities neither underflow nor produce 0 · log 0 = NaN.
    hard = cross-entropy with the true labels at T = 1.
    loss = alpha · soft + (1 - alpha) · hard: alpha weighs the *soft* term (Keras's KD example uses the opposite).
    """
    import torch.nn.functional as F  # lazy: this module must stay importable without torch

    temperature, alpha = check_temperature(temperature), check_alpha(alpha)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)  # (B, C) student, log space
    log_p = F.log_softmax(teacher_logits / temperature, dim=-1)  # (B, C) teacher, log space
    soft = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * temperature**2
    hard = F.cross_entropy(student_logits, labels)
    return {"loss": alpha * soft + (1 - alpha) * hard, "soft": soft, "hard": hard}


def teacher_agreement(teacher_logits, student_logits) -> dict[str, float | None]:
    """How closely a student matches its teacher (Stanton et al. 2021, "Does knowledge distillation really work?").

    agreement: the fraction of images on which the student's top-1 class is the teacher's; kl_to_teacher: the mean
    KL(teacher ‖ student) at T = 1, in nats. KD can raise both without raising accuracy: fidelity is not accuracy.
    Both are None without images or when a logit is not finite (a diverged student): a summary stays valid JSON.
    """
    import torch.nn.functional as F  # lazy, as above

    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher and student logits must have the same shape, got {tuple(teacher_logits.shape)} "
                         f"and {tuple(student_logits.shape)}")
    if not len(teacher_logits) or not (teacher_logits.isfinite().all() and student_logits.isfinite().all()):
        return {"agreement": None, "kl_to_teacher": None}
    log_p, log_q = F.log_softmax(teacher_logits.double(), -1), F.log_softmax(student_logits.double(), -1)
    kl = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
    same = (teacher_logits.argmax(-1) == student_logits.argmax(-1)).double().mean()
    return {"agreement": float(same), "kl_to_teacher": float(kl)}
