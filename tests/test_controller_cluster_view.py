"""A broker's view of the partition states (broker/cluster.py) against a real ZooKeeper and a
real controller, in-process: states and their versions in the metadata, leaders by state,
``on_partition_state`` for newer epochs and new ISRs only, the leader's conditional ISR
update, the broker epoch, and topic deletion taking the state nodes with it."""

from __future__ import annotations

import queue
import time

import pytest
from conftest import zk_session
from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool

from broker.cluster import PartitionStateChangedError, ZkCluster
from broker.controller import Controller
from broker.protocol import zookeeper as layout
from broker.protocol.zookeeper import PartitionState


class ThreadedReactor(Clock):
    """A Clock that takes calls from other threads and has a thread pool, as a reactor does;
    the test thread runs the calls (it is the reactor thread)."""

    def __init__(self):
        super().__init__()
        self.calls: queue.Queue = queue.Queue()
        self.pool = ThreadPool(1, 4, "test-reactor")
        self.pool.start()

    def callFromThread(self, f, *args, **kwargs):
        self.calls.put((f, args, kwargs))

    def getThreadPool(self):
        return self.pool

    def run_until(self, condition, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            try:
                f, args, kwargs = self.calls.get(timeout=0.05)
            except queue.Empty:
                continue
            f(*args, **kwargs)

    def result(self, deferred, timeout: float = 15.0):
        outcome = []
        deferred.addBoth(outcome.append)
        self.run_until(lambda: outcome, timeout)
        if isinstance(outcome[0], Exception) or hasattr(outcome[0], "raiseException"):
            outcome[0].raiseException()
        return outcome[0]


@pytest.fixture
def view(zk_chroot):
    """Broker 1's ZkCluster with its controller, and a registered broker 2."""
    reactor = ThreadedReactor()
    cluster = ZkCluster(zk_chroot, 1, "127.0.0.1", 9001, reactor, session_timeout_ms=6000)
    cluster.start()
    controller = Controller(cluster.client, 1, leader_imbalance_check_interval_s=3600)
    controller.start()
    with zk_session(zk_chroot) as other:
        other.create(
            layout.broker_path(2),
            layout.encode_broker(layout.BrokerRegistration("127.0.0.1", 9002)),
            ephemeral=True,
        )
        reactor.run_until(lambda: cluster.loaded and 2 in cluster.metadata.brokers)
        yield cluster, reactor, other
    controller.stop()
    cluster.stop()
    reactor.pool.stop()


def test_the_view_follows_states_and_the_leader_updates_its_isr(view):
    cluster, reactor, zk = view
    assert cluster.broker_epoch == zk.exists(layout.broker_path(1)).czxid
    delivered = []
    cluster.on_partition_state.append(lambda *args: delivered.append(args))

    reactor.result(cluster.create_topic("t", {0: [1, 2]}, {}))
    reactor.run_until(lambda: 0 in cluster.metadata.states.get("t", {}))
    known = cluster.metadata.states["t"][0]
    assert known.state == PartitionState(1, 0, (1, 2), 1)
    assert known.version == zk.exists(layout.partition_state_path("t", 0)).version
    assert cluster.metadata.leader("t", 0) == 1
    assert delivered == [("t", 0, known.state, known.version)]

    # The leader shrinks its ISR with a conditional write; the new ISR is delivered.
    version = reactor.result(cluster.update_isr("t", 0, [1], 0, known.version))
    reactor.run_until(lambda: cluster.metadata.states["t"][0].version == version)
    assert cluster.metadata.states["t"][0].state == PartitionState(1, 0, (1,), 1)
    assert delivered[-1] == ("t", 0, PartitionState(1, 0, (1,), 1), version)

    # A write at a version the node has left is refused and changes nothing.
    with pytest.raises(PartitionStateChangedError):
        reactor.result(cluster.update_isr("t", 0, [1, 2], 0, known.version))
    assert layout.decode_partition_state(
        zk.get(layout.partition_state_path("t", 0))[0]
    ) == PartitionState(1, 0, (1,), 1)

    # The same state written again (a new node version, same epoch and ISR) is not delivered.
    count = len(delivered)
    state, stat = zk.get(layout.partition_state_path("t", 0))
    zk.set(layout.partition_state_path("t", 0), state, version=stat.version)
    reactor.run_until(lambda: cluster.metadata.states["t"][0].version == stat.version + 1)
    assert len(delivered) == count


def test_a_deleted_topic_takes_its_partition_states_with_it(view):
    cluster, reactor, zk = view
    reactor.result(cluster.create_topic("gone", {0: [1], 1: [2]}, {}))
    reactor.run_until(lambda: len(cluster.metadata.states.get("gone", {})) == 2)
    reactor.result(cluster.delete_topic("gone"))
    assert zk.exists(layout.topic_path("gone")) is None
    assert zk.exists(layout.topic_config_path("gone")) is None
    reactor.run_until(lambda: "gone" not in cluster.metadata.topics)
    assert "gone" not in cluster.metadata.states
    assert cluster.metadata.leader("gone", 0) == -1
