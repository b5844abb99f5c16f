"""The leader's lease after a new ZooKeeper session (broker/replica/lease.py): a broker whose
session expired takes no write on its new session until it acts on a partition state written
after its new registration; nothing it acknowledged is truncated, and it leads and serves again
once the controller has decided for it.  The rule itself, and the controller's side of it (a
bounced broker always gets such a state), as pure functions."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from conftest import create_topic, wait_for, zk_session
from kazoo.client import KazooClient
from request_bodies import produce_to
from test_replica_cluster import segment_bytes, state
from twisted.internet.task import Clock

from broker import election
from broker.cluster import ZkCluster
from broker.protocol import zookeeper as layout
from broker.protocol.records import build_batch, decode_batches
from broker.protocol.zookeeper import PartitionState
from broker.replica.lease import SessionLease, written_after_registration
from consumers.client import BrokerConnection

NONE = 0
NOT_LEADER_OR_FOLLOWER = 6

# --- the rule -----------------------------------------------------------------------------


def test_a_state_counts_only_when_written_after_the_registration():
    assert written_after_registration(state_mzxid=101, broker_epoch=100)
    assert not written_after_registration(state_mzxid=100, broker_epoch=100)
    assert not written_after_registration(state_mzxid=99, broker_epoch=100)
    assert not written_after_registration(state_mzxid=5, broker_epoch=-1)  # not registered


def lease_on(broker_epoch: int, session_timeout: float = 6.0):
    """A lease over a cluster object that is not started: its registration fields are set as
    the session's events set them."""
    cluster = ZkCluster("127.0.0.1:1", 1, "127.0.0.1", 9092, reactor=None)
    cluster.broker_epoch = broker_epoch
    clock = Clock()
    clock.advance(1000)
    return SessionLease(cluster, clock, session_timeout), cluster, clock


def test_a_new_session_leads_only_under_a_state_written_for_its_new_registration():
    lease, cluster, clock = lease_on(broker_epoch=100)
    assert lease.may_lead(150)  # the first session, a state written for it
    cluster.registered_again = False  # the session was lost: nothing holds
    assert not lease.held() and not lease.may_lead(150)
    cluster.broker_epoch, cluster.registered_again = 200, True  # registered on the new one
    assert lease.held()
    assert not lease.may_lead(150)  # the cached state is the old session's
    assert "predates this broker's registration" in lease.refusal(150)
    assert lease.may_lead(201)  # the controller's state for the new incarnation
    clock.advance(5.0)  # no renewal answered for 0.8 of the timeout and more: lapsed
    assert not lease.may_lead(201)
    assert "not confirmed" in lease.refusal(201)


def test_a_bounced_leader_is_replaced_by_an_in_sync_replica():
    state = PartitionState(1, 4, (1, 2), 7)
    bounced = election.registered_since(state, written_at=50, broker_epochs={1: 60, 2: 40})
    assert bounced == {1}
    assert election.on_broker_bounce(state, [1, 2], bounced, {1, 2}, 8) == PartitionState(
        2, 5, (2,), 8
    )


def test_a_bounced_sole_in_sync_leader_leads_again_in_a_later_epoch():
    state = PartitionState(1, 4, (1,), 7)
    assert election.on_broker_bounce(state, [1, 2], {1}, {1, 2}, 8) == PartitionState(1, 6, (1,), 8)


def test_a_bounced_follower_leaves_the_isr_and_unknown_writes_bounce_nobody():
    state = PartitionState(1, 4, (1, 2, 3), 7)
    epochs = {1: 10, 2: 60, 3: 20}
    assert election.registered_since(state, 50, epochs) == {2}
    assert election.on_broker_bounce(state, [1, 2, 3], {2}, {1, 2, 3}, 8) == PartitionState(
        1, 5, (1, 3), 8
    )
    assert election.registered_since(state, None, epochs) == set()
    assert election.registered_since(state, 60, epochs) == set()


# --- a real session expiry under a produce stream -------------------------------------------


def session_password(session_id: int) -> bytes:
    """The password ZooKeeper gives a session: ``ZooKeeperServer.generatePasswd``, 16 bytes of
    ``java.util.Random(session_id ^ 0xB3415C00)``.  So a test can close another process's
    session knowing only its id (a registration's ephemeralOwner)."""
    mask = (1 << 48) - 1
    seed = (session_id ^ 0xB3415C00 ^ 0x5DEECE66D) & mask
    out = bytearray()
    while len(out) < 16:
        seed = (seed * 0x5DEECE66D + 0xB) & mask
        word = seed >> 16
        for _ in range(min(4, 16 - len(out))):
            out.append(word & 0xFF)
            word >>= 8
    return bytes(out)


def expire_session(connect: str, session_id: int) -> None:
    """Kazoo's real session expiry: a second client on the same session closes it."""
    other = KazooClient(hosts=connect, client_id=(session_id, session_password(session_id)))
    other.start(timeout=15)
    other.stop()
    other.close()


@pytest.mark.integration
def test_the_session_password_is_zookeepers(zk_chroot):
    client = KazooClient(hosts=zk_chroot, timeout=10)
    client.start(timeout=15)
    try:
        session_id, password = client.client_id
        assert session_password(session_id) == password
    finally:
        client.stop()
        client.close()


class Stream(threading.Thread):
    """acks=1 Produce requests to one partition on one broker, one at a time, each a batch of
    one record numbered in order; keeps every answer as (number, error code, base offset)."""

    def __init__(self, port: int, topic: str, partition: int):
        super().__init__(daemon=True)
        self.port, self.topic, self.partition = port, topic, partition
        self.answers: list[tuple[int, int, int]] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with BrokerConnection("127.0.0.1", self.port, timeout=30) as conn:
                while not self.stopping.is_set():
                    n = len(self.answers)
                    records = build_batch([(None, b"%d" % n)])
                    answer = produce_to(conn, self.topic, self.partition, records, acks=1)
                    self.answers.append((n, answer["error_code"], answer["base_offset"]))
                    time.sleep(0.005)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def count(self, error_code: int, since: int = 0) -> int:
        return sum(1 for n, code, _ in self.answers[since:] if code == error_code)

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)
        assert self.error is None, f"the produce stream failed: {self.error!r}"


def expire_registered(zk, connect: str, broker_id: int):
    """Expire ``broker_id``'s session; the stats of its old and its new registration, once the
    broker has registered on a new session."""
    path = layout.broker_path(broker_id)
    old = zk.exists(path)
    expire_session(connect, old.ephemeralOwner)
    new = wait_for(lambda: (stat := zk.exists(path)) and stat.czxid != old.czxid and stat, 20)
    return old, new


def serves_again(zk, stream: Stream, partition: int, before, registered) -> None:
    """The controller decides for the broker's new incarnation: the broker, the partition's
    first replica, catches up, leads again under a state written after its registration and
    acknowledges writes; then the stream stops."""
    path = layout.partition_state_path(stream.topic, partition)
    wait_for(lambda: state(zk, stream.topic, partition).leader_epoch > before.leader_epoch, 20)
    wait_for(lambda: state(zk, stream.topic, partition).leader == before.leader, 30)
    assert zk.get(path)[1].mzxid > registered.czxid
    served = len(stream.answers)
    wait_for(lambda: stream.count(NONE, served) >= 50, 30)
    stream.stop()


def acknowledged_writes_are_stored(cluster, replicas, stream, partition, before, mark):
    """Both replicas hold the same bytes, and every acknowledged write is in them, once, at the
    offset it was given; those from request ``mark`` on (after the new registration) under a
    leader epoch later than ``before``'s."""
    topic = stream.topic
    wait_for(lambda: len({segment_bytes(cluster, b, topic, partition) for b in replicas}) == 1, 20)
    stored = {}
    for batch in decode_batches(segment_bytes(cluster, replicas[0], topic, partition)):
        for record in batch.records:
            assert int(record.value) not in stored, f"{record.value!r} stored twice"
            stored[int(record.value)] = (record.offset, batch.header.partition_leader_epoch)
    acked = [(n, offset) for n, code, offset in stream.answers if code == NONE]
    assert acked and all(stored.get(n, (None,))[0] == offset for n, offset in acked)
    assert all(stored[n][1] > before.leader_epoch for n, _ in acked if n >= mark)


def streaming_to_leader(cluster, zk, topic: str, partition: int):
    """The partition's state once both replicas are in sync, and an acks=1 stream to its
    leader that has had 50 writes acknowledged."""
    wait_for(lambda: len(state(zk, topic, partition).isr) == 2, 20)
    before = state(zk, topic, partition)
    stream = Stream(cluster.broker(before.leader).port, topic, partition)
    stream.start()
    wait_for(lambda: stream.count(NONE) >= 50, 20)
    return before, stream


def controller_and_placement(zk, topic: str):
    controller = layout.decode_controller(zk.get(layout.CONTROLLER)[0]).broker_id
    return controller, layout.decode_topic(zk.get(layout.topic_path(topic))[0]).partitions


@pytest.mark.integration
def test_a_new_session_takes_no_write_until_the_controller_decided_for_it(make_cluster):
    cluster = make_cluster(
        3, zookeeper_session_timeout_ms=12000, leader_imbalance_check_interval_seconds=1
    )
    create_topic(cluster.brokers[0].port, "lease", 3, replication_factor=2)
    with zk_session(cluster.zookeeper_connect) as zk:
        controller, placement = controller_and_placement(zk, "lease")
        # A partition the controller holds no replica of: stopping the controller (below)
        # holds back its decisions, nothing else.
        partition = next(p for p, replicas in placement.items() if controller not in replicas)
        before, stream = streaming_to_leader(cluster, zk, "lease", partition)
        stopped = cluster.broker(controller).process
        # The window made wide: the controller, stopped, decides nothing until it resumes;
        # meanwhile the broker has a new session, a new registration and its cached states.
        stopped.send_signal(signal.SIGSTOP)
        try:
            _, new = expire_registered(zk, cluster.zookeeper_connect, before.leader)
            # Every request numbered from here on reaches the broker after its registration.
            mark = len(stream.answers) + 1
            wait_for(lambda: len(stream.answers) >= mark + 100, 20)
            window = stream.answers[mark:]
        finally:
            stopped.send_signal(signal.SIGCONT)
        refused = [n for n, code, _ in window if code == NOT_LEADER_OR_FOLLOWER]
        assert len(refused) >= 100 and len(refused) == len(window), "acked before a new state"
        serves_again(zk, stream, partition, before, new)
    acknowledged_writes_are_stored(cluster, placement[partition], stream, partition, before, mark)


@pytest.mark.integration
def test_a_controller_whose_own_session_expired_decides_again_for_itself(make_cluster):
    """The controller's broker leads a partition alone in its ISR (the other replica stopped
    and dropped) and its session expires: its own new controller sees it registered after the
    partition's state (a bounce no controller saw) and decides again, so it is not refused
    for ever, and it leads again."""
    cluster = make_cluster(
        2,
        zookeeper_session_timeout_ms=12000,
        leader_imbalance_check_interval_seconds=1,
        replica_lag_time_max_ms=1000,
    )
    create_topic(cluster.brokers[0].port, "self", 2, replication_factor=2)
    with zk_session(cluster.zookeeper_connect) as zk:
        controller, placement = controller_and_placement(zk, "self")
        partition = next(p for p, replicas in placement.items() if replicas[0] == controller)
        before, stream = streaming_to_leader(cluster, zk, "self", partition)
        assert before.leader == controller
        stopped = cluster.broker(3 - controller).process
        stopped.send_signal(signal.SIGSTOP)  # nor can it stand for controller meanwhile
        try:
            wait_for(lambda: state(zk, "self", partition).isr == (controller,), 20)
            before = state(zk, "self", partition)
            _, new = expire_registered(zk, cluster.zookeeper_connect, controller)
            mark = len(stream.answers) + 1
            wait_for(lambda: zk.exists(layout.CONTROLLER).ephemeralOwner == new.ephemeralOwner, 20)
            serves_again(zk, stream, partition, before, new)
        finally:
            stopped.send_signal(signal.SIGCONT)
    acknowledged_writes_are_stored(cluster, placement[partition], stream, partition, before, mark)
