"""The log cleaner's figures on a broker's Prometheus page (``metrics.port``), parsed with
``prometheus_client``'s parser: the bytes cleaned equal those the broker's log reports, and a
partition whose segment was corrupted on purpose is counted uncleanable while the others are
still cleaned and served."""

from __future__ import annotations

import re
import struct
import time

from conftest import Cluster, wait_for
from metrics_scrape import scrape
from test_broker_compaction import FAST_CLEANER, create, produce, read_back, wait_cleaned

from headrace.devcluster import free_port

CLEANED = re.compile(
    rb"kv-0: cleaned offsets up to \d+: \d+ groups, (\d+) bytes read, (\d+) written"
)


def test_the_cleaners_figures_count_cleans_and_an_uncleanable_partition(zookeeper, tmp_path):
    props = {k.replace("_", "."): str(v) for k, v in FAST_CLEANER.items()}
    cluster = Cluster(tmp_path, f"{zookeeper.connect}/cm-{time.monotonic_ns()}", 1, props)
    broker = cluster.brokers[0]
    broker.metrics_port = free_port()
    cluster.start()
    try:
        # a topic whose oldest segment is corrupted before it may be cleaned
        create(cluster.bootstrap, "broken", **{"min.compaction.lag.ms": "4000"})
        produce(cluster.bootstrap, "broken", [(b"b%d" % (i % 5), b"y" * 200) for i in range(200)])
        logs = broker.workdir / f"broker-{broker.broker_id}-logs"
        first = sorted((logs / "broken-0").glob("*.log"))[0]
        with open(first, "r+b") as segment:
            segment.seek(8)  # the first batch's length
            segment.write(struct.pack(">i", 3))
        create(cluster.bootstrap, "kv")
        produce(cluster.bootstrap, "kv", [(b"k%d" % (i % 50), b"x" * 200) for i in range(1500)])
        wait_cleaned(broker, "kv")

        def settled():
            lines = CLEANED.findall(broker.log_path.read_bytes())
            page = scrape(broker.metrics_url)
            read = sum(int(r) for r, _ in lines)
            written = sum(int(w) for _, w in lines)
            if (
                page["headrace_log_cleaner_uncleanable_partitions_count"] == 1
                and page["headrace_log_cleaner_read_bytes_total"] == read
                and page["headrace_log_cleaner_cleans_total"] == len(lines)
            ):
                return page, read, written
            return None

        page, read, written = wait_for(settled, 30, interval=0.3)
        assert read > 0 and 0 < written < read
        assert page["headrace_log_cleaner_written_bytes_total"] == written
        assert page["headrace_log_cleaner_clean_seconds_total"] > 0
        assert page["headrace_log_cleaner_max_clean_time_seconds"] > 0
        assert 0 < page["headrace_log_cleaner_max_buffer_utilization_percent"] <= 100
        assert 0 <= page["headrace_log_cleaner_max_dirty_percent"] <= 100
        assert len({k for _, k, _ in read_back(cluster.bootstrap, "kv")}) == 50
    finally:
        cluster.stop()
