"""The files the shipping agent follows: glob patterns expanded to regular files by (device,
inode), files opened read-only, and each followed file's read and acknowledged positions."""

from __future__ import annotations

import errno
import glob
import logging
import os
import stat
import time
from collections import deque

from .follow import FileId

log = logging.getLogger(__name__)


class Tail:
    """One followed file (an inode), from discovery until it is gone and fully acknowledged."""

    __slots__ = (
        "committed",
        "dev",
        "failures",
        "fd",
        "inflight",
        "inflight_bytes",
        "ino",
        "last_data",
        "orphaned_since",
        "path",
        "pending",
        "read_pos",
        "retry_at",
    )

    def __init__(self, path: str, fd: int, st: os.stat_result, position: int):
        self.path = path
        self.fd = fd
        self.dev, self.ino = st.st_dev, st.st_ino
        self.read_pos = position  # file offset of pending[0]: the end of the last line sent
        self.pending = b""  # bytes read after the last newline
        self.committed = position  # every line before it is acknowledged
        self.inflight: deque = deque()  # (end offset, cost, DeliveryFuture), in file order
        self.inflight_bytes = 0
        self.orphaned_since: float | None = None  # its path stopped naming it (rotated, removed)
        self.last_data = time.monotonic()
        self.retry_at = 0.0
        self.failures = 0

    @property
    def identity(self) -> FileId:
        return (self.dev, self.ino)

    @property
    def end(self) -> int:
        """The file offset up to which it was read."""
        return self.read_pos + len(self.pending)

    def __repr__(self) -> str:
        return f"<{self.path} dev={self.dev} ino={self.ino} at {self.read_pos}>"


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class FileFinder:
    """Expands the patterns (paths and globs) and opens what they name, warning once per path
    about errors other than a missing file."""

    def __init__(self, patterns: list[str]):
        self.patterns = patterns
        self._warned_paths: set[str] = set()

    def expand(self) -> dict[FileId, tuple[str, os.stat_result]]:
        """Regular files the patterns name now, by identity."""
        found: dict[FileId, tuple[str, os.stat_result]] = {}
        for pattern in self.patterns:
            paths = sorted(glob.glob(pattern, recursive=True)) if _has_magic(pattern) else [pattern]
            for path in paths:
                try:
                    st = os.stat(path)
                except OSError as exc:
                    if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                        self._warn_once(path, f"cannot stat {path}: {exc}")
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.setdefault((st.st_dev, st.st_ino), (path, st))
        return found

    def _warn_once(self, path: str, message: str) -> None:
        if path not in self._warned_paths:
            self._warned_paths.add(path)
            log.warning("%s", message)

    def open(self, path: str, identity: FileId | None) -> tuple[int, os.stat_result] | None:
        """Open ``path`` read-only; None if it is gone or is no longer ``identity``."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                self._warn_once(path, f"cannot open {path}: {exc}")
            return None
        st = os.fstat(fd)
        if identity is not None and (st.st_dev, st.st_ino) != identity:
            os.close(fd)  # replaced between stat and open: the next scan sees the new file
            return None
        self._warned_paths.discard(path)
        return fd, st


def renamed_in_directory(entry: dict) -> list[tuple[str, os.stat_result]]:
    """The regular files in a saved file's directory that are its (device, inode), under any
    name (a file rotated while we were away)."""
    directory = os.path.dirname(entry["path"]) or "."
    identity = (entry["dev"], entry["ino"])
    try:
        with os.scandir(directory) as entries:
            candidates = [d.path for d in entries if d.inode() == entry["ino"]]
    except OSError:
        candidates = []
    found = []
    for path in candidates:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == identity:
            found.append((path, st))
    return found


def last_line_start(fd: int, size: int, max_line_bytes: int) -> int:
    """Where the last (possibly partial) line of the file starts: tail -F's "end"."""
    pos = size
    floor = max(0, size - max_line_bytes)
    while pos > floor:
        start = max(floor, pos - 65536)
        data = os.pread(fd, pos - start, start)
        nl = data.rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0 if floor == 0 else size
