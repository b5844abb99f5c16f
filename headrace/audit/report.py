"""``audit_report``: the audit of one topic as the dashboard's ``/api/audit`` and ``headrace
audit --json`` give it, and the table ``headrace audit`` prints."""

from __future__ import annotations

import time

from consumers.audit import DEFAULT_WINDOW_MS
from consumers.cluster import ClusterClient
from consumers.security import PLAINTEXT, ClientSecurity

from .compare import compare, overall_ok, rebucket
from .sources import audit_records, broker_counts, warehouse_counts

DEFAULT_GRACE_MS = 300_000
COLUMNS = ("window", "produced", "brokered", "loaded", "unaudited", "missing", "duplicated")


def audit_report(
    zookeeper: str | None,
    topic: str,
    warehouse: str | None = None,
    since_ms: int | None = None,
    window_ms: int = DEFAULT_WINDOW_MS,
    grace_ms: int = DEFAULT_GRACE_MS,
    now_ms: int | None = None,
    *,
    bootstrap_servers: str | None = None,
    storage_options: dict | None = None,
    security: ClientSecurity = PLAINTEXT,
) -> dict:
    """Compare, per window of ``window_ms`` from the one holding ``since_ms`` (default: all
    the brokers hold), what audited producers counted, what the brokers hold and what the
    warehouse loaded (``loaded`` null without ``warehouse``).  ``{"topic", "window_ms",
    "grace_ms", "rows", "ok", "notes"}``: ``ok`` is false when a closed window does not match;
    ``notes`` explain counts no audit record accounts for.  Raises AuditError (a one-line
    reason) when the audit cannot be made; a KafkaError or OSError when the brokers fail."""
    if window_ms <= 0 or grace_ms < 0:
        raise ValueError("window must be positive and grace not negative")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    since_ms = 0 if since_ms is None else since_ms
    cluster = ClusterClient(
        bootstrap_servers, zookeeper, client_id="headrace-audit", security=security
    )
    try:
        # The records first: a message acknowledged while the audit reads the brokers then
        # shows as not yet counted (unaudited), never as missing.
        records, malformed = audit_records(cluster)
        brokered, undecodable = broker_counts(cluster, topic, window_ms, since_ms)
    finally:
        cluster.close()
    loaded = (
        None
        if warehouse is None
        else warehouse_counts(warehouse, topic, window_ms, since_ms, storage_options)
    )
    produced = rebucket(records, topic, window_ms, since_ms)
    rows, notes = compare(produced, brokered, loaded, window_ms, grace_ms, now_ms)
    if malformed:
        notes.append(f"{malformed} messages of _audit are not audit records (skipped)")
    if undecodable:
        notes.append(
            f"{undecodable} messages of {topic} are in batches that cannot be decoded "
            "(counted at their batch's last timestamp)"
        )
    return {
        "topic": topic,
        "window_ms": window_ms,
        "grace_ms": grace_ms,
        "rows": rows,
        "ok": overall_ok(rows),
        "notes": notes,
    }


def format_table(report: dict) -> str:
    """The report as a text table, one line per window (status: ok, MISMATCH, or open for a
    window not yet closed), then its notes."""
    lines = [[*COLUMNS, "status"]]
    for row in report["rows"]:
        status = ("ok" if row["ok"] else "MISMATCH") if row["closed"] else "open"
        lines.append(
            [
                row["window_start_iso"],
                *(
                    "-" if row[c] is None else str(row[c])
                    for c in ("produced", "brokered", "loaded", "unaudited")
                ),
                str(row["missing"]),
                str(row["duplicated"]),
                status,
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths))
        )
        for line in lines
    ]
    if not report["rows"]:
        text.append(f"(no messages of {report['topic']} in the windows asked for)")
    text += [f"note: {note}" for note in report["notes"]]
    closed = [r for r in report["rows"] if r["closed"]]
    bad = sum(1 for r in closed if not r["ok"])
    text.append(
        f"{len(closed)} closed windows, {bad} not matching; "
        f"{len(report['rows']) - len(closed)} still open"
    )
    return "\n".join(text)
