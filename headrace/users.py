"""``headrace users``: SCRAM users, kept in ZooKeeper as Kafka keeps them, managed either
straight in ZooKeeper (``--zookeeper``, as ``kafka-configs --zookeeper``) or through a broker
with AlterUserScramCredentials and DescribeUserScramCredentials (``--bootstrap-server``,
with ``--command-config`` for a secured listener).  On a cluster with ``zookeeper.set.acl``,
``--zookeeper-auth-file`` names the brokers' ZooKeeper identity (credential nodes are
readable by their creator alone).

    headrace users add --user alice --mechanism SCRAM-SHA-512 [--iterations 8192]
                       [--password-file F] (--zookeeper Z | --bootstrap-server B)
    headrace users delete --user alice [--mechanism SCRAM-SHA-512] (--zookeeper Z | ...)
    headrace users list (--zookeeper Z | --bootstrap-server B)

The password comes from the first line of ``--password-file`` or from a prompt (never the
command line); only its salted form leaves this process.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from broker.log import ConfigError
from broker.protocol.errors import KafkaError, error_for_code
from broker.protocol.registry import ApiKey
from broker.protocol.sasl_apis import ScramMechanism
from broker.protocol.security_nodes import (
    MIN_ITERATIONS,
    SCRAM_MECHANISMS,
    salted_password,
    scram_credential,
)
from broker.protocol.zk_security import ZkSecurityError

from .zk_auth import add_auth_argument, credentials_from_args


def add_parser(sub) -> None:
    """``headrace users add|delete|list``."""
    p = sub.add_parser("users", help="add, delete or list SCRAM users (as kafka-configs)")
    actions = p.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="set a user's SCRAM credential")
    add.add_argument("--user", required=True)
    add.add_argument("--mechanism", default="SCRAM-SHA-512", choices=sorted(SCRAM_MECHANISMS))
    add.add_argument("--iterations", type=int, default=MIN_ITERATIONS)
    add.add_argument("--password-file", help="a file whose first line is the password")
    delete = actions.add_parser("delete", help="remove a user's SCRAM credentials")
    delete.add_argument("--user", required=True)
    delete.add_argument("--mechanism", choices=sorted(SCRAM_MECHANISMS), help="default: all")
    listing = actions.add_parser("list", help="users and their SCRAM mechanisms")
    for action in (add, delete, listing):
        where = action.add_mutually_exclusive_group(required=True)
        where.add_argument("--zookeeper", help="host:port[/chroot] of the cluster's ZooKeeper")
        where.add_argument("--bootstrap-server", help="host:port of any broker")
        action.add_argument(
            "--command-config", help="client properties (security.protocol, sasl.*)"
        )
        add_auth_argument(action)
    p.set_defaults(func=run)


def _password(args) -> str:
    if args.password_file:
        try:
            text = Path(args.password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--password-file {args.password_file}: {exc}") from None
        password = text.splitlines()[0] if text else ""
    else:
        password = getpass.getpass(f"password for {args.user}: ")
    if not password:
        raise ConfigError("the password must not be empty")
    return password


def run(args) -> int:
    if args.action == "add" and args.iterations < MIN_ITERATIONS:
        raise ConfigError(f"--iterations must be at least {MIN_ITERATIONS}")
    if args.zookeeper:
        return _run_zookeeper(args)
    return _run_bootstrap(args)


# --- straight in ZooKeeper -------------------------------------------------------------------


def _run_zookeeper(args) -> int:
    from broker.protocol.zk_client import zookeeper_client
    from broker.security.credentials import delete_credential, read_credentials, write_credential

    try:
        credentials = credentials_from_args(args)
        # With an identity, nodes are created as a secured cluster's brokers create them:
        # credentials readable by that identity alone (the brokers' own, so they can log
        # users in).
        client = zookeeper_client(args.zookeeper, credentials, secure=credentials is not None)
    except ZkSecurityError as exc:
        raise ConfigError(str(exc)) from None
    client.start(timeout=15)
    try:
        if args.action == "add":
            credential = scram_credential(args.mechanism, _password(args), None, args.iterations)
            write_credential(client, args.user, credential)
            print(f"set {args.mechanism} credential of user {args.user}")
            return 0
        if args.action == "delete":
            mechanisms = [args.mechanism] if args.mechanism else sorted(SCRAM_MECHANISMS)
            removed = [m for m in mechanisms if delete_credential(client, args.user, m)]
            if not removed:
                print(f"user {args.user} has no such SCRAM credential", file=sys.stderr)
                return 1
            print(f"removed {', '.join(removed)} credential of user {args.user}")
            return 0
        for user, credentials in read_credentials(client).items():
            _print_user(user, {m: c.iterations for m, c in credentials.items()})
        return 0
    finally:
        client.stop()
        client.close()


def _print_user(user: str, iterations: dict[str, int]) -> None:
    configs = ", ".join(f"{m}=iterations={i}" for m, i in sorted(iterations.items()))
    print(f"SCRAM credential configs for user-principal '{user}' are {configs}")


# --- through a broker ------------------------------------------------------------------------


def _connect(args):
    from broker.config import parse_properties
    from consumers.client import connect_any
    from consumers.sasl import SaslAuthenticationError
    from consumers.security import PLAINTEXT, ClientSecurity, SecurityConfigError

    security = PLAINTEXT
    try:
        if args.command_config:
            text = Path(args.command_config).read_text(encoding="utf-8")
            security = ClientSecurity.from_properties(parse_properties(text))
        return connect_any(args.bootstrap_server, security=security)
    except (UnicodeDecodeError, SecurityConfigError, SaslAuthenticationError) as exc:
        raise ConfigError(f"{args.bootstrap_server}: {exc}") from None


def _describe(conn, users) -> dict[str, dict[str, int]]:
    body = conn.request(
        ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS,
        {"users": None if users is None else [{"name": u} for u in users]},
    )
    if body["error_code"]:
        raise error_for_code(body["error_code"])(body["error_message"])
    found = {}
    for result in body["results"]:
        if result["error_code"] == 0:
            found[result["user"]] = {
                ScramMechanism(c["mechanism"]).mechanism_name: c["iterations"]
                for c in result["credential_infos"]
            }
    return found


def _alter(conn, deletions=(), upsertions=()) -> None:
    body = conn.request(
        ApiKey.ALTER_USER_SCRAM_CREDENTIALS,
        {"deletions": list(deletions), "upsertions": list(upsertions)},
    )
    for result in body["results"]:
        if result["error_code"]:
            raise error_for_code(result["error_code"])(
                f"user {result['user']}: {result['error_message']}"
            )


def _code(mechanism: str) -> int:
    return ScramMechanism[mechanism.replace("-", "_")]


def _run_bootstrap(args) -> int:
    with _connect(args) as conn:
        if args.action == "add":
            salt = os.urandom(32)
            salted = salted_password(
                args.mechanism, _password(args).encode(), salt, args.iterations
            )
            upsertion = {
                "name": args.user,
                "mechanism": _code(args.mechanism),
                "iterations": args.iterations,
                "salt": salt,
                "salted_password": salted,
            }
            _alter(conn, upsertions=[upsertion])
            print(f"set {args.mechanism} credential of user {args.user}")
            return 0
        if args.action == "delete":
            if args.mechanism:
                mechanisms = [args.mechanism]
            else:
                try:
                    mechanisms = sorted(_describe(conn, [args.user]).get(args.user, {}))
                except KafkaError:
                    mechanisms = []
                if not mechanisms:
                    print(f"user {args.user} has no SCRAM credential", file=sys.stderr)
                    return 1
            _alter(conn, deletions=[{"name": args.user, "mechanism": _code(m)} for m in mechanisms])
            print(f"removed {', '.join(mechanisms)} credential of user {args.user}")
            return 0
        for user, iterations in _describe(conn, None).items():
            _print_user(user, iterations)
        return 0


__all__ = ["add_parser", "run"]
