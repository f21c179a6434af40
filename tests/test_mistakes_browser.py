"""The common-mistakes switches in Chromium: the soft-labels page's numbers, and a live run with a third student,
at a projector's and a phone's width (screenshots in screenshots/mistakes_*.png, to be looked at)."""
from __future__ import annotations

import pytest

from conftest import choose_quick_preset, select_option, wait_until

pytestmark = pytest.mark.browser
VIEWPORTS = {"projector": {"width": 1280, "height": 2400}, "phone": {"width": 390, "height": 2400}}


def _scroll_to_top(page, text: str, exact: bool = True) -> None:
    """Scroll Streamlit's inner scrolling area so that the first element with this text is at the top."""
    page.get_by_text(text, exact=exact).first.evaluate("element => element.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)


def test_the_soft_labels_switch_shows_nan_beside_the_log_space_loss(browser, app_server, screenshot_dir):
    for name, viewport in VIEWPORTS.items():
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.set_default_timeout(60_000)
        if name == "projector":  # the switch, clicked
            page.goto(app_server + "/soft_labels?temperature=0.1")
            page.get_by_text("Pick a mistake to see its numbers").wait_for()
            select_option(page, "Common mistakes", "KL as p·(log p − log q) on probabilities")
        else:  # the link it writes, opened on a phone
            page.goto(app_server + "/soft_labels?temperature=0.1&mistake=naive-kl")
        page.get_by_text("gives nan where the log-space form gives 0.4000").wait_for()
        assert page.get_by_role("cell", name="nan").count() >= 1
        assert "mistake=naive-kl" in page.url
        _scroll_to_top(page, "Where the student is pushed" if name == "projector" else "Common mistakes")
        page.screenshot(path=str(screenshot_dir / f"mistakes_soft_labels_{name}.png"))
        context.close()


def test_a_live_run_with_a_mistake_draws_its_third_student(browser, app_server, screenshot_dir):
    context = browser.new_context(viewport=VIEWPORTS["projector"])
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(app_server + "/live_distillation")
    page.get_by_role("button", name="Start run").wait_for()
    choose_quick_preset(page)  # and wait until the form shows its values
    epochs = page.get_by_label("Epochs", exact=True)  # a short run: the third student's lines, not its accuracy
    epochs.fill("5")
    epochs.press("Enter")
    page.wait_for_timeout(800)
    select_option(page, "Common mistake", "T² left out")
    page.get_by_text("shrink like 1/T²").first.wait_for()
    page.get_by_role("button", name="Start run").click()
    page.get_by_text("makes a common mistake: T² left out").wait_for()
    wait_until(lambda: page.get_by_text(": completed").count() > 0, 240, what="the run to complete", interval=1.0,
               sleep=lambda seconds: page.wait_for_timeout(seconds * 1000))
    page.get_by_text("With the mistake “T² left out” the KD student made").wait_for()
    legend = page.locator(".js-plotly-plot .legend").all_text_contents()
    assert any("KD with the mistake" in text for text in legend), legend
    url = page.url
    _scroll_to_top(page, "Ran for", exact=False)
    page.screenshot(path=str(screenshot_dir / "mistakes_live_projector.png"))
    context.close()
    phone = browser.new_context(viewport=VIEWPORTS["phone"])  # the run's link, as a phone in the hall opens it
    page = phone.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_text("makes a common mistake: T² left out").wait_for()
    page.wait_for_timeout(2000)  # the charts draw
    _scroll_to_top(page, "Accuracy on")
    page.screenshot(path=str(screenshot_dir / "mistakes_live_phone.png"))
    phone.close()
