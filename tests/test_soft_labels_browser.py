"""The soft-labels page in a real Chromium: keyboard on the temperature slider, bars that follow, lecture mode."""
from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

BARS = "document.querySelectorAll('.js-plotly-plot')[0]"  # the first chart on the page: hard vs soft labels


def bars_where(condition: str) -> str:
    """A wait_for_function predicate on the bar chart `c` that is false (not an error) while it is being redrawn."""
    return f"() => {{ const c = {BARS}; return !!(c && c.data && c.layout && ({condition})); }}"
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


def teacher_bars(page) -> list[str]:
    """The teacher's probabilities as the bar chart in the browser shows them."""
    return page.evaluate(f"() => {BARS}.data.find(trace => trace.name === 'teacher').customdata")


def server_log(tmp_path_factory):
    logs = sorted(tmp_path_factory.getbasetemp().glob("server-home*/server.log"))
    return logs[0] if logs else None


def test_temperature_slider_keyboard_and_lecture_mode(page, app_server, screenshot_dir, tmp_path_factory):
    log = server_log(tmp_path_factory)
    log_start = log.stat().st_size if log else 0
    page.goto(f"{app_server}/soft_labels", wait_until="domcontentloaded")
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    page.wait_for_function(bars_where("c.data.length === 3"), timeout=60_000)
    assert teacher_bars(page)[0] == "0.9996"

    slider = page.get_by_role("slider", name=re.compile("^Temperature"))
    slider.focus()
    for _ in range(10):  # 1 → 1.2 → 1.5 → 2 → 2.5 → 3 → 4 → 5 → 6 → 8 → 10
        page.keyboard.press("ArrowRight")
    page.wait_for_function(bars_where("c.data[1].customdata[0] === '0.4721'"), timeout=30_000)
    assert teacher_bars(page)[:2] == ["0.4721", "0.2121"]
    assert slider.get_attribute("aria-valuetext") == "10"
    page.wait_for_function("() => window.location.search.includes('temperature=10')", timeout=10_000)
    assert page.locator(ERRORS).count() == 0
    page.set_viewport_size({"width": 1400, "height": 2600})  # Streamlit scrolls inside the page: show it all
    page.locator(".js-plotly-plot").nth(3).wait_for()
    page.screenshot(path=str(screenshot_dir / "soft_labels.png"), full_page=True)

    page.get_by_text("Lecture mode").click()
    page.wait_for_function(bars_where("c.layout.font.size >= 20"), timeout=30_000)
    assert teacher_bars(page)[:2] == ["0.4721", "0.2121"]  # the state survived the full rerun
    assert page.locator(".js-plotly-plot").count() == 4 and page.locator(ERRORS).count() == 0
    page.wait_for_timeout(1500)  # let the explanations finish collapsing
    page.screenshot(path=str(screenshot_dir / "soft_labels_lecture.png"), full_page=True)
    for name in ("soft_labels.png", "soft_labels_lecture.png"):
        assert (screenshot_dir / name).stat().st_size > 20_000

    if log:  # nothing this journey did may warn or fail on the server
        written = log.read_text(errors="replace")[log_start:]
        assert not re.search(r"Traceback|Warning:|deprecat", written), written[-3000:]


def test_a_shared_link_restores_the_view(page, app_server):
    page.goto(f"{app_server}/soft_labels?source=custom&classes=cat,dog&teacher=1,3&student=0,0&label=dog"
              "&temperature=7&alpha=2", wait_until="domcontentloaded")
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    page.get_by_text("not on the slider").wait_for(timeout=30_000)  # T = 7 snapped to 8, with a notice
    page.get_by_text("outside 0 to 1").wait_for()
    page.wait_for_function(bars_where("c.data[1].x.join() === 'cat,dog'"), timeout=30_000)
    page.wait_for_function("() => window.location.search.includes('temperature=8')", timeout=10_000)
    assert "alpha=1" in page.url and page.locator(ERRORS).count() == 0
