"""The ACL store against a real ZooKeeper: conditional writes that keep every writer's ACLs,
a pattern's node gone with its last ACL, one change notification per write in Kafka's
format, and old notifications purged as Kafka's brokers purge them."""

from __future__ import annotations

import threading

from conftest import zk_session

from broker.protocol import acl_nodes
from broker.protocol.acls import ALLOW, LITERAL, PREFIXED, READ, TOPIC, WRITE, AclBinding
from broker.security.acl_cache import AclCache
from broker.security.acl_store import ZkAclStore
from broker.security.authorizer import AclSet


def binding(principal: str, name: str = "t", pattern=LITERAL, op=WRITE) -> AclBinding:
    return AclBinding(TOPIC, name, pattern, principal, "*", op, ALLOW)


def test_concurrent_writers_keep_every_acl(zk_chroot):
    with zk_session(zk_chroot) as zk:
        store = ZkAclStore(zk)
        store.ensure_paths()
        users = [f"User:u{i}" for i in range(8)]
        threads = [threading.Thread(target=store.add, args=([binding(u)],)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(a.principal for a in store.load().bindings()) == sorted(users)
        # One change notification per write, naming the pattern as Kafka does.
        changes = zk.get_children(acl_nodes.KAFKA_ACL_CHANGES)
        assert len(changes) == len(users)
        data, _ = zk.get(f"{acl_nodes.KAFKA_ACL_CHANGES}/{changes[0]}")
        assert data == b"TOPIC:t"
        store.remove([binding(u) for u in users])
        assert zk.exists("/kafka-acl/Topic/t") is None
        assert store.load().bindings() == []


def test_nodes_are_read_as_kafka_wrote_them(zk_chroot):
    with zk_session(zk_chroot) as zk:
        zk.create(
            "/kafka-acl-extended/prefixed/Topic/logs-",
            b'{"version":1,"acls":[{"principal":"User:etl","permissionType":"Allow",'
            b'"operation":"Read","host":"*"}]}',
            makepath=True,
        )
        zk.create("/kafka-acl/Planet/x", b"{}", makepath=True)  # a type we do not know: skipped
        assert ZkAclStore(zk).load().bindings() == [
            AclBinding(TOPIC, "logs-", PREFIXED, "User:etl", "*", READ, ALLOW)
        ]


def test_old_change_notifications_are_purged(zk_chroot):
    with zk_session(zk_chroot) as zk:
        store = ZkAclStore(zk)
        store.add([binding("User:a"), binding("User:b", "logs-", PREFIXED)])
        assert zk.get_children(acl_nodes.KAFKA_ACL_EXTENDED_CHANGES)
        cache = AclCache(zk, reactor=None, acls=AclSet(), change_expiration_ms=0)
        for pattern_type in (LITERAL, PREFIXED):
            cache.purge_old_changes(acl_nodes.change_root(pattern_type))
        assert zk.get_children(acl_nodes.KAFKA_ACL_CHANGES) == []
        assert zk.get_children(acl_nodes.KAFKA_ACL_EXTENDED_CHANGES) == []
        kept = AclCache(zk, reactor=None, acls=AclSet())  # Kafka's 15 minutes: kept
        store.add([binding("User:c")])
        kept.purge_old_changes(acl_nodes.KAFKA_ACL_CHANGES)
        assert len(zk.get_children(acl_nodes.KAFKA_ACL_CHANGES)) == 1
