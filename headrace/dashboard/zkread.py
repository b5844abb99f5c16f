"""Blocking reads of the cluster's and the groups' ZooKeeper nodes for the dashboard's
samplers (run in a thread, never on the reactor).  Paths and node data are those of
``broker/protocol/zookeeper.py``; a node that vanishes between two reads is taken as absent
and a malformed one is skipped, so one bad node never hides the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from kazoo.exceptions import NoNodeError

from broker.protocol import zookeeper as layout
from broker.protocol.offsets import read_kind

log = logging.getLogger(__name__)


@dataclass
class ClusterLayout:
    """What ZooKeeper says about the cluster at one moment."""

    cluster_id: str | None = None
    controller: int | None = None
    brokers: dict[int, layout.BrokerRegistration] = field(default_factory=dict)
    topics: dict[str, layout.TopicPlacement] = field(default_factory=dict)
    states: dict[tuple[str, int], layout.PartitionState] = field(default_factory=dict)
    configs: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class GroupNodes:
    """A group's nodes under ``/consumers/<group>``."""

    name: str
    kind: str | None
    members: dict[str, tuple[str, ...]]  # consumer id -> subscribed topics
    offsets: dict[tuple[str, int], int]
    owners: dict[tuple[str, int], str]
    last_run: dict | None = None


def _children(zk, path: str) -> list[str]:
    try:
        return sorted(zk.get_children(path))
    except NoNodeError:
        return []


def _get_many(zk, paths: list[str]) -> dict[str, bytes]:
    """The data of each existing node among ``paths``, read in one pipelined round."""
    pending = [(path, zk.get_async(path)) for path in paths]
    found = {}
    for path, result in pending:
        try:
            found[path] = result.get()[0]
        except NoNodeError:
            continue
    return found


def _decoded(decode, data: bytes | None, path: str):
    if data is None:
        return None
    try:
        return decode(data, path)
    except layout.MalformedNodeError as exc:
        log.warning("skipping %s", exc)
        return None


def read_layout(zk) -> ClusterLayout:
    """Brokers, controller, cluster id, topics with their partition states and configs."""
    found = ClusterLayout()
    ids = [b for b in _children(zk, layout.BROKER_IDS) if b.isdigit()]
    topics = _children(zk, layout.BROKER_TOPICS)
    singles = [layout.CLUSTER_ID, layout.CONTROLLER]
    nodes = _get_many(
        zk,
        singles
        + [layout.broker_path(b) for b in ids]
        + [layout.topic_path(t) for t in topics]
        + [layout.topic_config_path(t) for t in topics],
    )
    found.cluster_id = _decoded(layout.decode_cluster_id, nodes.get(layout.CLUSTER_ID), "")
    controller = _decoded(layout.decode_controller, nodes.get(layout.CONTROLLER), "")
    found.controller = controller.broker_id if controller is not None else None
    for b in ids:
        path = layout.broker_path(b)
        reg = _decoded(layout.decode_broker, nodes.get(path), path)
        if reg is not None:
            found.brokers[int(b)] = reg
    for t in topics:
        path = layout.topic_path(t)
        placement = _decoded(layout.decode_topic, nodes.get(path), path)
        if placement is None:
            continue
        found.topics[t] = placement
        path = layout.topic_config_path(t)
        found.configs[t] = _decoded(layout.decode_topic_config, nodes.get(path), path) or {}
    paths = {
        layout.partition_state_path(t, p): (t, p)
        for t, placement in found.topics.items()
        for p in placement.partitions
    }
    for path, data in _get_many(zk, list(paths)).items():
        state = _decoded(layout.decode_partition_state, data, path)
        if state is not None:
            found.states[paths[path]] = state
    return found


def read_groups(zk) -> dict[str, GroupNodes]:
    """Every group under ``/consumers``: kind, members, committed offsets, owners and, for
    loaders, the last run's record."""
    groups = {}
    for name in _children(zk, layout.CONSUMERS):
        members_path = layout.members_path(name)
        ids = _children(zk, members_path)
        offset_paths, owner_paths = {}, {}
        for topic in _children(zk, layout.offsets_path(name)):
            for p in _children(zk, layout.topic_offsets_path(name, topic)):
                if p.isdigit():
                    offset_paths[layout.offset_path(name, topic, int(p))] = (topic, int(p))
        for topic in _children(zk, layout.owners_path(name)):
            for p in _children(zk, layout.topic_owners_path(name, topic)):
                if p.isdigit():
                    owner_paths[layout.owner_path(name, topic, int(p))] = (topic, int(p))
        member_paths = {layout.member_path(name, m): m for m in ids}
        run_path = layout.last_run_path(name)
        nodes = _get_many(zk, [*offset_paths, *owner_paths, *member_paths, run_path])
        members = {}
        for path, member in member_paths.items():
            reg = _decoded(layout.decode_consumer, nodes.get(path), path)
            members[member] = reg.subscription if reg is not None else ()
        offsets = {}
        for path, key in offset_paths.items():
            offset = _decoded(layout.decode_offset, nodes.get(path), path)
            if offset is not None:
                offsets[key] = offset
        owners = {}
        for path, key in owner_paths.items():
            owner = _decoded(layout.decode_owner, nodes.get(path), path)
            if owner is not None:
                owners[key] = owner
        groups[name] = GroupNodes(
            name,
            read_kind(zk, name),
            members,
            offsets,
            owners,
            _decoded(layout.decode_last_run, nodes.get(run_path), run_path),
        )
    return groups
