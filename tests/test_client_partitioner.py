"""The producer partitioner: Java-compatible murmur2 and the choice of partition."""

from __future__ import annotations

import ctypes
import random
import threading
from collections import Counter

import pytest

from consumers.partitioner import Partitioner, murmur2, partition_for_key, to_positive

# Kafka's own expectations (clients/.../common/utils/UtilsTest.java, testMurmur2): the signed
# ints the Java Utils.murmur2 returns.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("data,expected", JAVA_MURMUR2.items(), ids=lambda v: repr(v)[:20])
def test_murmur2_matches_java(data, expected):
    assert murmur2(data) == expected


def test_murmur2_accepts_bytes_like():
    for data, expected in JAVA_MURMUR2.items():
        assert murmur2(bytearray(data)) == expected
        assert murmur2(memoryview(data)) == expected
        # A slice that does not start on a 4-byte boundary of the underlying buffer.
        assert murmur2(memoryview(b"x" + data)[1:]) == expected


def test_murmur2_is_signed_int32():
    rng = random.Random(7)
    values = [murmur2(rng.randbytes(rng.randrange(64))) for _ in range(2000)]
    assert all(-(2**31) <= v < 2**31 for v in values)
    assert any(v < 0 for v in values) and any(v >= 0 for v in values)


def test_to_positive_is_java_to_positive():
    assert to_positive(0) == 0
    assert to_positive(5) == 5
    assert to_positive(-1) == 0x7FFFFFFF
    assert to_positive(-(2**31)) == 0  # abs() would give 2**31
    assert to_positive(2**31 - 1) == 2**31 - 1
    assert to_positive(-973932308) == 1173551340


def test_partition_for_key():
    assert partition_for_key(b"foobar", 1) == 0
    assert partition_for_key(b"foobar", 12) == to_positive(-790332482) % 12
    assert partition_for_key(b"21", 7) == 1173551340 % 7
    with pytest.raises(ValueError):
        partition_for_key(b"foobar", 0)


def _librdkafka_murmur2_partitioner():
    """librdkafka's exported ``rd_kafka_msg_partitioner_murmur2``, found through
    confluent-kafka's extension module (which links librdkafka); no broker involved.
    It computes ``(rd_murmur2(key) & 0x7fffffff) % partition_cnt`` and ignores the topic
    handle and opaques, so NULL is passed for those."""
    from confluent_kafka import cimpl

    func = ctypes.CDLL(cimpl.__file__).rd_kafka_msg_partitioner_murmur2
    func.restype = ctypes.c_int32
    func.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_int32,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    return lambda key, count: func(None, key, len(key), count, None, None)


def test_partition_for_key_agrees_with_librdkafka():
    rdkafka = _librdkafka_murmur2_partitioner()
    rng = random.Random(11)
    keys = list(JAVA_MURMUR2) + [b""] + [rng.randbytes(rng.randrange(1, 80)) for _ in range(3000)]
    for key in keys:
        for count in (1, 3, 12, 100, 2**31 - 1):
            assert partition_for_key(key, count) == rdkafka(key, count), (key, count)


def test_unkeyed_cycles_over_available_partitions_only():
    partitioner = Partitioner()
    all_partitions = list(range(6))
    available = [1, 4, 5]
    chosen = [partitioner.partition("t", None, all_partitions, available) for _ in range(30)]
    assert set(chosen) == set(available)
    assert Counter(chosen) == {1: 10, 4: 10, 5: 10}
    # Round-robin: consecutive picks walk the sorted available list.
    start = available.index(chosen[0])
    assert chosen == [available[(start + i) % 3] for i in range(30)]


def test_unkeyed_falls_back_to_all_partitions_when_none_available():
    partitioner = Partitioner()
    chosen = [partitioner.partition("t", None, [0, 1, 2], []) for _ in range(9)]
    assert Counter(chosen) == {0: 3, 1: 3, 2: 3}


def test_unkeyed_counters_are_per_topic():
    partitioner = Partitioner()
    for _ in range(5):
        partitioner.partition("a", None, [0, 1, 2, 3], [0, 1, 2, 3])
    chosen = [partitioner.partition("b", None, [0, 1], [0, 1]) for _ in range(4)]
    assert Counter(chosen) == {0: 2, 1: 2}


def test_unkeyed_start_is_random():
    starts = {
        Partitioner().partition("t", None, list(range(16)), list(range(16))) for _ in range(50)
    }
    assert len(starts) > 1


def test_keyed_ignores_availability():
    partitioner = Partitioner()
    all_partitions = list(range(12))
    for key in JAVA_MURMUR2:
        expected = partition_for_key(key, 12)
        for available in (
            all_partitions,
            [expected],
            [p for p in all_partitions if p != expected],
            [],
        ):
            assert partitioner.partition("t", key, all_partitions, available) == expected
    # Empty keys are keys: hashed, not spread round-robin.
    assert {partitioner.partition("t", b"", all_partitions, [0]) for _ in range(5)} == {
        partition_for_key(b"", 12)
    }


def test_keyed_uses_sorted_partition_ids():
    partitioner = Partitioner()
    expected = partition_for_key(b"foobar", 5)
    assert partitioner.partition("t", b"foobar", [4, 2, 0, 3, 1], [0]) == expected


def test_no_partitions_is_an_error():
    with pytest.raises(ValueError):
        Partitioner().partition("t", None, [], [])
    with pytest.raises(ValueError):
        Partitioner().partition("t", b"k", [], [])


def test_thread_safety_smoke():
    partitioner = Partitioner()
    all_partitions = list(range(8))
    available = [0, 2, 3, 7]
    threads_n, per_thread = 8, 4000
    keyed: list[int] = []
    unkeyed: dict[str, Counter] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads_n)

    def worker(n):
        mine_keyed, mine_unkeyed = [], Counter()
        try:
            barrier.wait()
            for i in range(per_thread):
                topic = f"topic-{i % 3}"
                if i % 2:
                    mine_unkeyed[
                        topic, partitioner.partition(topic, None, all_partitions, available)
                    ] += 1
                else:
                    key = f"key-{n}-{i}".encode()
                    mine_keyed.append(partitioner.partition(topic, key, all_partitions, available))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        with lock:
            keyed.extend(mine_keyed)
            for (topic, p), count in mine_unkeyed.items():
                unkeyed.setdefault(topic, Counter())[p] += count

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(keyed) == threads_n * per_thread // 2
    assert set(keyed) <= set(all_partitions)
    assert sum(sum(c.values()) for c in unkeyed.values()) == threads_n * per_thread // 2
    for counts in unkeyed.values():
        # Each pick took a distinct counter value, so a topic's picks stay balanced.
        assert set(counts) <= set(available)
        assert max(counts.values()) - min(counts.values()) <= 1, counts
        assert len(counts) == len(available)
