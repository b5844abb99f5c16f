"""Topic and broker configs over the Kafka admin APIs: a small blocking client
(DescribeConfigs, IncrementalAlterConfigs), ``headrace configs`` (kafka-configs' flags and
output) and the config parts of ``headrace topics`` (describe's configs, ``topics alter``).

    >>> describe_configs("127.0.0.1:9092", ResourceType.TOPIC, "clicks")   # entries, as dicts
    >>> alter_configs("127.0.0.1:9092", ResourceType.TOPIC, "clicks",
    ...               set_configs={"retention.ms": "86400000"}, delete=["segment.bytes"])
"""

from __future__ import annotations

import argparse
import re
import sys

from broker.protocol.config_apis import AlterConfigOp, ConfigSource, ResourceType
from broker.protocol.errors import BrokerNotAvailableError, KafkaError, error_for_code
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection, connect_any
from consumers.security import PLAINTEXT, ClientSecurity

_DYNAMIC = {
    ConfigSource.DYNAMIC_TOPIC_CONFIG,
    ConfigSource.DYNAMIC_BROKER_CONFIG,
    ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
    ConfigSource.DYNAMIC_BROKER_LOGGER_CONFIG,
}


class ConfigCommandError(ValueError):
    """A ``--add-config`` or ``--delete-config`` argument that does not parse."""


# --- the client ------------------------------------------------------------------------------


def _connection(
    bootstrap: str, kind: int, name: str, security: ClientSecurity = PLAINTEXT
) -> BrokerConnection:
    """A connection to the broker a resource must be sent to: the broker itself for its own
    (and its loggers') configs, any broker otherwise."""
    conn = connect_any(bootstrap, security=security)
    if kind not in (ResourceType.BROKER, ResourceType.BROKER_LOGGER) or name == "":
        return conn
    with conn:
        body = conn.request(ApiKey.METADATA, {"topics": [], "allow_auto_topic_creation": False})
    for broker in body["brokers"]:
        if str(broker["node_id"]) == name:
            return BrokerConnection(broker["host"], broker["port"], security=security)
    raise BrokerNotAvailableError(f"broker {name} is not in the cluster")


def _raise_for(result: dict) -> None:
    if result["error_code"]:
        error = error_for_code(result["error_code"])
        raise error(result["error_message"] or error.description)


def describe_many(conn, resources: list[tuple[int, str]], synonyms: bool = True) -> list[dict]:
    """Each resource's DescribeConfigs result (error code, message and configs), in one
    request over ``conn``."""
    body = conn.request(
        ApiKey.DESCRIBE_CONFIGS,
        {
            "resources": [
                {"resource_type": kind, "resource_name": name, "configuration_keys": None}
                for kind, name in resources
            ],
            "include_synonyms": synonyms,
            "include_documentation": False,
        },
    )
    return body["results"]


def describe_configs(
    bootstrap: str, kind: int, name: str, security: ClientSecurity = PLAINTEXT
) -> list[dict]:
    """The configs of one resource (with synonyms); a refusal raises its KafkaError."""
    with _connection(bootstrap, kind, name, security) as conn:
        result = describe_many(conn, [(kind, name)])[0]
    _raise_for(result)
    return result["configs"]


def alter_configs(
    bootstrap: str,
    kind: int,
    name: str,
    set_configs: dict[str, str] | None = None,
    delete: list[str] = (),
    validate_only: bool = False,
    security: ClientSecurity = PLAINTEXT,
) -> None:
    """Set and delete configs of one resource with IncrementalAlterConfigs; a refusal raises
    its KafkaError."""
    configs = [
        {"name": k, "config_operation": AlterConfigOp.SET, "value": v}
        for k, v in (set_configs or {}).items()
    ] + [{"name": k, "config_operation": AlterConfigOp.DELETE, "value": None} for k in delete]
    request = {
        "resources": [{"resource_type": kind, "resource_name": name, "configs": configs}],
        "validate_only": validate_only,
    }
    with _connection(bootstrap, kind, name, security) as conn:
        body = conn.request(ApiKey.INCREMENTAL_ALTER_CONFIGS, request)
    _raise_for(body["responses"][0])


# --- output ----------------------------------------------------------------------------------


def _source(code: int) -> str:
    try:
        return ConfigSource(code).name
    except ValueError:
        return "UNKNOWN"


def entry_line(entry: dict) -> str:
    """One config as kafka-configs describes it."""
    synonyms = ", ".join(
        f"{_source(s['source'])}:{s['name']}={s['value']}" for s in entry["synonyms"]
    )
    sensitive = "true" if entry["is_sensitive"] else "false"
    return f"  {entry['name']}={entry['value']} sensitive={sensitive} synonyms={{{synonyms}}}"


def topic_configs_texts(conn, topics: list[str]) -> dict[str, str]:
    """What ``headrace topics describe`` shows as each topic's configs: those not at their
    default, each with its source (``retention.ms=1000 (DYNAMIC_TOPIC_CONFIG)``)."""
    if not topics:
        return {}
    texts = {}
    for result in describe_many(conn, [(ResourceType.TOPIC, t) for t in topics], False):
        texts[result["resource_name"]] = ", ".join(
            f"{e['name']}={e['value']} ({_source(e['config_source'])})"
            for e in result["configs"]
            if e["config_source"] != ConfigSource.DEFAULT_CONFIG
        )
    return texts


# --- command-line arguments ------------------------------------------------------------------


def parse_add_config(text: str) -> dict[str, str]:
    """kafka-configs' ``--add-config``: ``k1=v1,k2=[v1,v2]`` (brackets group a list value)."""
    result = {}
    for item in re.findall(r"(?:[^,\[]|\[[^\]]*\])+", text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigCommandError(f"--add-config {item!r} is not key=value")
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        result[key.strip()] = value
    return result


def _names(items: list[str]) -> list[str]:
    return [n.strip() for item in items for n in item.split(",") if n.strip()]


def add_topics_alter(topics_sub) -> argparse.ArgumentParser:
    """``headrace topics alter``'s parser, with the config flags."""
    alter = topics_sub.add_parser("alter", help="change a topic's configs or partition count")
    alter.add_argument("--topic", required=True)
    alter.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a topic config, e.g. retention.ms=86400000 (repeatable)",
    )
    alter.add_argument(
        "--delete-config",
        action="append",
        default=[],
        metavar="KEY",
        help="remove a topic config's override (repeatable)",
    )
    return alter


def add_parser(sub) -> None:
    """``headrace configs``."""
    p = sub.add_parser(
        "configs", help="describe or alter topic and broker configs (as kafka-configs)"
    )
    p.add_argument("--bootstrap-server", default="127.0.0.1:9092", help="host:port of a broker")
    entity = p.add_mutually_exclusive_group(required=True)
    entity.add_argument("--topic", help="a topic's configs")
    entity.add_argument("--broker", help="a broker's configs, by id")
    entity.add_argument(
        "--broker-defaults", action="store_true", help="the cluster-wide broker defaults"
    )
    entity.add_argument("--broker-logger", help="a broker's loggers, by broker id")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--describe", action="store_true")
    action.add_argument("--alter", action="store_true")
    p.add_argument("--all", action="store_true", help="with --describe: every config")
    p.add_argument("--add-config", action="append", default=[], metavar="K=V[,K=[A,B]]")
    p.add_argument("--delete-config", action="append", default=[], metavar="K[,K]")
    p.set_defaults(func=run_configs_command)


# --- commands --------------------------------------------------------------------------------


def _fail(what: str, exc: Exception) -> int:
    """Exit status 1 after a one-line message: ``headrace topics: INVALID_CONFIG: why``."""
    if isinstance(exc, KafkaError):
        print(f"headrace {what}: {exc.name}: {exc.args[0]}", file=sys.stderr)
    else:
        print(f"headrace {what}: {exc}", file=sys.stderr)
    return 1


def run_configs_command(args) -> int:
    if args.topic is not None:
        kind, name, label = ResourceType.TOPIC, args.topic, f"topic {args.topic}"
    elif args.broker_logger is not None:
        kind, name = ResourceType.BROKER_LOGGER, args.broker_logger
        label = f"broker-logger {name}"
    elif args.broker_defaults:
        kind, name, label = ResourceType.BROKER, "", "brokers in the cluster"
    else:
        kind, name, label = ResourceType.BROKER, args.broker, f"broker {args.broker}"
    try:
        if args.describe:
            entries = describe_configs(args.bootstrap_server, kind, name, args.security)
            every = args.all or kind == ResourceType.BROKER_LOGGER
            heading = "All" if every else "Dynamic"
            print(f"{'Default' if args.broker_defaults else heading} configs for {label} are:")
            for entry in entries:
                if every or entry["config_source"] in _DYNAMIC:
                    print(entry_line(entry))
            return 0
        set_configs = {}
        for item in args.add_config:
            set_configs.update(parse_add_config(item))
        delete = _names(args.delete_config)
        if not set_configs and not delete:
            print(
                "headrace configs: --alter needs --add-config or --delete-config", file=sys.stderr
            )
            return 2
        alter_configs(
            args.bootstrap_server, kind, name, set_configs, delete, security=args.security
        )
    except ConfigCommandError as exc:
        print(f"headrace configs: {exc}", file=sys.stderr)
        return 2
    except (KafkaError, ConnectionError) as exc:
        return _fail("configs", exc)
    what = "default config" if args.broker_defaults else "config"
    print(f"Completed updating {what} for {label}.")
    return 0


def run_topics_alter(bootstrap: str, args) -> int:
    """``headrace topics alter --topic T --config k=v --delete-config k``."""
    set_configs = {}
    for item in args.config:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            print(f"headrace topics: --config {item!r} is not key=value", file=sys.stderr)
            return 2
        set_configs[key.strip()] = value.strip()
    delete = _names(args.delete_config)
    if not set_configs and not delete:
        print("headrace topics: alter needs --config or --delete-config", file=sys.stderr)
        return 2
    try:
        alter_configs(
            bootstrap, ResourceType.TOPIC, args.topic, set_configs, delete, security=args.security
        )
    except KafkaError as exc:
        return _fail("topics", exc)
    print(f"altered the configs of topic {args.topic}")
    return 0


__all__ = [
    "ConfigCommandError",
    "add_parser",
    "add_topics_alter",
    "alter_configs",
    "describe_configs",
    "describe_many",
    "entry_line",
    "parse_add_config",
    "run_configs_command",
    "run_topics_alter",
    "topic_configs_texts",
]
