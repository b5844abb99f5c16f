"""``headrace acls``: kafka-acls' options turned into ACLs and filters (pure), its output in
kafka-acls' format, and the command against a real broker both ways: through the ACL APIs
(``--bootstrap-server``) and by writing Kafka's nodes (``--zookeeper``), each seeing what the
other wrote."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from conftest import wait_for

from broker.protocol.acls import (
    ALL,
    ALLOW,
    ANY,
    CLUSTER,
    CREATE,
    DENY,
    DESCRIBE,
    GROUP,
    IDEMPOTENT_WRITE,
    LITERAL,
    PREFIXED,
    READ,
    TOPIC,
    WRITE,
    AclBinding,
)
from headrace.acls import (
    AclCommandError,
    add_parser,
    bindings_to_add,
    filters_of,
    print_acls,
)


def parse(*argv: str):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["acls", "--bootstrap-server", "x:1", *argv])


def test_add_is_every_principal_host_operation_and_resource():
    args = parse(
        "--add",
        "--allow-principal",
        "User:a",
        "--allow-principal",
        "User:b",
        "--allow-host",
        "10.0.0.1",
        "--operation",
        "Read",
        "--operation",
        "describe",
        "--topic",
        "t",
    )
    found = {(b.principal, b.host, b.operation) for b in bindings_to_add(args)}
    assert found == {(p, "10.0.0.1", op) for p in ("User:a", "User:b") for op in (READ, DESCRIBE)}


def test_add_defaults_to_all_operations_from_any_host():
    [acl] = bindings_to_add(parse("--add", "--deny-principal", "User:x", "--cluster"))
    assert acl == AclBinding(CLUSTER, "kafka-cluster", LITERAL, "User:x", "*", ALL, DENY)


def test_producer_and_consumer_conveniences():
    producer = bindings_to_add(
        parse("--add", "--allow-principal", "User:p", "--producer", "--topic", "t", "--idempotent")
    )
    assert {(b.resource_type, b.operation) for b in producer} == {
        (TOPIC, WRITE),
        (TOPIC, DESCRIBE),
        (TOPIC, CREATE),
        (CLUSTER, IDEMPOTENT_WRITE),
    }
    consumer = bindings_to_add(
        parse(
            "--add",
            "--allow-principal",
            "User:c",
            "--consumer",
            "--topic",
            "logs-",
            "--group",
            "etl",
            "--resource-pattern-type",
            "prefixed",
        )
    )
    assert {(b.resource_type, b.name, b.pattern_type, b.operation) for b in consumer} == {
        (TOPIC, "logs-", PREFIXED, READ),
        (TOPIC, "logs-", PREFIXED, DESCRIBE),
        (GROUP, "etl", PREFIXED, READ),
    }
    with pytest.raises(AclCommandError, match="--group"):
        bindings_to_add(parse("--add", "--allow-principal", "User:c", "--consumer", "--topic", "t"))


@pytest.mark.parametrize(
    "argv,message",
    [
        (("--add", "--topic", "t"), "--allow-principal"),
        (("--add", "--allow-principal", "User:a"), "name a resource"),
        (("--add", "--allow-principal", "User:a", "--operation", "Fly", "--topic", "t"), "Fly"),
        (("--add", "--allow-principal", "User:a", "--operation", "Write", "--group", "g"), "Write"),
        (("--add", "--allow-principal", "alice", "--topic", "t"), "Type:name"),
    ],
)
def test_bad_options_are_clear_errors(argv, message):
    with pytest.raises(AclCommandError, match=message):
        bindings_to_add(parse(*argv))


def test_list_filters_default_to_every_pattern():
    [everything] = filters_of(parse("--list"))
    assert (everything.resource_type, everything.name, everything.pattern_type) == (ANY, None, ANY)
    [mine] = filters_of(parse("--list", "--topic", "t", "--principal", "User:a"))
    assert (mine.resource_type, mine.name, mine.principal, mine.permission) == (
        TOPIC,
        "t",
        "User:a",
        ANY,
    )


def test_output_is_kafka_acls(capsys):
    print_acls(
        "Current ACLs for resource",
        [AclBinding(TOPIC, "t", PREFIXED, "User:a", "*", IDEMPOTENT_WRITE, ALLOW)],
    )
    assert capsys.readouterr().out == (
        "Current ACLs for resource `ResourcePattern(resourceType=TOPIC, name=t, "
        "patternType=PREFIXED)`: \n"
        " \t(principal=User:a, host=*, operation=IDEMPOTENT_WRITE, permissionType=ALLOW) \n\n"
    )


def test_output_names_a_literal_pattern_literal(capsys):
    # LITERAL and ALLOW share the code 3: each field is named from its own enum
    print_acls(
        "Current ACLs for resource",
        [AclBinding(TOPIC, "t", LITERAL, "User:a", "*", WRITE, DENY)],
    )
    out = capsys.readouterr().out
    assert "patternType=LITERAL)" in out
    assert "permissionType=DENY)" in out


def headrace(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "headrace.cli", "acls", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_acls_command_through_the_broker_and_through_zookeeper(make_cluster):
    cluster = make_cluster(
        1,
        authorizer_class_name="kafka.security.authorizer.AclAuthorizer",
        super_users="User:ANONYMOUS",
    )
    api = ("--bootstrap-server", cluster.bootstrap)
    zk = ("--zookeeper", cluster.zookeeper_connect)
    added = headrace(
        *api,
        "--add",
        "--allow-principal",
        "User:alice",
        "--operation",
        "Write",
        "--topic",
        "clicks",
    )
    assert added.returncode == 0, added.stderr
    assert (
        "Adding ACLs for resource `ResourcePattern(resourceType=TOPIC, name=clicks" in added.stdout
    )
    assert "(principal=User:alice, host=*, operation=WRITE, permissionType=ALLOW)" in added.stdout
    listed = headrace(*zk, "--list", "--topic", "clicks")
    assert "principal=User:alice" in listed.stdout, listed.stderr

    done = headrace(
        *zk,
        "--add",
        "--deny-principal",
        "User:bob",
        "--group",
        "g-",
        "--resource-pattern-type",
        "prefixed",
    )
    assert done.returncode == 0, done.stderr
    # The broker learns of the ZooKeeper write from the change notification.
    wait_for(lambda: "User:bob" in headrace(*api, "--list").stdout, 30)

    removed = headrace(
        *api, "--remove", "--group", "g-", "--resource-pattern-type", "prefixed", "--force"
    )
    assert removed.returncode == 0, removed.stderr
    wait_for(lambda: "User:bob" not in headrace(*zk, "--list").stdout, 30)
    remaining = headrace(*api, "--list").stdout
    assert "User:alice" in remaining and "User:bob" not in remaining

    bad = headrace(
        *api, "--add", "--allow-principal", "User:a", "--operation", "Write", "--group", "g"
    )
    assert bad.returncode == 1 and "not supported on Group" in bad.stderr


def test_on_a_secured_zookeeper_only_the_brokers_identity_writes_acls(make_cluster, tmp_path):
    """With zookeeper.set.acl the ACL nodes are the brokers': a tool without their identity
    is refused (and writes nothing), one with it writes, and the broker follows."""
    jaas = tmp_path / "zk-jaas.conf"
    jaas.write_text(
        "Client {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n"
        '  username="kafka"\n  password="broker-secret";\n};\n'
    )
    cluster = make_cluster(
        1,
        zookeeper_set_acl="true",
        zookeeper_jaas_config_file=str(jaas),
        authorizer_class_name="kafka.security.authorizer.AclAuthorizer",
        super_users="User:ANONYMOUS",
    )
    add = ("--add", "--allow-principal", "User:mallory", "--operation", "All", "--cluster")
    zk = ("--zookeeper", cluster.zookeeper_connect)
    refused = headrace(*zk, *add)
    assert refused.returncode == 1 and "NoAuth" in refused.stderr
    api = ("--bootstrap-server", cluster.bootstrap)
    assert "mallory" not in headrace(*api, "--list").stdout
    allowed = headrace(*zk, "--zookeeper-auth-file", str(jaas), *add)
    assert allowed.returncode == 0, allowed.stderr
    wait_for(lambda: "User:mallory" in headrace(*api, "--list").stdout, 30)
