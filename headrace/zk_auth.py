"""ZooKeeper identities for headrace's commands, and ``headrace zookeeper-security-migration``.

Every command that takes ``--zookeeper`` also takes ``--zookeeper-auth-file F``: F holds a JAAS
``Client`` section (``DigestLoginModule``, as the brokers' ``zookeeper.jaas.config.file``) or
one line ``user:password``.  The migration command sets every node's ACL as a broker with
``zookeeper.set.acl`` (``secure``) or without it (``unsecure``) would have created it, like
Kafka's zookeeper-security-migration tool.
"""

from __future__ import annotations

import argparse
import sys

from kazoo.exceptions import NoAuthError

from broker.protocol.zk_client import read_credentials, secure_tree, zookeeper_client
from broker.protocol.zk_security import ZkCredentials, ZkSecurityError
from broker.protocol.zookeeper import CONSUMERS


def add_auth_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--zookeeper-auth-file`` beside a command's ``--zookeeper``."""
    parser.add_argument(
        "--zookeeper-auth-file",
        metavar="FILE",
        help="ZooKeeper digest identity: a JAAS Client section (DigestLoginModule) "
        "or one line user:password",
    )


def credentials_from_args(args: argparse.Namespace) -> ZkCredentials | None:
    return read_credentials(getattr(args, "zookeeper_auth_file", None))


def add_parser(sub) -> None:
    p = sub.add_parser(
        "zookeeper-security-migration",
        help="set the ACL of every ZooKeeper node as zookeeper.set.acl would (secure|unsecure)",
    )
    p.add_argument("--zookeeper", required=True, help="host:port[,host:port...][/chroot]")
    p.add_argument(
        "--zookeeper.acl",
        dest="acl",
        required=True,
        choices=["secure", "unsecure"],
        help="secure: owned by this identity, world READ (none on credentials); unsecure: open",
    )
    add_auth_argument(p)
    p.set_defaults(func=run_migration)


def run_migration(args: argparse.Namespace) -> int:
    secure = args.acl == "secure"
    try:
        credentials = credentials_from_args(args)
        if secure and credentials is None:
            raise ZkSecurityError("--zookeeper.acl secure needs --zookeeper-auth-file")
        client = zookeeper_client(args.zookeeper, credentials, secure)
    except ZkSecurityError as exc:
        print(f"headrace zookeeper-security-migration: {exc}", file=sys.stderr)
        return 2
    try:
        client.start(timeout=15)
    except Exception as exc:
        print(
            f"headrace zookeeper-security-migration: ZooKeeper at {args.zookeeper} "
            f"cannot be reached: {exc}",
            file=sys.stderr,
        )
        return 1
    try:
        if secure:  # the groups' root must exist before only the owner may create at the top
            client.ensure_path(CONSUMERS)
        seen, changed = secure_tree(client, secure)
    except NoAuthError as exc:
        print(f"headrace zookeeper-security-migration: {exc}", file=sys.stderr)
        return 1
    finally:
        client.stop()
        client.close()
    print(f"{changed} of {seen} nodes changed to {args.acl} ACLs")
    return 0
