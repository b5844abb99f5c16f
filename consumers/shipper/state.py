"""The shipping agent's state file: the committed position of each followed file (path,
device, inode, offset) as JSON, replaced atomically; written only when it changed."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from broker.protocol.durable import atomic_write

log = logging.getLogger(__name__)

STATE_VERSION = 1


class StateError(RuntimeError):
    """The state file exists but cannot be used."""


def load_state(path: str | os.PathLike) -> list[dict]:
    """The saved files of a state file ([] if there is none); StateError if it is unusable."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"cannot read the state file {path}: {exc}") from exc
    try:
        doc = json.loads(text)
        entries = []
        for e in doc["files"]:
            entries.append(
                {
                    "path": str(e["path"]),
                    "dev": int(e["dev"]),
                    "ino": int(e["ino"]),
                    "offset": int(e["offset"]),
                }
            )
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(
            f"the state file {path} is not a shipper state ({exc!r}); move it away to start over"
        ) from exc
    return entries


def state_doc(entries: list[dict]) -> dict:
    """The state file's document for ``entries`` (path, dev, ino, offset), in a stable order."""
    files = sorted(
        (
            {"path": e["path"], "dev": e["dev"], "ino": e["ino"], "offset": e["offset"]}
            for e in entries
        ),
        key=lambda e: (e["path"], e["dev"], e["ino"]),
    )
    return {"version": STATE_VERSION, "files": files}


class StateFile:
    """A state file and what was last written to it (or read from it)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.path.abspath(path)
        self._saved: dict | None = None
        self._error_logged = False

    def load(self) -> list[dict]:
        """The saved entries (its directory is made if missing); StateError if unusable."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        saved = load_state(self.path)
        self._saved = state_doc(saved)
        return saved

    def save(self, doc: dict) -> bool:
        """Write ``doc`` (a ``state_doc``) if it differs from the last written; True if written.
        A write that fails is logged once and tried again on the next call."""
        if doc == self._saved:
            return False
        try:
            atomic_write(self.path, (json.dumps(doc, indent=1) + "\n").encode())
        except OSError as exc:
            if not self._error_logged:
                log.error(
                    "cannot write the state file %s: %s (trying again every loop)", self.path, exc
                )
                self._error_logged = True
            return False
        if self._error_logged:
            log.info("the state file %s is written again", self.path)
            self._error_logged = False
        self._saved = doc
        return True
