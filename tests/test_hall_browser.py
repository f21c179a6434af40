"""A lecture hall in real browsers: the address-bar link of a run shows it to anyone, read-only; only the browser
that started it (its identity is a cookie, never in the link) controls it, across reloads."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from conftest import choose_quick_preset, wait_until

pytestmark = pytest.mark.browser

IDENTITY_COOKIE = "kdviz_identity"
CONTROLS = re.compile(r"\b(Pause|Stop|Delete|Resume)\b")  # case-sensitive: the icons' names are lower case


def wait_for(page, predicate, timeout=60.0, what="a condition"):
    """The shared bounded wait, sleeping in Playwright so the page keeps being served."""
    return wait_until(predicate, timeout, what=what, interval=0.25,
                      sleep=lambda seconds: page.wait_for_timeout(seconds * 1000))


def identity(context) -> str | None:
    return next((cookie["value"] for cookie in context.cookies() if cookie["name"] == IDENTITY_COOKIE), None)


def controls(page):
    """Every run-control button on the page, hidden tabs included."""
    return page.locator("button").filter(has_text=CONTROLS)


def start_long_run(page, app_server) -> str:
    """The quick preset, made long (500 epochs of 400 images, batch size 4): still running while others look."""
    page.goto(app_server + "/live_distillation")
    page.get_by_role("button", name="Start run").wait_for()
    choose_quick_preset(page)  # and wait until the form shows its values
    for label, value in (("Epochs", "500"), ("Batch size", "4"), ("Training images (0 = all)", "400")):
        field = page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Enter")
        page.wait_for_timeout(800)
    page.get_by_role("button", name="Start run").click()
    wait_for(page, lambda: "run=" in page.url, what=lambda: f"?run= in the address bar (it is {page.url})")
    return parse_qs(urlparse(page.url).query)["run"][0]


def test_a_copied_link_shows_the_run_read_only_and_only_its_browser_controls_it(browser, app_server,
                                                                                screenshot_dir):
    lecturer = browser.new_context(viewport={"width": 1400, "height": 1800})  # tall: the run's panel in the shots
    student = browser.new_context(viewport={"width": 1400, "height": 1800})  # another browser: no shared cookies
    a, b = lecturer.new_page(), student.new_page()
    for page in (a, b):
        page.set_default_timeout(60_000)  # a fresh server imports torch on its first page
    stop = a.get_by_role("button", name="Stop (keeps what was measured)")
    try:
        run_id = start_long_run(a, app_server)
        # queued first when another module's run still holds this server's one worker (two test workers share the
        # machine's cores): its page says "running" once it starts
        a.get_by_text(f"Run {run_id}: running").wait_for(timeout=150_000)
        stop.wait_for()
        assert a.get_by_text("viewing a shared run").count() == 0

        token = wait_for(a, lambda: identity(lecturer), what="the identity cookie in the lecturer's browser")
        assert re.fullmatch(r"[0-9a-f]{64}", token)  # 32 random hex digits and their signature
        link = a.url
        assert token not in link and "owner=" not in link, link
        assert token not in a.content(), "the identity is in the page"  # not shown, not left in a script either

        b.goto(link)  # the link as copied from the address bar (or read off the projector)
        b.get_by_text(f"Run {run_id}").first.wait_for()
        b.get_by_text("viewing a shared run (read-only)").wait_for()
        b.wait_for_timeout(2000)  # a few redraws of the live panel: the controls must never appear
        assert controls(b).count() == 0, controls(b).all_inner_texts()
        assert b.get_by_text(f"Run {run_id}: running").count() == 1
        other = wait_for(b, lambda: identity(student), what="the identity cookie in the student's browser")
        assert other != token and token not in b.url and token not in b.content()
        assert b.locator('[data-testid="stException"]').count() == 0
        b.locator(".js-plotly-plot").first.wait_for()  # the charts have drawn: the screenshot shows the panel
        b.screenshot(path=str(screenshot_dir / "hall_student.png"), full_page=True)
        a.locator(".js-plotly-plot").first.wait_for()
        assert a.locator('[data-testid="stException"]').count() == 0
        a.screenshot(path=str(screenshot_dir / "hall_lecturer.png"), full_page=True)

        a.reload()  # the lecturer's browser keeps its identity (the cookie) and so the run's controls
        a.get_by_text(f"Run {run_id}: running").wait_for()
        stop.wait_for()
        assert identity(lecturer) == token and "owner=" not in a.url
        assert a.locator(".kdviz-identity").count() == 0  # the server read the cookie: no script to set it again
        assert a.get_by_text("viewing a shared run").count() == 0
    finally:
        if stop.count():  # leave the server's worker free for the next test, whatever happened
            stop.click()
            a.get_by_text(": cancelled").first.wait_for(timeout=30_000)
        student.close()
        lecturer.close()
