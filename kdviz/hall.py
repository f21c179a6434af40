"""A hall on several app servers from one command (`make hall`, `python -m kdviz.hall --replicas K`): a local Ray
head, K app replicas (`python -m kdviz.ui.serve run app.py`, which exit cleanly on SIGTERM) that share KDVIZ_HOME, the
run service (kdviz.runs.remote) and the presentations (kdviz.present.remote), and Debian's HAProxy in front of them
with sticky sessions.

Every process is a child of the launcher, in a process group of its own, stopped by stop() (Ctrl-C): HAProxy first
(no new requests), then the replicas, then Ray (its runs end with it; the next hall marks them interrupted). A
browser stays on its replica (HAProxy's KDVIZ_REPLICA cookie; Streamlit keeps a session's state in one process); when
that replica dies, HAProxy's health check (/_stcore/health, every second) takes it out and the browser's next request
(a reload) lands on another, with the same identity cookie, so its runs and presentation are still its own.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the folder with app.py
STICKY_COOKIE = "KDVIZ_REPLICA"
REPLICA_HEADER = "X-Kdviz-Replica"  # which replica answered (HAProxy adds it: logs, tests, the benchmark)


@dataclasses.dataclass(frozen=True)
class HallConfig:
    """replicas: app servers; port: the proxy's (0: a free one); host: where the proxy listens (0.0.0.0: the hall's
    phones on the network); ray_cpus: CPUs Ray offers to runs (None: all); home: KDVIZ_HOME (None: this process's);
    env: more environment for the replicas (e.g. KDVIZ_TOUR_RUNS=off); max_connections: HAProxy's maxconn (a
    follower holds a websocket and a poll)."""

    replicas: int = 2
    port: int = 8500
    host: str = "0.0.0.0"
    ray_cpus: int | None = None
    home: Path | None = None
    env: dict = dataclasses.field(default_factory=dict)
    max_connections: int = 4096
    startup_timeout_s: float = 120.0


@dataclasses.dataclass
class Replica:
    name: str
    url: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def haproxy_path() -> str | None:
    """Debian's haproxy (in /usr/sbin, which a user's PATH may lack), or None."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def haproxy_config(host: str, port: int, replicas: list[tuple[str, str]], max_connections: int = 4096) -> str:
    """HAProxy's configuration: round robin over the replicas (name, "host:port"), a browser kept on its replica by a
    cookie HAProxy inserts, websockets (Streamlit's /_stcore/stream) held open for a lecture, a replica taken out
    after three failed health checks and its browsers sent to another (redispatch), each request's client address
    appended to X-Forwarded-For (the replicas trust it for the per-address caps, kdviz.core.identity). A check may
    take 5 s: a replica busy with a hall answers late but is alive (with 1 s, a saturated single replica was taken out
    and the hall got HTTP 503s: bench/hall_load.py --replicas 1, 300 followers); a dead one refuses at once."""
    servers = "\n".join(f"    server {name} {address} check cookie {name}" for name, address in replicas)
    return f"""global
    maxconn {max_connections}

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 4h
    timeout http-keep-alive 10s
    timeout check 5s
    option redispatch
    option forwardfor
    retries 2

frontend hall
    bind {host}:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    cookie {STICKY_COOKIE} insert indirect nocache httponly
    option httpchk
    http-check send meth GET uri /_stcore/health
    http-check expect status 200
    default-server inter 1s fall 3 rise 2
    http-response set-header {REPLICA_HEADER} %[srv_name]
{servers}
"""


class Hall:
    """The replica set of a hall: start() it (or use it as a context manager), read url, replicas and pids, stop()."""

    def __init__(self, config: HallConfig = HallConfig()):
        if config.replicas < 1:
            raise ValueError(f"a hall needs at least one replica, got {config.replicas}")
        self.config = config
        self.home = Path(config.home or os.environ.get("KDVIZ_HOME") or Path.home() / ".cache" / "kdviz")
        self.folder: Path | None = None
        self.ray: subprocess.Popen | None = None
        self.ray_address = ""
        self.proxy: subprocess.Popen | None = None
        self.port = config.port
        self.replicas: list[Replica] = []

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        return f"http://{host}:{self.port}"

    def describe(self) -> dict:
        """The proxy's URL, the Ray address and every process's pid (what the launcher prints, a benchmark reads)."""
        return {"url": self.url, "ray_address": self.ray_address, "folder": str(self.folder),
                "haproxy_pid": self.proxy.pid if self.proxy else None, "ray_pid": self.ray.pid if self.ray else None,
                "replicas": [{"name": r.name, "url": r.url, "pid": r.pid} for r in self.replicas]}

    # -- starting --
    def start(self) -> "Hall":
        proxy = haproxy_path()
        if proxy is None:
            raise RuntimeError("HAProxy is not installed: apt-get install -y haproxy")
        self.folder = Path(tempfile.mkdtemp(prefix="kdviz-hall-"))
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            self._start_ray()
            self._start_replicas()
            self._start_proxy(proxy)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_ray(self) -> None:
        """`ray start --head --block`: its processes end when it is stopped. Every port is chosen here, so that the
        hall's Ray never collides with another on this machine, and its temp folder is the hall's own (a bare
        ray.init() elsewhere on this machine must not join this cluster)."""
        port = free_port()
        ports = {flag: free_port() for flag in ("--node-manager-port",
                                                "--object-manager-port", "--dashboard-agent-listen-port",
                                                "--dashboard-agent-grpc-port", "--metrics-export-port",
                                                "--runtime-env-agent-port")}
        command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--port", str(port),
                   "--include-dashboard=false", "--disable-usage-stats",
                   "--temp-dir", str(self.folder / "ray"), *[str(x) for pair in ports.items() for x in pair]]
        if self.config.ray_cpus is not None:
            command += ["--num-cpus", str(self.config.ray_cpus)]
        # no drain on SIGTERM: nothing of the hall's can move elsewhere, and Ray's default waits 15 s for it
        no_drain = self._env({"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"})
        self.ray = self._spawn(command, self.folder / "ray.log", no_drain)
        marker = self.folder / "ray" / "ray_current_cluster"  # ray start writes it once the head is up
        self._wait(lambda: marker.is_file() and marker.read_text().strip(), self.ray, "the Ray head",
                   self.folder / "ray.log")
        self.ray_address = marker.read_text().strip()  # this machine's address as Ray sees it (not loopback)

    def _start_replicas(self) -> None:
        env = self._env({"KDVIZ_RUN_SERVICE": "ray", "KDVIZ_PRESENT_HUB": "ray", "KDVIZ_EXECUTOR": "ray",
                         "KDVIZ_RAY_ADDRESS": self.ray_address, "PYTHONPATH": str(ROOT),
                         "STREAMLIT_SERVER_COOKIE_SECRET": self._cookie_secret(),
                         # the replicas see HAProxy's address; the client's is the one it appends to X-Forwarded-For
                         "KDVIZ_TRUSTED_PROXIES": "127.0.0.1", **self.config.env})
        for index in range(1, self.config.replicas + 1):
            port, log = free_port(), self.folder / f"replica-{index}.log"
            process = self._spawn([sys.executable, "-m", "kdviz.ui.serve", "run", "app.py", "--server.port", str(port),
                                   "--server.address", "127.0.0.1", "--server.headless", "true",
                                   "--browser.gatherUsageStats", "false"], log, env, cwd=ROOT)
            self.replicas.append(Replica(f"r{index}", f"http://127.0.0.1:{port}", process, log))
        for replica in self.replicas:  # they start side by side; each must answer its health check
            self._wait(lambda r=replica: _healthy(r.url), replica.process, f"replica {replica.name}", replica.log)

    def _start_proxy(self, executable: str) -> None:
        if not self.port:
            self.port = free_port()
        config = self.folder / "haproxy.cfg"
        config.write_text(haproxy_config(self.config.host, self.port,
                                         [(r.name, r.url.removeprefix("http://")) for r in self.replicas],
                                         self.config.max_connections))
        self.proxy = self._spawn([executable, "-db", "-f", str(config)], self.folder / "haproxy.log", self._env())
        self._wait(lambda: _healthy(self.url), self.proxy, "HAProxy", self.folder / "haproxy.log")

    def _cookie_secret(self) -> str:
        """One secret for every replica's Streamlit cookies (its session middleware signs with it), kept in
        KDVIZ_HOME so that a replica started later or a restarted hall signs alike. (kdviz's identity cookie is
        signed with KDVIZ_HOME/identity_key, kdviz.core.identity: any replica accepts it.)"""
        path = self.home / "hall" / "cookie_secret"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
        return path.read_text().strip()

    def _env(self, extra: dict | None = None) -> dict:
        """Every process's environment: the hall's KDVIZ_HOME, and its Ray's token (Ray listens on this machine's
        address, so only holders of the hall's token, kept in the hall's folder, may join it)."""
        token = self.folder / "ray_token"
        if not token.is_file():
            descriptor = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
        return {**os.environ, "KDVIZ_HOME": str(self.home), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(token), **(extra or {})}

    @staticmethod
    def _spawn(command: list[str], log: Path, env: dict, cwd: Path | None = None) -> subprocess.Popen:
        with open(log, "w") as handle:  # a process group of its own: Ctrl-C reaches the launcher, which stops it
            return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                    start_new_session=True)

    def _wait(self, ready, process: subprocess.Popen, what: str, log: Path) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
                raise RuntimeError(f"{what} did not start (see {log}):\n{tail}")
            time.sleep(0.2)

    # -- stopping --
    def kill_replica(self, index: int) -> Replica:
        """SIGKILL one replica (tests and drills: a replica's machine dies); the proxy takes it out."""
        replica = self.replicas[index]
        os.killpg(replica.process.pid, signal.SIGKILL)
        replica.process.wait(10)
        return replica

    def stop(self) -> None:
        """Stop the proxy, the replicas, then Ray; each process group is sent SIGTERM, then SIGKILL after 15 s."""
        for process in [self.proxy, *(r.process for r in self.replicas), self.ray]:
            if process is not None:
                _end(process)
        self.proxy, self.ray, self.replicas = None, None, []

    def __enter__(self) -> "Hall":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def _end(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM to the process's group (it leads one: start_new_session), then SIGKILL to what is left of it."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(wait)
            os.killpg(process.pid, signal.SIGKILL)  # the leader is gone: what it left behind in its group goes too
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue
        break


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdviz.hall", description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=2, help="app servers behind the proxy (default 2)")
    parser.add_argument("--port", type=int, default=8500, help="the proxy's port (default 8500)")
    parser.add_argument("--host", default="0.0.0.0", help="where the proxy listens (default 0.0.0.0: the network)")
    parser.add_argument("--ray-cpus", type=int, default=None, help="CPUs Ray offers to runs (default: all)")
    args = parser.parse_args(argv)
    hall = Hall(HallConfig(args.replicas, args.port, args.host, args.ray_cpus))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        hall.start()
        info = hall.describe()
        print(f"kdviz hall: {info['url']} (HAProxy pid {info['haproxy_pid']}) → "
              + ", ".join(f"{r['name']} {r['url']} pid {r['pid']}" for r in info["replicas"])
              + f"; Ray head {info['ray_address']} pid {info['ray_pid']}; logs in {info['folder']}. Ctrl-C stops it.",
              flush=True)
        while not stopping:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except RuntimeError as error:
        print(f"kdviz hall: {error}", file=sys.stderr)
        return 1
    finally:
        hall.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
