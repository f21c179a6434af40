"""Run the kdviz app in a child process on a free loopback port, and drive it with Debian's Chromium (tests, bench)."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

ROOT = Path(__file__).resolve().parents[2]
# What a page shows when it went wrong: an exception, or an error alert (a browser test counts these: none expected)
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
# Root, no network: without the background-networking flags Chromium keeps dialling out and being refused.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A running app server: its base URL and the Popen of the process that was started (see server())."""

    def __init__(self, url: str, process: subprocess.Popen):
        self.url, self.process = url, process

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.contextmanager
def app_server(home: Path, log_path: Path | None = None, timeout: float = 60.0,
               env: dict[str, str] | None = None) -> Iterator[str]:
    """`streamlit run app.py` with KDVIZ_HOME=home (and env added); yields the base URL once /_stcore/health
    answers."""
    with server(home, log_path, timeout, env=env) as running:
        yield running.url


@contextlib.contextmanager
def server(home: Path, log_path: Path | None = None, timeout: float = 60.0, *, prefix: Sequence[str] = (),
           module: str = "streamlit", env: dict[str, str] | None = None,
           streamlit_args: Sequence[str] = (), root: Path = ROOT) -> Iterator[Server]:
    """app_server with more say over the process; yields a Server (url, process) once /_stcore/health answers.

    prefix goes before the interpreter (e.g. ["taskset", "-c", "0"]: it execs, so the pid stays the server's), module
    is what `python -m` runs with `run app.py ...` (e.g. "bench.hall_server"), env is added to the environment, and
    streamlit_args are appended to the command line (e.g. ["--browser.gatherUsageStats", "false"]), and root is the
    folder with app.py that the server runs in and imports from (e.g. a copy of the sources that nobody edits).
    """
    port = free_port()
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    env = {**os.environ, "KDVIZ_HOME": str(home), "PYTHONPATH": str(root), **(env or {})}
    process = subprocess.Popen([*prefix, sys.executable, "-m", module, "run", "app.py", "--server.port", str(port),
                                "--server.address", "127.0.0.1", "--server.headless", "true", *streamlit_args],
                               cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    detail = Path(log_path).read_text()[-2000:] if log_path else ""
                    raise RuntimeError(f"the app server did not start within {timeout:.0f} s {detail}") from None
                time.sleep(0.2)
        yield Server(url, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        if log_path:
            log.close()


def launch_chromium(playwright):
    """Debian's chromium (never a browser that Playwright downloads), headless, with the offline flags."""
    executable = shutil.which("chromium")
    if executable is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    return playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
