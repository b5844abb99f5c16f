"""Reconciling: settle a partition's committed offset with the chunks an earlier worker left.

After every rebalance, before fetching: a manifest that starts at the committed offset and
whose files all exist is a chunk published by a worker that died before its commit - the
offset is moved past it, nothing is written again; a manifest whose files are not all there
is a chunk that died while publishing - its files are deleted and the chunk is built again;
manifests before the committed offset are leftovers of a worker that died before deleting
them, and are deleted.  A committed offset below the log start is a gap (retention deleted
events before they were loaded); one past the log end, or a plan past it, fails the load.
"""

from __future__ import annotations

import json
import logging

from .layout import manifest_dir, manifest_name, parse_manifest_name
from .registry import GapError, LoaderError, commit_offset, log_bounds, read_offset

log = logging.getLogger(__name__)


def reconcile(worker, topic: str, partition: int, planned: int) -> tuple[int, int]:
    """Settle the committed offset of a partition ``worker`` (a ``loaders.worker.Worker``) now
    owns and loads up to ``planned``; see the module docstring.  Returns the offset to load
    from and the version of its node, for the next compare-and-set."""
    zk, group, owner, store = worker.zk, worker.group_name, worker.group.consumer_id, worker.store
    committed, version = read_offset(zk, group, topic, partition)
    start, end = log_bounds(worker.cluster, topic, partition)
    if committed is None:
        committed = start
        version = commit_offset(zk, group, topic, partition, committed, None, owner)
    mdir = manifest_dir("", group, topic, partition).lstrip("/")
    found = sorted(filter(None, (parse_manifest_name(n) for n in store.list_names(mdir))))
    for first, next_offset in found:
        rel = f"{mdir}/{manifest_name(first, next_offset)}"
        if first < committed:  # committed already; only the manifest was left behind
            store.delete(rel)
            continue
        manifest = json.loads(store.read(rel))
        present = [f for f in manifest["files"] if store.exists(f)]
        if first == committed and len(present) == len(manifest["files"]):
            version = commit_offset(zk, group, topic, partition, next_offset, version, owner)
            log.warning(
                "%s-%d: chunk %d-%d was published but not committed; moved the offset past it",
                topic,
                partition,
                first,
                next_offset - 1,
            )
            worker.report(
                {
                    "type": "recovered",
                    "topic": topic,
                    "partition": partition,
                    "first": first,
                    "next": next_offset,
                    "files": len(present),
                }
            )
            committed = next_offset
        else:  # a chunk that never finished publishing: it is built again
            for f in present:
                store.delete(f)
            log.warning(
                "%s-%d: removed %d file(s) of unfinished chunk %d-%d",
                topic,
                partition,
                len(present),
                first,
                next_offset - 1,
            )
        store.delete(rel)
    if committed < start:
        gap = (
            f"{topic}-{partition}: offsets {committed}..{start - 1} ({start - committed} "
            f"messages) were deleted by retention before they were loaded"
        )
        if not worker.allow_gaps:
            raise GapError(gap + "; rerun with --allow-gaps to skip them")
        log.error("GAP: %s; skipped (--allow-gaps)", gap)
        version = commit_offset(zk, group, topic, partition, start, version, owner)
        worker.report(
            {
                "type": "gap",
                "topic": topic,
                "partition": partition,
                "first": committed,
                "next": start,
            }
        )
        committed = start
    if committed < planned and planned > end:
        raise LoaderError(
            f"{topic}-{partition}: the plan loads up to offset {planned} but the log now ends "
            f"at {end} (was the topic re-created or its log truncated?); delete "
            f"/consumers/{group}/loader/plan to plan afresh"
        )
    if committed > end:
        raise LoaderError(
            f"{topic}-{partition}: the committed offset {committed} is past the log end {end} "
            f"(was the topic re-created or its log truncated?); set "
            f"/consumers/{group}/offsets/{topic}/{partition} by hand"
        )
    return committed, version
