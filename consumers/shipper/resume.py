"""The shipping agent's start: the files found matched with the saved positions and opened
where reading goes on; a saved file rotated while we were away is read to its end."""

from __future__ import annotations

import logging
import os
import time

from .files import FileFinder, Tail, last_line_start, renamed_in_directory
from .follow import Away, Seen, Start, Why, plan_start, read_from, rotated_while_away

log = logging.getLogger(__name__)


def open_at_start(
    finder: FileFinder, saved: list[dict], from_beginning: bool, max_line_bytes: int
) -> list[Tail]:
    """Open the files the patterns name where their saved state says (see ``plan_start``),
    and the saved files found under another name in their directory."""
    found = finder.expand()
    starts, missing = plan_start(
        {identity: path for identity, (path, _) in found.items()}, saved, from_beginning
    )
    tails: dict[tuple[int, int], Tail] = {}
    for start in starts:
        opened = finder.open(start.path, start.identity)
        if opened is None:
            continue
        fd, st = opened
        tail = Tail(start.path, fd, st, _position(start, fd, st, max_line_bytes))
        tails[tail.identity] = tail
    for e in missing:  # saved files the patterns no longer find
        if (e["dev"], e["ino"]) not in tails:
            tail = _find_rotated(finder, e)
            if tail is not None:
                tails[tail.identity] = tail
    return list(tails.values())


def _position(start: Start, fd: int, st: os.stat_result, max_line_bytes: int) -> int:
    path, why = start.path, start.why
    if why is Why.REPLACED:
        log.warning(
            "%s is a new file (inode %d, saved inode %s): the old one was rotated "
            "away or removed while we were away; reading the new one from the start",
            path,
            st.st_ino,
            ", ".join(str(e["ino"]) for e in start.saved),
        )
    if why in (Why.REPLACED, Why.UNSAVED):
        position = start.offset
        if position is None:
            position = last_line_start(fd, st.st_size, max_line_bytes)
        log.info("%s: starting at offset %d of %d", path, position, st.st_size)
        return position
    seen, position = read_from(st.st_size, start.offset)
    if seen is Seen.TRUNCATED:
        log.warning(
            "%s is shorter (%d bytes) than its saved position %d: truncated "
            "while we were away; reading it from the start",
            path,
            st.st_size,
            start.offset,
        )
        return position
    e = start.saved[0]
    how = {
        Why.RESUMED: "",
        Why.RENAMED: f" (was {e['path']})",
        Why.REMOUNTED: f" (device {e['dev']} is now {st.st_dev})",
    }[why]
    log.info("%s: resuming at offset %d of %d%s", path, position, st.st_size, how)
    return position


def _find_rotated(finder: FileFinder, e: dict) -> Tail | None:
    """A saved file we did not find: if its directory still holds its inode under another
    name (rotated while we were away), its tail from the saved offset; otherwise None."""
    for path, st in renamed_in_directory(e)[:1]:
        away = rotated_while_away(e, path, st.st_size)
        if away is Away.NOT_FOLLOWED:
            log.info("%s is no longer among the files to follow; forgetting it", path)
        elif away is Away.SHORTER:
            log.warning(
                "%s has the inode of %s but is shorter than its saved position; not reading it",
                path,
                e["path"],
            )
        elif away is Away.COMPLETE:
            log.info(
                "%s was rotated to %s while we were away; it was read completely",
                e["path"],
                path,
            )
        else:
            opened = finder.open(path, (e["dev"], e["ino"]))
            if opened is None:
                return None
            fd, st = opened
            log.warning(
                "%s was rotated to %s while we were away; reading its last %d bytes",
                e["path"],
                path,
                st.st_size - e["offset"],
            )
            tail = Tail(path, fd, st, e["offset"])
            tail.orphaned_since = time.monotonic()
            return tail
        return None
    log.warning(
        "%s (inode %d) is gone; lines written to it after offset %d, if any, were not shipped",
        e["path"],
        e["ino"],
        e["offset"],
    )
    return None
