"""A blocking client of a schema registry's REST API (headrace's own or Confluent's), over
urllib.  Thread-safe; what never changes - a schema by its id, and the id of a schema already
registered or looked up under a subject - is cached.

    >>> client = RegistryClient("http://127.0.0.1:8081")
    >>> schema_id = client.register("clicks-value", '{"type": "string"}')
    >>> client.schema_by_id(schema_id)
    '"string"'

A registry behind a login or HTTPS: ``basic_auth="user:password"`` and ``cafile``, or
``RegistryClient.from_properties(url, props)`` with Confluent's client property names
(``basic.auth.user.info`` or ``schema.registry.basic.auth.user.info``, credentials in the URL
with ``basic.auth.credentials.source=URL``, ``schema.registry.ssl.ca.location``).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
NOT_FOUND_CODES = frozenset({40401, 40402, 40403})


class RegistryError(Exception):
    """The registry refused a request: its HTTP ``status``, Confluent's ``error_code`` and
    its ``message``."""

    def __init__(self, status: int, error_code: int, message: str):
        # An error of no HTTP exchange (status 0: the registry was not reached) is its message.
        text = f"{message} (HTTP {status}, error code {error_code})" if status else message
        super().__init__(text)
        self.status = status
        self.error_code = error_code
        self.message = message


class SchemaNotFoundError(RegistryError):
    """No such subject (40401), version (40402) or schema (40403)."""


class RegistryUnavailableError(RegistryError):
    """The registry could not be reached, or answered with something that is not its API."""


@dataclass(frozen=True)
class RegisteredSchema:
    """One version of a subject: the schema's global id and its JSON text."""

    subject: str
    version: int
    schema_id: int
    schema: str


def _quote(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


class RegistryClient:
    """The registry at ``url`` (``http://host:port``); each request waits ``timeout`` s."""

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        basic_auth: str | None = None,
        cafile: str | None = None,
    ):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"schema registry URL {url!r}: give http://host:port")
        if parsed.username is not None:  # credentials in the URL: sent as Basic, not shown
            basic_auth = basic_auth or urllib.parse.unquote(
                f"{parsed.username}:{parsed.password or ''}"
            )
            parsed = parsed._replace(netloc=parsed.netloc.rpartition("@")[2])
            url = urllib.parse.urlunsplit(parsed)
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._authorization = (
            "Basic " + base64.b64encode(basic_auth.encode()).decode() if basic_auth else None
        )
        self._context = ssl.create_default_context(cafile=cafile) if cafile else None
        self._lock = threading.Lock()
        self._schemas: dict[int, str] = {}
        self._ids: dict[tuple[str, str], int] = {}

    @classmethod
    def from_properties(
        cls, url: str, props: dict[str, str], timeout: float = 10.0
    ) -> RegistryClient:
        """A client with the registry settings of client properties (Confluent's names)."""
        source = props.get("basic.auth.credentials.source", "USER_INFO").strip().upper()
        user_info = props.get("schema.registry.basic.auth.user.info") or props.get(
            "basic.auth.user.info"
        )
        if source not in ("USER_INFO", "URL"):
            raise ValueError(f"basic.auth.credentials.source {source}: give USER_INFO or URL")
        return cls(
            url,
            timeout,
            basic_auth=user_info if source == "USER_INFO" else None,
            cafile=props.get("schema.registry.ssl.ca.location")
            or props.get("schema.registry.ssl.truststore.location"),
        )

    # --- requests ---------------------------------------------------------------------------

    def build_request(
        self, method: str, path: str, body: dict | None = None
    ) -> urllib.request.Request:
        """The HTTP request of one API call (its login header included), not sent."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": f"{CONTENT_TYPE}, application/json", "Content-Type": CONTENT_TYPE}
        if self._authorization:
            headers["Authorization"] = self._authorization
        return urllib.request.Request(self.url + path, data=data, method=method, headers=headers)

    def _request(self, method: str, path: str, body: dict | None = None):
        request = self.build_request(method, path, body)
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout, context=self._context
            ) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise self._error(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryUnavailableError(
                0, 0, f"cannot reach the schema registry at {self.url}: {reason}"
            ) from None
        try:
            return json.loads(payload)
        except ValueError:
            raise RegistryUnavailableError(
                200, 0, f"schema registry {self.url} answered {method} {path} with no JSON"
            ) from None

    def _error(self, status: int, payload: bytes) -> RegistryError:
        try:
            doc = json.loads(payload)
            code, message = int(doc["error_code"]), str(doc["message"])
        except (ValueError, TypeError, KeyError):
            text = payload.decode("utf-8", "replace").strip().splitlines()
            return RegistryUnavailableError(
                status, status, f"schema registry {self.url}: HTTP {status} {text[:1]}"
            )
        cls = SchemaNotFoundError if code in NOT_FOUND_CODES else RegistryError
        return cls(status, code, message)

    # --- the API ----------------------------------------------------------------------------

    def schema_by_id(self, schema_id: int) -> str:
        """The JSON text of the schema with this global id (cached: an id never changes)."""
        with self._lock:
            cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        schema = self._request("GET", f"/schemas/ids/{int(schema_id)}")["schema"]
        with self._lock:
            self._schemas[schema_id] = schema
        return schema

    def _registered(self, subject: str, doc: dict) -> RegisteredSchema:
        found = RegisteredSchema(
            subject=doc.get("subject", subject),
            version=int(doc["version"]),
            schema_id=int(doc["id"]),
            schema=doc["schema"],
        )
        with self._lock:
            self._schemas.setdefault(found.schema_id, found.schema)
        return found

    def latest(self, subject: str) -> RegisteredSchema:
        """The subject's newest version."""
        return self._registered(
            subject, self._request("GET", f"/subjects/{_quote(subject)}/versions/latest")
        )

    def version(self, subject: str, version: int) -> RegisteredSchema:
        """One version of the subject."""
        return self._registered(
            subject, self._request("GET", f"/subjects/{_quote(subject)}/versions/{int(version)}")
        )

    def versions(self, subject: str) -> list[int]:
        """The subject's versions, oldest first."""
        return [int(v) for v in self._request("GET", f"/subjects/{_quote(subject)}/versions")]

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` (JSON text) under ``subject``; its global id (the existing one
        when it is registered already)."""
        with self._lock:
            cached = self._ids.get((subject, schema))
        if cached is not None:
            return cached
        doc = self._request("POST", f"/subjects/{_quote(subject)}/versions", {"schema": schema})
        schema_id = int(doc["id"])
        with self._lock:
            self._ids[(subject, schema)] = schema_id
        return schema_id

    def lookup(self, subject: str, schema: str) -> RegisteredSchema | None:
        """The version of ``subject`` that holds ``schema``, or None if it has none (or the
        subject does not exist)."""
        try:
            doc = self._request("POST", f"/subjects/{_quote(subject)}", {"schema": schema})
        except SchemaNotFoundError:
            return None
        found = self._registered(subject, doc)
        with self._lock:
            self._ids[(subject, schema)] = found.schema_id
        return found
