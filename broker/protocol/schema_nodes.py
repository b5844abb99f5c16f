"""The schema registry's nodes in ZooKeeper: their paths (built on the roots that
``zookeeper.py`` names) and the encoding of each.  Pure, like ``zookeeper.py``, whose
600-line budget is why they live beside it.

Under the chroot of ``zookeeper.connect``::

    /schema-registry
    ├── ids                             persistent  the last id handed out, decimal text
    │   └── <id>                        persistent  {"schema": <canonical JSON text>,
    │                                                "schemaType": "AVRO"}
    ├── fingerprints
    │   └── <sha-256 of the schema>     persistent  <id>, decimal text
    ├── subjects
    │   └── <quoted subject>            persistent  (the subject's name, percent-quoted)
    │       └── versions                (data empty: its version moves with every change)
    │           └── <version>           persistent  {"id": <id>, "deleted": false}
    └── config                          persistent  {"compatibilityLevel": "BACKWARD"}
        └── <quoted subject>            persistent  the same, for one subject

Ids are global: one schema (its canonical text) has one id under every subject.  A new id
is taken in one transaction that sets ``ids`` at the version read, creates ``ids/<id>`` and
creates the schema's fingerprint, so two registries never hand out one id twice nor two ids
for one schema.  A subject's version is created in a transaction with a write of its
``versions`` node at the version read before the compatibility check (deletes write it too),
so a registration checked against versions that changed meanwhile reads and checks again.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse

from .node_codec import check as _check
from .node_codec import reading as _reading
from .zookeeper import (
    SCHEMA_CONFIG,
    SCHEMA_IDS,
    SCHEMA_REGISTRY,
    SCHEMA_SUBJECTS,
)

SCHEMA_FINGERPRINTS = f"{SCHEMA_REGISTRY}/fingerprints"
SCHEMA_REGISTRY_PATHS = (SCHEMA_IDS, SCHEMA_FINGERPRINTS, SCHEMA_SUBJECTS, SCHEMA_CONFIG)


def _node_name(subject: str) -> str:
    # A subject may hold "/" or be "." - neither may be a znode's name as it is.
    return (
        urllib.parse.quote(subject, safe="") if subject not in (".", "..") else f"%2E{subject[1:]}"
    )


def subject_from_node(name: str) -> str:
    """The subject a ``subjects/<name>`` or ``config/<name>`` node stands for."""
    return urllib.parse.unquote(name)


def schema_id_path(schema_id: int) -> str:
    return f"{SCHEMA_IDS}/{schema_id}"


def fingerprint(canonical: str) -> str:
    """The node name of a schema's canonical text: its SHA-256, in hex."""
    return hashlib.sha256(canonical.encode()).hexdigest()


def fingerprint_path(canonical: str) -> str:
    return f"{SCHEMA_FINGERPRINTS}/{fingerprint(canonical)}"


def subject_path(subject: str) -> str:
    return f"{SCHEMA_SUBJECTS}/{_node_name(subject)}"


def versions_path(subject: str) -> str:
    return f"{subject_path(subject)}/versions"


def version_path(subject: str, version: int) -> str:
    return f"{versions_path(subject)}/{version}"


def config_path(subject: str | None = None) -> str:
    """The global compatibility config, or one subject's."""
    return SCHEMA_CONFIG if subject is None else f"{SCHEMA_CONFIG}/{_node_name(subject)}"


def encode_counter(value: int) -> bytes:
    """``ids`` and a fingerprint: a schema id, decimal text."""
    return str(value).encode()


def decode_counter(data: bytes, path: str = "") -> int:
    """An empty ``ids`` (just created) counts as 0: no id handed out yet."""
    with _reading("a schema id", data, path):
        return int(data.decode() or "0")


def encode_schema(schema: str, schema_type: str = "AVRO") -> bytes:
    """``ids/<id>``: the schema's canonical JSON text and its type."""
    return json.dumps({"schema": schema, "schemaType": schema_type}).encode()


def decode_schema(data: bytes, path: str = "") -> tuple[str, str]:
    """(schema text, schema type) of an ``ids/<id>`` node."""
    with _reading("a registered schema", data, path):
        doc = json.loads(data)
        schema, schema_type = doc["schema"], doc.get("schemaType", "AVRO")
        _check(isinstance(schema, str) and isinstance(schema_type, str), "strings expected")
        return schema, schema_type


def encode_version(schema_id: int, deleted: bool = False) -> bytes:
    """``subjects/<s>/versions/<v>``: the version's schema id and whether it is soft-deleted."""
    return json.dumps({"id": schema_id, "deleted": deleted}).encode()


def decode_version(data: bytes, path: str = "") -> tuple[int, bool]:
    """(schema id, soft-deleted) of a version node."""
    with _reading("a subject version", data, path):
        doc = json.loads(data)
        schema_id, deleted = doc["id"], doc.get("deleted", False)
        _check(type(schema_id) is int and isinstance(deleted, bool), "id and deleted expected")
        return schema_id, deleted


def encode_config(level: str) -> bytes:
    """``config`` and ``config/<s>``: a compatibility level."""
    return json.dumps({"compatibilityLevel": level}).encode()


def decode_config(data: bytes, path: str = "") -> str:
    with _reading("a compatibility config", data, path):
        level = json.loads(data)["compatibilityLevel"]
        _check(isinstance(level, str), "compatibilityLevel must be a string")
        return level
