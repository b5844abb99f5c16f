"""The mirror's Prometheus metrics (``headrace mirror --metrics-port``), read from the
workers at scrape time: records copied, skipped on resume, refused, deleted at the source
before they were copied; per owned partition the source's end, the acknowledged and committed
offsets and the lag; topics stopped and why."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from broker.protocol.records import LATEST_TIMESTAMP

log = logging.getLogger(__name__)


class MirrorCollector:
    """``headrace_mirror_*`` over a running ``Mirror``."""

    def __init__(self, mirror):
        self.mirror = mirror

    def describe(self):
        return []

    def collect(self):
        workers = self.mirror.workers
        for name, doc in (
            ("copied", "Records the target acknowledged"),
            ("skipped", "Records not copied again because the target already held them"),
            ("deleted", "Records deleted from the source before they were mirrored"),
            ("failed", "Partitions stopped by a record the target refused for good"),
            ("commits", "Commits of source offsets"),
        ):
            family = CounterMetricFamily(f"headrace_mirror_{name}", doc)
            family.add_metric([], sum(getattr(w.counters, name) for w in workers))
            yield family
        labels = ["topic", "partition"]
        lag = GaugeMetricFamily(
            "headrace_mirror_lag",
            "Source records not yet acknowledged by the target",
            labels=labels,
        )
        acked = GaugeMetricFamily(
            "headrace_mirror_acked_offset",
            "The next source offset the target has not acknowledged",
            labels=labels,
        )
        committed = GaugeMetricFamily(
            "headrace_mirror_committed_offset", "The source offset last committed", labels=labels
        )
        stopped_partitions = GaugeMetricFamily(
            "headrace_mirror_partition_stopped",
            "1 for a partition stopped by a record the target refused",
            labels=labels,
        )
        for worker in workers:
            for (topic, partition), copy in sorted(worker.snapshot().items()):
                key = [topic, str(partition)]
                if copy.acked is not None:
                    acked.add_metric(key, copy.acked)
                    try:
                        end = worker.source_cluster.list_offset(topic, partition, LATEST_TIMESTAMP)
                        lag.add_metric(key, max(0, end - copy.acked))
                    except Exception as exc:  # the source is away: no lag this time
                        log.debug("no lag for %s-%d: %r", topic, partition, exc)
                if copy.committed is not None:
                    committed.add_metric(key, copy.committed)
                stopped_partitions.add_metric(key, 1 if copy.failed else 0)
        yield from (lag, acked, committed, stopped_partitions)
        stopped = GaugeMetricFamily(
            "headrace_mirror_topic_stopped",
            "1 for a matching topic not mirrored (its reason is logged)",
            labels=["topic"],
        )
        for topic in sorted(self.mirror.sync.stopped):
            stopped.add_metric([topic], 1)
        yield stopped
        yield GaugeMetricFamily(
            "headrace_mirror_topics", "Topics mirrored", value=len(self.mirror.topics)
        )


def mirror_registry(mirror) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(MirrorCollector(mirror))
    return registry
