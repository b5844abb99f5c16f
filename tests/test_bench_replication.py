"""bench/replication_bench.py end to end in its quick mode: three brokers, every part run and
its numbers in the JSON file."""

from __future__ import annotations

import json

import pytest
from command_lines import run_bench

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # three brokers as processes


def test_quick_run_writes_every_part(tmp_path):
    out = tmp_path / "replication.json"
    run = run_bench(
        "replication_bench.py", "--quick", "--json", str(out), "--tmp-dir", str(tmp_path)
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Targets missed:" in run.stdout
    results = json.loads(out.read_text())
    meta = results["meta"]
    assert meta["mode"] == "quick" and meta["brokers"] == 3
    assert meta["zookeeper_session_timeout_ms"] == 6000

    produce = results["produce"]
    for key in ("rf1_acks1", "rf3_acks_all"):
        assert len(produce[key]) == meta["reps"]
        assert all(r["msgs_per_s"] > 0 for r in produce[key])
    assert produce["ratio_median"] > 0

    failover = results["failover"]
    assert failover["session_timeout_s"] == 6.0
    assert len(failover["runs"]) == meta["reps"]
    for r in failover["runs"]:
        if r["new_leader"] is None:  # "no leader" is a result, not a failure
            assert r["seconds"] is None
        else:
            assert r["new_leader"] != r["old_leader"]
            assert r["beyond_s"] == pytest.approx(r["seconds"] - 6.0)

    catchup = results["catchup"]
    if "skipped" not in catchup:
        for r in catchup["runs"]:
            assert r["behind_bytes"] > 0 and r["catchup_mb_s"] > 0 and r["append_mb_s"] > 0
            assert r["follower"] != r["leader"]
