"""Broker configuration: Kafka's property names, types, defaults and checks, in one table.

    >>> config = BrokerConfig.from_file("server.properties", overrides=["broker.id=2"])
    >>> config["log.segment.bytes"]
    1073741824

Bad values raise ConfigError with a message naming the property; unknown names are kept and
logged, as Kafka does.  Several properties have alternative units (``log.retention.ms`` /
``.minutes`` / ``.hours``); the finest unit given wins, as in Kafka.  ConfigError and the
number and choice parsers belong to the storage settings (``broker/log/config.py``): this
module builds on storage, never the reverse.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .log.config import (
    INT_MAX,
    LONG_MAX,
    ConfigError,
    boolean,
    choice,
    cleanup_policy,
    integer,
    ratio,
)
from .protocol import zk_security
from .protocol.properties import PropertiesError
from .protocol.properties import parse_properties as _parse_properties
from .protocol.zk_security import ZkCredentials, ZkSecurityError
from .security.authorizer import AUTHORIZER_CLASSES

log = logging.getLogger(__name__)

# --- the .properties format ----------------------------------------------------------------


def parse_properties(text: str) -> dict[str, str]:
    """Parse Java ``.properties`` text (``broker/protocol/properties.py``, which the clients
    share); a malformed escape is a ConfigError."""
    try:
        return _parse_properties(text)
    except PropertiesError as exc:
        raise ConfigError(str(exc)) from None


# --- typed values --------------------------------------------------------------------------


def _string(name: str, text: str) -> str:
    return text.strip()


def _nonempty(name: str, text: str) -> str:
    if not text.strip():
        raise ConfigError(f"{name}: must not be empty")
    return text.strip()


def _list(name: str, text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{name}: needs at least one entry")
    return items


def _optional_list(name: str, text: str) -> list[str] | None:
    return [item.strip() for item in text.split(",") if item.strip()] or None


def _float_at_least_zero(name: str, text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a number") from None
    if not value >= 0:
        raise ConfigError(f"{name}: {value} is out of range; it must be at least 0")
    return value


def _authorizer_class(name: str, text: str) -> str:
    """``authorizer.class.name``: empty (no authorization) or an ACL authorizer's class."""
    value = text.strip()
    if value and value not in AUTHORIZER_CLASSES:
        raise ConfigError(
            f"{name}: unknown authorizer class {value!r}; use one of "
            f"{', '.join(AUTHORIZER_CLASSES)} or leave it empty for no authorization"
        )
    return value


@dataclass(frozen=True)
class Property:
    """One broker property: its Kafka name, parser, default and meaning."""

    name: str
    parse: Callable[[str, str], Any]
    default: Any
    doc: str


# Broker properties.  Names and meanings are Kafka's; defaults too, except where noted.
PROPERTIES: tuple[Property, ...] = (
    Property("broker.id", integer(-1, INT_MAX), -1, "this broker's id in the cluster"),
    Property("listeners", _list, ["PLAINTEXT://127.0.0.1:9092"], "addresses to listen on"),
    Property("advertised.listeners", _list, None, "addresses clients should use, if not listeners"),
    Property("listener.security.protocol.map", _string, None, "NAME:PROTOCOL per listener"),
    Property("inter.broker.listener.name", _string, None, "listener brokers use among themselves"),
    Property("security.inter.broker.protocol", _string, None, "or: that listener's protocol"),
    Property("zookeeper.connect", _string, "", "host:port[,host:port][/chroot] of ZooKeeper"),
    Property("broker.rack", _string, None, "this broker's rack, told to clients in metadata"),
    Property("zookeeper.session.timeout.ms", integer(1), 18000, "ZooKeeper session timeout"),
    Property(
        "zookeeper.set.acl",
        boolean,
        False,
        "create ZooKeeper nodes owned by this broker's identity, world-readable",
    ),
    Property(
        "zookeeper.jaas.config.file",
        _string,
        None,
        "JAAS file whose Client section (DigestLoginModule) names the ZooKeeper identity",
    ),
    Property(
        "zookeeper.digest.credentials",
        _string,
        None,
        "the ZooKeeper identity as user:password (instead of a JAAS file)",
    ),
    Property(
        "metrics.port",
        integer(0, 65535),
        None,
        "port of the Prometheus /metrics page (off when unset; 0: any free port)",
    ),
    Property(
        "metrics.host", _string, None, "address of the /metrics page (else the listener's host)"
    ),
    Property("log.dirs", _list, None, "directories holding partition logs (else log.dir)"),
    Property("log.dir", _nonempty, "/tmp/kafka-logs", "the log directory when log.dirs is unset"),
    Property("num.partitions", integer(1, INT_MAX), 1, "partitions of an auto-created topic"),
    Property("auto.create.topics.enable", boolean, True, "create topics on first use"),
    Property("message.max.bytes", integer(0, INT_MAX), 1048588, "largest record batch accepted"),
    Property("socket.request.max.bytes", integer(1, INT_MAX), 104857600, "largest request frame"),
    # SASL (broker/security/sasl_settings.py reads these and the listener.name.<l>.* ones).
    # Kafka's default mechanism is GSSAPI, which headrace does not serve: SCRAM is ours.
    Property(
        "sasl.enabled.mechanisms",
        _list,
        ["SCRAM-SHA-256", "SCRAM-SHA-512"],
        "SASL mechanisms SASL listeners accept",
    ),
    Property(
        "sasl.mechanism.inter.broker.protocol",
        _string,
        None,
        "the mechanism brokers log in with (default: the listener's first enabled one)",
    ),
    Property("sasl.jaas.config", _string, None, "JAAS line for every SASL listener"),
    Property(
        "sasl.plain.credentials.file",
        _string,
        None,
        "PLAIN's users: one user:password a line (headrace's property)",
    ),
    Property(
        "connection.failed.authentication.delay.ms",
        integer(0, INT_MAX),
        100,
        "delay before a refused login is answered and its connection closed",
    ),
    Property(
        "fetch.max.bytes",
        integer(1024, INT_MAX),
        57671680,
        "largest fetch response (soft: a first batch larger than it still comes back whole)",
    ),
    Property("log.segment.bytes", integer(14, INT_MAX), 1073741824, "segment size before a roll"),
    Property("log.roll.ms", integer(1), None, "segment age before a roll (overrides .hours)"),
    Property("log.roll.hours", integer(1, INT_MAX), 168, "segment age before a roll, in hours"),
    Property("log.retention.ms", integer(-1), None, "age after which segments go; -1: forever"),
    Property("log.retention.minutes", integer(-1, INT_MAX), None, "retention in minutes"),
    Property("log.retention.hours", integer(-1, INT_MAX), 168, "retention in hours"),
    Property("log.retention.bytes", integer(-1), -1, "size above which old segments go; -1: none"),
    Property(
        "log.retention.check.interval.ms", integer(1), 300000, "how often retention is enforced"
    ),
    Property(
        "group.min.session.timeout.ms", integer(1), 6000, "shortest session a group member may ask"
    ),
    Property(
        "group.max.session.timeout.ms",
        integer(1),
        1800000,
        "longest session a group member may ask",
    ),
    Property(
        "group.initial.rebalance.delay.ms",
        integer(0),
        3000,
        "how long a new group's first rebalance waits for more members",
    ),
    Property(
        "log.flush.interval.messages", integer(1), LONG_MAX, "records appended before an fsync"
    ),
    Property(
        "log.flush.interval.ms",
        integer(0),
        None,
        "ms data may stay unflushed (else the scheduler interval)",
    ),
    Property(
        "log.flush.scheduler.interval.ms",
        integer(0),
        LONG_MAX,
        "how often to check log.flush.interval.ms",
    ),
    Property(
        "log.flush.offset.checkpoint.interval.ms",
        integer(0, INT_MAX),
        60000,
        "how often recovery points are checkpointed",
    ),
    Property(
        "log.flush.start.offset.checkpoint.interval.ms",
        integer(0, INT_MAX),
        60000,
        "how often log start offsets are checkpointed",
    ),
    Property("log.cleanup.policy", cleanup_policy, "delete", "delete, compact or compact,delete"),
    Property("log.cleaner.enable", boolean, True, "run the log cleaner for compacted topics"),
    Property("log.cleaner.threads", integer(1, INT_MAX), 1, "log cleaner threads"),
    Property("log.cleaner.backoff.ms", integer(0), 15000, "cleaner's sleep when nothing to clean"),
    Property(
        "log.cleaner.dedupe.buffer.size",
        integer(0),
        134217728,
        "memory for the cleaners' key -> offset maps, over all threads (24 bytes a key)",
    ),
    Property(
        "log.cleaner.io.max.bytes.per.second",
        _float_at_least_zero,
        float("inf"),
        "the cleaners' read and write rate limit, in bytes per second",
    ),
    Property(
        "log.cleaner.delete.retention.ms",
        integer(0),
        86_400_000,
        "how long tombstones stay after a clean first kept them",
    ),
    Property(
        "log.cleaner.min.cleanable.ratio",
        ratio,
        0.5,
        "dirty share of a log above which it is cleaned",
    ),
    Property(
        "log.cleaner.min.compaction.lag.ms",
        integer(0),
        0,
        "records younger than this are not cleaned",
    ),
    Property(
        "log.cleaner.max.compaction.lag.ms",
        integer(1),
        LONG_MAX,
        "records older than this are cleaned whatever the dirty ratio",
    ),
    Property("log.index.interval.bytes", integer(0, INT_MAX), 4096, "bytes between index entries"),
    Property(
        "log.message.timestamp.type",
        choice("CreateTime", "LogAppendTime"),
        "CreateTime",
        "whose clock stamps records",
    ),
    Property(
        "file.delete.delay.ms", integer(0), 60000, "delay before a deleted segment's files go"
    ),
    Property(
        "producer.id.expiration.ms",
        integer(1, INT_MAX),
        86400000,
        "how long a partition remembers an idle producer id's sequences",
    ),
    # --- security: ACLs ---
    Property(
        "authorizer.class.name",
        _authorizer_class,
        "",
        "the ACL authorizer (Kafka's AclAuthorizer names are accepted); empty: none",
    ),
    Property("super.users", _string, None, "principals allowed everything: User:a;User:b"),
    Property(
        "allow.everyone.if.no.acl.found",
        boolean,
        False,
        "let anyone act on a resource that no ACL names (with an authorizer)",
    ),
    # --- replication ---
    Property(
        "default.replication.factor",
        integer(1, 32767),
        1,
        "replicas of a topic created without a replication factor (or with -1)",
    ),
    Property(
        "min.insync.replicas",
        integer(1, INT_MAX),
        1,
        "in-sync replicas an acks=all produce needs (topic-level too)",
    ),
    Property(
        "replica.lag.time.max.ms",
        integer(1),
        30000,
        "how long a follower may lag before it leaves the ISR",
    ),
    Property(
        "unclean.leader.election.enable",
        boolean,
        False,
        "let an out-of-sync replica lead when no in-sync one is left (data loss; topic-level too)",
    ),
    Property(
        "auto.leader.rebalance.enable",
        boolean,
        True,
        "move leadership back to each partition's first replica when it is in sync",
    ),
    Property(
        "leader.imbalance.check.interval.seconds",
        integer(1),
        300,
        "how often the controller runs the preferred-leader election",
    ),
    Property(
        "controlled.shutdown.enable",
        boolean,
        True,
        "hand leaderships over to other in-sync replicas before stopping",
    ),
    Property(
        "controlled.shutdown.max.retries",
        integer(0, INT_MAX),
        3,
        "attempts of a controlled shutdown before stopping anyway",
    ),
    Property(
        "controlled.shutdown.retry.backoff.ms",
        integer(0),
        5000,
        "wait between controlled shutdown attempts",
    ),
    Property(
        "replica.fetch.max.bytes",
        integer(0, INT_MAX),
        1048576,
        "bytes a follower asks of each partition per fetch (soft, as fetch.max.bytes)",
    ),
    Property(
        "replica.fetch.wait.max.ms",
        integer(0, INT_MAX),
        500,
        "longest wait of a follower's fetch for replica.fetch.min.bytes",
    ),
    Property(
        "replica.fetch.min.bytes",
        integer(1, INT_MAX),
        1,
        "bytes a follower's fetch waits for",
    ),
    Property(
        "replica.fetch.backoff.ms",
        integer(0, INT_MAX),
        1000,
        "a follower's pause after a failed fetch",
    ),
    Property(
        "replica.socket.timeout.ms",
        integer(1, INT_MAX),
        30000,
        "socket timeout of a follower's fetches",
    ),
)

# TLS (broker/security/tls.py), each also per listener: listener.name.<name>.<key>.
SSL_PROPERTIES: tuple[Property, ...] = (
    Property("ssl.keystore.type", _string, "PEM", "keystore format (PEM only)"),
    Property("ssl.keystore.location", _string, None, "PEM file: PKCS#8 key, then its chain"),
    Property("ssl.key.password", _string, None, "password of an encrypted keystore key"),
    Property("ssl.keystore.key", _string, None, "the PEM key inline"),
    Property("ssl.keystore.certificate.chain", _string, None, "the PEM chain inline"),
    Property("ssl.truststore.type", _string, "PEM", "truststore format (PEM only)"),
    Property("ssl.truststore.location", _string, None, "PEM file of trusted CAs"),
    Property("ssl.truststore.certificates", _string, None, "trusted CAs inline (PEM)"),
    Property("ssl.client.auth", _string, "none", "none, requested or required"),
    Property("ssl.enabled.protocols", _list, ["TLSv1.2", "TLSv1.3"], "TLS versions allowed"),
    Property("ssl.protocol", _string, "TLSv1.3", "TLS protocol (TLS, TLSv1.2, TLSv1.3)"),
    Property("ssl.cipher.suites", _optional_list, None, "cipher suites (default: OpenSSL's)"),
    Property("ssl.principal.mapping.rules", _string, "DEFAULT", "certificate subject -> name"),
    Property("ssl.endpoint.identification.algorithm", _string, "https", "'' skips host checks"),
)
PROPERTIES = PROPERTIES + SSL_PROPERTIES
BY_NAME: dict[str, Property] = {p.name: p for p in PROPERTIES}
LISTENER_PREFIX = re.compile(
    r"^listener\.name\.([a-z0-9_-]+)\.((?:ssl|sasl|[a-z0-9-]+\.sasl)\..+)$"
)


def _listener_key(name: str) -> tuple[str, str] | None:
    """``listener.name.<listener>.<key>`` -> (LISTENER, key) when <key> is a property (or a
    SASL mechanism's ``<mechanism>.sasl.*``), else None."""
    match = LISTENER_PREFIX.match(name)
    if match is None:
        return None
    listener, key = match.groups()
    bare = key.split(".", 1)[1] if not key.startswith(("ssl.", "sasl.")) else key
    if key in BY_NAME or bare.startswith("sasl."):
        return listener.upper(), key
    return None


class BrokerConfig(Mapping[str, Any]):
    """Typed broker configuration read from properties; index it by Kafka property name."""

    def __init__(self, values: Mapping[str, str] | None = None):
        raw = dict(values or {})
        self.raw = raw
        self._values: dict[str, Any] = {}
        for prop in PROPERTIES:
            if prop.name in raw:
                self._values[prop.name] = prop.parse(prop.name, raw[prop.name])
            else:
                self._values[prop.name] = prop.default
        # listener.name.<listener>.<key>: <key> for that listener only, over the plain one.
        self.per_listener: dict[tuple[str, str], Any] = {}
        for name in set(raw) - set(BY_NAME):
            found = _listener_key(name)
            if found is not None:
                prop = BY_NAME.get(found[1])
                self.per_listener[found] = prop.parse(name, raw[name]) if prop else raw[name]
        self.unknown = sorted(set(raw) - set(BY_NAME) - {n for n in raw if _listener_key(n)})
        for name in self.unknown:
            log.warning("ignoring unknown broker property %s", name)
        self._derive()

    def for_listener(self, listener: str, key: str) -> Any:
        """``key``'s value for ``listener``: ``listener.name.<listener>.<key>`` if set,
        else ``key``'s."""
        found = self.per_listener.get((listener.upper(), key))
        if found is not None:
            return found
        return self._values.get(key)

    def _derive(self) -> None:
        v = self._values
        if v["log.dirs"] is None:
            v["log.dirs"] = [v["log.dir"]]
        if v["log.roll.ms"] is None:
            v["log.roll.ms"] = v["log.roll.hours"] * 3600_000
        if v["log.retention.ms"] is None:
            if v["log.retention.minutes"] is not None:
                minutes = v["log.retention.minutes"]
                v["log.retention.ms"] = -1 if minutes < 0 else minutes * 60_000
            else:
                hours = v["log.retention.hours"]
                v["log.retention.ms"] = -1 if hours < 0 else hours * 3600_000
        if v["log.flush.interval.ms"] is None:
            v["log.flush.interval.ms"] = v["log.flush.scheduler.interval.ms"]
        if v["advertised.listeners"] is None:
            v["advertised.listeners"] = v["listeners"]
        if v["replica.socket.timeout.ms"] < v["replica.fetch.wait.max.ms"]:
            # Kafka's check: a follower's waiting fetch must not time its socket out.
            raise ConfigError(
                "replica.socket.timeout.ms should always be at least replica.fetch.wait.max.ms "
                "to prevent unnecessary socket timeouts"
            )

    @classmethod
    def from_file(cls, path: str | Path, overrides: Iterable[str] = ()) -> BrokerConfig:
        """Read a ``.properties`` file, then apply ``key=value`` overrides."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            line = exc.object[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"configuration file {path} is not UTF-8 text: byte "
                f"0x{exc.object[exc.start]:02x} on line {line}"
            ) from None
        values = parse_properties(text)
        values.update(parse_overrides(overrides))
        return cls(values)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """``["key=value", ...]`` from the command line into a dict; a missing ``=`` is an error."""
    result = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        result[key.strip()] = value.strip()
    return result


def zookeeper_identity(config: Mapping[str, Any]) -> tuple[ZkCredentials | None, bool]:
    """(the broker's ZooKeeper digest identity or None, ``zookeeper.set.acl``) from
    ``zookeeper.digest.credentials`` or the JAAS file ``zookeeper.jaas.config.file``;
    ``zookeeper.set.acl=true`` without an identity, or an unreadable file, is a ConfigError."""

    def read(path: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read zookeeper.jaas.config.file {path}: {exc}") from None

    try:
        return zk_security.from_properties(dict(config), read, secure_default=False)
    except ZkSecurityError as exc:
        raise ConfigError(str(exc)) from None
