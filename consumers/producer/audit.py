"""A producer's audit (``Producer(audit=True)``): counts the messages the brokers acknowledged
per topic, UTC-aligned window of their timestamps and producer id, and publishes the counts to
``_audit`` (``consumers.audit`` has the record format) every ``audit_interval_ms`` and on
``flush()`` and ``close()``.

Counts are taken from a counter before they are sent and given back if their record is not
delivered, so a clean stop loses no count.  A crash (SIGKILL, power) loses what was counted
since the last publish: ``headrace audit`` then sees more messages of that producer id in the
brokers than its records count and, since no ``final`` record came from it, reports them as
unaudited with a note naming the producer, not as a loss.
"""

from __future__ import annotations

import argparse
import logging
import operator
import os
import socket
import threading
import time
import uuid
from collections import Counter

from broker.protocol.errors import KafkaError, error_for_code
from broker.protocol.registry import ApiKey

from ..audit import (
    AUDIT_TOPIC,
    DEFAULT_WINDOW_MS,
    AuditRecord,
    encode_record,
    parse_duration,
)
from .batch import Batch

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC = 3
DEFAULT_INTERVAL_MS = 10_000
_TIMESTAMP = operator.itemgetter(3)  # of a producer's record (key, value, headers, timestamp)
CLOSE_TIMEOUT_S = 10.0  # the final records are waited for even when close() gives 0


class AuditCounter:
    """Acknowledged messages per (topic, window start, producer id); thread-safe.  Pure."""

    def __init__(self, window_ms: int):
        if window_ms <= 0:
            raise ValueError("audit_window_ms must be positive")
        self.window_ms = window_ms
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, int, int]] = Counter()
        self.seen: dict[tuple[str, int], int] = {}  # (topic, producer id) -> last window

    def add(self, topic: str, producer_id: int, timestamps: list[int]) -> None:
        """Count messages of ``topic`` stored under ``producer_id`` with these timestamps."""
        if not timestamps:
            return
        w = self.window_ms
        lo, hi = min(timestamps), max(timestamps)
        if lo - lo % w == hi - hi % w:  # the usual batch: one window (a third of the cost)
            windows = Counter({lo - lo % w: len(timestamps)})
        else:
            windows = Counter(ts - ts % w for ts in timestamps)
        with self._lock:
            for start, n in windows.items():
                self._counts[(topic, start, producer_id)] += n
            last = max(windows, default=None)
            if last is not None:
                key = (topic, producer_id)
                self.seen[key] = max(self.seen.get(key, last), last)

    def last_windows(self) -> dict[tuple[str, int], int]:
        """(topic, producer id) -> the latest window counted under it, so far."""
        with self._lock:
            return dict(self.seen)

    def take(self) -> Counter:
        """The counts so far, leaving none."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
            return counts

    def give_back(self, counts: Counter) -> None:
        """Counts whose record was not delivered, to be published again."""
        with self._lock:
            self._counts.update(counts)


class AuditPublisher:
    """Publishes a producer's ``AuditCounter`` to ``_audit`` through that producer."""

    def __init__(
        self,
        producer,
        window_ms: int = DEFAULT_WINDOW_MS,
        interval_ms: int = DEFAULT_INTERVAL_MS,
        name: str | None = None,
    ):
        if interval_ms <= 0:
            raise ValueError("audit_interval_ms must be positive")
        self.producer = producer
        self.counter = AuditCounter(window_ms)
        self.interval = interval_ms / 1000.0
        self.host = socket.gethostname()
        self.name = name or f"{producer.client_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._topic_ready = False
        self._publish_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="headrace-audit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def acknowledged(self, batch: Batch) -> None:
        """The sender's hook: ``batch`` was acknowledged (or sent, with acks=0)."""
        if batch.topic == AUDIT_TOPIC:
            return  # audit records are never audited
        if batch.log_append_time >= 0:
            stamps = [batch.log_append_time] * len(batch.records)
        else:
            stamps = list(map(_TIMESTAMP, batch.records))
        self.counter.add(batch.topic, batch.producer_id, stamps)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.publish()
            except Exception as exc:  # the brokers are away: the counts wait for the next turn
                log.warning("audit records not published: %s", exc)

    def publish(self, final: bool = False) -> list:
        """Send the counts taken so far to ``_audit``; the delivery futures.  With ``final``,
        every (topic, producer id) this producer used gets a record marked final."""
        with self._publish_lock:
            counts = self.counter.take()
            seen = self.counter.last_windows() if final else {}
            if not counts and not seen:
                return []
            try:
                self._ensure_topic()
            except Exception:
                self.counter.give_back(counts)
                raise
            now = int(time.time() * 1000)
            window_ms = self.counter.window_ms
            records = [
                (AuditRecord(t, w, window_ms, self.name, self.host, n, now, pid), (t, w, pid))
                for (t, w, pid), n in sorted(counts.items())
            ]
            if final:
                last = {(r.topic, r.producer_id): i for i, (r, _) in enumerate(records)}
                for i in last.values():
                    records[i] = (records[i][0]._replace(final=True), records[i][1])
                for topic, pid in sorted(seen.keys() - last.keys()):
                    w = seen[(topic, pid)]
                    zero = AuditRecord(topic, w, window_ms, self.name, self.host, 0, now, pid, True)
                    records.append((zero, None))
            futures = []
            for i, (record, key) in enumerate(records):
                try:
                    futures.append(self._send(record, key))
                except Exception:  # not queued (the producer closed, its buffer full): kept
                    self.counter.give_back(Counter({k: r.count for r, k in records[i:] if k}))
                    raise
            return futures

    def _send(self, record: AuditRecord, key):
        future = self.producer.send(AUDIT_TOPIC, encode_record(record), key=self.name.encode())

        def delivered(f, key=key, n=record.count):
            if f.exception() is not None and key is not None and n:
                log.warning("an audit record was not delivered (%s); counted again", f.exception())
                self.counter.give_back(Counter({key: n}))

        future.add_done_callback(delivered)
        return future

    def _ensure_topic(self) -> None:
        """Create ``_audit`` (one partition, up to three replicas) unless it exists."""
        if self._topic_ready:
            return
        cluster = self.producer.cluster
        cluster.refresh([AUDIT_TOPIC], allow_auto_create=False)
        if cluster.topic_errors.get(AUDIT_TOPIC) == _UNKNOWN_TOPIC:
            brokers = sorted(cluster.brokers)
            body = cluster.request(
                brokers[0],
                ApiKey.CREATE_TOPICS,
                {
                    "topics": [
                        {
                            "name": AUDIT_TOPIC,
                            "num_partitions": 1,
                            "replication_factor": min(3, len(brokers)),
                            "assignments": [],
                            "configs": [],
                        }
                    ],
                    "timeout_ms": 30000,
                    "validate_only": False,
                },
            )
            result = body["topics"][0]
            if result["error_code"] not in (0, _TOPIC_ALREADY_EXISTS):
                raise error_for_code(result["error_code"])(
                    f"cannot create {AUDIT_TOPIC}: {result['error_message']}"
                )
            log.info("created topic %s", AUDIT_TOPIC)
        self._topic_ready = True

    def close(self, timeout: float | None) -> None:
        """Stop the timer and publish the last counts, marked final, waiting for them up to
        ``timeout`` (at least CLOSE_TIMEOUT_S)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        wait = max(timeout or 0.0, CLOSE_TIMEOUT_S)
        try:
            futures = self.publish(final=True)
        except (OSError, KafkaError) as exc:
            log.error("the last audit records were not published: %s", exc)
            return
        self.producer.flush(wait)
        lost = sum(1 for f in futures if f.done() and f.exception() is not None)
        if lost or not all(f.done() for f in futures):
            log.error("%d of %d final audit records were not delivered", lost, len(futures))


def add_arguments(parser: argparse.ArgumentParser, on_by_default: bool) -> None:
    """``--audit``/``--no-audit`` and ``--audit-window`` for a command that produces."""
    parser.add_argument(
        "--audit",
        action=argparse.BooleanOptionalAction,
        default=on_by_default,
        help=f"publish audit records (counts per window) to {AUDIT_TOPIC} "
        f"(default: {'on' if on_by_default else 'off'})",
    )
    parser.add_argument(
        "--audit-window", default="1m", help="the audit's window, UTC-aligned (default 1m)"
    )


def options_from(args: argparse.Namespace) -> dict:
    """The Producer's audit options from ``add_arguments``' (ValueError for a bad window)."""
    if not getattr(args, "audit", False):
        return {}
    return {
        "audit": True,
        "audit_window_ms": parse_duration(getattr(args, "audit_window", None) or "1m", "window"),
    }


__all__ = ["AuditCounter", "AuditPublisher", "add_arguments", "options_from"]
