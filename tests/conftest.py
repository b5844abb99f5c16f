"""Shared fixtures: a real ZooKeeper from Debian's package, started on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ZOOKEEPER_CLASSPATH = os.environ.get(
    "HEADRACE_ZOOKEEPER_CLASSPATH", "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
)
ZOOKEEPER_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _four_letter(port: int, word: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(word)
        chunks = []
        while True:
            data = s.recv(4096)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


class ZooKeeperServer:
    """A standalone ZooKeeper server process with its own config and data directory."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def connect(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        java = shutil.which("java")
        jar = ZOOKEEPER_CLASSPATH.split(":")[-1]
        if java is None or not Path(jar).exists():
            raise RuntimeError(
                "ZooKeeper is not installed: run `apt-get install zookeeper` (README.md, setup)"
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
        log = open(self.workdir / "zookeeper.out", "wb")
        self.process = subprocess.Popen(
            [java, "-Xmx256m", f"-Dzookeeper.log.dir={self.workdir}", "-cp", ZOOKEEPER_CLASSPATH,
             ZOOKEEPER_MAIN, str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = (self.workdir / "zookeeper.out").read_text(errors="replace")
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
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory):
    """A real ZooKeeper for the whole test session; yields the server (``.connect``)."""
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def zk_chroot(zookeeper, request):
    """A ``zookeeper.connect`` string with a fresh chroot, so tests do not collide."""
    from kazoo.client import KazooClient

    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.name)
    chroot = f"/t-{name}-{time.monotonic_ns()}"
    client = KazooClient(hosts=zookeeper.connect, timeout=10)
    client.start(timeout=15)
    try:
        client.ensure_path(chroot)
    finally:
        client.stop()
        client.close()
    return zookeeper.connect + chroot
