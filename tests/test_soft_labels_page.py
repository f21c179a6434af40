"""The soft-labels page through streamlit.testing.v1.AppTest: lecture numbers, slider, URL round trip, bad input."""
from __future__ import annotations

import json
import math
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
from kdviz.views import soft_labels as sl
from kdviz.views.charts import COLORS

ROOT = Path(__file__).resolve().parents[1]
PAGE = next(plan.path for plan in ui.PAGES if plan.path.endswith("soft_labels.py"))
CHARTS = ("sl.bars", "sl.curves", "sl.entropy", "sl.gradient")


def open_page(query: dict | None = None) -> AppTest:
    """The page through the router (switching before the first run, so the home page's torch work never starts)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.query_params.update(query or {})
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def charts(at: AppTest) -> dict[str, dict]:
    """The page's plotly figures by key, as the JSON specs sent to the browser."""
    return {chart.key: json.loads(chart.proto.spec) for chart in at.get("plotly_chart")}


def bars(at: AppTest) -> dict[str, dict]:
    return {trace["name"]: trace for trace in charts(at)["sl.bars"]["data"]}


def numbers_table(at: AppTest) -> str:
    """The markdown table in "The numbers" expander."""
    return next(m.value for m in at.markdown if m.value.startswith("| class |"))


def set_temperature(at: AppTest, value: float) -> AppTest:
    at.select_slider(key="sl.temperature").set_value(value).run()
    assert not at.exception
    return at


def test_default_view_shows_the_lecture_numbers():
    at = open_page()
    assert set(charts(at)) == set(CHARTS)
    assert at.select_slider(key="sl.temperature").value == 1.0 and at.slider(key="sl.alpha").value == 0.9
    teacher = bars(at)["teacher"]
    assert teacher["x"] == ["dog", "cat", "car", "ship"] and teacher["customdata"][0] == "0.9996"
    assert "| dog | 1 | 0.9996 |" in numbers_table(at)
    assert not at.error and not at.warning


def test_moving_the_slider_changes_the_charts():
    at = open_page()
    before = charts(at)
    after = charts(set_temperature(at, 10.0))
    teacher = bars(at)["teacher"]
    assert teacher["customdata"][:2] == ["0.4721", "0.2121"]
    assert teacher["y"] != [trace for trace in before["sl.bars"]["data"] if trace["name"] == "teacher"][0]["y"]
    assert after["sl.gradient"]["data"][0]["y"] != before["sl.gradient"]["data"][0]["y"]
    assert after["sl.curves"]["data"][-1]["x"] == [10.0] * 4  # the markers on the curves moved to T = 10
    assert at.metric[1].value == "0.1660"  # KL at T = 10
    assert "| dog | 1 | 0.4721 |" in numbers_table(at) and "| cat | 0 | 0.2121 |" in numbers_table(at)


def test_the_state_round_trips_through_the_url():
    at = set_temperature(open_page(), 20.0)
    at.slider(key="sl.alpha").set_value(0.5).run()
    at.toggle(key="sl.log").set_value(True).run()
    assert at.query_params == {"source": "lecture", "temperature": "20", "alpha": "0.5", "log": "1"}
    again = open_page(at.query_params)
    assert again.select_slider(key="sl.temperature").value == 20.0 and again.slider(key="sl.alpha").value == 0.5
    assert charts(again) == charts(at) and not again.warning


def test_custom_logits_from_the_url_fill_the_table_and_the_charts():
    at = open_page({"source": "custom", "classes": "a,b,c", "teacher": "2,1,0", "student": "0,1,2", "label": "b",
                    "temperature": "4"})
    assert at.data_editor[0].value["class"].tolist() == ["a", "b", "c"]
    assert at.selectbox(key="sl.label").value == "b"
    assert bars(at)["hard label"]["y"] == [0, 1, 0]
    assert at.query_params["teacher"] == "2,1,0" and not at.warning


@pytest.mark.parametrize("query", [
    {"teacher": "", "student": ""}, {"teacher": "1,abc"}, {"teacher": "1,nan"}, {"teacher": "1,inf"},
    {"teacher": "1,-inf"}, {"teacher": "1,1e309"}, {"teacher": "1,2,3"}, {"classes": "a,a"}, {"classes": "a,"},
    {"classes": ",".join(f"c{i}" for i in range(21)), "teacher": ",".join(["1"] * 21), "student": ",".join(["0"] * 21)},
])
def test_bad_logits_in_the_url_show_a_notice_and_the_lecture_example(query):
    at = open_page({"source": "custom", "classes": "a,b", "teacher": "1,2", "student": "0,0"} | query)
    assert len(at.warning) == 1 and "not used" in at.warning[0].value
    assert bars(at)["teacher"]["x"] == list(sl.LECTURE.classes) and not at.error


@pytest.mark.parametrize("value, shown", [("abc", 1.0), ("0", 0.1), ("-3", 0.1), ("1000", 100.0), ("7", 8.0)])
def test_bad_temperature_in_the_url_is_clamped_with_a_notice(value, shown):
    at = open_page({"temperature": value, "alpha": "5"})
    assert at.select_slider(key="sl.temperature").value == shown and at.slider(key="sl.alpha").value == 1.0
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
    before = charts(at)
    edit_table(at, edit.get("edited_rows"), edit.get("added_rows"), edit.get("deleted_rows"))
    assert len(at.error) == 1 and message in at.error[0].value and "last valid" in at.error[0].value
    assert charts(at) == before  # the charts still show the lecture example
    assert at.query_params["teacher"] == "5,-3,-5,-7"


def test_good_edits_in_the_table_update_charts_and_url():
    at = open_page({"source": "custom"})
    edit_table(at, {1: {"teacher logit": "4"}}, [{"class": "cow", "teacher logit": "1", "student logit": "0"}], [3])
    assert not at.error
    assert bars(at)["teacher"]["x"] == ["dog", "cat", "car", "cow"]
    assert at.query_params["teacher"] == "5,4,-5,1" and at.query_params["classes"] == "dog,cat,car,cow"
    at.selectbox(key="sl.label").set_value("cow").run()
    assert bars(at)["hard label"]["y"] == [0, 0, 0, 1] and at.query_params["label"] == "cow"


def test_extreme_logits_at_the_lowest_temperature_show_no_nan_and_no_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        at = open_page({"source": "custom", "classes": "a,b,c", "teacher": "1e4,-1e4,0", "student": "-1e4,1e4,0",
                        "temperature": "0.1", "log": "1"})
    shown = json.dumps(charts(at)) + " ".join(m.value for m in at.metric) + numbers_table(at)
    assert not re.search(r"\b(NaN|nan|Infinity|inf)\b", shown), re.search(r".{80}\b(NaN|nan|Infinity|inf)\b", shown)
    assert all(math.isfinite(float(m.value)) for m in at.metric)
    ours = [w for w in caught if issubclass(w.category, (RuntimeWarning, DeprecationWarning, FutureWarning))]
    assert not ours, [str(w.message) for w in ours]
    assert not at.error and not at.warning


def test_lecture_mode_enlarges_charts_and_collapses_explanations():
    normal = open_page()
    lecture = open_page()
    lecture.toggle(key=ui.LECTURE_MODE_KEY).set_value(True).run()  # the sidebar's switch
    font = lambda at: charts(at)["sl.bars"]["layout"]["font"]["size"]  # noqa: E731
    assert font(lecture) > font(normal)
    assert all(e.proto.expanded for e in normal.expander if e.label.startswith("Why"))
    assert not any(e.proto.expanded for e in lecture.expander)


def test_image_source_without_a_cached_teacher_says_so():
    at = open_page({"source": "image"})
    assert any("not trained yet" in info.value for info in at.info)
    assert not at.get("plotly_chart") and not at.error


def test_the_default_page_never_imports_torch():
    """In a fresh interpreter: open the page on the lecture example, move the slider, check sys.modules."""
    script = textwrap.dedent(f"""
        import sys
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(ROOT / "app.py")!r}, default_timeout=60)
        at.switch_page({PAGE!r}).run()
        at.select_slider(key="sl.temperature").set_value(10.0).run()
        assert not at.exception and len(at.get("plotly_chart")) == 4
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
    teacher = bars(at)["teacher"]
    assert teacher["x"] == list(dataset.classes)
    assert bars(at)["hard label"]["y"][int(dataset.test_y[3])] == 1
    assert at.number_input(key="sl.image").value == 3 and at.query_params["image"] == "3"
    at.number_input(key="sl.image").set_value(4).run()
    assert bars(at)["hard label"]["y"][int(dataset.test_y[4])] == 1 and at.query_params["image"] == "4"


def test_image_source_uses_the_latest_runs_trained_students(kdviz_home, make_manager):
    """No run yet: asking for the KD student says so and shows the untrained one; after a run, its students."""
    import torch

    from kdviz.core.engine import DistillConfig
    from kdviz.core.models import ModelSpec
    from kdviz.core.presets import DEFAULT_TEACHER

    dataset = cache_a_stand_in_teacher()
    at = open_page({"source": "image", "image": "3", "student_model": "kd"})
    assert any("no trained student yet" in info.value.lower() for info in at.info)
    assert "untrained student" in bars(at)

    manager = make_manager()
    run_id = manager.submit(DistillConfig(DEFAULT_TEACHER, ModelSpec("mlp", 16, 1), epochs=1, train_subset=200,
                                          device="cpu"), "test")
    run = wait_for_run(manager, run_id, timeout=120)
    assert run.state == "completed", run.message
    at = open_page({"source": "image", "image": "3", "student_model": "kd"})
    assert not at.info and not at.error
    kd = bars(at)["KD student (latest run)"]
    _, students = manager.store.load_students(run_id)
    expected = torch.softmax(students["kd"](dataset.test_x[3:4]) / 1.0, -1)[0].tolist()
    assert kd["y"] == pytest.approx(expected, abs=1e-4)
    # one colour per role: the KD student in the KD colour, on the bars and on the entropy curves
    assert kd["marker"]["color"] == COLORS["kd"] != COLORS["untrained"]
    entropy = {trace["name"]: trace for trace in charts(at)["sl.entropy"]["data"]}
    assert entropy["KD student (latest run)"]["line"]["color"] == COLORS["kd"]

    at.selectbox(key="sl.student_model").set_value("hard").run()  # the rerun that picks it shows it at once
    hard = bars(at)["hard-label student (latest run)"]
    expected = torch.softmax(students["hard"](dataset.test_x[3:4]), -1)[0].tolist()
    assert hard["y"] == pytest.approx(expected, abs=1e-4) and hard["marker"]["color"] == COLORS["hard"]
    assert at.query_params["student_model"] == "hard"

    at.selectbox(key="sl.student_model").set_value("untrained").run()
    untrained = bars(at)["untrained student"]
    explorer = ui.students(dataset.name)  # the image explorer's students: the same run, the same untrained student
    assert explorer.run_id == run_id
    expected = torch.softmax(torch.as_tensor(explorer.logits["untrained"][3]), -1).tolist()
    assert untrained["y"] == pytest.approx(expected, abs=1e-6) and untrained["marker"]["color"] == COLORS["untrained"]


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
    assert identity != "0123456789abcdef" and re.fullmatch(r"[0-9a-f]{32}", identity)


def test_the_soft_labels_page_and_the_image_explorer_load_the_teacher_once(kdviz_home, monkeypatch):
    """One cached loader (kdviz.ui.models.teacher, keyed by the teacher file): both pages, one load."""
    from kdviz.core import teachers

    cache_a_stand_in_teacher()
    calls = []
    real = teachers.load_cached
    monkeypatch.setattr(teachers, "load_cached", lambda *args, **kwargs: calls.append(args) or real(*args, **kwargs))
    at = open_page({"source": "image", "image": "2"})
    assert not at.error and "teacher" in bars(at)
    explorer = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    explorer.query_params.update({"dataset": "mnist5k", "image": "2"})
    explorer.switch_page(next(p.path for p in ui.PAGES if p.path.endswith("image_explorer.py"))).run()
    assert not explorer.exception and not explorer.error
    teacher = json.loads(next(c for c in explorer.get("plotly_chart") if c.key == "ie.softmax.gallery").proto.spec)
    same = next(t for t in teacher["data"] if t["name"] == "teacher")["y"]
    assert same == pytest.approx(bars(at)["teacher"]["y"], abs=1e-9)  # the same teacher logits at T = 1
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
    assert bars(at)["hard label"]["x"] == [str(c) for c in range(10)]
    assert at.number_input(key="sl.image").value == 5
