"""The ZooKeeper fixture starts a real server from Debian's package."""

from __future__ import annotations

from kazoo.client import KazooClient


def test_zookeeper_serves_reads_writes_and_ephemeral_nodes(zookeeper, zk_chroot):
    client = KazooClient(hosts=zk_chroot, timeout=10)
    client.start(timeout=15)
    try:
        client.ensure_path("/brokers/ids")
        client.create("/brokers/ids/0", b'{"host": "127.0.0.1", "port": 9092}', ephemeral=True)
        assert client.get_children("/brokers/ids") == ["0"]
        data, stat = client.get("/brokers/ids/0")
        assert data.startswith(b"{") and stat.ephemeralOwner == client.client_id[0]
    finally:
        client.stop()
        client.close()
    other = KazooClient(hosts=zk_chroot, timeout=10)
    other.start(timeout=15)
    try:
        assert other.get_children("/brokers/ids") == []  # the ephemeral node went with its session
    finally:
        other.stop()
        other.close()
