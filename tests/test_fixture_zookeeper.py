"""The ZooKeeper fixture starts a real server from Debian's package."""

from __future__ import annotations

from kazoo.client import KazooClient

from broker.protocol import zookeeper as layout


def test_zookeeper_serves_reads_writes_and_ephemeral_nodes(zookeeper, zk_chroot):
    client = KazooClient(hosts=zk_chroot, timeout=10)
    client.start(timeout=15)
    try:
        client.ensure_path(layout.BROKER_IDS)
        registration = layout.encode_broker(layout.BrokerRegistration("127.0.0.1", 9092))
        client.create(layout.broker_path(0), registration, ephemeral=True)
        assert client.get_children(layout.BROKER_IDS) == ["0"]
        data, stat = client.get(layout.broker_path(0))
        assert data.startswith(b"{") and stat.ephemeralOwner == client.client_id[0]
    finally:
        client.stop()
        client.close()
    other = KazooClient(hosts=zk_chroot, timeout=10)
    other.start(timeout=15)
    try:
        assert (
            other.get_children(layout.BROKER_IDS) == []
        )  # the ephemeral node went with its session
    finally:
        other.stop()
        other.close()
