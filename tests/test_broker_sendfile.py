"""Fetched file ranges leave a plain-TCP listener by sendfile, page cache to socket, and still
in request order when the client reads slowly (the socket fills, the send waits for Twisted to
find it writable)."""

from __future__ import annotations

import socket
import struct
import time

from conftest import create_topic
from test_broker_fetch_memory import INT32_MAX, fetch_request, produce, read_fetch_streaming

from broker.protocol import frames
from broker.protocol.records import build_batch
from broker.protocol.registry import API_BY_KEY, ApiKey
from consumers.client import BrokerConnection

BATCHES = 40
VALUE = 100_000


def written_bytes(pid: int) -> int:
    """Bytes the process passed to write-like system calls: sendfile counts, socket sends
    do not (/proc/<pid>/io wchar)."""
    with open(f"/proc/{pid}/io") as io:
        for line in io:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise AssertionError("no wchar")


def test_fetches_behind_a_slow_reader_go_by_sendfile_in_request_order(make_cluster):
    cluster = make_cluster(1)
    broker = cluster.brokers[0]
    port = broker.port
    create_topic(port, "big", 1)
    with BrokerConnection("127.0.0.1", port) as conn:
        for i in range(BATCHES):
            produce(conn, "big", 0, build_batch([(None, bytes([i]) * VALUE)]))
    pid = broker.process.pid
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        before = written_bytes(pid)
        # Two whole-log fetches with a small answer between them, all sent at once; nothing
        # is read for a while, so the broker's socket fills and its sends must wait.
        sock.sendall(
            fetch_request("big", 0, INT32_MAX, INT32_MAX, correlation_id=1)
            + frames.encode_request(ApiKey.API_VERSIONS, 0, 2, "t", {})
            + fetch_request("big", 0, INT32_MAX, INT32_MAX, correlation_id=3)
        )
        time.sleep(0.5)
        first = read_fetch_streaming(sock)
        size, correlation_id = struct.unpack(">ii", sock.recv(8, socket.MSG_WAITALL))
        assert correlation_id == 2
        rest = sock.recv(size - 4, socket.MSG_WAITALL)
        assert API_BY_KEY[ApiKey.API_VERSIONS].response.decode(rest, 0)["error_code"] == 0
        second = read_fetch_streaming(sock)
        sent_by_sendfile = written_bytes(pid) - before
    assert first == second and first[1:] == (0, BATCHES)
    assert sent_by_sendfile >= 2 * first[0]
