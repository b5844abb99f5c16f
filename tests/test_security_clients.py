"""Unmodified third-party clients on a secured broker: kcat, confluent-kafka, kafka-python,
aiokafka and kafkajs over SASL_SSL (SCRAM-SHA-512, the user added with ``headrace users
add``) and over SSL with a client certificate (``ssl.client.auth=required``) each produce,
consume every message back once, and run a consumer group whose second run resumes from its
commit.  Refusals seen from real clients: a wrong password, an unknown user, a certificate
from another CA, no certificate, a PLAINTEXT client on the TLS port; each refused, the
connection closed, nothing stored, while an authorised client keeps working.

One broker for the module, with three listeners: PLAINTEXT (setup and counting), SASL_SSL
and SSL.  The clients' settings are in ``tests/secure_clients.py``."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import time

import pytest
from command_lines import HEADRACE
from conftest import Cluster, create_topic, wait_for
from kafkajs_client import GroupMember
from kafkajs_client import produce as kafkajs_produce
from secure_clients import MECHANISM, Login

from broker.protocol import frames
from broker.protocol.registry import ApiKey

USER, PASSWORD = "alice", "alice-scram-pw"
PARTITIONS = 2
FIRST, SECOND = 12, 5  # messages before the group's first run, and before its second
CLIENTS = ["kcat", "confluent-kafka", "kafka-python", "aiokafka", "kafkajs"]
MODES = ["sasl_ssl", "ssl"]


@pytest.fixture(scope="module")
def secure(zookeeper, certs, tmp_path_factory):
    """A broker with PLAINTEXT, SASL_SSL (SCRAM-SHA-512) and SSL (client certificate
    required) listeners; ``alice`` added with ``headrace users add``."""
    work = tmp_path_factory.mktemp("secure-clients")
    props = {
        **certs.broker_properties(),
        "listener.name.ssl.ssl.client.auth": "required",
        "sasl.enabled.mechanisms": MECHANISM,
        "connection.failed.authentication.delay.ms": "100",
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": "0",  # each group here has one member
    }
    listeners = {"SASL_SSL": "SASL_SSL", "SSL": "SSL"}
    cluster = Cluster(work, f"{zookeeper.connect}/sc-{time.monotonic_ns()}", 1, props, listeners)
    cluster.start()
    password_file = work / "alice.password"
    password_file.write_text(PASSWORD + "\n")
    subprocess.run(
        [*HEADRACE, "users", "add", "--user", USER, "--mechanism", MECHANISM,
         "--password-file", str(password_file), "--zookeeper", cluster.zookeeper_connect],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    yield cluster
    cluster.kill()


def _login(certs, mode: str) -> Login:
    return (
        Login.scram(certs, USER, PASSWORD)
        if mode == "sasl_ssl"
        else Login.certificate(certs, "alice")
    )


def _end_offsets(cluster, topic: str) -> list[int]:
    """The log end offset of each partition, as confluent-kafka's admin client lists them
    (over PLAINTEXT, the counting side)."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    wanted = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(PARTITIONS)}
    got = {tp.partition: f.result(30).offset for tp, f in admin.list_offsets(wanted).items()}
    return [got[p] for p in range(PARTITIONS)]


# --- the clients: produce, read everything back, one run of a consumer group -----------------


def _until(collect, count: int, timeout: float = 30) -> list[bytes]:
    """Call ``collect()`` (returning new values) until ``count`` values came, then once more
    briefly, so a duplicate would show; what came."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(collect(1.0))
    got.extend(collect(0.3))
    return got


class Kcat:
    def __init__(self, login: Login, bootstrap: str):
        self.args = ["kcat", "-b", bootstrap, "-q", *login.kcat_args()]

    def _run(self, *args: str, stdin: bytes = b"") -> bytes:
        done = subprocess.run(
            [*self.args, *args], input=stdin, capture_output=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def produce(self, topic: str, values: list[bytes]) -> None:
        self._run("-P", "-t", topic, stdin=b"\n".join(values) + b"\n")

    def consume(self, topic: str, count: int) -> list[bytes]:
        return self._run("-C", "-t", topic, "-o", "beginning", "-e").split()

    def group_run(self, topic: str, group: str, count: int) -> list[bytes]:
        # A balanced consumer: -e stops it at the end of its partitions, and closing commits.
        out = self._run("-G", group, topic, "-X", "auto.offset.reset=earliest", "-e")
        return out.split()


class ConfluentKafka:
    def __init__(self, login: Login, bootstrap: str):
        self.conf = {"bootstrap.servers": bootstrap, **login.librdkafka()}

    def produce(self, topic: str, values: list[bytes]) -> None:
        from confluent_kafka import Producer

        producer = Producer(self.conf)
        for value in values:
            producer.produce(topic, value)
        assert producer.flush(30) == 0

    def _consume(self, consumer, count: int) -> list[bytes]:
        def collect(timeout: float) -> list[bytes]:
            batch = consumer.consume(count, timeout)
            assert all(m.error() is None for m in batch), [m.error() for m in batch]
            return [m.value() for m in batch]

        return _until(collect, count)

    def consume(self, topic: str, count: int) -> list[bytes]:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer({**self.conf, "group.id": "unused", "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        try:
            return self._consume(consumer, count)
        finally:
            consumer.close()

    def group_run(self, topic: str, group: str, count: int) -> list[bytes]:
        from confluent_kafka import Consumer

        conf = {"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
        consumer = Consumer({**self.conf, **conf})
        consumer.subscribe([topic])
        try:
            got = self._consume(consumer, count)
            consumer.commit(asynchronous=False)
            return got
        finally:
            consumer.close()


class KafkaPython:
    def __init__(self, login: Login, bootstrap: str):
        self.kwargs = {"bootstrap_servers": bootstrap, **login.kafka_python()}

    def produce(self, topic: str, values: list[bytes]) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(**self.kwargs)
        futures = [producer.send(topic, value) for value in values]
        producer.flush(30)
        for future in futures:
            future.get(30)
        producer.close(10)

    def _consume(self, consumer, count: int) -> list[bytes]:
        def collect(timeout: float) -> list[bytes]:
            polled = consumer.poll(timeout_ms=int(timeout * 1000))
            return [r.value for records in polled.values() for r in records]

        return _until(collect, count)

    def consume(self, topic: str, count: int) -> list[bytes]:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(**self.kwargs, enable_auto_commit=False)
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        try:
            return self._consume(consumer, count)
        finally:
            consumer.close()

    def group_run(self, topic: str, group: str, count: int) -> list[bytes]:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            topic,
            **self.kwargs,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            got = self._consume(consumer, count)
            consumer.commit()
            return got
        finally:
            consumer.close()


class AioKafka:
    def __init__(self, login: Login, bootstrap: str):
        self.login, self.bootstrap = login, bootstrap

    def _kwargs(self) -> dict:
        return {"bootstrap_servers": self.bootstrap, **self.login.aiokafka()}

    def produce(self, topic: str, values: list[bytes]) -> None:
        from aiokafka import AIOKafkaProducer

        async def run() -> None:
            producer = AIOKafkaProducer(**self._kwargs())
            await producer.start()
            try:
                for value in values:
                    await producer.send_and_wait(topic, value)
            finally:
                await producer.stop()

        asyncio.run(asyncio.wait_for(run(), 60))

    async def _consume(self, consumer, count: int) -> list[bytes]:
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        timeout = 1000
        while time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=timeout, max_records=count)
            got.extend(r.value for records in polled.values() for r in records)
            if len(got) >= count:
                if timeout == 300:
                    break
                timeout = 300  # once more briefly, so a duplicate would show
        return got

    def consume(self, topic: str, count: int) -> list[bytes]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        async def run() -> list[bytes]:
            consumer = AIOKafkaConsumer(**self._kwargs(), enable_auto_commit=False)
            await consumer.start()
            try:
                partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                return await self._consume(consumer, count)
            finally:
                await consumer.stop()

        return asyncio.run(asyncio.wait_for(run(), 60))

    def group_run(self, topic: str, group: str, count: int) -> list[bytes]:
        from aiokafka import AIOKafkaConsumer

        async def run() -> list[bytes]:
            consumer = AIOKafkaConsumer(
                topic,
                **self._kwargs(),
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            try:
                got = await self._consume(consumer, count)
                await consumer.commit()
                return got
            finally:
                await consumer.stop()

        return asyncio.run(asyncio.wait_for(run(), 60))


class KafkaJS:
    def __init__(self, login: Login, bootstrap: str):
        self.security, self.bootstrap = login.kafkajs(), bootstrap

    def produce(self, topic: str, values: list[bytes]) -> None:
        batch = [{"value": v.decode()} for v in values]
        kafkajs_produce(self.bootstrap, topic, [batch], security=self.security)

    def consume(self, topic: str, count: int) -> list[bytes]:
        # kafkajs reads only in a group: a group of its own, from the beginning.
        return self.group_run(topic, f"read-{time.monotonic_ns()}", count)

    def group_run(self, topic: str, group: str, count: int) -> list[bytes]:
        member = GroupMember(self.bootstrap, group, topic, "member", security=self.security)
        try:
            wait_for(lambda: len(member.messages()) >= count, 45)
            ends: dict[int, int] = {}
            for m in member.messages():
                ends[m["partition"]] = max(ends.get(m["partition"], -1), m["offset"] + 1)

            def committed() -> bool:  # every message read is committed (autoCommitInterval)
                done = {}
                for event in member.events:
                    if event["event"] == "committed":
                        for t in event["topics"]:
                            for p in t["partitions"]:
                                done[int(p["partition"])] = int(p["offset"])
                return all(done.get(p, -1) >= end for p, end in ends.items())

            wait_for(committed, 30)
            member.leave()
            return [m["value"].encode() for m in member.messages()]
        finally:
            member.kill()


DRIVERS = {
    "kcat": Kcat,
    "confluent-kafka": ConfluentKafka,
    "kafka-python": KafkaPython,
    "aiokafka": AioKafka,
    "kafkajs": KafkaJS,
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("client", CLIENTS)
def test_client_produces_consumes_and_resumes_a_group(secure, certs, client, mode):
    login = _login(certs, mode)
    driver = DRIVERS[client](login, secure.bootstrap_for(login.listener))
    topic = f"{client}-{mode}"
    create_topic(secure.brokers[0].port, topic, PARTITIONS)
    first = [f"{client}-{mode}-{i}".encode() for i in range(FIRST)]
    driver.produce(topic, first)
    assert sum(_end_offsets(secure, topic)) == FIRST

    assert sorted(driver.consume(topic, FIRST)) == sorted(first)  # every one, once

    group = f"group-{client}-{mode}"
    assert sorted(driver.group_run(topic, group, FIRST)) == sorted(first)
    second = [f"{client}-{mode}-again-{i}".encode() for i in range(SECOND)]
    driver.produce(topic, second)
    # The second run starts at the first run's commit: the new messages and nothing older.
    assert sorted(driver.group_run(topic, group, SECOND)) == sorted(second)
    assert sum(_end_offsets(secure, topic)) == FIRST + SECOND


# --- refusals, seen from real clients ----------------------------------------------------------

REFUSED_LOGINS = {
    "wrong-password": lambda certs: Login.scram(certs, USER, "not-" + PASSWORD),
    "unknown-user": lambda certs: Login.scram(certs, "nobody", PASSWORD),
    "other-ca": lambda certs: Login.certificate(certs, "other"),
    "no-certificate": lambda certs: Login.certificate(certs, None),
}


@pytest.fixture(scope="module")
def refusals_topic(secure):
    create_topic(secure.brokers[0].port, "refusals", PARTITIONS)
    return "refusals"


def _confluent_errors(login: Login, bootstrap: str, topic: str) -> list:
    """What confluent-kafka's error callback reported while a producer with ``login`` tried
    to send three messages (given up after 5 s each)."""
    from confluent_kafka import Producer

    errors: list = []
    conf = {"bootstrap.servers": bootstrap, **login.librdkafka(), "message.timeout.ms": 5000}
    producer = Producer({**conf, "error_cb": errors.append})
    for i in range(3):
        producer.produce(topic, b"intruder-%d" % i)
    deadline = time.monotonic() + 20
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    producer.purge()
    producer.flush(5)
    return errors


def _broker_closed(sock) -> bytes:
    """Everything the broker sent before closing ``sock`` (a TLS error counts as closed);
    a socket still open after 10 s fails the test (socket.timeout)."""
    sock.settimeout(10)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (ssl.SSLError, ConnectionResetError):
        pass
    return received


def _api_versions() -> bytes:
    return frames.encode_request(ApiKey.API_VERSIONS, 0, 1, "intruder", {})


def _refused_by_hand(secure, certs, case: str, login: Login) -> None:
    """The same refusal with a bare socket: the broker closes the connection, and a request
    sent on it is never answered."""
    from consumers import sasl, tls
    from consumers.sasl import SaslAuthenticationError
    from consumers.security import ClientSecurity

    host, port = secure.bootstrap_for(login.listener).rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=10)
    if login.user is not None:
        security = ClientSecurity.from_properties(
            {
                **certs.client_properties(protocol="SASL_SSL"),
                "sasl.mechanism": MECHANISM,
                "sasl.username": login.user,
                "sasl.password": str(login.password),
            }
        )
        sock = tls.wrap_socket(raw, host, security)
        with pytest.raises(SaslAuthenticationError, match="SASL_AUTHENTICATION_FAILED"):
            sasl.authenticate(sock, security, "intruder")
        assert _broker_closed(sock) == b""  # the broker's TLS close came
        # ... and the TCP connection ends, though this client never answers that close.
        with socket.socket(fileno=sock.detach()) as tcp:
            assert _broker_closed(tcp) == b""
        return
    with raw, login.ssl_context().wrap_socket(raw, server_hostname=host) as sock:
        try:  # TLS 1.2 fails the handshake; with TLS 1.3 the refusal comes after it
            sock.do_handshake()
            sock.sendall(_api_versions())
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return
        assert _broker_closed(sock) == b""


@pytest.mark.parametrize("case", list(REFUSED_LOGINS))
def test_a_refused_client_is_closed_and_stores_nothing(secure, certs, refusals_topic, case):
    from confluent_kafka import KafkaError

    login = REFUSED_LOGINS[case](certs)
    before = _end_offsets(secure, refusals_topic)
    errors = _confluent_errors(login, secure.bootstrap_for(login.listener), refusals_topic)
    assert errors, "the client reported nothing"
    if login.user is not None:  # SCRAM: the client says the login failed
        assert errors[0].code() == KafkaError._AUTHENTICATION, errors
    else:  # TLS: the handshake failed
        assert errors[0].code() in (KafkaError._SSL, KafkaError._TRANSPORT), errors
        assert "SSL" in errors[0].str() or "handshake" in errors[0].str(), errors
    _refused_by_hand(secure, certs, case, login)
    assert _end_offsets(secure, refusals_topic) == before

    # An authorised client on the same listener keeps working.
    good = _login(certs, "sasl_ssl" if login.user is not None else "ssl")
    ConfluentKafka(good, secure.bootstrap_for(good.listener)).produce(refusals_topic, [b"ok"])
    assert sum(_end_offsets(secure, refusals_topic)) == sum(before) + 1


@pytest.mark.parametrize("listener", ["SSL", "SASL_SSL"])
def test_a_plaintext_client_on_a_tls_port_is_refused(secure, refusals_topic, listener):
    before = _end_offsets(secure, refusals_topic)
    bootstrap = secure.bootstrap_for(listener)
    done = subprocess.run(
        ["kcat", "-b", bootstrap, "-P", "-t", refusals_topic, "-X", "message.timeout.ms=5000"],
        input=b"intruder-1\nintruder-2\n", capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0, done.stderr
    # By hand: a Kafka request in the clear gets at most a TLS alert, then the close.
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(_api_versions())
        answer = _broker_closed(sock)
    assert answer == b"" or answer[:1] == b"\x15", answer  # 0x15: a TLS alert record
    assert _end_offsets(secure, refusals_topic) == before
