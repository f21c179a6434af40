"""Times Streamlit's script runs (the server-side work of a rerun) for benchmarks that drive a page with AppTest.

ScriptRunner._run_script is the script thread's whole handling of one rerun request: a full run of app.py and its
page, or a fragment rerun (rerun_data.fragment_id_queue, e.g. a run_every tick or a widget inside an @st.fragment),
including Streamlit's own bookkeeping after the script (widget state, sending the finished message). A request that is
interrupted by a newer one (RerunException) restarts inside the same call, so such a call times both.

`record_to(path)` (bench/hall_server.py) also appends one line per run to a file, for a server in another process.
"""
import threading
import time

from streamlit.runtime.scriptrunner.script_runner import ScriptRunner

script_times: list[float] = []  # seconds of each ScriptRunner._run_script, in the script thread
listeners: list = []  # callables (seconds, script_runner, rerun_data) called after each run; errors are ignored
_run_script = ScriptRunner._run_script


def _timed(self, rerun_data):
    start = time.perf_counter()
    try:
        return _run_script(self, rerun_data)
    finally:
        elapsed = time.perf_counter() - start
        script_times.append(elapsed)
        for listener in list(listeners):
            try:
                listener(elapsed, self, rerun_data)
            except Exception:  # noqa: BLE001 — timing must never break the app
                pass


def page_of(runner) -> str:
    """The url path of the page the runner's last script run drew ("" when unknown, e.g. before st.navigation)."""
    try:
        manager = runner._pages_manager
        return str(manager.get_pages().get(manager.current_page_script_hash, {}).get("url_pathname", ""))
    except Exception:  # noqa: BLE001
        return ""


def record_to(path: str) -> None:
    """Append `end_time<TAB>seconds<TAB>full|fragment<TAB>page<TAB>session` (end_time: epoch seconds; session: the
    Streamlit session's id, one per browser tab) to path for every script run."""
    lock = threading.Lock()
    sink = open(path, "a", buffering=1)

    def write(seconds, runner, rerun_data) -> None:
        kind = "fragment" if getattr(rerun_data, "fragment_id_queue", None) else "full"
        session = str(getattr(runner, "_session_id", ""))
        with lock:
            sink.write(f"{time.time():.3f}\t{seconds:.6f}\t{kind}\t{page_of(runner)}\t{session}\n")

    listeners.append(write)


ScriptRunner._run_script = _timed
