"""The image explorer through streamlit.testing.v1.AppTest, with tiny teachers and a tiny finished run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import wait_for_run
from kdviz.views import explorer

from kdviz.core import presets

from kdviz import ui
from kdviz.views.charts import COLORS
from kdviz.core.engine import DistillConfig, TeacherConfig
from kdviz.core.models import ModelSpec
from upload_fixtures import UPLOADS

ROOT = Path(__file__).resolve().parents[1]
PAGE = next(plan.path for plan in ui.PAGES if plan.path.endswith("image_explorer.py"))
TINY_TEACHERS = {"mnist5k": TeacherConfig("mnist5k", ModelSpec("mlp", 32, 1), epochs=1, batch_size=256, augment=0),
                 "digits": TeacherConfig("digits", ModelSpec("mlp", 32, 1), epochs=3, batch_size=64, augment=0)}


def tiny_run(dataset: str) -> DistillConfig:
    return DistillConfig(TINY_TEACHERS[dataset], ModelSpec("mlp", 16, 1), epochs=2, batch_size=128, train_subset=300,
                         device="cpu")


@pytest.fixture(scope="session")
def explorer_homes(tmp_path_factory) -> dict:
    """KDVIZ_HOMEs with the tiny teachers cached: "bare" has no run, "run" a completed tiny run on mnist5k."""
    from kdviz.runs.manager import RunManager
    from kdviz.runs.store import RunStore
    from kdviz.core.teachers import get_teacher

    with_run, bare = tmp_path_factory.mktemp("explorer-run"), tmp_path_factory.mktemp("explorer-bare")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDVIZ_HOME", str(with_run))
        for config in TINY_TEACHERS.values():
            get_teacher(config, "cpu")
        manager = RunManager(RunStore(with_run / "runs"))
        try:
            run_id = manager.submit(tiny_run("mnist5k"), "test")
            run = wait_for_run(manager, run_id, timeout=180)
            assert run.state == "completed", run.message
        finally:
            manager.shutdown()
    shutil.copytree(with_run / "teachers", bare / "teachers")
    return {"run": with_run, "bare": bare, "run_id": run_id}


@pytest.fixture
def tiny_teachers(monkeypatch):
    """The explorer's teachers come from one place (explorer.teacher_for, reading presets.DEFAULT_TEACHER)."""
    monkeypatch.setattr(presets, "DEFAULT_TEACHER", TINY_TEACHERS["mnist5k"])
    monkeypatch.setattr(explorer, "teacher_for", TINY_TEACHERS.get)
    monkeypatch.setattr(explorer, "run_config_for", tiny_run)


@pytest.fixture
def with_run(explorer_homes, tiny_teachers, monkeypatch) -> str:
    monkeypatch.setenv("KDVIZ_HOME", str(explorer_homes["run"]))
    return explorer_homes["run_id"]


@pytest.fixture
def without_run(explorer_homes, tiny_teachers, monkeypatch, tmp_path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(explorer_homes["bare"], home)
    monkeypatch.setenv("KDVIZ_HOME", str(home))
    return home


def open_page(query: dict | None = None, lecture: bool = False) -> AppTest:
    """The page through the router (switching before the first run, so the home page's work never starts)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.query_params.update(query or {})
    if lecture:
        at.session_state["lecture_mode"] = True
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def charts(at: AppTest) -> dict[str, dict]:
    return {chart.key: json.loads(chart.proto.spec) for chart in at.get("plotly_chart")}


def traces(at: AppTest, key: str) -> dict[str, dict]:
    return {trace.get("name"): trace for trace in charts(at)[key]["data"]}


def thumbnail_buttons(at: AppTest, columns: int = 5) -> list:
    return [button for button in at.button if str(button.key).startswith(f"ie.pick.{columns}.")]


def show(at: AppTest, section: str) -> AppTest:
    at.segmented_control(key="ie.section").set_value(section)
    return run(at)


# ---- gallery and picking --------------------------------------------------------------------------------------

def test_gallery_shows_60_thumbnails_and_picking_one_updates_charts_and_url(with_run):
    at = open_page()
    buttons = thumbnail_buttons(at)
    assert len(buttons) == explorer.GALLERY_SIZE
    assert len(at.get("image")) >= 1 and not at.error and not at.warning
    assert set(traces(at, "ie.softmax.gallery")) == {"hard label", "teacher", "untrained student",
                                                     "hard-label student", "KD student"}
    picked = buttons[7]
    index = int(picked.key.rsplit(".", 1)[1])
    picked.click()
    run(at)
    assert at.number_input(key="ie.image").value == index
    assert at.query_params["image"] == str(index) and at.query_params["dataset"] == "mnist5k"
    label = int(np.argmax(traces(at, "ie.softmax.gallery")["hard label"]["y"]))
    data = ui.dataset("mnist5k")
    assert label == int(data.test_y[index])
    table = at.dataframe[0].value
    assert list(table["model"]) == ["teacher", "untrained student", "hard-label student", "KD student"]


def test_temperature_softens_the_teachers_bars_and_goes_into_the_url(with_run):
    at = open_page({"image": "3"})
    before = max(traces(at, "ie.softmax.gallery")["teacher"]["y"])
    at.select_slider(key="ie.temperature").set_value(10.0)
    run(at)
    after = max(traces(at, "ie.softmax.gallery")["teacher"]["y"])
    assert after < before and at.query_params["temperature"] == "10"


def test_one_student_uses_the_soft_labels_pages_chart(with_run):
    at = open_page({"image": "2", "temperature": "4"})
    at.segmented_control(key="ie.roles.gallery").set_value(["kd"])
    run(at)
    colors = [trace["marker"]["color"] for trace in charts(at)["ie.softmax.gallery"]["data"]]
    assert colors == [COLORS["label"], COLORS["teacher"], COLORS["kd"]]  # hard label, teacher, KD student


def test_mistakes_order_shows_only_the_teachers_mistakes(with_run):
    at = open_page()
    at.selectbox(key="ie.order").set_value("mistakes")
    run(at)
    buttons = thumbnail_buttons(at)
    assert buttons and all("→" in button.label for button in buttons)


def test_class_filter(with_run):
    at = open_page()
    at.selectbox(key="ie.class").set_value(4)
    run(at)
    assert {button.label.split(" ")[0] for button in thumbnail_buttons(at)} == {"4"}


def test_link_restores_dataset_image_and_temperature_and_bad_links_get_notices(with_run):
    at = open_page({"dataset": "digits", "image": "7", "temperature": "4"})
    assert at.selectbox(key="ie.dataset").value == "digits" and at.number_input(key="ie.image").value == 7
    assert at.select_slider(key="ie.temperature").value == 4.0 and not at.warning
    assert traces(at, "ie.softmax.gallery")["teacher"]["x"] == list("0123456789")
    at = open_page({"dataset": "cifar10", "image": "99999", "temperature": "hot"})
    assert len(at.warning) == 3 and at.number_input(key="ie.image").value == 0


def test_the_url_keeps_parameters_the_explorer_does_not_own(with_run, make_manager, monkeypatch):
    """The explorer writes only its own keys (a run in the link stays); an owner from an old link is never an
    identity: the live page, which asks who this browser is, drops it and uses its own."""
    at = open_page({"owner": "0123456789abcdef", "run": "20260101-000000-aaaaaa", "image": "3"})
    at.select_slider(key="ie.temperature").set_value(10.0)
    run(at)
    assert at.query_params["temperature"] == "10" and at.query_params["image"] == "3"
    assert at.query_params["run"] == "20260101-000000-aaaaaa"

    manager = make_manager()  # the live page's run manager, on this test's KDVIZ_HOME, shut down at the end
    monkeypatch.setattr(ui, "run_manager", lambda: manager)
    monkeypatch.setattr(ui.core, "run_manager", lambda: manager)
    run(at.switch_page(next(p.path for p in ui.PAGES if p.path.endswith("live_distillation.py"))))
    assert "owner" not in at.query_params and at.query_params["run"] == "20260101-000000-aaaaaa"
    identity = at.session_state["owner_id"]
    assert identity != "0123456789abcdef" and len(identity) == 64 and set(identity) <= set("0123456789abcdef")


def test_switching_dataset_starts_from_its_first_image(with_run):
    at = open_page({"image": "900"})
    at.selectbox(key="ie.dataset").set_value("digits")
    run(at)
    assert at.number_input(key="ie.image").value == 0 and at.query_params["dataset"] == "digits"


def test_lecture_mode_renders(with_run):
    at = open_page({"image": "1"}, lecture=True)
    assert charts(at)["ie.softmax.gallery"]["layout"]["font"]["size"] == 20


# ---- convergence over epochs ----------------------------------------------------------------------------------

def test_probe_image_shows_the_students_at_every_epoch(with_run):
    at = open_page({"image": "0", "temperature": "4"})  # the first test image of class 0 is a probe image
    figure = charts(at)["ie.convergence"]
    assert [frame["name"] for frame in figure["frames"]] == ["0", "1", "2"]
    assert {trace["name"] for trace in figure["frames"][0]["data"]} == {"hard-label student", "KD student"}
    for frame in figure["frames"]:
        for trace in frame["data"]:
            assert sum(trace["y"]) == pytest.approx(1.0)
    kl = traces(at, "ie.kl")
    assert kl["hard-label student"]["y"][0] == pytest.approx(kl["KD student"]["y"][0])  # same initial weights


def test_other_images_offer_a_jump_to_a_probe_image(with_run):
    at = open_page({"image": "50"})
    assert "ie.convergence" not in charts(at)
    jumps = [button for button in at.button if str(button.key).startswith("ie.jump.")]
    assert jumps
    jumps[0].click()
    run(at)
    assert at.number_input(key="ie.image").value == int(jumps[0].key.rsplit(".", 1)[1])
    assert "ie.convergence" in charts(at)


def test_without_a_run_the_page_offers_the_preset_and_picks_up_its_students(without_run, monkeypatch, make_manager):
    from kdviz.runs.store import RunStore

    manager = make_manager(RunStore(without_run / "runs"))
    monkeypatch.setattr(ui.core, "run_manager", lambda: manager)  # what the explorer section calls
    at = open_page({"image": "0"})
    assert set(traces(at, "ie.softmax.gallery")) == {"hard label", "teacher", "untrained student"}
    assert any("No finished distillation run" in info.value for info in at.info)
    at.button(key="ie.run_preset").click()
    run(at)
    run_id = at.session_state["ie.run.mnist5k"]
    assert wait_for_run(manager, run_id, timeout=180).state == "completed", manager.get(run_id).message
    run(at)
    assert "KD student" in traces(at, "ie.softmax.gallery") and "ie.convergence" in charts(at)


def test_the_students_of_another_teachers_run_are_not_shown(explorer_homes, tiny_teachers, monkeypatch, tmp_path):
    """The only finished run on mnist5k distilled another teacher: its students are not shown beside this one."""
    import dataclasses

    from kdviz.core.teachers import get_teacher

    home = tmp_path / "home"
    shutil.copytree(explorer_homes["run"], home)
    monkeypatch.setenv("KDVIZ_HOME", str(home))
    other = dataclasses.replace(TINY_TEACHERS["mnist5k"], seed=1)  # the same architecture, another teacher
    get_teacher(other, "cpu")
    monkeypatch.setattr(explorer, "teacher_for", {**TINY_TEACHERS, "mnist5k": other}.get)
    at = open_page({"image": "0"})
    assert set(traces(at, "ie.softmax.gallery")) == {"hard label", "teacher", "untrained student"}
    assert "ie.convergence" not in charts(at) and "ie.kl" not in charts(at)
    assert any("No finished distillation run of this teacher" in info.value for info in at.info)


def test_a_teacher_that_is_not_trained_yet_shows_progress_then_the_page(without_run, monkeypatch):
    untrained = TeacherConfig("digits", ModelSpec("mlp", 24, 1), epochs=2, batch_size=64, augment=0)
    monkeypatch.setattr(explorer, "teacher_for", {"mnist5k": untrained, "digits": untrained}.get)
    at = open_page({"dataset": "digits"})
    assert any("being trained once" in info.value for info in at.info)
    assert not thumbnail_buttons(at)
    task = ui.teacher_task(untrained)
    task.join(120)
    assert task.done, f"the teacher was still {task.state!r} after 120 s"
    assert task.state == "completed", task.error
    run(at)
    assert len(thumbnail_buttons(at)) == explorer.GALLERY_SIZE


# ---- uploads --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(UPLOADS))
def test_every_upload_gets_a_result_or_one_sentence(with_run, name):
    make, must_work = UPLOADS[name]
    at = show(open_page({"temperature": "2"}), "upload")
    at.file_uploader(key="ie.upload").set_value((f"{name}.png", make(), "image/png"))
    run(at)
    if must_work:
        assert not at.error
        assert "ie.softmax.upload" in charts(at)
        assert set(traces(at, "ie.softmax.upload")) == {"teacher", "untrained student", "hard-label student",
                                                        "KD student"}
        assert any("what the model sees" in (caption or "") for image in at.get("image")
                   for caption in image.captions)
    else:
        assert len(at.error) == 1 and "ie.softmax.upload" not in charts(at)
        message = at.error[0].value
        assert message.endswith(".") and "\n" not in message and "Traceback" not in message


def test_upload_with_a_declared_class_shows_the_hard_label(with_run):
    at = show(open_page(), "upload")
    at.file_uploader(key="ie.upload").set_value(("seven.png", UPLOADS["png"][0](), "image/png"))
    run(at)
    at.selectbox(key="ie.upload_label").set_value(7)
    run(at)
    assert traces(at, "ie.softmax.upload")["hard label"]["y"][7] == 1


# ---- dark knowledge -------------------------------------------------------------------------------------------

def heatmap(at: AppTest) -> np.ndarray:
    z = next(trace for trace in charts(at)["ie.heatmap"]["data"] if trace["type"] == "heatmap")["z"]
    return np.array([[np.nan if v is None else v for v in row] for row in z], dtype=float)


@pytest.mark.parametrize("temperature", ["1", "4", "20"])
def test_heatmap_rows_sum_to_one_with_the_diagonal_shown(with_run, temperature):
    at = show(open_page({"temperature": temperature}), "dark")
    hidden = heatmap(at)
    assert np.isnan(np.diag(hidden)).all() and np.isfinite(hidden[~np.eye(10, dtype=bool)]).all()
    at.toggle(key="ie.diagonal").set_value(True)
    run(at)
    np.testing.assert_allclose(heatmap(at).sum(1), 1.0, atol=1e-9)


def test_heatmap_cell_shows_the_images_behind_it_and_opens_one(with_run):
    at = show(open_page({"temperature": "4"}), "dark")
    at.selectbox(key="ie.cell_true").set_value(4)
    at.selectbox(key="ie.cell_other").set_value(9)
    run(at)
    shapes = charts(at)["ie.heatmap"]["layout"]["shapes"]
    assert shapes[0]["x0"] == 8.5 and shapes[0]["y0"] == 3.5  # the chosen cell is outlined
    buttons = thumbnail_buttons(at, columns=4)
    assert len(buttons) == 8
    data = ui.dataset("mnist5k")
    indices = [int(button.key.rsplit(".", 1)[1]) for button in buttons]
    assert all(int(data.test_y[i]) == 4 for i in indices)
    buttons[0].click()
    run(at)
    assert at.segmented_control(key="ie.section").value == "gallery"
    assert at.number_input(key="ie.image").value == indices[0]


def test_section_switches_keep_the_chosen_image(with_run):
    at = open_page({"image": "12"})
    show(at, "dark")
    show(at, "gallery")
    assert at.number_input(key="ie.image").value == 12


def test_the_last_upload_survives_a_section_switch_and_a_bad_one_replaces_it(with_run):
    at = show(open_page(), "upload")
    at.file_uploader(key="ie.upload").set_value(("seven.png", UPLOADS["png"][0](), "image/png"))
    run(at)
    show(at, "dark")
    show(at, "upload")
    # AppTest keeps the uploader's file across the switch, as a browser does when the switch's run was interrupted
    # (under load); a browser that mounts an empty uploader shows the same upload: see the browser test
    assert "ie.softmax.upload" in charts(at)
    assert "Showing your last upload, seven.png." in [caption.value for caption in at.caption]
    run(at)  # the next rerun in the same section: the upload as usual
    assert "Showing your last upload, seven.png." not in [caption.value for caption in at.caption]
    at.file_uploader(key="ie.upload").set_value(("empty.png", b"", "image/png"))
    run(at)
    assert len(at.error) == 1 and "ie.softmax.upload" not in charts(at)


def test_removing_the_upload_forgets_it(with_run):
    at = show(open_page(), "upload")
    at.file_uploader(key="ie.upload").set_value(("seven.png", UPLOADS["png"][0](), "image/png"))
    run(at)
    at.file_uploader(key="ie.upload").set_value(None)  # the user clicks the file's ✕ while the uploader is shown
    run(at)
    assert "ie.softmax.upload" not in charts(at)
    show(at, "dark")
    show(at, "upload")
    assert "ie.softmax.upload" not in charts(at)
    assert not any("last upload" in caption.value for caption in at.caption)
