"""Three brokers whose only listener is SASL_SSL (clients and inter-broker alike, the brokers
logging in with SCRAM-SHA-512 as a user written to ZooKeeper by ``headrace users add`` before
they start), replication factor 3, min.insync.replicas 2.  Our idempotent acks=all producer
writes a bounded stream over SASL_SSL while the leader of both partitions is SIGKILLed: every
acknowledged message is read back over SASL_SSL exactly once and in order, and once the killed
broker is back the ISR is whole again and every replica holds the same bytes; with the
authorizer on (the brokers' user a super user), alice's fetch as a follower is refused for
want of ClusterAction.  A broker whose inter-broker password is wrong stays out of the ISR,
holds none of the writes, and logs the refused login: the followers' fetches really log in
over SASL_SSL."""

from __future__ import annotations

import subprocess
import time

import pytest
from command_lines import HEADRACE, ROOT
from conftest import wait_for, zk_session
from request_bodies import fetch_body
from test_replica_cluster import segment_bytes, state

from broker.protocol.errors import TopicAuthorizationFailedError
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection
from consumers.cluster import ClusterClient
from consumers.consumer import Consumer
from consumers.producer import Producer
from consumers.security import ClientSecurity
from headrace.devcluster import BrokerProcess

pytestmark = pytest.mark.integration

MECHANISM = "SCRAM-SHA-512"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
BROKER_USER, BROKER_PASSWORD = "broker", "broker-secret"
CLIENT_USER, CLIENT_PASSWORD = "alice", "alice-secret"
TOPIC = "guarded"
PARTITIONS = 2
COUNT = 400  # messages, half before the kill and half after


class SaslSslBroker(BrokerProcess):
    """A broker whose one listener, on ``port``, is SASL_SSL; ready once ``security`` can log
    in and sees it registered."""

    security: ClientSecurity

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"broker exited with {self.process.returncode}:\n{tail}")
            try:
                with self.connect() as conn:
                    body = conn.request(ApiKey.METADATA, {"topics": []})
                    if any(b["node_id"] == self.broker_id for b in body["brokers"]):
                        return
            except Exception:  # not listening, or not registered yet
                pass
            time.sleep(0.1)
        raise RuntimeError(f"SASL_SSL broker not ready on port {self.port} within {timeout} s")

    def connect(self, timeout: float = 15.0) -> BrokerConnection:
        return BrokerConnection("127.0.0.1", self.port, timeout=timeout, security=self.security)


def client_security(certs, user: str = CLIENT_USER, password: str = CLIENT_PASSWORD):
    return ClientSecurity.from_properties(
        {
            **certs.client_properties(protocol="SASL_SSL"),
            "sasl.mechanism": MECHANISM,
            "sasl.username": user,
            "sasl.password": password,
        }
    )


def add_user(zookeeper_connect: str, tmp_path, user: str, password: str) -> None:
    """``headrace users add --zookeeper``, the password from a file, as an operator would."""
    secret = tmp_path / f"{user}.password"
    secret.write_text(password + "\n")
    subprocess.run(
        [*HEADRACE, "users", "add", "--zookeeper", zookeeper_connect, "--user", user,
         "--mechanism", MECHANISM, "--password-file", str(secret)],
        cwd=ROOT, check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def add_acl(zookeeper_connect: str, *options: str) -> None:
    """``headrace acls --zookeeper --add --allow-principal User:alice <options>``."""
    subprocess.run(
        [*HEADRACE, "acls", "--zookeeper", zookeeper_connect, "--add",
         "--allow-principal", f"User:{CLIENT_USER}", *options],
        cwd=ROOT, check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def sasl_ssl_cluster(
    zookeeper, tmp_path, certs, wrong_password: dict[int, str] | None = None, acls=False
):
    """Brokers 1, 2, 3 on a fresh chroot, their users written first; broker ``b`` logs in with
    ``wrong_password[b]`` instead of the brokers' password if given.  With ``acls``, the
    authorizer is on, the brokers' user a super user, and alice may write (idempotently) and
    read the topic, nothing else."""
    connect = f"{zookeeper.connect}/sasl-ssl-repl-{time.monotonic_ns()}"
    with zk_session(zookeeper.connect) as zk:
        zk.ensure_path("/" + connect.split("/", 1)[1])
    for user, password in ((BROKER_USER, BROKER_PASSWORD), (CLIENT_USER, CLIENT_PASSWORD)):
        add_user(connect, tmp_path, user, password)
    authorizer = {}
    if acls:
        add_acl(connect, "--producer", "--idempotent", "--topic", TOPIC)
        add_acl(connect, "--operation", "Read", "--topic", TOPIC)
        authorizer = {
            "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
            "super.users": f"User:{BROKER_USER}",
        }
    brokers = []
    for broker_id in (1, 2, 3):
        password = (wrong_password or {}).get(broker_id, BROKER_PASSWORD)
        jaas = f'{SCRAM_MODULE} required username="{BROKER_USER}" password="{password}";'
        broker = SaslSslBroker(tmp_path, broker_id, connect)
        broker.overrides = {
            **certs.broker_properties(),
            "listeners": f"SASL_SSL://127.0.0.1:{broker.port}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
            "min.insync.replicas": "2",
            "auto.create.topics.enable": "false",
            "zookeeper.session.timeout.ms": "4000",
            "replica.lag.time.max.ms": "3000",
            **authorizer,
        }
        broker.security = client_security(certs)
        brokers.append(broker)
    return connect, brokers


@pytest.fixture
def started(zookeeper, tmp_path, certs):
    """``started(wrong_password=None, acls=False)``: the three SASL_SSL brokers, started in
    turn (broker 1 first, so it is the controller); killed after the test."""
    running = []

    def start(wrong_password=None, acls=False):
        connect, brokers = sasl_ssl_cluster(zookeeper, tmp_path, certs, wrong_password, acls)
        running.extend(brokers)
        for broker in brokers:
            broker.start()
        return connect, brokers

    yield start
    for broker in running:
        broker.kill()


def create_topic(broker: SaslSslBroker, security: ClientSecurity | None = None) -> None:
    """Both partitions on brokers 1, 2 and 3 with broker 1 their preferred leader, created as
    ``security`` (alice's, the brokers' ``security``, by default)."""
    assignments = [
        {"partition_index": 0, "broker_ids": [1, 2, 3]},
        {"partition_index": 1, "broker_ids": [1, 3, 2]},
    ]
    body = {
        "topics": [
            {"name": TOPIC, "num_partitions": -1, "replication_factor": -1,
             "assignments": assignments, "configs": []}
        ],
        "timeout_ms": 30000,
        "validate_only": False,
    }  # fmt: skip
    security = security or broker.security
    with BrokerConnection("127.0.0.1", broker.port, timeout=15, security=security) as conn:
        assert conn.request(ApiKey.CREATE_TOPICS, body)["topics"][0]["error_code"] == 0


def read_back(bootstrap: str, security: ClientSecurity, count: int) -> dict[int, list[bytes]]:
    """Every partition's values from offset 0, over ``bootstrap`` with ``security`` (until
    ``count`` in all, or 30 s)."""
    consumer = Consumer(cluster=ClusterClient(bootstrap, security=security))
    consumer.assign([(TOPIC, p, 0) for p in range(PARTITIONS)])
    got: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    deadline = time.monotonic() + 30
    try:
        while sum(map(len, got.values())) < count and time.monotonic() < deadline:
            for message in consumer.poll(0.5):
                got[message.partition].append(message.value)
    finally:
        consumer.close()
    return got


def test_acks_all_over_sasl_ssl_survives_a_leader_kill_exactly_once(started, tmp_path, certs):
    """With the authorizer on: the brokers fetch as a super user; alice, who may write and
    read the topic, is refused a follower's fetch (no ClusterAction)."""
    connect, brokers = started(acls=True)
    leader = brokers[0]
    broker_security = client_security(certs, BROKER_USER, BROKER_PASSWORD)
    create_topic(leader, broker_security)
    with zk_session(connect) as zk:
        for p in range(PARTITIONS):
            wait_for(lambda p=p: len(state(zk, TOPIC, p).isr) == 3, 30)
            assert state(zk, TOPIC, p).leader == leader.broker_id
        bootstrap = ",".join(b.bootstrap for b in brokers)
        cluster = ClusterClient(bootstrap, security=client_security(certs))
        producer = Producer(cluster=cluster, acks="all", enable_idempotence=True, linger_ms=5)
        futures = []
        try:

            def send(numbers) -> None:
                for i in numbers:
                    value = b"m%d" % i
                    futures.append((i, producer.send(TOPIC, value, partition=i % PARTITIONS)))
                    time.sleep(0.002)  # a stream, not one batch: the kill lands mid-way

            send(range(COUNT // 2))
            wait_for(lambda: sum(f.done() for _, f in futures) >= COUNT // 4, 30)
            leader.kill()  # SIGKILL, with writes in flight
            send(range(COUNT // 2, COUNT))
            assert producer.flush(timeout=90) == 0
        finally:
            producer.close()
        acknowledged = [i for i, f in futures if f.exception(timeout=0) is None]
        assert len(acknowledged) == COUNT  # idempotent retries: nothing lost to the kill
        for p in range(PARTITIONS):
            after = state(zk, TOPIC, p)
            assert after.leader not in (leader.broker_id, -1)
            assert leader.broker_id not in after.isr

        leader.start()  # back, logging in over SASL_SSL to catch up
        for p in range(PARTITIONS):
            wait_for(lambda p=p: len(state(zk, TOPIC, p).isr) == 3, 30)

        def caught_up(p: int) -> bool:
            copies = {segment_bytes(_Brokers(brokers), b.broker_id, TOPIC, p) for b in brokers}
            return len(copies) == 1 and copies != {b""}

        for p in range(PARTITIONS):
            wait_for(lambda p=p: caught_up(p), 30)

    got = read_back(bootstrap, client_security(certs), COUNT)
    for p in range(PARTITIONS):
        expected = [b"m%d" % i for i in acknowledged if i % PARTITIONS == p]
        assert got[p] == expected  # each acknowledged message once, in order, nothing else
    for follower in brokers[1:]:  # the followers fetched over the SASL_SSL listener
        assert "over listener SASL_SSL (SASL_SSL)" in follower.log_path.read_text()

    # A follower's fetch (replica_id >= 0) needs ClusterAction on the cluster: alice's is
    # refused partition by partition with TOPIC_AUTHORIZATION_FAILED, as Kafka answers it,
    # and gets no records; the same fetch as a consumer (replica_id -1) is hers to make.
    with zk_session(connect) as zk:
        now_leader = next(b for b in brokers if b.broker_id == state(zk, TOPIC, 0).leader)
    with now_leader.connect() as conn:
        body = fetch_body([(TOPIC, 0, 0)])
        as_consumer = conn.request(ApiKey.FETCH, body)["responses"][0]["partitions"][0]
        as_follower = conn.request(ApiKey.FETCH, {**body, "replica_id": 2})
    assert as_consumer["error_code"] == 0 and as_consumer["records"]
    refused = as_follower["responses"][0]["partitions"][0]
    assert refused["error_code"] == TopicAuthorizationFailedError.code
    assert not refused["records"]


def test_a_broker_with_a_wrong_inter_broker_password_stays_out_of_the_isr(started, tmp_path, certs):
    connect, brokers = started(wrong_password={3: "not-the-password"})
    leader, _, outsider = brokers
    create_topic(leader)
    with zk_session(connect) as zk:
        for p in range(PARTITIONS):
            wait_for(lambda p=p: state(zk, TOPIC, p).leader == leader.broker_id, 30)
        cluster = ClusterClient(leader.bootstrap, security=client_security(certs))
        producer = Producer(cluster=cluster, acks="all", enable_idempotence=True)
        try:
            futures = [
                producer.send(TOPIC, b"w%d" % i, partition=i % PARTITIONS) for i in range(50)
            ]
            assert producer.flush(timeout=60) == 0
            assert all(f.exception(timeout=0) is None for f in futures)
        finally:
            producer.close()
        # Acknowledged by brokers 1 and 2 (min.insync.replicas 2); broker 3 could not log in
        # to fetch, so it is out of every ISR and holds none of it.
        for p in range(PARTITIONS):
            wait_for(lambda p=p: outsider.broker_id not in state(zk, TOPIC, p).isr, 30)
            assert set(state(zk, TOPIC, p).isr) == {1, 2}
            assert segment_bytes(_Brokers(brokers), outsider.broker_id, TOPIC, p) == b""
    log = outsider.log_path.read_text()
    assert "SASL_AUTHENTICATION_FAILED" in log
    got = read_back(leader.bootstrap, client_security(certs), 50)
    assert sorted(got[0] + got[1]) == sorted(b"w%d" % i for i in range(50))


class _Brokers:
    """What ``segment_bytes`` asks of a cluster: its broker by id."""

    def __init__(self, brokers):
        self.brokers = brokers

    def broker(self, broker_id: int):
        return next(b for b in self.brokers if b.broker_id == broker_id)
