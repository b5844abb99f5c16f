"""Brokers as hosts of their own, for real network partitions: a Linux bridge in the root
namespace, ZooKeeper listening on the bridge's address, and one network namespace per broker
joined to the bridge by a veth pair. ``cut`` takes a broker's link down, ``heal`` brings it back.

    with NetworkLab(tmp_path, brokers=3, overrides={...}) as lab:
        lab.start()
        lab.cut(2)      # broker 2 hears nothing and is heard by no one
        lab.heal(2)

Names carry a random token per lab (``hr<token>...``) and the /24 is one no interface or route
uses, so parallel runs cannot clash. Everything made is undone when the lab exits, even after a
failure: processes killed, namespaces and links deleted. A pytest killed outright cannot undo
anything, so each lab records its owner's pid in ``OWNERS`` and the next lab to start sweeps
away what a dead owner left (``sweep_stale``). Where namespaces cannot be made (not root, no
``ip``, EPERM) ``NetworkLab.skip_unless_possible`` skips the test, saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import metadata, wait_for, zk_session

from headrace.devcluster import BrokerProcess, ZooKeeperProcess

SUBNET_PREFIX = "10.213"
OWNERS = Path("/run/headrace-netns")  # <token>.json per live lab: its owner's pid, ZooKeeper's
STALE_AFTER_S = 180.0


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be made here; the message says why."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``ip ARGS`` (bounded); a failure raises with ip's own message when ``check``."""
    result = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _free_subnet() -> int:
    """A third octet N such that no address or route of this host is in 10.213.N.0/24."""
    used = ip("-4", "-o", "addr", "show").stdout + ip("-4", "route", "show").stdout
    candidates = list(range(1, 255))
    secrets.SystemRandom().shuffle(candidates)
    for n in candidates:
        if f"{SUBNET_PREFIX}.{n}." not in used:
            return n
    raise NetnsUnavailable(f"no free {SUBNET_PREFIX}.N.0/24 subnet")


def _probe() -> None:
    """Raise NetnsUnavailable unless this process may create a network namespace."""
    if shutil.which("ip") is None:
        raise NetnsUnavailable("the `ip` command (iproute2) is not installed")
    if os.geteuid() != 0:
        raise NetnsUnavailable("creating network namespaces needs root")
    name = f"hrprobe{secrets.token_hex(3)}"
    made = ip("netns", "add", name, check=False)
    if made.returncode != 0:
        raise NetnsUnavailable(f"`ip netns add` failed: {made.stderr.strip()}")
    ip("netns", "del", name, check=False)


class NamespacedZooKeeper(ZooKeeperProcess):
    """Debian's ZooKeeper listening on ``host`` (the bridge's address) instead of loopback."""

    def __init__(self, workdir: Path, host: str):
        super().__init__(workdir, port=_free_port_on(host))
        self.host = host

    @property
    def connect(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        command = super().command()
        config = Path(command[-1])
        config.write_text(
            config.read_text().replace(
                "clientPortAddress=127.0.0.1", f"clientPortAddress={self.host}"
            )
        )
        return command

    def start(self, timeout: float = 30.0, detach: bool = False) -> None:
        """Start and wait until the server answers ``ruok`` on its address."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / "zookeeper.out", "ab") as out:
            self.process = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

        def answering():
            if self.process.poll() is not None:
                tail = (self.workdir / "zookeeper.out").read_text(errors="replace")[-3000:]
                pytest.fail(f"ZooKeeper on {self.connect} exited:\n{tail}")
            return _ruok(self.host, self.port)

        wait_for(answering, timeout)


class NamespacedBroker(BrokerProcess):
    """A broker process run with ``ip netns exec`` in namespace ``netns``, listening and
    advertised on ``host``, the namespace's own address."""

    def __init__(self, workdir, broker_id, zookeeper_connect, netns, host, links, overrides=None):
        listener = f"PLAINTEXT://{host}:9092"
        props = {"listeners": listener, "advertised.listeners": listener, **(overrides or {})}
        super().__init__(workdir, broker_id, zookeeper_connect, port=9092, overrides=props)
        self.netns = netns
        self.host = host
        self.links = links  # its veth pair: the end on the bridge, the end in its namespace

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30.0, detach: bool = False) -> None:
        self.write_config()
        command = [
            sys.executable,
            "-m",
            "headrace.cli",
            "broker",
            "--config",
            str(self.config_path),
        ]
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *command],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the broker answers Metadata on its address and lists itself."""

        def registered():
            if self.process is not None and self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"broker {self.broker_id} exited:\n{tail}")
            brokers = metadata(self.port, host=self.host)["brokers"]
            return any(b["node_id"] == self.broker_id for b in brokers)

        wait_for(registered, timeout)


class NetworkLab:
    """A bridge, a ZooKeeper on it and ``brokers`` namespaced brokers (ids 1..N); a context
    manager that undoes all of it on exit. ``start()`` starts ZooKeeper and the brokers,
    which share the chroot ``CHROOT``."""

    CHROOT = "/headrace"

    def __init__(self, workdir: Path, brokers: int, overrides: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.size = brokers
        self.overrides = dict(overrides or {})
        self.token = secrets.token_hex(3)
        self.bridge = f"hr{self.token}br"
        self.subnet = None
        self.zookeeper: NamespacedZooKeeper | None = None
        self.zookeeper_connect = ""  # with the brokers' chroot, once ZooKeeper has a port
        self.brokers: list[NamespacedBroker] = []
        self._undo = contextlib.ExitStack()

    @staticmethod
    def skip_unless_possible() -> None:
        """Skip the calling test, saying why, where network namespaces cannot be made."""
        try:
            _probe()
        except NetnsUnavailable as exc:
            pytest.skip(f"network partition tests need network namespaces: {exc}")

    @property
    def gateway(self) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet}.1"

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def __enter__(self) -> NetworkLab:
        sweep_stale()
        try:
            self._record()
            self._undo.callback(self._record_path().unlink, missing_ok=True)
            self._build()
        except BaseException:
            self._undo.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self._undo.close()

    def _build(self) -> None:
        self.subnet = _free_subnet()
        ip("link", "add", self.bridge, "type", "bridge")
        self._undo.callback(ip, "link", "del", self.bridge, check=False)
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        self.zookeeper = NamespacedZooKeeper(self.workdir / "zookeeper", self.gateway)
        self._undo.callback(self.zookeeper.stop)
        self.zookeeper_connect = self.zookeeper.connect + self.CHROOT
        for broker_id in range(1, self.size + 1):
            self.brokers.append(self._namespace_for(broker_id))

    def _namespace_for(self, broker_id: int) -> NamespacedBroker:
        netns, outside, inside = (f"hr{self.token}{kind}{broker_id}" for kind in "nhb")
        host = f"{SUBNET_PREFIX}.{self.subnet}.{10 + broker_id}"
        ip("netns", "add", netns)
        self._undo.callback(ip, "netns", "del", netns, check=False)
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        self._undo.callback(ip, "link", "del", outside, check=False)  # takes its peer with it
        ip("link", "set", inside, "netns", netns)
        ip("link", "set", outside, "master", self.bridge)
        ip("link", "set", outside, "up")
        ip("-n", netns, "addr", "add", f"{host}/24", "dev", inside)
        ip("-n", netns, "link", "set", inside, "up")
        ip("-n", netns, "link", "set", "lo", "up")
        broker = NamespacedBroker(
            self.workdir / f"broker-{broker_id}",
            broker_id,
            self.zookeeper_connect,
            netns,
            host,
            (outside, inside),
            self.overrides,
        )
        self._undo.callback(broker.kill)  # runs before its namespace is deleted
        return broker

    def _record_path(self) -> Path:
        return OWNERS / f"{self.token}.json"

    def _record(self, **fields) -> None:
        """(Re)write this lab's owner record: the test's pid, and ``fields``."""
        OWNERS.mkdir(parents=True, exist_ok=True)
        temporary = self._record_path().with_suffix(".tmp")
        temporary.write_text(json.dumps({"owner": os.getpid(), **fields}))
        temporary.replace(self._record_path())

    def start_zookeeper(self) -> None:
        """Start ZooKeeper on the bridge and note it in the owner record."""
        self.zookeeper.start()
        self._record(zookeeper=self.zookeeper.process.pid, workdir=str(self.workdir))

    def start(self) -> NetworkLab:
        """Start ZooKeeper on the bridge and every broker; wait until each sees all."""
        self.start_zookeeper()
        with zk_session(self.zookeeper.connect) as client:
            client.ensure_path(self.CHROOT)
        for broker in self.brokers:
            broker.start()
        for broker in self.brokers:
            wait_for(
                lambda b=broker: len(metadata(b.port, host=b.host)["brokers"]) == self.size, 20
            )
        return self

    def broker(self, broker_id: int) -> NamespacedBroker:
        return self.brokers[broker_id - 1]

    def cut(self, broker_id: int) -> None:
        """Take broker ``broker_id``'s link down at both ends: no packet in or out."""
        outside, inside = self.broker(broker_id).links
        ip("link", "set", outside, "down")
        ip("-n", self.broker(broker_id).netns, "link", "set", inside, "down")

    def heal(self, broker_id: int) -> None:
        """Bring broker ``broker_id``'s link back up at both ends."""
        outside, inside = self.broker(broker_id).links
        ip("-n", self.broker(broker_id).netns, "link", "set", inside, "up")
        ip("link", "set", outside, "up")

    def popen_in(self, broker_id: int, command: list[str], **options) -> subprocess.Popen:
        """Start ``command`` inside broker ``broker_id``'s namespace (on its side of a cut);
        killed when the lab exits if it is still running."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.broker(broker_id).netns, *command], **options
        )
        self._undo.callback(_kill, process)
        return process


def sweep_stale(older_than: float = STALE_AFTER_S) -> list[str]:
    """Undo the labs whose record is older than ``older_than`` seconds and whose owner is gone
    (a pytest killed with SIGKILL): kill what runs in their namespaces and their ZooKeeper,
    delete their namespaces and links. Returns the tokens swept."""
    swept = []
    for record in OWNERS.glob("*.json") if OWNERS.is_dir() else ():
        try:
            owner = json.loads(record.read_text())
            age = time.time() - record.stat().st_mtime
        except (OSError, ValueError):
            continue
        if age < older_than or _alive(owner.get("owner", -1)):
            continue
        prefix = f"hr{record.stem}"
        for netns in ip("netns", "list").stdout.split():
            if netns.startswith(prefix):
                for pid in ip("netns", "pids", netns, check=False).stdout.split():
                    _signal(int(pid), signal.SIGKILL)
                ip("netns", "del", netns, check=False)
        for line in ip("-o", "link", "show").stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name.startswith(prefix):
                ip("link", "del", name, check=False)
        zookeeper, workdir = owner.get("zookeeper"), owner.get("workdir")
        if zookeeper and workdir and workdir in _command_line(zookeeper):
            _signal(zookeeper, signal.SIGKILL)
        record.unlink(missing_ok=True)
        swept.append(record.stem)
    return swept


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:  # never kill(0 or -1, ...): a whole group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def _free_port_on(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ruok(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1) as s:
        s.sendall(b"ruok")
        return s.recv(4) == b"imok"
