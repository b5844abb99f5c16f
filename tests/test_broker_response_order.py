"""Responses of a pipelined connection arrive whole and in request order when the client reads
slowly: the socket fills, writes are cut short, and what the kernel did not take must follow
through the transport before anything written later."""

from __future__ import annotations

import socket
import struct
import threading
import time

from conftest import create_topic

from broker.protocol import frames
from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey

_SIZE = struct.Struct(">i")


def _read_exactly(sock, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 16))
        assert chunk, "the broker closed the connection"
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def test_pipelined_responses_to_a_slow_reader_arrive_whole_and_in_order(cluster1):
    port = cluster1.brokers[0].port
    topic = "slow-reader"
    create_topic(
        port, topic, 200
    )  # a large Metadata answer: many MB in all, past any socket buffer
    produce_body = {
        "transactional_id": None,
        "acks": 1,
        "timeout_ms": 5000,
        "topic_data": [
            {
                "name": topic,
                "partition_data": [{"index": 0, "records": build_batch([(b"k", b"v" * 100)])}],
            }
        ],
    }
    requests = []
    for cid in range(3000):
        kind = cid % 3
        if kind == 0:
            requests.append((ApiKey.PRODUCE, 8, produce_body))
        elif kind == 1:
            requests.append(
                (
                    ApiKey.METADATA,
                    8,
                    {"topics": [{"name": topic}], "allow_auto_topic_creation": False},
                )
            )
        else:
            requests.append((ApiKey.API_VERSIONS, 2, {}))

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", port))
    errors = []

    def write():
        try:
            for cid, (key, version, body) in enumerate(requests):
                sock.sendall(frames.encode_request(key, version, cid, "slow-reader", body))
        except OSError as exc:
            errors.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    with sock:
        writer.start()
        time.sleep(1.0)  # let the broker's socket fill before anything is read
        last_offset = None
        total = 0
        for cid, (key, version, _) in enumerate(requests):
            payload = _read_exactly(sock, _SIZE.unpack(_read_exactly(sock, 4))[0])
            total += len(payload) + 4
            got, body = frames.decode_response(key, version, payload)
            assert got == cid
            if key == ApiKey.PRODUCE:
                partition = body["responses"][0]["partition_responses"][0]
                assert partition["error_code"] == 0
                if last_offset is not None:
                    assert partition["base_offset"] == last_offset + 1
                last_offset = partition["base_offset"]
            elif key == ApiKey.METADATA:
                assert len(body["topics"][0]["partitions"]) == 200
            else:
                assert body["error_code"] == 0
        writer.join(30)
    assert not errors
    assert total > 6 << 20  # enough to have filled the socket buffers many times over
