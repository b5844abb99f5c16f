"""A TCP proxy between Kafka clients and one broker that loses Produce responses on purpose.

It reads the Kafka framing both ways: requests (size, api key, version, correlation id) to
learn which correlation ids are Produce requests, and responses (size, correlation id) to
recognise their answers.  Every ``drop_every``-th Produce response, up to ``max_drops`` in
all, is not relayed: the proxy closes both connections instead, after the broker has
appended the batch, so the client must retry a request that in fact succeeded.  With
``corrupt_every``, every so many Produce requests (up to ``max_corruptions``) get their last
byte flipped on the way (the end of the last record batch: a CRC mismatch, answered with the
retriable CORRUPT_MESSAGE), so batches pipelined behind it meet a gap in the sequences.

    >>> with ProduceResponseDropper(broker_port, drop_every=5, max_drops=100) as proxy:
    ...     produce_through(proxy.port)            # brokers advertise proxy.port
    >>> proxy.drops
    100
"""

from __future__ import annotations

import socket
import struct
import threading

from broker.protocol.registry import ApiKey
from headrace.devcluster import free_port

_SIZE = struct.Struct(">i")
_REQUEST_HEADER = struct.Struct(">hhi")  # api key, api version, correlation id
_CORRELATION = struct.Struct(">i")


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        try:
            chunk = sock.recv(min(left, 1 << 20))
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(sock: socket.socket) -> bytes | None:
    """One length-prefixed Kafka frame (prefix included), or None when the socket closed."""
    prefix = _read_exactly(sock, 4)
    if prefix is None:
        return None
    body = _read_exactly(sock, _SIZE.unpack(prefix)[0])
    return None if body is None else prefix + body


class _Link:
    """One client connection and its upstream connection to the broker."""

    def __init__(self, proxy: ProduceResponseDropper, client: socket.socket):
        self.proxy = proxy
        self.client = client
        self.upstream = socket.create_connection(("127.0.0.1", proxy.upstream_port))
        for s in (client, self.upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.produce_ids: set[int] = set()
        self.lock = threading.Lock()
        self.closed = False

    def start(self) -> None:
        threading.Thread(target=self._requests, daemon=True).start()
        threading.Thread(target=self._responses, daemon=True).start()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _requests(self) -> None:
        while (frame := _read_frame(self.client)) is not None:
            api_key, _, correlation_id = _REQUEST_HEADER.unpack_from(frame, 4)
            if api_key == ApiKey.PRODUCE:
                with self.lock:
                    self.produce_ids.add(correlation_id)
                if self.proxy._should_corrupt():
                    frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
            try:
                self.upstream.sendall(frame)
            except OSError:
                break
        self.close()

    def _responses(self) -> None:
        while (frame := _read_frame(self.upstream)) is not None:
            correlation_id = _CORRELATION.unpack_from(frame, 4)[0]
            with self.lock:
                is_produce = correlation_id in self.produce_ids
                self.produce_ids.discard(correlation_id)
            if is_produce and self.proxy._should_drop():
                break  # the broker has the batch; the client never hears of it
            try:
                self.client.sendall(frame)
            except OSError:
                break
        self.close()


class ProduceResponseDropper:
    """Listens on ``port`` (default: a free one) and forwards to ``upstream_port``."""

    def __init__(
        self,
        upstream_port: int,
        *,
        port: int | None = None,
        drop_every: int = 5,
        max_drops: int = 200,
        corrupt_every: int = 0,
        max_corruptions: int = 0,
    ):
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.drop_every = drop_every
        self.max_drops = max_drops
        self.corrupt_every = corrupt_every
        self.max_corruptions = max_corruptions
        self.produce_requests = 0
        self.produce_responses = 0
        self.drops = 0
        self.corruptions = 0
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(64)
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    def _should_drop(self) -> bool:
        with self._lock:
            self.produce_responses += 1
            if self.drops < self.max_drops and self.produce_responses % self.drop_every == 0:
                self.drops += 1
                return True
            return False

    def _should_corrupt(self) -> bool:
        with self._lock:
            self.produce_requests += 1
            if (
                self.corrupt_every
                and self.corruptions < self.max_corruptions
                and self.produce_requests % self.corrupt_every == 0
            ):
                self.corruptions += 1
                return True
            return False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                link = _Link(self, client)
            except OSError:  # the broker is down: the client sees a closed connection
                client.close()
                continue
            with self._lock:
                self._links.append(link)
            link.start()

    def start(self) -> ProduceResponseDropper:
        self._accepting.start()
        return self

    def stop(self) -> None:
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self._server.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
