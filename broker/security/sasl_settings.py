"""A listener's SASL settings from the broker's properties, with Kafka's names:

    sasl.enabled.mechanisms                          PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    listener.name.<l>.sasl.enabled.mechanisms        the same, for listener <l>
    listener.name.<l>.<mechanism>.sasl.jaas.config   (mechanism in lower case) PLAIN's
                                                     user_<name>="<password>" options; the
                                                     broker's own login on that listener
    sasl.jaas.config                                 the same for every listener
    sasl.mechanism.inter.broker.protocol             the mechanism brokers log in with
    sasl.plain.credentials.file                      headrace's: PLAIN's users in a file,
                                                     one ``user:password`` a line, # comments
    connection.failed.authentication.delay.ms        delay before a refusal is answered

GSSAPI and OAUTHBEARER are refused with a clear message: headrace does not serve them.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..log.config import ConfigError
from ..protocol.jaas import JaasConfig, JaasConfigError, parse_jaas
from .mechanisms import SERVED
from .sasl import ListenerSasl


def _listener_value(config, listener: str, name: str):
    """``listener.name.<listener>.<name>`` if set, else the broker-wide ``name``."""
    key = f"listener.name.{listener.lower()}.{name}"
    if key in config.raw:
        return config.raw[key].strip()
    return config[name] if name in config else config.raw.get(name)


def enabled_mechanisms(config, listener: str) -> tuple[str, ...]:
    value = _listener_value(config, listener, "sasl.enabled.mechanisms")
    names = value if isinstance(value, list) else [v.strip() for v in value.split(",")]
    names = [n.upper() for n in names if n]
    for name in names:
        if name not in SERVED:
            raise ConfigError(
                f"sasl.enabled.mechanisms: {name} is not served by headrace; use "
                f"{', '.join(SERVED)}"
            )
    if not names:
        raise ConfigError(f"listener {listener}: sasl.enabled.mechanisms is empty")
    return tuple(names)


def jaas_config(config, listener: str, mechanism: str) -> JaasConfig | None:
    """The JAAS line that applies to ``mechanism`` on ``listener``, parsed, if any."""
    text = _listener_value(config, listener, f"{mechanism.lower()}.sasl.jaas.config")
    if not text:
        text = config["sasl.jaas.config"]
    if not text:
        return None
    try:
        return parse_jaas(text)
    except JaasConfigError as exc:
        raise ConfigError(f"listener {listener}: {exc}") from None


def read_plain_credentials(path: str) -> dict[str, str]:
    """``user:password`` lines (blank lines and ``#`` comments skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"sasl.plain.credentials.file {path}: {exc}") from None
    users = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user:
            raise ConfigError(
                f"sasl.plain.credentials.file {path} line {number}: not user:password"
            )
        users[user] = password
    return users


def listener_sasl(config, listener: str, credential_of) -> ListenerSasl:
    """The settings of SASL listener ``listener``; ``credential_of(user, mechanism)`` looks
    SCRAM credentials up (the broker's ZooKeeper cache)."""
    mechanisms = enabled_mechanisms(config, listener)
    users: dict[str, str] = {}
    if "PLAIN" in mechanisms:
        jaas = jaas_config(config, listener, "PLAIN")
        if jaas is not None:
            users.update(jaas.plain_users)
        if config["sasl.plain.credentials.file"]:
            users.update(read_plain_credentials(config["sasl.plain.credentials.file"]))
    return ListenerSasl(
        mechanisms,
        users.get,
        credential_of,
        config["connection.failed.authentication.delay.ms"],
        os.urandom(32),
    )


def inter_broker_login(config, listener: str) -> tuple[str, str, str] | None:
    """(mechanism, username, password) the broker logs in with on SASL ``listener``, from
    ``sasl.mechanism.inter.broker.protocol`` and that mechanism's JAAS line; None if no
    JAAS line names a username."""
    mechanism = (
        config["sasl.mechanism.inter.broker.protocol"] or enabled_mechanisms(config, listener)[0]
    )
    if mechanism.upper() not in SERVED:
        raise ConfigError(f"sasl.mechanism.inter.broker.protocol {mechanism} is not served")
    jaas = jaas_config(config, listener, mechanism)
    if jaas is None or "username" not in jaas.options:
        return None
    return mechanism.upper(), jaas.options["username"], jaas.options.get("password", "")


def broker_client_login(config) -> tuple[str, str, str] | None:
    """What the broker's own clients (replica fetchers, controlled shutdown) log in with:
    on a SASL inter-broker listener (``inter.broker.listener.name``, else the first of
    ``listeners``), ``inter_broker_login``; None on other listeners."""
    name = config.raw.get("inter.broker.listener.name", "").strip().upper()
    if not name:
        name = config["listeners"][0].split("://", 1)[0].strip().upper()
    protocol = name
    for pair in config.raw.get("listener.security.protocol.map", "").split(","):
        key, _, value = pair.partition(":")
        if key.strip().upper() == name and value.strip():
            protocol = value.strip().upper()
    if not protocol.startswith("SASL_"):
        return None
    login = inter_broker_login(config, name)
    if login is None:
        raise ConfigError(
            f"inter-broker listener {name} is {protocol}: set "
            f"listener.name.{name.lower()}.<mechanism>.sasl.jaas.config with the broker's "
            "username and password"
        )
    return login


__all__ = [
    "broker_client_login",
    "enabled_mechanisms",
    "inter_broker_login",
    "jaas_config",
    "listener_sasl",
    "read_plain_credentials",
]
