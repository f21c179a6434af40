"""Speed of the image explorer: the gallery of 60 thumbnails, and the reaction to picking an image.

Targets (issue 5): the gallery renders in ≤ 1 s after the first load (thumbnails cached); picking an image updates
the charts in ≤ 200 ms server side. Server side = the script run alone, timed inside Streamlit's ScriptRunner while
AppTest drives the page in a fresh interpreter (so the first load pays every import). Unless --no-browser, the same
is measured end to end in Chromium against a real server. The models have the real sizes: a stand-in for the default
teacher (its MLP 784-1200-1200-10, trained one epoch) and a finished run with the lecture preset's student (800-800).
Usage: .venv/bin/python bench/bench_image_explorer.py [--reruns 15] [--no-browser]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.appserver import app_server, launch_chromium  # noqa: E402
PAGE = "pages/image_explorer.py"
GALLERY_TARGET_S, PICK_TARGET_S = 1.0, 0.200

APPTEST_SCRIPT = textwrap.dedent("""
    import io, json, statistics, time
    import numpy as np
    from PIL import Image, ImageDraw
    from streamlit.testing.v1 import AppTest

    from script_timer import script_times  # times every script run from here on

    def measure(change, n):
        out = []
        for i in range(n + 2):  # two warm-up runs
            change(i)
            at.run()
            assert not at.exception, at.exception
            out.append(script_times[-1])
        return out[2:]

    at = AppTest.from_file({app!r}, default_timeout=300)
    start = time.perf_counter()
    at.switch_page({page!r}).run()
    first = time.perf_counter() - start
    assert not at.exception, at.exception
    thumbnails = lambda: [b for b in at.button if str(b.key).startswith("ie.pick.5.")]
    assert len(thumbnails()) == 60
    figures = {{"first": first, "first_script": script_times[-1]}}
    orders = ["mixed", "index"]
    figures["gallery"] = measure(lambda i: at.selectbox(key="ie.order").set_value(orders[i % 2]), {reruns})
    assert len(thumbnails()) == 60
    figures["pick"] = measure(lambda i: thumbnails()[(7 * i + 3) % 60].click(), {reruns})
    temperatures = [1.0, 2.0, 4.0, 10.0, 20.0]
    figures["temperature"] = measure(lambda i: at.select_slider(key="ie.temperature").set_value(
        temperatures[i % 5]), {reruns})
    at.segmented_control(key="ie.section").set_value("dark")
    at.run()
    figures["cell"] = measure(lambda i: at.selectbox(key="ie.cell_other").set_value((i % 9) + 1), {reruns})

    from kdviz.views import images

    from kdviz import ui
    data = ui.dataset("mnist5k")
    pixels = data.to_pixels(data.test_x)
    start = time.perf_counter()
    [images.to_png(p, 3) for p in pixels[:60]]
    figures["thumbnails_uncached"] = time.perf_counter() - start
    start = time.perf_counter()
    ui.explorer_thumbnails("mnist5k", 3)
    figures["thumbnails_cached"] = time.perf_counter() - start

    photo = Image.new("RGB", (4000, 3000), "white")
    ImageDraw.Draw(photo).line([(900, 600), (1500, 2400)], fill="black", width=90)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=85)
    start = time.perf_counter()
    images.prepare(buffer.getvalue(), "mnist5k", (1, 28, 28))
    figures["upload_12mp"] = time.perf_counter() - start
    print(json.dumps(figures))
""")


def prepare_home(home: Path) -> None:
    """The stand-in default teacher, cached under the default teacher's key, and one finished run on mnist5k."""
    os.environ["KDVIZ_HOME"] = str(home)
    from kdviz.runs.manager import RunManager
    from kdviz.core.presets import DEFAULT_TEACHER, get_preset
    from kdviz.runs.store import RunStore
    from kdviz.core.teachers import get_teacher, save_teacher

    model, summary = get_teacher(dataclasses.replace(DEFAULT_TEACHER, epochs=1, augment=0), "cpu")
    save_teacher(DEFAULT_TEACHER, model, summary)
    manager = RunManager(RunStore(home / "runs"))
    config = dataclasses.replace(get_preset("lecture"), teacher=DEFAULT_TEACHER, epochs=2, device="cpu")
    run_id = manager.submit(config, "bench")
    while manager.get(run_id).live:
        time.sleep(0.2)
    assert manager.get(run_id).state == "completed", manager.get(run_id).message


def apptest_figures(home: Path, reruns: int) -> dict:
    script = APPTEST_SCRIPT.format(app=str(ROOT / "app.py"), page=PAGE, reruns=reruns)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}", "KDVIZ_HOME": str(home)}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"AppTest run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


SOURCES = "() => [...document.querySelectorAll('[data-testid=stImage] img')].map(i => i.src).join(' ')"
ALL_LOADED = ("(old) => { const imgs = [...document.querySelectorAll('[data-testid=stImage] img')];"
              " return imgs.length >= 61 && imgs.map(i => i.src).join(' ') !== old"
              " && imgs.every(i => i.complete && i.naturalWidth > 0); }")


def browser_figures(home: Path, visits: int = 3) -> dict:
    """Chromium against a real server: navigation until all 60 thumbnails are loaded (a cold server, then warm
    visits); the gallery redrawn with new thumbnails after the order changes; a click on a thumbnail until the page
    shows the new image number."""
    from playwright.sync_api import sync_playwright

    with app_server(home) as url:
        loads, orders, picks = [], [], []
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            context = browser.new_context(viewport={"width": 1400, "height": 1100})  # one browser cache, as a user's
            for visit in range(visits):
                page = context.new_page()
                start = time.perf_counter()
                page.goto(url + "/image_explorer")
                page.wait_for_function(ALL_LOADED, arg="", timeout=300_000, polling=20)
                loads.append(time.perf_counter() - start)
                if visit < visits - 1:
                    page.close()
            page.get_by_text("Compare the teacher with").wait_for()
            for order in ("test-set order", "most unsure first", "a few of each class", "test-set order",
                          "most unsure first", "a few of each class"):
                before = page.evaluate(SOURCES)
                page.get_by_role("combobox").nth(2).click()  # dataset, true class, order
                start = time.perf_counter()
                page.get_by_role("option", name=order, exact=True).click()
                page.wait_for_function(ALL_LOADED, arg=before, timeout=30_000, polling=10)
                orders.append(time.perf_counter() - start)
            for label in ("3", "7", "5", "9"):  # the thumbnails' buttons say their class; each is a new image
                time.sleep(0.5)  # let the previous rerun settle (its buttons are replaced)
                button = page.get_by_role("button", name=label, exact=True).first
                before = page.locator("input[type=number]").input_value()
                start = time.perf_counter()
                button.click()
                page.wait_for_function("(old) => document.querySelector('input[type=number]').value !== old",
                                       arg=before, polling=10, timeout=20_000)
                picks.append(time.perf_counter() - start)
            browser.close()
        return {"loads": loads, "orders": orders, "picks": picks}


def line(what: str, times: list[float], target: float | None = None) -> None:
    median = statistics.median(times)
    verdict = "" if target is None else \
        f": {'meets' if median <= target else 'MISSES'} the target of {target * 1000:.0f} ms"
    print(f"{what}: median {median * 1000:.0f} ms (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, "
          f"n = {len(times)}){verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reruns", type=int, default=15)
    parser.add_argument("--no-browser", action="store_true", help="skip the real-server measurement")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kdviz-bench-explorer-"))
    try:
        start = time.perf_counter()
        prepare_home(home)
        print(f"set-up (stand-in teacher + one run): {time.perf_counter() - start:.1f} s")
        figures = apptest_figures(home, args.reruns)
        print(f"first load in a fresh interpreter (imports, dataset, every model's test logits, thumbnails): "
              f"script {figures['first_script']:.2f} s, AppTest.run() {figures['first']:.2f} s")
        line("gallery of 60 thumbnails re-rendered (order changed), server side", figures["gallery"],
             GALLERY_TARGET_S)
        line("pick an image → charts, server side", figures["pick"], PICK_TARGET_S)
        line("move the temperature slider, server side", figures["temperature"])
        line("dark knowledge: choose a heatmap cell, server side", figures["cell"])
        print(f"60 thumbnails as PNG: {figures['thumbnails_uncached'] * 1000:.1f} ms to render, "
              f"{figures['thumbnails_cached'] * 1000:.2f} ms from the cache (all 1000 of the test set)")
        print(f"upload of a 12-megapixel JPEG, decoded and preprocessed: {figures['upload_12mp'] * 1000:.0f} ms")
        if not args.no_browser and shutil.which("chromium"):
            browser = browser_figures(home)
            cold, *warm = browser["loads"]
            print(f"Chromium, navigation → all 60 thumbnails loaded: cold server {cold:.2f} s; warm visits "
                  + ", ".join(f"{t:.2f} s" for t in warm)
                  + " (a new tab: the app's JavaScript boots, then the page runs)")
            line("Chromium, gallery redrawn with 60 new thumbnails after the order changes", browser["orders"],
                 GALLERY_TARGET_S)
            line("Chromium, click on a thumbnail → the page shows the new image (end to end)", browser["picks"])
        elif not args.no_browser:
            print("Chromium: skipped (chromium is not installed)")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
