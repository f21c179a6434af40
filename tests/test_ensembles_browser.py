"""The ensembles page in a real Chromium, on small settings, with a screenshot (the compression & energy page:
tests/test_finished_run_browser.py)."""
from __future__ import annotations

import re

import pytest

from tests.support.appserver import ERRORS

pytestmark = pytest.mark.browser


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
