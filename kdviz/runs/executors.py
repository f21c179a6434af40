"""Where a run's work executes: worker threads in the app's process (the embedded default), or Ray tasks on a
cluster when one server is not enough.

Either way the run manager does the rest in the app: the queue, identity, the budget check before queueing, the
event log and the run folder on the app's disk, pause and the pause time-out. An executor only turns a config into
its event stream, `run_events`: the teacher's preparation (trained or loaded from that machine's cache), then the
distillation or the experiment, as (phase, event) pairs.

Ray (https://docs.ray.io): each run is one task with a streaming generator (`num_returns="streaming"`), so its
events come back to the app as they happen, from whichever node had room (a GPU when the run asks for device
"cuda"). Stop and pause travel the other way through one small actor, RunControl, that the task polls every
CONTROL_POLL_S: stop makes the engine end the run at its next step (keeping what it measured, as with threads);
pause holds the task inside that check until resume. A task whose worker dies is not retried (its events would
repeat): the run fails with a message saying so, and keeps what it logged. The code travels with the task
(`runtime_env` py_modules: the kdviz package), so the cluster's nodes need only Python with the requirements.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Iterator

CONTROL_POLL_S = 0.2  # how often a Ray task asks whether it should stop or pause
STREAM_BACKPRESSURE = 256  # events a Ray task may run ahead of the app before it waits for the app to read them


def run_events(config, should_stop: Callable[[], bool]) -> Iterator[tuple[str, object]]:
    """A run's whole work as (phase, event): "teacher", then "distill" (a DistillConfig) or "experiment"."""
    from kdviz import experiments
    from kdviz.core.engine import Finished, distill
    from kdviz.core.teachers import prepare_teacher

    name = experiments.name_of(config)
    base = config.distill if name else config
    teacher = None
    for event in prepare_teacher(base.teacher, base.device, should_stop):
        if isinstance(event, Finished):
            teacher = event
        yield "teacher", event
    if teacher is None or teacher.status != "completed":
        return
    model = teacher.models["teacher"]
    if name:
        yield from (("experiment", event) for event in experiments.experiment(name).run(config, model, should_stop))
    else:
        yield from (("distill", event) for event in distill(config, model, should_stop))


class ThreadExecutor:
    """The embedded default: the run's stream is a generator driven by one of the manager's worker threads."""

    name = "threads"
    shares_teacher_cache = True  # the runs train in this process: the app's teacher cache is theirs

    def events(self, run, config, should_stop):
        return run_events(config, should_stop)

    def pause(self, run) -> None:
        return None  # the parked generator is the pause

    def resume(self, run) -> None:
        return None

    def describe(self) -> str:
        return "worker threads in this process"

    def close(self) -> None:
        return None


def _device_of(config) -> str:
    return getattr(getattr(config, "distill", config), "device", "auto")


def pinned(config, has_gpu: bool):
    """The config a Ray task receives: device "auto" resolved here, in the app, against the cluster (CUDA where it has
    a GPU, else the CPU), so that a worker with other hardware trains on what the app asked Ray for; any other device
    is kept."""
    import dataclasses

    if _device_of(config) != "auto":
        return config
    device = "cuda" if has_gpu else "cpu"
    if hasattr(config, "distill"):
        return dataclasses.replace(config, distill=dataclasses.replace(config.distill, device=device))
    return dataclasses.replace(config, device=device)


class RayExecutor:
    """Runs each run as a Ray task. address: what ray.init gets ("auto" for a cluster already running on this
    machine, "ray://head:10001" for a remote one, "local" or None to start a local Ray); init_kwargs: more of
    ray.init's arguments (tests: num_cpus=2). Connects (or starts Ray) when constructed."""

    name = "ray"

    def __init__(self, address: str | None = None, **init_kwargs):
        from kdviz.core.cluster import connect

        ray = self._ray = connect(address, **init_kwargs)
        self._control = _control_actor(ray).options(num_cpus=0).remote()
        self._task = _remote_task(ray)

    @property
    def shares_teacher_cache(self) -> bool:
        """Whether every node of the cluster is this machine, so that a task finds the teachers this app has cached
        (KDVIZ_HOME is per machine). Else the budget counts each run's teacher as one its node may have to train."""
        here = self._ray.util.get_node_ip_address()
        return all(node["NodeManagerAddress"] == here for node in self._ray.nodes() if node.get("Alive"))

    def describe(self) -> str:
        resources = self._ray.cluster_resources()
        return (f"a Ray cluster: {len(self._ray.nodes())} node(s), {resources.get('CPU', 0):g} CPUs, "
                f"{resources.get('GPU', 0):g} GPUs")

    def events(self, run, config, should_stop):
        """The run's pairs as the Ray task yields them; a stop asked for here is relayed to the task."""
        from kdviz.core.engine import thread_count

        ray, control = self._ray, self._control
        config = pinned(config, self._ray.cluster_resources().get("GPU", 0) > 0)
        gpus = 1 if _device_of(config) == "cuda" else 0
        # the app's thread count travels too: it is part of the numbers (the order of sums) and of the teacher's key
        stream = self._task.options(num_gpus=gpus).remote(config, run.id, control, thread_count())
        stopping = False
        try:
            for ref in stream:
                phase, event = ray.get(ref)
                if phase == "placement":
                    run.placement = event
                    continue
                if not stopping and should_stop():  # a cancel, or the server's time limit
                    ray.get(control.set.remote(run.id, "stop"))
                    stopping = True
                yield phase, event
        finally:
            control.forget.remote(run.id)

    def pause(self, run) -> None:
        """The manager parked the run: the task waits in its next stop check until resume."""
        self._ray.get(self._control.set.remote(run.id, "pause"))

    def resume(self, run) -> None:
        self._ray.get(self._control.set.remote(run.id, "stop" if run.cancel_requested.is_set() else "run"))

    def close(self) -> None:
        return None  # the connection is the process's; ray.shutdown() is the caller's (tests) to do


def _control_actor(ray):
    @ray.remote
    class RunControl:
        """Each live run's wanted state ("run", "pause", "stop"), set by the app and polled by the run's task."""

        def __init__(self):
            self.states: dict[str, str] = {}

        def set(self, key: str, state: str) -> None:
            self.states[key] = state

        def state(self, key: str) -> str:
            return self.states.get(key, "run")

        def forget(self, key: str) -> None:
            self.states.pop(key, None)

    return RunControl


def _remote_task(ray):
    @ray.remote(num_returns="streaming", max_retries=0, _generator_backpressure_num_objects=STREAM_BACKPRESSURE)
    def kdviz_run(config, key: str, control, threads: int = 0):
        from kdviz.core.teachers import is_cached

        if threads:
            os.environ["KDVIZ_THREADS"] = str(threads)  # read by every run in this worker (engine.thread_count)
        base = getattr(config, "distill", config)
        # where the teacher is looked up is this worker's cache, not the app's: the run says whether it found it
        yield "placement", {"node": ray.util.get_node_ip_address(), "pid": os.getpid(), "threads": threads,
                            "device": base.device, "teacher_cached": is_cached(base.teacher, base.device)}
        polled = {"at": float("-inf"), "stop": False}

        def should_stop() -> bool:
            now = time.monotonic()
            if now - polled["at"] >= CONTROL_POLL_S:
                state = ray.get(control.state.remote(key))
                while state == "pause":
                    time.sleep(CONTROL_POLL_S)
                    state = ray.get(control.state.remote(key))
                polled["at"], polled["stop"] = time.monotonic(), state == "stop"
            return polled["stop"]

        yield from run_events(config, should_stop)

    return kdviz_run


def make_executor(settings):
    """The executor a server's settings ask for (ServerSettings.executor, .ray_address)."""
    if getattr(settings, "executor", "threads") == "ray":
        try:
            return RayExecutor(getattr(settings, "ray_address", None) or None)
        except ImportError:
            raise ValueError("executor = \"ray\" needs Ray: pip install ray==2.60.0") from None
        except ValueError:  # kdviz.core.cluster's message: the setting, and what to do
            raise
        except Exception as error:  # a cluster that cannot be reached: the operator's message, not a traceback
            raise ValueError(f"cannot connect to the Ray cluster at {settings.ray_address or 'a new local one'} "
                             f"({type(error).__name__}: {error})") from None
    return ThreadExecutor()
