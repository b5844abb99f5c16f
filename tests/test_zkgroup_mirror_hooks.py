"""What the mirror needs of the paper's group consumer: ``subscribe`` changes a member's
topics (its registration, then a rebalance), ``on_revoke`` runs while the member still owns
its partitions, ``commit_offsets`` commits owned partitions only, and with auto-commit off
nothing else is committed."""

from __future__ import annotations

from conftest import create_topic, wait_for, zk_session

from broker.protocol import zookeeper as layout
from broker.protocol.offsets import read_offset, read_owner
from consumers.group import GroupConsumer
from consumers.producer import Producer


def test_subscribe_revoke_and_commit_offsets(cluster1):
    port = cluster1.brokers[0].port
    create_topic(port, "hook-a", 2)
    create_topic(port, "hook-b", 1)
    with Producer(cluster1.bootstrap) as producer:
        for i in range(20):
            producer.send("hook-a", b"a%d" % i, partition=i % 2)
            producer.send("hook-b", b"b%d" % i, partition=0)
    revoked: list = []
    connect = cluster1.zookeeper_connect

    def on_revoke(owned):
        with zk_session(connect) as zk:  # still the owner while the callback runs
            owners = {(t, p): read_owner(zk, "hooks", t, p) for t, ps in owned.items() for p in ps}
        revoked.append((owned, owners))

    member = GroupConsumer(
        "hooks",
        ["hook-a"],
        connect,
        auto_offset_reset="earliest",
        auto_commit=False,
        on_revoke=on_revoke,
        session_timeout_ms=3000,
    ).start()
    try:
        assert member.owned == {"hook-a": [0, 1]}
        got = []
        wait_for(lambda: got.extend(member.poll(0.2)) or len(got) >= 20, 30)
        member.commit_offsets({("hook-a", 0): 4, ("hook-b", 0): 7})  # hook-b is not owned

        member.subscribe(["hook-a", "hook-b"])
        with zk_session(connect) as zk:
            data, _ = zk.get(layout.member_path("hooks", member.consumer_id))
            assert layout.decode_consumer(data).subscription == ("hook-a", "hook-b")
        wait_for(lambda: member.poll(0.2) is not None and "hook-b" in member.owned, 30)
        # the first revocation gave up what the member had, while it still owned it (the new
        # topic's watch may make one more rebalance: its revocation holds the same way)
        assert revoked[0][0] == {"hook-a": [0, 1]}
        for owned, owners in revoked:
            assert set(owners) == {(t, p) for t, ps in owned.items() for p in ps}
            assert set(owners.values()) == {member.consumer_id}
        member.commit_offsets({("hook-b", 0): 7})
    finally:
        member.close()
    with zk_session(connect) as zk:
        assert read_offset(zk, "hooks", "hook-a", 0)[0] == 4
        assert read_offset(zk, "hooks", "hook-a", 1)[0] is None  # auto-commit off: none
        assert read_offset(zk, "hooks", "hook-b", 0)[0] == 7
