"""The broker-to-broker client (broker/replica/client.py) against a real broker, a server that
accepts and never answers, and one that closes the connection inside a response.

The client runs on Twisted's reactor, started once in a daemon thread; ``in_reactor`` runs a
function there and waits for its Deferred (bounded, so a hang fails the test).
"""

from __future__ import annotations

import inspect
import struct
import threading
import time

import pytest
from conftest import create_topic
from request_bodies import fetch_body, produce_body
from twisted.internet import defer, protocol, threads

from broker.protocol.records import build_batch, decode_batches
from broker.protocol.registry import ApiKey
from broker.replica.client import BrokerClient, NetworkExceptionError, RequestTimedOutError

pytestmark = pytest.mark.integration  # sockets (and, with cluster1, processes)

_started = threading.Lock()


def reactor():
    """The global reactor, running in a daemon thread."""
    from twisted.internet import reactor as global_reactor

    with _started:
        if not global_reactor.running:
            threading.Thread(
                target=global_reactor.run, kwargs={"installSignalHandlers": False}, daemon=True
            ).start()
            deadline = time.monotonic() + 10
            while not global_reactor.running and time.monotonic() < deadline:
                time.sleep(0.01)
    return global_reactor


def in_reactor(fn, *args, timeout: float = 30.0):
    """Call ``fn(*args)`` on the reactor thread (a coroutine function is fine) and return what
    its Deferred fires with; raise what it fails with, or a timeout after ``timeout``."""
    r = reactor()

    def call():
        result = fn(*args)
        d = defer.ensureDeferred(result) if inspect.iscoroutine(result) else defer.succeed(result)
        if isinstance(result, defer.Deferred):
            d = result
        return d.addTimeout(timeout, r)

    return threads.blockingCallFromThread(r, call)


def listen(make_protocol) -> tuple[object, int]:
    """A server on a free loopback port speaking ``make_protocol()``; (port object, number)."""
    r = reactor()
    factory = protocol.Factory.forProtocol(make_protocol)
    port = in_reactor(lambda: r.listenTCP(0, factory, interface="127.0.0.1"))
    return port, port.getHost().port


class Silent(protocol.Protocol):
    """Accepts requests and never answers."""


class HalfAnswer(protocol.Protocol):
    """Answers the first request with the start of a response, then closes."""

    def dataReceived(self, data):
        correlation_id = struct.unpack_from(">i", data, 8)[0]
        self.transport.write(struct.pack(">ii", 100, correlation_id) + b"\0" * 10)
        self.transport.loseConnection()


def client_for(port: int, **kwargs) -> BrokerClient:
    return BrokerClient(reactor(), "127.0.0.1", port, client_id="broker-2", **kwargs)


# --- against a real broker -------------------------------------------------------------------


def test_metadata_and_api_versions_from_a_real_broker_in_flight_together(cluster1):
    port = cluster1.brokers[0].port
    client = client_for(port)

    async def ask():
        # sent back to back on one connection: both in flight, answered in order
        versions = client.request(ApiKey.API_VERSIONS, {})
        meta = client.request(ApiKey.METADATA, {"topics": None})
        return await versions, await meta

    versions, meta = in_reactor(ask)
    assert versions["error_code"] == 0
    assert {k["api_key"] for k in versions["api_keys"]} >= {ApiKey.FETCH, ApiKey.METADATA}
    assert [b["port"] for b in meta["brokers"]] == [port]
    in_reactor(client.close)
    assert not client.connected


def test_a_fetch_of_produced_data_decodes_into_the_batches_produced(cluster1):
    port = cluster1.brokers[0].port
    create_topic(port, "replica-client-fetch", 1)
    client = client_for(port)
    batches = [build_batch([(None, f"event-{i}-{j}".encode()) for j in range(5)]) for i in range(3)]

    async def produce_then_fetch():
        for batch in batches:
            body = produce_body("replica-client-fetch", 0, batch, timeout_ms=10_000)
            answer = await client.request(ApiKey.PRODUCE, body, version=3)
            assert answer["responses"][0]["partition_responses"][0]["error_code"] == 0
        fetch = fetch_body([("replica-client-fetch", 0, 0)], max_wait_ms=100, min_bytes=1)
        return await client.request(ApiKey.FETCH, fetch)

    body = in_reactor(produce_then_fetch)
    answer = body["responses"][0]["partitions"][0]
    assert answer["error_code"] == 0 and answer["high_watermark"] == 15
    fetched = list(decode_batches(answer["records"]))
    assert [b.header.base_offset for b in fetched] == [0, 5, 10]
    values = [r.value for b in fetched for r in b.records]
    assert values == [f"event-{i}-{j}".encode() for i in range(3) for j in range(5)]
    in_reactor(client.close)


# --- faults ----------------------------------------------------------------------------------


def test_a_request_not_answered_in_time_fails_and_drops_the_connection():
    server, port = listen(Silent)
    client = client_for(port, request_timeout_ms=300, backoff_ms=50)

    async def two_requests():
        first = client.request(ApiKey.METADATA, {"topics": None})
        second = client.request(ApiKey.API_VERSIONS, {})
        results = []
        for d in (first, second):
            try:
                await d
            except Exception as exc:
                results.append(exc)
        return results, client.connected

    (first, second), connected = in_reactor(two_requests, timeout=10)
    assert isinstance(first, RequestTimedOutError) and first.code == 7
    # the second was in flight on the dropped connection (or timed out itself)
    assert isinstance(second, (NetworkExceptionError, RequestTimedOutError))
    assert not connected
    in_reactor(client.close)
    in_reactor(server.stopListening)


def test_a_connection_closed_inside_a_response_fails_the_request_and_the_next_reconnects():
    server, port = listen(HalfAnswer)
    client = client_for(port, request_timeout_ms=5_000, backoff_ms=200)

    async def twice():
        errors, started = [], reactor().seconds()
        for _ in range(2):
            try:
                await client.request(ApiKey.METADATA, {"topics": None})
            except NetworkExceptionError as exc:
                errors.append((exc, reactor().seconds() - started))
        return errors

    errors = in_reactor(twice, timeout=10)
    assert len(errors) == 2  # the second request made a new connection, cut again
    assert "lost" in str(errors[0][0])
    assert errors[1][1] >= 0.2  # ... after replica.fetch.backoff.ms
    in_reactor(client.close)
    in_reactor(server.stopListening)


def test_nothing_listening_fails_with_a_network_error_and_close_fails_what_waits():
    server, port = listen(Silent)
    in_reactor(server.stopListening)  # the port is free now: connections are refused
    client = client_for(port, request_timeout_ms=2_000, backoff_ms=10_000)

    async def refused():
        try:
            await client.request(ApiKey.METADATA, {"topics": None})
        except NetworkExceptionError as exc:
            first = exc
        waiting = client.request(ApiKey.METADATA, {"topics": None})  # in backoff: waits
        await client.close()
        try:
            await waiting
        except NetworkExceptionError as exc:
            return first, exc

    first, closed = in_reactor(refused, timeout=10)
    assert "cannot connect" in str(first)
    assert "closed" in str(closed)
