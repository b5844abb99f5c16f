"""Reading a few dotted fields out of many JSON values without building each whole document:
simdjson parses a value into its own tape and only the fields asked for become Python objects,
so a 200-byte event costs a fraction of ``orjson.loads``.

    >>> FieldReader(["status", "http.ts"]).read([b'{"status": 503, "http": {"ts": 1}}', b"x"])
    [[503, None], [1, None]]

The results are those of ``field_value(orjson.loads(value), path)`` (None for a missing field,
a null value or a value that is not JSON), exactly.  simdjson rejects more than orjson (big
integers, say), and what it rejects is read by orjson; it accepts two things orjson does not
see alike, each ruled out per block: a leading byte order mark, and a name twice in one object
(simdjson finds the first, orjson keeps the last), ruled out when each name of a path occurs in
the block's bytes as often as it was found.  An object or a list found is also read by orjson.
"""

from __future__ import annotations

import orjson
import simdjson

_MISSING = object()  # no such field
_SLOW = object()  # orjson must read it
_BOM = b"\xef\xbb\xbf"
_CONTAINERS = frozenset({simdjson.Object, simdjson.Array})


def field_value(doc, path: str | tuple[str, ...]):
    """The value at a dotted ``path`` (``http.status``, or its names as a tuple) of a parsed
    JSON document, or None."""
    for name in path.split(".") if isinstance(path, str) else path:
        if doc.__class__ is not dict:
            return None
        doc = doc.get(name)
    return doc


def _needle(name: str) -> bytes | None:
    """The bytes of ``name`` as a JSON object key, if it can be written only so (ASCII needing
    no escape, and no "/", which ``\\/`` may also write), save by ``\\u`` escapes."""
    quoted = orjson.dumps(name)
    return None if not quoted.isascii() or b"\\" in quoted or b"/" in quoted else quoted


class FieldReader:
    """The values at dotted ``paths`` (or tuples of names) of many JSON values."""

    def __init__(self, paths: list):
        self.paths = [tuple(p.split(".")) if isinstance(p, str) else tuple(p) for p in paths]
        self._parse = simdjson.Parser().parse
        # per name on a path: its bytes, and one (path, depth) per distinct prefix it ends
        prefixes: dict[tuple, tuple[int, int]] = {}
        for index, path in enumerate(self.paths):
            for depth in range(1, len(path) + 1):
                prefixes.setdefault(path[:depth], (index, depth))
        names: dict[str, list] = {}
        for prefix, where in prefixes.items():
            names.setdefault(prefix[-1], []).append(where)
        self._names = [(_needle(name), where) for name, where in names.items()]
        self._fast = all(needle is not None for needle, _ in self._names)
        top = all(len(path) == 1 for path in self.paths) and len(set(self.paths)) == len(paths)
        self._top = [path[0] for path in self.paths] if top else None

    def read(self, values: list) -> list[list]:
        """One list per path: what it holds in each of ``values``."""
        if not self._fast:
            rows = [self._slow(v) for v in values]
        elif self._top is not None and len(self._top) == 1:
            return [self._read_one_name(values)]
        elif self._top is not None:
            return self._read_top_names(values)
        else:
            found = [self._walk(v) for v in values]
            if None in found or not self._unambiguous(values, found):
                found = [
                    f if f is not None and self._unambiguous([v], [f]) else None
                    for v, f in zip(values, found)
                ]
            rows = [self._slow(v) if f is None else f[0] for v, f in zip(values, found)]
        return [list(column) for column in zip(*rows)] if rows else [[] for _ in self.paths]

    def _read_one_name(self, values: list) -> list:
        """``read`` of one path of one name, the common case, with less work per value."""
        (name,), parse = self._top, self._parse

        def get(value):
            try:
                return parse(value)[name]
            except KeyError:
                return _MISSING
            except Exception:  # not JSON to simdjson (which says why in several types)
                return _SLOW  # or not an object: orjson says which

        try:  # without a call per value; anything simdjson rejects: again with one
            got = [parse(v).get(name, _MISSING) for v in values]
        except Exception:  # not JSON to simdjson, or not an object
            got = None
        if got is None:  # (out of the handler, whose traceback holds simdjson's objects)
            got = [get(v) for v in values]
        if (
            _SLOW not in got
            and _CONTAINERS.isdisjoint(map(type, got))
            and self._plain(values, [len(got) - got.count(_MISSING)])
        ):
            return [None if g is _MISSING else g for g in got]
        return [  # an object or a list found stops simdjson from reading on: orjson does
            self._slow(v)[0]
            if g is _SLOW or g.__class__ in _CONTAINERS or not self._plain([v], [g is not _MISSING])
            else None
            if g is _MISSING
            else g
            for v, g in zip(values, got)
        ]

    def _read_top_names(self, values: list) -> list[list]:
        """``read`` of paths of one name each."""
        names, parse = self._top, self._parse
        missing = [_MISSING] * len(names)

        def get(value):
            try:
                return tuple(map(parse(value).get, names, missing))
            except Exception:  # not JSON to simdjson, or not an object
                return _SLOW

        rows = [get(v) for v in values]
        if _SLOW not in rows:
            columns = [list(column) for column in zip(*rows)] or [[] for _ in names]
            kinds = set().union(*(map(type, column) for column in columns))
            times = [len(rows) - column.count(_MISSING) for column in columns]
            if _CONTAINERS.isdisjoint(kinds) and self._plain(values, times):
                return [[None if g is _MISSING else g for g in column] for column in columns]
        rows = [
            self._slow(v)
            if row is _SLOW
            or not _CONTAINERS.isdisjoint(map(type, row))
            or not self._plain([v], [g is not _MISSING for g in row])
            else tuple(None if g is _MISSING else g for g in row)
            for v, row in zip(values, rows)
        ]
        return [list(column) for column in zip(*rows)] if rows else [[] for _ in names]

    def _walk(self, value) -> tuple[tuple, tuple] | None:
        """(the value of each path, how many of its names were found), or None when orjson
        must read it (not JSON to simdjson, or an object or a list found)."""
        try:
            doc = self._parse(value)
        except Exception:  # not JSON to simdjson (it says why in several types)
            return None
        got_all, depths = [], []
        for path in self.paths:
            got, depth = doc, 0
            for name in path:
                if got.__class__ is not simdjson.Object:
                    got = None
                    break
                got = got.get(name, _MISSING)
                if got is _MISSING:
                    got = None
                    break
                depth += 1
            if got.__class__ in _CONTAINERS:
                return None
            got_all.append(got)
            depths.append(depth)
        return tuple(got_all), tuple(depths)

    def _unambiguous(self, values: list, found: list) -> bool:
        """``_plain`` for ``found``'s depths."""
        times = [
            sum(f[1][index] >= depth for f in found for index, depth in where)
            for _, where in self._names
        ]
        return self._plain(values, times)

    def _plain(self, values: list, times: list[int]) -> bool:
        """Whether simdjson read ``values`` as orjson does: bytes with no byte order mark and
        no ``\\u`` escape, where each name of the paths occurs as many ``times`` as it was
        found (so no object holds it twice)."""
        try:
            blob = b"\n".join(values)
        except TypeError:  # a null value
            return False
        if (not blob.isascii() and _BOM in blob) or (b"\\" in blob and b"\\u" in blob):
            return False
        return all(blob.count(needle) == n for (needle, _), n in zip(self._names, times))

    def _slow(self, value) -> tuple:
        try:
            doc = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:  # not JSON (or not UTF-8): no fields
            doc = None
        return tuple(field_value(doc, path) for path in self.paths)
