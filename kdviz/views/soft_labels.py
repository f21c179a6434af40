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
from kdviz.views.query import (DEFAULT_ALPHA, DEFAULT_TEMPERATURE, MAX_TEMPERATURE,  # noqa: F401 (the page's)
                               MIN_TEMPERATURE, TEMPERATURES, format_number, parse_alpha, parse_image,
                               parse_temperature, snap_temperature, to_float)

MIN_CLASSES, MAX_CLASSES = 2, 20
MAX_ABS_LOGIT = 1e6  # kd.softmax is stable up to here; beyond it z / T can overflow to inf at T = 0.1
MAX_NAME_LENGTH = 24
CURVE_TEMPERATURES = np.logspace(-1, 2, 151)  # (151,) the x axis of the curves over T
SOURCES = {"lecture": "Lecture example", "custom": "Your own logits", "image": "An image from the dataset"}
# The image source's student, by role: the untrained student, or a student of the latest finished run of the default
# teacher (kdviz.runs.store.RunStore.latest_completed).
STUDENT_MODELS = {role: ROLE_NAMES[role] + ("" if role == "untrained" else " (latest run)") for role in STUDENT_ROLES}
# Every URL parameter this page writes (and so may remove); others in the link (e.g. the owner id) are left alone.
QUERY_KEYS = ("source", "temperature", "alpha", "log", "classes", "teacher", "student", "label", "image",
              "student_model", "mistake")
# The common-mistakes switch: the correct loss, or one of kdviz.core.kd.MISTAKES beside it.
MISTAKE_CHOICES = {"none": "none: the correct loss"} | {item.name: item.label for item in kd.MISTAKES}
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
    mistake: str = "none"  # MISTAKE_CHOICES


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
        state = dataclasses.replace(state, alpha=parse_alpha(params["alpha"], notices))
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
    if "mistake" in params:
        if params["mistake"] in MISTAKE_CHOICES:
            state = dataclasses.replace(state, mistake=params["mistake"])
        else:
            notices.append(f"Unknown mistake {params['mistake']!r} in the link; showing the correct loss.")
    return state, notices


def to_query(state: PageState) -> dict[str, str]:
    """The page's state as URL query parameters (the inverse of parse_query for every valid state)."""
    query = {"source": state.source, "temperature": format_number(state.temperature),
             "alpha": format_number(state.alpha)}
    if state.log_scale:
        query["log"] = "1"
    if state.mistake != "none":
        query["mistake"] = state.mistake
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


@dataclass(frozen=True)
class MistakeView:
    """A common mistake beside the correct loss for one example at T and α (kd.mistake_terms, each), and one sentence
    with this example's numbers."""

    correct: dict
    mistaken: dict
    headline: str


def naive_breaks_below(logits: Logits) -> float | None:
    """The highest temperature of the slider at which the naive p·(log p − log q) is not finite (float32), or None."""
    broken = [t for t in TEMPERATURES if not math.isfinite(
        kd.mistake_terms(logits.teacher, logits.student, logits.label, t, 0.5, "naive-kl")["soft"])]
    return max(broken) if broken else None


def mistake_view(logits: Logits, temperature: float, alpha: float, mistake: str) -> MistakeView:
    terms = lambda name: kd.mistake_terms(logits.teacher, logits.student, logits.label,  # noqa: E731
                                          temperature, alpha, name)
    correct, mistaken = terms("none"), terms(mistake)
    share = (f"the soft targets' share of the push on the student's logits goes from {correct['soft_share']:.0%} "
             f"to {mistaken['soft_share']:.0%}")
    soft = f"the soft term is {format_value(mistaken['soft'])} instead of {format_value(correct['soft'])}"
    if mistake == "mean-reduction":
        headline = f"With {len(logits.classes)} classes {soft}, {len(logits.classes)} times smaller, and {share}."
    elif mistake == "no-t-squared":
        headline = ("At T = 1, T² = 1 and nothing changes: move T. " if temperature == 1 else
                    f"At T = {temperature:g} {soft}, and {share}. ") + \
            "Without T² the share drifts with T; with T² it hardly moves."
    elif mistake == "naive-kl":
        below = naive_breaks_below(logits)
        where = f"at T = {below:g} and below" if below is not None else "at no temperature of the slider"
        if math.isfinite(mistaken["soft"]):
            headline = (f"At T = {temperature:g} both forms give {format_value(correct['soft'])}; in float32 the "
                        f"naive form breaks {where} for these logits, once a probability underflows to 0.")
        else:
            headline = (f"At T = {temperature:g}, in float32, the naive form gives {mistaken['soft']} where the "
                        f"log-space form gives {format_value(correct['soft'])}: a probability underflowed to 0, and "
                        f"0 · log 0 is NaN (it breaks {where} for these logits).")
    elif mistake == "reverse-kl":
        top = int(np.argmax(logits.teacher))
        name = escape_markdown(logits.classes[top])
        student_p = kd.softmax(logits.student, temperature)[top]
        headline = (f"The reversed KL weighs each class by the student's own probability: the student gives "
                    f"**{name}**, the teacher's choice, {format_probability(student_p)} at T = {temperature:g}, so "
                    f"the push up on its logit is {format_value(mistaken['update'][top])} instead of "
                    f"{format_value(correct['update'][top])}.")
    elif mistake == "teacher-train-mode":
        headline = ("These logits are fixed numbers, so nothing changes here: the mistake is in the teacher network "
                    "(its dropout left on while it labels). See it on the Live distillation page, with a teacher "
                    "that has dropout.")
    else:  # alpha-swapped
        headline = (f"With α = {alpha:g} on the hard term the soft targets weigh {1 - alpha:g} instead of "
                    f"{alpha:g}: {share}.")
    return MistakeView(correct, mistaken, headline)


def mistake_table(logits: Logits, view: MistakeView) -> str:
    """The correct loss and the mistaken one side by side, as a markdown table: the terms, the soft targets' share
    of the push, and the update on each class's logit."""
    rows = [("soft term", format_value(view.correct["soft"]), format_value(view.mistaken["soft"])),
            ("total loss", format_value(view.correct["total"]), format_value(view.mistaken["total"])),
            ("soft targets' share of the push", f"{view.correct['soft_share']:.0%}",
             f"{view.mistaken['soft_share']:.0%}")]
    rows += [(f"update on {escape_markdown(name)}'s logit", format_value(a), format_value(b))
             for name, a, b in zip(logits.classes, view.correct["update"], view.mistaken["update"])]
    return "\n".join(["| | correct loss | with the mistake |", "|:--|--:|--:|",
                      *(f"| {name} | {a} | {b} |" for name, a, b in rows)])


# The number formats' rules: the three functions below and the browser widget (kdviz/ui/assets/formats.js, which gets
# them in its payload) read them, so that the server's table and the widget print the same digits.
FORMATS = {"decimals": 4, "fixed_from": 1e-3, "fixed_below": 1e5, "probability_digits": 2, "value_digits": 3,
           "metric_digits": 1}


def format_probability(p: float) -> str:
    """4 decimals (0.9996) down to 0.001; below that, scientific (3.35e-04) so dark knowledge stays visible."""
    if p == 0:
        return "0"
    return f"{p:.{FORMATS['decimals']}f}" if p >= FORMATS["fixed_from"] else f"{p:.{FORMATS['probability_digits']}e}"


def _fixed_range(x: float) -> bool:
    return FORMATS["fixed_from"] <= abs(x) < FORMATS["fixed_below"]


def format_value(x: float) -> str:
    """Losses and gradients: 4 decimals in the usual range, scientific outside it."""
    if x == 0:
        return "0"
    return f"{x:.{FORMATS['decimals']}f}" if _fixed_range(x) else f"{x:.{FORMATS['value_digits']}e}"


def format_metric(x: float) -> str:
    """A loss on a metric tile (about six characters fit): format_value in the usual range, else two significant
    digits with a short exponent (8.3e-4, 1.2e+05)."""
    if x == 0 or _fixed_range(x):
        return format_value(x)
    mantissa, exponent = f"{x:.{FORMATS['metric_digits']}e}".split("e")
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


# ---- the browser-side widget (kdviz/ui/assets/soft_labels.js draws this payload and recomputes it as T and α move) ---

PANELS = ("logits", "bars", "curves", "entropy", "losses", "gradient")  # what the widget can draw
PAGE_PANELS = ("bars", "gradient", "losses", "curves", "entropy")  # the soft-labels page's, in its order
SERIES = ("label", "teacher", "student")
CONTROLS = ("temperature", "alpha")
# Font sizes in px; lecture mode is read from the back of a hall on a 1920×1080 projector.
WIDGET_FONTS = {False: {"tick": 13, "axis": 14, "title": 18, "label": 12, "class": 15, "legend": 13, "tile": 28,
                        "tile_label": 14, "text": 15, "control": 15, "button": 12},
                True: {"tick": 21, "axis": 22, "title": 26, "label": 18, "class": 24, "legend": 20, "tile": 42,
                       "tile_label": 20, "text": 22, "control": 22, "button": 16}}
WIDGET_SIZES = {False: {"chart_height": 380, "line_width": 2.5, "marker_radius": 5},
                True: {"chart_height": 520, "line_width": 4, "marker_radius": 8}}


def _subset(values, allowed: tuple[str, ...], what: str) -> list[str]:
    values = list(values)
    unknown = [value for value in values if value not in allowed]
    if unknown or len(set(values)) != len(values):
        raise ValueError(f"{what} must be distinct values from {allowed}, got {values!r}")
    return values


def widget_payload(logits: Logits, temperature: float, alpha: float, log_scale: bool = False,
                   student_role: str = "untrained", student_name: str | None = None, lecture: bool = False,
                   panels=PAGE_PANELS, series=SERIES, controls=True, readonly: bool = False,
                   caption: str = "") -> dict:
    """The JSON the soft-labels widget draws: the example, T and α, and everything it needs to look like kdviz.

    panels: which parts, in order (PANELS); series: which distributions the bars show (SERIES); controls: True, False
    or a list of CONTROLS (the sliders drawn); readonly: sliders drawn but disabled (a follower); caption: the line
    under an exported slide (the widget appends the T and α it shows).
    """
    # the palettes live with the Plotly figures (one colour per role everywhere); plotly is not needed before this
    from kdviz.views import charts

    temperature, alpha = kd.check_temperature(temperature), kd.check_alpha(alpha)
    if student_role not in STUDENT_ROLES:
        raise ValueError(f"student_role must be one of {STUDENT_ROLES}, got {student_role!r}")
    controls = list(CONTROLS) if controls is True else [] if controls is False else _subset(controls, CONTROLS,
                                                                                             "controls")
    lecture = bool(lecture)
    return {
        "classes": list(logits.classes), "teacher": [float(z) for z in logits.teacher],
        "student": [float(z) for z in logits.student], "label": int(logits.label),
        "temperature": temperature, "alpha": alpha, "temperatures": list(TEMPERATURES),
        "curve_temperatures": CURVE_TEMPERATURES.tolist(), "temperature_ticks": list(charts.TEMPERATURE_TICKS),
        "log_scale": bool(log_scale), "log_floor": charts.LOG_FLOOR,
        "panels": _subset(panels, PANELS, "panels"), "series": _subset(series, SERIES, "series"),
        "controls": controls, "readonly": bool(readonly),
        "student_role": student_role,
        "names": {"label": ROLE_NAMES["label"], "teacher": ROLE_NAMES["teacher"],
                  "student": student_name or ROLE_NAMES[student_role]},
        "colors": dict(charts.COLORS), "class_colors": list(charts.CLASS_COLORS),
        "direction_colors": dict(charts.DIRECTION_COLORS), "mark_colors": dict(charts.MARK_COLORS),
        "lecture": lecture, "fonts": dict(WIDGET_FONTS[lecture]), **WIDGET_SIZES[lecture],
        "formats": dict(FORMATS), "caption": str(caption),
    }


def read_released(value, temperature: float, alpha: float) -> tuple[float, float]:
    """The widget's released state ({"temperature", "alpha"} from the browser) → (T on the slider, α in steps of
    0.01); a missing or malformed value keeps the current one."""
    value = value if isinstance(value, Mapping) else {}
    released_t, released_alpha = to_float(value.get("temperature")), to_float(value.get("alpha"))
    if math.isfinite(released_t):
        temperature = snap_temperature(released_t)
    if math.isfinite(released_alpha):
        alpha = round(min(max(released_alpha, 0.0), 1.0), 2)  # a browser can send 0.29000000000000004
    return temperature, alpha
