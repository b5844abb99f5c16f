"""The ZooKeeper layout: every path headrace keeps in ZooKeeper and the encoding of each node.
Pure (no kazoo, no I/O): brokers, clients, loaders and tools build paths and node data here.

Under the chroot of ``zookeeper.connect`` (Kafka 0.8's names and JSON where Kafka has them)::

    /
    ├── brokers
    │   ├── ids
    │   │   └── <id>                    ephemeral   BrokerRegistration (broker_nodes.py)
    │   │                               {"version": 4, "host", "port", "endpoints": ["SSL://h:p"],
    │   │                                "listener_security_protocol_map", "rack", "jmx_port": -1,
    │   │                                "timestamp": "<ms>", "log_dirs"}
    │   └── topics
    │       └── <topic>                 persistent  TopicPlacement
    │           │                       {"version": 1, "topic_id", "partitions": {"0": [<id>], ...}}
    │           └── partitions
    │               └── <p>
    │                   └── state       persistent  PartitionState (written by the controller,
    │                                   and by the leader for its ISR)
    │                                   {"controller_epoch", "leader", "version": 1,
    │                                    "leader_epoch", "isr": [<id>, ...]}
    ├── controller                      ephemeral   ControllerRegistration
    │                                   {"version": 1, "brokerid", "timestamp": "<ms>"}
    ├── controller_epoch                persistent  the controller epoch, decimal text
    ├── config
    │   ├── topics
    │   │   └── <topic>                 persistent  {"version": 1, "config": {"<name>": "<value>"}}
    │   ├── brokers
    │   │   └── <id> | <default>        persistent  the same: dynamic broker configs
    │   └── changes
    │       └── config_change_<seq>     persistent  {"version": 2, "entity_path": "topics/<t>"}
    ├── cluster
    │   └── id                          persistent  {"version": "1", "id": "<cluster id>"}
    ├── latest_producer_id_block        persistent  ProducerIdBlock
    │                                   {"version": 1, "broker", "block_start", "block_end"}
    └── consumers
        └── <group>
            ├── kind                    persistent  "zookeeper" | "kafka" | "loader"
            ├── ids
            │   └── <consumer id>       ephemeral   ConsumerRegistration
            │                           {"version": 1, "subscription": {"<topic>": 1},
            │                            "pattern": "static", "timestamp": "<ms>"}
            ├── owners
            │   └── <topic>
            │       └── <p>             ephemeral   <consumer id>
            ├── offsets
            │   └── <topic>
            │       └── <p>             persistent  next offset to read, decimal text
            └── loader
                ├── plan                persistent  {"created_ms",
                │                                    "partitions": {"<t>/<p>": {"end", "ms",
                │                                    ["value_schema_id"]}}}
                ├── schemas
                │   └── <topic>         persistent  {"fields": [[<name>, <type>], ...]}
                └── last_run            persistent  {"finished_at": <ms>, "rows", "dead_letters",
                                                     "files", "seconds", "warehouse": <URL>}

Each node has an ``encode_*`` (value to bytes) and a ``decode_*`` (bytes to a typed value);
a decoder meeting data it cannot read raises ``MalformedNodeError`` (a ValueError).  Who
writes what: brokers the broker registry, topics, configs, cluster id and producer id blocks
(``broker/cluster.py``), the controller ``/controller``, ``/controller_epoch`` and the
partition states (``broker/controller.py``); every kind of group the ``/consumers`` subtree
(``broker/protocol/offsets.py``, ``consumers/group.py``, ``loaders/registry.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .broker_nodes import (  # noqa: F401 (the broker registration is part of the layout)
    BrokerRegistration,
    decode_broker,
    encode_broker,
    plaintext_endpoint,
)
from .node_codec import MalformedNodeError  # noqa: F401 (decoders' error, named here too)
from .node_codec import check as _check
from .node_codec import dumps as _dumps
from .node_codec import is_int as _is_int
from .node_codec import reading as _reading

# --- paths ---------------------------------------------------------------------------------

BROKER_IDS = "/brokers/ids"
BROKER_TOPICS = "/brokers/topics"
CONFIG_TOPICS = "/config/topics"
CONFIG_BROKERS = "/config/brokers"  # dynamic configs of each broker and of all (<default>)
DEFAULT_BROKER = "<default>"
CONFIG_CHANGES = "/config/changes"  # Kafka's change notifications, written with each alter
CONFIG_CHANGE_PREFIX = f"{CONFIG_CHANGES}/config_change_"  # a sequential node's name
CLUSTER = "/cluster"
CLUSTER_ID = f"{CLUSTER}/id"
PRODUCER_ID_BLOCK = "/latest_producer_id_block"
CONSUMERS = "/consumers"
CONTROLLER = "/controller"
CONTROLLER_EPOCH = "/controller_epoch"
DELETED_TOPICS = "/admin/deleted_topics"  # children: ids of deleted topics some replica holds
BROKER_BASE_PATHS = (BROKER_IDS, BROKER_TOPICS, CONFIG_TOPICS, CLUSTER, DELETED_TOPICS)
SCHEMA_REGISTRY = "/schema-registry"  # the schema registry's tree: schema_nodes.py draws it
SCHEMA_IDS = f"{SCHEMA_REGISTRY}/ids"  # data: the last id handed out; children: the schemas
SCHEMA_SUBJECTS = f"{SCHEMA_REGISTRY}/subjects"
SCHEMA_CONFIG = f"{SCHEMA_REGISTRY}/config"


def broker_path(broker_id: int | str) -> str:
    return f"{BROKER_IDS}/{broker_id}"


def topic_path(topic: str) -> str:
    return f"{BROKER_TOPICS}/{topic}"


def partitions_path(topic: str) -> str:
    return f"{BROKER_TOPICS}/{topic}/partitions"


def partition_path(topic: str, partition: int) -> str:
    return f"{BROKER_TOPICS}/{topic}/partitions/{partition}"


def partition_state_path(topic: str, partition: int) -> str:
    return f"{BROKER_TOPICS}/{topic}/partitions/{partition}/state"


def topic_config_path(topic: str) -> str:
    return f"{CONFIG_TOPICS}/{topic}"


def broker_config_path(entity: str) -> str:
    return f"{CONFIG_BROKERS}/{entity}"


def config_change_path(name: str) -> str:
    return f"{CONFIG_CHANGES}/{name}"


def deleted_topic_path(topic_id: str) -> str:
    return f"{DELETED_TOPICS}/{topic_id}"


def group_path(group: str) -> str:
    return f"{CONSUMERS}/{group}"


def kind_path(group: str) -> str:
    return f"{CONSUMERS}/{group}/kind"


def members_path(group: str) -> str:
    return f"{CONSUMERS}/{group}/ids"


def member_path(group: str, consumer_id: str) -> str:
    return f"{CONSUMERS}/{group}/ids/{consumer_id}"


def owners_path(group: str) -> str:
    return f"{CONSUMERS}/{group}/owners"


def topic_owners_path(group: str, topic: str) -> str:
    return f"{CONSUMERS}/{group}/owners/{topic}"


def owner_path(group: str, topic: str, partition: int) -> str:
    return f"{CONSUMERS}/{group}/owners/{topic}/{partition}"


def offsets_path(group: str) -> str:
    return f"{CONSUMERS}/{group}/offsets"


def topic_offsets_path(group: str, topic: str) -> str:
    return f"{CONSUMERS}/{group}/offsets/{topic}"


def offset_path(group: str, topic: str, partition: int) -> str:
    return f"{CONSUMERS}/{group}/offsets/{topic}/{partition}"


def loader_path(group: str) -> str:
    return f"{CONSUMERS}/{group}/loader"


def plan_path(group: str) -> str:
    return f"{CONSUMERS}/{group}/loader/plan"


def schema_path(group: str, topic: str) -> str:
    return f"{CONSUMERS}/{group}/loader/schemas/{topic}"


def last_run_path(group: str) -> str:
    return f"{CONSUMERS}/{group}/loader/last_run"


def check_group_name(group: str) -> None:
    """A group name is one ZooKeeper node name under ``/consumers``: ValueError if it is
    empty, ``.`` or ``..``, or holds ``/`` or characters ZooKeeper refuses."""
    if not group or group in (".", "..") or "/" in group:
        raise ValueError(
            f"group name {group!r} cannot name a ZooKeeper node: it must not be "
            "empty, . or .., or contain /"
        )
    bad = [
        c
        for c in group
        if c < "\x20"
        or "\x7f" <= c <= "\x9f"
        or "\ud800" <= c <= "\uf8ff"
        or "\ufff0" <= c <= "\uffff"
    ]
    if bad:
        raise ValueError(
            f"group name {group!r} holds {bad[0]!r}, which ZooKeeper refuses in a node name"
        )


# --- node data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicPlacement:
    """``/brokers/topics/<topic>``: the brokers of each partition (the first leads)."""

    partitions: dict[int, list[int]]
    topic_id: str | None = None


def encode_topic(placement: TopicPlacement) -> bytes:
    doc: dict[str, object] = {"version": 1}
    if placement.topic_id is not None:
        doc["topic_id"] = placement.topic_id
    doc["partitions"] = {str(p): list(r) for p, r in sorted(placement.partitions.items())}
    return _dumps(doc)


def decode_topic(data: bytes, path: str = "") -> TopicPlacement:
    with _reading("a topic placement", data, path):
        doc = json.loads(data)
        topic_id = doc.get("topic_id")
        _check(topic_id is None or isinstance(topic_id, str), "topic_id must be a string")
        return TopicPlacement(
            {int(p): [int(b) for b in replicas] for p, replicas in doc["partitions"].items()},
            topic_id,
        )


@dataclass(frozen=True)
class PartitionState:
    """``/brokers/topics/<t>/partitions/<p>/state``: the partition's leader (-1: none, the
    partition is offline), its leader epoch, the in-sync replicas, and the epoch of the
    controller that wrote it (Kafka's LeaderAndIsr)."""

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int


def encode_partition_state(state: PartitionState) -> bytes:
    return _dumps(
        {
            "controller_epoch": state.controller_epoch,
            "leader": state.leader,
            "version": 1,
            "leader_epoch": state.leader_epoch,
            "isr": list(state.isr),
        }
    )


def decode_partition_state(data: bytes, path: str = "") -> PartitionState:
    with _reading("a partition state", data, path):
        doc = json.loads(data)
        isr = doc["isr"]
        _check(isinstance(isr, list) and all(_is_int(b) for b in isr), "isr must list integers")
        state = PartitionState(
            doc["leader"], doc["leader_epoch"], tuple(isr), doc["controller_epoch"]
        )
        _check(
            all(_is_int(v) for v in (state.leader, state.leader_epoch, state.controller_epoch)),
            "leader, leader_epoch and controller_epoch must be integers",
        )
        return state


@dataclass(frozen=True)
class ControllerRegistration:
    """``/controller``: the broker acting as controller, ephemeral to its session."""

    broker_id: int
    timestamp_ms: int = 0


def encode_controller(reg: ControllerRegistration) -> bytes:
    return _dumps({"version": 1, "brokerid": reg.broker_id, "timestamp": str(reg.timestamp_ms)})


def decode_controller(data: bytes, path: str = "") -> ControllerRegistration:
    with _reading("a controller registration", data, path):
        doc = json.loads(data)
        _check(_is_int(doc["brokerid"]), "brokerid must be an integer")
        return ControllerRegistration(doc["brokerid"], int(doc.get("timestamp") or 0))


def encode_controller_epoch(epoch: int) -> bytes:
    return str(epoch).encode()


def decode_controller_epoch(data: bytes, path: str = "") -> int:
    """``/controller_epoch``: the epoch of the latest controller, decimal text."""
    with _reading("a controller epoch", data, path):
        epoch = int(data.decode().strip())
        _check(epoch >= 0, "the epoch must not be negative")
        return epoch


def encode_topic_config(config: dict[str, str]) -> bytes:
    return _dumps({"version": 1, "config": config})


def decode_topic_config(data: bytes, path: str = "") -> dict[str, str]:
    """``/config/topics/<topic>``: the topic's overrides, Kafka's topic-level names."""
    with _reading("a topic config", data, path):
        return {str(k): str(v) for k, v in json.loads(data).get("config", {}).items()}


def encode_config_change(entity_path: str) -> bytes:
    """``/config/changes/config_change_<seq>``: Kafka's notice that the config of
    ``entity_path`` (``topics/<t>``, ``brokers/<id>``) changed."""
    return _dumps({"version": 2, "entity_path": entity_path})


@dataclass(frozen=True)
class DeletedTopic:
    """``/admin/deleted_topics/<topic id>``: a deleted topic's tombstone, persistent until
    every replica that may hold its logs (``replicas``) removed them: a broker that was down
    when the topic was deleted removes them when it returns, even if the name is in use again
    (its logs carry the topic id)."""

    topic: str
    replicas: tuple[int, ...]


def encode_deleted_topic(deleted: DeletedTopic) -> bytes:
    return _dumps({"version": 1, "topic": deleted.topic, "replicas": list(deleted.replicas)})


def decode_deleted_topic(data: bytes, path: str = "") -> DeletedTopic:
    with _reading("a deleted topic", data, path):
        doc = json.loads(data)
        replicas = doc["replicas"]
        _check(isinstance(doc["topic"], str), "topic must be a string")
        _check(isinstance(replicas, list) and all(map(_is_int, replicas)), "bad replicas")
        return DeletedTopic(doc["topic"], tuple(replicas))


def encode_cluster_id(cluster_id: str) -> bytes:
    return _dumps({"version": "1", "id": cluster_id})


def decode_cluster_id(data: bytes, path: str = "") -> str:
    with _reading("a cluster id", data, path):
        cluster_id = json.loads(data)["id"]
        _check(isinstance(cluster_id, str), "id must be a string")
        return cluster_id


@dataclass(frozen=True)
class ProducerIdBlock:
    """``/latest_producer_id_block``: the last block of producer ids a broker claimed."""

    broker: int
    block_start: int
    block_end: int


def encode_producer_id_block(block: ProducerIdBlock) -> bytes:
    return _dumps(
        {
            "version": 1,
            "broker": block.broker,
            "block_start": block.block_start,
            "block_end": block.block_end,
        }
    )


def decode_producer_id_block(data: bytes, path: str = "") -> ProducerIdBlock:
    with _reading("a producer id block", data, path):
        doc = json.loads(data)
        block = ProducerIdBlock(doc["broker"], doc["block_start"], doc["block_end"])
        _check(
            all(_is_int(v) for v in (block.broker, block.block_start, block.block_end)),
            "broker, block_start and block_end must be integers",
        )
        return block


@dataclass(frozen=True)
class ConsumerRegistration:
    """``/consumers/<group>/ids/<consumer id>``: a member of a ZooKeeper group and the
    topics it subscribes to."""

    subscription: tuple[str, ...]
    pattern: str = "static"
    timestamp_ms: int = 0


def encode_consumer(reg: ConsumerRegistration) -> bytes:
    return _dumps(
        {
            "version": 1,
            "subscription": {t: 1 for t in reg.subscription},
            "pattern": reg.pattern,
            "timestamp": str(reg.timestamp_ms),
        }
    )


def decode_consumer(data: bytes, path: str = "") -> ConsumerRegistration:
    with _reading("a consumer registration", data, path):
        doc = json.loads(data)
        subscription, pattern = doc.get("subscription", {}), doc.get("pattern", "static")
        _check(isinstance(subscription, dict), "subscription must be an object")
        _check(isinstance(pattern, str), "pattern must be a string")
        return ConsumerRegistration(
            tuple(sorted(subscription)), pattern, int(doc.get("timestamp") or 0)
        )


def encode_owner(consumer_id: str) -> bytes:
    return consumer_id.encode()


def decode_owner(data: bytes, path: str = "") -> str:
    """``/consumers/<group>/owners/<topic>/<p>``: the consumer id that owns the partition."""
    with _reading("a consumer id", data, path):
        return data.decode()


def encode_offset(offset: int) -> bytes:
    return str(offset).encode()


def decode_offset(data: bytes, path: str = "") -> int:
    """``/consumers/<group>/offsets/<topic>/<p>``: the next offset to read, decimal text."""
    with _reading("an offset", data, path):
        return int(data.decode().strip())


ZOOKEEPER, KAFKA, LOADER = "zookeeper", "kafka", "loader"
KINDS = {
    ZOOKEEPER: "the paper's ZooKeeper consumers",
    KAFKA: "Kafka clients (coordinated by the brokers)",
    LOADER: "a warehouse loader",
}


def encode_kind(kind: str) -> bytes:
    return kind.encode()


def decode_kind(data: bytes, path: str = "") -> str:
    """``/consumers/<group>/kind``: which kind of group owns the name (one of ``KINDS``, or
    a name a newer version wrote, reported as it is)."""
    with _reading("a group kind", data, path):
        return data.decode()


def encode_plan(plan: dict) -> bytes:
    """``/consumers/<group>/loader/plan``: ``{"created_ms", "partitions": {"<topic>/<p>":
    {"end", "ms"}}}`` (an Avro load adds ``value_schema_id``, the registry id of the reader
    schema of that range), keys sorted so equal plans have equal bytes."""
    return json.dumps(plan, sort_keys=True).encode()


def decode_plan(data: bytes, path: str = "") -> dict:
    """A loader plan, checked: every entry names ``<topic>/<partition>`` and holds integer
    ``end`` and ``ms``."""
    with _reading("a loader plan", data, path):
        doc = json.loads(data)
        for key, entry in doc["partitions"].items():
            int(key.rsplit("/", 1)[1])
            _check(_is_int(entry["end"]) and _is_int(entry["ms"]), "end and ms must be integers")
            _check(_is_int(entry.get("value_schema_id", 0)), "value_schema_id must be an integer")
        return doc


def encode_schema(fields: dict[str, str]) -> bytes:
    """``/consumers/<group>/loader/schemas/<topic>``: an inferred schema, fields in order."""
    return _dumps({"fields": list(fields.items())})


def decode_schema(data: bytes, path: str = "") -> dict[str, str]:
    with _reading("a loader schema", data, path):
        fields = dict(json.loads(data)["fields"])
        _check(
            all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()),
            "field names and types must be strings",
        )
        return fields


LAST_RUN_COUNTS = ("rows", "dead_letters", "files")


def encode_last_run(run: dict) -> bytes:
    """``/consumers/<group>/loader/last_run``: the loader's latest finished run: when
    (``finished_at``, ms), ``rows``, ``dead_letters``, ``files``, ``seconds`` and the
    ``warehouse`` URL it wrote to."""
    return json.dumps(run, sort_keys=True).encode()


def decode_last_run(data: bytes, path: str = "") -> dict:
    with _reading("a loader's last run", data, path):
        doc = json.loads(data)
        _check(_is_int(doc["finished_at"]), "finished_at must be an integer")
        _check(all(_is_int(doc[k]) for k in LAST_RUN_COUNTS), "counts must be integers")
        warehouse = doc.get("warehouse")
        _check(warehouse is None or isinstance(warehouse, str), "warehouse must be a string")
        return {
            "finished_at": doc["finished_at"],
            **{k: doc[k] for k in LAST_RUN_COUNTS},
            "seconds": float(doc["seconds"]),
            "warehouse": warehouse,
        }
