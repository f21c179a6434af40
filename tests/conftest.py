"""Shared fixtures: a private KDVIZ_HOME for every test, a live Streamlit server and a headless Chromium."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(autouse=True)
def kdviz_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own KDVIZ_HOME: it never reads or writes a user's cached teachers and runs."""
    home = tmp_path_factory.mktemp("kdviz-home")
    monkeypatch.setenv("KDVIZ_HOME", str(home))
    return home


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """`streamlit run app.py` on a free loopback port with its own KDVIZ_HOME; yields the base URL."""
    home = tmp_path_factory.mktemp("server-home")
    port = _free_port()
    env = {**os.environ, "KDVIZ_HOME": str(home), "PYTHONPATH": str(ROOT)}
    log = open(home / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            break
        except OSError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail(f"streamlit did not start: {(home / 'server.log').read_text()[-2000:]}")
    yield url
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright (never a downloaded browser); skips where chromium is missing."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
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
