"""The soft-labels widget's math (kdviz/ui/assets/kd.js) and number formats (formats.js) against kdviz.core.kd and
kdviz.views.soft_labels, in Chromium: every function, on many seeded random cases and on the edge cases.

Numbers agree when |js − py| ≤ 1e-9 · max(1, |py|): relative for large values (T²·KL reaches 1e10 at T = 100 with
logits ±1e4), absolute near zero (a KL of 1e-17 is rounding either way). Formats agree character for character.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from kdviz.core import kd
from kdviz.ui.components import ASSETS
from kdviz.views import soft_labels as sl

pytestmark = pytest.mark.browser
TOLERANCE = 1e-9
TERMS = ("hard_cross_entropy", "kl", "t2_kl", "soft_cross_entropy", "teacher_entropy", "total")


@pytest.fixture(scope="module")
def js(browser):
    """A blank page with kd.js and formats.js loaded as classic scripts (their `export`s stripped)."""
    context = browser.new_context()
    page = context.new_page()
    page.set_content("<!doctype html><title>kd.js</title>")
    for name in ("kd.js", "formats.js"):
        page.add_script_tag(content=re.sub(r"^export ", "", (ASSETS / name).read_text(), flags=re.MULTILINE))
    assert page.evaluate("() => typeof window.kdvizKD.lossTerms === 'function' && !!window.kdvizFormats")
    yield page
    context.close()


def cases(n: int = 400) -> list[dict]:
    """Seeded random examples (2–20 classes, logits up to ±1e4, T log-uniform in [0.1, 100], α in [0, 1]) and the
    edge cases: T = 0.1 with logits ±1e4, T = 100, equal logits, one class far ahead, two classes."""
    rng = np.random.default_rng(20150309)
    out = []
    for _ in range(n):
        classes = int(rng.integers(2, 21))
        scale = 10 ** rng.uniform(-2, 4)
        out.append({"teacher": (scale * rng.uniform(-1, 1, classes)).tolist(),
                    "student": (10 ** rng.uniform(-2, 4) * rng.uniform(-1, 1, classes)).tolist(),
                    "label": int(rng.integers(classes)), "temperature": float(10 ** rng.uniform(-1, 2)),
                    "alpha": float(rng.uniform(0, 1))})
    edges = [([1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], 0.1), ([1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], 100.0),
             ([2.0] * 5, [2.0] * 5, 0.1), ([3.0] * 4, [-1.0, 3, 2, -3], 100.0), ([1e4, 0, 0, 0], [0, 0, 0, 1e4], 0.1),
             ([1e4] + [-1e4] * 19, [-1e4] * 19 + [1e4], 0.1), ([5.0, -3, -5, -7], [-1.0, 3, 2, -3], 1.0),
             ([0.5, 0.25], [0.25, 0.5], 100.0), ([-1e4, 1e4], [-1e4, 1e4], 0.1)]
    for teacher, student, temperature in edges:
        for alpha in (0.0, 0.9, 1.0):
            out.append({"teacher": list(map(float, teacher)), "student": list(map(float, student)), "label": 0,
                        "temperature": temperature, "alpha": alpha})
    return out


JS_MATH = """cases => cases.map(({teacher, student, label, temperature: t, alpha}) => {
  const K = window.kdvizKD;
  return {logSoftmax: K.logSoftmax(teacher, t), softmax: K.softmax(teacher, t), studentSoftmax: K.softmax(student, t),
          entropy: K.entropy(student, t), kl: K.klDivergence(teacher, student, t),
          softCrossEntropy: K.softCrossEntropy(teacher, student, t), hardCrossEntropy: K.hardCrossEntropy(student, label),
          gradient: K.softGradient(teacher, student, t), unscaled: K.softGradient(teacher, student, t, false),
          terms: K.lossTerms(teacher, student, label, t, alpha)};
})"""


def python_math(case: dict) -> dict:
    teacher, student, t = case["teacher"], case["student"], case["temperature"]
    return {"logSoftmax": kd.log_softmax(teacher, t), "softmax": kd.softmax(teacher, t),
            "studentSoftmax": kd.softmax(student, t), "entropy": kd.entropy(student, t),
            "kl": kd.kl_divergence(teacher, student, t), "softCrossEntropy": kd.soft_cross_entropy(teacher, student, t),
            "hardCrossEntropy": kd.hard_cross_entropy(student, case["label"]),
            "gradient": kd.soft_gradient(teacher, student, t), "unscaled": kd.soft_gradient(teacher, student, t, False),
            "terms": kd.loss_terms(teacher, student, case["label"], t, case["alpha"])}


def assert_close(python, browser, where: str) -> None:
    python, browser = np.atleast_1d(np.asarray(python, dtype=float)), np.atleast_1d(np.asarray(browser, dtype=float))
    assert python.shape == browser.shape and np.all(np.isfinite(browser)), f"{where}: the browser gave {browser}"
    error = np.abs(browser - python) / np.maximum(1.0, np.abs(python))
    assert error.max() <= TOLERANCE, f"{where}: browser {browser} vs python {python} (error {error.max():.2e})"


def test_the_browser_computes_what_kdviz_core_kd_computes(js):
    every = cases()
    results = js.evaluate(JS_MATH, every)
    for case, result in zip(every, results):
        expected = python_math(case)
        where = f"T = {case['temperature']:g}, α = {case['alpha']:g}, {len(case['teacher'])} classes"
        for name in expected:
            if name == "terms":
                assert set(result["terms"]) == set(TERMS)
                for term in TERMS:
                    assert_close(expected["terms"][term], result["terms"][term], f"{where}: {term}")
            else:
                assert_close(expected[name], result[name], f"{where}: {name}")


def test_the_browser_rejects_what_kdviz_core_kd_rejects(js):
    errors = js.evaluate("""() => [() => kdvizKD.softmax([1, 2], 0), () => kdvizKD.softmax([1, 2], -1),
        () => kdvizKD.lossTerms([1, 2], [1, 2], 0, 1, 1.5), () => kdvizKD.hardCrossEntropy([1, 2], 2),
        () => kdvizKD.klDivergence([1, 2], [1, 2, 3])].map(f => { try { f(); return null } catch (e) { return e.message } })""")
    assert [bool(e) for e in errors] == [True] * 5
    assert "temperature must be" in errors[0] and "alpha must be in [0, 1]" in errors[2] and "same shape" in errors[4]


def format_values() -> list[float]:
    """Doubles across every range the formats switch at, exact ties (0.03125 = 1/32), the rounding edges next to
    1e-3 and 1e5, subnormals, zeros and negatives."""
    rng = np.random.default_rng(7)
    values = (10 ** rng.uniform(-12, 8, 600) * rng.choice([-1, 1], 600)).tolist()
    values += [0.0, -0.0, 1e-3, 0.00099995, 0.000999949, 9.9995e-4, 1e5, 99999.99995, 99999.99994, 0.03125,
               -0.03125, 0.00015625, 0.5, 2.5, 1.5, 0.125, 1e-300, 5e-324, 3.35e-4, 0.99961, 0.99995, 0.999949,
               8.337e-4, -2.5e-7, 123456.0, 3.2, 0.1660, 1.0, 100.0, 0.12, 1.2, 12.5, 0.1 + 0.2, 1 - 0.9, 1 - 0.99,
               6.103e-6, 9.5, 0.95, 999999.5, 1e16, 1.25e-5]
    return values


def test_the_browser_prints_numbers_as_kdviz_views_soft_labels_does(js):
    values = format_values()
    shown = js.evaluate("""([values, rules]) => values.map(x => {
        const F = window.kdvizFormats;
        return [x >= 0 ? F.formatProbability(x, rules) : null, F.formatValue(x, rules), F.formatMetric(x, rules),
                F.formatG(x), F.formatG(x, 2), F.formatG(x, 3), F.formatFixed(x, 4), F.formatScientific(x, 2)];
    })""", [values, sl.FORMATS])
    for x, got in zip(values, shown):
        expected = [sl.format_probability(x) if x >= 0 else None, sl.format_value(x), sl.format_metric(x), f"{x:g}",
                    f"{x:.2g}", f"{x:.3g}", f"{x:.4f}", f"{x:.2e}"]
        assert got == expected, f"{x!r}: browser {got} vs python {expected}"


@pytest.mark.parametrize("x", [0.03125, 0.00015625, 2.5e-5])
def test_ties_round_to_even_as_python_does(js, x):
    """JavaScript's toFixed rounds an exact tie away from zero; Python (and so the widget) to even."""
    assert js.evaluate("x => window.kdvizFormats.formatFixed(x, 4)", x) == f"{x:.4f}"
    assert js.evaluate("x => window.kdvizFormats.formatScientific(x, 3)", x) == f"{x:.3e}"


def test_curve_temperatures_survive_the_trip_to_the_browser(js):
    """The payload's numbers reach the browser as the same doubles (JSON carries the shortest round-trip text)."""
    payload = sl.widget_payload(sl.LECTURE, 1.0, 0.9)
    back = js.evaluate("values => values", payload["curve_temperatures"])
    assert back == payload["curve_temperatures"] and all(math.isfinite(t) for t in back)


# ---- the whole widget on a blank page (what Streamlit does: import the module, call it with a mount point) -------

MOUNT = """async ([js, css]) => {
  const module = await import(URL.createObjectURL(new Blob([js], {type: "text/javascript"})));
  const host = document.createElement("div");
  host.style.width = "1000px";
  document.body.replaceChildren(host);
  const shadow = host.attachShadow({mode: "open"});
  shadow.appendChild(Object.assign(document.createElement("style"), {textContent: css}));
  window.calls = [];
  window.mount = (data) => module.default({data, parentElement: shadow, key: "test", name: "kdviz.soft_labels",
                                           setStateValue: (name, value) => calls.push([name, value]),
                                           setTriggerValue: () => {}});
}"""


@pytest.fixture
def widget(browser):
    """A blank page (nothing to fetch) with the widget's module loaded; mount(payload) draws it in a shadow root."""
    from kdviz.ui.components import soft_labels_assets

    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_content("<!doctype html><title>widget</title><body></body>")
    page.evaluate(MOUNT, list(soft_labels_assets()))
    page.mount = lambda payload: page.evaluate("payload => { mount(payload); }", payload)
    yield page
    context.close()


def texts(page, selector: str) -> list[str]:
    return page.locator(selector).all_text_contents()


def test_only_a_released_slider_reaches_the_server(widget):
    widget.mount(sl.widget_payload(sl.LECTURE, 1.0, 0.9))
    slider = widget.locator("input[data-control=temperature]")
    slider.evaluate("input => { input.value = '20'; input.dispatchEvent(new Event('input')); }")  # T = 10
    assert texts(widget, ".kdviz-bar-label[data-series=teacher]")[:2] == ["0.4721", "0.2121"]
    assert widget.evaluate("calls") == []  # dragging: the browser only
    slider.evaluate("input => input.dispatchEvent(new Event('change'))")
    alpha = widget.locator("input[data-control=alpha]")
    alpha.evaluate("input => { input.value = '50'; input.dispatchEvent(new Event('input')); "
                   "input.dispatchEvent(new Event('change')); }")
    assert widget.evaluate("calls") == [["temperature", 10], ["alpha", 0.5]]
    assert alpha.get_attribute("aria-valuetext") == "0.5" and slider.get_attribute("aria-valuetext") == "10"


def test_a_readonly_widget_follows_the_presenter_and_sends_nothing(widget):
    widget.mount(sl.widget_payload(sl.LECTURE, 1.0, 0.9, panels=["bars", "losses"], controls=["temperature"],
                                   readonly=True))
    slider = widget.locator("input[data-control=temperature]")
    assert slider.is_disabled() and widget.locator("input[data-control=alpha]").count() == 0
    widget.evaluate("() => window.dispatchEvent(new CustomEvent('kdviz:follow', "
                    "{detail: {temperature: 10, alpha: 0.5}}))")
    assert texts(widget, ".kdviz-bar-label[data-series=teacher]")[:2] == ["0.4721", "0.2121"]
    assert widget.locator(".kdviz-sl").get_attribute("data-temperature") == "10"
    assert slider.get_attribute("aria-valuetext") == "10"
    slider.evaluate("input => input.dispatchEvent(new Event('change'))")
    assert widget.evaluate("calls") == []


def test_panels_and_series_are_the_payloads(widget):
    widget.mount(sl.widget_payload(sl.LECTURE, 1.0, 0.9, panels=["logits", "bars"], series=["label", "teacher"],
                                   controls=False))
    assert widget.locator("svg.kdviz-chart").evaluate_all("els => els.map(e => e.dataset.panel)") == ["logits", "bars"]
    bars = widget.locator('svg[data-panel="bars"] .kdviz-bar')
    assert sorted(set(bars.evaluate_all("els => els.map(e => e.dataset.series)"))) == ["label", "teacher"]
    logits = widget.locator('svg[data-panel="logits"] .kdviz-bar-label').all_text_contents()
    assert logits == ["5", "-3", "-5", "-7"] and widget.locator("input").count() == 0


def test_new_data_keeps_one_widget_and_the_sliders_focus(widget):
    payload = sl.widget_payload(sl.LECTURE, 1.0, 0.9)
    widget.mount(payload)
    widget.locator("input[data-control=temperature]").focus()
    widget.mount(payload | {"temperature": 10.0, "caption": "new"})  # the server moved T: its value wins
    assert texts(widget, ".kdviz-bar-label[data-series=teacher]")[0] == "0.4721"
    widget.mount(sl.widget_payload(sl.LECTURE, 10.0, 0.9, lecture=True))  # a new structure: rebuilt
    assert widget.locator(".kdviz-sl").count() == 1 and widget.locator(".kdviz-sl.kdviz-lecture").count() == 1
    focused = widget.evaluate("() => document.querySelector('div').shadowRoot.activeElement?.dataset.control")
    assert focused == "temperature"


@pytest.mark.parametrize("temperature, alpha", [(0.1, 0.0), (2.5, 0.37), (10.0, 0.9), (100.0, 1.0)])
def test_the_widget_prints_what_python_computes(widget, temperature, alpha):
    logits = sl.make_logits(["a", "b", "c", "d", "e"], [4, 1.5, -2, 0.25, 3], [-1, 2, 0.5, 3, -2], 4)
    widget.mount(sl.widget_payload(logits, temperature, alpha))
    view = sl.explore(logits, temperature, alpha)
    assert texts(widget, ".kdviz-bar-label[data-series=teacher]") == [sl.format_probability(p) for p in
                                                                       view.teacher_probs]
    assert texts(widget, ".kdviz-bar-label[data-series=student]") == [sl.format_probability(q) for q in
                                                                       view.student_probs]
    arrows = ["▲ " if u > 0 else "▼ " if u < 0 else "" for u in view.update]
    assert texts(widget, 'svg[data-panel="gradient"] .kdviz-bar-label') == [a + sl.format_value(u) for a, u in
                                                                            zip(arrows, view.update)]
    tiles = dict(zip(widget.locator(".kdviz-tile").evaluate_all("els => els.map(e => e.dataset.term)"),
                     texts(widget, ".kdviz-tile-value")))
    assert tiles == {term: sl.format_metric(view.losses[term]) for term in tiles} and len(tiles) == 5
    losses, fmt = view.losses, sl.format_value
    formula = (f"L = α·T²·KL + (1 − α)·CE = {alpha:g} × {fmt(losses['t2_kl'])} + {1 - alpha:.2g} × "
               f"{fmt(losses['hard_cross_entropy'])} = {fmt(losses['total'])}")
    assert texts(widget, ".kdviz-formula") == [formula]
    assert widget.locator(".kdviz-title").first.text_content() == f"Hard label vs soft labels at T = {temperature:g}"


def test_the_marks_the_ceiling_and_the_log_scale(widget):
    widget.mount(sl.widget_payload(sl.LECTURE, 4.0, 0.9, log_scale=True))
    assert texts(widget, 'svg[data-panel="curves"] .kdviz-mark') == ["T = 1", "T = 4"]
    assert texts(widget, ".kdviz-ceiling") == ["ln 4 = 1.386"]
    widget.mount(sl.widget_payload(sl.LECTURE, 1.0, 0.9, log_scale=True))  # ship's 6e-6 is drawn on a log axis
    assert texts(widget, 'svg[data-panel="curves"] .kdviz-mark') == ["T = 1", "T = 1"]  # the current one hidden
    assert widget.locator('svg[data-panel="curves"] .kdviz-mark').nth(1).get_attribute("visibility") == "hidden"
    ship = widget.locator('svg[data-panel="bars"] .kdviz-bar[data-series=teacher][data-class=ship]')
    assert float(ship.get_attribute("height")) > 10
    ticks = texts(widget, 'svg[data-panel="bars"] .kdviz-tick')
    assert "1" in ticks and any(t.startswith("10⁻") for t in ticks)


def test_extreme_logits_draw_no_nan(widget):
    extreme = sl.make_logits(["a", "b", "c"], [1e4, -1e4, 0], [-1e4, 1e4, 0], 0)
    for log_scale in (False, True):
        widget.mount(sl.widget_payload(extreme, 0.1, 0.5, log_scale=log_scale))
        html = widget.locator(".kdviz-sl").evaluate("el => el.outerHTML")
        assert not re.search(r"NaN|Infinity|undefined", html), re.search(r".{60}(NaN|Infinity|undefined)", html)
