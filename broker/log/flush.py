"""One flush's fsyncs, taken on the appending thread and run on any other (the log manager's
flush thread), so no fsync blocks the reactor.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..protocol.durable import fsync_directory


class FlushJob:
    """The fsyncs of one flush, safe to run off the appending thread: duplicated descriptors
    of the segment files, the index files' paths, and the directory if it gained files."""

    def __init__(
        self,
        end: int,
        fds: list[int],
        index_paths: list[Path],
        directory: Path | None,
        truncations: int = 0,
    ):
        self.end = end
        self.truncations = truncations  # the log's truncation count when the job was taken
        self.fds = fds
        self.index_paths = index_paths
        self.directory = directory

    def run(self) -> None:
        """fsync the log files, then the indexes, then the directory; closes the descriptors."""
        try:
            for fd in self.fds:
                os.fsync(fd)
        finally:
            for fd in self.fds:
                os.close(fd)
            self.fds = []
        for path in self.index_paths:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # renamed for deletion meanwhile (retention)
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if self.directory is not None:
            fsync_directory(self.directory)  # new segment files must survive a power loss too
