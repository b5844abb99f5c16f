"""Producer-side partition choice, compatible with the Java Kafka client: a key lands where
the Java default partitioner (and librdkafka's ``partitioner=murmur2_random``, which is not
librdkafka's default) puts it; records without a key go round-robin over live partitions.
"""

from __future__ import annotations

import itertools
import random
import struct
import threading

__all__ = ["Partitioner", "murmur2", "partition_for_key", "to_positive"]

_MASK = 0xFFFFFFFF
_SEED = 0x9747B28C
_M = 0x5BD1E995
_BLOCKS = struct.Struct("<I").iter_unpack


def murmur2(data: bytes) -> int:
    """Return the 32-bit MurmurHash2 of ``data`` exactly as Kafka's Java ``Utils.murmur2`` does.

    The hash uses seed ``0x9747b28c``, reads the input as little-endian 4-byte blocks and
    mixes the 1-3 trailing bytes in last; the result is the signed 32-bit int the Java code
    returns (so it may be negative).  ``data`` may be any bytes-like object.  librdkafka's
    ``murmur2``/``murmur2_random`` partitioners use the same function.
    """
    if not isinstance(data, bytes):
        data = memoryview(data).cast("B")  # bytearray, memoryview, ...: count bytes
    length = len(data)
    tail = length & ~3
    h = (_SEED ^ length) & _MASK
    if tail:
        for (k,) in _BLOCKS(data if tail == length else data[:tail]):
            k = (k * _M) & _MASK
            k ^= k >> 24
            h = ((h * _M) ^ (k * _M)) & _MASK
    if length != tail:
        # The Java switch XORs the trailing bytes in at shifts 0/8/16: a little-endian read.
        h = ((h ^ int.from_bytes(data[tail:], "little")) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def to_positive(n: int) -> int:
    """Return ``n`` with its sign bit cleared, like Java's ``Utils.toPositive``.

    This is ``n & 0x7fffffff``, not ``abs(n)``: it maps every signed 32-bit int, including
    ``-2**31``, onto ``0 .. 2**31 - 1``, which is what Kafka clients do before taking the
    hash modulo the partition count.
    """
    return n & 0x7FFFFFFF


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """Return the partition (``0 .. num_partitions - 1``) Kafka clients choose for ``key``.

    This is ``to_positive(murmur2(key)) % num_partitions``, the rule of the Java client's
    default partitioner and of librdkafka's ``murmur2_random`` partitioner for non-null
    keys.  An empty key is still a key and is hashed.  Raises ``ValueError`` if
    ``num_partitions`` is not positive.
    """
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be positive, got {num_partitions}")
    return to_positive(murmur2(key)) % num_partitions


class Partitioner:
    """Chooses the partition of each record a producer sends; safe to share between threads.

    Keyed records are hashed over all of the topic's partitions, whether or not they have a
    leader right now, so a key always maps to the same partition (as in the Java client and
    librdkafka's ``murmur2_random``).  Records with a ``None`` key are spread round-robin
    over the partitions that currently have a leader, using a per-topic counter that starts
    at a random position.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, itertools.count] = {}

    def partition(
        self,
        topic: str,
        key: bytes | None,
        all_partitions: list[int],
        available: list[int],
    ) -> int:
        """Return the partition id for a record with ``key`` sent to ``topic``.

        ``all_partitions`` holds the topic's partition ids and ``available`` those that
        currently have a leader.  A keyed record gets
        ``partition_for_key(key, len(all_partitions))``, looked up in the sorted ids (for
        the usual ids ``0 .. n-1`` that is the partition number itself).  A record without
        a key gets the next of the sorted ``available`` ids in round-robin order, or of
        ``all_partitions`` if none is available.  Raises ``ValueError`` if the topic has no
        partitions.
        """
        if not all_partitions:
            raise ValueError(f"topic {topic!r} has no partitions")
        if key is not None:
            ids = sorted(all_partitions)
            return ids[partition_for_key(key, len(ids))]
        ids = sorted(available or all_partitions)
        with self._lock:
            counter = self._counters.get(topic)
            if counter is None:
                counter = itertools.count(random.randrange(0x80000000))
                self._counters[topic] = counter
            n = next(counter)
        return ids[n % len(ids)]
