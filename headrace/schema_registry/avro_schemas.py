"""Avro schemas as the registry sees them: parsed and put in one canonical text (the same
schema written two ways gets one id), and compatibility decided by the Apache ``avro``
package's ``ReaderWriterCompatibilityChecker`` for each level."""

from __future__ import annotations

import json

import avro.errors
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

BACKWARD = "BACKWARD"
LEVELS = (
    BACKWARD,
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
)
DEFAULT_LEVEL = BACKWARD


class InvalidSchemaError(ValueError):
    """A schema the registry refuses: not JSON, or not Avro."""


def parse(text: str) -> avro.schema.Schema:
    """The parsed schema of ``text``, or InvalidSchemaError saying why not."""
    if not isinstance(text, str):
        raise InvalidSchemaError("the schema must be a string holding the schema's JSON")
    try:
        return avro.schema.parse(text)
    except (avro.errors.AvroException, ValueError, TypeError, KeyError, AttributeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidSchemaError(f"Invalid schema: {reason[:300]}") from None
    except RecursionError:
        raise InvalidSchemaError("Invalid schema: nested too deeply") from None


def canonical(text: str) -> str:
    """``text``'s schema as the registry stores it: its full JSON (docs, defaults, aliases and
    logical types kept), keys sorted, no spaces."""
    return json.dumps(parse(text).to_json(), sort_keys=True, separators=(",", ":"))


def _problems(reader, writer, what: str) -> list[str]:
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = ", ".join(sorted(k.name.upper() for k in result.incompatibilities))
    where = ", ".join(sorted(result.locations))
    why = "; ".join(sorted(result.messages))
    return [f"{what}: {kinds} at {where}: {why}"]


def incompatibilities(new: str, earlier: list[tuple[int, str]], level: str) -> list[str]:
    """Why ``new`` may not follow ``earlier`` (``(version, schema text)``, oldest first) at
    compatibility ``level``; an empty list when it may.  BACKWARD: the new schema reads data
    written with the latest; FORWARD: the latest reads the new one's; FULL: both ways;
    ``_TRANSITIVE``: against every earlier version, not only the latest."""
    if level == "NONE" or not earlier:
        return []
    against = earlier if level.endswith("_TRANSITIVE") else earlier[-1:]
    base = level.removesuffix("_TRANSITIVE")
    reader = parse(new)
    messages = []
    for version, text in against:
        old = parse(text)
        if base in ("BACKWARD", "FULL"):
            messages += _problems(
                reader, old, f"version {version} written, new schema reading (BACKWARD)"
            )
        if base in ("FORWARD", "FULL"):
            messages += _problems(
                old, reader, f"new schema written, version {version} reading (FORWARD)"
            )
    return messages
