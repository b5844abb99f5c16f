"""Streamed fetch responses hold duplicated segment descriptors until they are sent: clients
that disconnect in the middle of a response, or never read it, leave no descriptor behind."""

from __future__ import annotations

import os
import socket

from conftest import create_topic, wait_for
from test_broker_fetch_memory import INT32_MAX, fetch_request, produce, read_fetch_streaming

from broker.protocol.records import build_batch
from consumers.client import BrokerConnection


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_clients_disconnecting_mid_stream_leave_no_descriptors_open(make_cluster):
    cluster = make_cluster(1, fetch_max_bytes=INT32_MAX)
    broker = cluster.brokers[0]
    create_topic(broker.port, "streamed", 1)
    with BrokerConnection("127.0.0.1", broker.port) as conn:
        for i in range(40):
            produce(conn, "streamed", 0, build_batch([(None, bytes([i]) * 200_000)]))  # 8 MB
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        sock.sendall(fetch_request("streamed", 0, INT32_MAX, INT32_MAX))
        read_fetch_streaming(sock)
    baseline = open_fds(broker.process.pid)
    for i in range(40):
        with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            for correlation_id in range(3):  # one response streaming, two queued behind it
                sock.sendall(fetch_request("streamed", 0, INT32_MAX, INT32_MAX, correlation_id))
            if i % 2:
                sock.recv(100_000)
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
    wait_for(lambda: open_fds(broker.process.pid) <= baseline + 2, 20)
    # ... and the broker still serves everyone else.
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        sock.sendall(fetch_request("streamed", 0, INT32_MAX, INT32_MAX))
        assert read_fetch_streaming(sock)[1:] == (0, 40)


def test_a_response_streams_whole_while_retention_deletes_its_segment(make_cluster):
    cluster = make_cluster(
        1, log_retention_check_interval_ms=100, file_delete_delay_ms=0, fetch_max_bytes=INT32_MAX
    )
    broker = cluster.brokers[0]
    mib = 1 << 20
    # build_batch stamps its records with time 0, which retention.ms (7 days) would expire at
    # the next check, before the fetch; only retention.bytes may delete the segment here.
    sizes = {"segment.bytes": str(6 * mib), "retention.bytes": str(6 * mib), "retention.ms": "-1"}
    create_topic(broker.port, "retained", 1, sizes)
    batch = build_batch([(None, b"r" * 1_000_000)])
    first_segment = broker.workdir / "broker-1-logs" / "retained-0" / ("0" * 20 + ".log")
    with BrokerConnection("127.0.0.1", broker.port) as conn:
        for _ in range(5):
            produce(conn, "retained", 0, batch)
        with socket.create_connection(("127.0.0.1", broker.port), timeout=20) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(fetch_request("retained", 0, INT32_MAX, INT32_MAX))
            sock.recv(4, socket.MSG_PEEK)  # the response has started: its file ranges are taken
            for _ in range(20):  # later segments push the first one past retention.bytes
                produce(conn, "retained", 0, batch)
            wait_for(lambda: not first_segment.exists(), 20)
            size, first, following = read_fetch_streaming(sock)  # CRCs checked batch by batch
    assert (size, first, following) == (5 * len(batch), 0, 5)
