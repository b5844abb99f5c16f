"""Helpers of the mirror tests: a mirror as a real process, a steady producer to the source,
and whole partitions read back (source and target) to compare record by record."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from command_lines import HEADRACE, ROOT

from consumers.cluster import ClusterClient
from consumers.consumer import EARLIEST, Consumer
from consumers.mirror import HEADER, parse_source
from consumers.producer import Producer

BASE_TS = 1_700_000_000_000


class MirrorProcess:
    """``headrace mirror`` from a source cluster's ZooKeeper to a target's brokers."""

    def __init__(self, log_path, source, target, group: str, include: str, *extra: str):
        self.log_path = log_path
        self.args = [
            *HEADRACE,
            "mirror",
            "--from-zookeeper",
            source.zookeeper_connect,
            "--to-bootstrap-server",
            target.bootstrap,
            "--include",
            include,
            "--group",
            group,
            "--refresh-interval",
            "1",
            "--zookeeper-session-timeout-ms",
            "2000",
            *extra,
        ]
        self.process: subprocess.Popen | None = None

    def start(self, *extra: str) -> MirrorProcess:
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [*self.args, *extra], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=os.environ
            )
        return self

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.log()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


class SteadyProducer(threading.Thread):
    """``count`` keyed messages with a header and explicit timestamps to ``topic``, a few
    hundred a second, so that they arrive while mirrors come and go."""

    def __init__(self, bootstrap: str, topic: str, count: int, per_second: int = 400):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.count, self.rate = bootstrap, topic, count, per_second
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Producer(self.bootstrap, linger_ms=5) as producer:
                futures = []
                for i in range(self.count):
                    futures.append(
                        producer.send(
                            self.topic,
                            b"value-%d" % i,
                            key=b"key-%d" % i,
                            headers=[("app", b"h%d" % i)],
                            timestamp=BASE_TS + i,
                        )
                    )
                    if i % 20 == 19:
                        time.sleep(20 / self.rate)
                producer.flush()
                for future in futures:
                    future.result()
        except BaseException as exc:
            self.error = exc


def read_partition(bootstrap: str, topic: str, partition: int, end: int) -> list:
    """Every record of ``topic``-``partition`` below offset ``end``."""
    got: list = []
    with Consumer(bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=50) as consumer:
        consumer.assign([(topic, partition, EARLIEST)])
        deadline = time.monotonic() + 30
        while consumer.position(topic, partition) < end and time.monotonic() < deadline:
            got += consumer.poll(0.5)
    return [m for m in got if m.offset < end]


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    """The partitions' end offsets; zeros while the topic does not exist (it is not
    auto-created: the mirror must create it)."""
    cluster = ClusterClient(bootstrap)
    try:
        body = cluster.refresh([topic], allow_auto_create=False)
        if body["topics"][0]["error_code"]:
            return [0] * partitions
        return [cluster.list_offset(topic, p, -1) for p in range(partitions)]
    finally:
        cluster.close()


def as_copied(source_records: list, cluster_id: str) -> list:
    """What the target must hold for these source records, in this order."""
    return [
        (
            m.offset,
            m.key,
            m.value,
            m.timestamp,
            tuple(m.headers),
            (cluster_id, m.topic, m.partition),
        )
        for m in source_records
    ]


def as_found(target_records: list) -> list:
    """Target records with their mirror header taken apart, comparable with ``as_copied``."""
    out = []
    for m in target_records:
        ours = [v for k, v in m.headers if k == HEADER]
        assert len(ours) == 1, m
        parsed = parse_source(ours[0])
        assert parsed is not None, m
        source, offset = parsed
        headers = tuple((k, v) for k, v in m.headers if k != HEADER)
        out.append((offset, m.key, m.value, m.timestamp, headers, tuple(source)))
    return out
