"""The controller against a real ZooKeeper, in-process (broker/controller.py): election,
partition states written and fenced by the controller epoch, a superseded controller's write
refused after a real session expiry, a bounce no controller saw decided by the next one and
one whose event a dropped connection cut short decided on the reconnect, controlled shutdown
and stale broker epochs."""

from __future__ import annotations

import queue
import time

import pytest
from conftest import wait_for
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import ConnectionLoss

from broker.controller import Controller, ControllerMovedError
from broker.protocol import errors
from broker.protocol import zookeeper as layout
from broker.protocol.zookeeper import PartitionState, TopicPlacement


def _client(connect: str) -> KazooClient:
    client = KazooClient(hosts=connect, timeout=6)
    client.start(timeout=15)
    return client


@pytest.fixture
def zk(zk_chroot):
    """Clients on a fresh chroot, closed afterwards: ``zk.client()``; ``zk.admin`` makes the
    base paths and reads."""
    made = []

    class Zk:
        connect = zk_chroot

        @staticmethod
        def client() -> KazooClient:
            made.append(_client(zk_chroot))
            return made[-1]

    zk = Zk()
    zk.admin = zk.client()
    for path in layout.BROKER_BASE_PATHS:
        zk.admin.ensure_path(path)
    yield zk
    for client in made:
        client.stop()
        client.close()


def register(zk, broker_id: int) -> KazooClient:
    """A broker registration on a session of its own."""
    client = zk.client()
    client.create(
        layout.broker_path(broker_id),
        layout.encode_broker(layout.BrokerRegistration("127.0.0.1", 9000 + broker_id)),
        ephemeral=True,
    )
    return client


def state_of(zk, topic: str, partition: int):
    data, stat = zk.admin.get(layout.partition_state_path(topic, partition))
    return layout.decode_partition_state(data), stat.version


def started(zk, broker_id: int) -> Controller:
    controller = Controller(zk.client(), broker_id, leader_imbalance_check_interval_s=3600)
    controller.start()
    return controller


def expire_session(zk, client: KazooClient) -> None:
    """Kazoo's real session expiry: a second client on the same session closes it."""
    session_id, password = client.client_id
    other = KazooClient(hosts=zk.connect, client_id=(session_id, password), timeout=6)
    other.start(timeout=15)
    other.stop()
    other.close()


def test_controller_writes_first_states_and_elects_from_the_isr_on_failure(zk):
    brokers = {b: register(zk, b) for b in (1, 2, 3)}
    zk.admin.create(layout.topic_path("t"), layout.encode_topic(TopicPlacement({0: [1, 2, 3]})))
    controller = started(zk, 1)
    try:
        wait_for(lambda: zk.admin.exists(layout.partition_state_path("t", 0)), 10)
        assert state_of(zk, "t", 0)[0] == PartitionState(1, 0, (1, 2, 3), 1)
        assert layout.decode_controller(zk.admin.get(layout.CONTROLLER)[0]).broker_id == 1
        assert layout.decode_controller_epoch(zk.admin.get(layout.CONTROLLER_EPOCH)[0]) == 1

        brokers[1].stop()  # the leader's registration goes
        wait_for(lambda: state_of(zk, "t", 0)[0].leader == 2, 10)
        assert state_of(zk, "t", 0)[0] == PartitionState(2, 1, (2, 3), 1)

        brokers[3].stop()  # a follower: it leaves the ISR
        wait_for(lambda: state_of(zk, "t", 0)[0].isr == (2,), 10)
        assert state_of(zk, "t", 0)[0] == PartitionState(2, 2, (2,), 1)

        brokers[2].stop()  # the last in-sync replica: offline, it stays in the ISR
        wait_for(lambda: state_of(zk, "t", 0)[0].leader == -1, 10)
        assert state_of(zk, "t", 0)[0] == PartitionState(-1, 3, (2,), 1)

        register(zk, 1)  # out of sync: no unclean election by default
        time.sleep(0.5)
        assert state_of(zk, "t", 0)[0].leader == -1
        register(zk, 2)  # the last in-sync replica returns and leads
        wait_for(lambda: state_of(zk, "t", 0)[0].leader == 2, 10)
        assert state_of(zk, "t", 0)[0] == PartitionState(2, 4, (2,), 1)
    finally:
        controller.stop()


def test_a_superseded_controllers_write_is_refused_and_changes_nothing(zk):
    register(zk, 1)
    register(zk, 2)
    zk.admin.create(layout.topic_path("t"), layout.encode_topic(TopicPlacement({0: [1, 2]})))
    first = started(zk, 1)
    wait_for(lambda: first.active and zk.admin.exists(layout.partition_state_path("t", 0)), 10)
    second = started(zk, 2)
    try:
        time.sleep(0.3)
        assert first.active and not second.active  # elected once
        before = zk.admin.get(layout.partition_state_path("t", 0))

        old_session = first.client.client_id[0]
        expire_session(zk, first.client)
        wait_for(lambda: second.active, 20)
        assert second.epoch == first.epoch + 1
        wait_for(lambda: not first.active, 20)
        # kazoo opens a new session; the old controller's next write goes through it
        wait_for(lambda: first.client.connected and first.client.client_id[0] != old_session, 20)

        state, version = state_of(zk, "t", 0)
        rogue = PartitionState(1, state.leader_epoch + 5, (1,), first.epoch)
        with pytest.raises(ControllerMovedError):
            first.write_states([(("t", 0), rogue, version)])
        after = zk.admin.get(layout.partition_state_path("t", 0))
        assert (after[0], after[1].version) == (before[0], before[1].version)
        assert layout.decode_controller(zk.admin.get(layout.CONTROLLER)[0]).broker_id == 2
    finally:
        second.stop()
        first.stop()


def test_the_controllers_broker_gone_another_takes_over_with_a_higher_epoch(zk):
    clients = {1: zk.client(), 2: zk.client()}
    controllers = {}
    for b, client in clients.items():
        client.create(
            layout.broker_path(b),
            layout.encode_broker(layout.BrokerRegistration("127.0.0.1", 9000 + b)),
            ephemeral=True,
        )
        controllers[b] = Controller(client, b, leader_imbalance_check_interval_s=3600)
        controllers[b].start()
    zk.admin.create(layout.topic_path("t"), layout.encode_topic(TopicPlacement({0: [1, 2]})))
    try:
        wait_for(lambda: zk.admin.exists(layout.partition_state_path("t", 0)), 10)
        first = next(b for b, c in controllers.items() if c.active)
        other = 3 - first
        controllers[first].stop()
        clients[first].stop()  # its broker goes with its session
        wait_for(lambda: controllers[other].active, 10)
        assert controllers[other].epoch == controllers[first].epoch + 1
        wait_for(lambda: state_of(zk, "t", 0)[0].leader == other, 10)
        assert state_of(zk, "t", 0)[0].controller_epoch == controllers[other].epoch
    finally:
        for controller in controllers.values():
            controller.stop()


def test_a_new_controller_decides_again_for_a_broker_registered_after_a_state(zk):
    """A broker that bounced where no controller saw it (its registration newer than the
    states naming it) gets states written after its registration: a broker on a new session
    leads only under those (broker/replica/lease.py)."""
    brokers = {b: register(zk, b) for b in (1, 2, 3)}
    placement = TopicPlacement({0: [1, 2], 1: [1, 3], 2: [2, 3]})
    zk.admin.create(layout.topic_path("t"), layout.encode_topic(placement))
    old = {0: PartitionState(1, 3, (1, 2), 1), 1: PartitionState(1, 3, (1,), 1)}
    old[2] = PartitionState(2, 3, (2, 3), 1)
    for p, state in old.items():
        path = layout.partition_state_path("t", p)
        zk.admin.create(path, layout.encode_partition_state(state), makepath=True)
    brokers[1].stop()  # its session ends and it registers again: no controller saw it
    register(zk, 1)
    broker_epoch = zk.admin.exists(layout.broker_path(1)).czxid
    controller = started(zk, 3)
    try:
        wait_for(lambda: all(state_of(zk, "t", p)[0].leader_epoch > 3 for p in (0, 1)), 10)
        assert state_of(zk, "t", 0)[0] == PartitionState(2, 4, (2,), 1)  # an in-sync replica
        assert state_of(zk, "t", 1)[0] == PartitionState(1, 5, (1,), 1)  # the only one: again
        for p in (0, 1):
            assert zk.admin.exists(layout.partition_state_path("t", p)).mzxid > broker_epoch
        time.sleep(0.3)
        assert state_of(zk, "t", 2)[0] == old[2]  # registered before its state: left alone
    finally:
        controller.stop()


def test_a_reconnected_controller_decides_a_bounce_whose_event_the_drop_cut_short(zk):
    brokers = {b: register(zk, b) for b in (1, 2)}
    zk.admin.create(layout.topic_path("t"), layout.encode_topic(TopicPlacement({0: [1, 2]})))
    controller = started(zk, 2)
    try:
        wait_for(lambda: zk.admin.exists(layout.partition_state_path("t", 0)), 10)
        before = state_of(zk, "t", 0)[0]
        assert before.leader == 1
        write_states, cut = controller.write_states, []

        def dropped(changes):  # the connection drops under the event's first write
            if not cut:
                cut.append(changes)
                raise ConnectionLoss()
            return write_states(changes)

        controller.write_states = dropped
        brokers[1].stop()  # broker 1 bounces: a new registration, a new broker epoch
        register(zk, 1)
        wait_for(lambda: cut, 10)
        time.sleep(0.5)
        assert state_of(zk, "t", 0)[0] == before  # the event was lost with the connection
        controller._on_session(KazooState.CONNECTED)  # as kazoo reports the reconnect
        wait_for(lambda: state_of(zk, "t", 0)[0].leader_epoch > before.leader_epoch, 10)
        assert state_of(zk, "t", 0)[0] == PartitionState(2, 1, (2,), 1)
    finally:
        controller.stop()


def _shutdown(controller: Controller, broker: int, epoch: int):
    replies: queue.Queue = queue.Queue()
    work = lambda c: c.shut_down_broker(broker, epoch)  # noqa: E731
    controller.events.put(("work", work, replies.put))
    return replies.get(timeout=10)


def test_controlled_shutdown_moves_leaders_and_refuses_a_stale_broker_epoch(zk):
    for b in (1, 2):
        register(zk, b)
    zk.admin.create(
        layout.topic_path("t"), layout.encode_topic(TopicPlacement({0: [1, 2], 1: [2, 1], 2: [1]}))
    )
    controller = started(zk, 2)
    try:
        wait_for(
            lambda: all(zk.admin.exists(layout.partition_state_path("t", p)) for p in range(3)), 10
        )
        epoch = zk.admin.exists(layout.broker_path(1)).czxid
        stale = _shutdown(controller, 1, epoch - 1)
        assert isinstance(stale, errors.StaleBrokerEpochError)
        assert state_of(zk, "t", 0)[0].leader == 1  # nothing moved

        assert _shutdown(controller, 1, epoch) == [("t", 2)]  # its only replica cannot move
        assert state_of(zk, "t", 0)[0] == PartitionState(2, 1, (2,), 1)
        assert state_of(zk, "t", 1)[0] == PartitionState(2, 1, (2,), 1)
        assert state_of(zk, "t", 2)[0] == PartitionState(1, 0, (1,), 1)
        assert isinstance(_shutdown(controller, 7, -1), errors.BrokerNotAvailableError)
    finally:
        controller.stop()


def test_a_candidate_answers_not_controller(zk):
    register(zk, 1)
    first, second = started(zk, 1), None
    try:
        wait_for(lambda: first.active, 10)
        second = started(zk, 2)
        assert isinstance(_shutdown(second, 1, -1), errors.NotControllerError)
    finally:
        first.stop()
        if second is not None:
            second.stop()


def _write_state(zk, topic: str, partition: int, state: PartitionState) -> None:
    zk.admin.ensure_path(layout.partition_path(topic, partition))
    zk.admin.create(
        layout.partition_state_path(topic, partition), layout.encode_partition_state(state)
    )


def test_leadership_returns_to_the_preferred_replica_on_the_imbalance_check(zk):
    register(zk, 1)
    register(zk, 2)
    zk.admin.create(layout.topic_path("t"), layout.encode_topic(TopicPlacement({0: [1, 2]})))
    _write_state(zk, "t", 0, PartitionState(2, 3, (2, 1), 1))
    controller = Controller(zk.client(), 2, leader_imbalance_check_interval_s=0.5)
    controller.start()
    try:
        wait_for(lambda: state_of(zk, "t", 0)[0].leader == 1, 10)
        assert state_of(zk, "t", 0)[0] == PartitionState(1, 4, (2, 1), controller.epoch)
    finally:
        controller.stop()


def test_a_topic_allowing_unclean_election_takes_an_out_of_sync_replica(zk):
    register(zk, 2)
    for name, unclean in (("clean", "false"), ("unclean", "true")):
        zk.admin.create(
            layout.topic_config_path(name),
            layout.encode_topic_config({"unclean.leader.election.enable": unclean}),
        )
        zk.admin.create(layout.topic_path(name), layout.encode_topic(TopicPlacement({0: [1, 2]})))
        _write_state(zk, name, 0, PartitionState(1, 3, (1,), 1))  # broker 1 is gone
    controller = started(zk, 2)
    try:
        wait_for(lambda: state_of(zk, "unclean", 0)[0].leader == 2, 10)
        assert state_of(zk, "unclean", 0)[0] == PartitionState(2, 4, (2,), controller.epoch)
        assert state_of(zk, "clean", 0)[0] == PartitionState(-1, 4, (1,), controller.epoch)
    finally:
        controller.stop()
