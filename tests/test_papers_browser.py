"""The When it fails page in Chromium: each later paper's experiment run on a small setting typed into its tab, its
charts and verdict drawn, at a projector's width, and a finished run's link opened on a phone (screenshots in
screenshots/papers_*.png, to be looked at)."""
from __future__ import annotations

import re

import pytest

from tests.support.appserver import ERRORS

pytestmark = pytest.mark.browser


TABS = {  # experiment → (its tab's label, the small setting typed into its form: (role, label, value))
    "capacity-gap": ("Capacity gap", [("textbox", "Teacher widths", "16, 64"),
                                      ("textbox", "Temperatures T", "4")]),
    "label-smoothing": ("Label smoothing", [("textbox", "Teachers' label smoothing ε", "0, 0.3"),
                                            ("textbox", "Students' temperatures T", "1, 20")]),
    "patient-consistent": ("Patient and consistent", [("textbox", "Report after epochs", "1, 2")]),
}


def _type(page, role: str, label: str, value: str) -> None:
    field = page.get_by_role(role, name=label)
    field.fill(value)
    field.press("Enter")
    page.wait_for_timeout(800)


def test_each_paper_runs_in_its_tab_and_a_finished_runs_link_opens_on_a_phone(browser, app_server, screenshot_dir):
    context = browser.new_context(viewport={"width": 1400, "height": 2200})
    page = context.new_page()
    page.set_default_timeout(90_000)
    links = {}
    try:
        page.goto(f"{app_server}/when_it_fails")
        for name, (tab, fields) in TABS.items():
            page.get_by_role("tab", name=re.compile(tab)).click()
            run = page.locator(f".st-key-exp-run-{name} button")  # Streamlit's class for the widget's key
            run.wait_for()
            for role, label, value in fields:
                _type(page, role, label, value)
            assert page.get_by_role("tab", name=re.compile(tab)).get_attribute("aria-selected") == "true"
            run.click()
            try:
                page.get_by_text(re.compile(r"Run \S+: completed")).last.wait_for(timeout=150_000)
                page.wait_for_timeout(1500)  # the charts draw
            finally:
                page.screenshot(path=str(screenshot_dir / f"papers_{name}.png"), full_page=True)
            panel = page.get_by_role("tabpanel")
            assert panel.locator(".js-plotly-plot").count() >= 1, name
            assert page.locator(ERRORS).count() == 0, name
            assert f"{name}=" in page.url
            links[name] = page.url
    finally:
        context.close()
    phone = browser.new_context(viewport={"width": 390, "height": 2400})
    page = phone.new_page()
    page.set_default_timeout(90_000)
    try:
        page.goto(links["label-smoothing"])  # as the hall opens a copied link: read-only, its tab open
        page.get_by_text(re.compile(r"Run \S+: completed")).last.wait_for()
        page.get_by_text("Viewing a shared run").first.wait_for(state="attached")
        page.get_by_role("tabpanel").locator(".js-plotly-plot").first.wait_for()  # in the link's tab
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")  # the script run has ended
        page.wait_for_timeout(1500)  # the charts draw
        assert page.locator(ERRORS).count() == 0
        assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # no sideways scrolling
        page.screenshot(path=str(screenshot_dir / "papers_label_smoothing_phone.png"), full_page=True)
    finally:
        phone.close()
