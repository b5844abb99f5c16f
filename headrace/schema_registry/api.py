"""The REST API of the schema registry, Confluent's: one request (method, path, query, body)
in, one (status, JSON document) out.  No sockets and no reactor - ``server.py`` runs it in a
thread per request - so every answer, errors included, is decided here.

Errors are ``{"error_code": N, "message": ...}`` with Confluent's codes (README, "Schema
registry"); an exception of ZooKeeper becomes 50001, never a traceback."""

from __future__ import annotations

import json
import threading
import urllib.parse

from kazoo.exceptions import KazooException

from .avro_schemas import DEFAULT_LEVEL, LEVELS, InvalidSchemaError, canonical, incompatibilities
from .store import SchemaStore, StoreUnavailableError, Version

AVRO = "AVRO"
MAX_VERSION = 2**31 - 1


class RawJson(str):
    """A schema's own JSON text, sent as it is rather than as a JSON string."""


class ApiError(Exception):
    """An answer other than success: HTTP ``status``, Confluent's ``error_code``, a message."""

    def __init__(self, status: int, error_code: int, message: str):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def document(self) -> dict:
        return {"error_code": self.error_code, "message": self.message}


def subject_not_found(subject: str) -> ApiError:
    return ApiError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(version) -> ApiError:
    return ApiError(404, 40402, f"Version {version} not found.")


def schema_not_found(detail: str = "Schema not found") -> ApiError:
    return ApiError(404, 40403, detail)


def invalid_schema(message: str) -> ApiError:
    return ApiError(422, 42201, message)


def _flag(query: dict, name: str) -> bool:
    return query.get(name, ["false"])[-1].lower() == "true"


class Registry:
    """The API over a ``SchemaStore``."""

    def __init__(self, store: SchemaStore):
        self.store = store
        self._register_lock = threading.Lock()  # one registration at a time in this process

    # --- dispatch ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, object]:
        """The (status, document) of one request; ``query`` as ``parse_qs`` gives it."""
        try:
            return 200, self._route(method, path, query, body)
        except ApiError as exc:
            return exc.status, exc.document()
        except (StoreUnavailableError, KazooException) as exc:
            reason = str(exc) or type(exc).__name__
            return 500, {
                "error_code": 50001,
                "message": f"Error in the backend data store (ZooKeeper): {reason}",
            }

    def _route(self, method: str, path: str, query: dict, body: bytes):
        parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
        routes = {
            (): {"GET": lambda: {}},
            ("subjects",): {"GET": lambda: self.store.subjects(_flag(query, "deleted"))},
            ("schemas", "types"): {"GET": lambda: [AVRO]},
            ("config",): {
                "GET": lambda: {"compatibilityLevel": self._level(None)},
                "PUT": lambda: self._set_config(None, body),
                "DELETE": lambda: self._delete_config(None),
            },
            ("mode",): {"GET": lambda: {"mode": "READWRITE"}},
        }
        shape = tuple(parts)
        if shape in routes:
            return self._call(routes[shape], method)
        n = len(parts)
        head = parts[0] if parts else ""
        if head == "subjects" and n >= 2:
            subject = parts[1]
            if n == 2:
                return self._call(
                    {
                        "POST": lambda: self._lookup(subject, body, query),
                        "DELETE": lambda: self._delete_subject(subject, query),
                    },
                    method,
                )
            if parts[2] == "versions" and n == 3:
                return self._call(
                    {
                        "GET": lambda: self._versions(subject, query),
                        "POST": lambda: self._register(subject, body),
                    },
                    method,
                )
            if parts[2] == "versions" and n == 4:
                return self._call(
                    {
                        "GET": lambda: self._get_version(subject, parts[3], query),
                        "DELETE": lambda: self._delete_version(subject, parts[3], query),
                    },
                    method,
                )
            if parts[2] == "versions" and n == 5 and parts[4] == "schema":
                return self._call(
                    {"GET": lambda: RawJson(self._get_version(subject, parts[3], query)["schema"])},
                    method,
                )
        if head == "schemas" and n in (3, 4) and parts[1] == "ids":
            schema_id = self._schema_id(parts[2])
            if n == 3:
                return self._call({"GET": lambda: self._by_id(schema_id)}, method)
            if parts[3] == "versions":
                return self._call({"GET": lambda: self._id_versions(schema_id)}, method)
            if parts[3] == "schema":
                return self._call({"GET": lambda: self._schema_text(schema_id)}, method)
        if head == "config" and n == 2:
            subject = parts[1]
            return self._call(
                {
                    "GET": lambda: self._subject_config(subject, query),
                    "PUT": lambda: self._set_config(subject, body),
                    "DELETE": lambda: self._delete_config(subject),
                },
                method,
            )
        if head == "mode" and n == 2:
            return self._call({"GET": lambda: {"mode": "READWRITE"}}, method)
        if head == "compatibility" and n == 5 and parts[1] == "subjects" and parts[3] == "versions":
            subject, version = parts[2], parts[4]
            return self._call(
                {"POST": lambda: self._compatibility(subject, version, body, query)}, method
            )
        raise ApiError(404, 404, f"HTTP 404 Not Found: no resource {path}")

    @staticmethod
    def _call(methods: dict, method: str):
        if method not in methods:
            raise ApiError(405, 405, f"HTTP 405 Method Not Allowed: {method}")
        return methods[method]()

    # --- request bodies -------------------------------------------------------------------

    @staticmethod
    def _json(body: bytes) -> dict:
        try:
            doc = json.loads(body or b"null")
        except (ValueError, RecursionError):
            raise ApiError(400, 400, "The request body is not JSON") from None
        if not isinstance(doc, dict):
            raise ApiError(422, 422, "The request body must be a JSON object")
        return doc

    def _schema_of(self, body: bytes) -> str:
        """The canonical text of the schema a request carries (42201 if it is not one)."""
        doc = self._json(body)
        schema_type = doc.get("schemaType", AVRO)
        if schema_type != AVRO:
            raise invalid_schema(
                f"Invalid schema type {schema_type!r}: this registry serves AVRO schemas only"
            )
        if doc.get("references"):
            raise invalid_schema("Schema references are not supported by this registry")
        schema = doc.get("schema")
        if not isinstance(schema, str) or not schema.strip():
            raise invalid_schema('Empty schema: give the schema\'s JSON text in "schema"')
        try:
            return canonical(schema)
        except InvalidSchemaError as exc:
            raise invalid_schema(str(exc)) from None

    @staticmethod
    def _version_number(text: str) -> int | None:
        """A version id: None for latest (or -1), else 1..2^31-1 (42202 otherwise)."""
        if text in ("latest", "-1"):
            return None
        try:
            version = int(text)
        except ValueError:
            version = 0
        if not 1 <= version <= MAX_VERSION or not text.isdigit():
            raise ApiError(
                422,
                42202,
                f"The specified version '{text}' is not a valid version id. Allowed values are "
                'between [1, 2^31-1] and the string "latest"',
            )
        return version

    @staticmethod
    def _schema_id(text: str) -> int:
        if not text.isdigit() or not 0 < int(text) < 2**31:
            raise schema_not_found(f"Schema {text} not found")
        return int(text)

    # --- subjects and versions ------------------------------------------------------------

    def _live(self, subject: str) -> list[Version]:
        """The subject's versions not deleted (40401 if there are none)."""
        live = [v for v in self.store.versions(subject) if not v.deleted]
        if not live:
            raise subject_not_found(subject)
        return live

    def _versions(self, subject: str, query: dict) -> list[int]:
        versions = self.store.versions(subject)
        if not _flag(query, "deleted"):
            versions = [v for v in versions if not v.deleted]
        if not versions:
            raise subject_not_found(subject)
        return [v.version for v in versions]

    def _find_version(self, subject: str, text: str, deleted: bool) -> Version:
        number = self._version_number(text)
        versions = self.store.versions(subject)
        visible = versions if deleted else [v for v in versions if not v.deleted]
        if not visible:
            raise subject_not_found(subject)
        if number is None:
            return visible[-1]
        for v in visible:
            if v.version == number:
                return v
        raise version_not_found(number)

    def _document(self, subject: str, v: Version) -> dict:
        found = self.store.schema(v.schema_id)
        if found is None:
            raise schema_not_found(f"Schema {v.schema_id} not found")
        return {"subject": subject, "version": v.version, "id": v.schema_id, "schema": found[0]}

    def _get_version(self, subject: str, text: str, query: dict) -> dict:
        return self._document(subject, self._find_version(subject, text, _flag(query, "deleted")))

    def _register(self, subject: str, body: bytes) -> dict:
        schema = self._schema_of(body)
        with self._register_lock:
            for _ in range(100):
                versions = self.store.versions(subject)
                live = [v for v in versions if not v.deleted]
                known = self.store.find_id(schema)
                for v in live:
                    if v.schema_id == known:
                        return {"id": known}
                earlier = [(v.version, self._text(v.schema_id)) for v in live]
                problems = incompatibilities(schema, earlier, self._level(subject))
                if problems:
                    raise ApiError(
                        409,
                        409,
                        f"Schema being registered is incompatible with an earlier schema for "
                        f'subject "{subject}", details: [{"; ".join(problems)}]',
                    )
                schema_id = known if known is not None else self.store.id_for(schema)
                number = max((v.version for v in versions), default=0) + 1
                if self.store.add_version(subject, number, schema_id):
                    return {"id": schema_id}
        raise StoreUnavailableError("the subject's versions kept changing; try again")

    def _text(self, schema_id: int) -> str:
        found = self.store.schema(schema_id)
        if found is None:
            raise schema_not_found(f"Schema {schema_id} not found")
        return found[0]

    def _lookup(self, subject: str, body: bytes, query: dict) -> dict:
        schema = self._schema_of(body)
        versions = self.store.versions(subject)
        if not _flag(query, "deleted"):
            versions = [v for v in versions if not v.deleted]
        if not versions:
            raise subject_not_found(subject)
        schema_id = self.store.find_id(schema)
        for v in reversed(versions):
            if v.schema_id == schema_id:
                return self._document(subject, v)
        raise schema_not_found()

    def _delete_version(self, subject: str, text: str, query: dict) -> int:
        permanent = _flag(query, "permanent")
        v = self._find_version(subject, text, deleted=permanent)
        if permanent:
            if not v.deleted:
                raise ApiError(
                    404,
                    40407,
                    f"Subject '{subject}' Version {v.version} was not deleted first before "
                    "being permanently deleted",
                )
            self.store.hard_delete(subject, v)
        else:
            self.store.soft_delete(subject, v)
        return v.version

    def _delete_subject(self, subject: str, query: dict) -> list[int]:
        versions = self.store.versions(subject)
        if not versions:
            raise subject_not_found(subject)
        live = [v for v in versions if not v.deleted]
        if _flag(query, "permanent"):
            if live:
                raise ApiError(
                    404,
                    40405,
                    f"Subject '{subject}' was not deleted first before being permanently deleted",
                )
            for v in versions:
                self.store.hard_delete(subject, v)
            self.store.delete_config(subject)
            return [v.version for v in versions]
        if not live:
            raise ApiError(
                404,
                40404,
                f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently",
            )
        for v in live:
            self.store.soft_delete(subject, v)
        return [v.version for v in live]

    # --- schemas by id --------------------------------------------------------------------

    def _by_id(self, schema_id: int) -> dict:
        found = self.store.schema(schema_id)
        if found is None:
            raise schema_not_found(f"Schema {schema_id} not found")
        schema, schema_type = found
        return (
            {"schema": schema}
            if schema_type == AVRO
            else {"schema": schema, "schemaType": schema_type}
        )

    def _schema_text(self, schema_id: int) -> RawJson:
        return RawJson(self._by_id(schema_id)["schema"])

    def _id_versions(self, schema_id: int) -> list[dict]:
        self._by_id(schema_id)
        return [{"subject": s, "version": v} for s, v in self.store.ids_in_use(schema_id)]

    # --- compatibility and configs --------------------------------------------------------

    def _compatibility(self, subject: str, text: str, body: bytes, query: dict) -> dict:
        schema = self._schema_of(body)
        number = self._version_number(text)
        live = self._live(subject)
        level = self._level(subject)
        if number is not None:  # against that version alone, in the level's direction(s)
            target = [v for v in live if v.version == number]
            if not target:
                raise version_not_found(number)
            live, level = target, level.removesuffix("_TRANSITIVE")
        earlier = [(v.version, self._text(v.schema_id)) for v in live]
        problems = incompatibilities(schema, earlier, level)
        answer: dict = {"is_compatible": not problems}
        if _flag(query, "verbose"):
            answer["messages"] = problems
        return answer

    def _level(self, subject: str | None) -> str:
        """The level in force: the subject's, else the global one, else BACKWARD."""
        if subject is not None:
            level = self.store.config(subject)
            if level is not None:
                return level
        return self.store.config(None) or DEFAULT_LEVEL

    def _set_config(self, subject: str | None, body: bytes) -> dict:
        level = self._json(body).get("compatibility")
        if not isinstance(level, str) or level.upper() not in LEVELS:
            raise ApiError(
                422,
                42203,
                "Invalid compatibility level. Valid values are none, backward, forward, full, "
                "backward_transitive, forward_transitive, and full_transitive",
            )
        self.store.set_config(level.upper(), subject)
        return {"compatibility": level.upper()}

    def _subject_config(self, subject: str, query: dict) -> dict:
        level = self.store.config(subject)
        if level is None:
            if _flag(query, "defaultToGlobal"):
                return {"compatibilityLevel": self._level(None)}
            raise ApiError(
                404,
                40408,
                f"Subject '{subject}' does not have subject-level compatibility configured",
            )
        return {"compatibilityLevel": level}

    def _delete_config(self, subject: str | None) -> dict:
        if subject is None:
            old = self._level(None)
            self.store.set_config(DEFAULT_LEVEL)
            return {"compatibilityLevel": old}
        level = self.store.config(subject)
        if level is None:
            if not self.store.versions(subject):
                raise subject_not_found(subject)
            raise ApiError(
                404,
                40408,
                f"Subject '{subject}' does not have subject-level compatibility configured",
            )
        self.store.delete_config(subject)
        return {"compatibilityLevel": level}
