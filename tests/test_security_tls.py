"""TLS listeners with real brokers: our clients over SSL with and without client
certificates; refusals (another CA's certificate, none where one is required, a PLAINTEXT
client on the TLS port) that store nothing while the broker keeps serving others; Metadata
answered per listener; replication over an SSL inter-broker listener; kcat over SSL."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess

import pytest

from broker.protocol import frames
from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection
from consumers.cluster import ClusterClient
from consumers.consumer import Consumer
from consumers.security import ClientSecurity
from tests.conftest import create_topic, metadata, wait_for
from tests.request_bodies import produce_to

TOPIC = "secured"


def _security(certs, name=None, **extra) -> ClientSecurity:
    return ClientSecurity.from_properties({**certs.client_properties(name), **extra})


def _address(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    return host, int(port)


def _produce(bootstrap: str, security: ClientSecurity, values: list[bytes], acks=1) -> dict:
    host, port = _address(bootstrap)
    with BrokerConnection(host, port, timeout=10, security=security) as conn:
        batch = build_batch([(None, v) for v in values])
        return produce_to(conn, TOPIC, 0, batch, acks=acks, timeout_ms=10000)


def _end_offset(cluster) -> int:
    """The partition's log end offset, asked over PLAINTEXT."""
    return ClusterClient(cluster.bootstrap).list_offset(TOPIC, 0, -1)


def _consume(bootstrap: str, security: ClientSecurity, count: int) -> list[bytes]:
    cluster = ClusterClient(bootstrap, security=security)
    consumer = Consumer(cluster=cluster, auto_offset_reset="earliest")
    consumer.assign([(TOPIC, 0, 0)])
    got: list[bytes] = []
    wait_for(lambda: got.extend(m.value for m in consumer.poll(1.0)) or len(got) >= count, 20)
    consumer.close()
    return got


@pytest.fixture
def ssl_cluster(make_cluster, certs):
    """One broker: PLAINTEXT, SSL (client certificates required), and SSL listeners named
    OPEN that asks for none and ASK that requests one (per-listener ssl.client.auth)."""
    props = certs.broker_properties(client_auth="required")
    props["listener.name.open.ssl.client.auth"] = "none"
    props["listener.name.ask.ssl.client.auth"] = "requested"
    listeners = {"SSL": "SSL", "OPEN": "SSL", "ASK": "SSL"}
    cluster = make_cluster(1, listeners=listeners, props=props)
    create_topic(cluster.brokers[0].port, TOPIC, 1)
    wait_for(lambda: _end_offset(cluster) == 0, 10)
    return cluster


def test_clients_produce_and_consume_over_ssl_with_and_without_certificates(ssl_cluster, certs):
    alice = _security(certs, "alice")
    assert _produce(ssl_cluster.bootstrap_for("SSL"), alice, [b"a1", b"a2"])["error_code"] == 0
    anonymous = _security(certs)  # no certificate: the OPEN listener does not ask for one
    assert _produce(ssl_cluster.bootstrap_for("OPEN"), anonymous, [b"o1"])["error_code"] == 0
    # requested: with a certificate or without one
    assert _produce(ssl_cluster.bootstrap_for("ASK"), alice, [b"q1"])["error_code"] == 0
    assert _produce(ssl_cluster.bootstrap_for("ASK"), anonymous, [b"q2"])["error_code"] == 0
    expected = [b"a1", b"a2", b"o1", b"q1", b"q2"]
    assert _consume(ssl_cluster.bootstrap_for("SSL"), alice, 5) == expected
    assert _consume(ssl_cluster.bootstrap_for("OPEN"), anonymous, 5) == expected
    assert _end_offset(ssl_cluster) == 5


@pytest.mark.parametrize(
    ("listener", "who"),
    [("SSL", "other"), ("SSL", None), ("ASK", "other")],
    ids=["other-ca-on-required", "none-on-required", "other-ca-on-requested"],
)
def test_a_refused_client_certificate_stores_nothing(ssl_cluster, certs, listener, who):
    before = _end_offset(ssl_cluster)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _produce(ssl_cluster.bootstrap_for(listener), _security(certs, who), [b"intruder"])
    assert _end_offset(ssl_cluster) == before
    # and the listener keeps serving a client it trusts
    assert (
        _produce(ssl_cluster.bootstrap_for("SSL"), _security(certs, "bob"), [b"b"])["error_code"]
        == 0
    )
    assert _end_offset(ssl_cluster) == before + 1


def test_a_plaintext_client_on_the_tls_port_is_refused(ssl_cluster, certs):
    before = _end_offset(ssl_cluster)
    batch = build_batch([(None, b"plaintext")])
    body = {
        "transactional_id": None,
        "acks": 1,
        "timeout_ms": 5000,
        "topic_data": [{"name": TOPIC, "partition_data": [{"index": 0, "records": batch}]}],
    }
    frame = frames.encode_request(ApiKey.PRODUCE, 8, 1, "raw", body)
    with socket.create_connection(_address(ssl_cluster.bootstrap_for("OPEN")), timeout=10) as s:
        s.sendall(frame)
        received = b""
        while True:  # the broker answers with a TLS alert at most, then closes
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
    assert not received.startswith(frame[:4])  # no Kafka response came back
    assert _end_offset(ssl_cluster) == before
    anonymous = _security(certs)
    assert _produce(ssl_cluster.bootstrap_for("OPEN"), anonymous, [b"ok"])["error_code"] == 0


def test_metadata_answers_the_addresses_of_the_listener_asked(ssl_cluster, certs):
    broker = ssl_cluster.brokers[0]
    plain = metadata(broker.port)["brokers"]
    assert [(b["host"], b["port"]) for b in plain] == [("127.0.0.1", broker.port)]
    for name in ("SSL", "OPEN", "ASK"):
        host, port = _address(ssl_cluster.bootstrap_for(name))
        with BrokerConnection(host, port, timeout=10, security=_security(certs, "alice")) as c:
            body = c.request(ApiKey.METADATA, {"topics": []})
            coordinator = c.request(ApiKey.FIND_COORDINATOR, {"key": "g", "key_type": 0})
        assert [(b["host"], b["port"]) for b in body["brokers"]] == [(host, port)]
        assert (coordinator["host"], coordinator["port"]) == (host, port)


def test_a_wrong_host_name_is_refused_unless_the_check_is_off(ssl_cluster, certs):
    from consumers.tls import wrap_socket

    address = _address(ssl_cluster.bootstrap_for("OPEN"))
    # The certificate names 127.0.0.1 and localhost, not the name the client expects.
    with (
        socket.create_connection(address, timeout=10) as sock,
        pytest.raises(ssl.SSLCertVerificationError, match="match"),
    ):
        wrap_socket(sock, "broker.elsewhere.test", _security(certs))
    unchecked = _security(certs, **{"ssl.endpoint.identification.algorithm": ""})
    with socket.create_connection(address, timeout=10) as sock:
        wrap_socket(sock, "broker.elsewhere.test", unchecked).close()


def test_replication_over_an_ssl_inter_broker_listener(make_cluster, certs):
    """Brokers replicate over INTERNAL (SSL, client certificates required): acks=all
    produces succeed with all three replicas in sync."""
    cluster = make_cluster(
        3,
        listeners={"INTERNAL": "SSL"},
        props={
            **certs.broker_properties(client_auth="required"),
            "inter.broker.listener.name": "INTERNAL",
            "min.insync.replicas": "3",
        },
    )
    create_topic(cluster.brokers[0].port, TOPIC, 1, replication_factor=3)

    def in_sync():
        topics = metadata(cluster.brokers[0].port, [TOPIC])["topics"]
        partition = topics[0]["partitions"][0]
        return len(partition["isr_nodes"]) == 3 and partition["leader_id"] >= 0

    wait_for(in_sync, 30)
    leader = metadata(cluster.brokers[0].port, [TOPIC])["topics"][0]["partitions"][0]
    port = cluster.broker(leader["leader_id"]).port
    plain = ClientSecurity()
    for i in range(3):
        result = _produce(f"127.0.0.1:{port}", plain, [f"r{i}".encode()], acks=-1)
        assert result["error_code"] == 0, result
    wait_for(in_sync, 10)
    # the followers fetch from the leader's INTERNAL (TLS) endpoint, not its PLAINTEXT one
    internal = cluster.broker(leader["leader_id"]).listener_ports["INTERNAL"]
    for broker in cluster.brokers:
        if broker.broker_id != leader["leader_id"]:
            text = broker.log_path.read_text()
            assert f"127.0.0.1:{internal} over listener INTERNAL (SSL)" in text


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_kcat_produces_and_consumes_over_ssl_with_a_client_certificate(ssl_cluster, certs):
    keystore = str(certs.client("alice"))
    options = [
        "-b",
        ssl_cluster.bootstrap_for("SSL"),
        "-X",
        "security.protocol=ssl",
        "-X",
        f"ssl.ca.location={certs.ca}",
        "-X",
        f"ssl.certificate.location={keystore}",
        "-X",
        f"ssl.key.location={keystore}",
    ]
    subprocess.run(
        ["kcat", *options, "-P", "-t", TOPIC, "-p", "0"],
        input=b"k1\nk2\n",
        check=True,
        timeout=30,
        capture_output=True,
    )
    out = subprocess.run(
        ["kcat", *options, "-C", "-t", TOPIC, "-p", "0", "-o", "beginning", "-e", "-q"],
        check=True,
        timeout=30,
        capture_output=True,
    )
    assert out.stdout.split() == [b"k1", b"k2"]


def test_pipelined_produce_and_a_large_fetch_over_tls(ssl_cluster, certs):
    """Our producer keeps many requests in flight on one TLS connection (its reads drain
    what the TLS layer has decrypted already), and a fetch of several MiB goes through the
    broker's pread path (no sendfile under TLS), whole and in order."""
    from consumers.producer import Producer

    alice = _security(certs, "alice")
    before = _end_offset(ssl_cluster)
    cluster = ClusterClient(ssl_cluster.bootstrap_for("SSL"), security=alice)
    producer = Producer(cluster=cluster, acks=1, linger_ms=0, batch_size=16384, compression="none")
    value = bytes(range(256)) * 40  # 10 KiB, not compressible away
    for i in range(600):  # about 6 MiB
        producer.send(TOPIC, value + i.to_bytes(4, "big"), partition=0)
    assert producer.flush(timeout=60) == 0
    producer.close()
    assert _end_offset(ssl_cluster) == before + 600
    consumer = Consumer(
        cluster=ClusterClient(ssl_cluster.bootstrap_for("SSL"), security=alice),
        auto_offset_reset="earliest",
        fetch_max_bytes=8 << 20,
        max_partition_fetch_bytes=8 << 20,
    )
    consumer.assign([(TOPIC, 0, before)])
    got: list[bytes] = []
    wait_for(lambda: got.extend(m.value for m in consumer.poll(1.0)) or len(got) >= 600, 30)
    consumer.close()
    assert [int.from_bytes(v[-4:], "big") for v in got] == list(range(600))
    assert all(v[:-4] == value for v in got)


def test_a_broker_with_a_bad_tls_setting_does_not_start_and_says_why(make_cluster, certs):
    """A TLS listener without a keystore, and a keystore whose key is encrypted without
    ssl.key.password: the broker exits at start naming the problem."""
    with pytest.raises(RuntimeError, match="no keystore"):
        make_cluster(1, listeners={"SSL": "SSL"})
    props = certs.broker_properties(encrypted=True)
    del props["ssl.key.password"]
    with pytest.raises(RuntimeError, match=r"encrypted; set ssl\.key\.password"):
        make_cluster(1, listeners={"SSL": "SSL"}, props=props)


def test_pipelined_answers_left_decrypted_in_the_tls_layer_are_read(ssl_cluster, certs):
    """Answers to pipelined requests, read with a recv smaller than a TLS record: the rest of
    each record waits decrypted in the SSL object, where select() does not see it; ``read``
    takes it at once, so every answer arrives without more bytes on the wire."""
    import select

    alice = _security(certs, "alice")
    cluster = ClusterClient(ssl_cluster.bootstrap_for("SSL"), security=alice)
    cluster.refresh([])
    (node_id,) = cluster.brokers
    conn = cluster.connect(node_id)
    conn.read_bytes = 64  # smaller than every answer below
    try:
        conn.send(ApiKey.API_VERSIONS, [({}, i) for i in range(20)])
        answered: list[int] = []
        while len(answered) < 20:
            readable, _, _ = select.select([conn], [], [], 5)
            assert readable, f"answers {answered} arrived, the rest wait unseen"
            answers, error = conn.read()
            assert error is None
            answered.extend(token for token, _ in answers)
        assert answered == list(range(20))
    finally:
        conn.close()
        cluster.close()
