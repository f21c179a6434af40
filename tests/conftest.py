"""Shared fixtures and helpers: a private KDVIZ_HOME for every test, a live Streamlit server, a headless Chromium,
bounded waits (wait_until, wait_for_run) and run managers that are always shut down (make_manager).

Browser tests (marked `browser`) need Debian's chromium. Without it they FAIL with the command that installs it;
they are skipped only when asked for with KDVIZ_SKIP_BROWSER=1, and then the summary line says so.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.support.appserver import app_server as app_server_process
from tests.support.appserver import launch_chromium

ROOT = Path(__file__).resolve().parents[1]
SKIP_BROWSER_VARIABLE = "KDVIZ_SKIP_BROWSER"
BROWSER_SKIPPED = "browser tests skipped: KDVIZ_SKIP_BROWSER=1"
BROWSER_SKIPPED_CATEGORY = "skipped browser tests (KDVIZ_SKIP_BROWSER=1)"
NO_CHROMIUM = ("chromium is not installed, so the browser tests cannot run. Install Debian's package with "
               "`sudo apt-get install -y chromium` (never `playwright install`), or skip them on purpose with "
               "KDVIZ_SKIP_BROWSER=1.")


def browser_tests_skipped() -> bool:
    """True only when the user asked for it: KDVIZ_SKIP_BROWSER=1."""
    return os.environ.get(SKIP_BROWSER_VARIABLE, "").strip() == "1"


# ---- two workers (pytest-xdist): a module's tests stay together --------------------------------------------------

# Modules that start a Ray cluster share one worker: two clusters at once on a 2-core machine fight for its cores
# and memory. Every other module is a group of its own, so its module- and session-scoped servers start once.
RAY_MODULES = {"test_ray_executor", "test_present_ray", "test_replicas"}
# The longest of the other modules, each run alone on 2 cores (30 s to several minutes): handed out after the Ray and
# browser groups and before the short ones, so that no long group starts last while the other worker idles.
SLOW_MODULES = {"test_budget_memory", "test_ddp", "test_live_page", "test_hall_load", "test_cli", "test_run_manager",
                "test_ensemble", "test_missing_class", "test_capacity", "test_engine"}


def group_of(nodeid: str) -> str:
    """The group a test runs in, on one worker: "ray" for the Ray modules, else its module's path."""
    module = nodeid.split("::", 1)[0]
    return "ray" if Path(module).stem in RAY_MODULES else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's per-file scheduling (--dist loadfile) with the Ray modules as one group. Not --dist loadgroup with
    xdist_group marks: xdist 3.8 marks a group by rewriting the test's node id, which pytest 9.2 no longer reads
    (pytest-dev/pytest-xdist#1386), so every test was handed out alone, module fixtures started on both workers and
    two Ray clusters ran at once."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return ModuleGroups(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()) and item.get_closest_marker("browser") is None:
            item.add_marker(pytest.mark.browser)  # a test that drives Chromium is a browser test, marked or not
        if browser_tests_skipped() and item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.skip(reason=BROWSER_SKIPPED))
    # the longest groups first (the Ray modules, the browser modules, the slow ones), so that two workers finish
    # together; the scheduler hands groups out in the order their first test comes (--no-loadscope-reorder in
    # pytest.ini: by default it sorts them by number of tests)
    items.sort(key=lambda item: 0 if item.path.stem in RAY_MODULES else 1 if item.get_closest_marker("browser")
               else 2 if item.path.stem in SLOW_MODULES else 3)


# ---- browser tests: marked, skipped only on request, and said so in the summary --------------------------------

def pytest_report_teststatus(report, config):
    """Skipped browser tests get their own word in the summary line ("3 skipped browser tests (...)")."""
    if report.skipped and report.when == "setup" and isinstance(report.longrepr, tuple) \
            and BROWSER_SKIPPED in str(report.longrepr[2]):
        return BROWSER_SKIPPED_CATEGORY, "s", "SKIPPED (KDVIZ_SKIP_BROWSER=1)"
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = len(terminalreporter.stats.get(BROWSER_SKIPPED_CATEGORY, []))
    if skipped:
        terminalreporter.section("browser tests NOT run", sep="=", yellow=True, bold=True)
        terminalreporter.write_line(f"{BROWSER_SKIPPED}: {skipped} browser test(s) did not run. Unset "
                                    f"{SKIP_BROWSER_VARIABLE} to run them (they need Debian's chromium: "
                                    "apt-get install -y chromium).", yellow=True, bold=True)


# ---- bounded waits ---------------------------------------------------------------------------------------------


def run_async(coroutine):
    """asyncio.run on a thread of its own: a Playwright browser an earlier module left open holds an event loop on
    this thread, where asyncio.run refuses to start a second one."""
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def wait_for_async(predicate, timeout: float, what: str, interval: float = 0.2):
    """wait_until for coroutines: poll predicate() every interval s, fail the test after timeout s."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}", pytrace=False)
        await asyncio.sleep(interval)


def wait_until(predicate: Callable[[], object], timeout: float = 60.0, what: str | Callable[[], str] = "a condition",
               interval: float = 0.05, sleep: Callable[[float], None] = time.sleep):
    """Poll predicate until it returns something truthy and return that; fail the test after timeout seconds.

    what names the awaited thing in the failure message (a callable is asked only then, e.g. for the current state);
    sleep lets a browser test wait with page.wait_for_timeout so Playwright keeps serving its events.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            description = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout:g} s waiting for {description}", pytrace=False)
        sleep(interval)


APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_app_page(path: str, timeout: float = 60):
    """An AppTest of one page through app.py's router, on a fresh run manager; a generator for a fixture to yield
    from (it shuts the manager and the background tasks down afterwards).

    The page is switched to before the first run, as a link to it opens it: the home page never runs, so it never
    starts training the default teacher in the background (tens of seconds of CPU, and it holds the server's one
    training worker, so a run the test starts would wait behind it)."""
    from streamlit.testing.v1 import AppTest

    from kdviz import ui
    from kdviz.runs import tasks

    ui.run_manager.clear()
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.switch_page(path).run()
    assert not at.exception, [e.value for e in at.exception]
    yield at
    ui.run_manager().shutdown()
    tasks.stop_all_tasks()


PAGE_RERUN_WHILE_TRAINING_S = 2.0


def rerun_until(page, predicate, timeout: float = 120.0, what: str | Callable[[], str] = "a condition"):
    """Rerun an AppTest page until predicate(page) holds and return that; fail on any exception on the way.

    While a run of the page's manager is live the page is rerun every PAGE_RERUN_WHILE_TRAINING_S, not back to back:
    a rerun holds this interpreter (the GIL), where the run trains, so back-to-back reruns slowed the very run they
    waited for (a two-teacher ensemble run: 30-40 % more wall and CPU time, measured side by side)."""
    from kdviz import ui

    last_rerun = [-PAGE_RERUN_WHILE_TRAINING_S]

    def check():
        training = any(run.live for run in ui.run_manager().list_runs())
        if training and time.monotonic() - last_rerun[0] < PAGE_RERUN_WHILE_TRAINING_S:
            return False
        last_rerun[0] = time.monotonic()
        page.run()
        assert not page.exception, [e.value for e in page.exception]
        return predicate(page)

    return wait_until(check, timeout, what=what, interval=0.2)


def wait_run_completed(page, what: str, timeout: float = 120.0) -> None:
    """Rerun an AppTest page until its run's heading says completed; fail on any exception on the way."""
    rerun_until(page, lambda page: any(": completed" in h.value for h in page.subheader), timeout, what)


def experiment_config(module, argv: list[str], distill_config=None, device: str | None = None):
    """An experiment's config as `python -m kdviz experiment NAME ...` builds it from the experiment's own flags
    (argv), on distill_config (what the preset and its flags give; None: the experiment's default)."""
    import argparse

    from kdviz import experiments
    from kdviz.core.flags import add_flags, given_flags

    parser, default = argparse.ArgumentParser(), module.default_config()
    add_flags(parser, default)
    given = given_flags(parser.parse_args(argv), type(default))
    return experiments.config_from_flags(module, given, distill_config, device)


def wait_for_run(manager, run_id: str, timeout: float = 120.0):
    """Wait until the run is no longer live (queued, running, paused) and return it; on timeout, fail the test with
    the run's state and message."""
    def finished():
        run = manager.get(run_id)
        assert run is not None, f"run {run_id} does not exist"
        return None if run.live else run

    def state() -> str:
        run = manager.get(run_id)
        return f"run {run_id} to finish (it is {run.state!r}, message {run.message!r})"

    return wait_until(finished, timeout, what=state, interval=0.1)


@pytest.fixture
def make_manager():
    """make_manager(...) → a RunManager(...) that is shut down at the end of the test, whatever happens."""
    from kdviz.runs.manager import RunManager

    managers = []

    def make(*args, **kwargs) -> RunManager:
        managers.append(RunManager(*args, **kwargs))
        return managers[-1]

    yield make
    for manager in reversed(managers):
        manager.shutdown()


@pytest.fixture(scope="session")
def _trained_teachers(tmp_path_factory) -> Path:
    """A KDVIZ_HOME of the session (one per xdist worker) where cache_trained_teacher trains each teacher once."""
    return tmp_path_factory.mktemp("trained-teachers")


@pytest.fixture
def cache_trained_teacher(_trained_teachers, kdviz_home):
    """cache_trained_teacher(config): config's teacher, trained for real the first time any test of the session asks
    for it, is copied into this test's KDVIZ_HOME, as a server that has trained it once has it cached. For tests about
    what a run or a page does with a teacher, not about training one (the quick preset's teacher costs 3-15 s of CPU
    each time, as many times as tests ask for it otherwise)."""
    from kdviz.core.teachers import get_teacher, teacher_path

    def cache(config) -> Path:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("KDVIZ_HOME", str(_trained_teachers))
            get_teacher(config)  # trained on the first call, read from the session's cache afterwards
            trained = teacher_path(config)
        target = kdviz_home / trained.relative_to(_trained_teachers)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(trained, target)
        return target

    return cache


@pytest.fixture(autouse=True)
def kdviz_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own KDVIZ_HOME: it never reads or writes a user's cached teachers and runs. Opening the
    lecture tour starts no background runs in a test unless the test asks (KDVIZ_TOUR_RUNS=auto)."""
    home = tmp_path_factory.mktemp("kdviz-home")
    monkeypatch.setenv("KDVIZ_HOME", str(home))
    monkeypatch.setenv("KDVIZ_TOUR_RUNS", "off")
    return home


def cache_default_teacher_stand_in(home: Path) -> None:
    """Cache a stand-in for the default teacher in home, under the default teacher's key: its architecture, trained
    for one epoch without augmentation (about 8 s of CPU, loading mnist5k included). A server on that home never
    trains the real one in the background (tens of seconds of CPU that hold its one training worker, so every run a
    browser test starts waits behind it), and a run with the lecture preset trains only its students. The home page's
    training of the default teacher is tested with AppTest (tests/test_home_page.py) and on a server of its own
    (tests/test_clean_stop.py)."""
    import dataclasses

    from kdviz.core.presets import DEFAULT_TEACHER
    from kdviz.core.teachers import get_teacher, save_teacher

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDVIZ_HOME", str(home))
        model, summary = get_teacher(dataclasses.replace(DEFAULT_TEACHER, epochs=1, augment=0), "cpu")
        save_teacher(DEFAULT_TEACHER, model, summary)


@pytest.fixture(scope="session")
def default_teacher_stand_in(tmp_path_factory) -> Callable[[Path], None]:
    """default_teacher_stand_in(home): cache_default_teacher_stand_in's teachers in home, trained once for the whole
    run (both xdist workers: the first trains, under a file lock, the other waits and copies) instead of once per
    server home."""
    import fcntl

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # this run's folder, above each worker's own
    trained = shared / "default-teacher-stand-in"

    def copy_into(home: Path) -> None:
        with open(shared / "default-teacher-stand-in.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not (trained / "done").exists():
                cache_default_teacher_stand_in(trained)
                (trained / "done").touch()
        shutil.copytree(trained / "teachers", home / "teachers", dirs_exist_ok=True)

    return copy_into


@pytest.fixture(scope="session")
def app_server(tmp_path_factory, default_teacher_stand_in):
    """`streamlit run app.py` on a free loopback port with its own KDVIZ_HOME; yields the base URL. The lecture tour
    starts no runs of its own there (KDVIZ_TOUR_RUNS=off): minutes of training would slow every other browser test.
    The default teacher is a cached stand-in (cache_default_teacher_stand_in), for the same reason."""
    home = tmp_path_factory.mktemp("server-home")
    default_teacher_stand_in(home)
    with app_server_process(home, home / "server.log", env={"KDVIZ_TOUR_RUNS": "off"}) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright (never a downloaded browser); without chromium the test fails with
    how to install it, unless KDVIZ_SKIP_BROWSER=1 asked for the browser tests to be skipped."""
    if browser_tests_skipped():
        pytest.skip(BROWSER_SKIPPED)
    if shutil.which("chromium") is None:
        pytest.fail(NO_CHROMIUM, pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


def select_option(page, label: str, option: str, tries: int = 4) -> None:
    """Pick option in the Streamlit selectbox whose label contains label, in Chromium.

    A click can land while the page reruns: the selectbox it opened is replaced and no list shows (a flake seen on a
    loaded CI machine). So each try waits for the app to be idle, opens the list, and if the option has not shown
    within 10 s closes it and tries again."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label)
    wanted = page.get_by_role("option", name=option)
    for attempt in range(tries):
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)
        box.click()
        try:
            wanted.wait_for(timeout=10_000)
        except Exception:
            if attempt == tries - 1:
                raise
            page.keyboard.press("Escape")
            continue
        wanted.click()
        return


def choose_quick_preset(page, timeout: float = 60.0) -> None:
    """Pick the quick preset in the Live page's form in Chromium and wait until the form shows its values: until the
    rerun has finished the lecture preset's form can still be on the page beside the new one (two "Epochs" fields)."""
    from kdviz.core.presets import get_preset

    select_option(page, "Preset", "digits 8×8, seconds on a laptop (offline)")
    epochs, wanted = page.get_by_label("Epochs", exact=True), str(get_preset("quick").epochs)
    def shows_quick() -> bool:  # every Epochs field read at once: one can appear between a count and a read
        return epochs.evaluate_all("fields => fields.map(field => field.value)") == [wanted]

    wait_until(shows_quick, timeout,
               what=lambda: f"the quick preset's form ({epochs.count()} Epochs fields)", interval=0.25,
               sleep=lambda seconds: page.wait_for_timeout(seconds * 1000))


@pytest.fixture
def screenshot_dir() -> Path:
    folder = ROOT / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def offline(monkeypatch):
    """No network: torchvision's downloads and any socket connection raise URLError / OSError at once."""
    import socket
    import urllib.error

    import torchvision.datasets.cifar
    import torchvision.datasets.mnist
    import torchvision.datasets.utils

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (the test's offline fixture)")

    for module in (torchvision.datasets.utils, torchvision.datasets.cifar, torchvision.datasets.mnist):
        for name in ("download_url", "download_and_extract_archive", "_urlretrieve"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", lambda self, *a, **k: refuse())
