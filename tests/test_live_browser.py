"""Live distillation in a real browser: start a run, watch the accuracy chart grow, leave and come back, stop."""
from __future__ import annotations

import pytest

from conftest import choose_quick_preset, wait_until

pytestmark = pytest.mark.browser

ACCURACY_POINTS = """() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const plot = plots.find(p => p.layout && p.layout.title
                          && /(^|>)(Validation|Test) accuracy($|<)/.test(String(p.layout.title.text)));
  if (!plot || !plot._fullData) return 0;  // _fullData: decoded arrays (plotly ships x as typed-array base64)
  return Math.max(0, ...plot._fullData.map(trace => (trace.x || []).length));
}"""


PROGRESS = """() => {  // the live run's progress bar: its width as a share of its track
  const bar = document.querySelector('.kdviz-live-progress-bar');
  return bar ? bar.getBoundingClientRect().width / bar.parentElement.getBoundingClientRect().width : -1;
}"""


def wait_for(page, predicate, timeout=90.0, what="a condition"):
    """The shared bounded wait, sleeping in Playwright (page.wait_for_timeout) so the page keeps being served."""
    return wait_until(predicate, timeout, what=lambda: f"{what} (the accuracy chart has "
                                                       f"{page.evaluate(ACCURACY_POINTS)} points)",
                      interval=0.25, sleep=lambda seconds: page.wait_for_timeout(seconds * 1000))


def test_watch_a_run_leave_the_page_come_back_and_stop(page, app_server, screenshot_dir):
    page.set_default_timeout(60_000)  # a fresh server imports torch on its first page
    page.goto(app_server + "/live_distillation")
    page.get_by_role("button", name="Start run").wait_for()
    choose_quick_preset(page)  # and wait until the form shows its values
    for label, value in (("Epochs", "500"), ("Batch size", "1")):  # a run long enough to leave and come back
        field = page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Enter")
        page.wait_for_timeout(800)
    page.get_by_role("button", name="Start run").click()

    first = wait_for(page, lambda: page.evaluate(ACCURACY_POINTS) >= 3, what="accuracy points")
    assert first
    before = page.evaluate(ACCURACY_POINTS)
    text = page.locator(".kdviz-live-progress-text").first.inner_text()
    wait_for(page, lambda: page.evaluate(ACCURACY_POINTS) > before + 2, what="more accuracy points")
    # while it trains, the browser draws the run from the live route (kdviz.routes): no Streamlit chart reruns
    assert page.locator(".kdviz-live-chart.js-plotly-plot").count() == 2
    assert 0 < page.evaluate(PROGRESS) <= 1, "a progress bar with some of its phase done"
    later = page.locator(".kdviz-live-progress-text").first.inner_text()
    assert "elapsed" in later and later != text, (text, later)  # it moved on, in the browser

    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Home").click()
    page.get_by_text("knowledge distillation you can see and change").wait_for()
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Live distillation").click()
    page.get_by_text(": running").wait_for(timeout=30_000)
    resumed = page.evaluate(ACCURACY_POINTS)
    wait_for(page, lambda: page.evaluate(ACCURACY_POINTS) > resumed, what="the run still running after a page switch")

    page.get_by_role("button", name="Stop (keeps what was measured)").click()
    page.get_by_text(": cancelled").wait_for(timeout=30_000)
    # the panel redraws once the run has stopped (the chart is briefly absent): nothing measured is lost by a stop
    wait_for(page, lambda: page.evaluate(ACCURACY_POINTS) >= resumed, timeout=30,
             what=f"the stopped run's accuracy chart with at least the {resumed} points measured before the stop")
    assert page.locator('[data-testid="stException"]').count() == 0
    page.set_viewport_size({"width": 1400, "height": 2200})
    page.wait_for_timeout(1000)
    page.screenshot(path=str(screenshot_dir / "live_distillation_stopped.png"), full_page=True)
