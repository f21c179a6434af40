"""The soft-labels page in a real Chromium: the widget's bars follow the slider while it is dragged, keyboard, the URL
on release, lecture mode, a shared link, slide export and a phone's screen."""
from __future__ import annotations

import re
import struct
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.support.appserver import ERRORS

pytestmark = pytest.mark.browser

TEACHER = ".kdviz-bar-label[data-series=teacher]"  # the teacher's probabilities printed over its bars
ROOT = ".kdviz-sl"  # the widget's root (in its shadow root; Playwright's selectors pierce it)


def teacher_labels(page) -> list[str]:
    return page.locator(TEACHER).all_text_contents()


def wait_for_teacher(page, first: str, timeout: float = 30_000) -> None:
    page.locator(f'{TEACHER}[data-class="dog"]').filter(has_text=re.compile(f"^{re.escape(first)}$")).wait_for(
        timeout=timeout)


def query(page) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(urlparse(page.url).query).items()}


def server_log(tmp_path_factory):
    logs = sorted(tmp_path_factory.getbasetemp().glob("server-home*/server.log"))
    return logs[0] if logs else None


def thumb(slider):
    """(where the thumb's centre is at a step of the 31-step T slider: {"x", "y"}, the slider's middle y)."""
    box = slider.bounding_box()
    middle = box["y"] + box["height"] / 2

    def at(index: int) -> dict:
        return {"x": box["x"] + 8 + (box["width"] - 16) * index / 30, "y": middle}  # a thumb 16 px wide

    return at, middle


def open_widget(page, app_server, path: str = "/soft_labels") -> None:
    page.goto(f"{app_server}{path}", wait_until="domcontentloaded")
    page.locator(TEACHER).first.wait_for(timeout=60_000)


def test_temperature_slider_keyboard_export_and_lecture_mode(page, app_server, screenshot_dir, tmp_path_factory):
    log = server_log(tmp_path_factory)
    log_start = log.stat().st_size if log else 0
    open_widget(page, app_server)
    assert teacher_labels(page)[0] == "0.9996"

    slider = page.get_by_role("slider", name=re.compile("^Temperature T"))
    slider.focus()
    for _ in range(10):  # 1 → 1.2 → 1.5 → 2 → 2.5 → 3 → 4 → 5 → 6 → 8 → 10
        page.keyboard.press("ArrowRight")
    wait_for_teacher(page, "0.4721")
    assert teacher_labels(page)[:2] == ["0.4721", "0.2121"]
    assert slider.get_attribute("aria-valuetext") == "10"
    page.wait_for_function("() => window.location.search.includes('temperature=10')", timeout=10_000)
    page.get_by_text("The numbers").click()  # the server's table follows the released value
    page.get_by_text("0.4721", exact=True).first.wait_for(timeout=10_000)
    assert page.locator(ERRORS).count() == 0

    with page.expect_download() as svg:
        page.locator('.kdviz-panel[data-panel="bars"] button[data-format="svg"]').click()
    assert svg.value.suggested_filename == "kdviz-soft-labels-bars-T10.svg"
    text = Path(svg.value.path()).read_text(encoding="utf-8")
    assert 'width="1920"' in text and 'height="1080"' in text and "T = 10, α = 0.9" in text
    assert "Hard label vs soft labels at T = 10" in text and "/soft_labels?source=lecture&amp;temperature=10" in text
    with page.expect_download() as png:
        page.locator('.kdviz-panel[data-panel="gradient"] button[data-format="png"]').click()
    assert png.value.suggested_filename == "kdviz-soft-labels-gradient-T10.png"
    header = Path(png.value.path()).read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (1920, 1080)

    page.set_viewport_size({"width": 1400, "height": 2600})  # Streamlit scrolls inside the page: show it all
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshot_dir / "soft_labels.png"), full_page=True)

    page.get_by_text("Lecture mode").click()
    page.locator(f"{ROOT}.kdviz-lecture").wait_for(timeout=30_000)
    assert teacher_labels(page)[:2] == ["0.4721", "0.2121"]  # the state survived the full rerun
    assert float(page.locator(f"{ROOT} .kdviz-tick").first.get_attribute("font-size")) >= 20
    assert page.locator(f"{ROOT} svg.kdviz-chart").count() == 4 and page.locator(ERRORS).count() == 0
    page.wait_for_timeout(1500)  # let the explanations finish collapsing
    page.screenshot(path=str(screenshot_dir / "soft_labels_lecture.png"), full_page=True)
    page.set_viewport_size({"width": 1920, "height": 1080})  # a projector
    page.locator(f'{ROOT} .kdviz-panel[data-panel="bars"]').scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshot_dir / "soft_labels_projector.png"))
    for name in ("soft_labels.png", "soft_labels_lecture.png", "soft_labels_projector.png"):
        assert (screenshot_dir / name).stat().st_size > 20_000

    if log:  # nothing this journey did may warn or fail on the server
        written = log.read_text(errors="replace")[log_start:]
        assert not re.search(r"Traceback|Warning:|deprecat", written), written[-3000:]


def test_dragging_the_slider_moves_the_bars_before_it_is_released(page, app_server):
    open_widget(page, app_server)
    page.wait_for_function("() => window.location.search.includes('temperature=1')", timeout=10_000)
    slider = page.get_by_role("slider", name=re.compile("^Temperature T"))
    slider.scroll_into_view_if_needed()
    at, y = thumb(slider)
    redraws = page.evaluate("() => window.kdvizSoftLabelsRedraws")
    page.mouse.move(at(10)["x"], y)  # T = 1, where the thumb is
    page.mouse.down()
    seen = []
    for index in (12, 14, 16, 18, 20):  # T = 1.5 … 10, in steps, the button held
        page.mouse.move(at(index)["x"], y, steps=3)
        page.wait_for_timeout(50)
        seen.append(teacher_labels(page)[0])
    assert len(set(seen)) >= 4 and seen[-1] != "0.9996", seen  # the bars moved while the button was held
    assert query(page)["temperature"] == "1"  # nothing has reached the server yet
    assert page.evaluate("() => window.kdvizSoftLabelsRedraws") >= redraws + 4
    shown = page.locator(ROOT).get_attribute("data-temperature")
    assert shown != "1"
    page.mouse.up()
    page.wait_for_function(f"() => window.location.search.includes('temperature={shown}')", timeout=10_000)
    assert page.locator(ROOT).get_attribute("data-temperature") == shown  # the server's echo changed nothing
    assert page.locator(ERRORS).count() == 0


def test_a_follow_event_redraws_without_the_server(page, app_server):
    """Another engineer's follower poll dispatches "kdviz:follow": the widget draws the lecturer's T and α at once."""
    open_widget(page, app_server)
    page.evaluate("() => window.dispatchEvent(new CustomEvent('kdviz:follow', "
                  "{detail: {temperature: 10, alpha: 0.5}}))")
    assert teacher_labels(page)[:2] == ["0.4721", "0.2121"]
    assert page.locator(f'{ROOT} [data-term="total"] .kdviz-tile-value').text_content() == "10.4630"
    assert page.get_by_role("slider", name=re.compile("^α")).get_attribute("aria-valuetext") == "0.5"
    page.wait_for_timeout(500)
    assert query(page)["temperature"] == "1"  # a follower does not write the lecturer's T into its own link


def test_a_shared_link_restores_the_view(page, app_server):
    open_widget(page, app_server, "/soft_labels?source=custom&classes=cat,dog&teacher=1,3&student=0,0&label=dog"
                                  "&temperature=7&alpha=2")
    page.get_by_text("not on the slider").wait_for(timeout=30_000)  # T = 7 snapped to 8, with a notice
    page.get_by_text("outside 0 to 1").wait_for()
    assert [page.locator(TEACHER).nth(i).get_attribute("data-class") for i in range(2)] == ["cat", "dog"]
    assert page.locator(ROOT).get_attribute("data-temperature") == "8"
    assert page.locator(ROOT).get_attribute("data-alpha") == "1"
    page.wait_for_function("() => window.location.search.includes('temperature=8')", timeout=10_000)
    assert "alpha=1" in page.url and page.locator(ERRORS).count() == 0


def touch_drag(context, page) -> None:
    """A finger drags the T slider from 4 to 10: the bars follow on the way, the link changes when it lifts."""
    slider = page.get_by_role("slider", name=re.compile("^Temperature T"))
    slider.scroll_into_view_if_needed()
    at, _ = thumb(slider)
    cdp = context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [at(16)]})  # T = 4
    seen = []
    for index in (17, 18, 19, 20):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [at(index)]})
        page.wait_for_timeout(50)
        seen.append(teacher_labels(page)[0])
    assert seen[-1] == "0.4721" and len(set(seen)) == 4 and query(page)["temperature"] == "4", seen
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_function("() => window.location.search.includes('temperature=10')", timeout=10_000)


def test_a_phone_shows_the_widget_without_sideways_scrolling_and_takes_a_finger(browser, app_server, screenshot_dir):
    context = browser.new_context(viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    try:
        open_widget(page, app_server, "/soft_labels?temperature=4")
        page.locator(f"{ROOT} svg.kdviz-chart").nth(3).wait_for()
        page.locator(f'{ROOT} .kdviz-panel[data-panel="bars"]').scroll_into_view_if_needed()
        page.wait_for_timeout(800)
        page.screenshot(path=str(screenshot_dir / "soft_labels_phone.png"))
        widths = page.evaluate("""() => [document.scrollingElement,
            ...document.querySelectorAll('[data-testid="stMain"], [data-testid="stAppViewContainer"]')]
            .map(el => [el.scrollWidth, el.clientWidth])""")
        assert len(widths) >= 2 and all(scroll <= client for scroll, client in widths), widths
        charts = page.locator(f"{ROOT} svg.kdviz-chart")
        for i in range(charts.count()):
            assert charts.nth(i).bounding_box()["width"] <= 375
        assert page.locator(f"{ROOT} .kdviz-tick").first.evaluate("el => el.getBoundingClientRect().height") >= 10
        touch_drag(context, page)
        page.set_viewport_size({"width": 375, "height": 3400})
        page.wait_for_timeout(800)
        page.screenshot(path=str(screenshot_dir / "soft_labels_phone_full.png"), full_page=True)
    finally:
        context.close()
