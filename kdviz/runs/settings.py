"""The run service's policy, as the operator set it: the per-run budget and the run manager's limits (ServerSettings),
built from the settings kdviz.core.settings reads (torch-free: environment, then server.toml, then defaults).

Each setting is read from an environment variable first, then from the `[server]` table of KDVIZ_HOME/server.toml
under the same name in lower case without KDVIZ_, else its default (`python -m kdviz settings` prints the values in
force and where each came from). A budget limit of "none" or 0 means unlimited. Sizes in MB are MiB (2**20 bytes);
a TFLOP is 10**12 floating-point operations.

    KDVIZ_MAX_RUN_MEMORY_MB    max_run_memory_mb    2048     estimated peak memory of one run (run_cost.memory_bytes)
    KDVIZ_MAX_RUN_TFLOP        max_run_tflop        1000     estimated training work of one run, teacher included
    KDVIZ_MAX_RUN_STEPS        max_run_steps        100000   optimizer steps of the distillation
    KDVIZ_MAX_RUN_SECONDS      max_run_seconds      900      wall clock of one run; the run manager (or the CLI with
                                                             --budget) stops a run then, keeping what it measured
    KDVIZ_WORKERS              workers              1        runs trained at once (worker threads)
    KDVIZ_MAX_RUNS_PER_BROWSER max_runs_per_browser 12       live (queued, running, paused) runs of one browser
    KDVIZ_MAX_RUNS_PER_ADDRESS max_runs_per_address 24       live runs of one network address (several browsers)
    KDVIZ_MAX_QUEUED           max_queued           64       runs waiting on the whole server
    KDVIZ_PAUSED_TIMEOUT_S     paused_timeout_s     600      seconds a paused run may wait before it is cancelled
    KDVIZ_MAX_DISK_MB          max_disk_mb          20480    disk the runs and the teacher cache may use in all; when
                                                             a new run would pass it, the oldest finished runs of the
                                                             browsers using the most are removed, then the least
                                                             recently used custom teachers (kdviz.runs.disk)
    KDVIZ_MAX_DISK_PER_BROWSER_MB max_disk_per_browser_mb 2048 disk one browser's runs may use (its oldest finished
                                                             runs make room for its new ones)
    KDVIZ_MAX_PAUSED           max_paused           4        paused runs held at once (each keeps its models,
                                                             optimiser state and data in memory)
    KDVIZ_SERVER_MEMORY_MB     server_memory_mb     none     memory the runs may use in all: a pause that would let
                                                             (workers + paused) x max_run_memory_mb exceed it is
                                                             refused (peak_memory_bytes says the worst case)
    KDVIZ_EXECUTOR             executor             threads  "threads" (in this process) or "ray" (Ray tasks)
    KDVIZ_RAY_ADDRESS          ray_address          ""       with executor "ray": ray.init's address ("auto",
                                                             "ray://head:10001"); "" starts a local Ray
    KDVIZ_RAY_CONNECT_TIMEOUT_S ray_connect_timeout_s 30     seconds to join the Ray cluster before the operator's
                                                             message says why not (kdviz.core.cluster)
    KDVIZ_MAX_IDENTITIES_PER_ADDRESS  max_identities_per_address  24   new browser identities one network address
                                                             is given per hour (kdviz.core.identity); "none": no cap
    KDVIZ_TRUSTED_PROXIES      trusted_proxies      ""       reverse proxies whose X-Forwarded-For names the client
                                                             ("127.0.0.1, 10.0.0.0/8"); "" trusts none

For example, server.toml:

    [server]
    max_run_memory_mb = 4096
    max_run_tflop = "none"
    workers = 2

The default work limit is generous (the cifar10-lecture preset, teacher training included, needs under a third of
it, the lecture preset 1/500th) because the wall-clock limit is what bounds a slow run on a small server; the work
limit refuses, before anything is queued, a run that could not finish in time anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

from kdviz.core.budget import MB, TFLOP, Budget
from kdviz.core.settings import setting_values


@dataclass(frozen=True)
class ServerSettings:
    """How a shared server serves runs: the per-run budget and the run manager's limits (module docstring)."""

    budget: Budget
    workers: int = 1
    max_live_per_browser: int = 12
    max_live_per_address: int = 24
    max_queued: int = 64
    paused_timeout_s: float = 600.0
    executor: str = "threads"  # or "ray": each run is a Ray task (kdviz.runs.executors)
    ray_address: str = ""  # ray.init's address: "auto", "ray://head:10001", ... ("" or "local": start a local Ray)
    ray_connect_timeout_s: float = 30.0
    max_identities_per_address: int | None = 24  # per hour (kdviz.core.identity.IdentityLedger); None: no cap
    trusted_proxies: str = ""  # kdviz.core.identity.parse_trusted_proxies reads it
    max_disk_bytes: int | None = None  # the runs and the teacher cache in all (kdviz.runs.disk); None: no limit
    max_disk_per_browser_bytes: int | None = None  # one browser's runs
    max_paused: int = 4
    server_memory_mb: float | None = None  # None: no server-wide check

    def peak_memory_bytes(self, paused: int | None = None) -> int | None:
        """The runs' worst-case memory: every worker's run and every paused one (a paused run keeps its models,
        optimiser state and data) at the per-run budget; None when that budget is unlimited."""
        per_run = self.budget.max_memory_bytes
        return None if per_run is None else (self.workers + (self.max_paused if paused is None else paused)) * per_run


def server_settings() -> ServerSettings:
    """This server's settings: environment variables, then KDVIZ_HOME/server.toml's [server] table, then defaults.

    Read on every call (cheap): the CLI reads them per command; a server's run manager reads them once, when the
    server starts (restart it to apply a change)."""
    values = {name: value for name, (value, _) in setting_values().items()}
    memory, tflop = values["max_run_memory_mb"], values["max_run_tflop"]
    budget = Budget(None if memory is None else int(memory * MB), None if tflop is None else float(tflop * TFLOP),
                    None if values["max_run_steps"] is None else int(values["max_run_steps"]),
                    values["max_run_seconds"])
    disk, per_browser = (None if values[name] is None else int(values[name] * MB)
                         for name in ("max_disk_mb", "max_disk_per_browser_mb"))
    return ServerSettings(budget, int(values["workers"]), int(values["max_runs_per_browser"]),
                          int(values["max_runs_per_address"]), int(values["max_queued"]),
                          float(values["paused_timeout_s"]), values["executor"], values["ray_address"],
                          ray_connect_timeout_s=float(values["ray_connect_timeout_s"]),
                          max_identities_per_address=values["max_identities_per_address"],
                          trusted_proxies=values["trusted_proxies"],
                          max_disk_bytes=disk, max_disk_per_browser_bytes=per_browser,
                          max_paused=int(values["max_paused"]), server_memory_mb=values["server_memory_mb"])
