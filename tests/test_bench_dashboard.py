"""bench/dashboard_bench.py end to end in its quick mode: three brokers, a dashboard process
with its streams read, every figure printed and in the JSON file (their values are not
checked: speed is for the benchmark to report)."""

from __future__ import annotations

import json

import pytest
from command_lines import run_bench

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # brokers and a dashboard as processes


def test_quick_run_reports_every_figure(tmp_path):
    out = tmp_path / "dashboard.json"
    run = run_bench("dashboard_bench.py", "--quick", "--json", str(out), "--tmp-dir", str(tmp_path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for figure in (
        "ratio with / without a dashboard:",
        "target >= 0.9",
        "aggregate consumer:",
        "events/s (median)",
        "machine load (uptime, 1/5/15 min):",
        "Targets missed:",
    ):
        assert figure in run.stdout, run.stdout
    results = json.loads(out.read_text())
    meta = results["meta"]
    assert meta["mode"] == "quick" and meta["brokers"] == 3
    assert len(meta["load_average_at_start"]) == len(meta["load_average_at_end"]) == 3

    produce = results["produce"]
    for side in ("with", "without"):
        assert len(produce[side]) == meta["reps"]
        assert all(r["msgs_per_s"] > 0 for r in produce[side])
    assert produce["ratio_median"] > 0
    for r in produce["with"]:
        assert r["dashboard_cpu_share"] >= 0 and r["idle_dashboard_cpu_share"] >= 0
        streams = list(r["streams"].values())  # events, tail, aggregate: each one flowed
        assert [s.get("topics", 0) > 0 for s in streams] == [True, False, False]
        assert streams[1].get("status", 0) > 0 and streams[1].get("message", 0) > 0
        assert streams[2].get("window", 0) > 0

    aggregate = results["aggregate"]
    assert aggregate["events"] == meta["backlog"]
    assert len(aggregate["runs"]) == meta["reps"]
    for r in aggregate["runs"]:
        assert r["events_per_s"] > 0 and r["seconds"] > 0
        assert r["dashboard_cpu_share"] >= 0
    assert aggregate["events_per_s_median"] > 0
    assert not list(tmp_path.glob("dashboard-bench-*"))  # its work dir is removed
