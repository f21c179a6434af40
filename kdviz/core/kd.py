"""The mathematics of knowledge distillation: temperature softmax, entropy, KL and the distillation loss.

Everything but `distillation_loss` is numpy-only so that the soft-labels page never pays torch's import cost.
Reference: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015, §2 (eq. 1 and 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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


# ---- common mistakes (the soft-labels page shows their numbers, the engine trains a third student with one) -------

@dataclass(frozen=True)
class Mistake:
    """A common mistake in a KD loss: its name (CLI, config, URL), a short label, and one sentence for the pages."""

    name: str
    label: str
    sentence: str  # what goes wrong, and how to see it in the charts


MISTAKES = (
    Mistake("mean-reduction", "KL with reduction=\"mean\"",
            "kl_div's reduction=\"mean\" averages over the classes as well as the batch, so the soft term is C times "
            "smaller than with \"batchmean\" (C classes) and α no longer means what it says: the mistaken student's "
            "soft-term curve sits C times (log C) below the KD student's, and it learns as if α were much smaller."),
    Mistake("no-t-squared", "T² left out",
            "Without the factor T² the soft term's gradients shrink like 1/T², so the balance between soft and hard "
            "targets drifts with T: at a high T the mistaken student's soft-term curve sits T² times lower and it "
            "learns almost from the hard labels alone, like the hard-label student."),
    Mistake("naive-kl", "KL as p·(log p − log q) on probabilities",
            "Taking logs of probabilities instead of working in log space gives 0 · log 0 = NaN (or ∞) as soon as a "
            "probability underflows to 0 in float32, which a low T does (the lecture's logits at T = 0.1): the "
            "mistaken student's loss reads NaN and it stops, while the log-space form stays finite."),
    Mistake("reverse-kl", "KL(student ‖ teacher), the wrong way round",
            "KL(student ‖ teacher) weighs each class by the student's own probability, so it is mode-seeking: it "
            "barely pushes the student towards a class it already rules out and lets it ignore the teacher's small "
            "probabilities, the dark knowledge; at a high T the two directions nearly agree, at a low T compare the "
            "mistaken student's agreement with the teacher and its KL(teacher‖student) in the case study."),
    Mistake("teacher-train-mode", "teacher left in training mode",
            "A teacher left in training mode keeps its dropout (and batch statistics) on, so its soft labels change "
            "at every call: the mistaken student chases noisy targets, its soft-term curve stays higher and "
            "noisier than the KD student's, which learns from the teacher in eval mode."),
    Mistake("alpha-swapped", "α on the hard term (Keras's convention)",
            "Weighing the hard term by α, as Keras's KD example does, with kdviz's α swaps the two weights: at "
            "α = 0.9 the soft targets get 0.1, and the mistaken student's curves follow the hard-label student's."),
)
MISTAKE_NAMES = ("none", *(mistake.name for mistake in MISTAKES))
LOSS_MISTAKES = ("mean-reduction", "no-t-squared", "naive-kl", "reverse-kl", "alpha-swapped")  # in the loss itself


def check_mistake(name: str) -> str:
    """name if it is "none" or a mistake of MISTAKES; a ValueError listing the names otherwise."""
    if name not in MISTAKE_NAMES:
        raise ValueError(f"unknown mistake {name!r}: choose one of {', '.join(MISTAKE_NAMES)}")
    return name


def get_mistake(name: str) -> Mistake:
    """The Mistake called name (not "none")."""
    check_mistake(name)
    if name == "none":
        raise ValueError("\"none\" is the correct loss, not a mistake")
    return next(item for item in MISTAKES if item.name == name)


def distillation_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float,
                      mistake: str = "none") -> dict:
    """The one KD loss of kdviz (torch tensors in, dict of scalar tensors out).

    soft = T² · KL(teacher ‖ student) at temperature T, mean over the batch. Hinton et al. 2015 §2: the gradients of
    the soft term scale as 1/T², so multiplying by T² keeps its weight steady when T changes. Computed in log space
    (log_target=True) so that tiny teacher probabilities neither underflow nor produce 0 · log 0 = NaN.
    hard = cross-entropy with the true labels at T = 1.
    loss = alpha · soft + (1 - alpha) · hard: alpha weighs the *soft* term (Keras's KD example uses the opposite).
    mistake: one of LOSS_MISTAKES computes the loss the wrong way (MISTAKES says how); "none" and mistakes outside
    the loss (the teacher in training mode: the engine's) give the correct loss.
    """
    import torch.nn.functional as F  # lazy: this module must stay importable without torch

    temperature, alpha, mistake = check_temperature(temperature), check_alpha(alpha), check_mistake(mistake)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)  # (B, C) student, log space
    log_p = F.log_softmax(teacher_logits / temperature, dim=-1)  # (B, C) teacher, log space
    if mistake == "mean-reduction":  # what reduction="mean" computes, the mean over B·C elements: batchmean / C
        soft = F.kl_div(log_q, log_p, reduction="none", log_target=True).mean() * temperature**2  # (torch warns
        # that "mean" may one day mean "batchmean": spelled out, the mistake stays the mistake)
    elif mistake == "no-t-squared":
        soft = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
    elif mistake == "naive-kl":  # probabilities first, then their logs: log 0 = -inf once one underflows
        p, q = log_p.exp(), log_q.exp()
        soft = (p * (p.log() - q.log())).sum(-1).mean() * temperature**2
    elif mistake == "reverse-kl":  # KL(student ‖ teacher): the arguments swapped
        soft = F.kl_div(log_p, log_q, reduction="batchmean", log_target=True) * temperature**2
    else:
        soft = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * temperature**2
    hard = F.cross_entropy(student_logits, labels)
    soft_weight = 1 - alpha if mistake == "alpha-swapped" else alpha
    return {"loss": soft_weight * soft + (1 - soft_weight) * hard, "soft": soft, "hard": hard}


def mistake_terms(teacher_logits, student_logits, label: int, temperature: float, alpha: float,
                  mistake: str = "none") -> dict:
    """What distillation_loss computes for one example (vectors of logits), with or without a mistake, in numpy: the
    soft-labels page's numbers. soft, hard, total; update: -∂total/∂z_i, (C,) (> 0: the next step raises z_i);
    soft_share: the soft term's part of the push, |α ∇soft| / (|α ∇soft| + |(1 − α) ∇hard|) (L1 norms).

    naive-kl is evaluated in float32, as a network computes it (its exact value equals the correct one); its update
    is the correct one, as autograd's is while the student's probabilities do not underflow. The teacher in training
    mode is a mistake of the network, not of these fixed logits: its numbers are the correct ones.
    """
    temperature, alpha, mistake = check_temperature(temperature), check_alpha(alpha), check_mistake(mistake)
    log_p, log_q = log_softmax(teacher_logits, temperature), log_softmax(student_logits, temperature)
    _check_same_shape(log_p, log_q)
    p, q, classes = np.exp(log_p), np.exp(log_q), log_p.shape[-1]
    kl = float(np.maximum((p * (log_p - log_q)).sum(-1), 0.0))
    soft, soft_grad = temperature**2 * kl, temperature * (q - p)  # ∂(T²·KL)/∂z = T (q - p)
    if mistake == "mean-reduction":
        soft, soft_grad = soft / classes, soft_grad / classes
    elif mistake == "no-t-squared":
        soft, soft_grad = kl, (q - p) / temperature
    elif mistake == "naive-kl":
        p32, q32 = p.astype(np.float32), q.astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            soft = float(temperature**2 * (p32 * (np.log(p32) - np.log(q32))).sum(-1, dtype=np.float32))
    elif mistake == "reverse-kl":  # T² Σ q (log q − log p); ∂/∂z_k = T q_k ((log q_k − log p_k) − KL(q ‖ p))
        reverse = float((q * (log_q - log_p)).sum(-1))
        soft, soft_grad = temperature**2 * reverse, temperature * q * ((log_q - log_p) - reverse)
    hard = hard_cross_entropy(student_logits, label)
    hard_gradient = softmax(student_logits, 1.0)
    hard_gradient[..., int(label)] -= 1.0  # ∂CE/∂z = q - y at T = 1
    soft_weight = 1 - alpha if mistake == "alpha-swapped" else alpha
    soft_push, hard_push = (float(np.abs(w * g).sum()) for w, g in ((soft_weight, soft_grad),
                                                                   (1 - soft_weight, hard_gradient)))
    return {"soft": soft, "hard": hard, "total": soft_weight * soft + (1 - soft_weight) * hard,
            "update": -(soft_weight * soft_grad + (1 - soft_weight) * hard_gradient),
            "soft_share": soft_push / (soft_push + hard_push) if soft_push + hard_push else 0.0}


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
