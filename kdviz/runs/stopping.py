"""Clean stops: when the process exits, background training stops at its next step and live runs end interrupted.

Ctrl-C or SIGTERM on `streamlit run` makes Streamlit stop its server and return, and any script simply returns; then
the interpreter tears itself down. A daemon thread still inside torch at that moment makes the C++ runtime abort
("terminate called without an active exception", SIGABRT, and the runs' last state never written). So at exit
(atexit, which runs before the teardown while daemon threads still run) every background task and every run manager
of this process is stopped, and their threads are waited for, for at most STOP_TIMEOUT_S.
"""
from __future__ import annotations

import atexit
import threading
import time
import weakref

STOP_TIMEOUT_S = 3.0  # Streamlit's own stop takes about a second; the whole exit stays under 5 s

_managers: "weakref.WeakSet" = weakref.WeakSet()
_guard = threading.Lock()


def register(manager) -> None:
    """A run manager to shut down at exit (held weakly: a manager a test dropped is not kept alive)."""
    with _guard:
        _managers.add(manager)


def stop_everything(timeout: float = STOP_TIMEOUT_S) -> None:
    """Ask every background task and every live run to stop at its next step, then wait for them, up to timeout in
    all: runs end interrupted (keeping what they measured), a teacher stopped mid-training is not cached."""
    from kdviz.runs import tasks

    deadline = time.monotonic() + timeout
    tasks.cancel_all_tasks()
    with _guard:
        managers = list(_managers)
    for manager in managers:
        manager.shutdown(max(0.0, deadline - time.monotonic()))
    tasks.stop_all_tasks(max(0.0, deadline - time.monotonic()))


atexit.register(stop_everything)
