"""Training speed inside the app (run manager + live charts in Chromium) vs the CLI, same config, side by side."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.appserver import app_server, launch_chromium  # noqa: E402


def cli_run(env: dict, preset: str) -> dict:
    """`python -m kdviz distill` once; returns the engine's training seconds and the command's wall time."""
    out = Path(env["KDVIZ_HOME"]) / "cli.json"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kdviz", "distill", "--preset", preset, "--seeds", "0", "--json", str(out)],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    result = json.loads(out.read_text())
    return {"train": result["runs"][0]["seconds"], "wall": wall, "kd": result["runs"][0]["kd"]["accuracy"]}


def app_run(page, url: str, home: Path, preset_label: str | None) -> dict:
    """Start the preset from the live page, wait for it to complete while the charts redraw, read its timings."""
    page.goto(url + "/live_distillation")
    page.get_by_role("button", name="Start run").wait_for(timeout=120_000)
    if preset_label:
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Preset").click()
        page.get_by_role("option", name=preset_label).click()
        page.wait_for_timeout(1500)
    page.get_by_role("button", name="Start run").click()
    page.get_by_text(": completed").wait_for(timeout=600_000)
    run_id = page.url.split("run=")[1].split("&")[0]
    status = json.loads((home / "runs" / run_id / "status.json").read_text())
    events = [json.loads(line) for line in (home / "runs" / run_id / "events.jsonl").read_text().splitlines()]
    wall = events[-1]["t"] - events[0]["t"]
    return {"train": status["summary"]["seconds"], "wall": wall, "kd": status["summary"]["kd"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="lecture")
    parser.add_argument("--preset-label", default=None, help="the preset's label in the page's selectbox")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="kdviz-bench-live-"))
    env = {**os.environ, "KDVIZ_HOME": str(home), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "kdviz", "prepare"], cwd=ROOT, env=env, check=True, capture_output=True)
    cli, app = [], []
    try:
        with app_server(home) as url, sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for repeat in range(args.repeats):  # interleaved, so that machine noise hits both alike
                cli.append(cli_run(env, args.preset))
                app.append(app_run(page, url, home, args.preset_label))
                print(f"repeat {repeat}: CLI train {cli[-1]['train']:.2f} s, app train {app[-1]['train']:.2f} s "
                      f"(same KD accuracy: {cli[-1]['kd'] == app[-1]['kd']})", flush=True)
            browser.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    median = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    slowdown = median(app, "train") / median(cli, "train")
    print(f"\npreset {args.preset}, median of {args.repeats}:")
    print(f"  training loop: CLI {median(cli, 'train'):.2f} s, app {median(app, 'train'):.2f} s → "
          f"app/CLI = {slowdown:.3f} (target ≤ 1.10: {'PASS' if slowdown <= 1.10 else 'FAIL'})")
    print(f"  whole run, teacher cached: CLI command {median(cli, 'wall'):.2f} s (incl. Python start-up), "
          f"app run {median(app, 'wall'):.2f} s (target ≤ 20 s: {'PASS' if median(app, 'wall') <= 20 else 'FAIL'})")


if __name__ == "__main__":
    main()
