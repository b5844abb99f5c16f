"""Swapping cleaned segments into a log crash-safely, and finishing a swap after a crash.

The steps, as Kafka's ``replaceSegments``: the cleaner thread writes ``<base>.log.cleaned``
and its two indexes ``.cleaned`` (each fsynced); then, on the log's thread, once it has
checked the replaced segments are still the log's:

1. ``swap``: the indexes, then the log, are renamed ``.cleaned`` -> ``.swap``, for every
   group of the clean, and the directory fsynced once (from here the cleaned files are the
   truth);
2. ``deleted``: the replaced segments are renamed ``.deleted`` (their files are removed after
   ``file.delete.delay.ms``: reads already handed out finish from them);
3. ``installed``: the ``.swap`` files are renamed to their final names and the segment opens.

At start-up ``complete_swaps`` runs before the segments are listed: ``.cleaned`` files are
half a clean and removed (the old segments are intact); a ``<base>.log.swap`` replaces every
segment whose base offset lies in [base, the swap's next offset) and takes its final name;
``.deleted`` files go as always.  A crash between any two steps thus leaves either the old
segments or the cleaned one, never a mix.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..protocol.durable import fsync_directory
from ..protocol.records import BASE_OFFSET, LAST_OFFSET_DELTA
from .compaction import CLEANED_SUFFIX, CleanedGroup
from .names import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, offset_file_name
from .segment import Segment

if TYPE_CHECKING:
    from .partition import PartitionLog

log = logging.getLogger(__name__)

SWAP_SUFFIX = ".swap"
_FILE_SUFFIXES = (INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX)  # the log file last

# Tests: called with each step's name ("cleaned", "swap", "deleted", "installed") once it is
# done; raising there leaves the files as a crash at that point would.  A broker started
# with HEADRACE_TEST_CLEANER_KILL_AT=<step> kills itself with SIGKILL there.
crash_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if os.environ.get("HEADRACE_TEST_CLEANER_KILL_AT") == name:
        os.kill(os.getpid(), 9)
    if crash_hook is not None:
        crash_hook(name)


def _path(directory: Path, base: int, suffix: str, extra: str = "") -> Path:
    return directory / (offset_file_name(base, suffix) + extra)


def write_indexes(cleaned: CleanedGroup, index_interval: int) -> None:
    """Build the cleaned file's two indexes as ``.cleaned`` files (fsynced)."""
    assert cleaned.path is not None, "a group the clean wrote has a file"
    directory, base = cleaned.path.parent, cleaned.bases[0]
    fd = os.open(cleaned.path, os.O_RDONLY)
    try:
        segment = Segment(directory, base, fd, index_interval)
        segment.index.path = _path(directory, base, INDEX_SUFFIX, CLEANED_SUFFIX)
        segment.time_index.path = _path(directory, base, TIME_INDEX_SUFFIX, CLEANED_SUFFIX)
        segment.rebuild_index()
        segment.index.flush(fsync=True)
        segment.time_index.flush(fsync=True)
    finally:
        os.close(fd)
    _step("cleaned")


def discard(cleaned: CleanedGroup) -> None:
    """Remove a cleaned group's files (a clean that cannot be swapped in)."""
    if cleaned.path is None:
        return
    for suffix in _FILE_SUFFIXES:
        _path(cleaned.path.parent, cleaned.bases[0], suffix, CLEANED_SUFFIX).unlink(missing_ok=True)


def mark_swaps(directory: Path, groups: list[CleanedGroup]) -> None:
    """Step 1 of the module docstring for all of ``groups`` at once: one directory fsync
    for the clean, however many groups it swaps in."""
    for cleaned in groups:
        for suffix in _FILE_SUFFIXES:
            os.replace(
                _path(directory, cleaned.bases[0], suffix, CLEANED_SUFFIX),
                _path(directory, cleaned.bases[0], suffix, SWAP_SUFFIX),
            )
    if groups:
        fsync_directory(directory)
        _step("swap")


def install(plog: PartitionLog, first: int, count: int, cleaned: CleanedGroup) -> Segment:
    """Replace ``plog.segments[first:first + count]`` with the cleaned file, once
    ``mark_swaps`` has made it the truth (steps 2-3 of the module docstring), on the log's
    thread; returns the new segment."""
    directory, base = plog.directory, cleaned.bases[0]
    old = plog.segments[first : first + count]
    plog._schedule_deletes(old, "cleaning")
    _step("deleted")
    for suffix in _FILE_SUFFIXES:
        os.replace(_path(directory, base, suffix, SWAP_SUFFIX), _path(directory, base, suffix))
    segment = Segment.open(directory, base, plog.config.index_interval_bytes)
    segment.gaps_allowed = True
    segment.next_offset = plog.segments[first + count].base_offset
    plog.segments[first : first + count] = [segment]
    plog._bases[first : first + count] = [base]
    plog._directory_unsynced = True  # the next flush fsyncs the final names
    _step("installed")
    return segment


def complete_swaps(directory: Path) -> int:
    """Finish or undo what a crash left of a swap (see the module docstring); returns the
    swaps completed."""
    names = os.listdir(directory)
    for name in names:
        if name.endswith(CLEANED_SUFFIX):
            (directory / name).unlink()
    bases = sorted(
        int(name[: -len(LOG_SUFFIX + SWAP_SUFFIX)])
        for name in names
        if name.endswith(LOG_SUFFIX + SWAP_SUFFIX)
    )
    logs = sorted(
        int(name[: -len(LOG_SUFFIX)])
        for name in names
        if name.endswith(LOG_SUFFIX) and name[: -len(LOG_SUFFIX)].isdigit()
    )
    for base in bases:
        end = _swap_end(_path(directory, base, LOG_SUFFIX, SWAP_SUFFIX), base)
        for old in logs:
            if base < old < end:
                for suffix in _FILE_SUFFIXES:
                    _path(directory, old, suffix).unlink(missing_ok=True)
        for suffix in _FILE_SUFFIXES:
            swap = _path(directory, base, suffix, SWAP_SUFFIX)
            if swap.exists():
                os.replace(swap, _path(directory, base, suffix))
            else:
                _path(directory, base, suffix).unlink(missing_ok=True)  # rebuilt when used
        log.warning("%s: finished swapping in the cleaned segment %d", directory.name, base)
    for name in os.listdir(directory):
        if name.endswith(SWAP_SUFFIX):  # an index renamed before a crash, its log not
            (directory / name).unlink()
    if bases:
        fsync_directory(directory)
    return len(bases)


def _swap_end(path: Path, base: int) -> int:
    """The offset after the last batch of a swap file (its base if it has none)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        segment = Segment(path.parent, base, fd, 1 << 30)
        segment.size = os.fstat(fd).st_size
        end = base
        try:
            for _, header in segment.scan_headers(0, segment.size):
                end = header[BASE_OFFSET] + header[LAST_OFFSET_DELTA] + 1
        except EOFError:
            pass
        return end
    finally:
        os.close(fd)
