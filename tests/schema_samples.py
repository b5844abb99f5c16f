"""Sample bodies for any schema of the codec, for round-trip tests: a value in every field the
version carries, different from the defaults, and ``project`` to compare a decoded body with
the sample it came from."""

from __future__ import annotations

import itertools
import uuid

from broker.protocol.schema import (
    BOOL,
    BYTES,
    INT8,
    INT16,
    INT32,
    INT64,
    NULLABLE_BYTES,
    NULLABLE_STRING,
    RECORDS,
    STRING,
    UUID,
    Array,
    Struct,
)

_INTS = {
    INT8: (-7, 100),
    INT16: (-2, 30000),
    INT32: (-3, 2_000_000_001),
    INT64: (-4, 9_000_000_000_123),
}
_counter = itertools.count(1)


def sample(type_, version: int, nulls: bool = False):
    """A body of every field ``version`` carries; ``nulls`` puts None (or an empty string)
    wherever the type allows it. Successive values differ: ints alternate between a negative
    number and one near the top of their range."""
    n = next(_counter)
    if isinstance(type_, Struct):
        return {f.name: sample(f.type, version, nulls) for f in type_.fields if f.present(version)}
    if isinstance(type_, Array):
        if nulls and type_.nullable:
            return None
        return [sample(type_.item, version, nulls) for _ in range(2)]
    if type_ is BOOL:
        return n % 2 == 0
    if type_ in _INTS:
        return _INTS[type_][n % 2]
    if type_ is NULLABLE_STRING:
        return None if nulls else f"n\u00e9{n}"
    if type_ is STRING:
        return "" if nulls else f"s{n}"
    if type_ in (NULLABLE_BYTES, RECORDS) and nulls:
        return None
    if type_ in (BYTES, NULLABLE_BYTES, RECORDS):
        return b"\x00b%d\xff" % n
    if type_ is UUID:
        return uuid.UUID(int=n << 64 | n)
    raise AssertionError(f"no sample for {type_!r}")


def project(decoded, like):
    """``decoded`` cut down to the fields ``like`` has (those the version carries), with
    memoryviews read into bytes."""
    if isinstance(like, dict):
        return {k: project(decoded[k], v) for k, v in like.items()}
    if isinstance(like, list):
        return [project(d, v) for d, v in zip(decoded, like)] + decoded[len(like) :]
    if isinstance(decoded, memoryview):
        return bytes(decoded)
    return decoded


def json_class_kwargs(container, ours, value) -> dict:
    """``value`` (a body of our schema ``ours``) as keyword arguments for kafka-python's
    classes generated from Kafka's JSON (an unknown name raises there); an int32 bit field
    becomes their set of bit numbers."""
    kwargs = {}
    for f in ours.fields:
        if f.name not in value:
            continue
        v, theirs = value[f.name], container.fields[f.name]
        if isinstance(f.type, Array) and isinstance(f.type.item, Struct):
            if v is not None:
                v = [theirs.data_class(**json_class_kwargs(theirs, f.type.item, x)) for x in v]
        elif getattr(theirs, "type_str", None) == "bitfield":
            v = {b for b in range(32) if (v & 0xFFFFFFFF) >> b & 1}
        kwargs[f.name] = v
    return kwargs


def assert_agrees_with_json_class(cls, schema, version: int, body, decoded_like=None) -> None:
    """Our encoding of ``body`` equals that of kafka-python's class ``cls`` generated from
    Kafka's JSON, and their decoder reads our bytes back to ``decoded_like`` (default:
    ``body``)."""
    theirs = cls[version](**json_class_kwargs(cls, schema, body)).encode()
    ours = schema.encode(body, version)
    assert ours == bytes(theirs)
    back = cls.decode(ours, version=version).to_dict(json=False)
    assert project(back, body) == (body if decoded_like is None else decoded_like)


def served_cases(served: dict, *, but=()) -> list:
    """(api, version, side) of every version served of the APIs of ``served`` ({ApiKey:
    (kafka-python's module of its classes, (min, max))}), but the (key, side) pairs ``but``."""
    from broker.protocol.registry import API_BY_KEY

    return [
        (API_BY_KEY[key], v, side)
        for key, (_, (low, high)) in served.items()
        for v in range(low, high + 1)
        for side in ("Request", "Response")
        if (key, side) not in but
    ]


def assert_served_flexible_from_kafkas_first(served: dict) -> None:
    """Each API of ``served`` is served at exactly its versions, each flexible just where
    kafka-python's class (Kafka's JSON) says it is."""
    from broker.protocol.registry import API_BY_KEY

    for key, (module, versions) in served.items():
        api = API_BY_KEY[key]
        assert (api.min_version, api.max_version) == versions
        for side in ("Request", "Response"):
            cls = getattr(module, api.name + side)
            for version in range(versions[0], versions[1] + 1):
                assert api.is_flexible(version) == bool(cls.flexible_version_q(version))


def assert_round_trips_as_kafka_python(module, api, version: int, side: str, body) -> None:
    """``body`` round-trips through our schema of ``api``'s ``side`` and gives the bytes of
    kafka-python's class of it in ``module``."""
    schema = api.request if side == "Request" else api.response
    ours = schema.encode(body, version)
    assert project(schema.decode(ours, version), body) == body
    assert_agrees_with_json_class(getattr(module, api.name + side), schema, version, body)
