"""The cluster's writes to ZooKeeper, each in the reactor's thread pool: topic creation and
deletion (one transaction each), the leader's conditional ISR update, and producer id blocks.
``ZkCluster`` (``broker/cluster.py``) is built on this class; it holds the kazoo client, the
reactor and the metadata these methods use."""

from __future__ import annotations

import uuid

from kazoo.exceptions import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
    RuntimeInconsistency,
)
from twisted.internet import defer, threads

from .protocol import zookeeper as layout
from .protocol.zookeeper import PRODUCER_ID_BLOCK, PartitionState, ProducerIdBlock, TopicPlacement

PRODUCER_ID_BLOCK_SIZE = 1000
ZK_TIMEOUT = 10.0  # seconds a ZooKeeper write may take before the request fails
RETRIED = (NotEmptyError, NoNodeError, BadVersionError)  # a deletion racing the controller


class PartitionStateChangedError(RuntimeError):
    """A conditional write of a partition's state found the node changed (or gone): the
    writer re-reads the node and obeys it."""


def _raise_first(results, name: str) -> None:
    """Raise the first error in a transaction's results (kazoo returns them, not raises)."""
    for result in results:
        if isinstance(result, NodeExistsError):
            raise NodeExistsError(f"topic {name} already exists")
        if isinstance(result, Exception) and not _is_rollback(result):
            raise result
    for result in results:
        if isinstance(result, Exception):
            raise result


def _is_rollback(result) -> bool:

    return isinstance(result, (RolledBackError, RuntimeInconsistency))


class ClusterWrites:
    """The writes of ``ZkCluster``."""

    def _in_pool(self, work):
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), work)

    def create_topic(self, name: str, placement: dict[int, list[int]], config: dict[str, str]):
        """Create a topic's config and placement (with a new topic id) in one transaction; a
        Deferred that fails with NodeExistsError if the topic exists."""

        config_path, topic_path = layout.topic_config_path(name), layout.topic_path(name)

        def create():
            # A config left by a deletion that broke half-way must not block the name forever.
            if self.client.exists_async(config_path).get(
                timeout=ZK_TIMEOUT
            ) and not self.client.exists_async(topic_path).get(timeout=ZK_TIMEOUT):
                try:
                    self.client.delete_async(config_path).get(timeout=ZK_TIMEOUT)
                except NoNodeError:
                    pass
            tx = self.client.transaction()
            tx.create(config_path, layout.encode_topic_config(config))
            tx.create(topic_path, layout.encode_topic(TopicPlacement(placement, uuid.uuid4().hex)))
            _raise_first(tx.commit_async().get(timeout=ZK_TIMEOUT), name)

        return self._in_pool(create)

    def delete_topic(self, name: str):
        """Delete a topic's placement, partition states and config, and leave its tombstone
        (``/admin/deleted_topics/<topic id>``, naming its replicas), in one transaction; a
        Deferred that fails with NoNodeError if the topic does not exist.  Every replica
        deletes its own logs when its watch fires, or when it returns, and then takes itself
        off the tombstone (``deleted_topic_logs_removed``)."""

        def delete():
            for _ in range(5):  # the controller may be writing states meanwhile
                data, stat = self.client.get_async(layout.topic_path(name)).get(timeout=ZK_TIMEOUT)
                placement = layout.decode_topic(data)
                tx = self.client.transaction()
                tx.check(layout.topic_path(name), stat.version)
                for path in self._topic_subtree(name):
                    tx.delete(path)
                if placement.topic_id:
                    replicas = sorted({b for r in placement.partitions.values() for b in r})
                    tombstone = layout.DeletedTopic(name, tuple(replicas))
                    tx.create(
                        layout.deleted_topic_path(placement.topic_id),
                        layout.encode_deleted_topic(tombstone),
                    )
                results = tx.commit_async().get(timeout=ZK_TIMEOUT)
                if not any(isinstance(r, RETRIED) for r in results):
                    break
            _raise_first(results, name)

        return self._in_pool(delete)

    def deleted_topic_logs_removed(self, topic_id: str):
        """This broker holds no log of the deleted topic ``topic_id`` any more: take it off
        the tombstone, and remove the tombstone when no replica is left on it (a Deferred)."""
        path = layout.deleted_topic_path(topic_id)

        def remove():
            while True:
                try:
                    data, stat = self.client.get_async(path).get(timeout=ZK_TIMEOUT)
                    deleted = layout.decode_deleted_topic(data, path)
                    if self.broker_id not in deleted.replicas:
                        return
                    left = tuple(b for b in deleted.replicas if b != self.broker_id)
                    if left:
                        data = layout.encode_deleted_topic(layout.DeletedTopic(deleted.topic, left))
                        self.client.set_async(path, data, stat.version).get(timeout=ZK_TIMEOUT)
                    else:
                        self.client.delete_async(path, stat.version).get(timeout=ZK_TIMEOUT)
                    return
                except NoNodeError:
                    return
                except BadVersionError:
                    continue  # another replica took itself off meanwhile

        return self._in_pool(remove)

    def _topic_subtree(self, name: str) -> list[str]:
        """The nodes of a topic, children before parents: partition states, partitions,
        the topic's placement, and its config last."""
        paths = []
        partitions = layout.partitions_path(name)
        try:
            children = self.client.get_children_async(partitions).get(timeout=ZK_TIMEOUT)
        except NoNodeError:
            children = None
        for child in sorted(children or ()):
            partition_path = f"{partitions}/{child}"
            for leaf in self.client.get_children_async(partition_path).get(timeout=ZK_TIMEOUT):
                paths.append(f"{partition_path}/{leaf}")
            paths.append(partition_path)
        if children is not None:
            paths.append(partitions)
        paths.append(layout.topic_path(name))
        if self.client.exists_async(layout.topic_config_path(name)).get(timeout=ZK_TIMEOUT):
            paths.append(layout.topic_config_path(name))
        return paths

    def update_isr(
        self, topic: str, partition: int, new_isr, leader_epoch: int, expected_version: int
    ):
        """The leader's conditional write of a new ISR: a Deferred of the node's new version,
        failing with PartitionStateChangedError if the node is not at ``expected_version``
        (or not of ``leader_epoch``): the leader then re-reads the node and obeys it."""
        known = self.metadata.states.get(topic, {}).get(partition)
        if known is None or known.state.leader_epoch != leader_epoch:
            return defer.fail(
                PartitionStateChangedError(f"{topic}-{partition} is not at epoch {leader_epoch}")
            )
        state = PartitionState(
            self.broker_id, leader_epoch, tuple(new_isr), known.state.controller_epoch
        )
        path = layout.partition_state_path(topic, partition)

        def write():
            try:
                return (
                    self.client.set_async(
                        path, layout.encode_partition_state(state), version=expected_version
                    )
                    .get(timeout=ZK_TIMEOUT)
                    .version
                )
            except (BadVersionError, NoNodeError):
                raise PartitionStateChangedError(
                    f"{topic}-{partition}'s state is no longer at version {expected_version}"
                ) from None

        return self._in_pool(write)

    @defer.inlineCallbacks
    def next_producer_id(self):
        """A producer id unique in the cluster: blocks of 1000 are claimed in ZooKeeper with a
        compare-and-set, as Kafka does, then handed out locally."""
        start, end = self._pid_block
        if start > end:
            start, end = yield self._in_pool(self._claim_producer_id_block)
        self._pid_block = (start + 1, end)
        return start

    def _claim_producer_id_block(self) -> tuple[int, int]:
        while True:
            try:
                data, stat = self.client.get_async(PRODUCER_ID_BLOCK).get(timeout=ZK_TIMEOUT)
                last = layout.decode_producer_id_block(data, PRODUCER_ID_BLOCK) if data else None
                block_start = last.block_end + 1 if last else 0
                version = stat.version
            except NoNodeError:
                block_start, version = 0, None
            block_end = block_start + PRODUCER_ID_BLOCK_SIZE - 1
            doc = layout.encode_producer_id_block(
                ProducerIdBlock(self.broker_id, block_start, block_end)
            )
            try:
                if version is None:
                    self.client.create_async(PRODUCER_ID_BLOCK, doc).get(timeout=ZK_TIMEOUT)
                else:
                    self.client.set_async(PRODUCER_ID_BLOCK, doc, version=version).get(
                        timeout=ZK_TIMEOUT
                    )
                return block_start, block_end
            except (BadVersionError, NodeExistsError):
                continue
