"""ApiVersions: the versions served of every API, from the registry; from v3 (KIP-511) the
client says which software it is, logged once per connection at debug level.

    >>> answer_api_versions(request, connection)    # the response body

A version the broker does not serve never reaches here: the server answers it in v0 with
UNSUPPORTED_VERSION and the list (``frames.api_versions_fallback``), so the client asks again.
"""

from __future__ import annotations

import logging
import re

from .protocol import errors
from .protocol.registry import api_versions_body

log = logging.getLogger(__name__)

FIRST_WITH_CLIENT_SOFTWARE = 3
# Kafka's rule for both fields (ApiVersionsRequest.isValid)
_SOFTWARE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")


def answer_api_versions(request, connection) -> dict:
    """The ApiVersions response to ``request`` (a ``frames.Request``) on ``connection``; a
    client software name or version that breaks Kafka's rule is INVALID_REQUEST, as Kafka
    answers it."""
    if request.header.api_version < FIRST_WITH_CLIENT_SOFTWARE:
        return api_versions_body()
    name = request.body["client_software_name"]
    version = request.body["client_software_version"]
    peer = getattr(connection, "peer", "?")
    if not (_SOFTWARE.fullmatch(name) and _SOFTWARE.fullmatch(version)):
        log.info("%s: invalid client software name %r or version %r", peer, name, version)
        return {"error_code": errors.InvalidRequestError.code, "api_keys": []}
    if getattr(connection, "client_software", None) != (name, version):
        connection.client_software = (name, version)
        log.debug("%s: client %s %s (client_id %r)", peer, name, version, request.header.client_id)
    return api_versions_body()


__all__ = ["answer_api_versions"]
