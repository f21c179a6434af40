"""The ensembles and the compression & energy pages in a real Chromium, on small settings, with screenshots."""
from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


def test_the_ensembles_page_runs_a_two_teacher_ensemble(browser, app_server, screenshot_dir):
    context = browser.new_context(viewport={"width": 1400, "height": 2600})
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        page.goto(f"{app_server}/ensembles")
        page.get_by_text("Three teachers combined").first.wait_for()
        teachers = page.get_by_role("spinbutton", name=re.compile("Teachers"))
        teachers.fill("11")
        teachers.press("Enter")
        page.get_by_text(re.compile("2 to 10 teachers, got 11")).wait_for()
        assert page.get_by_role("button", name="Run the experiment").is_disabled()
        teachers.fill("2")
        teachers.press("Enter")
        page.wait_for_timeout(1000)
        page.get_by_role("button", name="Run the experiment").click()
        try:
            page.get_by_text(re.compile(r"Run \S+: completed")).wait_for(timeout=120_000)
            page.get_by_text("one student three ways").first.wait_for()
            page.wait_for_timeout(1500)
        finally:
            page.screenshot(path=str(screenshot_dir / "ensembles.png"), full_page=True)
        assert page.locator(ERRORS).count() == 0
        assert "ensemble=" in page.url
        assert page.get_by_text("best single teacher").count() >= 1
    finally:
        context.close()


def test_the_compression_page_measures_teacher_and_students(browser, app_server, screenshot_dir):
    context = browser.new_context(viewport={"width": 1400, "height": 3000})
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        page.goto(f"{app_server}/compression")
        page.get_by_text("more than a factor of two").first.wait_for()  # the case study, computed live
        page.get_by_text("estimate from a power figure I give").click()
        power = page.get_by_role("spinbutton", name=re.compile("Power"))
        power.fill("-5")
        power.press("Enter")
        page.get_by_text(re.compile("power must be")).first.wait_for()
        assert page.get_by_role("button", name="Run the experiment").is_disabled()
        power.fill("20")
        power.press("Enter")
        page.wait_for_timeout(1000)
        page.get_by_role("button", name="Run the experiment").click()
        try:
            page.get_by_text(re.compile(r"Run \S+: completed")).wait_for(timeout=180_000)
            page.get_by_text("Energy per million predictions").first.wait_for()
            page.wait_for_timeout(1500)
        finally:
            page.screenshot(path=str(screenshot_dir / "compression.png"), full_page=True)
        assert page.locator(ERRORS).count() == 0
        assert "compression=" in page.url
        assert page.locator(".js-plotly-plot").count() >= 4
        assert page.get_by_text("estimated").count() >= 1
    finally:
        context.close()
