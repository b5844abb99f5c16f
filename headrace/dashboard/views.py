"""The JSON of ``/api/cluster``, ``/api/topics`` and ``/api/groups`` (field names as the
README documents them), built from what the samplers read.  Pure: no I/O, times passed in;
the topic and group views keep their rates and one-second histories between samples.
"""

from __future__ import annotations

from .history import Histories, Rates
from .zkread import ClusterLayout, GroupNodes

DEFAULT_CLEANUP_POLICY = "delete"
KIND_ZOOKEEPER, KIND_KAFKA, KIND_LOADER = "zookeeper", "kafka", "loader"


def leader_of(layout: ClusterLayout, topic: str, partition: int) -> int:
    """The partition's leader by its state (-1: offline or no state yet)."""
    state = layout.states.get((topic, partition))
    return state.leader if state is not None else -1


def leaders(layout: ClusterLayout) -> dict[tuple[str, int], int]:
    """Every partition's live leader (-1 when its leader is not registered)."""
    return {
        (t, p): (leader if leader in layout.brokers else -1)
        for t, placement in layout.topics.items()
        for p in placement.partitions
        for leader in (leader_of(layout, t, p),)
    }


def _under_replicated(layout: ClusterLayout, topic: str, partition: int) -> bool:
    state = layout.states.get((topic, partition))
    replicas = layout.topics[topic].partitions[partition]
    return state is not None and state.leader >= 0 and len(state.isr) < len(replicas)


def cluster_view(layout: ClusterLayout, known: dict, zookeeper: dict, now_ms: int) -> dict:
    """``/api/cluster``: the registered brokers and those holding replicas without being
    registered (they died: ``up`` false), with the address ``known`` (every broker id seen, to
    its last registration) remembers for them."""
    ids = set(layout.brokers)
    for placement in layout.topics.values():
        for replicas in placement.partitions.values():
            ids.update(replicas)
    live = leaders(layout)
    counts = {b: {"leader": 0, "replica": 0, "under": 0} for b in ids}
    offline = under = total = 0
    for (topic, p), leader in live.items():
        total += 1
        for replica in layout.topics[topic].partitions[p]:
            counts[replica]["replica"] += 1
        if leader < 0:
            offline += 1
            continue
        counts[leader]["leader"] += 1
        if _under_replicated(layout, topic, p):
            counts[leader]["under"] += 1
            under += 1
    brokers = []
    for b in sorted(ids):
        reg = layout.brokers.get(b) or known.get(b)
        brokers.append(
            {
                "id": b,
                "host": reg.host if reg is not None else None,
                "port": reg.port if reg is not None else None,
                "rack": reg.rack if reg is not None else None,
                "up": b in layout.brokers,
                "controller": b == layout.controller,
                "leader_partitions": counts[b]["leader"],
                "replica_partitions": counts[b]["replica"],
                "under_replicated": counts[b]["under"],
            }
        )
    return {
        "sampled_at": now_ms,
        "cluster_id": layout.cluster_id,
        "controller": layout.controller,
        "zookeeper": zookeeper,
        "brokers": brokers,
        "partitions": {"total": total, "offline": offline, "under_replicated": under},
    }


def _config_int(config: dict, name: str) -> int | None:
    try:
        return int(config[name])
    except (KeyError, ValueError):
        return None


class TopicsView:
    """``/api/topics``: rates from log end offsets (messages) and log sizes (bytes) sampled
    once a second, and each topic's last ``history_s`` one-second samples."""

    def __init__(self, history_s: int = 300):
        self.history_s = history_s
        self.messages = Rates()
        self.bytes = Rates()
        self.history = Histories(history_s)

    def build(self, layout: ClusterLayout, offsets: dict, sizes: dict, now_ms: int) -> dict:
        """``offsets``: (topic, p) -> (start, end); ``sizes``: (broker, topic, p) -> bytes."""
        t = now_ms / 1000.0
        live = leaders(layout)
        topics = []
        for name, placement in sorted(layout.topics.items()):
            config = layout.configs.get(name, {})
            details, topic_size, msg_rate, byte_rate, end_total = [], None, 0.0, None, 0
            for p, replicas in sorted(placement.partitions.items()):
                state = layout.states.get((name, p))
                leader = live[(name, p)]
                start, end = offsets.get((name, p), (None, None))
                size = sizes.get((leader, name, p))
                if size is None:  # no leader: what a replica holds, if one answered
                    size = next(
                        (sizes[(r, name, p)] for r in replicas if (r, name, p) in sizes), None
                    )
                m_rate = self.messages.update((name, p), t, end) or 0.0
                b_rate = self.bytes.update((name, p), t, size)
                if size is not None:
                    topic_size = (topic_size or 0) + size
                if b_rate is not None:
                    byte_rate = (byte_rate or 0.0) + b_rate
                msg_rate += m_rate
                end_total += end or 0
                isr = list(state.isr) if state is not None else []
                details.append(
                    {
                        "partition": p,
                        "leader": leader,
                        "leader_epoch": state.leader_epoch if state is not None else None,
                        "replicas": list(replicas),
                        "isr": isr,
                        "offline": [r for r in replicas if r not in layout.brokers],
                        "log_start_offset": start,
                        "log_end_offset": end,
                        "size_bytes": size,
                        "messages_per_s": m_rate,
                        "bytes_per_s": b_rate,
                    }
                )
            sample = {"t": now_ms, "messages_per_s": msg_rate, "bytes_per_s": byte_rate}
            topics.append(
                {
                    "name": name,
                    "topic_id": placement.topic_id,
                    "partitions": len(placement.partitions),
                    "replication_factor": max(
                        (len(r) for r in placement.partitions.values()), default=0
                    ),
                    "retention_ms": _config_int(config, "retention.ms"),
                    "retention_bytes": _config_int(config, "retention.bytes"),
                    "cleanup_policy": config.get("cleanup.policy", DEFAULT_CLEANUP_POLICY),
                    "size_bytes": topic_size,
                    "messages_per_s": msg_rate,
                    "bytes_per_s": byte_rate,
                    "end_offset_total": end_total,
                    "history": self.history.add(name, sample),
                    "partition_detail": details,
                }
            )
        keys = set(live)
        self.messages.keep_only(keys)
        self.bytes.keep_only(keys)
        self.history.keep_only(layout.topics)
        return {"sampled_at": now_ms, "history_s": self.history_s, "topics": topics}


def member_host(group: str, consumer_id: str) -> str | None:
    """The host in one of our consumer ids (``<group>_<host>-<pid>-<uuid>``), else None."""
    prefix = f"{group}_"
    if not consumer_id.startswith(prefix):
        return None
    parts = consumer_id[len(prefix) :].rsplit("-", 2)
    return parts[0] if len(parts) == 3 else None


class GroupsView:
    """``/api/groups``: every group of the three kinds with lag per partition, its total and
    its one-second history."""

    def __init__(self, history_s: int = 300):
        self.history = Histories(history_s)

    def build(
        self,
        nodes: dict[str, GroupNodes],
        protocol: dict[str, dict],
        ends: dict[tuple[str, int], int],
        loaders: dict[str, dict],
        now_ms: int,
    ) -> dict:
        """``protocol``: the brokers' groups (see ``brokers.protocol_groups``); ``ends``:
        (topic, p) -> log end offset; ``loaders``: group -> {"warehouse", "success_hours"}."""
        groups = []
        for name in sorted(set(nodes) | set(protocol)):
            node = nodes.get(name) or GroupNodes(name, KIND_KAFKA, {}, {}, {})
            described = protocol.get(name)
            kind = node.kind or (KIND_KAFKA if described is not None else KIND_ZOOKEEPER)
            owners = dict(node.owners)
            if described is not None:
                for key, member in described["owners"].items():
                    owners.setdefault(key, member)
            if kind == KIND_KAFKA:
                state = described["state"] if described is not None else "Empty"
                members = described["members"] if described is not None else []
            else:
                members = [{"id": m, "host": member_host(name, m)} for m in node.members]
                if kind == KIND_LOADER:
                    state = "Running" if node.members else "Idle"
                else:
                    state = "Stable" if owners else "Empty"
            topics = {t for t, _ in node.offsets} | {t for t, _ in owners}
            for subscription in node.members.values():
                topics.update(subscription)
            partitions, lag = [], None
            for key in sorted(set(node.offsets) | set(owners)):
                committed, end = node.offsets.get(key), ends.get(key)
                p_lag = (
                    max(0, end - committed) if committed is not None and end is not None else None
                )
                if p_lag is not None:
                    lag = (lag or 0) + p_lag
                partitions.append(
                    {
                        "topic": key[0],
                        "partition": key[1],
                        "committed": committed,
                        "log_end_offset": end,
                        "lag": p_lag,
                        "owner": owners.get(key),
                    }
                )
            if lag is not None:
                self.history.add(name, {"t": now_ms, "lag": lag})
            loader = None
            if kind == KIND_LOADER:
                run = node.last_run
                extra = loaders.get(name, {})
                loader = {
                    "last_run": None
                    if run is None
                    else {
                        k: run[k]
                        for k in ("finished_at", "rows", "dead_letters", "files", "seconds")
                    },
                    "warehouse": extra.get("warehouse"),
                    "success_hours": extra.get("success_hours", []),
                }
            groups.append(
                {
                    "name": name,
                    "kind": kind,
                    "state": state,
                    "topics": sorted(topics),
                    "members": members,
                    "lag": lag,
                    "lag_history": self.history.get(name),
                    "partitions": partitions,
                    "loader": loader,
                }
            )
        self.history.keep_only(set(nodes) | set(protocol))
        return {"sampled_at": now_ms, "groups": groups}
