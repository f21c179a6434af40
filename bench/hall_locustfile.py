"""Locust users for a lecture hall (Student, Viewer, Follower, Runner) that speak Streamlit's websocket protocol:
Locust spawns, counts and stops them; each user's life is a coroutine of bench/hall_users.py on one asyncio loop.

Why one asyncio loop in a native thread, and Locust without gevent's monkey patching: Locust imports gevent and, unless
LOCUST_SKIP_MONKEY_PATCH is set, patches socket, select, threading and time for every thread of the process, which
would put the websockets library's asyncio under gevent's hub. With the patch skipped, gevent keeps to Locust's own
greenlets (spawning, statistics), and the sessions run on a plain asyncio loop in one OS thread: hundreds of
websockets on one core, with nothing blocking between the two (the loop hands timings to a queue; a greenlet
fires Locust's request events from it every 0.2 s, since Locust's statistics are not thread-safe).

Run it through bench/hall_load.py (which starts the server and the lecturer, and sets what the users need:
KDVIZ_HALL_RUN for viewers, KDVIZ_HALL_ROOM for followers), or by hand against a running server:

    PYTHONPATH=. KDVIZ_HALL_ROOM=ABCDE LOCUST_SKIP_MONKEY_PATCH=1 locust -f bench/hall_locustfile.py --headless \
        -H http://127.0.0.1:8501 -u 50 -r 10 -t 30s Follower
"""
from __future__ import annotations

import os

os.environ.setdefault("LOCUST_SKIP_MONKEY_PATCH", "1")  # before locust is imported: see the module docstring

import asyncio  # noqa: E402
import queue  # noqa: E402
import random  # noqa: E402
import threading  # noqa: E402

import gevent  # noqa: E402
from gevent import monkey  # noqa: E402
from locust import User, constant, events, task  # noqa: E402

from bench import hall_users  # noqa: E402

if monkey.is_module_patched("socket"):
    raise RuntimeError("gevent monkey-patched this process (locust was imported before this file): run it with "
                       "LOCUST_SKIP_MONKEY_PATCH=1")


class AsyncioThread:
    """One asyncio event loop in a daemon OS thread, shared by every user of the process."""

    def __init__(self):
        self.loop = None
        self._lock = threading.Lock()

    def start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
                threading.Thread(target=self.loop.run_forever, name="hall-asyncio", daemon=True).start()
        return self.loop

    def submit(self, coroutine):
        """Schedule a coroutine on the loop; returns a concurrent.futures.Future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.start())

    def run(self, coroutine, timeout: float | None = None):
        """Run a coroutine on the loop and wait for its result (from plain code, not from a Locust user)."""
        return self.submit(coroutine).result(timeout)


LOOP = AsyncioThread()
REPORTS: queue.SimpleQueue = queue.SimpleQueue()  # (user, kind, seconds, error) from the loop's thread


def _pump(environment) -> None:
    """Fire Locust's request event for every request the sessions finished (in gevent's thread, where Locust's
    statistics live)."""
    while True:
        while not REPORTS.empty():
            user, kind, seconds, error = REPORTS.get()
            environment.events.request.fire(
                request_type=kind, name=user, response_time=1000 * seconds, response_length=0, context={},
                exception=RuntimeError(error) if error else None)
        gevent.sleep(0.2)


def _report(*report) -> None:
    REPORTS.put(report)


@events.init.add_listener
def _on_init(environment, **kwargs) -> None:
    LOOP.start()
    if _report not in hall_users.RECORD.listeners:
        hall_users.RECORD.listeners.append(_report)
    gevent.spawn(_pump, environment)


class HallUser(User):
    """A member of the hall: on start, its life() coroutine goes to the shared loop; on stop, it is cancelled (its
    tab closes). Locust's task only keeps an eye on it: a life that ended by an error is recorded and restarted
    after a second (a browser reconnects)."""

    abstract = True
    wait_time = constant(1.0)

    def on_start(self) -> None:
        self._random = random.Random()
        self._future = LOOP.submit(self.life())

    @task
    def watch(self) -> None:
        if self._future.done() and not self._future.cancelled():
            error = self._future.exception()
            hall_users.RECORD.error(type(self).__name__.lower(), f"{type(error).__name__}: {error}")
            gevent.sleep(1.0)
            self._future = LOOP.submit(self.life())

    def on_stop(self) -> None:
        self._future.cancel()

    async def life(self) -> None:
        raise NotImplementedError


class Student(HallUser):
    """The soft-labels page; releases a new T every 2–5 s."""

    async def life(self) -> None:
        await hall_users.student(self.host, self._random)


class Viewer(HallUser):
    """Someone else's run (KDVIZ_HALL_RUN), read-only, left open: its charts redraw every 2 s."""

    async def life(self) -> None:
        await hall_users.viewer(self.host, os.environ["KDVIZ_HALL_RUN"], self._random)


class Follower(HallUser):
    """A phone following the presentation KDVIZ_HALL_ROOM: polls it, reruns on a change, guesses."""

    async def life(self) -> None:
        await hall_users.follower(self.host, os.environ["KDVIZ_HALL_ROOM"], self._random)


class Runner(HallUser):
    """Starts a quick-preset run of its own now and then (at most 3), and watches it to its end."""

    async def life(self) -> None:
        await hall_users.runner(self.host, self._random, preset=os.environ.get("KDVIZ_HALL_RUNNER_PRESET", "quick"))
