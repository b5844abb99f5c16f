"""SCRAM credentials in ZooKeeper: the broker's cache of them, kept by watches, and the
writes that add and remove them (used by the broker's AlterUserScramCredentials and by
``headrace users --zookeeper``).

    >>> cache = ScramCredentialCache(cluster.client, reactor); cache.start()
    >>> cache.credential_of("alice", "SCRAM-SHA-512")   # a ScramCredential, or None

The cache watches ``/config/users`` and each user's node, so a user added, changed or
deleted by any tool (ours or Kafka's) counts at the next login, without a restart.  Kazoo's
callbacks are moved onto the reactor with ``callFromThread``; the dict they update is read
only there.  A write changes a user's node at the version read (a concurrent writer makes
it read again) and then announces the change as Kafka does (``/config/changes``).
"""

from __future__ import annotations

import logging

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, KazooException, NodeExistsError, NoNodeError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from ..protocol import security_nodes as nodes
from ..protocol import zookeeper as layout
from ..protocol.security_nodes import ScramCredential
from ..protocol.zookeeper import MalformedNodeError

log = logging.getLogger(__name__)


class ScramCredentialCache:
    """Every user's SCRAM credentials, by user and mechanism, as ZooKeeper has them."""

    def __init__(self, client: KazooClient, reactor):
        self.client = client
        self.reactor = reactor
        self.users: dict[str, dict[str, ScramCredential]] = {}  # read on the reactor only
        self._watched: set[str] = set()  # users with a data watch (kazoo's thread)
        self._stopped = False

    def start(self) -> None:
        """Watch the users (blocking until the first list is read)."""
        self.client.ensure_path(nodes.CONFIG_USERS)
        ChildrenWatch(self.client, nodes.CONFIG_USERS, self._users_changed)

    def stop(self) -> None:
        self._stopped = True

    def credential_of(self, user: str, mechanism: str) -> ScramCredential | None:
        return self.users.get(user, {}).get(mechanism)

    def _users_changed(self, children) -> bool:
        if self._stopped:
            return False
        for user in children:
            if user not in self._watched:
                self._watched.add(user)
                try:
                    DataWatch(self.client, nodes.user_path(user), self._user_watch(user))
                except (KazooException, ValueError) as exc:  # e.g. a node another identity owns
                    self._watched.discard(user)
                    log.error("cannot read SCRAM credentials of user %s: %r", user, exc)
        return True

    def _user_watch(self, user: str):
        path = nodes.user_path(user)

        def changed(data, stat, event=None) -> bool:
            if self._stopped:
                return False
            if data is None:  # deleted: a new node gets a new watch from the children's
                self._watched.discard(user)
                self.reactor.callFromThread(self.users.pop, user, None)
                return False
            try:
                credentials = nodes.decode_user_credentials(data, path)
            except MalformedNodeError as exc:
                log.error("ignoring SCRAM credentials of user %s: %s", user, exc)
                credentials = {}
            self.reactor.callFromThread(self.users.__setitem__, user, credentials)
            return True

        return changed


# --- writes (blocking: run them in a thread) -------------------------------------------------


def _update_user(client: KazooClient, user: str, change) -> bool:
    """Apply ``change(config) -> config`` to the user's node at the version read, then
    announce it; False if the node did not exist and ``change`` made nothing of it.  An
    empty config deletes the node, as Kafka does."""
    path = nodes.user_path(user)
    while True:
        try:
            data, stat = client.get(path)
        except NoNodeError:
            data, stat = None, None
        config = nodes.decode_user_config(data, path)
        new = change(config)
        if stat is None and not new:
            return False
        try:
            if stat is None:
                client.create(path, nodes.encode_user_config(new), makepath=True)
            elif not new:
                client.delete(path, version=stat.version)
            else:
                client.set(path, nodes.encode_user_config(new), version=stat.version)
        except (BadVersionError, NoNodeError, NodeExistsError):
            continue  # written meanwhile: read again
        notice = layout.encode_config_change(nodes.user_entity_path(user))
        client.create(layout.CONFIG_CHANGE_PREFIX, notice, sequence=True, makepath=True)
        return True


def write_credential(client: KazooClient, user: str, credential: ScramCredential) -> None:
    """Set ``user``'s credential for its mechanism (other mechanisms and configs kept)."""
    _update_user(client, user, lambda config: nodes.with_credential(config, credential))


def delete_credential(client: KazooClient, user: str, mechanism: str) -> bool:
    """Remove ``user``'s credential for ``mechanism``; False if there was none."""
    found = []

    def change(config):
        found.append(mechanism in config)
        return nodes.without_mechanism(config, mechanism)

    _update_user(client, user, change)
    return bool(found and found[-1])


def read_credentials(client: KazooClient, users=None) -> dict[str, dict[str, ScramCredential]]:
    """The SCRAM credentials of ``users`` (None: of every user that has one)."""
    if users is None:
        try:
            users = client.get_children(nodes.CONFIG_USERS)
        except NoNodeError:
            users = []
    result = {}
    for user in users:
        path = nodes.user_path(user)
        try:
            data, _ = client.get(path)
        except NoNodeError:
            continue
        credentials = nodes.decode_user_credentials(data, path)
        if credentials:
            result[user] = credentials
    return dict(sorted(result.items()))


__all__ = [
    "ScramCredentialCache",
    "delete_credential",
    "read_credentials",
    "write_credential",
]
