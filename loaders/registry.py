"""The loaders' state in ZooKeeper: run plans, fenced offset commits, inferred schemas.

The group's kind is "loader"; its offsets, owners, plan (``/consumers/<group>/loader/plan``),
last run (``/consumers/<group>/loader/last_run``) and inferred schemas
(``/consumers/<group>/loader/schemas/<topic>``) are laid out and encoded by
broker/protocol/zookeeper.py (ARCHITECTURE.md, ZooKeeper layout); offsets are shared with
every consumer group, so lag is one tool.

A plan fixes, per partition, the offset a run loads up to and the time it was taken.  A new
plan keeps the end of every partition that has not reached it yet, so a run that follows a
crash rebuilds exactly the chunks the crashed run was building.
"""

from __future__ import annotations

import os
import time

from kazoo.exceptions import (
    BadVersionError,
    KazooException,
    NodeExistsError,
    NoNodeError,
)

from broker.protocol import offsets
from broker.protocol import zookeeper as layout
from broker.protocol.zookeeper import LOADER, plan_path
from consumers.consumer import EARLIEST, LATEST

from .schema import merge_schema


class LoaderError(RuntimeError):
    """A load cannot go on; the message says why and what to do."""


class GapError(LoaderError):
    """Offsets were deleted by retention before they were loaded."""


class FencedError(LoaderError):
    """This worker no longer owns the partition, or someone else committed first."""


def read_offset(zk, group: str, topic: str, partition: int) -> tuple[int | None, int | None]:
    """(committed offset, node version), or (None, None) when nothing was committed."""
    try:
        return offsets.read_offset(zk, group, topic, partition)
    except ValueError as exc:
        raise LoaderError(str(exc)) from exc


def commit_offset(
    zk, group: str, topic: str, partition: int, offset: int, version: int | None, consumer_id: str
) -> int:
    """Move the committed offset to ``offset`` if it is still at ``version`` (None: nothing
    committed yet) and this ZooKeeper session still owns the partition, in one transaction;
    returns the new version."""
    try:
        return offsets.commit_owned(zk, group, topic, partition, offset, consumer_id, version)
    except offsets.OwnershipError as exc:
        raise FencedError(str(exc)) from exc
    except KazooException as exc:
        # Whether it applied or not, the next owner's reconcile settles it from the manifest.
        raise FencedError(
            f"{topic}-{partition}: commit of offset {offset} interrupted "
            f"({type(exc).__name__}); rebalancing"
        ) from exc


def check_owner(zk, group: str, topic: str, partition: int, consumer_id: str) -> None:
    """FencedError unless this session still owns the partition."""
    try:
        offsets.check_owner(zk, group, topic, partition, consumer_id)
    except offsets.OwnershipError as exc:
        raise FencedError(str(exc)) from exc
    except KazooException as exc:
        raise FencedError(f"{topic}-{partition}: cannot confirm ownership ({exc!r})") from exc


def claim_group(zk, group: str) -> None:
    """Make sure the group name is a loader's (recorded on first use); LoaderError naming
    the kind that owns it otherwise."""
    try:
        offsets.claim_kind(zk, group, LOADER)
    except offsets.GroupKindError as exc:
        raise LoaderError(str(exc)) from exc


def make_plan(
    zk,
    cluster,
    group: str,
    topics: list[str],
    now_ms: int | None = None,
    value_schema_ids: dict[str, int] | None = None,
) -> dict:
    """Snapshot every partition's end offset and save the plan; partitions that have not
    reached the end of the previous plan keep it.  Returns the saved plan, with the kept
    partitions listed under ``resumed``.  ``value_schema_ids`` (Avro loads): the registry id
    of each topic's reader schema, recorded in each new entry; a kept entry keeps its own,
    so a rerun reads its range with the schema the interrupted run used."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    claim_group(zk, group)
    path = plan_path(group)
    while True:
        try:
            data, stat = zk.get(path)
            old = layout.decode_plan(data, path)
            version = stat.version
        except NoNodeError:
            old, version = {"partitions": {}}, None
        parts, resumed = {}, []
        for topic in topics:
            for p in cluster.partitions(topic):
                key = f"{topic}/{p}"
                committed, _ = read_offset(zk, group, topic, p)
                previous = old["partitions"].get(key)
                if previous is not None and committed is not None and committed < previous["end"]:
                    parts[key] = previous  # unfinished: keep its end, so its chunks repeat
                    resumed.append(key)
                else:
                    parts[key] = {"end": cluster.list_offset(topic, p, LATEST), "ms": now_ms}
                if value_schema_ids is not None and "value_schema_id" not in parts[key]:
                    parts[key] = parts[key] | {"value_schema_id": value_schema_ids[topic]}
        for key, entry in old["partitions"].items():  # other topics' unfinished entries stay
            parts.setdefault(key, entry)
        plan = {"created_ms": now_ms, "partitions": parts}
        raw = layout.encode_plan(plan)
        try:
            if version is None:
                zk.create(path, raw, makepath=True)
            else:
                zk.set(path, raw, version=version)
            return plan | {"resumed": resumed}
        except (BadVersionError, NodeExistsError):
            continue  # another run planned at the same time: plan again over its plan


def read_plan(zk, group: str) -> dict:
    """The group's saved plan (an empty one if none); MalformedNodeError (a ValueError) if
    the node holds something a loader did not write."""
    path = plan_path(group)
    try:
        data, _ = zk.get(path)
    except NoNodeError:
        return {"created_ms": 0, "partitions": {}}
    return layout.decode_plan(data, path)


def log_bounds(cluster, topic: str, partition: int) -> tuple[int, int]:
    return cluster.list_offset(topic, partition, EARLIEST), cluster.list_offset(
        topic, partition, LATEST
    )


class ZkSchemas:
    """Inferred schemas shared by every worker of a group, changed only by compare-and-set,
    so two workers that meet a new field at once settle on one type."""

    declared = False

    def __init__(self, zk, group: str):
        self.zk = zk
        self.group = group
        self.cache: dict[str, tuple[dict[str, str], int | None]] = {}

    def _read(self, topic: str) -> tuple[dict[str, str], int | None]:
        path = layout.schema_path(self.group, topic)
        try:
            data, stat = self.zk.get(path)
        except NoNodeError:
            return {}, None
        return layout.decode_schema(data, path), stat.version

    def get(self, topic: str) -> dict[str, str]:
        if topic not in self.cache:
            self.cache[topic] = self._read(topic)
        return self.cache[topic][0]

    def update(self, topic: str, found: dict[str, str]) -> dict[str, str]:
        current, version = self.cache.get(topic) or self._read(topic)
        while True:
            merged = merge_schema(current, found)
            if merged == current and version is not None:
                self.cache[topic] = (current, version)
                return current
            raw, path = layout.encode_schema(merged), layout.schema_path(self.group, topic)
            try:
                if version is None:
                    self.zk.create(path, raw, makepath=True)
                    version = 0
                else:
                    version = self.zk.set(path, raw, version=version).version
                self.cache[topic] = (merged, version)
                return merged
            except (BadVersionError, NodeExistsError):
                current, version = self._read(topic)

    def refresh(self) -> None:
        self.cache.clear()


def record_last_run(zk, group: str, run: dict) -> None:
    """Save the run that just ended in ``/consumers/<group>/loader/last_run`` (when it
    finished, rows, dead letters, files, seconds and the warehouse URL), for the dashboard."""
    offsets.put(zk, layout.last_run_path(group), layout.encode_last_run(run))


def warehouse_url(url: str) -> str:
    """``url`` as another process can open it: a local path made absolute."""
    return url if "://" in url else "file://" + os.path.abspath(url)
