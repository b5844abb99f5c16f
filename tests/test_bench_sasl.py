"""bench/sasl_bench.py end to end, small: SCRAM logins and plain connections both counted,
the ratio in the JSON file."""

from __future__ import annotations

import json

import pytest
from command_lines import run_bench

pytestmark = pytest.mark.integration  # ZooKeeper and brokers as processes


def test_a_small_run_measures_logins_against_plain_connections(tmp_path):
    out = tmp_path / "sasl.json"
    run = run_bench(
        "sasl_bench.py",
        *("--logins", "20", "--reps", "1", "--json", str(out), "--tmp-dir", str(tmp_path)),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["logins_per_s"] > 0 and results["plain_connections_per_s"] > 0
    assert results["ratio"] == results["logins_per_s"] / results["plain_connections_per_s"]
    assert len(results["runs"]["scram"]) == len(results["runs"]["plain"]) == 1
