"""Durable replacement of small files, shared by every tier.

The storage engine's checkpoints and producer snapshots, the shipping agent's state file and
the loader's local commits all replace a file the same way (ARCHITECTURE.md, "Contract"):
write a temporary file in the same directory, fsync it, rename it over the old one, fsync the
directory.  A crash leaves the old content or the new, never a mix.
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(
    path: str | os.PathLike, data: bytes, tmp: str | os.PathLike | None = None
) -> None:
    """Replace ``path`` with ``data``, durably and atomically.

    ``tmp`` names the temporary file (it must be on the same file system as ``path``); by
    default it is ``<path>.tmp`` beside it.  A failed write removes the temporary file and
    leaves ``path`` as it was.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp") if tmp is None else Path(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: str | os.PathLike) -> None:
    """fsync a directory, so the names created, renamed or removed in it survive a power loss."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["atomic_write", "fsync_directory"]
