"""Shared fixtures: a real ZooKeeper from Debian's package, started on a free loopback port,
broker clusters on it, and the ``integration`` marker that keeps the other tests pure."""

from __future__ import annotations

import _posixsubprocess
import contextlib
import os
import socket
import subprocess
import time

import pytest

from headrace.devcluster import ZooKeeperProcess, free_port  # noqa: F401 (used by tests)

# Every test using one of these fixtures starts processes (ZooKeeper, and brokers on it).
PROCESS_FIXTURES = frozenset({"zookeeper"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Mark ``integration`` every test whose fixtures start ZooKeeper or brokers; in a
    pytest-xdist worker, put the slowest modules first (``heaviest_modules_first``)."""
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items[:] = heaviest_modules_first(items)


# What a test weighs when the modules are ordered for parallel workers: a pure test runs in
# milliseconds, an integration test in seconds, a ``slow`` one in tens of seconds.
INTEGRATION_WEIGHT = 1
SLOW_WEIGHT = 5


def heaviest_modules_first(items):
    """``items`` with whole modules ordered by their weight, heaviest first (ties and pure
    modules keep their order; a module's tests keep theirs).  ``--dist loadfile`` hands out
    modules in this order, so the long ones start first and the short ones fill the end,
    instead of a long module starting last while the other workers sit idle."""
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def weight(tests) -> int:
        total = 0
        for test in tests:
            if test.get_closest_marker("integration") is not None:
                total += INTEGRATION_WEIGHT
            if test.get_closest_marker("slow") is not None:
                total += SLOW_WEIGHT
        return total

    ordered = sorted(modules.values(), key=weight, reverse=True)  # sorted() is stable
    return [item for tests in ordered for item in tests]


class ProcessOrNetworkInPureTest(RuntimeError):
    """A test not marked ``integration`` started a process or opened a network connection."""


@contextlib.contextmanager
def refusing_processes_and_connections(item):
    """While a test not marked ``integration`` runs, starting a process or connecting a socket
    raises; yields the list of what was attempted, so that catching the error hides nothing."""
    attempts = []
    if item.get_closest_marker("integration") is not None:
        yield attempts
        return

    def refuse(what):
        def refused(*args, **kwargs):
            attempts.append(what)
            raise ProcessOrNetworkInPureTest(
                f"{what} in a test not marked integration (add @pytest.mark.integration)"
            )

        return refused

    with pytest.MonkeyPatch.context() as patch:
        # fork_exec is what subprocess (under its own name) and multiprocessing's spawn end in.
        patch.setattr(subprocess, "_fork_exec", refuse("starting a process"))
        patch.setattr(_posixsubprocess, "fork_exec", refuse("starting a process"))
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
            patch.setattr(os, name, refuse(f"os.{name}"))
        patch.setattr(socket.socket, "connect", refuse("a socket connect"))
        patch.setattr(socket.socket, "connect_ex", refuse("a socket connect"))
        yield attempts


def run_pure_unless_integration(item):
    """The body of a runtest hook wrapper: the phase runs refusing processes and connections
    (unless the test is marked ``integration``), and fails if it attempted any."""
    with refusing_processes_and_connections(item) as attempts:
        result = yield
    if attempts:
        pytest.fail(f"{', '.join(sorted(set(attempts)))} in a test not marked integration")
    return result


# Setup (the test's fixtures, of any scope, set up for it) and the test itself; not teardown,
# where a module's fixtures of earlier integration tests may be stopped.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from run_pure_unless_integration(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from run_pure_unless_integration(item))


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory):
    """A real ZooKeeper for the whole test session; yields the server (``.connect``)."""
    server = ZooKeeperProcess(tmp_path_factory.mktemp("zookeeper"))
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


class Cluster:
    """N real broker processes sharing a ZooKeeper chroot of their own."""

    def __init__(self, workdir, zookeeper_connect: str, size: int, overrides=None, listeners=None):
        from headrace.devcluster import BrokerProcess

        self.brokers = [
            BrokerProcess(workdir, i, zookeeper_connect, overrides=overrides, listeners=listeners)
            for i in range(1, size + 1)
        ]
        self.zookeeper_connect = zookeeper_connect

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers if b.process is not None)

    def bootstrap_for(self, listener: str) -> str:
        """The bootstrap string of the running brokers' listener named ``listener``."""
        return ",".join(b.bootstrap_for(listener) for b in self.brokers if b.process is not None)

    def broker(self, broker_id: int):
        return next(b for b in self.brokers if b.broker_id == broker_id)

    def start(self) -> Cluster:
        for broker in self.brokers:
            broker.start()
        for broker in self.brokers:  # every broker sees every other one
            wait_for(lambda b=broker: len(metadata(b.port)["brokers"]) == len(self.brokers), 20)
        return self

    def stop(self) -> None:
        for broker in self.brokers:
            broker.stop()

    def kill(self) -> None:
        """SIGKILL every broker: for teardown, where nothing is checked any more and a graceful
        stop (a controlled shutdown per broker, in turn) costs seconds each."""
        for broker in self.brokers:
            broker.kill()


def metadata(
    port: int, topics=None, version: int = 8, auto_create: bool = False, host: str = "127.0.0.1"
) -> dict:
    """A Metadata response from the broker on ``host:port`` (all topics by default)."""
    from broker.protocol.registry import ApiKey
    from consumers.client import BrokerConnection

    names = None if topics is None else [{"name": t} for t in topics]
    with BrokerConnection(host, port, timeout=10) as conn:
        return conn.request(
            ApiKey.METADATA,
            {"topics": names, "allow_auto_topic_creation": auto_create},
            version=version,
        )


def wait_for(condition, timeout: float, interval: float = 0.1):
    """Poll ``condition`` until it is true (returning its value) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # not ready yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last error: {last_error})")


def create_topic(
    port: int, name: str, partitions: int, configs=None, replication_factor: int = -1, check=True
) -> dict:
    """Create a topic through the broker on ``port`` with the ``headrace topics`` code path; its
    CreateTopics result. A refusal raises its KafkaError unless ``check`` is false."""
    from headrace.topics import create_topic_simple

    return create_topic_simple(
        f"127.0.0.1:{port}", name, partitions, configs, replication_factor, check=check
    )


def _module_cluster(zookeeper, tmp_path_factory, size: int):
    """A ``size``-broker cluster under its own chroot, stopped when the module is done."""
    name = f"cluster{size}"
    cluster = Cluster(
        tmp_path_factory.mktemp(name), f"{zookeeper.connect}/{name}-{time.monotonic_ns()}", size
    ).start()
    yield cluster
    cluster.kill()


@pytest.fixture(scope="module")
def cluster1(zookeeper, tmp_path_factory):
    """A one-broker cluster shared by a test module."""
    yield from _module_cluster(zookeeper, tmp_path_factory, 1)


@pytest.fixture(scope="module")
def cluster3(zookeeper, tmp_path_factory):
    """A three-broker cluster shared by a test module."""
    yield from _module_cluster(zookeeper, tmp_path_factory, 3)


@pytest.fixture
def make_cluster(zookeeper, tmp_path):
    """Start a private cluster: ``make_cluster(size, **overrides)``; stopped after the test.

    Every broker listens PLAINTEXT on ``broker.port`` (what ``cluster.bootstrap`` names);
    ``listeners={"SSL": "SSL", "INTERNAL": "SSL"}`` adds listeners (name: security protocol)
    on ports of their own, found by ``cluster.bootstrap_for("SSL")``.  ``props`` are broker
    properties taken as they are (for keys with underscores or per-listener prefixes), e.g.
    ``props=certs.broker_properties(client_auth="required")``."""
    started = []

    def make(size: int, listeners=None, props=None, **overrides):
        values = {k.replace("_", "."): str(v) for k, v in overrides.items()}
        values.update({k: str(v) for k, v in (props or {}).items()})
        cluster = Cluster(
            tmp_path / f"cluster{len(started)}",
            f"{zookeeper.connect}/p-{time.monotonic_ns()}",
            size,
            values,
            listeners,
        )
        started.append(cluster)
        return cluster.start()

    yield make
    for cluster in started:
        cluster.kill()


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """PEM certificates for TLS tests (``tests/certs.py``): ``certs.ca``,
    ``certs.broker_keystore``, ``certs.client("alice")``, ``certs.other_client``..."""
    from tests.certs import make_certs

    return make_certs(tmp_path_factory.mktemp("certs"))


@contextlib.contextmanager
def zk_session(connect: str):
    """A started kazoo client on ``connect``, stopped and closed afterwards."""
    from kazoo.client import KazooClient

    client = KazooClient(hosts=connect, timeout=10)
    client.start(timeout=15)
    try:
        yield client
    finally:
        client.stop()
        client.close()
