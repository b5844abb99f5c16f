"""The ceiling: the least a Twisted Kafka server can do per Produce request.

    python bench/ceiling_server.py --port 9092 [--partitions 4]

Answers ApiVersions and Metadata properly (it advertises itself as the leader of every topic
asked for, with N partitions), so unmodified Kafka clients run against it, and answers every
Produce with a fixed success without decoding or storing the records: it reads the frame
header (correlation id, version) and walks the topic and partition names, skipping the record
bytes.  Prints "ready" on stdout once listening.  What it costs per request is the framework's
own cost, the floor under the broker's (bench/request_bench.py compares the two).

Importable: ``CeilingFactory(partitions, port)`` and ``listen(reactor, port, partitions)``.
"""

from __future__ import annotations

import argparse
import struct
import sys

import repo_root  # noqa: F401  (this tree's code, not an installed one)
from twisted.internet import protocol
from twisted.protocols.basic import Int32StringReceiver

from broker.protocol import frames
from broker.protocol.registry import API_BY_KEY, ApiKey

SERVED = {
    api.key: (api.min_version, api.max_version)
    for api in map(API_BY_KEY.get, (ApiKey.PRODUCE, ApiKey.METADATA, ApiKey.API_VERSIONS))
}
# Produce's walk below reads the non-flexible encoding only: clients stay below KIP-482's v9.
SERVED[ApiKey.PRODUCE] = (SERVED[ApiKey.PRODUCE][0], API_BY_KEY[ApiKey.PRODUCE].flexible_from - 1)
_PRODUCE = ApiKey.PRODUCE  # a global, not an enum attribute, on the ceiling's hot path
NODE_ID = 0

_HEAD = struct.Struct(">hhi")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_RESPONSE_HEAD = struct.Struct(">ii")


def _produce_parts(version: int, topics: list[tuple[str, list[int]]]) -> bytes:
    """The fixed success body of a Produce response naming the request's partitions."""
    body = {
        "responses": [
            {
                "name": name,
                "partition_responses": [
                    {
                        "index": p,
                        "error_code": 0,
                        "base_offset": 0,
                        "log_append_time_ms": -1,
                        "log_start_offset": 0,
                        "record_errors": [],
                        "error_message": None,
                    }
                    for p in partitions
                ],
            }
            for name, partitions in topics
        ],
        "throttle_time_ms": 0,
    }
    return API_BY_KEY[ApiKey.PRODUCE].response.encode(body, version)


class CeilingProtocol(Int32StringReceiver):
    """One connection: frames in, the cheapest correct answers out."""

    def __init__(self, factory: CeilingFactory):
        self.factory = factory
        self.MAX_LENGTH = 100 * 1024 * 1024

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def stringReceived(self, payload: bytes):
        api_key, version, correlation_id = _HEAD.unpack_from(payload, 0)
        if api_key == _PRODUCE:
            self._produce(payload, version, correlation_id)
            return
        served = SERVED.get(api_key)
        if served is None or not served[0] <= version <= served[1]:
            if api_key == ApiKey.API_VERSIONS:
                self.transport.write(frames.api_versions_fallback(correlation_id))
                return
            self.transport.loseConnection()
            return
        request = frames.decode_request(payload)
        api = request.api
        if api_key == ApiKey.API_VERSIONS:
            body = {
                "error_code": 0,
                "throttle_time_ms": 0,
                "api_keys": [
                    {"api_key": k, "min_version": lo, "max_version": hi}
                    for k, (lo, hi) in sorted(SERVED.items())
                ],
            }
        else:
            body = self.factory.metadata(request.body["topics"])
        self.transport.write(frames.encode_response(correlation_id, api, version, body))

    def _produce(self, payload: bytes, version: int, correlation_id: int):
        # Header: client_id; body: [transactional_id], acks, timeout, topics.
        pos = 8
        n = _I16.unpack_from(payload, pos)[0]
        pos += 2 + max(n, 0)
        if version >= 3:
            n = _I16.unpack_from(payload, pos)[0]
            pos += 2 + max(n, 0)
        acks = _I16.unpack_from(payload, pos)[0]
        pos += 6
        start = pos
        topic_count = _I32.unpack_from(payload, pos)[0]
        pos += 4
        for _ in range(topic_count):
            n = _I16.unpack_from(payload, pos)[0]
            pos += 2 + n
            partition_count = _I32.unpack_from(payload, pos)[0]
            pos += 4
            for _ in range(partition_count):
                n = _I32.unpack_from(payload, pos + 4)[0]
                pos += 8 + max(n, 0)
        if acks == 0:
            return
        # The topic/partition names are the cache key; the record bytes are not.
        key = (version, _names(payload, start, topic_count))
        body = self.factory.produce_bodies.get(key)
        if body is None:
            body = self.factory.produce_bodies[key] = _produce_parts(version, key[1])
        self.transport.write(_RESPONSE_HEAD.pack(len(body) + 4, correlation_id) + body)


def _names(payload: bytes, pos: int, topic_count: int) -> tuple:
    """((topic, (partition, ...)), ...) of a produce request's topic array at ``pos``."""
    pos += 4
    topics = []
    for _ in range(topic_count):
        n = _I16.unpack_from(payload, pos)[0]
        name = payload[pos + 2 : pos + 2 + n].decode()
        pos += 2 + n
        count = _I32.unpack_from(payload, pos)[0]
        pos += 4
        partitions = []
        for _ in range(count):
            partitions.append(_I32.unpack_from(payload, pos)[0])
            n = _I32.unpack_from(payload, pos + 4)[0]
            pos += 8 + max(n, 0)
        topics.append((name, tuple(partitions)))
    return tuple(topics)


class CeilingFactory(protocol.ServerFactory):
    """Serves every topic asked for as ``partitions`` partitions led by this server."""

    def __init__(self, partitions: int, port: int, host: str = "127.0.0.1"):
        self.partitions = partitions
        self.port = port
        self.host = host
        self.produce_bodies: dict = {}

    def buildProtocol(self, addr):
        return CeilingProtocol(self)

    def metadata(self, requested) -> dict:
        names = [t["name"] for t in requested or []]
        return {
            "throttle_time_ms": 0,
            "brokers": [{"node_id": NODE_ID, "host": self.host, "port": self.port, "rack": None}],
            "cluster_id": "ceiling",
            "controller_id": NODE_ID,
            "topics": [
                {
                    "error_code": 0,
                    "name": name,
                    "is_internal": False,
                    "partitions": [
                        {
                            "error_code": 0,
                            "partition_index": p,
                            "leader_id": NODE_ID,
                            "leader_epoch": 0,
                            "replica_nodes": [NODE_ID],
                            "isr_nodes": [NODE_ID],
                            "offline_replicas": [],
                        }
                        for p in range(self.partitions)
                    ],
                }
                for name in names
            ],
        }


def listen(reactor, port: int, partitions: int = 1, host: str = "127.0.0.1"):
    """Listen on ``host:port`` (0 picks a free port); returns the listening port object."""
    factory = CeilingFactory(partitions, port, host)
    listening = reactor.listenTCP(port, factory, interface=host)
    factory.port = listening.getHost().port
    return listening


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    from twisted.internet import reactor

    listen(reactor, args.port, args.partitions, args.host)
    print("ready", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
