"""Pages that read a finished run's students, in Chromium, on a server where one run has finished: the image explorer
(pick an image, change T, upload a PNG and a bad file, click the heatmap) and the compression & energy page (a bad run
id and a bad power refused, then that run's teacher and students measured)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.appserver import ERRORS, app_server
from conftest import wait_for_run
from kdviz.views.soft_labels import TEMPERATURES
from upload_fixtures import png_seven, truncated_png

pytestmark = pytest.mark.browser


def _prepare_home(home: Path, default_teacher_stand_in) -> str:
    """A stand-in for the default teacher (its architecture, one epoch) cached under its key, and a finished run (its
    id returned)."""
    from kdviz.core.engine import DistillConfig
    from kdviz.runs.manager import RunManager
    from kdviz.core.models import ModelSpec
    from kdviz.core.presets import DEFAULT_TEACHER
    from kdviz.runs.store import RunStore

    default_teacher_stand_in(home)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDVIZ_HOME", str(home))
        manager = RunManager(RunStore(home / "runs"))
        try:
            run_id = manager.submit(DistillConfig(DEFAULT_TEACHER, ModelSpec("mlp", 32, 1), epochs=3, batch_size=128,
                                                  train_subset=500, device="cpu"), "test")
            run = wait_for_run(manager, run_id, timeout=240)
            assert run.state == "completed", run.message
        finally:
            manager.shutdown()
    return run_id


@pytest.fixture(scope="module")
def explorer_server(tmp_path_factory, default_teacher_stand_in):
    """`streamlit run app.py` on a home where the default teacher is cached and one run has finished: (its URL, its
    log, the run's id)."""
    home = tmp_path_factory.mktemp("explorer-server-home")
    run_id = _prepare_home(home, default_teacher_stand_in)
    with app_server(home, home / "server.log") as url:
        yield url, home / "server.log", run_id


@pytest.fixture
def explorer_page(browser, explorer_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    yield page, explorer_server[0]
    context.close()
    assert "Traceback" not in explorer_server[1].read_text()


def test_pick_an_image_change_t_upload_and_click_the_heatmap(explorer_page, screenshot_dir):
    page, url = explorer_page
    page.goto(url + "/image_explorer")
    page.get_by_text("Compare the teacher with").wait_for(timeout=90_000)

    # pick the third thumbnail (a 2): its number shows under the big image and goes into the URL
    page.get_by_role("button", name="2", exact=True).first.click()
    page.wait_for_url(re.compile(r"image=(?!0\b)\d+"), timeout=20_000)
    image = re.search(r"image=(\d+)", page.url).group(1)
    page.get_by_test_id("stImageCaption").get_by_text(f"test image #{image}", exact=True).wait_for(timeout=20_000)
    page.get_by_text(re.compile(r"^True class 2\.")).wait_for(timeout=20_000)

    # raise T with the keyboard on the select slider: the URL and the chart title follow
    slider = page.get_by_role("slider").first
    for expected in TEMPERATURES[TEMPERATURES.index(1.0) + 1:][:8]:  # one step at a time, each a rerun
        slider.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_url(re.compile(rf"temperature={expected:g}(&|$)"), timeout=20_000)
    temperature = f"{expected:g}"
    page.get_by_text("Compare the teacher with").scroll_into_view_if_needed()  # plotly charts draw when visible
    page.get_by_text(f"Teacher and students at T = {temperature}").first.wait_for(timeout=20_000)
    page.screenshot(path=str(screenshot_dir / "image_explorer_gallery.png"))

    # upload a PNG: the processed input appears beside it, then the same charts
    page.get_by_text("Your own image").click()
    page.locator("input[type=file]").set_input_files({"name": "seven.png", "mimeType": "image/png",
                                                      "buffer": png_seven()})
    page.get_by_text(re.compile("what the model sees")).wait_for(timeout=30_000)
    page.get_by_text("Compare the teacher with").scroll_into_view_if_needed()
    page.get_by_text(f"Teacher and students at T = {temperature}").first.wait_for(timeout=20_000)
    page.get_by_text("Your own image").scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_dir / "image_explorer_upload.png"))

    # the upload is kept while another section is shown
    page.get_by_text("Dark knowledge").click()
    page.locator(".nsewdrag").first.wait_for(timeout=30_000)
    page.get_by_text("Your own image").click()
    page.get_by_text("Showing your last upload, seven.png.").wait_for(timeout=30_000)

    # a damaged file: one sentence next to the uploader, and the page keeps working
    page.locator("input[type=file]").set_input_files({"name": "broken.png", "mimeType": "image/png",
                                                      "buffer": truncated_png()})
    page.get_by_text("The image file is damaged or incomplete").wait_for(timeout=30_000)

    # the dark-knowledge heatmap: clicking cell (4, 9) shows class-4 images the teacher finds 9-like
    page.get_by_text("Dark knowledge").click()
    drag = page.locator(".nsewdrag").first
    drag.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)  # the heatmap settles after its first draw
    box = drag.bounding_box()
    page.mouse.click(box["x"] + 9.5 * box["width"] / 10, box["y"] + 4.5 * box["height"] / 10)
    page.get_by_text(re.compile(r"Test images of class 4 the teacher finds most like 9")).wait_for(timeout=20_000)
    page.screenshot(path=str(screenshot_dir / "image_explorer_dark_knowledge.png"))


def _enter(field, value: str) -> None:
    field.fill(value)
    field.press("Enter")


def _refused(page, field, value: str, message: str, run) -> None:
    """A bad value typed into field gets its message on the page, and the run button stays disabled."""
    _enter(field, value)
    page.get_by_text(re.compile(message)).first.wait_for()
    assert run.is_disabled()


def test_the_compression_page_measures_a_finished_runs_teacher_and_students(browser, explorer_server,
                                                                             screenshot_dir):
    """The run's id typed as from a shared link (the run is not this browser's): its teacher, both students and the
    int8 KD student measured, with the power given. (Training the lecture preset's students from this page is
    tested with AppTest, tests/test_compression_page.py.)"""
    url, log, run_id = explorer_server
    context = browser.new_context(viewport={"width": 1400, "height": 3000})
    page = context.new_page()
    page.set_default_timeout(90_000)
    run = page.get_by_role("button", name="Run the experiment")
    try:
        page.goto(f"{url}/compression")
        page.get_by_text("more than a factor of two").first.wait_for()  # the case study, computed live
        page.get_by_text("the students of a finished run").click()
        typed = page.get_by_role("textbox", name=re.compile("or a run id"))
        _refused(page, typed, "20250101-120000-abcdef", "no finished run", run)
        _enter(typed, run_id)
        page.get_by_text("estimate from a power figure I give").click()
        power = page.get_by_role("spinbutton", name=re.compile("Power"))
        _refused(page, power, "-5", "power must be", run)
        _enter(power, "20")
        page.wait_for_timeout(1000)
        run.click()
        try:
            page.get_by_text(re.compile(r"Run \S+: completed")).wait_for(timeout=120_000)
            page.get_by_text("Energy per million predictions").first.wait_for()
            page.wait_for_timeout(1500)
        finally:
            page.screenshot(path=str(screenshot_dir / "compression.png"), full_page=True)
        assert page.locator(ERRORS).count() == 0
        assert "compression=" in page.url
        assert page.locator(".js-plotly-plot").count() >= 4
        assert page.get_by_text("20 W").count() >= 1 and page.get_by_text("estimated").count() >= 1
    finally:
        context.close()
    assert "Traceback" not in log.read_text()
