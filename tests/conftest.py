"""Shared fixtures: a real ZooKeeper from Debian's package, started on a free loopback port."""

from __future__ import annotations

import time

import pytest

from headrace.devcluster import ZooKeeperProcess, free_port  # noqa: F401 (used by tests)

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
