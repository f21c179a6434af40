"""The home page in a real Chromium: it renders, shows no Streamlit error, and leaves a screenshot to look at."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

TITLE = "kdviz: knowledge distillation you can see and change"


def test_home_page_renders_without_errors(page, app_server, screenshot_dir):
    page.set_viewport_size({"width": 1400, "height": 1300})  # tall enough to show the status section too
    page.goto(app_server, wait_until="domcontentloaded")
    page.get_by_text(TITLE).wait_for(timeout=60_000)
    page.get_by_text("Device:").wait_for(timeout=60_000)  # the status fragment ran (it imports torch first)
    page.locator('[data-testid="stProgress"], [data-testid="stAlertContentSuccess"]').first.wait_for(
        timeout=30_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.title().startswith("kdviz")
    for text in ("teacher", "student", "temperature", "Soft labels & temperature", "Lecture mode"):
        assert page.get_by_text(text).first.is_visible(), text
    page.screenshot(path=str(screenshot_dir / "home.png"), full_page=True)
    assert (screenshot_dir / "home.png").stat().st_size > 10_000
