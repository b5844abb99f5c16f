"""DescribeLogDirs: per log directory of this broker, the size of each partition's log it
holds (leader or follower), as Kafka's ``kafka-log-dirs.sh`` and AdminClient's
``describe_log_dirs`` show them.

    >>> describe_log_dirs({"topics": None}, manager)     # every partition in every log dir

A directory holding a partition offline after a disk error answers KAFKA_STORAGE_ERROR with no
topics, as Kafka answers for an offline log directory; requested partitions this broker does
not hold are left out, as Kafka leaves them out.  From v4 each directory tells the size of its
volume and the bytes usable on it (``shutil.disk_usage``: Java's total and usable space).
"""

from __future__ import annotations

import shutil

from .protocol.errors import NONE, KafkaStorageError


def describe_log_dirs(body: dict, manager) -> dict:
    """The DescribeLogDirs response body for ``body`` over the ``LogManager``'s logs."""
    wanted = None
    if body["topics"] is not None:
        wanted = {(t["topic"], p) for t in body["topics"] for p in t["partitions"]}
    topics: dict[str, dict[str, list[dict]]] = {str(d): {} for d in manager.log_dirs}
    offline: set[str] = set()
    for (topic, partition), plog in sorted(manager.logs.items()):
        log_dir = str(plog.directory.parent)
        if plog.offline:
            offline.add(log_dir)
        if wanted is not None and (topic, partition) not in wanted:
            continue
        topics.setdefault(log_dir, {}).setdefault(topic, []).append(
            {
                "partition_index": partition,
                "partition_size": plog.size,
                # Kafka's lag of the current log: how far its end is behind the high watermark
                "offset_lag": max(0, plog.high_watermark - plog.log_end_offset),
                "is_future_key": False,
            }
        )
    results = []
    for log_dir, by_topic in topics.items():
        if log_dir in offline:
            results.append({"error_code": KafkaStorageError.code, "log_dir": log_dir, "topics": []})
            continue
        results.append(
            {
                "error_code": NONE,
                "log_dir": log_dir,
                "topics": [{"name": t, "partitions": ps} for t, ps in sorted(by_topic.items())],
                **_volume(log_dir),
            }
        )
    return {"throttle_time_ms": 0, "error_code": NONE, "results": results}


def _volume(log_dir: str) -> dict:
    """The total and usable bytes of the volume ``log_dir`` is on (-1 if it cannot be read)."""
    try:
        usage = shutil.disk_usage(log_dir)
    except OSError:
        return {"total_bytes": -1, "usable_bytes": -1}
    return {"total_bytes": usage.total, "usable_bytes": usage.free}
