"""Shared fixtures: a private KDVIZ_HOME for every test, a live Streamlit server and a headless Chromium."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.appserver import app_server as app_server_process
from bench.appserver import launch_chromium

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def kdviz_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own KDVIZ_HOME: it never reads or writes a user's cached teachers and runs."""
    home = tmp_path_factory.mktemp("kdviz-home")
    monkeypatch.setenv("KDVIZ_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """`streamlit run app.py` on a free loopback port with its own KDVIZ_HOME; yields the base URL."""
    home = tmp_path_factory.mktemp("server-home")
    with app_server_process(home, home / "server.log") as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright (never a downloaded browser); skips where chromium is missing."""
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
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
