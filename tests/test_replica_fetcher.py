"""The replica fetcher (broker/replica/fetcher.py) and its truncation rules (truncation.py):
decisions unit-tested over a log kept in a list; the loop against a fake leader in this process
(OffsetForLeaderEpoch, errors) and following a real broker's partition."""

from __future__ import annotations

import struct
import time

import pytest
from conftest import create_topic, metadata
from test_replica_client import in_reactor, listen, reactor
from twisted.internet import protocol

from broker.protocol import frames
from broker.protocol.records import build_batch, check_batch
from broker.protocol.registry import API_BY_KEY, ApiKey
from broker.replica import truncation
from broker.replica.client import BrokerClient
from broker.replica.fetcher import (
    FETCHING,
    PAUSED,
    FetcherConfig,
    ReplicaFetcher,
    whole_batches,
)
from broker.replica.truncation import Truncation, out_of_range_action, truncation_for


def stamped(base_offset: int, count: int, epoch: int, tag: str = "v") -> bytes:
    """A batch at ``base_offset`` of ``count`` records, stamped with leader ``epoch``."""
    batch = bytearray(
        build_batch([(None, f"{tag}{base_offset + i}".encode()) for i in range(count)])
    )
    struct.pack_into(">q", batch, 0, base_offset)
    struct.pack_into(">i", batch, 12, epoch)  # partitionLeaderEpoch is outside the CRC
    return bytes(batch)


class ListLog:
    """A FollowerLog keeping whole batches in a list."""

    def __init__(self, batches=(), start: int = 0):
        self.start = start
        self.batches: list[bytes] = []
        self.high_watermark = 0
        self.appends = 0
        for batch in batches:
            self.append_as_follower(batch)
        self.appends = 0

    @property
    def log_end_offset(self) -> int:
        if not self.batches:
            return self.start
        header = check_batch(self.batches[-1])
        return header.next_offset

    def _epochs(self) -> list[tuple[int, int]]:
        """(epoch, start offset) in log order."""
        out: list[tuple[int, int]] = []
        for batch in self.batches:
            header = check_batch(batch)
            if header.partition_leader_epoch >= 0 and (
                not out or out[-1][0] != header.partition_leader_epoch
            ):
                out.append((header.partition_leader_epoch, header.base_offset))
        return out

    def latest_epoch(self):
        epochs = self._epochs()
        return epochs[-1][0] if epochs else None

    def end_offset_for_epoch(self, epoch: int):
        epochs = self._epochs()
        below = [i for i, (e, _) in enumerate(epochs) if e <= epoch]
        if not below:
            return -1, -1
        i = below[-1]
        end = epochs[i + 1][1] if i + 1 < len(epochs) else self.log_end_offset
        return epochs[i][0], end

    def append_as_follower(self, records: bytes) -> None:
        pos = 0
        while pos < len(records):  # whole, valid batches only, as a real log demands
            header = check_batch(records, pos)
            assert header.base_offset == self.log_end_offset, (header, self.log_end_offset)
            self.batches.append(bytes(records[pos : pos + header.size]))
            pos += header.size
        self.appends += 1

    def truncate_to(self, offset: int) -> bool:
        kept = [b for b in self.batches if check_batch(b).next_offset <= offset]
        cut, self.batches = len(kept) < len(self.batches), kept
        return cut

    def truncate_fully_and_start_at(self, offset: int) -> None:
        self.batches, self.start = [], offset

    @property
    def log_start_offset(self) -> int:
        return self.start

    def delete_records_before(self, offset: int) -> bool:
        offset = min(offset, self.log_end_offset)
        moved, self.start = offset > self.start, max(self.start, offset)
        self.batches = [b for b in self.batches if check_batch(b).next_offset > self.start]
        return moved


def epochs_log(*spans) -> ListLog:
    """A log of one batch of ``count`` records per (epoch, count) span."""
    log, offset = ListLog(), 0
    for epoch, count in spans:
        log.append_as_follower(stamped(offset, count, epoch))
        offset += count
    return log


# --- truncation decisions --------------------------------------------------------------------


def test_known_epoch_truncates_to_the_smaller_end():
    log = epochs_log((1, 10), (2, 10))  # epoch 1: 0-9, epoch 2: 10-19
    assert truncation_for(log, 2, 15) == Truncation(15, True)
    assert truncation_for(log, 2, 30) == Truncation(20, True)  # never forward
    assert truncation_for(log, 1, 8) == Truncation(8, True)


def test_an_epoch_the_follower_missed_truncates_to_its_own_end_and_asks_again():
    log = epochs_log((1, 10), (3, 10))
    # the leader's largest epoch <= 3 is 2, ending at 15; we never had epoch 2
    assert truncation_for(log, 2, 15) == Truncation(10, False)


def test_no_epoch_at_or_below_the_answer_truncates_to_the_leaders_end():
    log = epochs_log((4, 10))
    assert truncation_for(log, 2, 6) == Truncation(6, True)


def test_an_undefined_answer_truncates_to_the_high_watermark():
    log = epochs_log((1, 10), (2, 10))
    log.high_watermark = 12
    assert truncation_for(log, -1, -1) == Truncation(12, True)
    assert truncation.truncation_without_epochs(log) == Truncation(12, True)


def test_a_leader_without_epochs_truncates_to_its_end_offset():
    log = epochs_log((1, 10), (2, 10))
    assert truncation_for(log, -1, 14) == Truncation(14, True)
    assert truncation_for(log, -1, 40) == Truncation(20, True)


def test_offset_out_of_range_decisions():
    assert out_of_range_action(20, leader_start=50, leader_end=90) == ("start_at", 50)
    assert out_of_range_action(20, leader_start=0, leader_end=15) == ("truncate_to", 15)
    assert out_of_range_action(20, leader_start=0, leader_end=40) == ("fetch", 20)


def test_only_whole_batches_past_the_fetch_offset_are_appended():
    a, b, c = stamped(0, 3, 1), stamped(3, 3, 1), stamped(6, 3, 1)
    assert whole_batches(a + b + c[:40], 3) == b  # a is before the offset, c is cut
    assert whole_batches(a + b + c, 0) == a + b + c
    assert whole_batches(a[:30], 0) == b""
    assert whole_batches(a, 3) == b""


def test_fetcher_settings_use_kafkas_names_and_refuse_bad_values():
    config = FetcherConfig.from_properties(
        {"replica.fetch.wait.max.ms": "200", "replica.fetch.max.bytes": "4096"}
    )
    assert config.fetch_wait_max_ms == 200 and config.fetch_max_bytes == 4096
    assert config.socket_timeout_ms == 30000
    with pytest.raises(ValueError, match=r"replica\.fetch\.backoff\.ms"):
        FetcherConfig.from_properties({"replica.fetch.backoff.ms": "soon"})
    with pytest.raises(ValueError, match=r"replica\.socket\.timeout\.ms"):
        FetcherConfig.from_properties({"replica.socket.timeout.ms": "100"})


# --- the loop against a fake leader ----------------------------------------------------------


class FakeLeader(protocol.Protocol):
    """Answers requests with ``answer(api_key, version, body) -> body`` of the server's
    ``script``; records what it was asked in ``script.asked``."""

    script = None  # set per test on a subclass

    def connectionMade(self):
        self.splitter = frames.FrameSplitter(1 << 24)

    def dataReceived(self, data):
        self.splitter.feed(data)
        while (frame := self.splitter.next_frame()) is not None:
            request = frames.decode_request(frame)  # header v1 or v2, by the version
            api_key, version, correlation_id, _ = request.header
            self.script.asked.append((api_key, request.body))
            reply = self.script.answer(api_key, version, request.body)
            self.transport.write(
                frames.encode_response(correlation_id, request.api, version, reply)
            )


class Script:
    """A fake leader's behaviour: ``epochs`` answers OffsetForLeaderEpoch by the requested
    epoch; ``log`` is the leader's ListLog; ``fetch_error`` overrides Fetch answers."""

    def __init__(
        self, log: ListLog, epochs=None, fetch_error: int = 0, serves_epochs=True, cut=False
    ):
        self.cut = cut  # answer two batches and a piece of the third, as a size limit would
        self.log = log
        self.epochs = epochs or {}
        self.fetch_error = fetch_error
        self.fetch_errors_left: int | None = None  # None: every Fetch answers fetch_error
        self.serves_epochs = serves_epochs
        self.asked: list = []

    def answer(self, api_key, version, body):
        if api_key == ApiKey.API_VERSIONS:
            keys = [
                {"api_key": a.key, "min_version": 0, "max_version": a.max_version}
                for a in API_BY_KEY.values()
                if self.serves_epochs or a.key != ApiKey.OFFSET_FOR_LEADER_EPOCH
            ]
            return {"error_code": 0, "api_keys": keys, "throttle_time_ms": 0}
        if api_key == ApiKey.OFFSET_FOR_LEADER_EPOCH:
            return {
                "throttle_time_ms": 0,
                "topics": [
                    {
                        "topic": t["topic"],
                        "partitions": [
                            {
                                "error_code": 0,
                                "partition": p["partition"],
                                "leader_epoch": self.epochs[p["leader_epoch"]][0],
                                "end_offset": self.epochs[p["leader_epoch"]][1],
                            }
                            for p in t["partitions"]
                        ],
                    }
                    for t in body["topics"]
                ],
            }
        if api_key == ApiKey.LIST_OFFSETS:
            return {
                "throttle_time_ms": 0,
                "topics": [
                    {
                        "name": "t",
                        "partitions": [
                            {
                                "partition_index": 0,
                                "error_code": 0,
                                "timestamp": -1,
                                "offset": self.log.log_end_offset,
                                "leader_epoch": -1,
                            }
                        ],
                    }
                ],
            }
        assert api_key == ApiKey.FETCH
        part = body["topics"][0]["partitions"][0]
        offset = part["fetch_offset"]
        error = self.fetch_error
        if self.fetch_errors_left is not None:
            self.fetch_errors_left -= 1
            if self.fetch_errors_left < 0:
                error = 0
        if not error and not self.log.start <= offset <= self.log.log_end_offset:
            error = 1
        after = [b for b in self.log.batches if check_batch(b).next_offset > offset]
        if self.cut and len(after) > 2:
            after = [*after[:2], after[2][:30]]
        records = b"".join(after) if not error else b""
        return {
            "throttle_time_ms": 0,
            "error_code": 0,
            "session_id": 0,
            "responses": [
                {
                    "topic": "t",
                    "partitions": [
                        {
                            "partition_index": 0,
                            "error_code": error,
                            "high_watermark": self.log.log_end_offset,
                            "last_stable_offset": -1,
                            "log_start_offset": self.log.start,
                            "aborted_transactions": None,
                            "preferred_read_replica": -1,
                            "records": records,
                        }
                    ],
                }
            ],
        }


def follow(script: Script, follower: ListLog, until, epoch: int = 7, linger: float = 0.0):
    """Run a fetcher from a fake leader scripted by ``script`` into ``follower`` until
    ``until(fetcher)`` holds (bounded), then ``linger`` seconds more; returns the fetcher,
    stopped."""
    leader_protocol = type("Leader", (FakeLeader,), {"script": script})
    server, port = listen(leader_protocol)
    config = FetcherConfig(fetch_wait_max_ms=50, fetch_backoff_ms=50)
    client = BrokerClient(reactor(), "127.0.0.1", port, request_timeout_ms=5000, backoff_ms=50)
    fetcher = ReplicaFetcher(reactor(), client, broker_id=2, config=config)

    def begin():
        fetcher.add_partition("t", 0, follower, leader_epoch=epoch)
        fetcher.start()

    in_reactor(begin)
    deadline = time.monotonic() + 10
    while not in_reactor(until, fetcher) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(linger)
    in_reactor(fetcher.stop)
    in_reactor(server.stopListening)
    return fetcher


@pytest.mark.integration
def test_a_diverged_follower_truncates_where_histories_part_then_fetches_the_leaders():
    leader = epochs_log((1, 10), (2, 5), (5, 5))  # leader: epoch 2 ended at 15
    follower = epochs_log((1, 10), (2, 10))  # follower wrote 15-19 in epoch 2, never committed
    script = Script(leader, epochs={2: (2, 15)})
    fetcher = follow(
        script, follower, lambda f: follower.log_end_offset == 20 and follower.latest_epoch() == 5
    )
    assert [check_batch(b).base_offset for b in follower.batches] == [0, 10, 15]
    assert follower.batches == leader.batches
    assert follower.high_watermark == 20
    asked = [k for k, _ in script.asked]
    assert asked[:2] == [ApiKey.API_VERSIONS, 23]
    assert script.asked[1][1]["topics"][0]["partitions"][0]["leader_epoch"] == 2
    assert script.asked[1][1]["replica_id"] == 2
    assert fetcher.state("t", 0) == FETCHING


@pytest.mark.integration
def test_a_follower_missing_an_epoch_asks_again_with_its_earlier_one():
    leader = epochs_log((1, 10), (2, 5))
    follower = epochs_log((1, 10), (3, 10))  # epoch 3 from a leader whose writes were lost
    script = Script(leader, epochs={3: (2, 15), 1: (1, 10)})
    follow(
        script, follower, lambda f: follower.log_end_offset == 15 and follower.latest_epoch() == 2
    )
    epochs_asked = [
        body["topics"][0]["partitions"][0]["leader_epoch"] for k, body in script.asked if k == 23
    ]
    assert epochs_asked == [3, 1]
    assert follower.batches == leader.batches


@pytest.mark.integration
def test_a_leader_without_the_epoch_api_makes_the_follower_truncate_to_its_high_watermark():
    leader = epochs_log((1, 10), (2, 5))
    follower = epochs_log((1, 10), (3, 10))
    follower.high_watermark = 10
    script = Script(leader, serves_epochs=False)
    follow(script, follower, lambda f: follower.log_end_offset == 15)
    assert 23 not in [k for k, _ in script.asked]
    assert follower.batches == leader.batches


@pytest.mark.integration
def test_a_follower_behind_the_leaders_log_start_starts_there():
    leader = ListLog([stamped(50, 5, 1)], start=50)
    follower = ListLog()  # empty, no epochs: truncate to hw 0, fetch 0 -> out of range
    script = Script(leader)
    follow(script, follower, lambda f: follower.log_end_offset == 55)
    assert follower.start == 50 and follower.batches == leader.batches
    assert ApiKey.LIST_OFFSETS in [k for k, _ in script.asked]


@pytest.mark.integration
def test_a_fenced_follower_pauses_the_partition():
    leader = epochs_log((1, 10))
    follower = ListLog()
    script = Script(leader, fetch_error=74)
    # paused, then several backoff periods (50 ms) to show it is not asked again
    fetcher = follow(script, follower, lambda f: f.state("t", 0) == PAUSED, linger=0.3)
    assert fetcher.state("t", 0) == PAUSED
    fetches = [k for k, _ in script.asked].count(ApiKey.FETCH)
    assert fetches == 1  # paused: not asked again
    assert follower.batches == []


@pytest.mark.integration
@pytest.mark.parametrize("code", [6, 75])
def test_a_leader_not_ready_yet_is_asked_again_after_the_backoff(code):
    # a new topic's follower may fetch before its leader took up the state node
    leader = epochs_log((1, 10))
    follower = ListLog()
    script = Script(leader, fetch_error=code)
    script.fetch_errors_left = 3
    fetcher = follow(script, follower, lambda f: follower.log_end_offset == 10)
    assert [k for k, _ in script.asked].count(ApiKey.FETCH) >= 4
    assert follower.batches == leader.batches
    assert fetcher.state("t", 0) == FETCHING


@pytest.mark.integration
def test_a_fetch_ending_inside_a_batch_appends_only_the_whole_ones():
    leader = epochs_log(*[(1, 3)] * 7)
    follower = ListLog()
    script = Script(leader, cut=True)
    follow(script, follower, lambda f: follower.log_end_offset == 21)
    assert follower.batches == leader.batches
    assert follower.appends == 4  # 2 + 2 + 2 + 1 batches


@pytest.mark.integration
def test_a_fetcher_stops_cleanly_with_a_request_in_flight():
    from test_replica_client import Silent

    server, port = listen(Silent)  # the ApiVersions request is never answered
    client = BrokerClient(reactor(), "127.0.0.1", port, request_timeout_ms=30_000)
    fetcher = ReplicaFetcher(reactor(), client, broker_id=2)

    def begin():
        fetcher.add_partition("t", 0, ListLog(), leader_epoch=1)
        fetcher.start()

    in_reactor(begin)
    time.sleep(0.1)
    in_reactor(fetcher.stop, timeout=5)  # well before the request's own timeout
    assert fetcher._done.called and not client.connected
    pending = [c for c in in_reactor(reactor().getDelayedCalls) if c.active()]
    assert not [c for c in pending if getattr(c.func, "__self__", None) in (fetcher, client)]
    in_reactor(server.stopListening)


# --- following a real broker -----------------------------------------------------------------


def test_a_fetcher_follows_a_real_brokers_partition_getting_every_batch_once_in_order(
    make_cluster,
):
    from confluent_kafka import Producer

    cluster = make_cluster(2)
    create_topic(cluster.brokers[0].port, "replica-follow", 1, replication_factor=2)
    # The leader answers only its replicas: this fetcher speaks as the other one (whose own
    # fetcher follows the partition too).
    meta = metadata(cluster.brokers[0].port, ["replica-follow"])
    leader_id = meta["topics"][0]["partitions"][0]["leader_id"]
    port = cluster.broker(leader_id).port
    other = next(b.broker_id for b in cluster.brokers if b.broker_id != leader_id)
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "linger.ms": 5})

    def produce(first: int, last: int) -> None:
        for i in range(first, last):
            producer.produce("replica-follow", f"event-{i}".encode(), partition=0)
            if i % 100 == 99:
                producer.flush(10)  # batches of 100 records
        assert producer.flush(10) == 0

    def wait_for_end(end: int) -> None:
        deadline = time.monotonic() + 20
        while in_reactor(lambda: follower.log_end_offset) < end and time.monotonic() < deadline:
            time.sleep(0.05)

    produce(0, 2000)
    follower = ListLog()
    client = BrokerClient(reactor(), "127.0.0.1", port, client_id=f"broker-{other}")
    # per-partition fetches smaller than the log: many fetches of a few batches each
    config = FetcherConfig(fetch_wait_max_ms=100, fetch_max_bytes=5000)
    fetcher = ReplicaFetcher(reactor(), client, broker_id=other, config=config)

    def begin():
        fetcher.add_partition("replica-follow", 0, follower, leader_epoch=-1)
        fetcher.start()

    in_reactor(begin)
    wait_for_end(2000)
    produce(2000, 2500)  # while the fetcher long-polls at the log end
    wait_for_end(2500)
    # The high watermark comes one fetch later: once the followers' fetches showed the leader
    # they have everything.
    deadline = time.monotonic() + 20
    while in_reactor(lambda: follower.high_watermark) < 2500 and time.monotonic() < deadline:
        time.sleep(0.05)
    in_reactor(fetcher.stop)

    offsets = [check_batch(b).base_offset for b in follower.batches]
    assert offsets == sorted(set(offsets)) and offsets[0] == 0
    values = [r.value for b in follower.batches for r in _records(b)]
    assert values == [f"event-{i}".encode() for i in range(2500)]
    assert follower.high_watermark == 2500
    assert 1 < follower.appends < len(follower.batches)


def _records(batch: bytes):
    from broker.protocol.records import decode_batch

    return decode_batch(batch, 0).records
