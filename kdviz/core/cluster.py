"""The one way kdviz joins a Ray cluster (or starts a local Ray): the run executor and the shared presentation hub
both connect here, so the code they ship to the cluster (the kdviz package) and the settings are the same.

Joining a cluster is first tried in a short-lived subprocess with a time-out: ray.init has none, and a cluster that
cannot be reached, or that refuses this server's token (Ray 2.60's token authentication: "InvalidAuthToken", retried
every second), would otherwise hang the page for ever. A failure is the operator's ValueError naming the setting and
what to do, remembered for RETRY_AFTER_S so that every page load does not wait again.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

NAMESPACE = "kdviz"  # named actors (the presentation hub) live here: every replica of one hall finds the same ones
RETRY_AFTER_S = 60.0  # a cluster that refused is asked again this long after (it may have been starting)
SETTING = "KDVIZ_RAY_ADDRESS, server.toml ray_address"
TOKEN_HELP = ("this server must hold the cluster's token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the output of "
              "`ray get-auth-token` on the head (or RAY_AUTH_TOKEN_PATH to a file holding it; Ray's default is "
              "~/.ray/auth_token), then restart the server")
_PROBE = """
import sys, ray
ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False, configure_logging=False)
print("kdviz-probe-connected", flush=True)
ray.shutdown()
"""
_refused: dict[str, tuple[float, str]] = {}
_lock = threading.Lock()


def local(address: str | None) -> bool:
    """Whether address asks for a new local Ray (None, "", "local") rather than an existing cluster."""
    return address in (None, "", "local")


def connect(address: str | None = None, timeout_s: float | None = None, **init_kwargs):
    """ray, connected: to `address` ("auto", "host:6379", "ray://head:10001"), or a new local Ray for None / "" /
    "local"; init_kwargs go to ray.init (tests: num_cpus=2). A process already connected stays as it is.

    timeout_s (default: the server's ray_connect_timeout_s): how long an existing cluster may take to accept us;
    ValueError with the operator's message if it does not."""
    import ray

    import kdviz

    if ray.is_initialized():
        return ray
    if not local(address):
        check_reachable(address, timeout_s)
    env = {key: value for key, value in os.environ.items() if key == "KDVIZ_THREADS"}  # the same sums
    runtime_env = {"py_modules": [str(Path(kdviz.__file__).parent)], "env_vars": env}
    ray.init(address=None if local(address) else address, runtime_env=runtime_env, namespace=NAMESPACE,
             include_dashboard=False, log_to_driver=False, configure_logging=False, **init_kwargs)
    return ray


def check_reachable(address: str, timeout_s: float | None = None) -> None:
    """Join the cluster at address from a subprocess (this process's environment: its token) and leave; ValueError
    saying why not within timeout_s. A refusal is remembered for RETRY_AFTER_S."""
    with _lock:
        refused = _refused.get(address)
        if refused and time.monotonic() - refused[0] < RETRY_AFTER_S:
            raise ValueError(refused[1])
    if timeout_s is None:
        from kdviz.core.settings import setting

        timeout_s = setting("ray_connect_timeout_s")
    problem = _probe(address, timeout_s)
    with _lock:
        if problem is None:
            _refused.pop(address, None)
            return
        _refused[address] = (time.monotonic(), problem)
    raise ValueError(problem)


def _probe(address: str, timeout_s: float) -> str | None:
    """None if a subprocess joined the cluster at address within timeout_s; else the operator's message."""
    process = subprocess.Popen([sys.executable, "-c", _PROBE, address], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
                               env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        timed_out = True
    else:
        timed_out = False
    if not timed_out and "kdviz-probe-connected" in output:
        return None
    return refusal_message(address, output, timeout_s if timed_out else None)


def refusal_message(address: str, output: str, timed_out_s: float | None) -> str:
    """What the operator reads when the cluster at address cannot be used (output: what ray.init printed)."""
    where = f"the Ray cluster at {address!r} ({SETTING})"
    if "AuthToken" in output or "Authentication" in output or "UNAUTHENTICATED" in output:
        return f"{where} refuses this server (token authentication): {TOKEN_HELP}"
    lines = [line.strip() for line in output.splitlines() if line.strip() and "kdviz-probe" not in line]
    last = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
    said = f" (Ray said: {last[:300]})" if last else ""
    if timed_out_s is not None:
        return (f"{where} did not answer within {timed_out_s:g} s (KDVIZ_RAY_CONNECT_TIMEOUT_S){said}: check that "
                "`ray start --head` runs there and that the address is its GCS address (host:6379, or \"auto\" on "
                "the head's machine), or leave ray_address empty to start a local Ray")
    return (f"{where} cannot be joined{said}: check that `ray start --head` runs there and that the address is its "
            "GCS address (host:6379, or \"auto\" on the head's machine), or leave ray_address empty for a local Ray")
