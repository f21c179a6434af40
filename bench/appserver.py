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
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
# Root, no network: without the background-networking flags Chromium keeps dialling out and being refused.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def app_server(home: Path, log_path: Path | None = None, timeout: float = 60.0) -> Iterator[str]:
    """`streamlit run app.py` with KDVIZ_HOME=home; yields the base URL once /_stcore/health answers."""
    port = free_port()
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    env = {**os.environ, "KDVIZ_HOME": str(home), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                "--server.address", "127.0.0.1", "--server.headless", "true"],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
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
        yield url
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
