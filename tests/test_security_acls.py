"""ACLs end to end on a real broker with the authorizer on, over a PLAINTEXT listener where
every client is ``User:ANONYMOUS``: a principal allowed only to write one topic can write it
and nothing else (not read it, not write another, not commit a group's offsets, not delete
topics, not even see the other topics in Metadata); a prefixed ACL covers a topic created
after it; ACLs removed in ZooKeeper take effect without a restart.  ACLs are managed with
confluent-kafka's and kafka-python's admin clients (CreateAcls, DescribeAcls, DeleteAcls)
and, as ``headrace acls --zookeeper`` does, by writing Kafka's nodes directly."""

from __future__ import annotations

from admin_clients import confluent_admin, error_code, request
from conftest import create_topic, metadata, wait_for, zk_session
from request_bodies import fetch_body, offset_commit_body, produce_to

from broker.protocol.acls import (
    ALL,
    ALLOW,
    CLUSTER,
    CREATE,
    DESCRIBE,
    GROUP,
    LITERAL,
    PREFIXED,
    READ,
    TOPIC,
    WRITE,
    AclBinding,
)
from broker.protocol.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    SecurityDisabledError,
    TopicAuthorizationFailedError,
)
from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey
from broker.security.acl_store import ZkAclStore
from consumers.client import BrokerConnection

AUTHORIZER = "kafka.security.authorizer.AclAuthorizer"
ANONYMOUS = "User:ANONYMOUS"
TOPIC_DENIED = TopicAuthorizationFailedError.code
# Everything, for setting up and for reading back what was stored.
ADMIN = [
    AclBinding(CLUSTER, "kafka-cluster", LITERAL, ANONYMOUS, "*", ALL, ALLOW),
    AclBinding(TOPIC, "*", LITERAL, ANONYMOUS, "*", ALL, ALLOW),
]


def _produce(port: int, topic: str, value: bytes = b"v") -> int:
    with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
        return produce_to(conn, topic, 0, build_batch([(None, value)]))["error_code"]


def _end_offset(port: int, topic: str) -> int:
    body = {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": [{"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}],
    }
    answer = request(port, ApiKey.LIST_OFFSETS, body)["topics"][0]["partitions"][0]
    assert answer["error_code"] == 0
    return answer["offset"]


def _commit_code(port: int, group: str, topic: str) -> int:
    body = offset_commit_body(group, topic, 1)
    answer = request(port, ApiKey.OFFSET_COMMIT, body)
    return answer["topics"][0]["partitions"][0]["error_code"]


def _confluent_binding(binding: AclBinding):
    from confluent_kafka.admin import AclBinding as Binding
    from confluent_kafka.admin import (
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return Binding(
        ResourceType(binding.resource_type),
        binding.name,
        ResourcePatternType(binding.pattern_type),
        binding.principal,
        binding.host,
        AclOperation(binding.operation),
        AclPermissionType(binding.permission),
    )


def test_a_principal_allowed_only_to_write_one_topic(make_cluster):
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    cluster = make_cluster(1, authorizer_class_name=AUTHORIZER)
    port = cluster.brokers[0].port
    with zk_session(cluster.zookeeper_connect) as zk:
        store = ZkAclStore(zk)
        store.add(ADMIN)  # as `headrace acls --zookeeper` would: the broker follows it
        wait_for(lambda: create_topic(port, "writable", 1, check=False)["error_code"] == 0, 30)
        create_topic(port, "secret", 1)
        assert _produce(port, "secret", b"before") == 0

        admin = confluent_admin(cluster)
        write = AclBinding(TOPIC, "writable", LITERAL, ANONYMOUS, "*", WRITE, ALLOW)
        [created] = admin.create_acls([_confluent_binding(write)]).values()
        assert error_code(created) == 0
        writable = AclBindingFilter(
            ResourceType.TOPIC,
            "writable",
            ResourcePatternType.MATCH,
            None,
            None,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        described = admin.describe_acls(writable).result(timeout=30)
        # MATCH: the literal ACL on it and the wildcard one that covers it too.
        assert sorted((b.name, b.operation.name) for b in described) == [
            ("*", "ALL"),
            ("writable", "WRITE"),
        ]
        # The administrator's ACLs go through DeleteAcls: only the write one is left.
        everything = AclBindingFilter(
            ResourceType.ANY,
            None,
            ResourcePatternType.ANY,
            ANONYMOUS,
            None,
            AclOperation.ALL,
            AclPermissionType.ANY,
        )
        [deleted] = admin.delete_acls([everything]).values()
        assert sorted(b.name for b in deleted.result(timeout=30)) == ["*", "kafka-cluster"]

        assert _produce(port, "writable") == 0
        assert _produce(port, "secret", b"refused") == TOPIC_DENIED
        fetched = request(port, ApiKey.FETCH, fetch_body([("writable", 0, 0)]))
        assert fetched["responses"][0]["partitions"][0]["error_code"] == TOPIC_DENIED
        assert fetched["responses"][0]["partitions"][0]["records"] in (b"", None)
        assert _commit_code(port, "g1", "writable") == GroupAuthorizationFailedError.code
        [dropped] = admin.delete_topics(["writable"]).values()
        assert error_code(dropped) == TOPIC_DENIED
        assert [t["name"] for t in metadata(port)["topics"]] == ["writable"]
        named = metadata(port, topics=["secret"])["topics"]
        assert [(t["name"], t["error_code"]) for t in named] == [("secret", TOPIC_DENIED)]
        [refused] = admin.create_acls([_confluent_binding(ADMIN[0])]).values()
        assert error_code(refused) == ClusterAuthorizationFailedError.code

        # Nothing refused was stored: one record in each topic, the topics still there.
        store.add(ADMIN)
        wait_for(lambda: _end_offset(port, "secret") == 1, 30)
        assert _end_offset(port, "writable") == 1
        assert sorted(t["name"] for t in metadata(port)["topics"]) == ["secret", "writable"]


def test_prefixed_acls_cover_new_topics_and_removals_apply_without_a_restart(make_cluster):
    cluster = make_cluster(1, authorizer_class_name=AUTHORIZER)
    port = cluster.brokers[0].port
    with zk_session(cluster.zookeeper_connect) as zk:
        store = ZkAclStore(zk)
        logs = [
            AclBinding(TOPIC, "logs-", PREFIXED, ANONYMOUS, "*", op, ALLOW)
            for op in (WRITE, CREATE)
        ]
        store.add(logs)
        # A topic created after the ACL, by a principal allowed to create it by the prefix.
        wait_for(lambda: create_topic(port, "logs-eu", 1, check=False)["error_code"] == 0, 30)
        assert create_topic(port, "metrics", 1, check=False)["error_code"] == TOPIC_DENIED
        assert _produce(port, "logs-eu") == 0
        store.remove(logs[:1])  # by another tool: the broker learns it from the notification
        wait_for(lambda: _produce(port, "logs-eu") == TOPIC_DENIED, 30)


def test_kafka_python_admin_creates_describes_and_deletes_acls(make_cluster):
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        KafkaAdminClient,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
    )

    cluster = make_cluster(1, authorizer_class_name=AUTHORIZER, super_users=ANONYMOUS)
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        pattern = ResourcePattern(ResourceType.GROUP, "etl-", ACLResourcePatternType.PREFIXED)
        acl = ACL("User:loader", "*", ACLOperation.READ, ACLPermissionType.ALLOW, pattern)
        bad = ACL(
            "User:loader",
            "*",
            ACLOperation.WRITE,  # a group has no WRITE: INVALID_REQUEST
            ACLPermissionType.ALLOW,
            ResourcePattern(ResourceType.GROUP, "g", ACLResourcePatternType.LITERAL),
        )
        created = kp.create_acls([acl, bad])
        assert len(created["succeeded"]) == 1 and len(created["failed"]) == 1
        groups = ACLFilter(
            principal=None,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(
                ResourceType.GROUP, "etl-nightly", ACLResourcePatternType.MATCH
            ),
        )
        found, error = kp.describe_acls(groups)
        assert error.errno == 0
        assert [(a.principal, a.resource_pattern.resource_name) for a in found] == [
            ("User:loader", "etl-")
        ]
        [(_, deleted, error)] = kp.delete_acls([groups])
        assert [a.resource_pattern.resource_name for a in deleted] == ["etl-"]
        assert kp.describe_acls(groups)[0] == []
    finally:
        kp.close()
    with zk_session(cluster.zookeeper_connect) as zk:
        assert ZkAclStore(zk).load().bindings() == []


def test_without_an_authorizer_the_acl_apis_answer_security_disabled(cluster1):
    body = {
        "creations": [
            {
                "resource_type": TOPIC,
                "resource_name": "t",
                "resource_pattern_type": LITERAL,
                "principal": ANONYMOUS,
                "host": "*",
                "operation": WRITE,
                "permission_type": ALLOW,
            }
        ]
    }
    answer = request(cluster1.brokers[0].port, ApiKey.CREATE_ACLS, body)
    assert answer["results"][0]["error_code"] == SecurityDisabledError.code
    described = request(
        cluster1.brokers[0].port,
        ApiKey.DESCRIBE_ACLS,
        {
            "resource_type_filter": 1,
            "resource_name_filter": None,
            "pattern_type_filter": 1,
            "principal_filter": None,
            "host_filter": None,
            "operation": 1,
            "permission_type": 1,
        },
    )
    assert described["error_code"] == SecurityDisabledError.code


def test_followers_need_cluster_action_to_replicate(make_cluster):
    """Brokers fetch from each other as their own principal (here ANONYMOUS, a PLAINTEXT
    inter-broker listener): without ClusterAction on the cluster a follower is refused and
    falls out of the ISR, so acks=all writes are refused; granted it, it catches up."""
    from broker.protocol.acls import CLUSTER_ACTION
    from broker.protocol.errors import NotEnoughReplicasError

    cluster = make_cluster(
        2,
        authorizer_class_name=AUTHORIZER,
        min_insync_replicas=2,
        replica_lag_time_max_ms=1000,
    )
    port = cluster.brokers[0].port
    everything_but_replication = [
        AclBinding(CLUSTER, "kafka-cluster", LITERAL, ANONYMOUS, "*", CREATE, ALLOW),
        AclBinding(TOPIC, "*", LITERAL, ANONYMOUS, "*", ALL, ALLOW),
    ]
    with zk_session(cluster.zookeeper_connect) as zk:
        store = ZkAclStore(zk)
        store.add(everything_but_replication)
        wait_for(
            lambda: (
                create_topic(port, "replicated", 1, replication_factor=2, check=False)["error_code"]
                == 0
            ),
            30,
        )
        [partition] = wait_for(
            lambda: metadata(port, ["replicated"])["topics"][0]["partitions"], 30
        )
        leader = next(b for b in cluster.brokers if b.broker_id == partition["leader_id"])

        def produce_all() -> int:
            with BrokerConnection("127.0.0.1", leader.port, timeout=30) as conn:
                batch = build_batch([(None, b"x")])
                return produce_to(conn, "replicated", 0, batch, acks=-1, timeout_ms=2000)[
                    "error_code"
                ]

        wait_for(lambda: produce_all() == NotEnoughReplicasError.code, 30)
        store.add(
            [AclBinding(CLUSTER, "kafka-cluster", LITERAL, ANONYMOUS, "*", CLUSTER_ACTION, ALLOW)]
        )
        wait_for(lambda: produce_all() == 0, 30)


def test_producer_and_consumer_acls_let_clients_work_and_no_more(make_cluster):
    """kafka-acls' --producer and --consumer sets are enough for confluent-kafka: an
    idempotent producer (InitProducerId by Write on the topic, KIP-679) and a consumer group
    that joins, reads everything and commits; a group not named is refused."""
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

    cluster = make_cluster(1, authorizer_class_name=AUTHORIZER)
    port = cluster.brokers[0].port
    rules = [
        AclBinding(TOPIC, "events", LITERAL, ANONYMOUS, "*", op, ALLOW)
        for op in (WRITE, DESCRIBE, CREATE, READ)
    ] + [AclBinding(GROUP, "readers", LITERAL, ANONYMOUS, "*", READ, ALLOW)]
    with zk_session(cluster.zookeeper_connect) as zk:
        ZkAclStore(zk).add(rules)
    wait_for(lambda: create_topic(port, "events", 2, check=False)["error_code"] == 0, 30)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True})
    failures = []
    for i in range(100):
        producer.produce("events", b"%d" % i, on_delivery=lambda e, m: e and failures.append(e))
    assert producer.flush(30) == 0 and failures == []

    def consumer(group: str):
        return Consumer(
            {
                "bootstrap.servers": cluster.bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )

    reader = consumer("readers")
    reader.subscribe(["events"])
    seen = []
    wait_for(
        lambda: (
            seen.extend(m for m in reader.consume(50, 1.0) if not m.error()) or len(seen) >= 100
        ),
        60,
    )
    reader.commit(asynchronous=False)
    committed = reader.committed([TopicPartition("events", p) for p in (0, 1)], timeout=30)
    assert sum(tp.offset for tp in committed) == 100
    reader.close()

    stranger = consumer("strangers")
    stranger.subscribe(["events"])
    errors = []

    def refused() -> bool:
        for message in stranger.consume(10, 1.0):
            if message.error():
                errors.append(message.error().code())
        return KafkaError.GROUP_AUTHORIZATION_FAILED in errors

    wait_for(refused, 30)
    stranger.close()
