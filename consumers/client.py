"""A small blocking Kafka-protocol client: one connection, one request at a time.

Used by the command-line tools (``headrace topics``) and tests; built on the same codec as the
broker (``broker.protocol.frames``).

    >>> with BrokerConnection("127.0.0.1", 9092) as conn:
    ...     body = conn.request(ApiKey.METADATA, {"topics": None})    # all topics
"""

from __future__ import annotations

import itertools
import socket
import struct

from broker.protocol import frames
from broker.protocol.registry import ApiKey, client_version

from .security import PLAINTEXT, ClientSecurity

_SIZE = struct.Struct(">i")


class ConnectionClosed(ConnectionError):
    """The broker closed the connection before answering."""


class BrokerConnection:
    """A blocking TCP connection to one broker, secured as ``security`` says (TLS and a SASL
    login happen here, before the first request)."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 30.0,
        client_id: str = "headrace",
        security: ClientSecurity = PLAINTEXT,
    ):
        self.host, self.port = host, port
        self.client_id = client_id
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = security.secure(sock, host, client_id)
        self._ids = itertools.count(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, api_key: ApiKey, body: dict, version: int | None = None) -> int:
        """Send one request (by default at the version our clients ask for); its
        correlation id."""
        correlation_id = next(self._ids)
        version = client_version(api_key, version)
        self.sock.sendall(
            frames.encode_request(api_key, version, correlation_id, self.client_id, body)
        )
        return correlation_id

    def receive(self, api_key: ApiKey, correlation_id: int, version: int | None = None) -> dict:
        """The response body to the request ``correlation_id`` (sent at ``version``)."""
        size = _SIZE.unpack(self._read_exactly(4))[0]
        got, body = frames.decode_response(
            api_key, client_version(api_key, version), self._read_exactly(size)
        )
        if got != correlation_id:
            raise ConnectionError(f"response {got} arrived for request {correlation_id}")
        return body

    def request(self, api_key: ApiKey, body: dict, version: int | None = None) -> dict:
        """Send one request and wait for its response body."""
        return self.receive(api_key, self.send(api_key, body, version), version)

    def _read_exactly(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = self.sock.recv(min(left, 1 << 20))
            if not chunk:
                raise ConnectionClosed(f"{self.host}:{self.port} closed the connection")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


def parse_bootstrap(servers: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` -> [(host, port), ...]."""
    result = []
    for item in servers.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"bootstrap server {item!r} is not host:port")
        result.append((host, int(port)))
    return result


def connect_any(
    servers: str, timeout: float = 10.0, security: ClientSecurity = PLAINTEXT
) -> BrokerConnection:
    """A connection to the first reachable bootstrap server."""
    last = None
    for host, port in parse_bootstrap(servers):
        try:
            return BrokerConnection(host, port, timeout=timeout, security=security)
        except OSError as exc:
            last = exc
    raise ConnectionError(f"no bootstrap server reachable in {servers}: {last}")


__all__ = ["BrokerConnection", "ConnectionClosed", "connect_any", "parse_bootstrap"]
