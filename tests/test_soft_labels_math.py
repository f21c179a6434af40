"""kdviz.views.soft_labels and its charts: the lecture numbers, validation of every bad input, the URL round trip."""
from __future__ import annotations

import json
import math

import numpy as np
import plotly.io as pio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdviz.views import charts

from kdviz.core import kd
from kdviz.views import soft_labels as sl
from tests.strategies import logit_values

# ---- the lecture's numbers -------------------------------------------------------------------------------------


def test_lecture_example_is_the_lecture_s():
    assert sl.LECTURE.classes == ("dog", "cat", "car", "ship")
    assert sl.LECTURE.teacher == (5, -3, -5, -7) and sl.LECTURE.student == (-1, 3, 2, -3)
    assert sl.LECTURE.classes[sl.LECTURE.label] == "dog"


@pytest.mark.parametrize("temperature, expected", [(1.0, {"dog": "0.9996"}),
                                                   (10.0, {"dog": "0.4721", "cat": "0.2121"})])
def test_lecture_probabilities_as_displayed(temperature, expected):
    view = sl.explore(sl.LECTURE, temperature, 0.9)
    shown = dict(zip(sl.LECTURE.classes, map(sl.format_probability, view.teacher_probs)))
    assert {name: shown[name] for name in expected} == expected


def test_view_terms_agree_with_each_other():
    view = sl.explore(sl.LECTURE, 4.0, 0.7)
    losses = view.losses
    # soft cross-entropy and KL differ by exactly the teacher's entropy (it does not depend on the student)
    assert losses["soft_cross_entropy"] - losses["kl"] == pytest.approx(losses["teacher_entropy"], abs=1e-12)
    assert losses["t2_kl"] == pytest.approx(16 * losses["kl"])
    assert losses["total"] == pytest.approx(0.7 * losses["t2_kl"] + 0.3 * losses["hard_cross_entropy"])
    # the update on the student's logits is T (p - q): up where the teacher believes more than the student
    assert np.allclose(view.update, 4.0 * (view.teacher_probs - view.student_probs))
    assert view.update.sum() == pytest.approx(0, abs=1e-12)  # softmax gradients sum to zero
    assert view.update[0] > 0 and view.update[1] < 0  # dog is pushed up, cat down
    assert view.hard_label.tolist() == [1, 0, 0, 0]


def test_curves_match_softmax_at_each_temperature():
    curves = sl.curves(sl.LECTURE.teacher, sl.LECTURE.student)
    for i in (0, 50, 100, 150):
        temperature = curves.temperatures[i]
        assert np.allclose(curves.teacher_probs[i], kd.softmax(sl.LECTURE.teacher, temperature))
        assert curves.student_entropy[i] == pytest.approx(float(kd.entropy(sl.LECTURE.student, temperature)))
    assert np.allclose(curves.teacher_probs.sum(axis=1), 1)
    assert curves.temperatures[0] == pytest.approx(0.1) and curves.temperatures[-1] == pytest.approx(100)
    assert curves.teacher_entropy[-1] == pytest.approx(math.log(4), rel=0.01)  # large T: nearly uniform
    assert np.all(np.diff(curves.teacher_entropy) >= -1e-12)  # softening only ever adds entropy here


def test_extreme_logits_at_the_lowest_temperature_stay_finite():
    extreme = sl.make_logits(["a", "b", "c"], ["1e4", "-1e4", "1e6"], ["-1e4", "1e4", "-1e6"], 0)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is expected and harmless
        for temperature in (0.1, 1.0, 100.0):
            view = sl.explore(extreme, temperature, 0.5)
            curves = sl.curves(extreme.teacher, extreme.student)
            assert all(math.isfinite(v) for v in view.losses.values())
            assert np.all(np.isfinite(view.update)) and np.all(np.isfinite(curves.teacher_probs))
            assert np.all(np.isfinite(curves.teacher_entropy))
            figure = _bars(extreme, view, temperature, log_scale=True)
            assert "NaN" not in figure and "Infinity" not in figure


def _bars(logits, view, temperature, log_scale=False, lecture=False) -> str:
    texts = {"teacher": [sl.format_probability(p) for p in view.teacher_probs],
             "student": [sl.format_probability(q) for q in view.student_probs]}
    figure = charts.soft_label_bars(logits.classes, view.hard_label, view.teacher_probs, view.student_probs,
                                    temperature, texts, log_scale, lecture=lecture)
    return pio.to_json(figure, validate=False)


def test_log_scale_bars_hide_only_what_the_axis_cannot_show():
    view = sl.explore(sl.LECTURE, 1.0, 0.9)
    spec = json.loads(_bars(sl.LECTURE, view, 1.0, log_scale=True))
    teacher = spec["data"][1]
    assert teacher["y"][3] == pytest.approx(6.1e-6, rel=0.01)  # ship's 6e-6 is drawn on the log axis
    assert spec["layout"]["yaxis"]["type"] == "log" and spec["layout"]["yaxis"]["range"][0] <= math.log10(6e-6)
    assert spec["data"][0]["y"][1] is None  # the hard label's zeros cannot be drawn on a log axis


def test_lecture_mode_makes_fonts_bigger():
    view = sl.explore(sl.LECTURE, 1.0, 0.9)
    normal, lecture = (json.loads(_bars(sl.LECTURE, view, 1.0, lecture=mode))["layout"] for mode in (False, True))
    assert lecture["font"]["size"] > normal["font"]["size"] and lecture["height"] > normal["height"]


# ---- the temperature grid --------------------------------------------------------------------------------------

def test_temperature_grid_is_log_spaced_and_has_the_landmarks():
    grid = sl.TEMPERATURES
    assert grid[0] == 0.1 and grid[-1] == 100
    assert {1, 2, 4, 10, 20, 100} <= set(grid)
    ratios = np.array(grid[1:]) / np.array(grid[:-1])
    assert np.all(ratios > 1) and np.all(ratios < 1.35)


@pytest.mark.parametrize("value, snapped", [(1, 1), (10, 10), (7, 8), (0.11, 0.12), (1000, 100), (0.01, 0.1),
                                            (99, 100)])
def test_snap_temperature(value, snapped):
    assert sl.snap_temperature(value) == snapped


# ---- validation ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [("", "empty"), ("   ", "empty"), (None, "empty"), ("abc", "number"),
                                           ("nan", "finite"), ("inf", "finite"), ("-inf", "finite"),
                                           ("1e309", "finite"), ("2e6", "between"), ("-1e7", "between")])
def test_bad_logits_are_rejected_with_a_message_naming_them(text, message):
    with pytest.raises(ValueError, match=message) as error:
        sl.parse_number(text, "teacher logit of 'cat'")
    assert "teacher logit of 'cat'" in str(error.value)


@pytest.mark.parametrize("text, value", [("-3.5", -3.5), (" 5 ", 5.0), ("1e4", 1e4), ("-1e6", -1e6), (2, 2.0)])
def test_good_logits_are_read(text, value):
    assert sl.parse_number(text, "x") == value


@pytest.mark.parametrize("names, message", [(["dog"], "between 2 and 20"), ([str(i) for i in range(21)], "between"),
                                            (["dog", "dog"], "unique"), (["dog", " "], "empty"),
                                            (["dog", "cat,ship"], "commas"), (["dog", "x" * 25], "at most")])
def test_bad_class_names(names, message):
    with pytest.raises(ValueError, match=message):
        sl.check_class_names(names)


def test_mismatched_lengths_and_labels():
    with pytest.raises(ValueError, match="2 classes, 3 teacher"):
        sl.make_logits(["a", "b"], [1, 2, 3], [1, 2], 0)
    with pytest.raises(ValueError, match="true class"):
        sl.make_logits(["a", "b"], [1, 2], [1, 2], "c")
    assert sl.make_logits(["a", "b"], ["1", "2"], [3, 4], "b") == sl.Logits(("a", "b"), (1, 2), (3, 4), 1)


def test_table_rows_round_trip_and_blank_rows():
    rows = sl.table_rows(sl.LECTURE)
    assert rows[0] == {"class": "dog", "teacher logit": "5", "student logit": "-1"}
    added = rows + [{"class": None, "teacher logit": None, "student logit": None}]  # a freshly added row
    assert sl.logits_from_rows(added, "dog") == sl.LECTURE
    assert sl.logits_from_rows(rows, "gone").label == 0  # a removed true class falls back to the first
    with pytest.raises(ValueError, match="row 5: the teacher logit is empty"):
        sl.logits_from_rows(rows + [{"class": "cow", "teacher logit": "", "student logit": "1"}], "dog")
    with pytest.raises(ValueError, match="table is empty"):
        sl.logits_from_rows([], "dog")


# ---- the URL ---------------------------------------------------------------------------------------------------

def test_no_query_is_the_lecture_example_at_temperature_1():
    assert sl.parse_query({}) == (sl.PageState(), [])
    assert sl.to_query(sl.PageState()) == {"source": "lecture", "temperature": "1", "alpha": "0.9"}


def test_custom_logits_in_the_url():
    query = {"source": "custom", "classes": "a,b,c", "teacher": "1,2.5,-3", "student": "0,0,1e3", "label": "b",
             "temperature": "20", "alpha": "0.5", "log": "1"}
    state, notices = sl.parse_query(query)
    assert notices == []
    assert state.custom == sl.Logits(("a", "b", "c"), (1, 2.5, -3), (0, 0, 1000), 1)
    assert (state.temperature, state.alpha, state.log_scale) == (20, 0.5, True)
    assert sl.to_query(state) == query | {"student": "0,0,1000"}  # numbers come back in their shortest form


names = st.text("abcdefghij xyz_-", min_size=1, max_size=8).map(str.strip).filter(bool)


@settings(max_examples=60, deadline=None)
@given(st.lists(names, min_size=2, max_size=20, unique=True), st.data(), st.sampled_from(sl.TEMPERATURES),
       st.integers(0, 100), st.booleans())
def test_every_valid_state_survives_the_url(classes, data, temperature, alpha_percent, log_scale):
    n = len(classes)
    teacher = data.draw(st.lists(logit_values(sl.MAX_ABS_LOGIT), min_size=n, max_size=n))
    student = data.draw(st.lists(logit_values(sl.MAX_ABS_LOGIT), min_size=n, max_size=n))
    logits = sl.make_logits(classes, teacher, student, data.draw(st.integers(0, n - 1)))
    state = sl.PageState("custom", logits, temperature, alpha_percent / 100, log_scale)
    assert sl.parse_query(sl.to_query(state)) == (state, [])


@pytest.mark.parametrize("query, field, value", [
    ({"temperature": "abc"}, "temperature", 1.0), ({"temperature": "nan"}, "temperature", 1.0),
    ({"temperature": "0"}, "temperature", 0.1), ({"temperature": "-5"}, "temperature", 0.1),
    ({"temperature": "1e309"}, "temperature", 1.0), ({"temperature": "1000"}, "temperature", 100),
    ({"temperature": "7"}, "temperature", 8), ({"alpha": "2"}, "alpha", 1.0), ({"alpha": "-1"}, "alpha", 0.0),
    ({"alpha": "x"}, "alpha", 0.9), ({"alpha": "0.333"}, "alpha", 0.33), ({"source": "moon"}, "source", "lecture"),
    ({"log": "maybe"}, "log_scale", False), ({"image": "-3"}, "image", 0), ({"image": "²"}, "image", 0),
    ({"student_model": "oracle"}, "student_model", "untrained"),
])
def test_bad_values_in_the_url_are_clamped_or_ignored_with_a_notice(query, field, value):
    state, notices = sl.parse_query(query)
    assert getattr(state, field) == value
    assert len(notices) == 1 and "link" in notices[0]


@pytest.mark.parametrize("teacher", ["", "1,abc", "1,nan", "1,inf", "1,-inf", "1,1e309", "1,2,3"])
def test_bad_logits_in_the_url_fall_back_to_the_lecture_example(teacher):
    state, notices = sl.parse_query({"source": "custom", "classes": "a,b", "teacher": teacher, "student": "1,2"})
    assert state.source == "custom" and state.custom == sl.LECTURE
    assert len(notices) == 1 and "not used" in notices[0]


def test_too_many_duplicate_or_empty_classes_in_the_url():
    many = ",".join(f"c{i}" for i in range(21))
    for classes in (many, "a,a", "a,"):
        n = len(classes.split(","))
        state, notices = sl.parse_query({"source": "custom", "classes": classes, "teacher": ",".join(["1"] * n),
                                         "student": ",".join(["1"] * n)})
        assert state.custom == sl.LECTURE and len(notices) == 1


@pytest.mark.parametrize("value, text", [(0.99961, "0.9996"), (3.35e-4, "3.35e-04"), (0.0, "0"), (1e-300, "1.00e-300")])
def test_format_probability(value, text):
    assert sl.format_probability(value) == text


def test_the_students_offered_are_kdvizs_roles_in_their_order():
    from kdviz.core.roles import ROLE_NAMES, STUDENT_ROLES

    assert tuple(sl.STUDENT_MODELS) == STUDENT_ROLES
    assert all(sl.STUDENT_MODELS[role].startswith(ROLE_NAMES[role]) for role in STUDENT_ROLES)
    written = {key for state in (sl.PageState("image"), sl.PageState("custom", log_scale=True))
               for key in sl.to_query(state)}
    assert written <= set(sl.QUERY_KEYS)


@pytest.mark.parametrize("value, text", [(0.1660, "0.1660"), (8.337e-4, "8.3e-4"), (0.0, "0"), (-2.5e-7, "-2.5e-7"),
                                         (123456.0, "1.2e+5"), (3.2, "3.2000")])
def test_metric_tiles_get_short_numbers(value, text):
    assert sl.format_metric(value) == text and len(text) <= 7
    assert float(text) == pytest.approx(value, rel=0.05)


# ---- the browser-side widget's payload ---------------------------------------------------------------------------

def test_widget_payload_is_json_with_kdvizs_palettes_and_the_slider():
    payload = sl.widget_payload(sl.LECTURE, 4.0, 0.9, student_role="kd", student_name="KD student")
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload
    assert payload["colors"] == charts.COLORS and payload["class_colors"] == list(charts.CLASS_COLORS)
    assert payload["direction_colors"] == charts.DIRECTION_COLORS and payload["mark_colors"] == charts.MARK_COLORS
    assert payload["temperatures"] == list(sl.TEMPERATURES) and payload["formats"] == sl.FORMATS
    assert payload["curve_temperatures"] == sl.CURVE_TEMPERATURES.tolist()
    assert payload["names"] == {"label": "hard label", "teacher": "teacher", "student": "KD student"}
    assert (payload["temperature"], payload["alpha"], payload["label"]) == (4.0, 0.9, 0)


def test_widget_payload_for_a_lecture_hall():
    normal, lecture = (sl.widget_payload(sl.LECTURE, 1.0, 0.9, lecture=mode)["fonts"] for mode in (False, True))
    assert lecture["tick"] >= 20 and lecture["title"] >= 24 and all(lecture[k] > normal[k] for k in normal)


@pytest.mark.parametrize("controls, drawn", [(True, ["temperature", "alpha"]), (False, []), ((), []),
                                             (["temperature"], ["temperature"])])
def test_widget_payload_parts(controls, drawn):
    payload = sl.widget_payload(sl.LECTURE, 1.0, 0.9, panels=["logits", "bars"], series=["teacher"],
                                controls=controls, readonly=True, caption="step 3")
    assert payload["controls"] == drawn and payload["panels"] == ["logits", "bars"]
    assert payload["series"] == ["teacher"] and payload["readonly"] and payload["caption"] == "step 3"


@pytest.mark.parametrize("arguments, message", [({"panels": ["bars", "pie"]}, "panels"), ({"series": ["kd"]}, "series"),
                                                ({"controls": ["beta"]}, "controls"), ({"panels": ["bars"] * 2}, "panels"),
                                                ({"temperature": 0}, "temperature"), ({"alpha": 2}, "alpha"),
                                                ({"student_role": "oracle"}, "student_role")])
def test_widget_payload_rejects_what_it_cannot_draw(arguments, message):
    arguments = {"temperature": 1.0, "alpha": 0.9} | arguments
    with pytest.raises(ValueError, match=message):
        sl.widget_payload(sl.LECTURE, **arguments)


@pytest.mark.parametrize("released, expected", [({"temperature": 10.0, "alpha": 0.5}, (10.0, 0.5)),
                                                ({"temperature": 7, "alpha": 0.29000000000000004}, (8.0, 0.29)),
                                                ({"temperature": 0}, (0.1, 0.9)), ({"alpha": 3}, (4.0, 1.0)),
                                                ({"temperature": "x", "alpha": None}, (4.0, 0.9)), (None, (4.0, 0.9)),
                                                ({"temperature": float("nan")}, (4.0, 0.9))])
def test_a_released_value_is_snapped_clamped_or_ignored(released, expected):
    assert sl.read_released(released, 4.0, 0.9) == expected
