"""What every ZooKeeper node codec shares: the error a decoder raises on data it cannot read,
and the small JSON helpers the layout modules (``zookeeper.py``, ``broker_nodes.py``,
``schema_nodes.py``) build their encoders and decoders from.  Pure."""

from __future__ import annotations

import json
from contextlib import contextmanager


class MalformedNodeError(ValueError):
    """A node's data is not what the layout says it holds."""

    def __init__(self, what: str, data: bytes, reason: str, path: str = ""):
        self.what, self.data, self.reason, self.path = what, data, reason, path
        shown = repr(bytes(data[:100])) if isinstance(data, bytes | bytearray) else repr(data)
        said = f"{path} holds {shown}, not" if path else f"{shown} is not"
        super().__init__(f"{said} {what} ({reason})")


@contextmanager
def reading(what: str, data: bytes, path: str):
    """Any failure to read ``data`` inside (bad UTF-8 or JSON, a missing key, a wrong type)
    becomes a MalformedNodeError naming the node."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise MalformedNodeError(what, data, f"{type(exc).__name__}: {exc}", path) from None


def dumps(doc) -> bytes:
    return json.dumps(doc).encode()


def check(ok: bool, why: str) -> None:
    if not ok:
        raise TypeError(why)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
