"""The generated per-version codecs agree with the generic table walk, for every API and
version served: same bytes out, same dicts back, and the same refusal of malformed bytes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.protocol import schema
from broker.protocol.registry import APIS
from broker.protocol.schema import ProtocolError

_RANGES = {">b": 7, ">h": 15, ">i": 31, ">q": 63}


def values(t, version, flexible=None):
    """A hypothesis strategy for values of schema type ``t`` at ``version`` (``flexible``:
    whether it is a flexible version; by default as ``t``, a message, says)."""
    if flexible is None:
        flexible = isinstance(t, schema.Struct) and t.is_flexible(version)
    if isinstance(t, schema._Bool):
        return st.booleans()
    if isinstance(t, schema._Fixed):
        bits = _RANGES[t.fmt.format]
        return st.integers(-(1 << bits), (1 << bits) - 1)
    if isinstance(t, schema._String):
        text = st.text(max_size=8)
        return st.none() | text if t.nullable else text
    if isinstance(t, schema._Bytes):
        data = st.binary(max_size=12)
        return st.none() | data if t.nullable else data
    if isinstance(t, schema._Uuid):
        return st.uuids()
    if isinstance(t, schema.Array):
        items = st.lists(values(t.item, version, flexible), max_size=3)
        return st.none() | items if t.nullable else items
    if isinstance(t, schema.Struct):
        return st.fixed_dictionaries(
            {
                f.name: values(f.type, version, flexible)
                for f in t.fields
                if f.in_body(version) or f.tagged(version, flexible)
            }
        )
    raise TypeError(t)


CASES = [
    (api.name, side, getattr(api, side), version)
    for api in APIS
    for side in ("request", "response")
    for version in range(api.min_version, api.max_version + 1)
]


def _plain(value):
    """Decoded values with record views turned into bytes, for comparison and display."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _outcome(decode, data, version):
    try:
        return _plain(decode(data, version))
    except ProtocolError:
        return ProtocolError


@pytest.mark.parametrize(
    "name,side,struct_,version", CASES, ids=[f"{c[0]}-{c[1]}-v{c[3]}" for c in CASES]
)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_codec_agrees_with_the_generic_one(name, side, struct_, version, data):
    check_codecs_agree(struct_, version, data)


def check_codecs_agree(struct_, version, data) -> None:
    """A drawn body encodes and decodes alike by the generated and the generic codec, and
    damaged bytes are refused (or read) alike."""
    obj = data.draw(values(struct_, version))
    encoded = struct_.encode(obj, version)
    assert encoded == struct_.encode_generic(obj, version)
    decoded = struct_.decode(encoded, version)
    assert _plain(decoded) == _plain(struct_.decode_generic(encoded, version))
    assert struct_.encode(decoded, version) == encoded
    # Damaged bytes: cut short, or one byte changed, are refused (or read) alike.
    cut = data.draw(st.integers(0, len(encoded)))
    damaged = bytearray(encoded)
    if damaged:
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    for bad in (encoded[:cut], bytes(damaged), encoded + b"\x00"):
        assert _outcome(struct_.decode, bad, version) == _outcome(
            struct_.decode_generic, bad, version
        )


def test_missing_fields_encode_their_defaults_alike():
    for _, _, struct_, version in CASES:
        assert struct_.encode({}, version) == struct_.encode_generic({}, version) or _raises_alike(
            struct_, version
        )


def _raises_alike(struct_, version):
    """Both refuse a body that lacks a field with no default (a non-nullable None)."""
    for encode in (struct_.encode, struct_.encode_generic):
        with pytest.raises(ProtocolError):
            encode({}, version)
    return True
