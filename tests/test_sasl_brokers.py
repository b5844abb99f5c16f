"""SASL against a real broker on a SASL_PLAINTEXT listener, with real ZooKeeper: our client
logs in with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 and produces and fetches; a wrong
password, an unknown user and a request before login are refused, the connection closed,
and nothing they sent stored; users added and deleted with ``headrace users`` count at once;
the credential admin APIs answer Kafka's per-user errors; kcat and confluent-kafka log in
with SCRAM-SHA-512 and confluent-kafka's admin alters and describes SCRAM users; malformed
SASL frames (hypothesis) never stop the broker serving others."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time

import pytest
from conftest import wait_for, zk_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from request_bodies import fetch_body, produce_to
from sasl_helpers import ADMIN_SECURITY, SaslBroker, sasl_properties, security

from broker.protocol import frames
from broker.protocol.records import build_batch, decode_batch
from broker.protocol.registry import ApiKey
from broker.protocol.sasl_apis import ScramMechanism
from broker.protocol.security_nodes import decode_user_config, scram_credential, user_path
from broker.security.credentials import write_credential
from consumers.sasl import SaslAuthenticationError
from headrace.devcluster import free_port

TOPIC = "sasl-t"
SCRAM = {"SCRAM-SHA-256": ("scram256", "s256-pw"), "SCRAM-SHA-512": ("scram512", "s512-pw")}
LOGINS = [("PLAIN", "alice", "alice-plain"), *((m, u, p) for m, (u, p) in SCRAM.items())]


@pytest.fixture(scope="module")
def broker(zookeeper, tmp_path_factory):
    work = tmp_path_factory.mktemp("sasl")
    chroot = f"/sasl-{time.monotonic_ns()}"
    connect = zookeeper.connect + chroot
    with zk_session(zookeeper.connect) as client:
        client.ensure_path(chroot)
    with zk_session(connect) as client:
        for mechanism, (user, password) in SCRAM.items():
            write_credential(client, user, scram_credential(mechanism, password))
    plain = work / "plain-users"
    plain.write_text("# PLAIN users\nalice:alice-plain\n")
    port = free_port()
    b = SaslBroker(work, 1, connect, port=port, overrides=sasl_properties(port, plain))
    b.start()
    with b.connect(ADMIN_SECURITY) as conn:
        body = {
            "topics": [
                {
                    "name": TOPIC,
                    "num_partitions": 1,
                    "replication_factor": 1,
                    "assignments": [],
                    "configs": [],
                }
            ],
            "timeout_ms": 30000,
            "validate_only": False,
        }
        assert conn.request(ApiKey.CREATE_TOPICS, body)["topics"][0]["error_code"] == 0
    wait_for(lambda: _end_offset(b) == 0, 20)
    yield b
    b.kill()


def _end_offset(broker) -> int:
    with broker.connect(ADMIN_SECURITY) as conn:
        body = conn.request(
            ApiKey.LIST_OFFSETS,
            {
                "replica_id": -1,
                "isolation_level": 0,
                "topics": [
                    {
                        "name": TOPIC,
                        "partitions": [
                            {"partition_index": 0, "current_leader_epoch": -1, "timestamp": -1}
                        ],
                    }
                ],
            },
        )
    part = body["topics"][0]["partitions"][0]
    assert part["error_code"] == 0, part
    return part["offset"]


def _batch(value: bytes) -> bytes:
    return build_batch([(None, value)])


def _closed(sock: socket.socket) -> bool:
    """The broker closed ``sock`` (what it sent before closing is read and dropped)."""
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


# --- our client ------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism, user, password", LOGINS, ids=[m for m, _, _ in LOGINS])
def test_our_client_logs_in_produces_and_fetches(broker, mechanism, user, password):
    value = f"from {user}".encode()
    with broker.connect(security(user, password, mechanism)) as conn:
        answer = produce_to(conn, TOPIC, 0, _batch(value))
        assert answer["error_code"] == 0
        fetched = conn.request(ApiKey.FETCH, fetch_body([(TOPIC, 0, answer["base_offset"])]))
    records = fetched["responses"][0]["partitions"][0]["records"]
    assert decode_batch(bytes(records), 0).records[0].value == value


@pytest.mark.parametrize(
    "mechanism, user, password",
    [
        ("PLAIN", "alice", "wrong"),
        ("PLAIN", "nobody", "alice-plain"),
        ("SCRAM-SHA-512", "scram512", "wrong"),
        ("SCRAM-SHA-512", "nobody", "s512-pw"),
        ("SCRAM-SHA-256", "scram512", "s512-pw"),  # a user of the other mechanism only
    ],
    ids=["plain-password", "plain-user", "scram-password", "scram-user", "scram-mechanism"],
)
def test_a_refused_login_closes_the_connection_and_stores_nothing(
    broker, mechanism, user, password
):
    before = _end_offset(broker)
    with pytest.raises(SaslAuthenticationError, match="SASL_AUTHENTICATION_FAILED"):
        broker.connect(security(user, password, mechanism))
    # The same by hand, with a Produce pipelined right behind the failing token.
    sock = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
    with sock:
        handshake = {"mechanism": "PLAIN"}
        sock.sendall(frames.encode_request(ApiKey.SASL_HANDSHAKE, 1, 1, "c", handshake))
        token = {"auth_bytes": b"\x00alice\x00wrong"}
        sock.sendall(frames.encode_request(ApiKey.SASL_AUTHENTICATE, 2, 2, "c", token))
        produce = {
            "transactional_id": None,
            "acks": 1,
            "timeout_ms": 5000,
            "topic_data": [
                {"name": TOPIC, "partition_data": [{"index": 0, "records": _batch(b"x")}]}
            ],
        }
        sock.sendall(frames.encode_request(ApiKey.PRODUCE, 8, 3, "c", produce))
        assert _closed(sock)
    assert _end_offset(broker) == before


def test_a_request_before_login_closes_the_connection_unanswered(broker):
    before = _end_offset(broker)
    produce = {
        "transactional_id": None,
        "acks": 1,
        "timeout_ms": 5000,
        "topic_data": [{"name": TOPIC, "partition_data": [{"index": 0, "records": _batch(b"x")}]}],
    }
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        sock.sendall(frames.encode_request(ApiKey.PRODUCE, 8, 1, "c", produce))
        sock.settimeout(10)
        assert sock.recv(4) == b""  # closed, no answer
    assert _end_offset(broker) == before


def test_an_unsupported_mechanism_is_told_the_enabled_ones(broker):
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        handshake = {"mechanism": "GSSAPI"}
        sock.sendall(frames.encode_request(ApiKey.SASL_HANDSHAKE, 1, 1, "c", handshake))
        sock.settimeout(10)
        size = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))[0]
        payload = sock.recv(size, socket.MSG_WAITALL)
        body = frames.decode_response(ApiKey.SASL_HANDSHAKE, 1, payload)[1]
        assert body == {
            "error_code": 33,
            "mechanisms": ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
        }
        assert _closed(sock)


def test_sasl_requests_after_login_are_illegal_state(broker):
    with broker.connect(security(*SCRAM["SCRAM-SHA-256"], "SCRAM-SHA-256")) as conn:
        handshake = conn.request(ApiKey.SASL_HANDSHAKE, {"mechanism": "PLAIN"}, version=1)
        token = {"auth_bytes": b"\x00alice\x00alice-plain"}
        again = conn.request(ApiKey.SASL_AUTHENTICATE, token, version=2)
        assert (handshake["error_code"], again["error_code"]) == (34, 34)
        assert conn.request(ApiKey.METADATA, {"topics": []})["brokers"]  # still serving


# --- users come and go without a restart -----------------------------------------------------


def _users(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "headrace.cli", "users", *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
    )


def _can_log_in(broker, user, password, mechanism="SCRAM-SHA-512") -> bool:
    try:
        broker.connect(security(user, password, mechanism)).close()
    except SaslAuthenticationError:
        return False
    return True


def test_users_added_and_deleted_count_at_once(broker, tmp_path):
    zk = broker.zookeeper_connect
    pw = tmp_path / "pw"
    pw.write_text("carol-pw\n")
    added = _users("add", "--user", "carol", "--mechanism", "SCRAM-SHA-512", "--iterations",
                   "8192", "--password-file", str(pw), "--zookeeper", zk)  # fmt: skip
    assert added.returncode == 0, added.stderr
    wait_for(lambda: _can_log_in(broker, "carol", "carol-pw"), 10)
    assert not _can_log_in(broker, "carol", "carol-pw", "SCRAM-SHA-256")
    with zk_session(zk) as client:
        config = decode_user_config(client.get(user_path("carol"))[0])
        assert "carol-pw" not in str(config) and "iterations=8192" in config["SCRAM-SHA-512"]
    listed = _users("list", "--zookeeper", zk)
    assert "user-principal 'carol' are SCRAM-SHA-512=iterations=8192" in listed.stdout
    few = _users("add", "--user", "dan", "--iterations", "4095", "--password-file", str(pw),
                 "--zookeeper", zk)  # fmt: skip
    assert few.returncode == 2 and "4096" in few.stderr
    (tmp_path / "empty").write_text("")
    empty = _users("add", "--user", "dan", "--password-file", str(tmp_path / "empty"),
                   "--zookeeper", zk)  # fmt: skip
    assert empty.returncode == 2 and "empty" in empty.stderr

    deleted = _users("delete", "--user", "carol", "--zookeeper", zk)
    assert deleted.returncode == 0, deleted.stderr
    wait_for(lambda: not _can_log_in(broker, "carol", "carol-pw"), 10)


def test_users_through_the_broker_with_a_command_config(broker, tmp_path):
    config = tmp_path / "admin.properties"
    config.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="admin" password="admin-secret";\n'
    )
    pw = tmp_path / "pw"
    pw.write_text("erin-pw\n")
    where = ["--bootstrap-server", f"127.0.0.1:{broker.port}", "--command-config", str(config)]
    added = _users("add", "--user", "erin", "--password-file", str(pw), *where)
    assert added.returncode == 0, added.stderr
    wait_for(lambda: _can_log_in(broker, "erin", "erin-pw"), 10)
    assert "'erin' are SCRAM-SHA-512=iterations=4096" in _users("list", *where).stdout
    assert _users("delete", "--user", "erin", *where).returncode == 0
    wait_for(lambda: not _can_log_in(broker, "erin", "erin-pw"), 10)
    again = _users("delete", "--user", "erin", "--mechanism", "SCRAM-SHA-512", *where)
    assert again.returncode == 2 and "RESOURCE_NOT_FOUND" in again.stderr


def test_credential_apis_answer_kafkas_per_user_errors(broker):
    sha512 = ScramMechanism.SCRAM_SHA_512
    upsert = {"mechanism": sha512, "iterations": 4096, "salt": b"s" * 16, "salted_password": b"p"}
    with broker.connect(ADMIN_SECURITY) as conn:
        body = conn.request(
            ApiKey.ALTER_USER_SCRAM_CREDENTIALS,
            {
                "deletions": [{"name": "ghost", "mechanism": sha512}],
                "upsertions": [
                    {"name": "few", **upsert, "iterations": 100},
                    {"name": "twice", **upsert},
                    {"name": "twice", **upsert},
                    {"name": "nomech", **upsert, "mechanism": 0},
                    {"name": "", **upsert},
                ],
            },
        )
        codes = {r["user"]: r["error_code"] for r in body["results"]}
        assert codes == {"ghost": 91, "few": 93, "twice": 92, "nomech": 33, "": 93}
        described = conn.request(
            ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS,
            {"users": [{"name": "scram512"}, {"name": "ghost"}, {"name": "x"}, {"name": "x"}]},
        )
    results = {r["user"]: r for r in described["results"]}
    assert results["scram512"]["credential_infos"] == [{"mechanism": 2, "iterations": 4096}]
    assert results["ghost"]["error_code"] == 91 and results["x"]["error_code"] == 92
    with zk_session(broker.zookeeper_connect) as client:
        assert not client.exists(user_path("few")) and not client.exists(user_path("twice"))


# --- third-party clients ---------------------------------------------------------------------


def test_kcat_logs_in_with_scram_sha_512(broker):
    user, password = SCRAM["SCRAM-SHA-512"]
    auth = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=SCRAM-SHA-512",
            "-X", f"sasl.username={user}", "-X", f"sasl.password={password}"]  # fmt: skip
    bootstrap = f"127.0.0.1:{broker.port}"
    before = _end_offset(broker)
    subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", TOPIC, "-p", "0", *auth],
                   input=b"kcat-1\nkcat-2\n", check=True, timeout=60)  # fmt: skip
    out = subprocess.run(
        ["kcat", "-b", bootstrap, "-C", "-t", TOPIC, "-p", "0", "-o", str(before), "-e", "-q",
         *auth],
        capture_output=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert out.split() == [b"kcat-1", b"kcat-2"]
    bad = subprocess.run(
        ["kcat", "-b", bootstrap, "-L", "-m", "5", *auth[:-1], "sasl.password=wrong"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode != 0
    assert _end_offset(broker) == before + 2


def test_confluent_kafka_logs_in_and_its_admin_manages_scram_users(broker):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        UserScramCredentialUpsertion,
    )
    from confluent_kafka.admin import (
        ScramMechanism as CkMechanism,
    )

    user, password = SCRAM["SCRAM-SHA-512"]
    conf = {
        "bootstrap.servers": f"127.0.0.1:{broker.port}",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
    }
    producer = Producer(conf)
    producer.produce(TOPIC, b"ck", partition=0)
    assert producer.flush(30) == 0
    end = _end_offset(broker)
    consumer = Consumer({**conf, "group.id": "ck-sasl", "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, 0, end - 1)])
    message = consumer.poll(30)
    consumer.close()
    assert message is not None and message.error() is None and message.value() == b"ck"

    admin = AdminClient(conf)
    info = ScramCredentialInfo(CkMechanism.SCRAM_SHA_256, 4096)
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion("frank", info, b"frank-pw")]
    )
    for future in futures.values():
        future.result(30)
    wait_for(lambda: _can_log_in(broker, "frank", "frank-pw", "SCRAM-SHA-256"), 10)
    described = admin.describe_user_scram_credentials(["frank"])
    for future in described.values():
        got = future.result(30)
    assert [(i.mechanism, i.iterations) for i in got.scram_credential_infos] == [
        (CkMechanism.SCRAM_SHA_256, 4096)
    ]


def test_kafka_python_logs_in_with_scram(broker):
    from kafka import KafkaProducer

    user, password = SCRAM["SCRAM-SHA-256"]
    producer = KafkaProducer(
        bootstrap_servers=f"127.0.0.1:{broker.port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username=user,
        sasl_plain_password=password,
    )
    before = _end_offset(broker)
    producer.send(TOPIC, b"kp", partition=0).get(timeout=30)
    producer.close(timeout=10)
    assert _end_offset(broker) == before + 1


# --- malformed SASL frames -------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    mechanism=st.sampled_from(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]),
    version=st.sampled_from([0, 1]),
    tokens=st.lists(st.binary(max_size=200), min_size=1, max_size=3),
)
def test_malformed_sasl_tokens_never_stop_the_broker(broker, mechanism, version, tokens):
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        handshake = {"mechanism": mechanism}
        sock.sendall(frames.encode_request(ApiKey.SASL_HANDSHAKE, version, 1, "f", handshake))
        for i, token in enumerate(tokens, 2):
            if version == 0:
                frame = struct.pack(">i", len(token)) + token
            else:
                frame = frames.encode_request(
                    ApiKey.SASL_AUTHENTICATE, 2, i, "f", {"auth_bytes": token}
                )
            try:
                sock.sendall(frame)
            except OSError:
                break
    assert _can_log_in(broker, *SCRAM["SCRAM-SHA-512"])


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(junk=st.binary(min_size=1, max_size=300))
def test_malformed_frames_before_login_never_stop_the_broker(broker, junk):
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(junk)) + junk)
    assert _can_log_in(broker, *SCRAM["SCRAM-SHA-512"])


# --- on a cluster whose ZooKeeper nodes are secured ------------------------------------------


def test_users_on_a_secured_zookeeper_need_the_brokers_identity(zookeeper, tmp_path):
    from kazoo.exceptions import NoAuthError

    connect = f"{zookeeper.connect}/sasl-acl-{time.monotonic_ns()}"
    plain = tmp_path / "plain-users"
    plain.write_text("")
    port = free_port()
    props = sasl_properties(port, plain)
    props.update({"zookeeper.set.acl": "true", "zookeeper.digest.credentials": "kafka:zk-pw"})
    b = SaslBroker(tmp_path, 1, connect, port=port, overrides=props)
    b.start()
    try:
        identity = tmp_path / "zk-identity"
        identity.write_text("kafka:zk-pw\n")
        pw = tmp_path / "pw"
        pw.write_text("gina-pw\n")
        anonymous = _users("add", "--user", "gina", "--password-file", str(pw),
                           "--zookeeper", connect)  # fmt: skip
        assert anonymous.returncode == 2 and "NoAuth" in anonymous.stderr
        added = _users("add", "--user", "gina", "--password-file", str(pw), "--zookeeper",
                       connect, "--zookeeper-auth-file", str(identity))  # fmt: skip
        assert added.returncode == 0, added.stderr
        wait_for(lambda: _can_log_in(b, "gina", "gina-pw"), 10)
        with zk_session(connect) as client, pytest.raises(NoAuthError):
            client.get(user_path("gina"))  # no world READ on credentials
    finally:
        b.kill()
