"""The shipping agent's Prometheus metrics, read from the running ``Shipper`` at scrape time
(its counters are plain ints the agent's loop moves; the scrape runs on the page's thread)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class ShipperCollector:
    """``headrace_shipper_*``: lines sent, acknowledged and failed, bytes acknowledged, the
    bytes of the followed files not yet acknowledged, files followed, last state commit."""

    def __init__(self, shipper):
        self.shipper = shipper

    def describe(self):
        return []

    def collect(self):
        shipper = self.shipper
        labels = ["topic"]
        topic = [shipper.topic]
        for name, doc, value in (
            ("lines_sent", "Lines handed to the producer", shipper.lines_sent),
            ("lines_acked", "Lines the brokers acknowledged (shipped)", shipper.lines_acked),
            (
                "lines_failed",
                "Deliveries that failed (the lines are sent again)",
                shipper.lines_failed,
            ),
            ("bytes_acked", "Bytes of the lines (and keys) acknowledged", shipper.bytes_acked),
        ):
            family = CounterMetricFamily(f"headrace_shipper_{name}", doc, labels=labels)
            family.add_metric(topic, value)
            yield family
        tails = list(shipper._tails.values())
        lag = GaugeMetricFamily(
            "headrace_shipper_lag_bytes",
            "Bytes of the followed files past the position the brokers acknowledged",
            labels=labels,
        )
        lag.add_metric(topic, sum(max(_size(t) - t.committed, 0) for t in tails))
        yield lag
        files = GaugeMetricFamily("headrace_shipper_files", "Files followed", labels=labels)
        files.add_metric(topic, len(tails))
        yield files
        committed = GaugeMetricFamily(
            "headrace_shipper_last_commit_timestamp_seconds",
            "When the state file last recorded new positions (Unix time; 0: not yet)",
            labels=labels,
        )
        committed.add_metric(topic, shipper.last_commit_time)
        yield committed


def _size(tail) -> int:
    """The file's size now; what was read of it if it was closed meanwhile."""
    try:
        return os.fstat(tail.fd).st_size
    except OSError:
        return tail.end


def shipper_registry(shipper) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ShipperCollector(shipper))
    return registry
