"""bench/avro_load_bench.py end to end, small: every path sees every event, and the ratios
land in the JSON file."""

from __future__ import annotations

import json

import pytest
from command_lines import run_bench

pytestmark = pytest.mark.integration  # the script runs as a process


def test_a_small_run_reports_the_avro_path_against_fastavro_and_json(tmp_path):
    out = tmp_path / "avro.json"
    run = run_bench(
        "avro_load_bench.py",
        "--events",
        "2000",
        "--block",
        "500",
        "--reps",
        "1",
        "--json",
        str(out),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["events"] == 2000
    for name in ("loader avro / fastavro", "loader avro / loader json"):
        assert results["ratios"][name] > 0
