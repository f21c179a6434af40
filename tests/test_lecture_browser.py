"""The lecture tour in real Chromium: a lecturer and a follower in two browsers (two contexts: two identity
cookies), the clicker, the follower's phone, exploring alone, slide export, and every step at 1920×1080."""
from __future__ import annotations

import io
import re
import time

import pytest

from conftest import wait_until
from tests.support.appserver import ERRORS

pytestmark = pytest.mark.browser


TEACHER_DOG = ".kdviz-bar-label[data-series=teacher][data-class=dog]"


def teacher_dog(page) -> str | None:
    """The teacher's probability for dog as the soft-labels widget prints it over its bar (None while not drawn)."""
    labels = page.locator(TEACHER_DOG)
    return labels.first.text_content() if labels.count() else None


def wait_text(page, text: str, timeout: float = 30) -> None:
    page.get_by_text(text).first.wait_for(timeout=timeout * 1000)


def test_the_hall_follows_the_lecturer_and_a_follower_explores_alone(browser, app_server, screenshot_dir):
    lecturer_context = browser.new_context(viewport={"width": 1920, "height": 1080})
    follower_context = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    lecturer, follower = lecturer_context.new_page(), follower_context.new_page()
    try:
        lecturer.goto(f"{app_server}/lecture", wait_until="domcontentloaded")
        lecturer.get_by_role("button", name="Present").click()
        lecturer.wait_for_function("() => location.search.includes('room=')", timeout=30_000)
        code = re.search(r"room=([A-Z0-9]{5})", lecturer.url).group(1)

        follower.goto(f"{app_server}/lecture?room={code}", wait_until="domcontentloaded")
        wait_text(follower, "Following the lecturer")

        lecturer.mouse.click(1800, 1050)  # the page, not a field, has the focus: the clicker's keys move steps
        for step in range(2, 6):
            lecturer.keyboard.press("PageDown")
            wait_text(lecturer, f"Step {step} of 14")
        started = time.monotonic()
        wait_text(follower, "Step 5 of 14", timeout=3)
        follow_seconds = time.monotonic() - started

        lecturer.get_by_role("button", name="Ask the hall").click()
        wait_text(follower, "Your guess")
        follower.get_by_role("button", name="Commit my guess").click()
        wait_text(lecturer, "1 guess from the hall")
        lecturer.get_by_role("button", name="Reveal the answer").click()
        wait_text(follower, "Answer: 0.2121")

        slider = lecturer.get_by_role("slider", name=re.compile("^Temperature"))
        slider.focus()
        for _ in range(10):  # 1 → 1.2 → 1.5 → 2 → 2.5 → 3 → 4 → 5 → 6 → 8 → 10
            slider.press("ArrowRight")
        lecturer.wait_for_function("() => location.search.includes('T=10')", timeout=15_000)
        started = time.monotonic()
        wait_until(lambda: teacher_dog(follower) == "0.4721", 3, what="the follower's teacher bar at T = 10",
                   sleep=follower.wait_for_timeout)
        follow_seconds = max(follow_seconds, time.monotonic() - started)
        assert teacher_dog(lecturer) == "0.4721"
        assert follower.evaluate("document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth")
        follower.set_viewport_size({"width": 375, "height": 2400})  # Streamlit scrolls inside: show the whole page
        follower.wait_for_timeout(800)
        follower.screenshot(path=str(screenshot_dir / "lecture_follower_phone.png"))
        follower.set_viewport_size({"width": 375, "height": 812})

        follower.get_by_role("button", name="Explore on my own").click()
        wait_text(follower, "Exploring on your own")
        own = follower.get_by_role("slider", name=re.compile("^Temperature"))
        own.focus()
        for _ in range(3):
            own.press("ArrowLeft")  # 10 → 8 → 6 → 5
        wait_until(lambda: teacher_dog(follower) != "0.4721", 10, what="the follower's own T",
                   sleep=follower.wait_for_timeout)
        lecturer.wait_for_timeout(1500)
        assert teacher_dog(lecturer) == "0.4721" and "T=10" in lecturer.url  # the lecturer's view did not change
        for page in (lecturer, follower):
            assert page.locator(ERRORS).count() == 0
        lecturer.screenshot(path=str(screenshot_dir / "lecture_presenter.png"))
        print(f"the follower followed within {follow_seconds:.2f} s")
    finally:
        lecturer_context.close()
        follower_context.close()


def test_a_chart_downloads_as_a_16_9_slide_with_its_caption(page, app_server, tmp_path):
    from PIL import Image

    page.goto(f"{app_server}/lecture?step=1", wait_until="domcontentloaded")
    page.locator(".kdviz-export button").first.wait_for(timeout=60_000)
    with page.expect_download(timeout=60_000) as download:
        page.locator(".kdviz-export button[data-format=png]").first.click()
    png = tmp_path / "slide.png"
    download.value.save_as(png)
    assert download.value.suggested_filename.startswith("kdviz-step1-") and png.suffix == ".png"
    assert Image.open(io.BytesIO(png.read_bytes())).size == (1920, 1080)
    with page.expect_download(timeout=60_000) as download:
        page.locator(".kdviz-export button[data-format=svg]").first.click()
    svg = download.value.path().read_text()
    assert 'width="1920"' in svg and 'height="1080"' in svg
    assert "step 1: A large teacher teaches a small student" in svg and "lecture?step=1" in svg


def test_every_step_in_lecture_mode_at_1920_by_1080(browser, app_server, screenshot_dir):
    """Lecture mode on, then Next through all 14 steps in one page: no error, no sideways scrolling, a screenshot each
    (look at them: readable from the back row)."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    try:
        page.goto(f"{app_server}/lecture?step=1", wait_until="domcontentloaded")
        wait_text(page, "Step 1 of 14", timeout=60)
        page.get_by_text("Lecture mode").click()
        page.wait_for_timeout(1000)
        for step in range(1, 15):
            if step > 1:
                page.get_by_role("button", name="Next").click()
            wait_text(page, f"Step {step} of 14")
            page.wait_for_timeout(700)  # charts and components finish drawing
            assert page.locator(ERRORS).count() == 0, step
            assert page.evaluate("document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth")
            page.screenshot(path=str(screenshot_dir / f"lecture_step{step:02d}.png"))
        assert "step=14" in page.url
    finally:
        context.close()
