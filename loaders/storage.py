"""The warehouse through fsspec: publish a whole file atomically, list, read, delete.

    >>> store = Storage("s3://bucket/warehouse", {"endpoint_url": "http://127.0.0.1:9000"})
    >>> store.publish("clicks/dt=2026-11-28/hour=07/clicks+0+...parquet", data)

Publishing is atomic on every backend: on local disk and HDFS the bytes go to a temporary
name, are synced, and renamed into place (the rename's result is checked); on object stores
(s3, gcs, memory, ...) a single whole-object write is the atomic unit, as nothing is visible
before the upload completes.  After publishing, the size is read back and compared.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from pathlib import Path

import fsspec
from fsspec.core import url_to_fs

from broker.protocol.durable import atomic_write

RENAME_PROTOCOLS = {"file", "local", "hdfs", "arrow_hdfs", "viewfs"}


class StorageError(IOError):
    """The warehouse refused a write, a rename or a read, or a file is not what was written."""


class Storage:
    """One warehouse root (any fsspec URL) and how to publish files into it atomically."""

    def __init__(self, url: str, options: dict | None = None):
        if "://" not in url:
            url = "file://" + os.path.abspath(url)
        self.url = url.rstrip("/")
        try:
            self.fs, root = url_to_fs(self.url, **(options or {}))
        except (ImportError, ValueError) as exc:
            raise StorageError(f"cannot open warehouse {url}: {exc}") from exc
        self.root = root.rstrip("/") if root not in ("", "/") else root
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        self.protocol = protocol
        self.rename_based = protocol in RENAME_PROTOCOLS
        self.local = protocol in ("file", "local")

    def check(self) -> None:
        """Fail with a clear message if the warehouse cannot be reached (or, on an object
        store, its bucket does not exist)."""
        try:
            if not self.rename_based and self.protocol not in ("memory",):
                bucket = self.root.strip("/").split("/", 1)[0]
                if bucket and not self.fs.exists(bucket):
                    raise StorageError(
                        f"cannot open warehouse {self.url}: bucket {bucket!r} does not exist"
                    )
            self.list_dirs("")
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"cannot open warehouse {self.url}: {exc}") from exc

    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if rel else self.root

    # --- writing -------------------------------------------------------------------------

    def publish(self, rel: str, data: bytes, tmp_rel: str) -> None:
        """Make ``rel`` hold exactly ``data``, atomically; ``tmp_rel`` is a directory for
        temporary files on rename-based stores."""
        final = self.path(rel)
        try:
            if self.local:
                self._publish_local(final, data, self.path(tmp_rel))
            elif self.rename_based:
                tmp = posixpath.join(self.path(tmp_rel), uuid.uuid4().hex + ".tmp")
                self.fs.makedirs(self.path(tmp_rel), exist_ok=True)
                self.fs.pipe_file(tmp, data)
                self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
                result = self.fs.mv(tmp, final)
                if result is False:  # HDFS's rename answers False instead of raising
                    raise StorageError(f"rename of {tmp} to {final} failed")
            else:
                self.fs.pipe_file(final, data)
            size = self.fs.size(final)
        except StorageError:
            raise
        except Exception as exc:  # OSError, botocore errors, ...
            raise StorageError(f"cannot publish {self.url}/{rel}: {exc}") from exc
        if size != len(data):
            raise StorageError(f"{self.url}/{rel} has {size} bytes after publishing {len(data)}")

    def _publish_local(self, final: str, data: bytes, tmp_dir: str) -> None:
        os.makedirs(os.path.dirname(final), exist_ok=True)
        for attempt in range(3):
            os.makedirs(tmp_dir, exist_ok=True)
            try:
                atomic_write(Path(final), data, tmp=Path(tmp_dir) / (uuid.uuid4().hex + ".tmp"))
                return
            except FileNotFoundError:
                # Another worker swept this temporary directory (it took this one for dead
                # between two ZooKeeper sessions): write it again.
                if attempt == 2:
                    raise

    def write_small(self, rel: str, data: bytes, tmp_rel: str) -> None:
        """A small metadata file (manifest, marker), published the same way."""
        self.publish(rel, data, tmp_rel)

    def delete(self, rel: str) -> None:
        try:
            self.fs.rm_file(self.path(rel))
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise StorageError(f"cannot delete {self.url}/{rel}: {exc}") from exc

    def clear_dir(self, rel: str) -> None:
        """Delete the files directly in ``rel``, then the directory."""
        for name in self.list_names(rel):
            self.delete(f"{rel}/{name}")
        self.remove_dir(rel)

    def remove_dir(self, rel: str) -> None:
        """Remove an empty directory (stores without directories have nothing to remove)."""
        try:
            self.fs.rmdir(self.path(rel))
        except (FileNotFoundError, OSError, NotImplementedError):
            pass

    # --- reading -------------------------------------------------------------------------

    def exists(self, rel: str) -> bool:
        try:
            # Not from a listing cache (s3fs answers exists() from a cached listing of the
            # parent): other workers create and delete files here.
            self.fs.invalidate_cache(self.path(rel))
            return self.fs.exists(self.path(rel))
        except Exception as exc:
            raise StorageError(f"cannot check {self.url}/{rel}: {exc}") from exc

    def read(self, rel: str) -> bytes:
        try:
            return self.fs.cat_file(self.path(rel))
        except Exception as exc:
            raise StorageError(f"cannot read {self.url}/{rel}: {exc}") from exc

    def list_names(self, rel: str) -> list[str]:
        """Names (not paths) of the files directly in ``rel``; empty if it does not exist."""
        return self._list(rel, directories=False)

    def list_dirs(self, rel: str) -> list[str]:
        """Names of the directories (prefixes, on object stores) directly in ``rel``."""
        return self._list(rel, directories=True)

    def _list(self, rel: str, directories: bool) -> list[str]:
        try:
            self.fs.invalidate_cache(self.path(rel))
            entries = self.fs.ls(self.path(rel), detail=True)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise StorageError(f"cannot list {self.url}/{rel}: {exc}") from exc
        return sorted(
            posixpath.basename(e["name"].rstrip("/"))
            for e in entries
            if (e.get("type") == "directory") == directories
        )


def parse_storage_options(items: list[str]) -> dict:
    """``key=value`` pairs from the command line; true/false/ints become Python values, and
    ``client_kwargs.endpoint_url=...`` style dotted keys become nested dicts."""
    options: dict = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--storage-option wants key=value, got {item!r}")
        key, value = item.split("=", 1)
        parsed: object = value
        if value.lower() in ("true", "false"):
            parsed = value.lower() == "true"
        else:
            try:
                parsed = int(value)
            except ValueError:
                pass
        target = options
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = parsed
    return options


__all__ = ["Storage", "StorageError", "fsspec", "parse_storage_options"]
