"""The why-it-works page in a real Chromium: run the gradient-variance experiment on a small setting, see its chart."""
from __future__ import annotations

import re

import pytest

from tests.support.appserver import ERRORS

pytestmark = pytest.mark.browser


def test_the_gradient_variance_experiment_in_the_browser(browser, app_server, screenshot_dir):
    context = browser.new_context(viewport={"width": 1400, "height": 1900})
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        page.goto(f"{app_server}/why_it_works")
        page.get_by_role("textbox", name="Measure after epochs").fill("0, 1, 5")
        page.get_by_role("textbox", name="Measure after epochs").press("Enter")
        page.wait_for_timeout(800)
        page.get_by_role("button", name="Run the experiment").click()
        page.get_by_text("completed").first.wait_for(timeout=120_000)
        page.locator(".js-plotly-plot").first.wait_for()
        page.wait_for_timeout(1500)
        assert page.locator(ERRORS).count() == 0
        assert "gradient-variance=" in page.url
        assert page.get_by_text("Gradient noise").count() >= 1
        page.screenshot(path=str(screenshot_dir / "why_gradient_variance.png"), full_page=True)
    finally:
        context.close()


def test_the_capacity_experiment_in_the_browser(browser, app_server, screenshot_dir):
    """A small grid typed into the form (5 small cells instead of the default's 10): the keyed tab bar keeps its tab
    through the reruns the fields cause."""
    context = browser.new_context(viewport={"width": 1400, "height": 1700})
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        page.goto(f"{app_server}/why_it_works")
        run = page.locator(".st-key-exp-run-capacity button")  # Streamlit's class for the widget's key
        run.wait_for(state="attached")
        page.get_by_role("tab", name="Student size and data").click()
        for label, value in (("Student widths", "16, 64"), ("Training images (0 = all)", "50, 300")):
            field = page.get_by_role("textbox", name=label)
            field.fill(value)
            field.press("Enter")
            page.wait_for_timeout(800)
        run.click()
        page.wait_for_timeout(1000)
        assert page.get_by_role("tab", name="Student size and data").get_attribute("aria-selected") == "true"
        try:
            page.get_by_text(re.compile(r"Run \S+: completed")).last.wait_for(timeout=150_000)
        finally:
            page.screenshot(path=str(screenshot_dir / "why_capacity.png"), full_page=True)
        page.wait_for_timeout(1500)
        assert page.locator(".js-plotly-plot").count() >= 2
        assert page.locator(ERRORS).count() == 0
        assert "capacity=" in page.url
    finally:
        context.close()
