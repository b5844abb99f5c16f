"""Request and response framing: int32 size, request header v1, response header v0.

Pure functions over bytes, used by the broker (decode requests, encode responses) and by
clients and tests (the reverse).  Every request frame starts with api_key, api_version and
correlation_id at fixed offsets, so even a request we cannot parse can be answered.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from . import produce
from .apis import API_BY_KEY, API_VERSIONS_KEY, APIS, Api
from .errors import UnsupportedVersionError
from .schema import DECODE_ERRORS, NULLABLE_STRING, ProtocolError

_SIZE = struct.Struct(">i")
_HEAD = struct.Struct(">hhi")  # api_key, api_version, correlation_id
_HEAD_CLIENT = struct.Struct(">hhih")  # ... and the length of client_id
PRODUCE_KEY = 0


class RequestHeader(NamedTuple):
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


class Request(NamedTuple):
    header: RequestHeader
    api: Api
    body: dict | produce.ProduceRequest  # a Produce request's body is a ProduceRequest


class UnsupportedApiError(ProtocolError):
    """A request for an API key or version this broker does not serve."""

    def __init__(self, header: RequestHeader, message: str):
        super().__init__(message)
        self.header = header


def peek_header(payload) -> tuple[int, int, int] | None:
    """(api_key, api_version, correlation_id) of a request frame, or None if too short."""
    if len(payload) < _HEAD.size:
        return None
    return _HEAD.unpack_from(payload, 0)


def decode_request(payload) -> Request:
    """Decode a request frame's payload (without the size prefix).

    Raises UnsupportedApiError for unknown keys or versions and ProtocolError for anything
    that does not decode.
    """
    size = len(payload)
    if size < _HEAD_CLIENT.size:
        raise ProtocolError(f"request of {size} bytes is shorter than a header")
    api_key, api_version, correlation_id, length = _HEAD_CLIENT.unpack_from(payload, 0)
    pos = _HEAD_CLIENT.size
    if length < 0:
        if length != -1:
            raise ProtocolError(f"client_id length {length}")
        client_id = None
    else:
        pos += length
        if pos > size:
            raise ProtocolError(f"client_id of {length} bytes in a request of {size}")
        try:
            client_id = str(payload[_HEAD_CLIENT.size : pos], "utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"client_id is not UTF-8: {exc}") from None
    header = RequestHeader(api_key, api_version, correlation_id, client_id)
    api = API_BY_KEY.get(api_key)
    if api is None:
        raise UnsupportedApiError(header, f"api key {api_key} is not served")
    if not api.min_version <= api_version <= api.max_version:
        raise UnsupportedApiError(
            header,
            f"{api.name} v{api_version} is not served (versions {api.min_version}-{api.max_version})",
        )
    try:
        if api_key == PRODUCE_KEY:  # the hot path: tuples, not dicts
            body = produce.decode_request(payload, pos, api_version)
        else:
            body = api.request.decode(payload, api_version, pos)
    except DECODE_ERRORS as exc:
        raise ProtocolError(f"malformed {api.name} v{api_version} request: {exc}") from None
    return Request(header, api, body)


_RESPONSE_HEAD = struct.Struct(">ii")


def encode_response(correlation_id: int, api: Api, version: int, body: dict) -> bytes:
    """A whole response frame: size, header v0 (the correlation id), body."""
    payload = b"".join(api.response.encode_parts(body, version))
    return _RESPONSE_HEAD.pack(len(payload) + 4, correlation_id) + payload


def encode_response_parts(correlation_id: int, api: Api, version: int, body: dict) -> list:
    """A whole response frame as parts: bytes-like pieces, and, where a body holds a file
    range instead of bytes (a fetch's records), that object, to be streamed by the caller.
    Every part has a ``len``; the size prefix counts them all."""
    parts = api.response.encode_parts(body, version)
    size = sum(len(p) for p in parts)
    return [_RESPONSE_HEAD.pack(size + 4, correlation_id), *parts]


def api_versions_body(error_code: int = 0) -> dict:
    """The ApiVersions response body listing every API and version range we serve."""
    return {
        "error_code": error_code,
        "api_keys": [
            {"api_key": a.key, "min_version": a.min_version, "max_version": a.max_version}
            for a in APIS
        ],
        "throttle_time_ms": 0,
    }


def api_versions_fallback(correlation_id: int) -> bytes:
    """The reply to an ApiVersions request at a version we do not serve (KIP-511): a v0 body
    with UNSUPPORTED_VERSION and the full key list, so the client retries at one we do."""
    api = API_BY_KEY[API_VERSIONS_KEY]
    return encode_response(correlation_id, api, 0, api_versions_body(UnsupportedVersionError.code))


# --- the client side -------------------------------------------------------------------------


def encode_request(
    api_key: int, version: int, correlation_id: int, client_id: str | None, body: dict
) -> bytes:
    """A whole request frame, size prefix included."""
    api = API_BY_KEY[api_key]
    head = _HEAD.pack(api_key, version, correlation_id)
    out = [head]
    NULLABLE_STRING.write(out, client_id)
    out += api.request.encode_parts(body, version)
    payload = b"".join(bytes(p) if isinstance(p, memoryview) else p for p in out)
    return _SIZE.pack(len(payload)) + payload


def decode_response(api_key: int, version: int, payload) -> tuple[int, dict]:
    """(correlation_id, body) of a response frame's payload (without the size prefix)."""
    if len(payload) < 4:
        raise ProtocolError("response shorter than its header")
    correlation_id = _SIZE.unpack_from(payload, 0)[0]
    return correlation_id, API_BY_KEY[api_key].response.decode(payload, version, 4)
