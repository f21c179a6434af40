"""The soft-labels page without Streamlit: its logits, its state, the URL that shares it, and what it draws.

Everything here is numpy-only (no torch): the page must open instantly. Every check raises or reports a message
that names the bad value, so the page can show it next to the input and keep the last valid state.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from kdviz.core import kd
from kdviz.core.roles import ROLE_NAMES, STUDENT_ROLES
from kdviz.views.query import (DEFAULT_TEMPERATURE, MAX_TEMPERATURE, MIN_TEMPERATURE,  # noqa: F401 (the page's)
                               TEMPERATURES, format_number, parse_image, parse_temperature, snap_temperature,
                               to_float)

MIN_CLASSES, MAX_CLASSES = 2, 20
MAX_ABS_LOGIT = 1e6  # kd.softmax is stable up to here; beyond it z / T can overflow to inf at T = 0.1
MAX_NAME_LENGTH = 24
CURVE_TEMPERATURES = np.logspace(-1, 2, 151)  # (151,) the x axis of the curves over T
SOURCES = {"lecture": "Lecture example", "custom": "Your own logits", "image": "An image from the dataset"}
# The image source's student, by role: the untrained student, or a student of the latest finished run of the default
# teacher (kdviz.runs.store.RunStore.latest_completed).
STUDENT_MODELS = {role: ROLE_NAMES[role] + ("" if role == "untrained" else " (latest run)") for role in STUDENT_ROLES}
DEFAULT_ALPHA = 0.9
# Every URL parameter this page writes (and so may remove); others in the link (e.g. the owner id) are left alone.
QUERY_KEYS = ("source", "temperature", "alpha", "log", "classes", "teacher", "student", "label", "image",
              "student_model")
TABLE_COLUMNS = ("class", "teacher logit", "student logit")  # the custom logits table


@dataclass(frozen=True)
class Logits:
    """One example: class names, the teacher's and the student's logits, and the index of the true class."""

    classes: tuple[str, ...]
    teacher: tuple[float, ...]
    student: tuple[float, ...]
    label: int


# The lecture's example: the teacher is sure it is a dog, and knows a cat is more dog-like than a ship.
LECTURE = Logits(("dog", "cat", "car", "ship"), (5.0, -3.0, -5.0, -7.0), (-1.0, 3.0, 2.0, -3.0), 0)


@dataclass(frozen=True)
class PageState:
    """Everything a shared link restores."""

    source: str = "lecture"
    custom: Logits = LECTURE
    temperature: float = DEFAULT_TEMPERATURE
    alpha: float = DEFAULT_ALPHA
    log_scale: bool = False
    image: int = 0
    student_model: str = "untrained"


# ---- validation ------------------------------------------------------------------------------------------------

def parse_number(value, what: str) -> float:
    """A finite logit within ±MAX_ABS_LOGIT from a number or text, or ValueError naming what and the value."""
    if value is None or str(value).strip() == "":
        raise ValueError(f"{what} is empty: enter a number")
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {text!r}")
    if abs(number) > MAX_ABS_LOGIT:
        raise ValueError(f"{what} must be between -1e6 and 1e6, got {text!r}")
    return number


def check_class_names(names) -> tuple[str, ...]:
    """Class names: 2 to 20, each non-empty, unique, without commas (the URL separates them with commas)."""
    names = tuple("" if name is None else str(name).strip() for name in names)
    if not (MIN_CLASSES <= len(names) <= MAX_CLASSES):
        raise ValueError(f"enter between {MIN_CLASSES} and {MAX_CLASSES} classes, got {len(names)}")
    for row, name in enumerate(names, start=1):
        if name == "":
            raise ValueError(f"row {row}: the class name is empty")
        if "," in name:
            raise ValueError(f"row {row}: class names cannot contain commas, got {name!r}")
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"row {row}: class names have at most {MAX_NAME_LENGTH} characters, got {name!r}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"class names must be unique, {duplicates[0]!r} appears more than once")
    return names


def make_logits(classes, teacher, student, label) -> Logits:
    """Validate one example; label is a class name or an index. Raises ValueError with one readable message."""
    classes = check_class_names(classes)
    if len(teacher) != len(classes) or len(student) != len(classes):
        raise ValueError(f"each class needs one teacher and one student logit: got {len(classes)} classes, "
                         f"{len(teacher)} teacher and {len(student)} student logits")
    teacher = tuple(parse_number(v, f"teacher logit of {name!r}") for name, v in zip(classes, teacher))
    student = tuple(parse_number(v, f"student logit of {name!r}") for name, v in zip(classes, student))
    if isinstance(label, str):
        if label not in classes:
            raise ValueError(f"the true class must be one of the classes, got {label!r}")
        label = classes.index(label)
    if not (isinstance(label, int) and 0 <= label < len(classes)):
        raise ValueError(f"the true class must be a class index in [0, {len(classes) - 1}], got {label!r}")
    return Logits(classes, teacher, student, label)


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def logits_from_rows(rows: list[dict], label: str | None) -> Logits:
    """The custom table's rows ({"class", "teacher logit", "student logit"}) → Logits; wholly blank rows are skipped.

    label: the chosen true class; when it is not among the (new) classes, the first class is taken.
    """
    rows = [row for row in rows if not all(_blank(row.get(k)) for k in TABLE_COLUMNS)]
    if not rows:
        raise ValueError(f"the table is empty: enter between {MIN_CLASSES} and {MAX_CLASSES} classes")
    for number, row in enumerate(rows, start=1):
        for column in TABLE_COLUMNS[1:]:
            if _blank(row.get(column)):
                raise ValueError(f"row {number}: the {column} is empty, enter a number")
    classes = check_class_names([row.get("class") for row in rows])
    return make_logits(classes, [row["teacher logit"] for row in rows], [row["student logit"] for row in rows],
                       label if label in classes else 0)


def table_rows(logits: Logits) -> list[dict]:
    """Logits → rows for the custom table (logits as text, so that any typed value reaches our validation)."""
    return [{"class": name, "teacher logit": format_number(t), "student logit": format_number(s)}
            for name, t, s in zip(logits.classes, logits.teacher, logits.student)]


# ---- the URL (temperatures and image numbers are read by kdviz.views.query, as on the image explorer) -----------

def _split(text: str) -> list[str]:
    return [] if text.strip() == "" else [part.strip() for part in text.split(",")]


def _parse_alpha(text: str, notices: list[str]) -> float:
    value = to_float(text)
    if not math.isfinite(value):
        notices.append(f"The alpha in the link ({text!r}) is not a number; showing alpha = {DEFAULT_ALPHA:g}.")
        return DEFAULT_ALPHA
    clamped = round(min(max(value, 0.0), 1.0), 2)
    if not (0.0 <= value <= 1.0):
        notices.append(f"The alpha in the link ({text}) is outside 0 to 1; showing alpha = {clamped:g}.")
    elif clamped != value:
        notices.append(f"The alpha in the link ({text}) is finer than the slider's steps; showing alpha = {clamped:g}.")
    return clamped


def _parse_custom(params: Mapping[str, str], notices: list[str]) -> Logits:
    classes, teacher, student = (_split(params.get(k, "")) for k in ("classes", "teacher", "student"))
    try:
        logits = make_logits(classes, teacher, student, 0)
    except ValueError as error:
        notices.append(f"The logits in the link were not used ({error}); showing the lecture example instead.")
        return LECTURE
    label = params.get("label")
    if label is not None and label not in logits.classes:
        notices.append(f"The true class in the link ({label!r}) is not one of the classes; "
                       f"using {logits.classes[0]!r}.")
    elif label is not None:
        logits = dataclasses.replace(logits, label=logits.classes.index(label))
    return logits


def parse_query(params: Mapping[str, str]) -> tuple[PageState, list[str]]:
    """URL query parameters → the page's state, and a notice for each value that was clamped or ignored."""
    notices: list[str] = []
    state = PageState()
    source = params.get("source", "custom" if "teacher" in params else "lecture")
    if source not in SOURCES:
        notices.append(f"Unknown source {source!r} in the link; showing the lecture example.")
        source = "lecture"
    state = dataclasses.replace(state, source=source)
    if source == "custom":
        state = dataclasses.replace(state, custom=_parse_custom(params, notices))
    if "temperature" in params:
        state = dataclasses.replace(state, temperature=parse_temperature(params["temperature"], notices))
    if "alpha" in params:
        state = dataclasses.replace(state, alpha=_parse_alpha(params["alpha"], notices))
    if "log" in params:
        if params["log"] in ("1", "true", "0", "false"):
            state = dataclasses.replace(state, log_scale=params["log"] in ("1", "true"))
        else:
            notices.append(f"The log-scale setting in the link ({params['log']!r}) should be 1 or 0; ignored.")
    if "image" in params:
        state = dataclasses.replace(state, image=parse_image(params["image"], notices))
    if "student_model" in params:
        if params["student_model"] in STUDENT_MODELS:
            state = dataclasses.replace(state, student_model=params["student_model"])
        else:
            notices.append(f"Unknown student {params['student_model']!r} in the link; showing the untrained one.")
    return state, notices


def to_query(state: PageState) -> dict[str, str]:
    """The page's state as URL query parameters (the inverse of parse_query for every valid state)."""
    query = {"source": state.source, "temperature": format_number(state.temperature),
             "alpha": format_number(state.alpha)}
    if state.log_scale:
        query["log"] = "1"
    if state.source == "custom":
        logits = state.custom
        query |= {"classes": ",".join(logits.classes), "teacher": ",".join(map(format_number, logits.teacher)),
                  "student": ",".join(map(format_number, logits.student)), "label": logits.classes[logits.label]}
    elif state.source == "image":
        query |= {"image": str(state.image), "student_model": state.student_model}
    return query


# ---- what the explorer draws -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class View:
    """Everything the explorer shows for one example at one temperature and alpha (vectors are (C,))."""

    hard_label: np.ndarray
    teacher_probs: np.ndarray
    student_probs: np.ndarray
    losses: dict[str, float]
    update: np.ndarray  # -∂(T²·KL)/∂z_i = T (p_i - q_i): > 0 means the next step pushes the student's logit up


def explore(logits: Logits, temperature: float, alpha: float) -> View:
    hard_label = np.zeros(len(logits.classes))
    hard_label[logits.label] = 1.0
    return View(hard_label, kd.softmax(logits.teacher, temperature), kd.softmax(logits.student, temperature),
                kd.loss_terms(logits.teacher, logits.student, logits.label, temperature, alpha),
                -kd.soft_gradient(logits.teacher, logits.student, temperature, scaled=True))


@dataclass(frozen=True)
class Curves:
    """How the softmaxes change with T, over CURVE_TEMPERATURES: (n_T, C) probabilities, (n_T,) entropies."""

    temperatures: np.ndarray
    teacher_probs: np.ndarray
    teacher_entropy: np.ndarray
    student_entropy: np.ndarray


@functools.lru_cache(maxsize=64)
def curves(teacher: tuple[float, ...], student: tuple[float, ...]) -> Curves:
    """Curves over T for one example; cached, since they do not depend on the slider."""
    # softmax(z / T) for every T at once: the (n_T, C) logits z / T go through kd at T = 1.
    scale = CURVE_TEMPERATURES[:, None]
    teacher_scaled, student_scaled = np.asarray(teacher)[None, :] / scale, np.asarray(student)[None, :] / scale
    return Curves(CURVE_TEMPERATURES, kd.softmax(teacher_scaled), kd.entropy(teacher_scaled),
                  kd.entropy(student_scaled))


def format_probability(p: float) -> str:
    """4 decimals (0.9996) down to 0.001; below that, scientific (3.35e-04) so dark knowledge stays visible."""
    if p == 0:
        return "0"
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.2e}"


def format_value(x: float) -> str:
    """Losses and gradients: 4 decimals in the usual range, scientific outside it."""
    if x == 0:
        return "0"
    return f"{x:.4f}" if 1e-3 <= abs(x) < 1e5 else f"{x:.3e}"


def format_metric(x: float) -> str:
    """A loss on a metric tile (about six characters fit): format_value in the usual range, else two significant
    digits with a short exponent (8.3e-4, 1.2e+05)."""
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return format_value(x)
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent):+d}" if int(exponent) > 0 else f"{mantissa}e{int(exponent)}"


def numbers_table(logits: Logits, view: View, temperature: float, student_name: str) -> str:
    """Every number of the bars and the gradient chart as a markdown table (cheaper to redraw than a dataframe)."""
    header = (f"| class | hard label | teacher p at T = {temperature:g} | {student_name} q at T = {temperature:g} "
              "| update T (p − q) |\n|:--|--:|--:|--:|--:|")
    rows = [f"| {escape_markdown(name)} | {label:g} | {format_probability(p)} | {format_probability(q)} "
            f"| {format_value(u)} |"
            for name, label, p, q, u in zip(logits.classes, view.hard_label, view.teacher_probs,
                                            view.student_probs, view.update)]
    return "\n".join([header, *rows])


def escape_markdown(text: str) -> str:
    """User text (class names, values from a link) shown literally by st.markdown: no formatting, LaTeX or tables."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$])", r"\\\1", str(text))
