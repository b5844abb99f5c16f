"""The peers of bench/paper.py: RabbitMQ and ActiveMQ from Debian's packages, started by hand on
127.0.0.1 with their own data dirs and ports, and their standard clients (librabbitmq in C,
ActiveMQ's JMS client in Java), compiled once into a cache dir.

Each peer is a context manager (``with RabbitMQ(workdir) as broker:``) that starts the broker,
yields it, and stops it (SIGTERM, then SIGKILL after a grace period) whatever happens.  A peer
that is not installed raises ``PeerMissing`` with the one-line message to print.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Self

from benchlib import BenchmarkError, machine_busy, stat_cpu

from headrace.devcluster import free_port

BENCH_DIR = Path(__file__).resolve().parent
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
AMQP_HEADER = Path("/usr/include/amqp.h")
ACTIVEMQ_HOME = Path("/usr/share/activemq")
ACTIVEMQ_CLIENT_JARS = [
    "activemq-client.jar",
    "geronimo-jms_1.1_spec.jar",
    "hawtbuf.jar",
    "slf4j-api.jar",
    "geronimo-j2ee-management-1.1-spec.jar",
]
SETUP_HINT = "run deploy/setup.sh --peers"


class PeerMissing(RuntimeError):
    """A peer's package or tool is not installed; the message says which and what to run."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    path = Path(base) / "headrace" / "paper-bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _source_key(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def package_version(package: str) -> str | None:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


# --- CPU of a process tree -----------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                text = f.read()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants now."""
    children = _children()
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def tree_cpu(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants, in seconds (a shell that starts the
    broker's VM counts with the VM)."""
    total = 0.0
    for member in process_tree(pid):
        try:
            total += stat_cpu(f"/proc/{member}/stat")
        except (OSError, ValueError):
            pass
    return total


def stop_tree(process: subprocess.Popen | None, grace: float) -> None:
    """SIGTERM to ``process`` (our child), wait ``grace`` seconds, then SIGKILL it and the
    descendants it had started."""
    if process is None or process.poll() is not None:
        return
    members = process_tree(process.pid)
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    for member in members:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def wait_for_port(
    port: int, process: subprocess.Popen, log: Path, timeout: float, name: str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise BenchmarkError(f"{name} exited with {process.returncode} while starting:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise BenchmarkError(f"{name} did not listen on 127.0.0.1:{port} within {timeout} s")


def allocated_bytes(path: Path) -> int:
    """Bytes the files under ``path`` take on disk (allocated blocks, so sparse preallocated
    files count only what was written)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def settled_bytes(path: Path, quiet: float = 1.0, timeout: float = 15.0) -> int:
    """``allocated_bytes(path)`` once it has not changed for ``quiet`` seconds (brokers write
    their stores a little after answering)."""
    deadline = time.monotonic() + timeout
    last, since = allocated_bytes(path), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        size = allocated_bytes(path)
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


# --- one client process per phase ----------------------------------------------------------


def run_client(command: list[str], broker_pid: int, log: Path, timeout: float) -> dict:
    """Run one client phase: it prints "start" when its clock starts and one line of JSON at
    the end (seconds, messages, client_cpu_s, marks).  The broker's and the machine's CPU are
    read at both lines."""
    with open(log, "ab") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    try:
        started = None
        result = None
        for line in process.stdout:
            line = line.strip()
            if line == "start":
                started = (time.perf_counter(), tree_cpu(broker_pid), machine_busy())
            elif line.startswith("{") and started is not None:
                ended = (time.perf_counter(), tree_cpu(broker_pid), machine_busy())
                result = json.loads(line)
                result["wall_s"] = ended[0] - started[0]
                result["broker_cpu_s"] = ended[1] - started[1]
                result["machine_cpu_s"] = ended[2] - started[2]
        process.wait()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0 or result is None:
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        raise BenchmarkError(
            f"{command[0]} {command[1] if len(command) > 1 else ''} failed "
            f"(exit status {process.returncode}):\n{tail}"
        )
    return result


# --- a peer broker process -----------------------------------------------------------------


class PeerBroker(abc.ABC):
    """One peer broker process and its client.  ``with Peer(workdir) as broker:`` starts it
    (``start()``), waits until it listens on ``port``, and stops it on leaving, whatever
    happens; ``produce`` and ``consume`` run one phase with the client (``run_client``)."""

    name = ""
    grace = 30.0  # seconds between SIGTERM and SIGKILL

    def __init__(self, workdir: Path, subdir: str):
        self.workdir = Path(workdir) / subdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "server.out"

    @property
    def pid(self) -> int:
        return self.process.pid

    def spawn(self, command: list[str], env: dict | None = None) -> subprocess.Popen:
        with open(self.log, "ab") as out:
            return subprocess.Popen(
                command,
                env=env,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )

    @abc.abstractmethod
    def start(self) -> None:
        """Start the broker and wait until it takes connections."""

    @abc.abstractmethod
    def client_command(self, verb: str, args: list[str]) -> list[str]:
        """The command line of this system's client for ``verb`` (produce or consume)."""

    def __enter__(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.start()
            wait_for_port(self.port, self.process, self.log, 120, self.name)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        stop_tree(self.process, self.grace)
        self.process = None

    def _phase(
        self, verb: str, queue: str, count: int, size: int, last: int, timeout: float
    ) -> dict:
        return run_client(
            self.client_command(verb, [queue, str(count), str(size), str(last)]),
            self.pid,
            self.workdir / "client.err",
            timeout,
        )

    def produce(self, queue: str, count: int, size: int, batch: int, timeout: float) -> dict:
        return self._phase("produce", queue, count, size, batch, timeout)

    def consume(self, queue: str, count: int, size: int, prefetch: int, timeout: float) -> dict:
        return self._phase("consume", queue, count, size, prefetch, timeout)


# --- RabbitMQ ------------------------------------------------------------------------------


def rabbitmq_client() -> Path:
    """The C client, compiled with gcc against librabbitmq into the cache dir (once per
    source version)."""
    if not RABBITMQ_SERVER.exists():
        raise PeerMissing(f"rabbitmq-server not installed: {SETUP_HINT}")
    if not AMQP_HEADER.exists() or shutil.which("gcc") is None:
        raise PeerMissing(f"librabbitmq-dev or gcc not installed: {SETUP_HINT}")
    source = BENCH_DIR / "paper_rabbitmq.c"
    binary = cache_dir() / f"paper_rabbitmq-{_source_key(source)}"
    if not binary.exists():
        partial = binary.with_suffix(".partial")
        subprocess.run(
            ["gcc", "-O2", "-Wall", "-o", str(partial), str(source), "-lrabbitmq"], check=True
        )
        partial.rename(binary)
    return binary


class RabbitMQ(PeerBroker):
    """rabbitmq-server bound to 127.0.0.1 with its own node name, ports, epmd, data and log
    dirs under ``workdir``; no plugins, Debian's service untouched."""

    name = "RabbitMQ"
    grace = 60.0

    def __init__(self, workdir: Path):
        self.client = rabbitmq_client()
        super().__init__(workdir, "rabbitmq")
        self.node = f"paper{os.getpid()}@localhost"
        self.epmd: subprocess.Popen | None = None

    @property
    def store_dir(self) -> Path:
        """Where the queues' messages live: the message stores and queue indexes (messages
        under 4 KiB are kept in the index)."""
        return self.workdir / "mnesia" / self.node / "msg_stores"

    def start(self) -> None:
        (self.workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "log.console = false\nlog.file.level = warning\n"
        )
        (self.workdir / "enabled_plugins").write_text("[].\n")
        (self.workdir / "rabbitmq-env.conf").write_text("")
        epmd_port = free_port()
        env = dict(
            os.environ,
            HOME=str(self.workdir),
            ERL_EPMD_PORT=str(epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_CONF_ENV_FILE=str(self.workdir / "rabbitmq-env.conf"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_DIST_PORT=str(free_port()),
            RABBITMQ_MNESIA_BASE=str(self.workdir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.workdir / "log"),
            RABBITMQ_CONFIG_FILE=str(self.workdir / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.workdir / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.workdir / "enabled_plugins"),
        )
        # Our own epmd on its own port, so that we stop what we started.
        self.epmd = self.spawn(["epmd", "-port", str(epmd_port), "-address", "127.0.0.1"])
        self.process = self.spawn([str(RABBITMQ_SERVER)], env)

    def stop(self) -> None:
        super().stop()
        stop_tree(self.epmd, 5)
        self.epmd = None

    def client_command(self, verb: str, args: list[str]) -> list[str]:
        return [str(self.client), verb, "127.0.0.1", str(self.port), *args]


# --- ActiveMQ ------------------------------------------------------------------------------


def activemq_classpath() -> str:
    return ":".join(str(ACTIVEMQ_HOME / "lib" / jar) for jar in ACTIVEMQ_CLIENT_JARS)


def activemq_client() -> Path:
    """The JMS client class, compiled with javac against the package's jars into the cache
    dir (once per source version); returns the class directory."""
    if not (ACTIVEMQ_HOME / "bin" / "activemq.jar").exists():
        raise PeerMissing(f"activemq not installed: {SETUP_HINT}")
    if shutil.which("javac") is None or shutil.which("java") is None:
        raise PeerMissing(f"javac (a JDK) not installed: {SETUP_HINT}")
    source = BENCH_DIR / "PaperActiveMQ.java"
    classes = cache_dir() / f"activemq-client-{_source_key(source)}"
    if not (classes / "PaperActiveMQ.class").exists():
        partial = classes.with_name(classes.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(
            ["javac", "-d", str(partial), "-cp", activemq_classpath(), str(source)], check=True
        )
        shutil.rmtree(classes, ignore_errors=True)
        partial.rename(classes)
    return classes


ACTIVEMQ_XML = """\
<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="paper-bench" useJmx="false"
          persistent="true" dataDirectory="{data}">
    <persistenceAdapter>
      <kahaDB directory="{data}/kahadb" journalDiskSyncStrategy="periodic"
              journalDiskSyncInterval="1000"/>
    </persistenceAdapter>
    <systemUsage><systemUsage>
      <memoryUsage><memoryUsage limit="1 gb"/></memoryUsage>
      <storeUsage><storeUsage limit="20 gb"/></storeUsage>
      <tempUsage><tempUsage limit="2 gb"/></tempUsage>
    </systemUsage></systemUsage>
    <transportConnectors>
      <transportConnector name="openwire" uri="tcp://127.0.0.1:{port}"/>
    </transportConnectors>
  </broker>
</beans>
"""


class ActiveMQ(PeerBroker):
    """ActiveMQ from the package's activemq.jar with a generated config: KahaDB with
    journalDiskSyncStrategy=periodic (1 s), persistent, OpenWire on 127.0.0.1, a 2 GiB heap,
    data under ``workdir``; Debian's instance and service untouched."""

    name = "ActiveMQ"

    def __init__(self, workdir: Path):
        self.classes = activemq_client()
        super().__init__(workdir, "activemq")

    @property
    def store_dir(self) -> Path:
        return self.workdir / "data" / "kahadb"

    def start(self) -> None:
        conf, data = self.workdir / "conf", self.workdir / "data"
        conf.mkdir(parents=True, exist_ok=True)
        data.mkdir(parents=True, exist_ok=True)
        (conf / "activemq.xml").write_text(ACTIVEMQ_XML.format(data=data, port=self.port))
        self.process = self.spawn(
            [
                "java",
                "-Xms512m",
                "-Xmx2g",
                "-Dorg.apache.activemq.UseDedicatedTaskRunner=true",
                "--add-opens",
                "java.base/java.lang=ALL-UNNAMED",
                f"-Dactivemq.classpath={conf}",
                f"-Dactivemq.home={ACTIVEMQ_HOME}",
                f"-Dactivemq.base={self.workdir}",
                f"-Dactivemq.conf={conf}",
                f"-Dactivemq.data={data}",
                "-jar",
                str(ACTIVEMQ_HOME / "bin" / "activemq.jar"),
                "start",
                f"xbean:file:{conf / 'activemq.xml'}",
            ]
        )

    def client_command(self, verb: str, args: list[str]) -> list[str]:
        return [
            "java",
            "-Xmx512m",
            "-cp",
            f"{self.classes}:{activemq_classpath()}",
            "PaperActiveMQ",
            verb,
            f"tcp://127.0.0.1:{self.port}",
            *args,
        ]
