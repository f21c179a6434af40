"""The soft-labels page through streamlit.testing.v1.AppTest: lecture numbers, slider, URL round trip, bad input."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import wait_for_run
from kdviz import ui
from kdviz.core import kd
from kdviz.views import soft_labels as sl
from kdviz.views.charts import COLORS

ROOT = Path(__file__).resolve().parents[1]
PAGE = next(plan.path for plan in ui.PAGES if plan.path.endswith("soft_labels.py"))
WIDGET = ui.SOFT_LABELS_WIDGET


def open_page(query: dict | None = None) -> AppTest:
    """The page through the router (switching before the first run, so the home page's torch work never starts)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.query_params.update(query or {})
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def widgets(at: AppTest) -> list:
    return [element for element in at.get("bidi_component") if element.proto.component_name == "kdviz.soft_labels"]


def payload(at: AppTest) -> dict:
    """The JSON the page sent to the browser-side widget (the element's proto carries it)."""
    (widget,) = widgets(at)
    return json.loads(widget.proto.json)


def numbers_table(at: AppTest) -> str:
    """The markdown table in "The numbers" expander."""
    return next(m.value for m in at.markdown if m.value.startswith("| class |"))


def release(at: AppTest, **values) -> AppTest:
    """Let go of the widget's sliders at these values, as the browser does (its state: {"temperature", "alpha"})."""
    at.session_state[WIDGET] = {"temperature": payload(at)["temperature"], "alpha": payload(at)["alpha"]} | values
    at.run()
    assert not at.exception, at.exception
    return at


def set_temperature(at: AppTest, value: float) -> AppTest:
    return release(at, temperature=value)


def test_default_view_shows_the_lecture_numbers():
    at = open_page()
    data = payload(at)
    assert data["classes"] == ["dog", "cat", "car", "ship"] and data["label"] == 0
    assert data["teacher"] == [5, -3, -5, -7] and data["student"] == [-1, 3, 2, -3]
    assert (data["temperature"], data["alpha"]) == (1.0, 0.9) and data["temperatures"] == list(sl.TEMPERATURES)
    assert data["panels"] == list(sl.PAGE_PANELS) and data["controls"] == ["temperature", "alpha"]
    assert not data["readonly"] and data["names"]["student"] == "untrained student"
    assert data["colors"]["teacher"] == COLORS["teacher"] and data["student_role"] == "untrained"
    assert "| dog | 1 | 0.9996 |" in numbers_table(at)
    assert not at.get("plotly_chart") and not at.metric  # the widget draws the charts and the loss tiles
    assert not at.error and not at.warning


def test_releasing_the_slider_updates_the_widget_the_numbers_and_the_url():
    at = open_page()
    set_temperature(at, 10.0)
    assert payload(at)["temperature"] == 10.0 and at.query_params["temperature"] == "10"
    assert "| dog | 1 | 0.4721 |" in numbers_table(at) and "| cat | 0 | 0.2121 |" in numbers_table(at)
    assert any("$T = 10$" in m.value for m in at.markdown)  # the explanations speak of the released T
    release(at, alpha=0.29000000000000004)  # a browser's slider can send this
    assert payload(at)["alpha"] == 0.29 and at.query_params["alpha"] == "0.29"


@pytest.mark.parametrize("released, shown", [({"temperature": 7}, (8.0, 0.9)), ({"temperature": 1e9}, (100.0, 0.9)),
                                             ({"temperature": "abc", "alpha": 7}, (1.0, 1.0)),
                                             ({"temperature": None, "alpha": -1}, (1.0, 0.0))])
def test_a_released_value_is_checked_like_a_link(released, shown):
    """What the browser sends is snapped to the slider and clamped; what is not a number is ignored."""
    at = release(open_page(), **released)
    assert (payload(at)["temperature"], payload(at)["alpha"]) == shown and not at.error


def test_the_state_round_trips_through_the_url():
    at = release(open_page(), temperature=20.0, alpha=0.5)
    at.toggle(key="sl.log").set_value(True).run()
    assert at.query_params == {"source": "lecture", "temperature": "20", "alpha": "0.5", "log": "1"}
    assert payload(at)["log_scale"] is True
    again = open_page(at.query_params)
    assert payload(again) == payload(at) and not again.warning


def test_custom_logits_from_the_url_fill_the_table_and_the_widget():
    at = open_page({"source": "custom", "classes": "a,b,c", "teacher": "2,1,0", "student": "0,1,2", "label": "b",
                    "temperature": "4"})
    assert at.data_editor[0].value["class"].tolist() == ["a", "b", "c"]
    assert at.selectbox(key="sl.label").value == "b"
    data = payload(at)
    assert (data["classes"], data["teacher"], data["student"], data["label"]) == (["a", "b", "c"], [2, 1, 0],
                                                                                   [0, 1, 2], 1)
    assert data["temperature"] == 4.0 and at.query_params["teacher"] == "2,1,0" and not at.warning


@pytest.mark.parametrize("query", [
    {"teacher": "", "student": ""}, {"teacher": "1,abc"}, {"teacher": "1,nan"}, {"teacher": "1,inf"},
    {"teacher": "1,-inf"}, {"teacher": "1,1e309"}, {"teacher": "1,2,3"}, {"classes": "a,a"}, {"classes": "a,"},
    {"classes": ",".join(f"c{i}" for i in range(21)), "teacher": ",".join(["1"] * 21), "student": ",".join(["0"] * 21)},
])
def test_bad_logits_in_the_url_show_a_notice_and_the_lecture_example(query):
    at = open_page({"source": "custom", "classes": "a,b", "teacher": "1,2", "student": "0,0"} | query)
    assert len(at.warning) == 1 and "not used" in at.warning[0].value
    assert payload(at)["classes"] == list(sl.LECTURE.classes) and not at.error


@pytest.mark.parametrize("value, shown", [("abc", 1.0), ("0", 0.1), ("-3", 0.1), ("1000", 100.0), ("7", 8.0)])
def test_bad_temperature_in_the_url_is_clamped_with_a_notice(value, shown):
    at = open_page({"temperature": value, "alpha": "5"})
    assert payload(at)["temperature"] == shown and payload(at)["alpha"] == 1.0
    assert len(at.warning) == 2 and at.query_params["temperature"] == sl.format_number(shown)


def edit_table(at: AppTest, edited: dict | None = None, added: list | None = None, deleted: list | None = None):
    """Edit the custom table the way the browser does: through the data editor's widget state."""
    at.session_state[f"sl.table.{at.session_state['sl.table_version']}"] = {
        "edited_rows": edited or {}, "added_rows": added or [], "deleted_rows": deleted or []}
    at.run()
    assert not at.exception
    return at


@pytest.mark.parametrize("edit, message", [
    ({"edited_rows": {1: {"teacher logit": ""}}}, "empty"), ({"edited_rows": {1: {"teacher logit": "abc"}}}, "number"),
    ({"edited_rows": {1: {"student logit": "nan"}}}, "finite"),
    ({"edited_rows": {1: {"teacher logit": "inf"}}}, "finite"),
    ({"edited_rows": {1: {"teacher logit": "-inf"}}}, "finite"),
    ({"edited_rows": {1: {"teacher logit": "1e309"}}}, "finite"),
    ({"edited_rows": {1: {"class": "dog"}}}, "unique"), ({"edited_rows": {1: {"class": ""}}}, "empty"),
    ({"deleted_rows": [0, 1, 2, 3]}, "empty"), ({"deleted_rows": [1, 2, 3]}, "between 2 and 20"),
    ({"added_rows": [{"class": f"x{i}", "teacher logit": "0", "student logit": "0"} for i in range(17)]}, "between"),
])
def test_bad_edits_in_the_table_keep_the_last_valid_logits(edit, message):
    at = open_page({"source": "custom"})
    before = payload(at)
    edit_table(at, edit.get("edited_rows"), edit.get("added_rows"), edit.get("deleted_rows"))
    assert len(at.error) == 1 and message in at.error[0].value and "last valid" in at.error[0].value
    assert payload(at) == before  # the widget still shows the lecture example
    assert at.query_params["teacher"] == "5,-3,-5,-7"


def test_good_edits_in_the_table_update_the_widget_and_url():
    at = open_page({"source": "custom"})
    edit_table(at, {1: {"teacher logit": "4"}}, [{"class": "cow", "teacher logit": "1", "student logit": "0"}], [3])
    assert not at.error
    assert payload(at)["classes"] == ["dog", "cat", "car", "cow"] and payload(at)["teacher"] == [5, 4, -5, 1]
    assert at.query_params["teacher"] == "5,4,-5,1" and at.query_params["classes"] == "dog,cat,car,cow"
    at.selectbox(key="sl.label").set_value("cow").run()
    assert payload(at)["label"] == 3 and at.query_params["label"] == "cow"


def test_extreme_logits_at_the_lowest_temperature_show_no_nan_and_no_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        at = open_page({"source": "custom", "classes": "a,b,c", "teacher": "1e4,-1e4,0", "student": "-1e4,1e4,0",
                        "temperature": "0.1", "log": "1"})
    (widget,) = widgets(at)
    shown = widget.proto.json + " ".join(m.value for m in at.markdown)
    assert not re.search(r"\b(NaN|nan|Infinity|inf)\b", shown), re.search(r".{80}\b(NaN|nan|Infinity|inf)\b", shown)
    assert payload(at)["teacher"] == [1e4, -1e4, 0] and "| a | 1 | 1.0000 |" in numbers_table(at)
    ours = [w for w in caught if issubclass(w.category, (RuntimeWarning, DeprecationWarning, FutureWarning))]
    assert not ours, [str(w.message) for w in ours]
    assert not at.error and not at.warning


def test_lecture_mode_enlarges_charts_and_collapses_explanations():
    normal = open_page()
    lecture = set_temperature(open_page(), 4.0)
    lecture.toggle(key=ui.LECTURE_MODE_KEY).set_value(True).run()  # the sidebar's switch
    fonts = payload(lecture)["fonts"]
    assert payload(lecture)["lecture"] and fonts["tick"] >= 20 and fonts["title"] >= 24
    assert all(fonts[name] > size for name, size in payload(normal)["fonts"].items())
    assert payload(lecture)["chart_height"] > payload(normal)["chart_height"]
    assert payload(lecture)["temperature"] == 4.0  # the full rerun kept the released T
    assert all(e.proto.expanded for e in normal.expander if e.label.startswith("Why"))
    assert not any(e.proto.expanded for e in lecture.expander)


def test_image_source_without_a_cached_teacher_says_so():
    at = open_page({"source": "image"})
    assert any("not trained yet" in info.value for info in at.info)
    assert not widgets(at) and not at.error


def test_the_default_page_never_imports_torch():
    """In a fresh interpreter: open the page on the lecture example, move the slider, check sys.modules."""
    script = textwrap.dedent(f"""
        import sys
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(ROOT / "app.py")!r}, default_timeout=60)
        at.switch_page({PAGE!r}).run()
        at.session_state[{WIDGET!r}] = {{"temperature": 10.0, "alpha": 0.9}}
        at.run()
        assert not at.exception and len(at.get("bidi_component")) == 1
        print("torch" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"


def cache_a_stand_in_teacher():
    """An untrained model of the default teacher's architecture, cached under its key; returns the dataset."""
    import torch

    from kdviz.core.data import load_dataset
    from kdviz.core.models import create_model
    from kdviz.core.presets import DEFAULT_TEACHER
    from kdviz.core.teachers import save_teacher

    dataset = load_dataset(DEFAULT_TEACHER.dataset)
    torch.manual_seed(1)
    save_teacher(DEFAULT_TEACHER, create_model(DEFAULT_TEACHER.model, dataset.input_shape, dataset.num_classes), {})
    ui.models._teacher.clear()
    ui.models._students.clear()
    return dataset


def test_image_source_with_a_cached_teacher(kdviz_home):
    """A (fake, untrained) default teacher in the cache: the page shows a thumbnail and its 10 digits' logits."""
    dataset = cache_a_stand_in_teacher()
    at = open_page({"source": "image", "image": "3", "temperature": "4"})
    images = at.get("image")
    assert len(images) == 1 and images[0].captions == [f"true class: {dataset.classes[int(dataset.test_y[3])]}"]
    assert not at.error and not at.warning
    assert payload(at)["classes"] == list(dataset.classes) and payload(at)["temperature"] == 4.0
    assert payload(at)["label"] == int(dataset.test_y[3])
    assert at.number_input(key="sl.image").value == 3 and at.query_params["image"] == "3"
    at.number_input(key="sl.image").set_value(4).run()
    assert payload(at)["label"] == int(dataset.test_y[4]) and at.query_params["image"] == "4"


def test_image_source_uses_the_latest_runs_trained_students(kdviz_home, make_manager):
    """No run yet: asking for the KD student says so and shows the untrained one; after a run, its students."""
    from kdviz.core.engine import DistillConfig
    from kdviz.core.models import ModelSpec
    from kdviz.core.presets import DEFAULT_TEACHER

    dataset = cache_a_stand_in_teacher()
    at = open_page({"source": "image", "image": "3", "student_model": "kd"})
    assert any("no trained student yet" in info.value.lower() for info in at.info)
    assert payload(at)["names"]["student"] == "untrained student" and payload(at)["student_role"] == "untrained"

    manager = make_manager()
    run_id = manager.submit(DistillConfig(DEFAULT_TEACHER, ModelSpec("mlp", 16, 1), epochs=1, train_subset=200,
                                          device="cpu"), "test")
    run = wait_for_run(manager, run_id, timeout=120)
    assert run.state == "completed", run.message
    at = open_page({"source": "image", "image": "3", "student_model": "kd"})
    assert not at.info and not at.error
    data = payload(at)
    _, students = manager.store.load_students(run_id)
    expected = students["kd"](dataset.test_x[3:4])[0].tolist()
    assert data["names"]["student"] == "KD student (latest run)"
    assert data["student"] == pytest.approx(expected, abs=1e-4)
    # one colour per role: the widget draws the student (bars, entropy curve) in its role's colour
    assert data["student_role"] == "kd" and data["colors"]["kd"] == COLORS["kd"] != COLORS["untrained"]

    at.selectbox(key="sl.student_model").set_value("hard").run()  # the rerun that picks it shows it at once
    data = payload(at)
    expected = students["hard"](dataset.test_x[3:4])[0].tolist()
    assert data["names"]["student"] == "hard-label student (latest run)" and data["student_role"] == "hard"
    assert data["student"] == pytest.approx(expected, abs=1e-4) and at.query_params["student_model"] == "hard"

    at.selectbox(key="sl.student_model").set_value("untrained").run()
    explorer = ui.students(dataset.name)  # the image explorer's students: the same run, the same untrained student
    assert explorer.run_id == run_id
    assert payload(at)["student"] == pytest.approx(explorer.logits["untrained"][3].tolist(), abs=1e-6)
    assert payload(at)["student_role"] == "untrained"


def test_the_url_keeps_parameters_of_other_pages(kdviz_home, make_manager, monkeypatch):
    """sync_query_params writes only the page's own keys: a run in the link stays. An owner from an old link is
    never an identity: the live page, which asks who this browser is, drops it and uses its own."""
    at = open_page({"owner": "0123456789abcdef", "run": "20260101-000000-aaaaaa", "temperature": "4"})
    set_temperature(at, 10.0)
    assert at.query_params["run"] == "20260101-000000-aaaaaa" and at.query_params["temperature"] == "10"
    at.radio(key="sl.source").set_value("custom").run()
    assert at.query_params["teacher"] == "5,-3,-5,-7" and at.query_params["run"] == "20260101-000000-aaaaaa"
    at.radio(key="sl.source").set_value("lecture").run()
    assert "teacher" not in at.query_params and "classes" not in at.query_params  # the page's own stale keys go
    assert at.query_params["run"] == "20260101-000000-aaaaaa"

    manager = make_manager()  # the live page's run manager, on this test's KDVIZ_HOME, shut down at the end
    monkeypatch.setattr(ui, "run_manager", lambda: manager)
    monkeypatch.setattr(ui.core, "run_manager", lambda: manager)
    at.switch_page(next(p.path for p in ui.PAGES if p.path.endswith("live_distillation.py"))).run()
    assert not at.exception, at.exception
    assert "owner" not in at.query_params and at.query_params["run"] == "20260101-000000-aaaaaa"
    identity = at.session_state["owner_id"]
    assert identity != "0123456789abcdef" and re.fullmatch(r"[0-9a-f]{64}", identity)


def test_the_soft_labels_page_and_the_image_explorer_load_the_teacher_once(kdviz_home, monkeypatch):
    """One cached loader (kdviz.ui.models.teacher, keyed by the teacher file): both pages, one load."""
    from kdviz.core import teachers

    cache_a_stand_in_teacher()
    calls = []
    real = teachers.load_cached
    monkeypatch.setattr(teachers, "load_cached", lambda *args, **kwargs: calls.append(args) or real(*args, **kwargs))
    at = open_page({"source": "image", "image": "2"})
    assert not at.error and len(widgets(at)) == 1
    explorer = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    explorer.query_params.update({"dataset": "mnist5k", "image": "2"})
    explorer.switch_page(next(p.path for p in ui.PAGES if p.path.endswith("image_explorer.py"))).run()
    assert not explorer.exception and not explorer.error
    teacher = json.loads(next(c for c in explorer.get("plotly_chart") if c.key == "ie.softmax.gallery").proto.spec)
    same = next(t for t in teacher["data"] if t["name"] == "teacher")["y"]
    assert same == pytest.approx(kd.softmax(payload(at)["teacher"]), abs=1e-9)  # the same teacher logits, T = 1
    assert len(calls) == 1


def test_training_the_teacher_from_the_page_shows_the_shared_progress_then_the_image(kdviz_home, monkeypatch):
    from kdviz.core import presets
    from kdviz.core.engine import TeacherConfig
    from kdviz.core.models import ModelSpec
    from kdviz.runs import tasks

    tiny = TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=2, batch_size=64, augment=0)
    monkeypatch.setattr(presets, "DEFAULT_TEACHER", tiny)
    monkeypatch.setattr(tasks, "_tasks", {})
    at = open_page({"source": "image", "image": "5"})
    assert any("not trained yet" in info.value for info in at.info)
    at.button[0].click().run()  # "Train the default teacher now"
    assert not at.exception
    task = ui.teacher_task(tiny)
    task.join(120)
    assert task.state == "completed", task.error or task.state
    at.run()
    assert not at.exception and not at.error
    assert payload(at)["classes"] == [str(c) for c in range(10)]
    assert at.number_input(key="sl.image").value == 5
