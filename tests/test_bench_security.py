"""bench/security_bench.py end to end, small: produce and consume over SASL_SSL and PLAINTEXT
with our client and librdkafka, SCRAM logins over TLS and plain connections, all counted, the
ratios in the JSON file."""

from __future__ import annotations

import json

import pytest
from command_lines import run_bench

pytestmark = pytest.mark.integration  # ZooKeeper and a broker as processes


def test_a_small_run_measures_sasl_ssl_against_plaintext(tmp_path):
    out = tmp_path / "security.json"
    run = run_bench(
        "security_bench.py",
        *("--messages", "2000", "--logins", "10", "--reps", "1"),
        *("--json", str(out), "--tmp-dir", str(tmp_path)),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    for client in ("ours", "librdkafka"):
        for op in ("produce", "consume"):
            speeds = results["throughput_mb_s"][client][op]
            assert len(speeds["PLAINTEXT"]) == len(speeds["SASL_SSL"]) == 1
            ratio = speeds["SASL_SSL"][0] / speeds["PLAINTEXT"][0]
            assert results["ratios"][client][op] == pytest.approx(ratio)
    assert results["logins_per_s"] > 0 and results["plain_connections_per_s"] > 0
    assert results["login_ratio"] == results["logins_per_s"] / results["plain_connections_per_s"]
