"""Shared Hypothesis strategies for kdviz's numerical tests (one file, as in thinc/tests/strategies.py)."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

MAX_LOGIT = 1e6  # kd.softmax promises stability for logits up to ±1e6 ...
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 1000.0  # ... and temperatures from 0.01 to 1000


def logit_values(bound: float = MAX_LOGIT) -> st.SearchStrategy[float]:
    """Finite logits in [-bound, bound], with the extremes and zero drawn often."""
    return st.one_of(
        st.floats(-bound, bound, allow_nan=False, allow_infinity=False),
        st.sampled_from([-bound, bound, 0.0]),
    )


def logit_vectors(min_classes: int = 1, max_classes: int = 12, bound: float = MAX_LOGIT):
    """One example's logits: a float64 vector of 1..12 classes."""
    return hnp.arrays(np.float64, st.integers(min_classes, max_classes), elements=logit_values(bound))


def logit_batches(max_batch: int = 6, max_classes: int = 12, bound: float = MAX_LOGIT):
    """A batch of logits (B, C): the softmax is taken over the last axis."""
    shape = st.tuples(st.integers(1, max_batch), st.integers(1, max_classes))
    return hnp.arrays(np.float64, shape, elements=logit_values(bound))


@st.composite
def logit_pairs(draw, max_classes: int = 12, bound: float = MAX_LOGIT):
    """(teacher_logits, student_logits) of the same length."""
    n = draw(st.integers(1, max_classes))
    vector = hnp.arrays(np.float64, n, elements=logit_values(bound))
    return draw(vector), draw(vector)


def temperatures(low: float = MIN_TEMPERATURE, high: float = MAX_TEMPERATURE) -> st.SearchStrategy[float]:
    """Temperatures across the supported range, log-uniform-ish, with the extremes and 1 drawn often."""
    exponents = st.floats(np.log10(low), np.log10(high), allow_nan=False)
    return st.one_of(exponents.map(lambda e: float(min(max(10.0**e, low), high))), st.sampled_from([low, 1.0, high]))


def alphas() -> st.SearchStrategy[float]:
    return st.one_of(st.floats(0.0, 1.0, allow_nan=False), st.sampled_from([0.0, 1.0]))


# ---- presentations (kdviz.present) ---------------------------------------------------------------------------------

def room_codes() -> st.SearchStrategy[str]:
    """Well-formed room codes (canonical: upper case, no spaces)."""
    from kdviz.present import CODE_ALPHABET, CODE_LENGTH

    return st.text(alphabet=CODE_ALPHABET, min_size=CODE_LENGTH, max_size=CODE_LENGTH)


def malformed_codes() -> st.SearchStrategy:
    """Anything a follow link or a typing thumb might send that is not a room code (the hub answers "unknown")."""
    from kdviz.present import normalize_code

    return st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=8),
                     st.text(max_size=30).filter(lambda text: normalize_code(text) is None),
                     st.sampled_from(["", "abc", "../x", "A" * 100, "ABCD0", "ABCDI", "AAAAAA", "AAAA", "A A"]))


def identifiers() -> st.SearchStrategy[str]:
    """Question and run ids as the hub takes them: 1 to 40 characters of a-z, 0-9, '-' and '_'."""
    return st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=40)


def presentation_views() -> st.SearchStrategy:
    """Valid kdviz.present.View objects over the whole accepted range."""
    from kdviz.present import View

    return st.builds(View, step=st.integers(1, 999), temperature=temperatures(), alpha=alphas(),
                     question=st.none() | identifiers(), run_id=st.none() | identifiers())


def guess_values() -> st.SearchStrategy:
    """Guesses the hub accepts: finite numbers and short printable texts."""
    texts = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")), min_size=1, max_size=40)
    return st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**6),
                     texts.filter(lambda text: text.strip() and text.isprintable()))
