"""Tail-following decisions as pure functions of (device, inode, size, position): what a
change of a followed file means and where reading goes on; no files are touched here."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import NamedTuple

FileId = tuple[int, int]  # (device, inode): a file, whatever its name


class Seen(enum.Enum):
    """What a followed file's size says against our position in it."""

    GREW = "grew"  # more to read
    UNCHANGED = "unchanged"
    TRUNCATED = "truncated"  # shorter than our position: copytruncate, or truncated by hand


def read_from(size: int, position: int) -> tuple[Seen, int]:
    """Where to read a file of ``size`` bytes we are at ``position`` in: on, or from 0 if it
    was truncated (it is shorter than where we are)."""
    if size < position:
        return Seen.TRUNCATED, 0
    return (Seen.GREW if size > position else Seen.UNCHANGED), position


class Change(enum.Enum):
    """What a scan of the patterns says of a file, against the files followed."""

    NEW = "new"  # an inode not followed yet: read from its start
    RENAMED = "renamed"  # a followed inode under another name: keep reading it
    BACK = "back"  # a followed inode we had lost is named again
    GONE = "gone"  # its name names it no more (rotated or removed): read it to its end


def scan_changes(
    followed: Mapping[FileId, tuple[str, bool]], found: Mapping[FileId, str]
) -> list[tuple[Change, FileId, str]]:
    """The changes between the files ``followed`` (identity -> (path, orphaned)) and the
    regular files the patterns name now (``found``: identity -> path), in ``found``'s order
    and then the lost ones; a followed file both renamed and back gives both."""
    changes = []
    for identity, path in found.items():
        known = followed.get(identity)
        if known is None:
            changes.append((Change.NEW, identity, path))
            continue
        old_path, orphaned = known
        if old_path != path:
            changes.append((Change.RENAMED, identity, path))
        if orphaned:
            changes.append((Change.BACK, identity, path))
    for identity, (path, orphaned) in followed.items():
        if identity not in found and not orphaned:
            changes.append((Change.GONE, identity, path))
    return changes


class Why(enum.Enum):
    """Why a file found at start-up is read from where it is."""

    RESUMED = "resumed"  # its saved position, under its saved name
    RENAMED = "renamed"  # its saved position; it was renamed while we were away
    REMOUNTED = "remounted"  # its saved position; same path and inode, another device number
    REPLACED = "replaced"  # its path names an inode we have not seen: read from the start
    UNSAVED = "unsaved"  # no saved state: from its end, or from its start if asked


class Start(NamedTuple):
    """Where to start reading a file found at start-up; ``offset`` None is its end (after
    its last complete line); ``saved`` is the saved entry it resumes or replaces."""

    path: str
    identity: FileId
    offset: int | None
    why: Why
    saved: tuple[dict, ...] = ()


def plan_start(
    found: Mapping[FileId, str], saved: Iterable[dict], from_beginning: bool
) -> tuple[list[Start], list[dict]]:
    """Match the files found (identity -> path) with the saved entries (path, dev, ino,
    offset): by (device, inode) first, then by path.  Returns where to start each file and
    the saved entries not found (rotated or removed while we were away)."""
    saved = list(saved)
    by_identity = {(e["dev"], e["ino"]): e for e in saved}
    saved_paths: dict[str, list[dict]] = {}
    for e in saved:
        saved_paths.setdefault(e["path"], []).append(e)
    used: set[FileId] = set()
    starts: list[Start] = []
    for identity, path in found.items():  # by (device, inode) first
        e = by_identity.get(identity)
        if e is not None:
            used.add(identity)
            why = Why.RESUMED if e["path"] == path else Why.RENAMED
            starts.append(Start(path, identity, e["offset"], why, (e,)))
    for identity, path in found.items():  # then by path
        if identity in used:
            continue
        at_path = saved_paths.get(path, [])
        same_inode = [
            e for e in at_path if e["ino"] == identity[1] and (e["dev"], e["ino"]) not in used
        ]
        if same_inode:  # the device number changed (a remount); the inode is the same
            e = same_inode[0]
            used.add((e["dev"], e["ino"]))
            starts.append(Start(path, identity, e["offset"], Why.REMOUNTED, (e,)))
        elif at_path:
            starts.append(Start(path, identity, 0, Why.REPLACED, tuple(at_path)))
        else:
            starts.append(Start(path, identity, 0 if from_beginning else None, Why.UNSAVED))
    missing = [e for e in saved if (e["dev"], e["ino"]) not in used]
    return starts, missing


class Away(enum.Enum):
    """What a saved file found under another name in its directory at start-up means."""

    NOT_FOLLOWED = "not followed"  # under its own name, which the patterns no longer give
    SHORTER = "shorter"  # shorter than its saved position: not the same data; not read
    COMPLETE = "complete"  # rotated while we were away, and read to its end before
    UNREAD = "unread"  # rotated while we were away with lines after its saved position


def rotated_while_away(entry: dict, path: str, size: int) -> Away:
    """A saved file (``entry``) not found through the patterns but present as ``path`` with
    its (device, inode) and ``size`` bytes: whether the rest of it is to be read."""
    if path == entry["path"]:
        return Away.NOT_FOLLOWED
    if size < entry["offset"]:
        return Away.SHORTER
    if size == entry["offset"]:
        return Away.COMPLETE
    return Away.UNREAD


def quiet_for(
    now: float, orphaned_since: float | None, last_data: float, retry_at: float, wait: float
) -> bool:
    """A rotated-away or removed file may be closed once no data came for ``wait`` seconds
    since it lost its name (a writer may not have reopened yet) and no retry is pending."""
    if orphaned_since is None or now < retry_at:
        return False
    return now - last_data >= wait and now - orphaned_since >= wait


class Retire(enum.Enum):
    """What to do with a quiet rotated-away file."""

    KEEP = "keep"  # more to read, or lines still unacknowledged
    SEND_LAST_LINE = "send last line"  # its last line has no newline and never will
    CLOSE = "close"  # read, sent and acknowledged


def retire(size: int, end: int, pending: bool, in_flight: bool) -> Retire:
    """For a quiet rotated-away file of ``size`` bytes read up to ``end`` (with a partial
    ``pending`` line, and lines ``in_flight``): keep it, send its last line, or close it."""
    if size > end:
        return Retire.KEEP
    if pending and not in_flight:
        return Retire.SEND_LAST_LINE
    if in_flight or pending:
        return Retire.KEEP
    return Retire.CLOSE
