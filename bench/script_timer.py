"""Times Streamlit's script runs (the server-side work of a rerun) for benchmarks that drive a page with AppTest."""
import time

from streamlit.runtime.scriptrunner.script_runner import ScriptRunner

script_times: list[float] = []  # seconds of each ScriptRunner._run_script, in the script thread
_run_script = ScriptRunner._run_script


def _timed(self, rerun_data):
    start = time.perf_counter()
    try:
        return _run_script(self, rerun_data)
    finally:
        script_times.append(time.perf_counter() - start)


ScriptRunner._run_script = _timed
