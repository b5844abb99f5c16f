"""A mirror process: N workers (threads, each a member of the source group with a producer of
its own) and the topic sync that re-lists the source every ``refresh_interval`` seconds.

    >>> mirror = Mirror(MirrorSettings(group="mirror", include="clicks|views",
    ...                                target="b1:9092", zookeeper="zk-a:2181/a"))
    >>> mirror.run()          # until stop() or a worker fails
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from broker.protocol.zk_security import ZkCredentials

from ..cluster import ClusterClient
from ..producer import Producer
from ..security import PLAINTEXT, ClientSecurity
from .copy import MirrorWorker
from .lease import Lease, renewal_for
from .source import MirrorError, SourceFactory, bootstrap_source, zookeeper_source
from .topics import TopicFilter, TopicSync

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MirrorSettings:
    """What ``headrace mirror`` was told; times in seconds unless named ``_ms``."""

    group: str
    include: str
    target: str  # the target's bootstrap servers
    zookeeper: str | None = None  # the source, by its ZooKeeper (the paper's group) ...
    bootstrap: str | None = None  # ... or by its brokers (a Kafka-protocol group)
    exclude: str | None = None
    workers: int = 1
    refresh_interval: float = 30.0
    replication_factor: int = -1
    session_timeout_ms: int = 6000
    commit_interval: float = 5.0
    linger_ms: float = 5.0
    compression: str = "none"
    zookeeper_credentials: ZkCredentials | None = None  # the source ZooKeeper's identity
    source_security: ClientSecurity = PLAINTEXT  # TLS/SASL towards the source brokers
    target_security: ClientSecurity = PLAINTEXT  # ... and towards the target's


class Mirror:
    """See the module docstring; ``workers`` and ``sync`` are read by the metrics page."""

    def __init__(self, settings: MirrorSettings):
        if settings.workers < 1:
            raise MirrorError("--workers must be at least 1")
        if bool(settings.zookeeper) == bool(settings.bootstrap):
            raise MirrorError("give the source as --from-zookeeper or --from-bootstrap-server")
        try:
            accept = TopicFilter(settings.include, settings.exclude)
        except Exception as exc:  # re.error
            raise MirrorError(f"--include/--exclude: not a regular expression: {exc}") from None
        self.settings = settings
        self.make_source: SourceFactory = (
            zookeeper_source(
                settings.group,
                settings.zookeeper,
                settings.session_timeout_ms,
                credentials=settings.zookeeper_credentials,
                security=settings.source_security,
            )
            if settings.zookeeper
            else bootstrap_source(
                settings.group,
                settings.bootstrap or "",
                settings.session_timeout_ms,
                security=settings.source_security,
            )
        )
        self.source = self._source_cluster()
        self.target = self._target_cluster()
        self.sync = TopicSync(self.source, self.target, accept, settings.replication_factor)
        self.workers: list[MirrorWorker] = []
        self.topics: list[str] = []  # mirrored now
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def _source_cluster(self) -> ClusterClient:
        settings = self.settings
        return ClusterClient(
            settings.bootstrap,
            settings.zookeeper,
            client_id="headrace-mirror",
            zookeeper_credentials=settings.zookeeper_credentials,
            security=settings.source_security,
        )

    def _target_cluster(self) -> ClusterClient:
        return ClusterClient(
            self.settings.target,
            client_id="headrace-mirror",
            security=self.settings.target_security,
        )

    def start(self) -> None:
        self.topics = topics = self.sync.refresh()
        if not self.sync.cluster_id:
            raise MirrorError("the source cluster did not say its cluster id (Metadata v2+)")
        log.info(
            "mirroring cluster %s into %s: %s", self.sync.cluster_id, self.settings.target, topics
        )
        session = self.settings.session_timeout_ms / 1000.0
        for i in range(self.settings.workers):
            # a lease on the partitions gates every send (lease.py)
            lease = Lease(session)
            # and a partition whose batch the target refused for good sends nothing more: the
            # batches after it (refused as out of sequence) must not land behind the gap
            refused: set[tuple[str, int]] = set()

            def gate(topic: str, partition: int, lease=lease, refused=refused) -> bool:
                return (topic, partition) not in refused and lease.allows(topic, partition)

            producer = Producer(
                self.settings.target,
                client_id=f"headrace-mirror-{i}",
                acks="all",
                enable_idempotence=True,
                linger_ms=self.settings.linger_ms,
                compression=self.settings.compression,
                send_gate=gate,
                security=self.settings.target_security,
            )
            worker = MirrorWorker(
                f"mirror-{i}",
                self.make_source,
                producer,
                self._target_cluster(),
                self._source_cluster(),
                self.sync.cluster_id,
                topics,
                commit_interval=self.settings.commit_interval,
                lease=lease,
                refused=refused,
                make_renewal=lambda member, lease=lease: renewal_for(member, lease, session),
            )
            self.workers.append(worker)
            thread = threading.Thread(target=worker.run, name=worker.name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def run(self) -> None:
        """Start, then re-list the source's topics every ``refresh_interval`` until
        ``stop()``; a worker's failure stops the mirror and is raised here."""
        self.start()
        try:
            next_refresh = time.monotonic() + self.settings.refresh_interval
            while not self._stop.wait(0.2):
                if self.failed() is not None:
                    break
                if time.monotonic() < next_refresh:
                    continue
                next_refresh = time.monotonic() + self.settings.refresh_interval
                try:
                    topics = self.sync.refresh()
                except Exception as exc:  # the source or target is away: next time
                    log.warning("cannot list topics now: %r", exc)
                    continue
                self.topics = topics
                for worker in self.workers:
                    worker.subscribe(topics)
        finally:
            self.close()
        error = self.failed()
        if error is not None:
            raise error

    def failed(self) -> BaseException | None:
        return next((w.error for w in self.workers if w.error is not None), None)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        for worker in self.workers:
            worker.stop.set()
        for thread in self._threads:
            thread.join(60)
        for worker in self.workers:
            worker.producer.close(10)
            worker.target.close()
            worker.source_cluster.close()
        self.source.close()
        self.target.close()
