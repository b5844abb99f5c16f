"""A local cluster for development and tests: ZooKeeper from Debian's package and N brokers.

    headrace cluster up --brokers 3        # var/cluster: zookeeper + brokers 1..3
    headrace cluster down

``ZooKeeperProcess`` and ``BrokerProcess`` are also what the test fixtures start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ZOOKEEPER_CLASSPATH = os.environ.get(
    "HEADRACE_ZOOKEEPER_CLASSPATH", "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
)
ZOOKEEPER_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if ``port`` cannot be listened on (a server has it, or a connection uses it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive ports that can all be listened on now."""
    for _ in range(100):
        base = free_port()
        if base + count < 65536 and not any(port_in_use(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


def _four_letter(port: int, word: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(word)
        chunks = []
        while True:
            data = s.recv(4096)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


class ZooKeeperProcess:
    """A standalone ZooKeeper server (Debian's package) with its own config and data dir."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def connect(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        java = shutil.which("java")
        jar = ZOOKEEPER_CLASSPATH.split(":")[-1]
        if java is None or not Path(jar).exists():
            raise RuntimeError(
                "ZooKeeper is not installed: run `bash deploy/setup.sh` (it installs Debian's "
                "zookeeper package)"
            )
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "zoo.cfg"
        config.write_text(
            "\n".join(
                [
                    "tickTime=500",
                    "initLimit=10",
                    "syncLimit=5",
                    f"dataDir={data}",
                    f"clientPort={self.port}",
                    "clientPortAddress=127.0.0.1",
                    "maxClientCnxns=0",
                    "admin.enableServer=false",
                    "4lw.commands.whitelist=ruok,srvr,stat",
                    "minSessionTimeout=1000",
                    "maxSessionTimeout=60000",
                ]
            )
            + "\n"
        )
        return [
            java,
            "-Xmx256m",
            f"-Dzookeeper.log.dir={self.workdir}",
            "-cp",
            ZOOKEEPER_CLASSPATH,
            ZOOKEEPER_MAIN,
            str(config),
        ]

    def start(self, timeout: float = 30.0, detach: bool = False) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = self.command()
        with open(self.workdir / "zookeeper.out", "ab") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=detach,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = (self.workdir / "zookeeper.out").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"ZooKeeper exited with {self.process.returncode}:\n{output}")
            try:
                if _four_letter(self.port, b"ruok") == b"imok":
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"ZooKeeper did not answer on port {self.port} within {timeout} s")

    def stop(self) -> None:
        _stop(self.process)
        self.process = None


def _stop(process: subprocess.Popen | None, timeout: float = 15.0) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class BrokerProcess:
    """A ``headrace broker`` child process with a generated properties file."""

    def __init__(
        self,
        workdir: Path,
        broker_id: int,
        zookeeper_connect: str,
        port: int | None = None,
        overrides: dict[str, str] | None = None,
        metrics_port: int | None = None,
        listeners: dict[str, str] | None = None,
    ):
        self.workdir = Path(workdir)
        self.broker_id = broker_id
        self.port = port or free_port()
        self.metrics_port = metrics_port  # metrics.port; None: no metrics page
        self.zookeeper_connect = zookeeper_connect
        self.overrides = dict(overrides or {})
        self.process: subprocess.Popen | None = None
        # More listeners beside PLAINTEXT on ``port``: name -> security protocol, each on a
        # free port of its own (``listener_ports``).
        self.listeners = {name.upper(): p.upper() for name, p in (listeners or {}).items()}
        self.listener_ports = {name: free_port() for name in self.listeners}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def bootstrap_for(self, listener: str) -> str:
        """``127.0.0.1:<port>`` of the listener named ``listener``."""
        if listener.upper() == "PLAINTEXT":
            return self.bootstrap
        return f"127.0.0.1:{self.listener_ports[listener.upper()]}"

    @property
    def metrics_url(self) -> str | None:
        """The broker's Prometheus page, if it serves one."""
        if self.metrics_port is None:
            return None
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def config_path(self) -> Path:
        return self.workdir / f"broker-{self.broker_id}.properties"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"broker-{self.broker_id}.out"

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        values = {
            "broker.id": str(self.broker_id),
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "log.dirs": str(self.workdir / f"broker-{self.broker_id}-logs"),
            "zookeeper.connect": self.zookeeper_connect,
            "zookeeper.session.timeout.ms": "6000",
            "num.partitions": "3",
        }
        if self.metrics_port is not None:
            values["metrics.port"] = str(self.metrics_port)
        if self.listeners:
            values["listeners"] += "".join(
                f",{name}://127.0.0.1:{self.listener_ports[name]}" for name in self.listeners
            )
            protocols = {"PLAINTEXT": "PLAINTEXT", "SSL": "SSL", "SASL_PLAINTEXT": "SASL_PLAINTEXT"}
            protocols["SASL_SSL"] = "SASL_SSL"
            protocols.update(self.listeners)
            values["listener.security.protocol.map"] = ",".join(
                f"{name}:{protocol}" for name, protocol in protocols.items()
            )
        values.update(self.overrides)
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))

    def start(self, timeout: float = 30.0, detach: bool = False) -> None:
        self.write_config()
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "headrace.cli", "broker", "--config", str(self.config_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=detach,
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the broker answers ApiVersions and sees itself registered."""
        from broker.protocol.registry import ApiKey
        from consumers.client import BrokerConnection
        from consumers.security import PLAINTEXT

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(
                    f"broker {self.broker_id} exited with {self.process.returncode}:\n{tail}"
                )
            try:
                # the brokers this module starts listen on PLAINTEXT only
                with BrokerConnection(
                    "127.0.0.1", self.port, timeout=2, security=PLAINTEXT
                ) as conn:
                    body = conn.request(ApiKey.METADATA, {"topics": []})
                    if any(b["node_id"] == self.broker_id for b in body["brokers"]):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"broker {self.broker_id} not ready on port {self.port} within {timeout} s"
        )

    def stop(self, timeout: float = 30.0) -> None:
        _stop(self.process, timeout)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None


# --- headrace cluster up / down --------------------------------------------------------------

STATE_FILE = "cluster.json"


class ClusterStateError(RuntimeError):
    """The cluster state file is unreadable or not what ``cluster up`` writes."""


def read_state(directory: Path) -> dict | None:
    """The state ``cluster up`` left in ``directory``, or None if there is none; a damaged
    file raises ClusterStateError (no process is signalled on its word)."""
    state_path = directory / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ClusterStateError(
            f"cannot read {state_path}: {exc}; stop its processes by hand and remove the file"
        ) from None
    pids = state.get("pids") if isinstance(state, dict) else None
    brokers = state.get("brokers", []) if isinstance(state, dict) else None
    if (
        not isinstance(pids, list)
        or not all(type(p) is int and p > 0 for p in pids)
        or not isinstance(brokers, list)
        or not all(isinstance(b, dict) and type(b.get("pid")) is int for b in brokers)
    ):
        raise ClusterStateError(
            f"{state_path} is not a cluster state file (no list of process "
            "ids); stop its processes by hand and remove the file"
        )
    return state


def cluster_up(
    directory: Path, brokers: int, zookeeper: str | None, base_port: int, zookeeper_port: int
) -> dict:
    """Start ZooKeeper (unless ``zookeeper`` names one) and ``brokers`` brokers, detached."""
    directory.mkdir(parents=True, exist_ok=True)
    state_path = directory / STATE_FILE
    state = read_state(directory)
    if state is not None and any(_alive(pid) for pid in state["pids"]):
        raise RuntimeError(
            f"a cluster is already running from {directory}; `headrace cluster down` first"
        )
    state = {"pids": [], "brokers": [], "zookeeper": zookeeper}
    if zookeeper is None:
        zookeeper_port = zookeeper_port or free_port()
        if port_in_use(zookeeper_port):
            raise RuntimeError(
                f"port {zookeeper_port} is in use; pass --zookeeper host:port to "
                "use a running ZooKeeper, or --zookeeper-port"
            )
        zk = ZooKeeperProcess(directory / "zookeeper", zookeeper_port)
        zk.start(detach=True)
        state["zookeeper"] = zk.connect
        state["zookeeper_pid"] = zk.process.pid
        state["pids"].append(zk.process.pid)
        state_path.write_text(json.dumps(state, indent=2))
    connect = state["zookeeper"] + ("" if "/" in state["zookeeper"] else "/headrace")
    state["connect"] = connect
    try:
        for i in range(1, brokers + 1):
            port = base_port + i - 1 if base_port else free_port()
            if port_in_use(port):
                raise RuntimeError(f"port {port} is in use; choose another --base-port")
            broker = BrokerProcess(directory, i, connect, port, metrics_port=free_port())
            try:
                broker.start(detach=True)
            finally:
                if broker.process is not None:
                    state["pids"].append(broker.process.pid)
                    state["brokers"].append(
                        {
                            "id": i,
                            "port": port,
                            "metrics_port": broker.metrics_port,
                            "pid": broker.process.pid,
                            "config": str(broker.config_path),
                            "log": str(broker.log_path),
                        }
                    )
                state_path.write_text(json.dumps(state, indent=2))
    except BaseException:
        cluster_down(directory)  # stop what this call started, nothing else
        raise
    state["bootstrap"] = ",".join(f"127.0.0.1:{b['port']}" for b in state["brokers"])
    state_path.write_text(json.dumps(state, indent=2))
    return state


def metrics_pages(state: dict) -> str:
    """The brokers' Prometheus pages in a cluster state, for people: ``1 http://...``."""
    return ", ".join(
        f"{b['id']} http://127.0.0.1:{b['metrics_port']}/metrics"
        for b in state["brokers"]
        if b.get("metrics_port")
    )


def kill_broker(entry: dict) -> None:
    """SIGKILL one broker of a running cluster (``entry`` from the cluster state)."""
    _terminate_now(entry["pid"])


def _terminate_now(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def restart_broker(directory: Path, state: dict, entry: dict) -> None:
    """Start a broker of the cluster again with its old id, port and data."""
    broker = BrokerProcess(
        directory,
        entry["id"],
        state["connect"],
        entry["port"],
        metrics_port=entry.get("metrics_port"),
    )
    broker.start(detach=True)
    entry["pid"] = broker.process.pid
    state["pids"].append(broker.process.pid)
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2))


DASHBOARD_PORT = 8080


def start_dashboard(directory: Path, state: dict, warehouse: Path | None = None) -> str:
    """Start ``headrace dashboard`` for the cluster, detached (on port 8080 if free, else a
    free one), unless one runs already; its pid and port go in the cluster state, so
    ``cluster down`` stops it.  Returns its address."""
    running = state.get("dashboard")
    if running and _alive(running["pid"]):
        return f"http://127.0.0.1:{running['port']}/"
    port = DASHBOARD_PORT if not port_in_use(DASHBOARD_PORT) else free_port()
    command = [sys.executable, "-m", "headrace.cli", "dashboard", "--zookeeper", state["connect"]]
    command += ["--port", str(port)]
    if warehouse is not None:
        command += ["--warehouse", str(Path(warehouse).absolute())]
    with open(directory / "dashboard.out", "ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    state["dashboard"] = {"pid": process.pid, "port": port}
    state["pids"].append(process.pid)
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2))
    deadline = time.monotonic() + 20
    while not port_in_use(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the dashboard did not start; see {directory / 'dashboard.out'}")
        time.sleep(0.1)
    return f"http://127.0.0.1:{port}/"


def cluster_down(directory: Path, timeout: float = 30.0) -> int:
    """Stop the dashboard, the brokers (SIGTERM: clean shutdown), then ZooKeeper; returns
    processes stopped."""
    state_path = directory / STATE_FILE
    state = read_state(directory)
    if state is None:
        return 0
    dashboard = state.get("dashboard") or {}
    stopped = _terminate([dashboard["pid"]], timeout) if dashboard.get("pid") else 0
    broker_pids = [b["pid"] for b in state.get("brokers", [])]
    stopped += _terminate(broker_pids, timeout)
    if state.get("zookeeper_pid"):
        stopped += _terminate([state["zookeeper_pid"]], timeout)
    state_path.unlink()
    return stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of ours counts as gone
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def _terminate(pids: list[int], timeout: float) -> int:
    live = [pid for pid in pids if _alive(pid)]
    for pid in live:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in live):
        time.sleep(0.1)
    for pid in live:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    return len(live)
