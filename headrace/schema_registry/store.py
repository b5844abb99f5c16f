"""The registry's data in ZooKeeper, through a kazoo client: schemas by global id, each
subject's versions, compatibility configs (nodes and encodings in
``broker/protocol/schema_nodes.py``).  Blocking: the server calls it from threads.

Nothing is cached but what never changes (a schema by its id), and a read that finds nothing
first syncs its session with the ZooKeeper leader, so what another registry process just
wrote is found here at once."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from kazoo.exceptions import NodeExistsError, NoNodeError

from broker.protocol import schema_nodes as nodes

NEW_SUBJECT = -1  # the stamp of a subject that has no nodes yet


class StoreUnavailableError(Exception):
    """ZooKeeper cannot be reached (or failed a request): the registry answers 50001."""


@dataclass(frozen=True)
class Version:
    """One version of a subject."""

    version: int
    schema_id: int
    deleted: bool


class SchemaStore:
    """Reads and writes of the registry's tree over the started kazoo client ``zk``."""

    def __init__(self, zk):
        self.zk = zk
        self._schemas: dict[int, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def ensure_paths(self) -> None:
        for path in nodes.SCHEMA_REGISTRY_PATHS:
            self.zk.ensure_path(path)

    def _ready(self) -> None:
        if not self.zk.connected:
            raise StoreUnavailableError("ZooKeeper is not connected")

    def _get(self, path: str) -> tuple[bytes, object] | None:
        """A node's data and stat, syncing first and reading again if it is missing."""
        self._ready()
        for attempt in range(2):
            try:
                return self.zk.get(path)
            except NoNodeError:
                if attempt == 0:
                    self.zk.sync(path)
        return None

    def _children(self, path: str) -> list[str]:
        self._ready()
        self.zk.sync(path)
        try:
            return self.zk.get_children(path)
        except NoNodeError:
            return []

    # --- schemas by id --------------------------------------------------------------------

    def schema(self, schema_id: int) -> tuple[str, str] | None:
        """(schema text, schema type) of a global id, or None."""
        with self._lock:
            cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        found = self._get(nodes.schema_id_path(schema_id))
        if found is None:
            return None
        schema = nodes.decode_schema(found[0], nodes.schema_id_path(schema_id))
        with self._lock:
            self._schemas[schema_id] = schema
        return schema

    def find_id(self, canonical: str) -> int | None:
        """The id of a schema's canonical text, if it has one."""
        found = self._get(nodes.fingerprint_path(canonical))
        return None if found is None else nodes.decode_counter(found[0])

    def id_for(self, canonical: str) -> int:
        """The schema's id, taken now if it has none: the counter set at the version read,
        the schema and its fingerprint created, all in one transaction."""
        for _ in range(100):
            known = self.find_id(canonical)
            if known is not None:
                return known
            self._ready()
            data, stat = self.zk.get(nodes.SCHEMA_IDS)
            schema_id = nodes.decode_counter(data) + 1
            tx = self.zk.transaction()
            tx.set_data(nodes.SCHEMA_IDS, nodes.encode_counter(schema_id), version=stat.version)
            tx.create(nodes.schema_id_path(schema_id), nodes.encode_schema(canonical))
            tx.create(nodes.fingerprint_path(canonical), nodes.encode_counter(schema_id))
            results = tx.commit()
            if not any(isinstance(r, Exception) for r in results):
                return schema_id
            # Another registry took this id or this schema first: look again.
        raise StoreUnavailableError("no schema id could be taken after 100 attempts")

    def ids_in_use(self, schema_id: int) -> list[tuple[str, int]]:
        """(subject, version) of every live version holding ``schema_id``."""
        found = []
        for subject in self.subjects(deleted=False):
            for v in self.versions(subject):
                if v.schema_id == schema_id and not v.deleted:
                    found.append((subject, v.version))
        return found

    def counts(self) -> tuple[int, int]:
        """(schemas registered, subjects with a node), for the metrics page."""
        self._ready()
        ids = self.zk.get_children(nodes.SCHEMA_IDS)
        return len(ids), len(self.zk.get_children(nodes.SCHEMA_SUBJECTS))

    # --- subjects -----------------------------------------------------------------------

    def subjects(self, deleted: bool) -> list[str]:
        """Subject names with a live version (and, with ``deleted``, soft-deleted ones)."""
        names = []
        for node in self._children(nodes.SCHEMA_SUBJECTS):
            subject = nodes.subject_from_node(node)
            versions = self.versions(subject)
            if versions and (deleted or any(not v.deleted for v in versions)):
                names.append(subject)
        return sorted(names)

    def versions(self, subject: str) -> list[Version]:
        """The subject's versions, oldest first (soft-deleted ones included)."""
        path = nodes.versions_path(subject)
        found = []
        for child in self._children(path):
            try:
                data, _ = self.zk.get(f"{path}/{child}")
            except NoNodeError:  # hard-deleted meanwhile
                continue
            schema_id, deleted = nodes.decode_version(data, f"{path}/{child}")
            found.append(Version(int(child), schema_id, deleted))
        return sorted(found, key=lambda v: v.version)

    def stamp(self, subject: str) -> int:
        """The version of the subject's ``versions`` node, which every change of its versions
        moves (``NEW_SUBJECT`` while it has none): read it before the versions, and
        ``add_version`` fails if they changed since.  Reading creates nothing, so a
        registration refused (409, 42201) leaves no empty subject behind."""
        found = self._get(nodes.versions_path(subject))
        return NEW_SUBJECT if found is None else found[1].version

    def add_version(self, subject: str, version: int, schema_id: int, stamp: int) -> bool:
        """Create the subject's ``version`` if its versions are as they were at ``stamp``
        (for a new subject, its nodes in the same transaction); False if another
        registration or delete came first (the caller reads again)."""
        self._ready()
        tx = self.zk.transaction()
        if stamp == NEW_SUBJECT:
            if self.zk.exists(nodes.subject_path(subject)) is None:
                tx.create(nodes.subject_path(subject))
            tx.create(nodes.versions_path(subject))
        else:
            tx.set_data(nodes.versions_path(subject), b"", version=stamp)
        tx.create(nodes.version_path(subject, version), nodes.encode_version(schema_id))
        return not any(isinstance(r, Exception) for r in tx.commit())

    def _touch(self, subject: str) -> None:
        try:
            self.zk.set(nodes.versions_path(subject), b"")
        except NoNodeError:
            pass

    def soft_delete(self, subject: str, version: Version) -> None:
        self._ready()
        self.zk.set(
            nodes.version_path(subject, version.version),
            nodes.encode_version(version.schema_id, deleted=True),
        )
        self._touch(subject)

    def hard_delete(self, subject: str, version: Version) -> None:
        self._ready()
        try:
            self.zk.delete(nodes.version_path(subject, version.version))
        except NoNodeError:
            pass
        self._touch(subject)
        if not self._children(nodes.versions_path(subject)):
            tx = self.zk.transaction()  # fails whole if a registration came meanwhile
            tx.delete(nodes.versions_path(subject))
            tx.delete(nodes.subject_path(subject))
            tx.commit()

    # --- configs --------------------------------------------------------------------------

    def config(self, subject: str | None = None) -> str | None:
        """The compatibility level set globally (``subject`` None) or for one subject."""
        self._ready()
        try:
            data, _ = self.zk.get(nodes.config_path(subject))
        except NoNodeError:
            return None
        if subject is None and not data:
            return None  # the root node, made by ensure_path, holds nothing yet
        return nodes.decode_config(data, nodes.config_path(subject))

    def set_config(self, level: str, subject: str | None = None) -> None:
        self._ready()
        path, data = nodes.config_path(subject), nodes.encode_config(level)
        try:
            self.zk.set(path, data)
        except NoNodeError:
            try:
                self.zk.create(path, data, makepath=True)
            except NodeExistsError:
                self.zk.set(path, data)

    def delete_config(self, subject: str) -> None:
        self._ready()
        try:
            self.zk.delete(nodes.config_path(subject))
        except NoNodeError:
            pass
