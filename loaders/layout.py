"""Where a load puts things: output directories, file names that carry offsets, manifests.

    URL/<topic>/dt=YYYY-MM-DD/hour=HH/<topic>+<partition>+<first offset>+<last offset>.parquet
    URL/<topic>/_quarantine/...      records with a missing or absurd event time
    URL/<topic>/_dead_letters/...    values that could not be parsed (raw bytes, offset, error)
    URL/_headrace/<group>/manifests/<topic>/<partition>/<first>-<next>.json
    URL/_headrace/<group>/tmp/       files being written (rename-based stores only)

Offsets in names are zero-padded to 20 digits, so names sort in offset order.  ``first`` and
``last`` are the first and last offsets of the records *in that file*.
"""

from __future__ import annotations

import re
import time

HOUR_MS = 3_600_000
QUARANTINE = -1  # bucket keys: an event hour (hours since the epoch) or one of these
DEAD_LETTER = -2

_NAME = re.compile(
    r"^(?P<topic>.+)\+(?P<partition>\d+)\+(?P<first>\d{20})\+(?P<last>\d{20})\.parquet$"
)
_MANIFEST = re.compile(r"^(?P<first>\d{20})-(?P<next>\d{20})\.json$")


def bucket_dir(key: int) -> str:
    """The directory under ``<topic>/`` for a bucket key."""
    if key == QUARANTINE:
        return "_quarantine"
    if key == DEAD_LETTER:
        return "_dead_letters"
    return time.strftime("dt=%Y-%m-%d/hour=%H", time.gmtime(key * 3600))


def hour_of_dir(rel: str) -> int | None:
    """The bucket key of ``dt=YYYY-MM-DD/hour=HH`` (None for anything else)."""
    m = re.fullmatch(r"dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})", rel)
    if not m:
        return None
    import calendar

    return calendar.timegm(time.strptime(f"{m.group(1)} {m.group(2)}", "%Y-%m-%d %H")) // 3600


def data_file_name(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}+{partition}+{first:020d}+{last:020d}.parquet"


def parse_data_file_name(name: str) -> tuple[str, int, int, int] | None:
    """(topic, partition, first offset, last offset) of a data file name, or None."""
    m = _NAME.match(name.rsplit("/", 1)[-1])
    if not m:
        return None
    return m.group("topic"), int(m.group("partition")), int(m.group("first")), int(m.group("last"))


def manifest_dir(root: str, group: str, topic: str, partition: int) -> str:
    return f"{root}/_headrace/{group}/manifests/{topic}/{partition}"


def manifest_name(first: int, next_offset: int) -> str:
    return f"{first:020d}-{next_offset:020d}.json"


def parse_manifest_name(name: str) -> tuple[int, int] | None:
    m = _MANIFEST.match(name.rsplit("/", 1)[-1])
    return (int(m.group("first")), int(m.group("next"))) if m else None


def tmp_dir(root: str, group: str) -> str:
    return f"{root}/_headrace/{group}/tmp"
