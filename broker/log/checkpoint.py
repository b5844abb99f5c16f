"""Offset checkpoint files, replaced atomically.

The format is Kafka's: a version line (0), a count line, then ``<topic> <partition> <offset>``
per line.  A file is written to a temporary name in the same directory, fsynced, renamed
over the old one, and the directory fsynced, so a crash leaves either the old or the new
file, never a mix.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from ..protocol.durable import atomic_write

log = logging.getLogger(__name__)

VERSION = 0
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_FILE = "log-start-offset-checkpoint"
HIGH_WATERMARK_FILE = "replication-offset-checkpoint"


class CheckpointError(ValueError):
    """A checkpoint file is unreadable; the caller falls back to a full recovery."""


def write_checkpoint(path: Path, offsets: Mapping[tuple[str, int], int]) -> None:
    lines = [str(VERSION), str(len(offsets))]
    lines += [
        f"{topic} {partition} {offset}" for (topic, partition), offset in sorted(offsets.items())
    ]
    atomic_write(path, ("\n".join(lines) + "\n").encode())


def read_checkpoint(path: Path) -> dict[tuple[str, int], int]:
    """The offsets in a checkpoint file; {} if it does not exist, CheckpointError if damaged."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    lines = text.splitlines()
    try:
        if int(lines[0]) != VERSION:
            raise CheckpointError(f"{path}: unknown checkpoint version {lines[0]}")
        count = int(lines[1])
        entries = {}
        for line in lines[2 : 2 + count]:
            topic, partition, offset = line.split()
            entries[(topic, int(partition))] = int(offset)
    except (IndexError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed checkpoint ({exc})") from None
    if len(entries) != count:
        raise CheckpointError(f"{path}: expected {count} entries, found {len(entries)}")
    return entries
