"""The cleaner's offset map (key -> offset of its latest record), built and read a run of
records at a time with numpy and pyarrow rather than a Python step per record.

    >>> builder = OffsetMapBuilder()
    >>> builder.add(keys, offsets)           # a run's records (a KeyColumn), in offset order
    >>> builder.merge(); len(builder)        # distinct keys so far
    >>> offset_map = builder.build()
    >>> offset_map.superseded(keys, offsets)  # bool per record: a later record of its key?

Keys are grouped exactly, by their bytes, in pyarrow's hash aggregation (``group_by``).  The
lookups go through a sorted array of 64-bit hashes of the map's keys (``np.searchsorted``);
a record is only said to be superseded once its key's bytes compared equal to the map key's
of that hash, and map keys whose hashes collide are looked up by their bytes in a dict.  Two
different keys are thus never taken for one, whatever the hash does.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]

# group_by's engine, loaded with the broker rather than by its first clean
import pyarrow.acero  # type: ignore[import-untyped]

_EMPTY = np.zeros(0, np.int64)
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_LENGTH_MIX = np.uint64(0xC2B2AE3D27D4EB4F)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_powers = np.ones(1, np.uint64)  # _MULTIPLIER ** i, grown on demand


class KeyColumn(NamedTuple):
    """The keys of a run of records: their bytes joined in ``buf`` (uint8), key i at
    ``buf[bounds[i]:bounds[i + 1]]`` (``bounds[0]`` is 0), ``present`` False for a null key
    (no bytes)."""

    buf: np.ndarray
    bounds: np.ndarray
    present: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.bounds)

    def key(self, i: int) -> bytes | None:
        return self.buf[self.bounds[i] : self.bounds[i + 1]].tobytes() if self.present[i] else None


def _spread(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indexes ``starts[i] + 0 .. lengths[i] - 1`` for every i, joined."""
    total = int(lengths.sum())
    if not total:
        return _EMPTY
    firsts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return np.arange(total, dtype=np.int64) + np.repeat(starts - firsts, lengths)


def gather_keys(section: np.ndarray, key_start: np.ndarray, key_len: np.ndarray) -> KeyColumn:
    """The keys at ``key_start`` (lengths ``key_len``, -1: null) of a record section."""
    lengths = np.maximum(key_len, 0)
    bounds = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    return KeyColumn(section[_spread(key_start, lengths)], bounds, key_len >= 0)


def keys_from_list(keys: list) -> KeyColumn:
    """A KeyColumn of ``keys`` (bytes or None)."""
    lengths = np.array([len(k) if k is not None else 0 for k in keys], np.int64)
    buf = np.frombuffer(b"".join(k for k in keys if k is not None), np.uint8)
    bounds = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    return KeyColumn(buf, bounds, np.array([k is not None for k in keys], bool))


def key_hashes(keys: KeyColumn) -> np.ndarray:
    """A 64-bit hash of each key (uint64): a polynomial over its bytes and its length, mixed
    as splitmix64 does.  Equal keys hash equal; different keys may too (callers compare)."""
    global _powers
    lengths = keys.lengths
    longest = int(lengths.max(initial=0))
    powers = _powers  # the cleaner threads share it: each reads its own reference
    if longest > len(powers):
        more = np.full(max(longest, 2 * len(powers)), _MULTIPLIER, np.uint64)
        powers = np.concatenate(([np.uint64(1)], np.cumprod(more, dtype=np.uint64)))
        _powers = powers
    places = np.arange(len(keys.buf), dtype=np.int64) - np.repeat(keys.bounds[:-1], lengths)
    terms = (keys.buf.astype(np.uint64) + np.uint64(1)) * powers[places]
    sums = np.concatenate((np.zeros(1, np.uint64), np.cumsum(terms, dtype=np.uint64)))
    h = sums[keys.bounds[1:]] - sums[keys.bounds[:-1]]
    h ^= lengths.astype(np.uint64) * _LENGTH_MIX
    h ^= h >> np.uint64(30)
    h *= _MIX1
    h ^= h >> np.uint64(27)
    h *= _MIX2
    h ^= h >> np.uint64(31)
    return h


def _concat(columns: list[KeyColumn]) -> KeyColumn:
    """The keys of ``columns``, one after the other."""
    shifts = np.cumsum([0] + [len(c.buf) for c in columns[:-1]])
    bounds = [c.bounds[1:] + shift for c, shift in zip(columns, shifts)]
    return KeyColumn(
        np.concatenate([c.buf for c in columns]),
        np.concatenate([np.zeros(1, np.int64), *bounds]),
        np.concatenate([c.present for c in columns]),
    )


def _present(keys: KeyColumn) -> KeyColumn:
    """Only the non-null keys of ``keys``."""
    if keys.present.all():
        return keys
    lengths = keys.lengths[keys.present]
    buf = keys.buf[_spread(keys.bounds[:-1][keys.present], lengths)]
    return KeyColumn(buf, np.concatenate(([0], np.cumsum(lengths))).astype(np.int64), lengths >= 0)


def _to_arrow(keys: KeyColumn) -> pa.Array:
    """The keys as a binary array (32-bit offsets, the faster to group, while they fit)."""
    small = keys.bounds[-1] < 2**31
    return pa.Array.from_buffers(
        pa.binary() if small else pa.large_binary(),
        len(keys.present),
        [
            None,
            pa.py_buffer(keys.bounds.astype(np.int32) if small else keys.bounds),
            pa.py_buffer(keys.buf),
        ],
    )


def _from_arrow(keys: pa.Array) -> KeyColumn:
    _, bounds, data = keys.buffers()
    wide = pa.types.is_large_binary(keys.type)
    bounds = np.frombuffer(bounds, np.int64 if wide else np.int32)
    bounds = bounds[keys.offset : keys.offset + len(keys) + 1].astype(np.int64)
    buf = np.frombuffer(data, np.uint8)[bounds[0] : bounds[-1]] if data else _EMPTY.astype(np.uint8)
    return KeyColumn(buf, bounds - bounds[0], np.ones(len(keys), bool))


class OffsetMapBuilder:
    """Collects (key, offset) pairs; ``merge`` folds them into the distinct keys."""

    def __init__(self) -> None:
        self._keys: list[KeyColumn] = []  # the map's distinct keys first, once merged
        self._offsets: list[np.ndarray] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, keys: KeyColumn, offsets: np.ndarray) -> None:
        self._keys.append(_present(keys))
        self._offsets.append(offsets[keys.present])

    def merge(self) -> None:
        """Fold the pairs added since the last merge into the map (the latest offset wins)."""
        if not self._keys:
            return
        keys = _to_arrow(_concat(self._keys))
        table = pa.table({"key": keys, "offset": np.concatenate(self._offsets)})
        latest = table.group_by("key", use_threads=False).aggregate([("offset", "max")])
        self._keys = [_from_arrow(latest["key"].combine_chunks())]
        self._offsets = [latest["offset_max"].to_numpy()]
        self._size = latest.num_rows

    def build(self) -> OffsetMap:
        self.merge()
        if not self._keys:
            return OffsetMap(keys_from_list([]), _EMPTY)
        return OffsetMap(self._keys[0], self._offsets[0])


def _search(sorted_hashes: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Where each of ``hashes`` is, or would be, in ``sorted_hashes`` (clipped to its last
    index); the queries are sorted first, which keeps the binary searches in cache."""
    order = np.argsort(hashes)
    at = np.empty(len(hashes), np.int64)
    at[order] = np.searchsorted(sorted_hashes, hashes[order])
    return np.minimum(at, len(sorted_hashes) - 1)


class OffsetMap:
    """Distinct keys and each one's latest offset, for lookups a run at a time."""

    def __init__(self, keys: KeyColumn, offsets: np.ndarray):
        hashes = key_hashes(keys)
        order = np.argsort(hashes, kind="stable")
        hashes = hashes[order]
        shared = np.zeros(len(hashes), bool)  # a hash two or more keys have
        shared[1:] = hashes[1:] == hashes[:-1]
        shared[:-1] |= shared[1:]
        self._collided = np.unique(hashes[shared])
        self._exact = {keys.key(int(i)): int(offsets[i]) for i in order[shared]}
        alone = order[~shared]
        self._hashes = hashes[~shared]
        self._offsets = offsets[alone]
        self._starts = keys.bounds[alone]
        self._lengths = keys.lengths[alone]
        self._buf = keys.buf
        self._size = len(hashes)

    def __len__(self) -> int:
        return self._size

    def superseded(self, keys: KeyColumn, offsets: np.ndarray, mapped_from: int) -> np.ndarray:
        """For each record (its key, its offset): does the map hold a later offset of the
        same key?  False for null keys.  Keyed records at ``mapped_from`` or after are in
        the map: a hash only their key has in it is theirs, and needs no compare."""
        hashes = key_hashes(keys)
        later = np.zeros(len(hashes), bool)
        if len(self._hashes):
            at = _search(self._hashes, hashes)
            later = (self._hashes[at] == hashes) & (self._offsets[at] > offsets) & keys.present
            rows = np.flatnonzero(later & (offsets < mapped_from))
            later[rows[~self._same(keys, rows, at[rows])]] = False
        if len(self._collided):
            for i in np.flatnonzero(np.isin(hashes, self._collided) & keys.present).tolist():
                later[i] = self._exact.get(keys.key(i), -1) > offsets[i]
        return later

    def _same(self, keys: KeyColumn, rows: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Whether key ``rows[i]`` of ``keys`` has the bytes of map key ``at[i]``."""
        lengths = keys.lengths[rows]
        same = lengths == self._lengths[at]
        rows, at, lengths = rows[same], at[same], lengths[same]
        theirs = self._buf[_spread(self._starts[at], lengths)]
        differ = keys.buf[_spread(keys.bounds[rows], lengths)] != theirs
        counts = np.concatenate(([0], np.cumsum(differ)))
        ends = np.cumsum(lengths)
        same[np.flatnonzero(same)] = counts[ends] == counts[ends - lengths]
        return same
