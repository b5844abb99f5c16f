"""ZooKeeper as part of the trust boundary: with ``zookeeper.set.acl`` and a digest identity,
brokers own their nodes; anyone else may read them (not the credentials) and may write only
``/consumers``.  Real ZooKeeper, real brokers, real kazoo clients."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
from conftest import create_topic, metadata, wait_for
from kazoo.exceptions import NoAuthError

from broker.protocol import zookeeper as layout
from broker.protocol.zk_client import zookeeper_client
from broker.protocol.zk_security import CONFIG_USERS, ZkCredentials

BROKERS = ZkCredentials("kafka", "broker-secret")
JAAS = (
    "Client {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n"
    '  username="kafka"\n  password="broker-secret";\n};\n'
)


@contextlib.contextmanager
def session(connect: str, credentials: ZkCredentials | None = None, secure: bool = False):
    client = zookeeper_client(connect, credentials, secure)
    client.start(timeout=15)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def _secure_cluster(make_cluster, tmp_path, size: int):
    jaas = tmp_path / "zk-jaas.conf"
    jaas.write_text(JAAS)
    return make_cluster(size, zookeeper_set_acl="true", zookeeper_jaas_config_file=str(jaas))


def _refused(action) -> bool:
    try:
        action()
    except NoAuthError:
        return True
    return False


def test_secure_brokers_serve_and_keep_their_nodes_from_others(make_cluster, tmp_path):
    cluster = _secure_cluster(make_cluster, tmp_path, 2)
    port = cluster.brokers[0].port
    create_topic(port, "clicks", 2, replication_factor=2)
    wait_for(lambda: all(p["leader_id"] >= 0 for p in _partitions(port, "clicks")), 20)
    connect = cluster.zookeeper_connect
    with session(connect, BROKERS, secure=True) as owner:  # a credentials node as SCRAM keeps them
        owner.create(f"{CONFIG_USERS}/alice", b'{"version":1,"config":{}}', makepath=True)

    stranger = ZkCredentials("mallory", "guess")
    for who in (None, stranger):
        with session(connect, who) as other:
            # it reads the cluster: brokers, topics, placements
            assert sorted(other.get_children(layout.BROKER_IDS)) == ["1", "2"]
            assert layout.decode_topic(other.get(layout.topic_path("clicks"))[0])
            # and may neither rewrite nor read what the brokers own
            for path in (
                layout.broker_path(1),
                layout.topic_path("clicks"),
                layout.topic_config_path("clicks"),
                f"{CONFIG_USERS}/alice",
            ):
                assert _refused(lambda p=path: other.set(p, b"{}")), path
                assert _refused(lambda p=path: other.delete(p, recursive=False)), path
            assert _refused(lambda: other.create(layout.broker_path(9), b"{}"))
            assert _refused(lambda: other.create(layout.topic_config_path("evil"), b"{}"))
            assert _refused(lambda: other.create(f"{CONFIG_USERS}/mallory", b"{}"))
            assert _refused(lambda: other.get(f"{CONFIG_USERS}/alice"))
            # the paper's groups write /consumers without an identity
            path = layout.offset_path("g", "clicks", 0)
            other.ensure_path(path)
            other.set(path, b"7")
            assert other.get(path)[0] == b"7"

    # a broker restarted on the secured tree registers again and leads again
    cluster.broker(2).stop()
    cluster.broker(2).start()
    wait_for(lambda: len(metadata(port)["brokers"]) == 2, 20)
    create_topic(cluster.broker(2).port, "views", 1, replication_factor=2)
    wait_for(lambda: all(p["leader_id"] >= 0 for p in _partitions(port, "views")), 20)


def _partitions(port: int, topic: str) -> list[dict]:
    (found,) = [t for t in metadata(port, [topic])["topics"] if t["name"] == topic]
    return found["partitions"]


def test_a_zookeeper_group_consumes_without_an_identity(make_cluster, tmp_path):
    from consumers.group import GroupConsumer
    from consumers.producer import Producer

    cluster = _secure_cluster(make_cluster, tmp_path, 1)
    create_topic(cluster.brokers[0].port, "logs", 1)
    with Producer(cluster.bootstrap) as producer:
        for i in range(5):
            producer.send("logs", f"line {i}".encode())
        producer.flush()
    member = GroupConsumer(
        "paper", ["logs"], zookeeper=cluster.zookeeper_connect, auto_offset_reset="smallest"
    )
    try:
        seen: list[bytes] = []
        wait_for(lambda: seen.extend(r.value for r in member.poll(0.5)) or len(seen) >= 5, 30)
        member.commit()
    finally:
        member.close()
    assert seen == [f"line {i}".encode() for i in range(5)]
    with session(cluster.zookeeper_connect) as other:
        assert other.get(layout.offset_path("paper", "logs", 0))[0] == b"5"


def test_a_broker_with_other_credentials_fails_to_start_saying_why(make_cluster, tmp_path):
    from headrace.devcluster import BrokerProcess

    cluster = _secure_cluster(make_cluster, tmp_path, 1)
    intruder = BrokerProcess(
        tmp_path / "intruder",
        2,
        cluster.zookeeper_connect,
        overrides={"zookeeper.set.acl": "true", "zookeeper.digest.credentials": "kafka:wrong"},
    )
    with pytest.raises(RuntimeError):
        intruder.start(timeout=30)
    output = intruder.log_path.read_text()
    assert "ZooKeeper refused" in output and "'kafka'" in output, output[-2000:]
    with session(cluster.zookeeper_connect) as other:
        assert other.get_children(layout.BROKER_IDS) == ["1"]


def _migration(connect: str, acl: str, auth_file: str) -> subprocess.CompletedProcess:
    """``headrace zookeeper-security-migration`` run as a user would."""
    command = [sys.executable, "-m", "headrace.cli", "zookeeper-security-migration"]
    command += ["--zookeeper", connect, "--zookeeper.acl", acl]
    command += ["--zookeeper-auth-file", auth_file]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_the_migration_secures_an_open_cluster_and_opens_it_again(make_cluster, tmp_path):
    cluster = make_cluster(1)
    create_topic(cluster.brokers[0].port, "clicks", 1)
    connect = cluster.zookeeper_connect
    auth = tmp_path / "zk-auth"
    auth.write_text("kafka:broker-secret\n")
    topic = layout.topic_config_path("clicks")

    def migrate(acl: str) -> subprocess.CompletedProcess:
        return _migration(connect, acl, str(auth))

    with session(connect) as other:
        other.set(topic, other.get(topic)[0])  # open: anyone may write
        done = migrate("secure")
        assert done.returncode == 0, done.stderr
        assert _refused(lambda: other.set(topic, b"{}"))
        assert _refused(lambda: other.create(layout.broker_path(7), b"{}"))
        other.ensure_path(layout.offset_path("g", "clicks", 0))  # /consumers stays open
        done = migrate("unsecure")
        assert done.returncode == 0, done.stderr
        other.set(topic, other.get(topic)[0])


def test_the_migration_refuses_an_identity_that_does_not_own_the_nodes(make_cluster, tmp_path):
    cluster = _secure_cluster(make_cluster, tmp_path, 1)
    auth = tmp_path / "other-auth"
    auth.write_text("mallory:guess\n")
    done = _migration(cluster.zookeeper_connect, "unsecure", str(auth))
    assert done.returncode == 1
    assert "refused to change the ACL" in done.stderr
    with session(cluster.zookeeper_connect) as other:  # still secured
        assert _refused(lambda: other.set(layout.broker_path(1), b"{}"))


def test_a_broker_restarted_with_set_acl_secures_an_open_cluster(make_cluster, tmp_path):
    cluster = make_cluster(1)
    port = cluster.brokers[0].port
    create_topic(port, "clicks", 1)
    topic = layout.topic_config_path("clicks")
    with session(cluster.zookeeper_connect) as other:
        other.set(topic, other.get(topic)[0])  # open: anyone may write
        broker = cluster.broker(1)
        broker.stop()
        broker.overrides.update(
            {"zookeeper.set.acl": "true", "zookeeper.digest.credentials": "kafka:broker-secret"}
        )
        broker.start()
        assert _refused(lambda: other.set(topic, b"{}"))
        assert _refused(lambda: other.set(layout.topic_path("clicks"), b"{}"))
        assert "secured the ACLs of" in broker.log_path.read_text()
        create_topic(broker.port, "views", 1)  # and it serves on the secured tree
        wait_for(lambda: _partitions(broker.port, "views")[0]["leader_id"] == 1, 20)


def test_the_schema_registry_runs_with_the_brokers_identity(make_cluster, tmp_path):
    from schema_registry_process import RegistryProcess, call

    cluster = _secure_cluster(make_cluster, tmp_path, 1)
    auth = tmp_path / "zk-jaas.conf"  # the brokers' own JAAS file
    # with no identity it may not make its nodes on the secured tree, and says so
    with pytest.raises(RuntimeError, match="belong to another ZooKeeper identity"):
        RegistryProcess(cluster.zookeeper_connect)
    registry = RegistryProcess(cluster.zookeeper_connect, "--zookeeper-auth-file", str(auth))
    try:
        schema = '{"type": "record", "name": "Click", "fields": [{"name": "a", "type": "int"}]}'
        body = {"schema": schema}
        status, doc, _ = call(registry.url, "POST", "/subjects/c-value/versions", body)
        assert status == 200, doc
    finally:
        registry.stop()
    with session(cluster.zookeeper_connect) as other:  # readable by all, written by the owner
        assert other.get_children(layout.SCHEMA_IDS) == [str(doc["id"])]
        assert _refused(lambda: other.set(layout.SCHEMA_IDS, b"99"))
    # nor may it use the nodes the brokers' identity made
    with pytest.raises(RuntimeError, match="--zookeeper-auth-file"):
        RegistryProcess(cluster.zookeeper_connect)


def test_the_console_tools_work_on_a_secured_cluster_with_or_without_an_identity(
    make_cluster, tmp_path
):
    from command_lines import HEADRACE, ROOT

    cluster = _secure_cluster(make_cluster, tmp_path, 1)
    create_topic(cluster.brokers[0].port, "lines", 1)
    connect = cluster.zookeeper_connect
    auth = ["--zookeeper-auth-file", str(tmp_path / "zk-jaas.conf")]

    def headrace(*args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [*HEADRACE, *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    headrace("produce", "--zookeeper", connect, "--topic", "lines", *auth, stdin="a\nb\n")
    consume = ["consume", "--zookeeper", connect, "--topic", "lines", "--from-beginning"]
    consume += ["--max-messages", "2", "--timeout", "20"]
    # a paper group with no identity, and one with the brokers'
    assert headrace(*consume, "--group", "anon").split() == ["a", "b"]
    assert headrace(*consume, "--group", "owned", *auth).split() == ["a", "b"]
    listed = headrace("groups", "list", "--zookeeper", connect)
    assert "anon" in listed and "owned" in listed
