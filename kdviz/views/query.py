"""The kinds of value that several pages' links carry (a temperature on the slider, a test-image number), read once.

Plain Python (no numpy, no torch): the soft-labels page imports it on its default source. Each parser returns the
value to show and appends one notice per value it changed or ignored, naming the value from the link.
"""
from __future__ import annotations

import math

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.1, 100.0
# The temperature sliders' values: log-spaced "nice" values, 10 per decade, including 1, 2, 4, 10, 20 and 100.
TEMPERATURES = tuple(round(m * 10.0**e, 3) for e in (-1, 0, 1) for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)) + (100.0,)
DEFAULT_TEMPERATURE = 1.0
DEFAULT_ALPHA = 0.9  # the weight of the soft term the soft-labels page and the tour open with
MAX_IMAGE_DIGITS = 8  # no test set has 10⁸ images; longer "numbers" are not worth converting


def snap_temperature(value: float) -> float:
    """The slider's temperature nearest to value on a log scale (value is clamped to [0.1, 100] first)."""
    value = min(max(float(value), MIN_TEMPERATURE), MAX_TEMPERATURE)
    return min(TEMPERATURES, key=lambda t: abs(math.log(t / value)))


def format_number(x: float) -> str:
    """Shortest text that reads back as the same float: 5.0 → "5", -3.25 → "-3.25"."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def to_float(text: str) -> float:
    """A number from a link; NaN for anything that is not one (the caller says so and uses its default)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def parse_temperature(text: str, notices: list[str]) -> float:
    """A temperature from a link, snapped to the slider (a notice when it was not a number, out of range or between
    two of the slider's values)."""
    value = to_float(text)
    if not math.isfinite(value):
        notices.append(f"The temperature in the link ({text!r}) is not a number; showing T = "
                       f"{DEFAULT_TEMPERATURE:g}.")
        return DEFAULT_TEMPERATURE
    snapped = snap_temperature(value)
    if not (MIN_TEMPERATURE <= value <= MAX_TEMPERATURE):
        notices.append(f"The temperature in the link ({text}) is outside 0.1 to 100; showing T = {snapped:g}.")
    elif snapped != value:
        notices.append(f"The temperature in the link ({text}) is not on the slider; showing the nearest, "
                       f"T = {snapped:g}.")
    return snapped


def parse_alpha(text: str, notices: list[str]) -> float:
    """α from a link: clamped to [0, 1] and rounded to the sliders' 0.01 steps (a notice when changed or unreadable)."""
    value = to_float(text)
    if not math.isfinite(value):
        notices.append(f"The alpha in the link ({str(text)[:20]!r}) is not a number; showing alpha = "
                       f"{DEFAULT_ALPHA:g}.")
        return DEFAULT_ALPHA
    clamped = round(min(max(value, 0.0), 1.0), 2)
    if not (0.0 <= value <= 1.0):
        notices.append(f"The alpha in the link ({str(text)[:20]}) is outside 0 to 1; showing alpha = {clamped:g}.")
    elif clamped != value:
        notices.append(f"The alpha in the link ({str(text)[:20]}) is finer than the slider's steps; showing alpha = "
                       f"{clamped:g}.")
    return clamped


def parse_image(text: str, notices: list[str]) -> int:
    """A test-image number from a link: a whole number ≥ 0 (whether the test set has it is the page's check)."""
    text = str(text)
    if text.isascii() and text.isdigit() and len(text) <= MAX_IMAGE_DIGITS:
        return int(text)
    notices.append(f"The image number in the link ({text!r}) is not a whole number ≥ 0; showing image 0.")
    return 0
