"""bench/flexible_bench.py end to end, small: every Produce run at the version pinned, one
message per request, and both ratios in the JSON file."""

from __future__ import annotations

import json

import pytest
from command_lines import run_bench

pytestmark = pytest.mark.integration  # ZooKeeper and a broker as processes


def test_a_small_run_compares_the_pinned_versions_one_message_per_request(tmp_path):
    out = tmp_path / "flexible.json"
    run = run_bench(
        "flexible_bench.py",
        *("--messages", "300", "--reps", "1", "--json", str(out), "--tmp-dir", str(tmp_path)),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    # 300 messages and the warm-up one, a request each, at each Produce version
    assert results["requests_by_version"]["Produce v8"] == 301
    assert results["requests_by_version"]["Produce v9"] == 301
    assert results["requests_by_version"]["Fetch v11"] >= 1
    assert results["requests_by_version"]["Fetch v12"] >= 1
    assert results["produce"]["ratio"] > 0 and results["fetch"]["ratio"] > 0
