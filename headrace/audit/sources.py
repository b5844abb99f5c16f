"""Where the audit's counts come from: the audit records in ``_audit``, the brokers' messages
counted from batch and record headers (timestamps only, never values), and the warehouse's
Parquet rows by ``_timestamp``."""

from __future__ import annotations

import logging
import time
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from broker.protocol.columns import record_fields, record_heads, varints
from broker.protocol.errors import CorruptMessageError, KafkaError
from broker.protocol.records import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    LOG_APPEND_TIME,
    BatchHeader,
    decode_batch,
    records_section,
    split_batches,
)
from consumers.audit import AUDIT_TOPIC, AuditRecord, AuditRecordError, decode_record
from consumers.cluster import ClusterClient
from consumers.consumer import Block, Consumer
from loaders.storage import Storage, StorageError

from .compare import AuditError

log = logging.getLogger(__name__)

_UNKNOWN_TOPIC = 3
IDLE_TIMEOUT_S = 30.0  # a partition that yields nothing for this long fails the audit


def batch_timestamps(buf, pos: int, header: BatchHeader) -> np.ndarray:
    """The timestamps of the batch's records, from its header and each record's timestamp
    delta (the record section decompressed, record lengths walked with numpy, or one record
    at a time when records carry headers; keys and values are skipped, never decoded).
    The batch's KafkaError if it fails its CRC or does not decompress or parse."""
    count = header.record_count
    _, section = records_section(buf, pos, True)
    if header.timestamp_type == LOG_APPEND_TIME:
        return np.full(count, header.max_timestamp, np.int64)
    fields = record_fields(section, count)  # every record at once, as the loaders read them
    if fields is not None:
        return header.base_timestamp + fields.timestamp_delta
    heads, after = record_heads(section, count)
    if len(heads) < count or after != len(section):
        raise CorruptMessageError(f"batch at offset {header.base_offset}: records do not parse")
    a = np.frombuffer(section, np.uint8)
    _, past_length, _ = varints(a, np.array(heads, np.int64))
    deltas, _, sizes = varints(a, past_length + 1)  # after each record's attributes byte
    if sizes.max(initial=0) > 10:
        raise CorruptMessageError(f"batch at offset {header.base_offset}: a bad timestamp delta")
    return header.base_timestamp + deltas


class WindowCounts(Block):
    """What the brokers hold of one partition in a fetched run of batches: messages per
    (window start, producer id), in place of the records themselves."""

    __slots__ = ("counts", "undecodable")

    def __init__(self, topic: str, partition: int, counts: Counter, n: int, undecodable: int):
        super().__init__(topic, partition, range(n), [], [], [])
        self.counts, self.undecodable = counts, undecodable


class _HeaderCounter:
    """``Consumer(columnar=...)``'s decoder: fetched bytes to WindowCounts up to each
    partition's end offset."""

    def __init__(self, ends: dict[int, int], window_ms: int, first_window: int):
        self.ends, self.window_ms, self.first = ends, window_ms, first_window

    def __call__(self, topic: str, partition: int, data, from_offset: int):
        counts: Counter = Counter()
        n = undecodable = 0
        end = self.ends[partition]
        next_offset = from_offset
        for pos, header in split_batches(data):
            if header.next_offset <= from_offset:
                continue
            next_offset = max(next_offset, header.next_offset)
            if header.is_control or header.base_offset >= end:
                continue
            try:
                stamps = batch_timestamps(data, pos, header)
            except KafkaError as exc:  # counted at its max timestamp, and said
                log.warning("%s-%d: %s", topic, partition, exc)
                undecodable += header.record_count
                stamps = np.full(header.record_count, header.max_timestamp, np.int64)
            if header.record_count == header.last_offset_delta + 1:
                offsets = header.base_offset + np.arange(len(stamps))
            else:  # a batch the log cleaner thinned: offsets with gaps
                offsets = np.array([r.offset for r in decode_batch(data, pos).records], np.int64)
            stamps = stamps[(offsets >= from_offset) & (offsets < end)]
            windows = stamps - stamps % self.window_ms
            for w, c in zip(*np.unique(windows[windows >= self.first], return_counts=True)):
                counts[(int(w), header.producer_id)] += int(c)
            n += len(stamps)
        return WindowCounts(topic, partition, counts, n, undecodable), next_offset


def _read_to_end(cluster: ClusterClient, topic: str, consumer: Consumer, ends: dict) -> list:
    """Everything ``consumer`` returns from each partition's log start to ``ends``."""
    starts = {p: cluster.list_offset(topic, p, EARLIEST_TIMESTAMP) for p in ends}
    wanted = {p for p in ends if starts[p] < ends[p]}
    consumer.assign([(topic, p, starts[p]) for p in sorted(wanted)])
    out: list = []
    last_progress = time.monotonic()
    while wanted:
        got = consumer.poll(0.5)
        if got:
            out += got
            last_progress = time.monotonic()
        done = {p for p in wanted if consumer.position(topic, p) >= ends[p]}
        if done:
            consumer.pause(*((topic, p) for p in done))
            wanted -= done
        elif time.monotonic() - last_progress > IDLE_TIMEOUT_S:
            raise AuditError(
                f"{topic} partitions {sorted(wanted)} gave nothing for {IDLE_TIMEOUT_S:.0f} s"
            )
    return out


def _end_offsets(cluster: ClusterClient, topic: str) -> dict[int, int] | None:
    """Each partition's high watermark; None if the topic does not exist."""
    cluster.refresh([topic], allow_auto_create=False)
    if cluster.topic_errors.get(topic) == _UNKNOWN_TOPIC or topic not in cluster.topics:
        return None
    return {p: cluster.list_offset(topic, p, LATEST_TIMESTAMP) for p in cluster.partitions(topic)}


def broker_counts(
    cluster: ClusterClient, topic: str, window_ms: int, since_ms: int
) -> tuple[Counter, int]:
    """Messages of ``topic`` the brokers hold up to their high watermarks, per (window start,
    producer id) from the window holding ``since_ms`` on, read from the leaders by Fetch; and
    how many were in batches that could not be decoded (counted at their max timestamp)."""
    ends = _end_offsets(cluster, topic)
    if ends is None:
        raise AuditError(f"topic {topic} does not exist")
    first = since_ms - since_ms % window_ms
    consumer = Consumer(
        cluster=cluster,
        columnar=_HeaderCounter(ends, window_ms, first),
        auto_offset_reset="earliest",  # retention deleting what is being read: go on from there
    )
    try:
        blocks = _read_to_end(cluster, topic, consumer, ends)
    finally:
        consumer.close()
    counts: Counter = Counter()
    undecodable = 0
    for block in blocks:
        counts.update(block.counts)
        undecodable += block.undecodable
    return counts, undecodable


def audit_records(cluster: ClusterClient) -> tuple[list[AuditRecord], int]:
    """Every audit record in ``_audit`` (none if it does not exist), and how many of its
    messages are not audit records (skipped)."""
    ends = _end_offsets(cluster, AUDIT_TOPIC)
    if ends is None:
        return [], 0
    consumer = Consumer(cluster=cluster, auto_offset_reset="earliest")
    try:
        messages = _read_to_end(cluster, AUDIT_TOPIC, consumer, ends)
    finally:
        consumer.close()
    records, malformed = [], 0
    for message in messages:
        if message.offset >= ends[message.partition]:
            continue
        try:
            records.append(decode_record(message.value))
        except AuditRecordError as exc:
            log.warning("%s-%d offset %d: %s", AUDIT_TOPIC, message.partition, message.offset, exc)
            malformed += 1
    return records, malformed


def warehouse_counts(
    url: str, topic: str, window_ms: int, since_ms: int, options: dict | None = None
) -> Counter:
    """Rows of ``topic`` in the warehouse at ``url`` (every Parquet file under
    ``<url>/<topic>/``, dead letters and quarantine included) per window start of their
    ``_timestamp``, from the window holding ``since_ms`` on."""
    try:
        store = Storage(url, options)
        base = store.path(topic)
        files = sorted(f for f in store.fs.find(base) if f.endswith(".parquet"))
    except FileNotFoundError:
        return Counter()
    except (StorageError, OSError) as exc:
        raise AuditError(f"cannot read the warehouse {url}: {exc}") from exc
    first = since_ms - since_ms % window_ms
    counts: Counter = Counter()
    for path in files:
        try:
            with store.fs.open(path, "rb") as f, pq.ParquetFile(f) as parquet:
                # ParquetFile, not read_table: read_table's dataset scanner lets go of the
                # Python file on an Arrow thread after it returns, which at interpreter exit
                # took the GIL and aborted the process now and then ("terminate called
                # without an active exception").
                table = parquet.read(columns=["_timestamp"], use_threads=False)
            column = table.column("_timestamp")
        except (OSError, KeyError, pa.ArrowException) as exc:
            raise AuditError(f"cannot read {path}: {exc}") from exc
        if pa.types.is_timestamp(column.type):
            column = pc.cast(column, pa.timestamp("ms", tz="UTC"))
        stamps = pc.cast(column.drop_null(), pa.int64()).to_numpy()
        windows = stamps - stamps % window_ms
        for w, c in zip(*np.unique(windows[windows >= first], return_counts=True)):
            counts[int(w)] += int(c)
    return counts
