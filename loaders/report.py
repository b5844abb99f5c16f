"""What a load's workers reported, and the summary table a run prints at its end.

One row per partition (rows, dead letters, quarantined, late, type conflicts, input bytes,
files, offsets, lag left), a total, then recovered chunks and gaps.
"""

from __future__ import annotations


class Stats:
    """What the workers reported, per partition."""

    FIELDS = (
        "rows",
        "dead_letters",
        "quarantined",
        "late",
        "conflicts",
        "bytes",
        "written",
        "files",
    )

    def __init__(self):
        self.parts: dict[tuple[str, int], dict] = {}
        self.recovered: list[dict] = []
        self.gaps: list[dict] = []
        self.errors: list[str] = []
        self.failed: set[int] = set()  # workers that reported an error

    def add(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "error":
            self.errors.append(f"worker {event['worker']}: {event['message']}")
            self.failed.add(event["worker"])
            return
        if kind == "recovered":
            self.recovered.append(event)
            return
        if kind == "gap":
            self.gaps.append(event)
            return
        if kind != "chunk":
            return
        key = (event["topic"], event["partition"])
        p = self.parts.setdefault(key, {f: 0 for f in self.FIELDS} | {"first": None, "next": None})
        for f in self.FIELDS:
            p[f] += event.get(f, 0)
        p["first"] = event["first"] if p["first"] is None else min(p["first"], event["first"])
        p["next"] = event["next"] if p["next"] is None else max(p["next"], event["next"])

    def total(self, field: str) -> int:
        return sum(p[field] for p in self.parts.values())


def progress_line(done: int, total: int, seconds: float, follow: bool) -> str:
    """The line a run keeps rewriting on a terminal: events loaded (of the plan's ``total``,
    unless it follows), the share done and the rate."""
    rate = done / max(seconds, 1e-9)
    pct = f" ({100 * done / total:.0f}%)" if total and not follow else ""
    of = "" if follow else f" / {total:,}"
    return f"\rloading: {done:,}{of} events{pct}, {rate:,.0f}/s   "


def print_summary(out, stats: Stats, lag: dict, marked: int, seconds: float) -> None:
    """The run's table on ``out``: a row per partition and the total, the rate, the hours
    marked, then every recovered chunk and every gap."""
    header = (
        "topic",
        "part",
        "rows",
        "dead",
        "quarantined",
        "late",
        "conflicts",
        "input bytes",
        "files",
        "offsets",
        "lag left",
    )
    rows = []
    for topic, p in sorted(set(stats.parts) | set(lag)):
        s = stats.parts.get((topic, p))
        if s is None:
            rows.append(
                (
                    topic,
                    str(p),
                    "0",
                    "0",
                    "0",
                    "0",
                    "0",
                    "0",
                    "0",
                    "-",
                    f"{lag.get((topic, p), 0):,}",
                )
            )
            continue
        rows.append(
            (
                topic,
                str(p),
                f"{s['rows']:,}",
                f"{s['dead_letters']:,}",
                f"{s['quarantined']:,}",
                f"{s['late']:,}",
                f"{s['conflicts']:,}",
                f"{s['bytes']:,}",
                f"{s['files']:,}",
                f"{s['first']}-{s['next'] - 1}" if s["next"] > s["first"] else "-",
                f"{lag.get((topic, p), 0):,}",
            )
        )
    rows.append(
        (
            "total",
            "",
            f"{stats.total('rows'):,}",
            f"{stats.total('dead_letters'):,}",
            f"{stats.total('quarantined'):,}",
            f"{stats.total('late'):,}",
            f"{stats.total('conflicts'):,}",
            f"{stats.total('bytes'):,}",
            f"{stats.total('files'):,}",
            "",
            f"{sum(v for v in lag.values() if v > 0):,}",
        )
    )
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(len(header))]
    for r in [header, *rows]:
        print(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
            ),
            file=out,
        )
    loaded = stats.total("rows") + stats.total("dead_letters")
    print(
        f"loaded {loaded:,} events in {seconds:.1f} s ({loaded / max(seconds, 1e-9):,.0f}/s); "
        f"{marked} hour(s) marked _SUCCESS",
        file=out,
    )
    for r in stats.recovered:
        print(
            f"recovered: {r['topic']}-{r['partition']} offsets {r['first']}-{r['next'] - 1} were "
            "published by an interrupted run; committed without writing them again",
            file=out,
        )
    for g in stats.gaps:
        print(
            f"GAP: {g['topic']}-{g['partition']} offsets {g['first']}-{g['next'] - 1} were deleted "
            "before they were loaded (skipped with --allow-gaps)",
            file=out,
        )
