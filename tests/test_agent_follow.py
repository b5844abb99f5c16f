"""The shipping agent's tail-following decisions, table-driven and without files: a file that
grew, stayed, was truncated (copytruncate), renamed, rotated, replaced or removed, at start-up
and while running, and when a rotated-away file may be closed."""

from __future__ import annotations

import pytest

from consumers.shipper.follow import (
    Away,
    Change,
    Retire,
    Seen,
    Why,
    plan_start,
    quiet_for,
    read_from,
    retire,
    rotated_while_away,
    scan_changes,
)

A, B, C = (1, 10), (1, 11), (1, 12)  # (device, inode)


def entry(path, identity, offset):
    return {"path": path, "dev": identity[0], "ino": identity[1], "offset": offset}


@pytest.mark.parametrize(
    ("size", "position", "seen", "read_at"),
    [
        (100, 40, Seen.GREW, 40),  # lines appended
        (40, 40, Seen.UNCHANGED, 40),
        (0, 0, Seen.UNCHANGED, 0),  # an empty file
        (10, 40, Seen.TRUNCATED, 0),  # copytruncate, then fewer bytes written than we had read
        (0, 40, Seen.TRUNCATED, 0),  # truncated to nothing
        (40, 0, Seen.GREW, 0),  # a new file read from its start
    ],
)
def test_a_followed_file_is_read_on_or_from_its_start_if_truncated(size, position, seen, read_at):
    assert read_from(size, position) == (seen, read_at)


@pytest.mark.parametrize(
    ("followed", "found", "changes"),
    [
        # unchanged: the same inode under the same name
        ({A: ("a.log", False)}, {A: "a.log"}, []),
        # a new file appears
        ({A: ("a.log", False)}, {A: "a.log", B: "b.log"}, [(Change.NEW, B, "b.log")]),
        # logrotate's rename with a glob: the old inode under a new name, a new inode at the path
        (
            {A: ("a.log", False)},
            {B: "a.log", A: "a.log.1"},
            [(Change.NEW, B, "a.log"), (Change.RENAMED, A, "a.log.1")],
        ),
        # rotated out of the patterns, or removed: read the old inode to its end
        ({A: ("a.log", False)}, {}, [(Change.GONE, A, "a.log")]),
        # replaced: the path names another inode; the old one is gone
        (
            {A: ("a.log", False)},
            {B: "a.log"},
            [(Change.NEW, B, "a.log"), (Change.GONE, A, "a.log")],
        ),
        # a lost file is named again, under its name or another
        ({A: ("a.log", True)}, {A: "a.log"}, [(Change.BACK, A, "a.log")]),
        (
            {A: ("a.log", True)},
            {A: "a.log.1"},
            [(Change.RENAMED, A, "a.log.1"), (Change.BACK, A, "a.log.1")],
        ),
        # already known to be gone: nothing new
        ({A: ("a.log", True)}, {}, []),
    ],
    ids=["unchanged", "new", "rotated", "gone", "replaced", "back", "back-renamed", "still-gone"],
)
def test_a_scan_names_what_changed(followed, found, changes):
    assert scan_changes(followed, found) == changes


@pytest.mark.parametrize(
    ("found", "saved", "from_beginning", "starts", "missing"),
    [
        # resumed where it was
        ({A: "a.log"}, [entry("a.log", A, 30)], False, [("a.log", A, 30, Why.RESUMED)], []),
        # renamed while we were away: found by its inode, resumed
        ({A: "a.log.1"}, [entry("a.log", A, 30)], False, [("a.log.1", A, 30, Why.RENAMED)], []),
        # the device number changed (a remount): same path and inode
        (
            {(2, 10): "a.log"},
            [entry("a.log", A, 30)],
            False,
            [("a.log", (2, 10), 30, Why.REMOUNTED)],
            [],
        ),
        # rotated while we were away: the path names a new inode, the old one is looked for
        (
            {B: "a.log"},
            [entry("a.log", A, 30)],
            False,
            [("a.log", B, 0, Why.REPLACED)],
            [entry("a.log", A, 30)],
        ),
        # no saved state: from the end, or from the start if asked
        ({A: "a.log"}, [], False, [("a.log", A, None, Why.UNSAVED)], []),
        ({A: "a.log"}, [], True, [("a.log", A, 0, Why.UNSAVED)], []),
        # a saved file that is gone
        ({}, [entry("a.log", A, 30)], False, [], [entry("a.log", A, 30)]),
        # by inode before by path: a.log.1 keeps a.log's position, the new a.log is replaced
        (
            {B: "a.log", A: "a.log.1"},
            [entry("a.log", A, 30)],
            False,
            [("a.log.1", A, 30, Why.RENAMED), ("a.log", B, 0, Why.REPLACED)],
            [],
        ),
    ],
    ids=["resumed", "renamed", "remounted", "replaced", "end", "beginning", "gone", "rotated"],
)
def test_start_up_matches_saved_files_by_inode_then_by_path(
    found, saved, from_beginning, starts, missing
):
    planned, lost = plan_start(found, saved, from_beginning)
    assert [(s.path, s.identity, s.offset, s.why) for s in planned] == starts
    assert lost == missing


@pytest.mark.parametrize(
    ("path", "size", "away"),
    [
        ("a.log", 50, Away.NOT_FOLLOWED),  # its own name: the patterns no longer give it
        ("a.log.1", 20, Away.SHORTER),  # shorter than where we were: not read
        ("a.log.1", 30, Away.COMPLETE),  # read to its end before we stopped
        ("a.log.1", 50, Away.UNREAD),  # lines after our position: read them
    ],
)
def test_a_file_rotated_while_away_is_read_to_its_end_only_if_it_grew(path, size, away):
    assert rotated_while_away(entry("a.log", A, 30), path, size) is away


@pytest.mark.parametrize(
    ("now", "orphaned_since", "last_data", "retry_at", "quiet"),
    [
        (100.0, None, 0.0, 0.0, False),  # still named: never closed
        (100.0, 99.0, 0.0, 0.0, False),  # lost its name a moment ago: a writer may reopen
        (100.0, 90.0, 99.0, 0.0, False),  # data came a moment ago
        (100.0, 90.0, 90.0, 101.0, False),  # a retry is pending
        (100.0, 95.0, 95.0, 0.0, True),  # quiet for the wait
    ],
)
def test_a_rotated_file_is_quiet_after_the_wait(now, orphaned_since, last_data, retry_at, quiet):
    assert quiet_for(now, orphaned_since, last_data, retry_at, 5.0) is quiet


@pytest.mark.parametrize(
    ("size", "end", "pending", "in_flight", "step"),
    [
        (100, 80, False, False, Retire.KEEP),  # more to read
        (80, 80, True, False, Retire.SEND_LAST_LINE),  # a last line without newline
        (80, 80, True, True, Retire.KEEP),  # its earlier lines first
        (80, 80, False, True, Retire.KEEP),  # waiting for acknowledgements
        (80, 80, False, False, Retire.CLOSE),  # done
    ],
)
def test_a_quiet_rotated_file_is_closed_once_read_and_acknowledged(
    size, end, pending, in_flight, step
):
    assert retire(size, end, pending, in_flight) is step
