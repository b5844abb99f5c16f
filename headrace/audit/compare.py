"""The audit's comparison, pure: counts per window in, the table's rows and notes out.

Per window (``[start, start + window_ms)`` of the message timestamps, UTC-aligned):

- **produced**: the sum of the audit records' counts (messages the audited producers had
  acknowledged);
- **brokered**: the messages the brokers hold, by timestamp;
- **loaded**: the warehouse's rows, by ``_timestamp`` (None without a warehouse);
- **unaudited**: brokered messages no audit record accounts for: from producers that publish
  none (kcat, rsyslog), and beyond the counts of an audited producer id that sent no final
  record (it crashed, or is still running: a note names it);
- **missing**: audited messages the producers counted and the brokers lack, per producer id,
  plus messages the brokers hold and the warehouse lacks;
- **duplicated**: messages the brokers hold beyond the counts of a producer id that closed
  cleanly (written but reported failed, so perhaps sent again), plus warehouse rows beyond
  the messages the brokers hold.

Producers without a producer id (idempotence off) cannot be told apart in the brokers: their
counts are compared with every unattributed message together (a shortfall is missing, an
excess unaudited). A window is closed once ``start + window_ms + grace_ms <= now``; only a
closed window that does not match fails the audit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from consumers.audit import NO_PRODUCER_ID, AuditRecord, iso, window_start


class AuditError(Exception):
    """The audit cannot be made (one line: what and why)."""


class Produced(NamedTuple):
    """What the audit records say, in the audit's windows."""

    counts: Counter  # (window start, producer id) -> messages
    final: frozenset  # producer ids that published a final record
    names: Mapping  # producer id -> producer names that counted under it


def rebucket(records: Iterable[AuditRecord], topic: str, window_ms: int, since_ms: int) -> Produced:
    """The records of ``topic`` summed into windows of ``window_ms`` from the window holding
    ``since_ms`` on.  AuditError if a record's window there does not fit whole into one of
    them (the audit's window must be a multiple of the producers')."""
    counts: Counter = Counter()
    final = set()
    names: dict[int, set] = defaultdict(set)
    first = window_start(since_ms, window_ms)
    for record in records:
        if record.topic != topic or record.window_start + record.window_ms <= first:
            continue
        if window_ms % record.window_ms:
            raise AuditError(
                f"producer {record.producer} counts in windows of {record.window_ms} ms: "
                f"the audit's window ({window_ms} ms) must be a multiple of it"
            )
        names[record.producer_id].add(record.producer)
        if record.final:
            final.add(record.producer_id)
        if record.count:
            counts[(window_start(record.window_start, window_ms), record.producer_id)] += (
                record.count
            )
    return Produced(counts, frozenset(final), dict(names))


def compare(
    produced: Produced,
    brokered: Mapping[tuple[int, int], int],
    loaded: Mapping[int, int] | None,
    window_ms: int,
    grace_ms: int,
    now_ms: int,
) -> tuple[list[dict], list[str]]:
    """The rows (oldest window first, the dashboard API's shape) and the notes explaining
    counts no audit record accounts for.  ``brokered`` maps (window start, producer id) to
    messages, ``loaded`` window start to rows."""
    audited = {pid for pid in produced.names if pid != NO_PRODUCER_ID}
    windows = sorted({w for w, _ in produced.counts} | {w for w, _ in brokered} | set(loaded or ()))
    by_window: dict[int, dict[int, int]] = defaultdict(dict)
    for (w, pid), n in brokered.items():
        by_window[w][pid] = n
    produced_in: Counter = Counter()
    for (w, _pid), n in produced.counts.items():
        produced_in[w] += n
    uncounted: dict[int, Counter] = defaultdict(Counter)  # pid -> window -> excess (no final)
    unasked: dict[int, Counter] = defaultdict(Counter)  # pid -> window -> excess (final)
    rows = []
    for w in windows:
        held = by_window.get(w, {})
        missing = duplicated = unaudited = 0
        for pid in audited:
            counted, have = produced.counts.get((w, pid), 0), held.get(pid, 0)
            if have < counted:
                missing += counted - have
            elif have > counted:
                if pid in produced.final:
                    duplicated += have - counted
                    unasked[pid][w] += have - counted
                else:
                    unaudited += have - counted
                    uncounted[pid][w] += have - counted
        pool = sum(n for pid, n in held.items() if pid not in audited)
        pooled_counts = produced.counts.get((w, NO_PRODUCER_ID), 0)
        if pool < pooled_counts:
            missing += pooled_counts - pool
        else:
            unaudited += pool - pooled_counts
        total = sum(held.values())
        in_warehouse = None if loaded is None else loaded.get(w, 0)
        if in_warehouse is not None:
            missing += max(0, total - in_warehouse)
            duplicated += max(0, in_warehouse - total)
        rows.append(
            {
                "window_start": w,
                "window_start_iso": iso(w),
                "closed": w + window_ms + grace_ms <= now_ms,
                "produced": produced_in[w],
                "brokered": total,
                "loaded": in_warehouse,
                "unaudited": unaudited,
                "missing": missing,
                "duplicated": duplicated,
                "ok": missing == 0 and duplicated == 0,
            }
        )
    notes = [_note(pid, produced, excess, False) for pid, excess in sorted(uncounted.items())]
    notes += [_note(pid, produced, excess, True) for pid, excess in sorted(unasked.items())]
    if NO_PRODUCER_ID in produced.names:
        notes.append(
            f"producers without a producer id (idempotence off: "
            f"{', '.join(sorted(produced.names[NO_PRODUCER_ID]))}) are compared with every "
            "message no producer id accounts for: their duplicates show as unaudited"
        )
    return rows, notes


def _note(pid: int, produced: Produced, excess: Counter, final: bool) -> str:
    names = ", ".join(sorted(produced.names.get(pid, ()))) or "?"
    windows = ", ".join(iso(w) for w in sorted(excess))
    n = sum(excess.values())
    if final:
        return (
            f"producer {names} (producer id {pid}) closed cleanly, yet the brokers hold {n} "
            f"more of its messages than it counted as acknowledged (windows {windows}): "
            "written but reported failed, perhaps sent again; counted as duplicated"
        )
    return (
        f"producer {names} (producer id {pid}) published no final audit record: it crashed "
        f"or is still running, and the counts of its last interval never reached _audit; "
        f"the brokers hold {n} of its messages beyond its counts (windows {windows}), "
        "shown as unaudited"
    )


def overall_ok(rows: Iterable[dict]) -> bool:
    """True unless a closed window does not match."""
    return all(row["ok"] for row in rows if row["closed"])
