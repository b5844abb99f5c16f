"""What DescribeConfigs answers, and how the alter APIs change a topic's overrides: pure
functions over the broker's configuration and a topic's overrides (no ZooKeeper, no I/O).

A topic config's value is its override, else the broker property of the same meaning (set
dynamically, in the broker's file or by default); its synonyms list them in Kafka's order -
the override (DYNAMIC_TOPIC_CONFIG), the broker's own dynamic config (DYNAMIC_BROKER_CONFIG),
every broker's (DYNAMIC_DEFAULT_BROKER_CONFIG), the file (STATIC_BROKER_CONFIG), the default
(DEFAULT_CONFIG) - and its source is the first of them.  The topic configs
are the rows of ``broker/log/config.py``'s ``_TOPIC_PROPERTIES``, read generically, so a new
row is described at once; their Kafka types and documentation are kept here.

    >>> entry = topic_entries(BrokerConfig({}), {"retention.ms": "1000"}, True, False)[2]
    >>> entry["name"], entry["value"], ConfigSource(entry["config_source"]).name
    ('retention.ms', '1000', 'DYNAMIC_TOPIC_CONFIG')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .config import BY_NAME, PROPERTIES, BrokerConfig, Property
from .log.config import _TOPIC_PROPERTIES, INT_MAX, ConfigError, LogConfig
from .protocol import errors
from .protocol.config_apis import AlterConfigOp, ConfigSource, ConfigType
from .protocol.zookeeper import DEFAULT_BROKER

T = ConfigType
# Kafka's type and a line of documentation of each topic config (TopicConfig's docs, short).
TOPIC_CONFIGS: dict[str, tuple[ConfigType, str]] = {
    "segment.bytes": (T.INT, "The segment file size for the log."),
    "segment.ms": (T.LONG, "The time after which the log rolls a new segment even if not full."),
    "retention.ms": (
        T.LONG,
        "The longest time a log segment is kept before it is deleted; -1: no time limit.",
    ),
    "retention.bytes": (
        T.LONG,
        "The largest size a partition may grow to before old segments are deleted; -1: none.",
    ),
    "flush.messages": (T.LONG, "The number of messages appended before the log is fsynced."),
    "flush.ms": (T.LONG, "The longest time a message may stay in the log before an fsync."),
    "index.interval.bytes": (T.INT, "How often an offset index entry is added, in log bytes."),
    "max.message.bytes": (T.INT, "The largest record batch size the topic accepts."),
    "file.delete.delay.ms": (T.LONG, "The time to wait before deleting a file from disk."),
    "message.timestamp.type": (
        T.STRING,
        "Whose clock stamps a message: CreateTime (the producer's) or LogAppendTime.",
    ),
    "min.insync.replicas": (
        T.INT,
        "The fewest in-sync replicas that must acknowledge an acks=all write.",
    ),
    "unclean.leader.election.enable": (
        T.BOOLEAN,
        "Whether a replica out of the ISR may be elected leader as a last resort (data loss).",
    ),
    "cleanup.policy": (T.LIST, "The retention policy of old segments: delete, compact or both."),
    "delete.retention.ms": (
        T.LONG,
        "How long delete tombstones are kept in a compacted log after it was cleaned.",
    ),
    "min.cleanable.dirty.ratio": (
        T.DOUBLE,
        "The share of the log that must be dirty (not yet compacted) before it is cleaned.",
    ),
    "min.compaction.lag.ms": (T.LONG, "The shortest time a message stays uncompacted."),
    "max.compaction.lag.ms": (
        T.LONG,
        "The longest time a message may stay uncompacted before the log is cleaned.",
    ),
}
del T

DEFAULT_ENTITY = DEFAULT_BROKER  # the dynamic broker configs of every broker
Dynamic = Mapping[str, Mapping[str, str]]  # dynamic broker configs: entity -> name -> value
_NONE: Dynamic = {}
# The broker properties that can change while brokers run (Kafka's dynamic broker configs):
# the defaults of topic configs, bar unclean leader election (the controller reads it once).
DYNAMIC_BROKER_CONFIGS = frozenset(b for _, _, b, _ in _TOPIC_PROPERTIES) - {
    "unclean.leader.election.enable"
}

# Broker properties of one meaning in several units, finest first (Kafka's synonyms).
_SYNONYM_GROUPS = (
    ("log.roll.ms", "log.roll.hours"),
    ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
    ("log.flush.interval.ms", "log.flush.scheduler.interval.ms"),
)


def format_value(value: Any) -> str | None:
    """A config value as Kafka writes it: true/false, comma-separated lists, None as null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(map(str, value))
    return str(value)


def broker_synonyms(name: str) -> tuple[str, ...]:
    """``name`` and the coarser broker properties standing for it (``log.retention.ms``:
    also ``.minutes`` and ``.hours``)."""
    for group in _SYNONYM_GROUPS:
        if name in group:
            return group[group.index(name) :]
    return (name,)


def _sensitive(name: str) -> bool:
    return "password" in name or name.endswith((".secret", ".jaas.config", ".credentials"))


def broker_config_type(prop: Property, value: Any) -> ConfigType:
    """A broker property's Kafka type, from its value and parser: a whole number whose parser
    refuses 2^31 is an INT, else a LONG."""
    if _sensitive(prop.name):
        return ConfigType.PASSWORD
    if isinstance(value, bool):
        return ConfigType.BOOLEAN
    if isinstance(value, list):
        return ConfigType.LIST
    if isinstance(value, float):
        return ConfigType.DOUBLE
    if isinstance(value, str):
        return ConfigType.STRING
    try:
        if not isinstance(prop.parse(prop.name, "1"), int):
            return ConfigType.STRING
        prop.parse(prop.name, str(INT_MAX + 1))
    except ConfigError:
        return ConfigType.INT
    return ConfigType.LONG


def _synonym(name: str, value: str | None, source: ConfigSource) -> dict:
    return {"name": name, "value": value, "source": source}


def effective_config(static: BrokerConfig, dynamic: Dynamic) -> BrokerConfig:
    """The broker's configuration with its dynamic configs over its file, as Kafka ranks
    them: this broker's own (``/config/brokers/<id>``), then the cluster-wide defaults
    (``<default>``), then the file.  A bad dynamic value raises ConfigError."""
    own, default = _dynamic_tiers(static, dynamic)
    if not own and not default:
        return static
    known = {k: v for k, v in static.raw.items() if k in BY_NAME}
    return BrokerConfig({**known, **default, **own})


def _in_effect(static: BrokerConfig, dynamic: Dynamic) -> BrokerConfig:
    """The configuration in effect: a bad dynamic value (written by hand) is not applied by
    the broker (``Broker._apply_dynamic_configs``), so its file's values are shown."""
    try:
        return effective_config(static, dynamic)
    except ConfigError:
        return static


def _dynamic_tiers(static: BrokerConfig, dynamic: Dynamic) -> tuple[Mapping, Mapping]:
    return dynamic.get(str(static["broker.id"]), {}), dynamic.get(DEFAULT_ENTITY, {})


def _broker_synonyms(
    static: BrokerConfig, dynamic: Dynamic, name: str, sensitive: bool
) -> list[dict]:
    """The broker-level synonyms of ``name``: this broker's dynamic configs, the dynamic
    defaults, the file, then the defaults."""
    names = broker_synonyms(name)
    own, default = _dynamic_tiers(static, dynamic)
    found = [
        _synonym(n, None if sensitive else values[n], source)
        for source, values in (
            (ConfigSource.DYNAMIC_BROKER_CONFIG, own),
            (ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, default),
            (ConfigSource.STATIC_BROKER_CONFIG, static.raw),
        )
        for n in names
        if n in values
    ]
    for n in names:
        prop = BY_NAME.get(n)
        if prop is not None and prop.default is not None:
            value = None if sensitive else format_value(prop.default)
            found.append(_synonym(n, value, ConfigSource.DEFAULT_CONFIG))
    return found


def _entry(name, value, synonyms, read_only, sensitive, config_type, doc, include_synonyms):
    source = synonyms[0]["source"] if synonyms else ConfigSource.DEFAULT_CONFIG
    return {
        "name": name,
        "value": None if sensitive else value,
        "read_only": read_only,
        "config_source": source,
        "is_default": source == ConfigSource.DEFAULT_CONFIG,
        "is_sensitive": sensitive,
        "synonyms": synonyms if include_synonyms else [],
        "config_type": config_type,
        "documentation": doc,
    }


def _topic_value(name: str, broker_value: Any, overrides: Mapping[str, str], parse) -> str | None:
    if name not in overrides:
        return format_value(broker_value)
    try:
        return format_value(parse(name, str(overrides[name])))
    except ConfigError:  # written by hand: shown as it is, the broker keeps its last good one
        return overrides[name]


def topic_entries(
    broker: BrokerConfig,
    overrides: Mapping[str, str],
    include_synonyms: bool,
    include_documentation: bool,
    dynamic: Dynamic = _NONE,
) -> list[dict]:
    """Every topic config of a topic with ``overrides``, as DescribeConfigs entries, on a
    broker with the file ``broker`` and the ``dynamic`` broker configs."""
    effective = _in_effect(broker, dynamic)
    entries = []
    for _, name, broker_name, parse in _TOPIC_PROPERTIES:
        prop = BY_NAME[broker_name]
        config_type, doc = TOPIC_CONFIGS.get(name, (None, prop.doc))
        if config_type is None:
            config_type = broker_config_type(prop, effective[broker_name])
        synonyms = _broker_synonyms(broker, dynamic, broker_name, False)
        if name in overrides:
            synonyms.insert(0, _synonym(name, overrides[name], ConfigSource.DYNAMIC_TOPIC_CONFIG))
        value = _topic_value(name, effective[broker_name], overrides, parse)
        shown = doc if include_documentation else None
        entries.append(
            _entry(name, value, synonyms, False, False, config_type, shown, include_synonyms)
        )
    return entries


def broker_entries(
    broker: BrokerConfig,
    include_synonyms: bool,
    include_documentation: bool,
    dynamic: Dynamic = _NONE,
) -> list[dict]:
    """Every property of this broker, as DescribeConfigs entries: read-only but for those
    of ``DYNAMIC_BROKER_CONFIGS``; names in its file headrace does not know are listed too,
    as Kafka lists them, with their values hidden (their type is unknown: they may be
    secrets)."""
    effective = _in_effect(broker, dynamic)
    entries = []
    for prop in PROPERTIES:
        value, sensitive = effective[prop.name], _sensitive(prop.name)
        synonyms = _broker_synonyms(broker, dynamic, prop.name, sensitive)
        entries.append(
            _entry(
                prop.name,
                format_value(value),
                synonyms,
                prop.name not in DYNAMIC_BROKER_CONFIGS,
                sensitive,
                broker_config_type(prop, value),
                prop.doc if include_documentation else None,
                include_synonyms,
            )
        )
    for name in broker.unknown:
        synonyms = [_synonym(name, None, ConfigSource.STATIC_BROKER_CONFIG)]
        entries.append(
            _entry(name, None, synonyms, True, True, ConfigType.UNKNOWN, None, include_synonyms)
        )
    return entries


def default_broker_entries(
    broker: BrokerConfig, dynamic: Dynamic, include_synonyms: bool, include_documentation: bool
) -> list[dict]:
    """The cluster-wide dynamic defaults (the BROKER resource ``""``): the configs set in
    ``/config/brokers/<default>``, each with only that synonym, as Kafka answers."""
    default = dynamic.get(DEFAULT_ENTITY, {})
    entries = []
    for prop in PROPERTIES:
        if prop.name in default:
            source = ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG
            synonyms = [_synonym(prop.name, default[prop.name], source)]
            entries.append(
                _entry(
                    prop.name,
                    default[prop.name],
                    synonyms,
                    False,
                    _sensitive(prop.name),
                    broker_config_type(prop, broker[prop.name]),
                    prop.doc if include_documentation else None,
                    include_synonyms,
                )
            )
    return entries


def select(entries: list[dict], keys: Iterable[str] | None) -> list[dict]:
    """The entries named in ``keys`` (None or empty: all), as Kafka filters them."""
    if not keys:
        return entries
    wanted = set(keys)
    return [e for e in entries if e["name"] in wanted]


# --- changes ---------------------------------------------------------------------------------


def check_topic_overrides(overrides: Mapping[str, str]) -> None:
    """Raise InvalidConfigError (with the reason) unless ``overrides`` is a valid set of
    topic configs: the check CreateTopics makes."""
    try:
        LogConfig().with_overrides(overrides)
    except ConfigError as exc:
        raise errors.InvalidConfigError(str(exc)) from None


def check_broker_change(broker: BrokerConfig, entity: str, new: Mapping[str, str]) -> None:
    """Raise InvalidRequestError, as Kafka does, unless ``new`` is a valid set of dynamic
    configs for the broker ``entity`` (an id or ``<default>``)."""
    resource = f"ConfigResource(type=BROKER, name='{'' if entity == DEFAULT_ENTITY else entity}')"
    static = sorted(set(new) - DYNAMIC_BROKER_CONFIGS)
    if static:
        raise errors.InvalidRequestError(
            f"Invalid config value for resource {resource}: Cannot update these configs "
            f"dynamically: Set({', '.join(static)})"
        )
    try:
        effective_config(broker, {str(broker["broker.id"]): new})  # whichever broker it is for
    except ConfigError as exc:
        raise errors.InvalidRequestError(
            f"Invalid config value for resource {resource}: {exc}"
        ) from None


def check_unique(names: list[str]) -> None:
    """Kafka refuses a resource that names a config twice in one request."""
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise errors.InvalidRequestError(
            f"Error due to duplicate config keys: {', '.join(sorted(seen))}"
        )


def list_configs() -> frozenset[str]:
    """The topic configs of the LIST type, the only ones APPEND and SUBTRACT apply to."""
    return frozenset(n for n, (t, _) in TOPIC_CONFIGS.items() if t == ConfigType.LIST)


def apply_incremental(
    current: Mapping[str, str],
    operations: Iterable[tuple[str, int, str | None]],
    defaults: Mapping[str, str | None],
    list_names: frozenset[str] | None = None,
) -> dict[str, str]:
    """The overrides after IncrementalAlterConfigs' ``(name, operation, value)`` steps, by
    Kafka's rules: SET and DELETE any config; APPEND adds the values a list config lacks (to
    its ``defaults`` value when not overridden), SUBTRACT removes them; either on a config of
    another type is INVALID_CONFIG, an unknown operation INVALID_REQUEST."""
    list_names = list_configs() if list_names is None else list_names
    result = dict(current)
    for name, operation, value in operations:
        if operation == AlterConfigOp.SET:
            result[name] = "" if value is None else value
        elif operation == AlterConfigOp.DELETE:
            result.pop(name, None)
        elif operation in (AlterConfigOp.APPEND, AlterConfigOp.SUBTRACT):
            verb = "append" if operation == AlterConfigOp.APPEND else "subtract"
            if name not in list_names:
                raise errors.InvalidConfigError(
                    f"Config value {verb} is not allowed for config key: {name}"
                )
            given = [v.strip() for v in (value or "").split(",") if v.strip()]
            if operation == AlterConfigOp.APPEND:
                old = result.get(name, defaults.get(name) or "")
                items = [v for v in old.split(",") if v]
                items += [v for v in given if v not in items]
            else:
                items = [v for v in result.get(name, "").split(",") if v and v not in given]
            result[name] = ",".join(items)
        else:
            raise errors.InvalidRequestError(f"Unknown alter config operation {operation}")
    return result


__all__ = [
    "DEFAULT_ENTITY",
    "DYNAMIC_BROKER_CONFIGS",
    "TOPIC_CONFIGS",
    "apply_incremental",
    "broker_config_type",
    "broker_entries",
    "broker_synonyms",
    "check_broker_change",
    "check_topic_overrides",
    "check_unique",
    "default_broker_entries",
    "effective_config",
    "format_value",
    "list_configs",
    "select",
    "topic_entries",
]
