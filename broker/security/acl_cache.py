"""The broker's ACL cache: every ACL loaded at start, then kept current from Kafka's change
notifications, so an ACL added or removed anywhere takes effect without a restart.

    >>> cache = AclCache(client, reactor, authorizer.acls)
    >>> cache.start()          # blocking: load everything, then watch the change roots

States: *loading* (``start``), *watching* (each new ``acl_changes_<seq>`` node under
``/kafka-acl-changes`` or ``/kafka-acl-extended-changes`` names a pattern, whose node is read
again), *reloading* (after the session was lost or the connection came back: changes may
have been missed, so every pattern is read again and the set replaced), *stopped*.
Kazoo's watch callbacks only note what to read; the reads run one at a time in the reactor's
thread pool and each result is applied on the reactor thread, in the order read, so a
pattern's older contents never overwrite newer ones.
"""

from __future__ import annotations

import logging
import threading
import time

from kazoo.client import KazooState
from kazoo.exceptions import NoNodeError
from kazoo.recipe.watchers import ChildrenWatch

from ..protocol import acl_nodes
from ..protocol.acl_nodes import MalformedNodeError
from ..protocol.acls import LITERAL, PREFIXED
from .acl_store import ZkAclStore
from .authorizer import AclSet

log = logging.getLogger(__name__)

CHANGE_EXPIRATION_MS = 15 * 60 * 1000  # Kafka's age at which change notifications are purged


class AclCache:
    """Keeps ``acls`` (the authorizer's AclSet) equal to what ZooKeeper stores."""

    def __init__(
        self, client, reactor, acls: AclSet, change_expiration_ms: int = CHANGE_EXPIRATION_MS
    ):
        self.store = ZkAclStore(client)
        self.client = client
        self.reactor = reactor
        self.acls = acls
        self.state = "loading"
        self.change_expiration_ms = change_expiration_ms
        self._seen: dict[int, set[str]] = {LITERAL: set(), PREFIXED: set()}
        self._lock = threading.Lock()  # one read-and-apply at a time, in order

    def start(self) -> None:
        self.store.ensure_paths()
        for pattern_type in (LITERAL, PREFIXED):  # changes made before the load need no read
            self._seen[pattern_type] = set(
                self.client.get_children(acl_nodes.change_root(pattern_type))
            )
        self._replace(self.store.load())
        self.state = "watching"
        for pattern_type in (LITERAL, PREFIXED):
            ChildrenWatch(
                self.client,
                acl_nodes.change_root(pattern_type),
                lambda children, pattern_type=pattern_type: self._changed(pattern_type, children),
            )
        self.client.add_listener(self._on_state)

    def stop(self) -> None:
        self.state = "stopped"

    # --- kazoo threads: note, never block ----------------------------------------------------

    def _changed(self, pattern_type: int, children) -> bool | None:
        if self.state == "stopped":
            return False  # ends the watch
        new = [c for c in children if c not in self._seen[pattern_type]]
        self._seen[pattern_type] = set(children)
        if new:
            self.reactor.callFromThread(
                self.reactor.callInThread, self._read_changes, pattern_type, sorted(new)
            )
        return None

    def _on_state(self, state) -> None:
        if state == KazooState.CONNECTED and self.state == "watching":
            self.reactor.callFromThread(self.reactor.callInThread, self._reload)

    # --- the thread pool: read, then apply on the reactor --------------------------------------

    def _read_changes(self, pattern_type: int, names: list[str]) -> None:
        extended = pattern_type != LITERAL
        root = acl_nodes.change_root(pattern_type)
        with self._lock:
            for name in names:
                path = f"{root}/{name}"
                try:
                    data, _ = self.client.get(path)
                    pattern = acl_nodes.decode_change(data, extended, path)
                    entries, _ = self.store.read(pattern)
                except MalformedNodeError as exc:
                    log.error("ignoring an ACL change: %s", exc)
                    continue
                except Exception as exc:  # a lost connection: the reload after it reads all
                    log.warning("reading ACL change %s failed: %s", path, exc)
                    continue
                log.info("ACLs of %s changed: %d now", pattern, len(entries))
                self.reactor.callFromThread(self.acls.set, pattern, entries)
            self.purge_old_changes(root)

    def purge_old_changes(self, root: str) -> None:
        """Delete the change nodes older than ``change_expiration_ms``, as Kafka's brokers do
        on each change, so the change roots do not grow without end (any broker may; one
        that finds a node gone has nothing to do)."""
        try:
            for name in self.client.get_children(root):
                stat = self.client.exists(f"{root}/{name}")
                if stat is not None and stat.ctime + self.change_expiration_ms < time.time() * 1000:
                    self.client.delete(f"{root}/{name}")
        except NoNodeError:
            pass
        except Exception as exc:
            log.warning("purging old ACL change notifications failed: %s", exc)

    def _reload(self) -> None:
        with self._lock:
            try:
                fresh = self.store.load()
            except Exception as exc:
                log.warning(
                    "reloading the ACLs failed (the next reconnection tries again): %s", exc
                )
                return
            self.reactor.callFromThread(self._replace, fresh)

    def _replace(self, fresh: AclSet) -> None:
        self.acls.replace(fresh)
        log.info("ACL cache loaded: %d ACLs", len(self.acls))
