"""The log cleaner's Prometheus figures, read from it when Prometheus scrapes (on the reactor
thread, by ``state_metrics.BrokerStateCollector``), after Kafka's ``kafka.log:type=LogCleaner``
and ``LogCleanerManager`` metrics: max-dirty-percent, uncleanable-partitions-count,
max-clean-time-secs, max-buffer-utilization-percent, and the bytes and time the cleans took."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


def cleaner_families(cleaner):
    """The metric families of a ``LogCleaner``."""
    yield GaugeMetricFamily(
        "headrace_log_cleaner_max_dirty_percent",
        "Largest share of uncleaned bytes among the compacted logs the cleaner last "
        "looked at, in percent (Kafka's max-dirty-percent)",
        value=100.0 * cleaner.max_dirty_ratio,
    )
    yield GaugeMetricFamily(
        "headrace_log_cleaner_uncleanable_partitions_count",
        "Partitions whose clean failed; not cleaned again until a restart "
        "(Kafka's uncleanable-partitions-count)",
        value=len(cleaner.uncleanable),
    )
    yield GaugeMetricFamily(
        "headrace_log_cleaner_max_clean_time_seconds",
        "Seconds the last clean took (Kafka's max-clean-time-secs)",
        value=cleaner.last_clean_seconds,
    )
    yield GaugeMetricFamily(
        "headrace_log_cleaner_max_buffer_utilization_percent",
        "The last clean's offset map keys over those log.cleaner.dedupe.buffer.size "
        "holds, in percent (Kafka's max-buffer-utilization-percent)",
        value=100.0 * cleaner.buffer_utilization,
    )
    yield CounterMetricFamily(
        "headrace_log_cleaner_cleans",
        "Cleans swapped in since the broker started",
        value=cleaner.cleans,
    )
    yield CounterMetricFamily(
        "headrace_log_cleaner_read_bytes",
        "Bytes of log read by the cleans swapped in (the bytes cleaned)",
        value=cleaner.bytes_cleaned,
    )
    yield CounterMetricFamily(
        "headrace_log_cleaner_written_bytes",
        "Bytes of cleaned segments written by the cleans swapped in",
        value=cleaner.bytes_written,
    )
    yield CounterMetricFamily(
        "headrace_log_cleaner_clean_seconds",
        "Seconds the cleaner threads spent on the cleans swapped in",
        value=cleaner.clean_seconds,
    )
