"""A load's Prometheus metrics (``headrace load --follow --metrics-port N``), kept by the
supervisor from its workers' reports: rows, dead letters, files, input bytes and bytes
written per topic, failures, the lag per partition and the time of the last commit."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge

LAG_INTERVAL = 5.0  # seconds between lag measurements (a ListOffsets per partition)


class LoaderMetrics:
    """The registry of one load; ``observe`` each worker report, ``lag`` now and then."""

    def __init__(self, group: str):
        self.registry = CollectorRegistry()
        r = self.registry

        def counter(name: str, doc: str) -> Counter:
            return Counter(f"headrace_loader_{name}", doc, ["group", "topic"], registry=r)

        self.counters = {
            "rows": counter("rows", "Rows written to Parquet files (and committed)"),
            "dead_letters": counter("dead_letters", "Records written to the dead letter files"),
            "files": counter("files", "Parquet files published"),
            "bytes": counter("input_bytes", "Record bytes loaded from the brokers"),
            "written": counter("written_bytes", "Bytes of the Parquet files published"),
        }
        self.failures = Counter(
            "headrace_loader_failures", "Errors the workers reported", ["group"], registry=r
        )
        self.lag_messages = Gauge(
            "headrace_loader_lag_messages",
            "Records between the loader's committed offset and the log end, per partition",
            ["group", "topic", "partition"],
            registry=r,
        )
        self.last_commit = Gauge(
            "headrace_loader_last_commit_timestamp_seconds",
            "When a worker last committed offsets after publishing files (Unix time; 0: not yet)",
            ["group"],
            registry=r,
        )
        self.group = group
        self.failures.labels(group)
        self.last_commit.labels(group)
        self.next_lag = 0.0

    def observe(self, event: dict) -> None:
        """One report of a worker (``loaders/report.Stats`` reads the same)."""
        kind = event.get("type")
        if kind == "error":
            self.failures.labels(self.group).inc()
        elif kind == "chunk":
            for field, counter in self.counters.items():
                counter.labels(self.group, event["topic"]).inc(event.get(field, 0))
            self.last_commit.labels(self.group).set(time.time())

    def lag(self, lags: dict[tuple[str, int], int]) -> None:
        """The lag per (topic, partition), as ``progress.progress_left`` measures it."""
        for (topic, partition), behind in lags.items():
            self.lag_messages.labels(self.group, topic, str(partition)).set(max(behind, 0))

    def lag_due(self) -> bool:
        """Whether the lag should be measured again now (every ``LAG_INTERVAL``)."""
        now = time.monotonic()
        if now < self.next_lag:
            return False
        self.next_lag = now + LAG_INTERVAL
        return True
